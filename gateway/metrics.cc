// Prometheus text rendering of the status snapshot (see gateway/metrics.h).
#include "gateway/metrics.h"

#include <initializer_list>
#include <map>
#include <utility>

#include <fmt/format.h>

namespace gw::gateway {
namespace {

using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

class Writer {
 public:
  // A family's HELP and TYPE lines; its samples follow.
  void family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  template <class V>
  void sample(std::string_view name, Labels labels, V value) {
    out_ += name;
    if (labels.size() > 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [key, text] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += key;
        out_ += "=\"";
        escape(text);
        out_ += '"';
      }
      out_ += '}';
    }
    fmt::format_to(std::back_inserter(out_), " {}\n", value);
  }
  template <class V>
  void counter(std::string_view name, std::string_view help, V value) {
    family(name, "counter", help);
    sample(name, {}, value);
  }
  template <class V>
  void gauge(std::string_view name, std::string_view help, V value) {
    family(name, "gauge", help);
    sample(name, {}, value);
  }
  std::string take() { return std::move(out_); }

 private:
  void escape(std::string_view text) {
    for (char c : text) {
      if (c == '\\') {
        out_ += "\\\\";
      } else if (c == '"') {
        out_ += "\\\"";
      } else if (c == '\n') {
        out_ += "\\n";
      } else {
        out_ += c;
      }
    }
  }
  std::string out_;
};

double seconds(std::int64_t ms) { return static_cast<double>(ms) / 1000.0; }

// Every reason, also those never seen (0), so that a series exists from the start.
std::map<std::string, std::uint64_t> by_reason(const std::map<ingest::errc, std::uint64_t>& counts) {
  std::map<std::string, std::uint64_t> out;
  for (auto r : ingest::kDeadLetterReasons) {
    out[std::string(ingest::reason_name(r))] = 0;
  }
  for (const auto& [reason, n] : counts) out[std::string(ingest::reason_name(reason))] = n;
  return out;
}

void ingest_metrics(Writer& w, const Snapshot& s) {
  w.gauge("gw_ingest_events_per_second", "Records appended to the buffer per second, over the last few seconds.",
          s.ingest_events_per_s);
  if (!s.ingest) return;
  const auto& in = *s.ingest;
  w.gauge("gw_ingest_connected", "1 while the MQTT client is connected.", in.connected ? 1 : 0);
  w.gauge("gw_ingest_subscribed", "1 once the broker confirmed every subscription of this connection.",
          in.subscribed ? 1 : 0);
  w.counter("gw_ingest_messages_received_total", "MQTT messages received (redeliveries included).",
            in.messages_received);
  w.counter("gw_ingest_events_stored_total", "Events stored in the buffer by ingest.", in.events_stored);
  w.family("gw_ingest_rejected_total", "counter", "Messages rejected by ingest, by reason (sent to the dead letters).");
  for (const auto& [reason, n] : by_reason(in.decode_errors)) w.sample("gw_ingest_rejected_total", {{"reason", reason}}, n);
  w.counter("gw_ingest_store_retries_total", "Buffer appends that failed and were retried.", in.store_retries);
  w.counter("gw_ingest_reconnects_total", "Successful MQTT reconnects after the first connect.", in.reconnects);
  w.counter("gw_ingest_device_mismatches_total", "Payload device ids that differed from the topic's (topic won).",
            in.device_mismatches);
  w.counter("gw_ingest_not_events_total", "Mapped sources' messages that are not events (when), acknowledged.",
            in.not_events);
  w.counter("gw_ingest_arrival_times_total", "Mapped events whose payload had no time: stamped on arrival.",
            in.arrival_times);
  w.family("gw_ingest_sparkplug_deaths_total", "counter", "Sparkplug NDEATH and DDEATH messages, by device.");
  for (const auto& [device, n] : in.sparkplug_deaths) w.sample("gw_ingest_sparkplug_deaths_total", {{"device", device}}, n);
  w.counter("gw_ingest_dead_letter_failures_total", "Rejected messages the dead-letter store could not keep.",
            in.dead_letter_failures);
}

void dead_letter_metrics(Writer& w, const Snapshot& s) {
  if (!s.dead_letters) return;
  const auto& d = *s.dead_letters;
  w.family("gw_dead_letters_total", "counter", "Messages ever stored in the dead-letter store, by reason (persistent).");
  for (const auto& [reason, n] : by_reason(d.by_reason)) w.sample("gw_dead_letters_total", {{"reason", reason}}, n);
  w.gauge("gw_dead_letters_entries", "Dead letters stored now.", d.entries);
  w.counter("gw_dead_letters_evicted_total", "Dead letters evicted to respect max entries (persistent).",
            d.evicted_total);
}

void buffer_metrics(Writer& w, const Snapshot& s) {
  const auto& b = s.buffer;
  w.gauge("gw_buffer_records", "Records stored in the buffer now.", b.records);
  w.gauge("gw_buffer_bytes", "Bytes used by the buffer's LMDB environment.", b.bytes);
  w.gauge("gw_buffer_max_bytes", "The buffer's configured cap in bytes.", b.max_bytes);
  w.gauge("gw_buffer_map_bytes", "The LMDB map size in bytes (grows up to max bytes).", b.map_bytes);
  w.gauge("gw_buffer_oldest_age_seconds", "Age of the oldest stored record (0 when empty).", seconds(b.oldest_age_ms));
  w.gauge("gw_buffer_last_seq", "Sequence number of the newest record ever appended.", b.last.value);
  w.counter("gw_buffer_appended_total", "Records appended.", b.appended_total);
  w.counter("gw_buffer_trimmed_total", "Records trimmed after every consumer acknowledged them.", b.trimmed_total);
  w.counter("gw_buffer_commits_total", "Write transactions committed.", b.commits_total);
  w.counter("gw_buffer_append_commits_total",
            "Write transactions of appends (group commits; with durability fsync, one sync each).",
            b.append_commits_total);
  w.counter("gw_buffer_evicted_total", "Records evicted by the drop-oldest or summarize policy (persistent).",
            b.evicted_total);
  w.counter("gw_buffer_summarized_total", "Records evicted by summarize after the windows counted them (persistent).",
            b.summarized_total);
  w.counter("gw_buffer_duplicates_total",
            "Copies of stored readings (same device, boot id, seq and values) dropped by dedup in the append "
            "transaction (persistent).",
            b.duplicates_total);
  w.counter("gw_buffer_duplicates_conflicting_total",
            "Events reusing a stored reading's identity with other values: not stored, dead letter "
            "conflicting_duplicate (persistent).",
            b.duplicates_conflicting_total);
  w.counter("gw_buffer_stale_sequence_total",
            "Events without boot id behind their device's window and older than a reboot could be: dead letter "
            "stale_sequence (persistent).",
            b.stale_sequence_total);
  w.counter("gw_buffer_reboots_total", "Device reboots seen by dedup (new boot id, or the counter went back).",
            b.reboots_total);
  w.counter("gw_buffer_seq_wraps_total", "Device counters that wrapped (2^seq_bits - 1 -> 0).", b.seq_wraps_total);
  w.counter("gw_buffer_seq_gaps_total", "Sequence numbers skipped by devices (lost before the gateway, or late).",
            b.seq_gaps_total);
  w.counter("gw_buffer_seq_late_total", "Events stored behind their device's highest seq (late or reordered).",
            b.seq_late_total);
  w.counter("gw_buffer_seq_zero_ambiguous_total",
            "Unseen seq 0 within the window of a device without boot id, taken as a late first message.",
            b.seq_zero_ambiguous_total);
  w.counter("gw_buffer_dedup_unknown_total", "Events behind their device's dedup window, not known: stored unchecked.",
            b.dedup_unknown_total);
  w.gauge("gw_buffer_dedup_sources", "Devices with a dedup window in the buffer.", b.dedup_sources);
  w.counter("gw_buffer_quarantined_total", "Stored values that failed to decode and were moved aside (persistent).",
            b.quarantined_total);
  w.gauge("gw_buffer_full", "1 when the last append found the buffer at max bytes.", b.full ? 1 : 0);
  w.gauge("gw_buffer_blocked_appends", "Appends waiting now (full with block, or no disk space).", b.blocked_appends);
  w.counter("gw_buffer_blocked_total", "Episodes in which appends had to wait.", b.blocked_total);
  w.gauge("gw_buffer_no_space", "1 when the last commit failed with ENOSPC.", b.no_space ? 1 : 0);
  w.counter("gw_buffer_no_space_total", "Commits that failed with ENOSPC.", b.no_space_total);
  w.family("gw_buffer_cursor_lag_records", "gauge", "Records stored after a consumer's cursor.");
  for (const auto& c : b.cursors) w.sample("gw_buffer_cursor_lag_records", {{"cursor", c.name}}, c.lag);
  w.family("gw_buffer_cursor_acked_seq", "gauge", "The last sequence number a consumer acknowledged.");
  for (const auto& c : b.cursors) w.sample("gw_buffer_cursor_acked_seq", {{"cursor", c.name}}, c.acked.value);
  w.family("gw_buffer_cursor_evicted_total", "counter", "Records evicted before a consumer acknowledged them (persistent).");
  for (const auto& c : b.cursors) w.sample("gw_buffer_cursor_evicted_total", {{"cursor", c.name}}, c.evicted);
}

void windowing_metrics(Writer& w, const Snapshot& s) {
  const auto& win = s.windowing;
  w.counter("gw_windowing_events_total", "Events folded into windows.", win.events);
  w.counter("gw_windowing_windows_closed_total", "Aggregates produced (windows closed).", win.windows_closed);
  w.counter("gw_windowing_late_events_total", "Events whose window had already closed (not counted in it).",
            win.late_events);
  w.counter("gw_windowing_unwindowed_events_total",
            "Events of devices beyond windowing.max_devices: stored and forwarded, not folded into windows.",
            win.unwindowed_events);
  w.counter("gw_windowing_decode_errors_total", "Stored records whose payload did not decode (skipped).",
            win.decode_errors);
  w.counter("gw_windowing_results_pruned_total", "Stored results removed by retention or max results.",
            win.results_pruned);
  w.counter("gw_windowing_late_stored_total", "Late events kept in the late-events store (/late).", win.late_stored);
  w.counter("gw_windowing_aggregates_forwarded_total", "Aggregate records appended to the buffer for upstream.",
            win.aggregates_forwarded);
  w.counter("gw_windowing_commits_total", "Exactly-once state commits (state, results, cursor in one transaction).",
            win.commits);
  w.counter("gw_windowing_commit_errors_total", "State commits that failed (retried).", win.commit_errors);
  w.gauge("gw_windowing_open_windows", "Windows still accumulating.", win.open_windows);
}

void uplink_metrics(Writer& w, const Snapshot& s) {
  // The primary sink's figures stand for the uplink in the single-sink families (see Snapshot).
  const auto& k = s.primary().stats;
  const Labels kafka = {{"sink", s.primary_name()}};
  // Every sink: the raw telemetry sink(s) and, when aggregates are forwarded, their sink.
  std::vector<std::pair<std::string, const uplink::SinkStats*>> sinks;
  if (s.has_kafka) sinks.emplace_back("kafka", &s.kafka.stats);
  if (s.kafka_aggregates) sinks.emplace_back("kafka_aggregates", &s.kafka_aggregates->stats);
  if (s.pulsar) sinks.emplace_back("pulsar", &s.pulsar->stats);
  if (s.pulsar_aggregates) sinks.emplace_back("pulsar_aggregates", &s.pulsar_aggregates->stats);
  auto per_sink = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    w.family(name, type, help);
    for (const auto& [label, stats] : sinks) w.sample(name, {{"sink", label}}, value(*stats));
  };
  auto counter = [&](std::string_view name, std::string_view help, auto value) {
    w.family(name, "counter", help);
    w.sample(name, kafka, value);
  };
  auto gauge = [&](std::string_view name, std::string_view help, auto value) {
    w.family(name, "gauge", help);
    w.sample(name, kafka, value);
  };
  w.family("gw_uplink_state", "gauge", "1 for the sink's current state (connecting, up, down), 0 for the others.");
  for (const auto& [label, stats] : sinks) {
    for (auto state : {uplink::SinkState::connecting, uplink::SinkState::up, uplink::SinkState::down}) {
      w.sample("gw_uplink_state", {{"sink", label}, {"state", uplink::to_string(state)}}, stats->state == state ? 1 : 0);
    }
  }
  gauge("gw_uplink_down_seconds", "How long the sink has been down (0 when it is not).",
        s.uplink_down_ms ? seconds(*s.uplink_down_ms) : 0.0);
  per_sink("gw_uplink_batches_sent_total", "counter", "Batches produced (resends included).",
           [](const uplink::SinkStats& x) { return x.batches_sent; });
  per_sink("gw_uplink_batches_acked_total", "counter", "Batches confirmed by the upstream system.",
           [](const uplink::SinkStats& x) { return x.batches_acked; });
  per_sink("gw_uplink_records_acked_total", "counter", "Records in confirmed batches.",
           [](const uplink::SinkStats& x) { return x.records_acked; });
  per_sink("gw_uplink_records_skipped_total", "counter",
           "Buffer records not forwarded by this sink (another record type, or undecodable).",
           [](const uplink::SinkStats& x) { return x.records_skipped; });
  per_sink("gw_uplink_bytes_sent_total", "counter", "Compressed batch bytes produced.",
           [](const uplink::SinkStats& x) { return x.bytes_sent; });
  per_sink("gw_uplink_bytes_raw_total", "counter", "The same batches' bytes before compression.",
           [](const uplink::SinkStats& x) { return x.bytes_raw; });
  per_sink("gw_uplink_errors_total", "counter", "Failed deliveries (each rewinds to the last acknowledged record).",
           [](const uplink::SinkStats& x) { return x.delivery_errors; });
  per_sink("gw_uplink_read_backs_total", "counter", "Reads of what the upstream system holds (the tail).",
           [](const uplink::SinkStats& x) { return x.read_backs; });
  per_sink("gw_uplink_records_found_upstream_total", "counter",
           "Records acknowledged without sending because a read-back found them upstream.",
           [](const uplink::SinkStats& x) { return x.records_found_upstream; });
  per_sink("gw_uplink_rate_limited_seconds_total", "counter", "Time spent waiting for the max bytes per second budget.",
           [&](const uplink::SinkStats& x) { return seconds(static_cast<std::int64_t>(x.rate_limited_ms)); });
  per_sink("gw_uplink_drain_paced_seconds_total", "counter",
           "Time a backlog drain waited for the drain records per second cap.",
           [&](const uplink::SinkStats& x) { return seconds(static_cast<std::int64_t>(x.drain_paced_ms)); });
  // Device event time to the upstream acknowledgement, per delivered telemetry record.
  w.family("gw_uplink_e2e_latency_seconds", "histogram",
           "Device event time to the upstream system's acknowledgement, per delivered telemetry record.");
  for (const auto& [label, stats] : sinks) {
    if (label.ends_with("_aggregates")) continue;  // telemetry sinks only
    const auto& lat = stats->latency;
    for (std::size_t i = 0; i < std::size(uplink::LatencyHistogram::kBounds); ++i) {
      w.sample("gw_uplink_e2e_latency_seconds_bucket",
               {{"sink", label}, {"le", fmt::format("{}", uplink::LatencyHistogram::kBounds[i])}}, lat.buckets[i]);
    }
    w.sample("gw_uplink_e2e_latency_seconds_bucket", {{"sink", label}, {"le", "+Inf"}}, lat.count);
    w.sample("gw_uplink_e2e_latency_seconds_sum", {{"sink", label}}, lat.sum_s);
    w.sample("gw_uplink_e2e_latency_seconds_count", {{"sink", label}}, lat.count);
  }
  counter("gw_uplink_e2e_latency_negative_total", "Delivered records whose event time was ahead of the gateway clock.",
          k.latency.negative);
  per_sink("gw_uplink_batches_resent_total", "counter",
           "Batches sent again after a send error or a lost connection (Pulsar; the Kafka sink resends "
           "after a read-back instead).",
           [](const uplink::SinkStats& x) { return x.batches_resent; });
  per_sink("gw_uplink_transactions_committed_total", "counter",
           "Kafka exactly_once: transactions committed.",
           [](const uplink::SinkStats& x) { return x.transactions_committed; });
  per_sink("gw_uplink_transactions_aborted_total", "counter",
           "Kafka exactly_once: transactions left to be aborted after a failed delivery or commit (their "
           "batches are sent again).",
           [](const uplink::SinkStats& x) { return x.transactions_aborted; });
  per_sink("gw_uplink_fenced", "gauge",
           "1 when another producer took the sink's transactional.id (Kafka exactly_once): it sends nothing more "
           "until restarted.",
           [](const uplink::SinkStats& x) { return x.fenced ? 1 : 0; });
  per_sink("gw_uplink_last_acked_seq", "gauge", "The last buffer sequence number the upstream system acknowledged.",
           [](const uplink::SinkStats& x) { return x.last_acked.value; });
  gauge("gw_uplink_in_flight_batches", "Batches produced and not yet confirmed.", k.in_flight);
  gauge("gw_uplink_records_per_second", "Records acknowledged upstream per second, over the last few seconds.",
        s.uplink_records_per_s);
  gauge("gw_uplink_backlog_records", "Records stored and not yet acknowledged upstream.", s.backlog_records);
  if (s.drain_eta_s) {
    gauge("gw_uplink_drain_eta_seconds", "Time until the backlog is drained at the current rates (only while draining).",
          *s.drain_eta_s);
  }
}

