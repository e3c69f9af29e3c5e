// Derived figures of the status snapshot, readiness, and its JSON form (nlohmann::json).
#include "gateway/status.h"

#include <nlohmann/json.hpp>

namespace gw::gateway {
namespace {

using json = nlohmann::json;

const buffer::CursorStats* find_cursor(const buffer::Stats& b, const std::string& name) {
  for (const auto& c : b.cursors) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

json optional_number(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

}  // namespace

std::string_view to_string(BacklogState state) noexcept {
  switch (state) {
    case BacklogState::none: return "none";
    case BacklogState::draining: return "draining";
    case BacklogState::growing: return "growing";
  }
  return "?";
}

void Trends::update(Snapshot& s, std::chrono::steady_clock::time_point now) {
  const Snapshot::Kafka& sink = s.primary();
  samples_.push_back({now, s.buffer.appended_total, sink.stats.records_acked});
  while (samples_.size() > 2 && now - samples_[1].at >= window_) samples_.pop_front();
  const Sample& first = samples_.front();
  double seconds = std::chrono::duration<double>(now - first.at).count();
  if (seconds > 0) {
    // Counters restart with the process, never within one: a decrease cannot happen here.
    s.ingest_events_per_s = static_cast<double>(s.buffer.appended_total - first.appended) / seconds;
    s.uplink_records_per_s = static_cast<double>(sink.stats.records_acked - first.acked) / seconds;
  }

  const buffer::CursorStats* cursor = find_cursor(s.buffer, sink.cursor);
  s.backlog_records = cursor != nullptr ? cursor->lag : 0;
  // Like the uplink's drain pacing: a backlog is more than two full batches behind the head; less
  // is live traffic waiting for its batch to fill.
  s.backlog = BacklogState::none;
  s.drain_eta_s.reset();
  if (s.backlog_records > 2 * std::max<std::uint64_t>(1, sink.batch_max_records)) {
    // Rates are averages over the window: a sink that just went down is not draining any more.
    double net = s.uplink_records_per_s - s.ingest_events_per_s;
    if (net > 0 && sink.stats.state == uplink::SinkState::up) {
      s.backlog = BacklogState::draining;
      s.drain_eta_s = static_cast<double>(s.backlog_records) / net;
    } else {
      s.backlog = BacklogState::growing;
    }
  }

  // Down from the first failure until a delivery succeeds: a sink that reconnects, reads back and
  // fails again (connecting, down, connecting, ...) stays down all along.
  if (sink.stats.state == uplink::SinkState::up) {
    down_since_.reset();
  } else if (sink.stats.state == uplink::SinkState::down && !down_since_) {
    down_since_ = now;
  }
  if (down_since_) {
    s.uplink_down_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - *down_since_).count();
  } else {
    s.uplink_down_ms.reset();
  }
}

std::vector<std::string> readiness(const Snapshot& s, const ReadinessOptions& options) {
  std::vector<std::string> reasons;
  if (!s.ingest) {
    reasons.push_back("mqtt: not started");
  } else if (!s.ingest->connected) {
    reasons.push_back("mqtt: not connected" + (s.ingest->last_error.empty() ? "" : " (" + s.ingest->last_error + ")"));
  } else if (!s.ingest->subscribed) {
    reasons.push_back("mqtt: subscriptions not confirmed yet");
  }
  if (s.buffer.no_space) reasons.push_back("buffer: no space left on the filesystem; appends wait");
  if (s.buffer.blocked_appends > 0) reasons.push_back("buffer: full (max_bytes); appends wait for the consumers");
  if (options.uplink_down_max.count() > 0 && s.uplink_down_ms && *s.uplink_down_ms >= options.uplink_down_max.count()) {
    // The failed delivery says more than the latest connection error (often a node that is down).
    const auto& st = s.primary().stats;
    const std::string& why = st.last_delivery_error.empty() ? st.last_error : st.last_delivery_error;
    reasons.push_back("uplink: down for " + std::to_string(*s.uplink_down_ms / 1000) + " s" +
                      (why.empty() ? "" : " (" + why + ")"));
  }
  return reasons;
}

std::string status_json(const Snapshot& snap) {
  json s;
  s["gateway_id"] = snap.gateway_id;
  s["version"] = snap.version;
  s["uptime_s"] = snap.uptime_s;
  s["time_ms"] = snap.unix_ms;
  s["ready"] = {{"ready", snap.not_ready.empty()}, {"reasons", snap.not_ready}};
  s["rates"] = {{"ingest_events_per_s", snap.ingest_events_per_s},
                {"uplink_records_per_s", snap.uplink_records_per_s}};
  s["backlog"] = {{"records", snap.backlog_records},
                  {"state", std::string(to_string(snap.backlog))},
                  {"drain_eta_s", optional_number(snap.drain_eta_s)}};

  if (snap.ingest) {
    const auto& in = *snap.ingest;
    s["ingest"] = {{"connected", in.connected},           {"messages_received", in.messages_received},
                   {"events_stored", in.events_stored},   {"decode_errors", in.decode_errors_total},
                   {"store_retries", in.store_retries},   {"reconnects", in.reconnects},
                   {"subscribed", in.subscribed},         {"device_mismatches", in.device_mismatches},
                   {"dead_letter_failures", in.dead_letter_failures},
                   {"not_events", in.not_events},         {"arrival_times", in.arrival_times},
                   {"sparkplug_deaths", in.sparkplug_deaths},
                   {"duplicates", in.duplicates},         {"sessions", snap.mqtt_sessions},
                   {"last_error", in.last_error}};
    json reasons = json::object();
    for (const auto& [reason, n] : in.decode_errors) reasons[std::string(ingest::reason_name(reason))] = n;
    s["ingest"]["rejected_by_reason"] = reasons;
    if (!snap.ingest_workers.empty()) {
      json list = json::array();
      for (const auto& w : snap.ingest_workers) {
        list.push_back({{"index", w.index}, {"pid", w.pid}, {"starts", w.starts}, {"last_exit", w.last_exit},
                        {"connected", w.stats.connected}, {"subscribed", w.stats.subscribed},
                        {"events_stored", w.stats.events_stored}});
      }
      s["ingest"]["workers"] = list;
    }
  }
  if (snap.dead_letters) {
    const auto& d = *snap.dead_letters;
    json reasons = json::object();
    for (const auto& [reason, n] : d.by_reason) reasons[std::string(ingest::reason_name(reason))] = n;
    s["dead_letters"] = {{"entries", d.entries}, {"stored_total", d.stored_total},
                         {"evicted_total", d.evicted_total}, {"by_reason", reasons}};
  }
  const auto& b = snap.buffer;
  json cursors = json::array();
  for (const auto& c : b.cursors) {
    cursors.push_back({{"name", c.name}, {"acked", c.acked.value}, {"lag", c.lag}, {"evicted", c.evicted}});
  }
  s["buffer"] = {{"records", b.records},          {"bytes", b.bytes},
                 {"max_bytes", b.max_bytes},      {"first_seq", b.first.value},
                 {"last_seq", b.last.value},      {"oldest_age_ms", b.oldest_age_ms},
                 {"appended_total", b.appended_total}, {"trimmed_total", b.trimmed_total},
                 {"commits_total", b.commits_total},
                 {"append_commits_total", b.append_commits_total},   {"map_bytes", b.map_bytes},
                 {"full", b.full},                {"blocked_appends", b.blocked_appends},
                 {"blocked_total", b.blocked_total}, {"no_space", b.no_space},
                 {"no_space_total", b.no_space_total}, {"evicted_total", b.evicted_total},
                 {"quarantined_total", b.quarantined_total}, {"append_calls_total", b.append_calls_total},
                 {"duplicates_total", b.duplicates_total},
                 {"duplicates_conflicting_total", b.duplicates_conflicting_total},
                 {"stale_sequence_total", b.stale_sequence_total}, {"reboots_total", b.reboots_total},
                 {"seq_wraps_total", b.seq_wraps_total}, {"seq_gaps_total", b.seq_gaps_total},
                 {"seq_late_total", b.seq_late_total}, {"seq_zero_ambiguous_total", b.seq_zero_ambiguous_total},
                 {"dedup_unknown_total", b.dedup_unknown_total}, {"dedup_sources", b.dedup_sources},
                 {"summarized_total", b.summarized_total},
                 {"cursors", cursors}};
  const auto& w = snap.windowing;
  s["windowing"] = {{"kind", snap.window_kind},
                    {"window_size_ms", snap.window_size_ms},
                    {"group_by_tag", snap.group_by_tag},
                    {"events", w.events},
                    {"windows_closed", w.windows_closed},
                    {"open_windows", w.open_windows},
                    {"late_events", w.late_events},
                    {"late_stored", w.late_stored},
                    {"untagged_events", w.untagged_events},
                    {"idle_transitions", w.idle_transitions},
                    {"devices", w.devices},
                    {"unwindowed_events", w.unwindowed_events},
                    {"groups", w.groups},
                    {"decode_errors", w.decode_errors},
                    {"commits", w.commits},
                    {"commit_errors", w.commit_errors},
                    {"aggregates_forwarded", w.aggregates_forwarded},
                    {"results_stored", w.results_stored},
                    {"results_pruned", w.results_pruned},
                    {"state_restored", w.state_restored},
                    {"state_discarded", w.state_discarded},
                    {"gateway_time_ms", w.gateway_time_ms},
                    {"summarized_evictions", b.summarized_total},
                    {"acked_seq", w.acked.value}};
  auto sink_json = [](const Snapshot::Kafka& sink) {
    const auto& k = sink.stats;
    return json{{"bootstrap", sink.bootstrap},         {"embedded", sink.embedded},
                {"topic", sink.topic},                 {"cursor", sink.cursor},
                {"state", std::string(uplink::to_string(k.state))},
                {"batches_sent", k.batches_sent},      {"batches_acked", k.batches_acked},
                {"records_acked", k.records_acked},    {"bytes_sent", k.bytes_sent},
                {"bytes_raw", k.bytes_raw},            {"delivery_errors", k.delivery_errors},
                {"records_skipped", k.records_skipped}, {"last_acked_seq", k.last_acked.value},
                {"in_flight", k.in_flight},            {"partition", k.partition},
                {"read_backs", k.read_backs},          {"upstream_tail_seq", k.upstream_tail.value},
                {"records_found_upstream", k.records_found_upstream},
                {"rate_limited_ms", k.rate_limited_ms}, {"drain_paced_ms", k.drain_paced_ms},
                {"max_bytes_per_s", sink.max_bytes_per_s},
                {"batches_resent", k.batches_resent}, {"connects", k.connects},
                {"exactly_once", sink.exactly_once},   {"transactions_committed", k.transactions_committed},
                {"transactions_aborted", k.transactions_aborted}, {"fenced", k.fenced},
                {"last_error", k.last_error},          {"last_delivery_error", k.last_delivery_error}};
  };
  if (snap.kafka_aggregates) s["uplink"]["kafka_aggregates"] = sink_json(*snap.kafka_aggregates);
  // A telemetry sink: the same fields, plus the latency of delivery, and for the primary sink how
  // long it has been down.
  auto telemetry_json = [&](const Snapshot::Kafka& sink, bool primary) {
    json j = sink_json(sink);
    const auto& lat = sink.stats.latency;
    j["down_for_ms"] = primary && snap.uplink_down_ms ? json(*snap.uplink_down_ms) : json(nullptr);
    j["e2e_latency"] = {{"records", lat.count},
                        {"mean_s", lat.count > 0 ? lat.sum_s / static_cast<double>(lat.count) : 0.0},
                        {"event_time_ahead", lat.negative}};
    return j;
  };
  if (snap.has_kafka) s["uplink"]["kafka"] = telemetry_json(snap.kafka, true);
  if (snap.pulsar) s["uplink"]["pulsar"] = telemetry_json(*snap.pulsar, !snap.has_kafka);
  if (snap.pulsar_aggregates) s["uplink"]["pulsar_aggregates"] = sink_json(*snap.pulsar_aggregates);
  if (snap.http) {
    const auto& h = *snap.http;
    s["http"] = {{"connections_total", h.connections_total}, {"connections_refused", h.connections_refused},
                 {"connections_open", h.connections_open},   {"requests_total", h.requests_total},
                 {"unauthorized_total", h.unauthorized_total}, {"rejected_total", h.rejected_total},
                 {"timeouts_total", h.timeouts_total},       {"responses_4xx", h.responses_4xx},
                 {"responses_5xx", h.responses_5xx}};
  }
  return s.dump(2) + "\n";
}

}  // namespace gw::gateway
