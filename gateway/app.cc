// Wiring of the stages and the status snapshot. The snapshot (gateway/status.h) is rebuilt by a
// publisher thread every 500 ms from each stage's stats() and swapped in under a mutex; the HTTP API
// (gateway/api.h) reads the pointer, never the stages' internals (aggregate queries take the
// windowing store's own short lock; dead-letter reads are LMDB read transactions).
#include "gateway/app.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>

#include "gateway/api.h"
#include "gateway/ingest_workers.h"
#include "gateway/instance_lock.h"
#include "ingest/plugin_server.h"
#include "gateway/metrics.h"
#include "gateway/status.h"
#include "uplink/kafka_mock.h"

namespace gw::gateway {
namespace {

using Clock = std::chrono::steady_clock;

class GatewayApp final : public App {
 public:
  explicit GatewayApp(Config config) : config_(std::move(config)) {}
  ~GatewayApp() override { stop(); }

  std::expected<void, std::string> run() {
    auto lock = InstanceLock::acquire(config_.buffer.path);
    if (!lock) return std::unexpected("buffer: " + lock.error());
    lock_ = std::move(*lock);
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
    if (kafka_enabled() && !config_.kafka_aggregates_topic.empty()) {
      if (auto r = ring_->register_cursor(aggregates_options().cursor); !r) {
        return std::unexpected("buffer: cannot register the aggregates cursor: " + r.error().message());
      }
    }
    if (pulsar_aggregates_enabled()) {
      if (auto r = ring_->register_cursor(pulsar_aggregates_options().cursor); !r) {
        return std::unexpected("buffer: cannot register the Pulsar aggregates cursor: " + r.error().message());
      }
    }
    // The Pulsar sink's cursor, like the aggregates cursor, exists before the Kafka sink acks.
    if (!config_.pulsar.service_url.empty()) {
      auto sink = uplink::PulsarUplink::create(config_.pulsar, config_.gateway_id, *ring_);
      if (!sink) return std::unexpected("uplink.pulsar: " + sink.error().message());
      pulsar_ = std::move(*sink);
      if (auto r = pulsar_->start(); !r) return std::unexpected("uplink.pulsar: " + r.error().message());
    }
    if (pulsar_aggregates_enabled()) {
      uplink::PulsarOptions options = pulsar_aggregates_options();
      auto sink = uplink::PulsarUplink::create(options, config_.gateway_id, *ring_);
      if (!sink) return std::unexpected(options.cursor + ": " + sink.error().message());
      pulsar_aggregates_ = std::move(*sink);
      if (auto r = pulsar_aggregates_->start(); !r) return std::unexpected(options.cursor + ": " + r.error().message());
    }
    if (kafka_enabled()) {
      auto kafka = uplink::KafkaUplink::create(config_.kafka, config_.gateway_id, *ring_);
      if (!kafka) return std::unexpected("uplink.kafka: " + kafka.error().message());
      kafka_ = std::move(*kafka);
      if (auto r = kafka_->start(); !r) return std::unexpected("uplink.kafka: " + r.error().message());
    }
    if (kafka_enabled() && !config_.kafka_aggregates_topic.empty()) {
      uplink::KafkaOptions options = aggregates_options();
      auto sink = uplink::KafkaUplink::create(options, config_.gateway_id, *ring_);
      if (!sink) return std::unexpected(options.cursor + ": " + sink.error().message());
      kafka_aggregates_ = std::move(*sink);
      if (auto r = kafka_aggregates_->start(); !r) return std::unexpected(options.cursor + ": " + r.error().message());
    }

    if (config_.dead_letters.path.empty()) config_.dead_letters.path = config_.buffer.path + "/dead-letters";
    auto dlq = ingest::DeadLetters::open(config_.dead_letters);
    if (!dlq) return std::unexpected("dead letters: cannot open " + config_.dead_letters.path + ": " + dlq.error().message());
    dead_letters_ = std::move(*dlq);

    // The publisher thread starts only once every stage pointer is set (it reads them unlocked);
    // until then, snapshots are published from this thread.
    publish_status();
    HttpOptions http_options = config_.http;
    http_options.open_paths = api_open_paths();
    ApiSources sources;
    sources.status = [this] { return published(); };
    sources.aggregates = [this](const windowing::Query& q) { return windowing_->query(q); };
    sources.late = [this](std::size_t limit, std::optional<std::uint64_t> before) {
      return windowing_->late(limit, before);
    };
    sources.dead_letters = [this](std::optional<ingest::errc> reason, std::size_t limit) {
      return dead_letters_->list(reason, limit);
    };
    auto http = HttpServer::start(http_options, [sources](const HttpRequest& req) { return handle_api(sources, req); });
    if (!http) return std::unexpected("http: cannot listen on " + config_.http.listen + ": " + http.error().message());
    http_ = std::move(*http);
    spdlog::info("http: status page at http://{}/{}", http_->address(),
                 config_.http.token.empty() ? "" : " (bearer token required, except for / and /healthz)");

    local_store_ = ingest::make_local_store(*ring_, dead_letters_.get());
    if (config_.ingest_mode == IngestMode::plugin) {
      ingest::PluginServerOptions options;
      options.socket_path = plugin_socket(config_);
      options.socket_group = config_.plugin_socket_group;
      options.admit = {config_.mqtt.device_pattern, config_.mqtt.limits,
                       ingest::compile_sources(config_.mqtt.sources, config_.mqtt.sparkplug_state_dir)};
      auto server = ingest::PluginServer::start(options, *local_store_);
      if (!server) return std::unexpected("ingest: cannot listen on " + options.socket_path + ": " + server.error().message());
      plugin_ = std::move(*server);
      publish_status();
      publisher_ = std::thread([this] { publish_loop(); });
      return {};
    }
    if (config_.mqtt_sessions > 1) {
      if (config_.config_path.empty()) return std::unexpected("mqtt.sessions > 1 needs a config file (--config)");
      IngestWorkersOptions options;
      options.sessions = config_.mqtt_sessions;
      options.config_path = config_.config_path;
      if (config_.buffer.durability == buffer::Durability::fsync) options.gather_wait = config_.buffer.group_commit_wait;
      auto workers = IngestWorkers::start(options, *local_store_);
      if (!workers) return std::unexpected("mqtt: " + workers.error());
      workers_ = std::move(*workers);
      publish_status();
      publisher_ = std::thread([this] { publish_loop(); });
      return {};
    }
    auto source = ingest::MqttSource::create(config_.mqtt, *local_store_);
    if (!source) return std::unexpected("mqtt: " + source.error().message());
    source_ = std::move(*source);
    publish_status();
    publisher_ = std::thread([this] { publish_loop(); });
    source_->start();  // connects in the background; a broker that is down is retried
    return {};
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    if (source_) source_->stop();
    if (plugin_) plugin_->stop();
    if (workers_) workers_->stop();
    if (kafka_aggregates_) kafka_aggregates_->stop();  // stopped in reverse order of starting
    if (kafka_) kafka_->stop();
    if (pulsar_aggregates_) pulsar_aggregates_->stop();
    if (pulsar_) pulsar_->stop();
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
  bool kafka_enabled() const { return !config_.kafka.brokers.empty(); }

  // The aggregates sink: the raw sink's options with its own topic, cursor and record type.
  uplink::KafkaOptions aggregates_options() const {
    uplink::KafkaOptions o = config_.kafka;
    o.topic = config_.kafka_aggregates_topic;
    o.cursor = "uplink.kafka.aggregates";
    o.records = buffer::RecordType::aggregate;
    return o;
  }

  bool pulsar_aggregates_enabled() const {
    return !config_.pulsar.service_url.empty() && !config_.pulsar_aggregates_topic.empty();
  }

  // The Pulsar aggregates sink: the Pulsar sink's options with its own topic, cursor, record type
  // (and so its own producer name).
  uplink::PulsarOptions pulsar_aggregates_options() const {
    uplink::PulsarOptions o = config_.pulsar;
    o.topic = config_.pulsar_aggregates_topic;
    o.cursor = "uplink.pulsar.aggregates";
    o.records = buffer::RecordType::aggregate;
    if (!o.producer_name.empty()) o.producer_name += ".aggregate";
    return o;
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

  // Takes every stage's stats, derives rates and readiness, renders /status and /metrics once for
  // every request until the next snapshot.
  void publish_status() {
    auto out = std::make_shared<PublishedStatus>();
    Snapshot& s = out->snapshot;
    auto now = Clock::now();
    s.gateway_id = config_.gateway_id;
    s.version = kVersion;
    s.uptime_s = std::chrono::duration_cast<std::chrono::seconds>(now - started_).count();
    s.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch()).count();
    if (source_) s.ingest = source_->stats();
    if (plugin_) s.ingest = plugin_->stats();
    if (workers_) {
      s.ingest = workers_->stats();
      s.ingest_workers = workers_->workers();
    }
    s.mqtt_sessions = config_.mqtt_sessions;
    if (dead_letters_) s.dead_letters = dead_letters_->stats();
    s.buffer = ring_->stats();
    s.windowing = windowing_->stats();
    s.window_size_ms = config_.windowing.size.count();
    s.window_kind = windowing::to_string(config_.windowing.kind);
    s.group_by_tag = config_.windowing.group_by_tag;
    s.has_kafka = kafka_ != nullptr;
    if (kafka_) s.kafka.stats = kafka_->stats();
    s.kafka.bootstrap = config_.kafka.brokers;
    s.kafka.topic = config_.kafka.topic;
    s.kafka.cursor = config_.kafka.cursor;
    s.kafka.embedded = mock_ != nullptr;
    s.kafka.max_bytes_per_s = config_.kafka.max_bytes_per_s;
    s.kafka.batch_max_records = config_.kafka.batch_max_records;
    s.kafka.exactly_once = config_.kafka.exactly_once;
    if (kafka_aggregates_) {
      Snapshot::Kafka a = s.kafka;
      a.stats = kafka_aggregates_->stats();
      a.topic = config_.kafka_aggregates_topic;
      a.cursor = aggregates_options().cursor;
      s.kafka_aggregates = std::move(a);
    }
    if (pulsar_) {
      Snapshot::Kafka p;
      p.stats = pulsar_->stats();
      p.bootstrap = config_.pulsar.service_url;
      p.topic = "persistent://" + config_.pulsar.tenant + "/" + config_.pulsar.ns + "/" + config_.pulsar.topic;
      p.cursor = config_.pulsar.cursor;
      p.batch_max_records = config_.pulsar.batch_max_records;
      p.max_bytes_per_s = config_.pulsar.max_bytes_per_s;
      if (pulsar_aggregates_) {
        Snapshot::Kafka a = p;
        a.stats = pulsar_aggregates_->stats();
        a.topic = "persistent://" + config_.pulsar.tenant + "/" + config_.pulsar.ns + "/" + config_.pulsar_aggregates_topic;
        a.cursor = pulsar_aggregates_options().cursor;
        s.pulsar_aggregates = std::move(a);
      }
      s.pulsar = std::move(p);
    }
    if (http_) s.http = http_->stats();
    trends_.update(s, now);
    s.not_ready = readiness(s, config_.readiness);
    out->status_json = status_json(s);
    out->metrics_text = metrics_text(s);
    std::lock_guard lock(snapshot_mutex_);
    published_ = std::move(out);
  }

  std::shared_ptr<const PublishedStatus> published() const {
    std::lock_guard lock(snapshot_mutex_);
    return published_;
  }

  Config config_;
  Clock::time_point started_ = Clock::now();
  std::atomic<bool> stopped_{false};
  std::optional<InstanceLock> lock_;  // before ring_: held until the ring is closed
  std::unique_ptr<buffer::Ring> ring_;
  std::unique_ptr<uplink::MockCluster> mock_;
  std::unique_ptr<windowing::Stage> windowing_;
  std::unique_ptr<uplink::KafkaUplink> kafka_;
  std::unique_ptr<uplink::KafkaUplink> kafka_aggregates_;  // null: aggregates_topic is empty
  std::unique_ptr<uplink::PulsarUplink> pulsar_aggregates_;  // null: no Pulsar, or its aggregates_topic is empty
  std::unique_ptr<uplink::PulsarUplink> pulsar_;  // null: [uplink.pulsar] service_url is empty
  std::unique_ptr<ingest::DeadLetters> dead_letters_;  // before source_: outlives it
  std::unique_ptr<ingest::EventStore> local_store_;  // before source_ and workers_: outlives them
  std::unique_ptr<ingest::MqttSource> source_;
  std::unique_ptr<ingest::PluginServer> plugin_;
  std::unique_ptr<IngestWorkers> workers_;
  std::unique_ptr<HttpServer> http_;

  Trends trends_;  // the publisher's
  mutable std::mutex snapshot_mutex_;
  std::shared_ptr<const PublishedStatus> published_;
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
