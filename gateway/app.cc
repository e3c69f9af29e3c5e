// Wiring of the stages and the status snapshot. The snapshot is rebuilt by a publisher thread every
// 500 ms from each stage's stats() and swapped in under a mutex; HTTP handlers read the pointer,
// never the stages' internals (aggregate queries take the windowing store's own short lock).
#include "gateway/app.h"

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "gateway/ingest_workers.h"
#include "uplink/kafka_mock.h"

namespace gw::gateway {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

json aggregate_json(const windowing::Aggregate& a) {
  json j = {{"id", a.id},
            {"kind", windowing::to_string(a.kind)},
            {"scope", windowing::to_string(a.scope)},
            {"metric", a.metric},
            {"window_start_ms", a.window_start.ms},
            {"window_end_ms", a.window_end.ms},
            {"closed_at_ms", a.closed_at_ms},
            {"count", a.count},
            {"sum", a.sum},
            {"min", a.min},
            {"max", a.max},
            {"mean", a.mean},
            {"stddev", a.stddev},
            {"first", a.first},
            {"first_time_ms", a.first_time.ms},
            {"last", a.last},
            {"last_time_ms", a.last_time.ms},
            {"rate_per_s", a.rate}};
  if (a.scope == windowing::Scope::device) {
    j["device"] = a.key;
  } else {
    j["group"] = a.key;
    j["group_tag"] = a.group_tag;
  }
  if (a.has_quantiles) j["quantiles"] = {{"p50", a.p50}, {"p90", a.p90}, {"p99", a.p99}};
  return j;
}

json late_json(const windowing::LateEvent& e) {
  json metrics = json::object();
  for (const auto& m : e.metrics) metrics[m.name] = m.value;
  return {{"id", e.id},
          {"device", e.device.value},
          {"seq", e.seq.value},
          {"time_ms", e.time.ms},
          {"seen_at_ms", e.seen_at_ms},
          {"watermark_ms", e.watermark_ms},
          {"windows_missed", e.windows_missed},
          {"windows_folded", e.windows_folded},
          {"metrics", metrics}};
}

HttpResponse json_response(int status, const json& body) { return {status, "application/json", body.dump() + "\n"}; }
HttpResponse bad_parameter(const std::string& name, const std::string& why) {
  return json_response(400, {{"error", "bad parameter '" + name + "': " + why}});
}

// Reads an optional integer query parameter; an error names the parameter.
std::optional<HttpResponse> int_param(const HttpRequest& req, const std::string& name, std::int64_t min,
                                      std::int64_t max, std::optional<std::int64_t>& out) {
  auto it = req.query.find(name);
  if (it == req.query.end()) return std::nullopt;
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  if (ec != std::errc{} || ptr != it->second.data() + it->second.size()) return bad_parameter(name, "not an integer");
  if (v < min || v > max) return bad_parameter(name, "out of range " + std::to_string(min) + ".." + std::to_string(max));
  out = v;
  return std::nullopt;
}

class GatewayApp final : public App {
 public:
  explicit GatewayApp(Config config) : config_(std::move(config)) {}
  ~GatewayApp() override { stop(); }