void http_metrics(Writer& w, const Snapshot& s) {
  if (!s.http) return;
  const auto& h = *s.http;
  w.counter("gw_http_connections_total", "HTTP connections accepted.", h.connections_total);
  w.counter("gw_http_connections_refused_total", "HTTP connections closed at once (max connections reached).",
            h.connections_refused);
  w.gauge("gw_http_connections_open", "HTTP connections open now.", h.connections_open);
  w.counter("gw_http_requests_total", "Complete HTTP requests answered.", h.requests_total);
  w.counter("gw_http_unauthorized_total", "Requests refused for a missing or wrong bearer token.", h.unauthorized_total);
  w.counter("gw_http_rejected_total", "Requests refused as malformed or over a size limit.", h.rejected_total);
  w.counter("gw_http_timeouts_total", "Connections cut off in the middle of a request or response.", h.timeouts_total);
  w.family("gw_http_responses_total", "counter", "Error responses, by class.");
  w.sample("gw_http_responses_total", {{"class", "4xx"}}, h.responses_4xx);
  w.sample("gw_http_responses_total", {{"class", "5xx"}}, h.responses_5xx);
}

}  // namespace

std::string metrics_text(const Snapshot& s) {
  Writer w;
  w.family("gw_build_info", "gauge", "Always 1; the labels say which gateway and version.");
  w.sample("gw_build_info", {{"gateway_id", s.gateway_id}, {"version", s.version}}, 1);
  w.gauge("gw_uptime_seconds", "Seconds since the gateway started.", s.uptime_s);
  w.gauge("gw_ready", "1 when /readyz answers 200.", s.not_ready.empty() ? 1 : 0);
  ingest_metrics(w, s);
  dead_letter_metrics(w, s);
  buffer_metrics(w, s);
  windowing_metrics(w, s);
  uplink_metrics(w, s);
  http_metrics(w, s);
  return w.take();
}

}  // namespace gw::gateway
