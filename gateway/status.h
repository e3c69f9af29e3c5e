// The status snapshot: every stage's counters taken at one moment by the gateway's publisher
// thread, plus what only a series of snapshots shows (rates, the backlog's drain ETA, how long the
// uplink has been down) and the readiness verdict. /status, /metrics and /readyz are rendered from
// it; the HTTP server never reaches into a stage.
//
// Thread-safety: Snapshot is a plain value (published as shared_ptr<const Snapshot>); Trends is
// owned by the publisher thread; the render functions are pure.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "buffer/ring.h"
#include "gateway/http_server.h"
#include "gateway/ingest_workers.h"
#include "ingest/dead_letters.h"
#include "ingest/mqtt_source.h"
#include "uplink/sink.h"
#include "windowing/stage.h"

namespace gw::gateway {

struct ReadinessOptions {
  // /readyz fails once the uplink has been down this long (the gateway keeps buffering, but an
  // operator wants to know). 0: the uplink's state never makes the gateway unready.
  std::chrono::milliseconds uplink_down_max{60000};
};

// What the backlog of the uplink is doing.
enum class BacklogState {
  none,      // at most two full batches behind the buffer's head (live traffic)
  draining,  // behind, and catching up: drain_eta_s says when it is done at the current rates
  growing,   // behind, and not catching up (uplink not up, or slower than ingest)
};
std::string_view to_string(BacklogState state) noexcept;

struct Snapshot {
  std::string gateway_id;
  std::string version;
  std::int64_t uptime_s = 0;
  std::int64_t unix_ms = 0;  // wall clock when taken

  std::optional<ingest::MqttStats> ingest;              // absent until the MQTT source exists
  int mqtt_sessions = 1;
  std::vector<IngestWorkerState> ingest_workers;        // [mqtt] sessions > 1: each worker process
  std::optional<ingest::DeadLetterStats> dead_letters;  // absent until the store is open
  buffer::Stats buffer;
  windowing::Stats windowing;
  std::int64_t window_size_ms = 0;
  std::string window_kind;   // tumbling, hopping, session
  std::string group_by_tag;  // empty: no group windows
  struct Kafka {
    uplink::SinkStats stats;
    std::string bootstrap;
    std::string topic;
    std::string cursor;  // its cursor in the buffer
    bool embedded = false;
    std::uint64_t max_bytes_per_s = 0;
    std::uint64_t batch_max_records = 0;
    bool exactly_once = false;  // Kafka: transactions (uplink.kafka.exactly_once)
  };
  Kafka kafka;                           // the Kafka telemetry sink (when has_kafka)
  bool has_kafka = true;                 // false: [uplink.kafka] brokers not set (Pulsar only)
  std::optional<Kafka> kafka_aggregates;  // the aggregates sink, when [uplink.kafka] aggregates_topic is set
  // The Pulsar telemetry sink, when [uplink.pulsar] service_url is set (bootstrap = the service URL,
  // topic = persistent://tenant/namespace/topic).
  std::optional<Kafka> pulsar;
  std::optional<Kafka> pulsar_aggregates;  // the Pulsar aggregates sink, when [uplink.pulsar] aggregates_topic is set
  // The sink whose figures stand for "the uplink" (rates, backlog, down time, readiness): Kafka's
  // telemetry sink when configured, else Pulsar's. Its name: "kafka" or "pulsar".
  const Kafka& primary() const { return has_kafka || !pulsar ? kafka : *pulsar; }
  std::string_view primary_name() const { return has_kafka || !pulsar ? "kafka" : "pulsar"; }
  std::optional<HttpStats> http;  // absent until the server runs

  // Derived by Trends::update from the snapshots of the last few seconds.
  double ingest_events_per_s = 0;   // records appended to the buffer per second
  double uplink_records_per_s = 0;  // records acknowledged upstream per second (the primary sink)
  std::uint64_t backlog_records = 0;  // records stored and not yet acknowledged upstream (the primary sink)
  BacklogState backlog = BacklogState::none;
  std::optional<double> drain_eta_s;        // set only while draining
  std::optional<std::int64_t> uplink_down_ms;  // how long the uplink has been down; unset when not down

  std::vector<std::string> not_ready;  // /readyz's reasons; empty when ready
};

// Rates and durations that need the history of snapshots. Window: rates are averaged over the
// snapshots of the last `window` (with one snapshot only, they are 0).
class Trends {
 public:
  explicit Trends(std::chrono::milliseconds window = std::chrono::milliseconds(5000)) : window_(window) {}
  // Fills the derived fields of `s` (taken at `now`, steady clock) and remembers it.
  void update(Snapshot& s, std::chrono::steady_clock::time_point now);

 private:
  struct Sample {
    std::chrono::steady_clock::time_point at;
    std::uint64_t appended;  // buffer appended_total
    std::uint64_t acked;     // kafka records_acked
  };
  std::chrono::milliseconds window_;
  std::deque<Sample> samples_;
  std::optional<std::chrono::steady_clock::time_point> down_since_;
};

// The reasons the gateway is not ready (empty: ready): MQTT not connected or not subscribed, the
// buffer not writable (appends blocked at max_bytes, or no disk space), the uplink down too long.
std::vector<std::string> readiness(const Snapshot& s, const ReadinessOptions& options);

// /status: the whole snapshot as indented JSON (ends with a newline).
std::string status_json(const Snapshot& s);

}  // namespace gw::gateway