  std::expected<void, std::string> run() {
    auto ring = buffer::Ring::open(config_.buffer);
    if (!ring) return std::unexpected("buffer: cannot open " + config_.buffer.path + ": " + ring.error().message());
    ring_ = std::move(*ring);
    spdlog::info("buffer: {} open, last seq {}", config_.buffer.path, ring_->last_seq().value);

    if (config_.kafka.brokers == "embedded") {
      auto cluster = uplink::MockCluster::create(1);
      if (!cluster) return std::unexpected("embedded kafka: " + cluster.error().message());
      mock_ = std::move(*cluster);
      for (const std::string& topic : {config_.kafka.topic, config_.kafka_aggregates_topic}) {
        if (topic.empty()) continue;
        if (auto r = mock_->create_topic(topic, 1); !r) {
          return std::unexpected("embedded kafka: cannot create topic " + topic + ": " + r.error().message());
        }
      }
      config_.kafka.brokers = mock_->bootstrap();
      spdlog::warn("uplink: embedded Kafka (librdkafka mock cluster, in memory, demo only) at {}", config_.kafka.brokers);
    }

    windowing_ = std::make_unique<windowing::Stage>(config_.windowing, *ring_);
    if (auto r = windowing_->start(); !r) return std::unexpected("windowing: " + r.error().message());

    // The aggregates sink starts after the raw sink; its cursor must exist before, or the raw
    // sink's first acks could trim aggregate records it never saw (a new cursor starts at the
    // oldest record stored when it is registered).
    if (!config_.kafka_aggregates_topic.empty()) {
      if (auto r = ring_->register_cursor(aggregates_options().cursor); !r) {
        return std::unexpected("buffer: cannot register the aggregates cursor: " + r.error().message());
      }
    }
    auto kafka = uplink::KafkaUplink::create(config_.kafka, config_.gateway_id, *ring_);
    if (!kafka) return std::unexpected("uplink.kafka: " + kafka.error().message());
    kafka_ = std::move(*kafka);
    if (auto r = kafka_->start(); !r) return std::unexpected("uplink.kafka: " + r.error().message());
    if (!config_.kafka_aggregates_topic.empty()) {
      uplink::KafkaOptions options = aggregates_options();
      auto sink = uplink::KafkaUplink::create(options, config_.gateway_id, *ring_);
      if (!sink) return std::unexpected(options.cursor + ": " + sink.error().message());
      kafka_aggregates_ = std::move(*sink);
      if (auto r = kafka_aggregates_->start(); !r) return std::unexpected(options.cursor + ": " + r.error().message());
    }

    publish_status();
    publisher_ = std::thread([this] { publish_loop(); });
    auto http = HttpServer::start(config_.http, [this](const HttpRequest& req) { return handle(req); });
    if (!http) return std::unexpected("http: cannot listen on " + config_.http.listen + ": " + http.error().message());
    http_ = std::move(*http);
    spdlog::info("http: status at http://{}/status", http_->address());

    if (config_.dead_letters.path.empty()) config_.dead_letters.path = config_.buffer.path + "/dead-letters";
    auto dlq = ingest::DeadLetters::open(config_.dead_letters);
    if (!dlq) return std::unexpected("dead letters: cannot open " + config_.dead_letters.path + ": " + dlq.error().message());
    dead_letters_ = std::move(*dlq);

    local_store_ = ingest::make_local_store(*ring_, dead_letters_.get());
    if (config_.mqtt_sessions > 1) {
      if (config_.config_path.empty()) return std::unexpected("mqtt.sessions > 1 needs a config file (--config)");
      IngestWorkersOptions options;
      options.sessions = config_.mqtt_sessions;
      options.config_path = config_.config_path;
      auto workers = IngestWorkers::start(options, *local_store_);
      if (!workers) return std::unexpected("mqtt: " + workers.error());
      workers_ = std::move(*workers);
      return {};
    }
    auto source = ingest::MqttSource::create(config_.mqtt, *local_store_);
    if (!source) return std::unexpected("mqtt: " + source.error().message());
    source_ = std::move(*source);
    source_->start();  // connects in the background; a broker that is down is retried
    return {};
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    if (source_) source_->stop();
    if (workers_) workers_->stop();
    if (kafka_aggregates_) kafka_aggregates_->stop();  // stopped in reverse order of starting
    if (kafka_) kafka_->stop();
    if (windowing_) windowing_->stop();
    if (http_) http_->stop();
    {
      std::lock_guard lock(publish_mutex_);
      publishing_ = false;
    }
    publish_cv_.notify_all();
    if (publisher_.joinable()) publisher_.join();
    mock_.reset();
  }

  std::string http_address() const override { return http_ ? http_->address() : ""; }

 private:
  // The aggregates sink: the raw sink's options with its own topic, cursor and record type.
  uplink::KafkaOptions aggregates_options() const {
    uplink::KafkaOptions o = config_.kafka;
    o.topic = config_.kafka_aggregates_topic;
    o.cursor = "uplink.kafka.aggregates";
    o.records = buffer::RecordType::aggregate;
    return o;
  }

  json sink_json(const uplink::SinkStats& k, const std::string& topic) const {
    return {{"bootstrap", config_.kafka.brokers},   {"embedded", mock_ != nullptr},
            {"topic", topic},                       {"state", std::string(uplink::to_string(k.state))},
            {"batches_sent", k.batches_sent},       {"batches_acked", k.batches_acked},
            {"records_acked", k.records_acked},     {"bytes_sent", k.bytes_sent},
            {"bytes_raw", k.bytes_raw},             {"delivery_errors", k.delivery_errors},
            {"records_skipped", k.records_skipped},
            {"last_acked_seq", k.last_acked.value}, {"in_flight", k.in_flight},
            {"partition", k.partition},             {"read_backs", k.read_backs},
            {"upstream_tail_seq", k.upstream_tail.value},
            {"records_found_upstream", k.records_found_upstream},
            {"rate_limited_ms", k.rate_limited_ms}, {"drain_paced_ms", k.drain_paced_ms},
            {"max_bytes_per_s", config_.kafka.max_bytes_per_s},
            {"last_error", k.last_error}};
  }

  void publish_loop() {
    std::unique_lock lock(publish_mutex_);
    while (publishing_) {
      publish_cv_.wait_for(lock, std::chrono::milliseconds(500));
      if (!publishing_) break;
      lock.unlock();
      publish_status();
      lock.lock();
    }
  }

  void publish_status() {
    json s;
    s["gateway_id"] = config_.gateway_id;
    s["version"] = kVersion;
    s["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - started_).count();

    if (source_ || workers_) {
      auto in = source_ ? source_->stats() : workers_->stats();
      s["ingest"] = {{"connected", in.connected},           {"messages_received", in.messages_received},
                     {"events_stored", in.events_stored},   {"decode_errors", in.decode_errors_total},
                     {"duplicates", in.duplicates},         {"sessions", config_.mqtt_sessions},
                     {"store_retries", in.store_retries},   {"reconnects", in.reconnects},
                     {"subscribed", in.subscribed},
                     {"device_mismatches", in.device_mismatches},
                     {"dead_letter_failures", in.dead_letter_failures},
                     {"last_error", in.last_error}};
      json reasons = json::object();
      for (const auto& [reason, n] : in.decode_errors) reasons[std::string(ingest::reason_name(reason))] = n;
      s["ingest"]["rejected_by_reason"] = reasons;
      if (workers_) {
        json list = json::array();
        for (const auto& w : workers_->workers()) {
          list.push_back({{"index", w.index}, {"pid", w.pid}, {"starts", w.starts}, {"last_exit", w.last_exit},
                          {"connected", w.stats.connected}, {"subscribed", w.stats.subscribed},
                          {"events_stored", w.stats.events_stored}});
        }
        s["ingest"]["workers"] = list;
      }
    }
    if (dead_letters_) {
      auto d = dead_letters_->stats();
      json reasons = json::object();
      for (const auto& [reason, n] : d.by_reason) reasons[std::string(ingest::reason_name(reason))] = n;
      s["dead_letters"] = {{"entries", d.entries}, {"stored_total", d.stored_total},
                           {"evicted_total", d.evicted_total}, {"by_reason", reasons}};
    }
    auto b = ring_->stats();
    json cursors = json::array();
    for (const auto& c : b.cursors) {
      cursors.push_back({{"name", c.name}, {"acked", c.acked.value}, {"lag", c.lag}, {"evicted", c.evicted}});
    }
    s["buffer"] = {{"records", b.records},          {"bytes", b.bytes},
                   {"max_bytes", config_.buffer.max_bytes},
                   {"first_seq", b.first.value},    {"last_seq", b.last.value},
                   {"oldest_age_ms", b.oldest_age_ms}, {"appended_total", b.appended_total},
                   {"trimmed_total", b.trimmed_total}, {"commits_total", b.commits_total},
                   {"map_bytes", b.map_bytes},        {"full", b.full},
                   {"blocked_appends", b.blocked_appends}, {"blocked_total", b.blocked_total},
                   {"no_space", b.no_space},          {"no_space_total", b.no_space_total},
                   {"evicted_total", b.evicted_total}, {"quarantined_total", b.quarantined_total},
                   {"append_calls_total", b.append_calls_total},
                   {"duplicates_total", b.duplicates_total}, {"dedup_resets_total", b.dedup_resets_total},
                   {"dedup_unknown_total", b.dedup_unknown_total}, {"dedup_sources", b.dedup_sources},
                   {"summarized_total", b.summarized_total},
                   {"cursors", cursors}};
    auto w = windowing_->stats();
    s["windowing"] = {{"kind", windowing::to_string(config_.windowing.kind)},
                      {"window_size_ms", config_.windowing.size.count()},
                      {"group_by_tag", config_.windowing.group_by_tag},
                      {"events", w.events},
                      {"windows_closed", w.windows_closed},
                      {"open_windows", w.open_windows},
                      {"late_events", w.late_events},
                      {"late_stored", w.late_stored},
                      {"untagged_events", w.untagged_events},
                      {"idle_transitions", w.idle_transitions},
                      {"devices", w.devices},
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
    s["uplink"]["kafka"] = sink_json(kafka_->stats(), config_.kafka.topic);
    // Absent when aggregates are not forwarded ([uplink.kafka] aggregates_topic = "").
    if (kafka_aggregates_) {
      s["uplink"]["kafka_aggregates"] = sink_json(kafka_aggregates_->stats(), config_.kafka_aggregates_topic);
    }
    auto text = std::make_shared<const std::string>(s.dump(2) + "\n");
    std::lock_guard lock(snapshot_mutex_);
    snapshot_ = std::move(text);
  }

  std::shared_ptr<const std::string> snapshot() const {
    std::lock_guard lock(snapshot_mutex_);
    return snapshot_;
  }

  HttpResponse handle(const HttpRequest& req) {
    if (req.method != "GET" && req.method != "HEAD") return json_response(405, {{"error", "only GET"}});
    if (req.path == "/healthz") return json_response(200, {{"status", "ok"}});
    if (req.path == "/status") return {200, "application/json", *snapshot()};
    if (req.path == "/aggregates") return aggregates(req);
    if (req.path == "/late") return late_list(req);
    if (req.path == "/dlq") return dead_letter_list(req);
    if (req.path == "/devices") {
      json out = json::array();
      for (const auto& d : windowing_->devices()) out.push_back(d);
      return json_response(200, out);
    }
    return json_response(404, {{"error", "no such path: " + req.path}});
  }

  // GET /dlq?reason=&limit=: the newest rejected messages, with their first bytes in hex.
  HttpResponse dead_letter_list(const HttpRequest& req) {
    for (const auto& [name, value] : req.query) {
      if (name != "reason" && name != "limit") return bad_parameter(name, "unknown parameter (reason, limit)");
    }
    std::optional<ingest::errc> reason;
    if (auto it = req.query.find("reason"); it != req.query.end()) {
      reason = ingest::reason_from_name(it->second);
      if (!reason) {
        return bad_parameter("reason", "one of malformed, unsupported_version, missing_field, bad_value, oversize, "
                                       "bad_timestamp");
      }
    }
    std::optional<std::int64_t> limit;
    if (auto bad = int_param(req, "limit", 1, 1000, limit)) return *bad;
    json out = json::array();
    for (const auto& d : dead_letters_->list(reason, static_cast<std::size_t>(limit.value_or(100)))) {
      static constexpr char kHex[] = "0123456789abcdef";
      std::string hex;
      for (std::uint8_t b : d.raw) {
        hex += kHex[b >> 4];
        hex += kHex[b & 15];
      }
      out.push_back({{"id", d.id}, {"received_ms", d.received_ms}, {"topic", d.topic},
                     {"reason", std::string(ingest::reason_name(d.reason))}, {"size", d.size}, {"raw_hex", hex}});
    }
    return json_response(200, out);
  }

  // GET /aggregates?device=|group=&metric=&window=&from=&to=&limit=: stored closed windows, newest first.
  HttpResponse aggregates(const HttpRequest& req) {
    for (const auto& [name, value] : req.query) {
      if (name != "device" && name != "group" && name != "metric" && name != "window" && name != "from" &&
          name != "to" && name != "limit") {
        return bad_parameter(name, "unknown parameter (device, group, metric, window, from, to, limit)");
      }
    }
    windowing::Query q;
    if (auto it = req.query.find("device"); it != req.query.end()) q.device = ingest::DeviceId{it->second};
    if (auto it = req.query.find("group"); it != req.query.end()) q.group = it->second;
    if (q.device && q.group) return bad_parameter("group", "either device or group");
    if (auto it = req.query.find("metric"); it != req.query.end()) q.metric = it->second;
    if (auto it = req.query.find("window"); it != req.query.end()) {
      for (auto k : {windowing::WindowKind::tumbling, windowing::WindowKind::hopping, windowing::WindowKind::session}) {
        if (it->second == windowing::to_string(k)) q.kind = k;
      }
      if (!q.kind) return bad_parameter("window", "one of tumbling, hopping, session");
    }
    std::optional<std::int64_t> from, to, limit;
    if (auto bad = int_param(req, "from", 0, INT64_MAX, from)) return *bad;
    if (auto bad = int_param(req, "to", 0, INT64_MAX, to)) return *bad;
    if (auto bad = int_param(req, "limit", 1, 10000, limit)) return *bad;
    if (from) q.from = ingest::EventTime{*from};
    if (to) q.to = ingest::EventTime{*to};
    if (limit) q.limit = static_cast<std::size_t>(*limit);
    json out = json::array();
    for (const auto& a : windowing_->query(q)) out.push_back(aggregate_json(a));
    return json_response(200, out);
  }

  // GET /late?limit=: the newest events that arrived after their window closed.
  HttpResponse late_list(const HttpRequest& req) {
    for (const auto& [name, value] : req.query) {
      if (name != "limit") return bad_parameter(name, "unknown parameter (limit)");
    }
    std::optional<std::int64_t> limit;
    if (auto bad = int_param(req, "limit", 1, 10000, limit)) return *bad;
    json out = json::array();
    for (const auto& e : windowing_->late(static_cast<std::size_t>(limit.value_or(100)))) out.push_back(late_json(e));
    return json_response(200, out);
  }

  Config config_;
  Clock::time_point started_ = Clock::now();
  std::atomic<bool> stopped_{false};
  std::unique_ptr<buffer::Ring> ring_;
  std::unique_ptr<uplink::MockCluster> mock_;
  std::unique_ptr<windowing::Stage> windowing_;
  std::unique_ptr<uplink::KafkaUplink> kafka_;
  std::unique_ptr<uplink::KafkaUplink> kafka_aggregates_;  // null: aggregates_topic is empty
  std::unique_ptr<ingest::DeadLetters> dead_letters_;  // before source_: outlives it
  std::unique_ptr<ingest::EventStore> local_store_;    // before source_ and workers_: outlives them
  std::unique_ptr<ingest::MqttSource> source_;
  std::unique_ptr<IngestWorkers> workers_;
  std::unique_ptr<HttpServer> http_;

  mutable std::mutex snapshot_mutex_;
  std::shared_ptr<const std::string> snapshot_;
  std::mutex publish_mutex_;
  std::condition_variable publish_cv_;
  bool publishing_ = true;
  std::thread publisher_;
};

}  // namespace

std::expected<std::unique_ptr<App>, std::string> App::start(const Config& config) {
  auto app = std::make_unique<GatewayApp>(config);
  if (auto r = app->run(); !r) {
    app->stop();
    return std::unexpected(r.error());
  }
  return app;
}

}  // namespace gw::gateway
