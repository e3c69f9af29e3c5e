// The simulator's publisher (see publisher.h): one Paho async_client per gateway that hears the
// devices (or per device), paced publishes, a bounded window of outstanding delivery tokens, a queue
// per device of copies to retransmit later, with the outbox a queue per device of readings to
// publish again and its own reconnects, and a manifest line per acknowledged (with the outbox:
// handed over) reading. Runs on the caller's thread.
#include "firmware-sim/publisher.h"

#include <fmt/format.h>
#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "firmware-sim/metrics.h"
#include "ingest/event.h"

namespace gw::firmware_sim {
namespace {

using Clock = std::chrono::steady_clock;

// Why a copy of a reading was sent. The first acknowledged copy of a reading is the reading;
// each later one counts as an injected duplicate of its kind.
// A resend is the outbox publishing a reading's bytes again after a copy was not acknowledged.
enum class CopyKind { original, duplicate, retransmit, multi_gateway, conflict, resend };

// One reading, shared by every copy of it that is in flight.
struct Reading {
  ingest::Event event;  // as first sent: the original time
  std::uint32_t device = 0;  // 0-based
  std::uint64_t boot = 0;    // Numbering::boot
  std::uint64_t lap = 0;     // Numbering::lap
  std::chrono::microseconds retransmit_after{0};  // Numbering::retransmit_after
  bool acked = false;        // some copy was acknowledged (without the outbox: it is in the manifest)
  // With the outbox: the bytes as first handed over (what a resend publishes), whether the reading
  // waits in its device's outbox, and whether it ever went out from there.
  std::string payload;
  bool parked = false;
  bool resent = false;
  std::uint64_t handed = 0;  // with the outbox: its place in the order readings were handed over
  bool published = false;    // a copy of its own bytes went to the client at least once
};

// A copy of a reading that its device will send again at `due`.
struct Retransmission {
  Clock::time_point due;
  std::shared_ptr<Reading> reading;
  bool operator>(const Retransmission& other) const { return due > other.due; }
};

struct InFlight {
  mqtt::delivery_token_ptr token;
  std::uint32_t device = 0;
  std::shared_ptr<Reading> reading;  // null for a malformed payload (never in the manifest)
  CopyKind kind = CopyKind::original;
  std::size_t gateway = 0;
  std::uint64_t epoch = 0;  // its connection's Connection::epoch when it was published
  Clock::time_point sent;   // when it was handed to the client
};

// A reading in its device's outbox, to publish again through the gateway whose copy failed.
struct Parked {
  std::shared_ptr<Reading> reading;
  std::size_t gateway = 0;
};

// One MQTT connection. With the outbox the publisher notices its losses and reconnects it itself.
struct Connection {
  std::unique_ptr<mqtt::async_client> client;
  bool up = true;            // as last seen; always true without the outbox (Paho reconnects)
  std::uint64_t epoch = 0;   // +1 at each loss: a copy published in an older one will get no PUBACK
  unsigned failures = 0;     // reconnect attempts since the loss
  Clock::time_point retry_at{};
  mqtt::token_ptr reconnecting;  // the attempt under way, if any ...
  Clock::time_point given_up_at{};  // ... abandoned if it has not completed by then
};

// What one simulated device does besides producing readings.
struct DeviceState {
  explicit DeviceState(SimDevice n) : numbering(n) {}
  SimDevice numbering;
  std::deque<std::shared_ptr<Reading>> backlog;  // produced, not yet sent (offline, or waiting to be reordered)
  std::deque<Parked> outbox;  // with the outbox: handed over, not acknowledged, to publish again
  // Copies to send again, soonest first; lost at a reboot (the device's RAM).
  std::priority_queue<Retransmission, std::vector<Retransmission>, std::greater<>> retransmissions;
  Clock::time_point offline_until{};
  std::int64_t skew_ms = 0;
  std::int64_t last_time_ms = 0;  // of its latest reading
  bool json = false;
};

// Writes "DEVICE SEQ BOOT" lines (and "DEVICE SEQ BOOT resent" marks); flushes at most once a
// second and at the end.
class Manifest {
 public:
  bool open(const std::filesystem::path& path) {
    if (path.empty()) return true;
    out_.open(path, std::ios::out | std::ios::trunc);
    enabled_ = static_cast<bool>(out_);
    return enabled_;
  }
  bool add(const std::string& device, std::uint64_t seq, std::uint32_t boot_id, bool resent_mark = false) {
    if (!enabled_) return true;
    out_ << device << ' ' << seq << ' ' << boot_id << (resent_mark ? " resent\n" : "\n");
    if (Clock::now() - last_flush_ > std::chrono::seconds(1)) {
      out_.flush();
      last_flush_ = Clock::now();
    }
    return static_cast<bool>(out_);
  }
  bool close() {
    if (!enabled_) return true;
    out_.flush();
    out_.close();
    return !out_.fail();
  }

 private:
  std::ofstream out_;
  bool enabled_ = false;
  Clock::time_point last_flush_ = Clock::now();
};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool valid(const PublishOptions& o) {
  return o.devices != 0 && o.qos >= 0 && o.qos <= 2 && o.rate >= 0 && o.max_inflight != 0 && o.gateways >= 1 &&
         (o.mqtt_version == 3 || o.mqtt_version == 5) && o.gateways <= kMaxGateways && valid(o.sequence) &&
         o.resend_backoff.count() > 0 && o.resend_backoff_max >= o.resend_backoff &&
         !(o.client_per_device && o.gateways > 1) && (has_counter(o.source) || o.sequence.retransmit_rate == 0) &&
         (o.source != SourceFormat::tasmota || (o.rate > 0 && o.rate <= 1.0)) &&
         (o.source != SourceFormat::sparkplug ||
          (o.sequence.seq_bits == 8 && o.sequence.seq_start == 0 && o.reorder_window <= 1));
}

// The first and last lap of a boot that the broker acknowledged a reading of.
struct LapRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
};

// One publish run: the fleet, the MQTT clients (one per gateway), the copies in flight and the
// output files.
class Run {
 public:
  Run(const PublishOptions& options, const std::atomic<bool>& stop, std::unique_ptr<MetricSource> source)
      : options_(options),
        stop_(stop),
        source_(std::move(source)),
        rng_(options.seed * 0x9E3779B97F4A7C15ull + 1),
        backoff_rng_(options.seed * 0xC2B2AE3D27D4EB4Full + 7) {
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (std::uint32_t i = 0; i < options.devices; ++i) {
      device_ids_.push_back(options.device_prefix + std::to_string(i + 1));
      topics_.push_back(options.source == SourceFormat::native ? device_topic(options.topic_pattern, device_ids_.back())
                                                               : source_topic(options.source, device_ids_.back()));
      DeviceState d(SimDevice(options.sequence, options.seed, i));
      const auto skew = options.clock_skew.count();
      d.skew_ms = skew > 0 ? std::uniform_int_distribution<std::int64_t>(-skew, skew)(rng_) : 0;
      d.json = options.format == PayloadFormat::json ||
               (options.format == PayloadFormat::mixed && unit(rng_) < options.json_fraction);
      fleet_.push_back(std::move(d));
    }
    acked_laps_.resize(options.devices);
  }

  // Opens the manifest and record files; errc::io_error (logged) if one cannot be written.
  std::error_code open_files() {
    if (!manifest_.open(options_.manifest)) {
      spdlog::error("firmware-sim: cannot open manifest {}", options_.manifest.string());
      return errc::io_error;
    }
    if (!options_.record.empty()) {
      record_.open(options_.record, std::ios::out | std::ios::trunc);
      if (!record_) {
        spdlog::error("firmware-sim: cannot open record file {}", options_.record.string());
        return errc::io_error;
      }
    }
    return {};
  }

  // Connects, publishes until the end, drains and disconnects. errc::connect_failed if the first
  // connection fails.
  std::error_code run();

  // Closes the files; fills what the result counts from them. errc::io_error (logged) if the
  // manifest or the injected file could not be written.
  std::error_code finish();

  PublishResult& result() { return result_; }

 private:
  std::error_code connect();
  std::string client_id(std::size_t client) const;
  std::size_t client_of(std::uint32_t device, std::size_t gateway) const {
    return options_.client_per_device ? device : gateway;
  }
  void produce(std::uint32_t device);
  void reboot(std::uint32_t device);
  void flush(std::uint32_t device);
  void send_reading(const std::shared_ptr<Reading>& reading);
  void schedule(const std::shared_ptr<Reading>& reading);
  void drop_retransmissions(std::uint32_t device);
  void send_due(Clock::time_point now);
  void wait_until(Clock::time_point until);
  std::string encode(std::uint32_t device, const ingest::Event& event) const;
  bool send(std::uint32_t device, const std::string& payload, std::shared_ptr<Reading> reading, CopyKind kind,
            std::size_t gateway = 0);
  void make_room();
  void settle_ready();
  bool settle_front(std::chrono::milliseconds timeout);
  void acknowledged(const InFlight& f);
  void note_ack_latency(Clock::time_point sent);
  void not_acknowledged(const InFlight& f, std::string_view why);
  void park(const std::shared_ptr<Reading>& reading, CopyKind kind, std::size_t gateway);
  void service();
  void watch_connections();
  void retry_later(Connection& conn, Clock::time_point now);
  void resend();
  void drain();
  void disconnect();

  const PublishOptions& options_;
  const std::atomic<bool>& stop_;
  std::unique_ptr<MetricSource> source_;
  std::mt19937_64 rng_;  // the fleet behaviours that predate SimDevice (their draws stay as they were)
  std::mt19937_64 backoff_rng_;  // reconnect jitter, apart so that it leaves the fleet's draws alone
  std::uniform_real_distribution<double> unit_{0.0, 1.0};
  std::vector<std::string> device_ids_;
  std::vector<std::string> topics_;
  std::string sparkplug_topic_;  // the topic of the Sparkplug message being sent
  std::vector<DeviceState> fleet_;
  // (soonest due, device) of every device with retransmissions pending: what is due is found
  // without visiting every device.
  std::set<std::pair<Clock::time_point, std::uint32_t>> due_;
  // One per gateway, [0] the first; or one per device (client_per_device).
  std::vector<Connection> connections_;
  mqtt::connect_options connect_options_;  // kept for the outbox's reconnects
  std::set<std::uint32_t> waiting_;        // devices whose outbox is not empty
  Clock::time_point watched_{};            // the last watch_connections() visit
  std::uint64_t handed_ = 0;               // with the outbox: readings handed over (= manifest lines)
  std::deque<InFlight> inflight_;
  Manifest manifest_;
  bool manifest_ok_ = true;
  std::ofstream record_;
  // Per device: boot -> the laps of its acknowledged readings (reboots and wraps the gateway saw).
  std::vector<std::map<std::uint64_t, LapRange>> acked_laps_;
  // Publish-to-acknowledgement times in µs, as the publisher notices them (the percentiles of the
  // summary); the first kMaxLatencySamples only.
  static constexpr std::size_t kMaxLatencySamples = 10'000'000;
  std::vector<std::uint32_t> ack_latency_us_;
  PublishResult result_;
  Clock::time_point start_ = Clock::now();
};

// Connects one client per gateway: "<client_id>" alone, else "<client_id>-gw1" .. "-gwN"; or one
// per device, "<client_id>-<device>". The connects are all started before any is waited for: Paho's
// background thread notices a new socket only when its poll of the others returns (up to a second),
// so one after the other takes seconds.
std::error_code Run::connect() {
  const int version = options_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
  auto builder = mqtt::connect_options_builder();
  if (version == MQTTVERSION_5) {
    builder.mqtt_version(version).clean_start(true);
  } else {
    builder.clean_session(true);
  }
  builder.keep_alive_interval(std::chrono::seconds(30))
      .max_inflight(static_cast<int>(options_.max_inflight));  // Paho's own window (default 10)
  // With the outbox the publisher reconnects by itself, so that it knows which copies a loss took
  // and paces the attempts with its own backoff.
  if (options_.outbox) {
    // One version only: with Paho's default (3.1.1, then 3.1 after a refused attempt) a few of a
    // thousand clients' reconnect tokens never completed after a broker restart (Paho C 1.3.12).
    builder.connect_timeout(options_.connect_timeout).mqtt_version(version);
  } else {
    builder.automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(10));
  }
  connect_options_ = builder.finalize();
  const std::size_t n = options_.client_per_device ? options_.devices : options_.gateways;
  const auto deadline = Clock::now() + options_.connect_timeout;
  std::vector<mqtt::token_ptr> tokens;  // null once connected
  try {
    for (std::size_t c = 0; c < n; ++c) {
      // No client persistence: the simulator's own manifest is the record of what was acknowledged.
      Connection conn;
      conn.client = std::make_unique<mqtt::async_client>(options_.broker, client_id(c), mqtt::create_options(version));
      tokens.push_back(conn.client->connect(connect_options_));
      connections_.push_back(std::move(conn));
    }
    // A thousand connects at once overflow the broker's listen backlog: a refused one is tried
    // again until the deadline.
    for (;;) {
      std::size_t pending = 0;
      for (std::size_t c = 0; c < tokens.size(); ++c) {
        if (!tokens[c]) continue;
        try {
          if (tokens[c]->wait_for(std::chrono::milliseconds(0))) {
            tokens[c].reset();
            continue;
          }
        } catch (const mqtt::exception& e) {
          if (Clock::now() >= deadline) throw;
          spdlog::debug("firmware-sim: connect as {} failed, trying again: {}", client_id(c), e.what());
          tokens[c] = connections_[c].client->connect(connect_options_);
        }
        ++pending;
      }
      if (pending == 0) return {};
      if (Clock::now() >= deadline) {
        spdlog::error("firmware-sim: connect to {}: {} client(s) not connected in time", options_.broker, pending);
        return errc::connect_failed;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  } catch (const mqtt::exception& e) {
    spdlog::error("firmware-sim: connect to {} failed: {}", options_.broker, e.what());
    return errc::connect_failed;
  }
}

std::string Run::client_id(std::size_t client) const {
  if (options_.client_per_device) return fmt::format("{}-{}", options_.client_id, device_ids_[client]);
  return options_.gateways == 1 ? options_.client_id : fmt::format("{}-gw{}", options_.client_id, client + 1);
}

// Settles the oldest outstanding publish, waiting at most `timeout`; false if still pending. A copy
// published on a connection that was lost since is settled at once as not acknowledged: with a clean
// session its PUBACK cannot come any more.
bool Run::settle_front(std::chrono::milliseconds timeout) {
  InFlight& f = inflight_.front();
  try {
    if (!f.token->is_complete() && f.epoch != connections_[client_of(f.device, f.gateway)].epoch) {
      not_acknowledged(f, "connection lost before its acknowledgement");
    } else {
      if (!f.token->wait_for(timeout)) return false;
      note_ack_latency(f.sent);
      if (f.reading) acknowledged(f);
    }
  } catch (const mqtt::exception& e) {
    not_acknowledged(f, e.what());
  }
  inflight_.pop_front();
  return true;
}

// Settles the outstanding publishes that need no wait, oldest first.
void Run::settle_ready() {
  while (!inflight_.empty()) {
    const InFlight& f = inflight_.front();
    if (!f.token->is_complete() && f.epoch == connections_[client_of(f.device, f.gateway)].epoch) return;
    settle_front(std::chrono::milliseconds(0));
  }
}

// A copy of a reading was acknowledged: the first one puts the reading in the manifest (with the
// outbox it is there since it was handed over), a later one is an injected duplicate. Copies settle
// in the order they were published. A conflicting copy is not the reading: it never makes it
// acknowledged.
void Run::acknowledged(const InFlight& f) {
  Reading& r = *f.reading;
  if (r.acked || f.kind == CopyKind::conflict) {
    switch (f.kind) {
      case CopyKind::duplicate: ++result_.injected.duplicate_copies; break;
      case CopyKind::retransmit: ++result_.injected.retransmits; break;
      case CopyKind::multi_gateway: ++result_.injected.multi_gateway_copies; break;
      case CopyKind::conflict: ++result_.injected.conflicts; break;
      // A resend behind an acknowledged copy was not injected on purpose; the original is the
      // first copy published (or, with the outbox, unacknowledged when it settles).
      case CopyKind::resend:
      case CopyKind::original: break;
    }
    return;
  }
  r.acked = true;
  ++result_.acked;
  if (!options_.outbox) {
    const ingest::Event stored = stored_event(options_.source, r.event);
    manifest_ok_ = manifest_.add(stored.device.value, stored.seq.value, stored.boot_id) && manifest_ok_;
  }
  auto [it, first] = acked_laps_[r.device].try_emplace(r.boot, LapRange{r.lap, r.lap});
  if (!first) {
    it->second.first = std::min(it->second.first, r.lap);
    it->second.last = std::max(it->second.last, r.lap);
  }
}

void Run::note_ack_latency(Clock::time_point sent) {
  if (ack_latency_us_.size() >= kMaxLatencySamples) return;
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - sent).count();
  ack_latency_us_.push_back(static_cast<std::uint32_t>(std::clamp<std::int64_t>(us, 0, std::numeric_limits<std::uint32_t>::max())));
}

void Run::not_acknowledged(const InFlight& f, std::string_view why) {
  ++result_.failed;
  spdlog::debug("firmware-sim: {} seq {} not acknowledged: {}", device_ids_[f.device],
                f.reading ? f.reading->event.seq.value : 0, why);
  if (f.reading) park(f.reading, f.kind, f.gateway);
}

// With the outbox, keeps a reading whose own bytes did not get through, to publish again once its
// connection is up. The copies that fleet behaviours add (duplicates, retransmissions, conflicts)
// are not the reading and are not kept.
void Run::park(const std::shared_ptr<Reading>& reading, CopyKind kind, std::size_t gateway) {
  if (!options_.outbox || reading->acked || reading->parked) return;
  if (kind != CopyKind::original && kind != CopyKind::multi_gateway && kind != CopyKind::resend) return;
  reading->parked = true;
  // In the order they were handed over, as an SDK's outbox keeps them: a copy that fails after
  // newer readings were parked (its connection's loss noticed late) goes before them, so that a
  // resend never overtakes an older reading by more than the loss itself did.
  auto& outbox = fleet_[reading->device].outbox;
  const auto at = std::upper_bound(outbox.begin(), outbox.end(), reading->handed,
                                   [](std::uint64_t h, const Parked& p) { return h < p.reading->handed; });
  outbox.insert(at, {reading, gateway});
  waiting_.insert(reading->device);
}

// Settles what is complete, then waits (settling the oldest) while max_inflight copies are out,
// watching the connections meanwhile: a lost one's copies then settle at once.
void Run::make_room() {
  settle_ready();
  while (inflight_.size() >= options_.max_inflight && !stop_.load()) {
    settle_front(std::chrono::milliseconds(100));
    watch_connections();
  }
}

// Publishes one payload on the device's topic through the gateway's client (the device's own with
// client_per_device); true if the client took it. A copy not taken is counted as failed, except
// that with the outbox a reading's own bytes wait in its device's outbox instead, also without an
// attempt while the connection is down.
bool Run::send(std::uint32_t device, const std::string& payload, std::shared_ptr<Reading> reading, CopyKind kind,
               std::size_t gateway) {
  make_room();
  Connection& conn = connections_[client_of(device, gateway)];
  if (!conn.up) {
    if (reading) park(reading, kind, gateway);
    if (!reading || !reading->parked) ++result_.failed;
    return false;
  }
  ++result_.published;
  if (reading && (kind == CopyKind::original || kind == CopyKind::resend || kind == CopyKind::multi_gateway)) {
    reading->published = true;
  }
  try {
    // Sparkplug's topic names the message type (NBIRTH or NDATA), which depends on the reading.
    const std::string& topic = options_.source == SourceFormat::sparkplug && reading
                                   ? sparkplug_topic_.assign(source_topic(options_.source, reading->event))
                                   : topics_[device];
    auto token = conn.client->publish(topic, payload.data(), payload.size(), options_.qos, false);
    inflight_.push_back({std::move(token), device, std::move(reading), kind, gateway, conn.epoch, Clock::now()});
    return true;
  } catch (const mqtt::exception& e) {
    ++result_.failed;
    if (!options_.outbox) {
      spdlog::warn("firmware-sim: publish {} failed: {}", device_ids_[device], e.what());
      return false;
    }
    // Expected while a lost connection is not noticed yet: the outbox keeps the reading, and the
    // next watch looks at once.
    spdlog::debug("firmware-sim: publish {} failed: {}", device_ids_[device], e.what());
    if (reading) park(reading, kind, gateway);
    watched_ = {};
    return false;
  }
}

// With the outbox: connection losses, reconnects and resends. Cheap when nothing waits.
void Run::service() {
  if (!options_.outbox) return;
  watch_connections();
  settle_ready();
  resend();
}

// With the outbox: notices the connections that were lost (their copies in flight then settle as
// not acknowledged) and reconnects each once its backoff is over. It visits every connection, so at
// most every 10 ms; one line per visit says how many were lost or came back (a broker restart takes
// a thousand at once).
void Run::watch_connections() {
  if (!options_.outbox) return;
  const auto now = Clock::now();
  if (now - watched_ < std::chrono::milliseconds(10)) return;
  watched_ = now;
  std::size_t lost = 0, back = 0;
  for (std::size_t c = 0; c < connections_.size(); ++c) {
    Connection& conn = connections_[c];
    if (conn.reconnecting) {
      try {
        if (!conn.reconnecting->wait_for(std::chrono::milliseconds(0))) {
          // Should Paho never complete the attempt, the connection must not stay down for good.
          if (now < conn.given_up_at) continue;
          spdlog::debug("firmware-sim: {} reconnect got no answer", client_id(c));
          conn.reconnecting.reset();
          retry_later(conn, now);
          continue;
        }
        conn.reconnecting.reset();
        conn.up = true;
        conn.failures = 0;
        ++back;
        spdlog::debug("firmware-sim: {} reconnected", client_id(c));
      } catch (const mqtt::exception& e) {
        conn.reconnecting.reset();
        spdlog::debug("firmware-sim: {} reconnect failed: {}", client_id(c), e.what());
        retry_later(conn, now);
      }
    } else if (conn.up) {
      if (conn.client->is_connected()) continue;
      conn.up = false;
      ++conn.epoch;
      conn.failures = 0;
      ++lost;
      spdlog::debug("firmware-sim: {} lost its connection", client_id(c));
      retry_later(conn, now);
    } else if (now >= conn.retry_at) {
      try {
        conn.reconnecting = conn.client->connect(connect_options_);
        conn.given_up_at = now + options_.connect_timeout + std::chrono::seconds(1);
      } catch (const mqtt::exception& e) {
        spdlog::debug("firmware-sim: {} reconnect failed: {}", client_id(c), e.what());
        retry_later(conn, now);
      }
    }
  }
  if (lost > 0) spdlog::info("firmware-sim: {} connection(s) lost; the outbox keeps what they did not deliver", lost);
  if (back > 0) spdlog::info("firmware-sim: {} connection(s) back", back);
}

// Schedules the next reconnect: resend_backoff doubled per attempt that failed since the loss, at
// most resend_backoff_max, less a random part of up to half of it, so that devices that lost the
// broker together do not come back in step.
void Run::retry_later(Connection& conn, Clock::time_point now) {
  const auto cap = options_.resend_backoff_max.count();
  auto backoff = options_.resend_backoff.count();
  for (unsigned i = 0; i < conn.failures && backoff < cap; ++i) backoff *= 2;
  backoff = std::min(backoff, cap);
  const auto jitter = std::uniform_int_distribution<std::int64_t>(0, backoff / 2)(backoff_rng_);
  conn.retry_at = now + std::chrono::milliseconds(backoff - jitter);
  ++conn.failures;
}

// Publishes again what waits in the outboxes of devices whose connection is up, oldest first, as far
// as the in-flight window allows: it never waits for room.
void Run::resend() {
  for (auto it = waiting_.begin(); it != waiting_.end() && inflight_.size() < options_.max_inflight;) {
    const std::uint32_t device = *it;
    auto& outbox = fleet_[device].outbox;
    while (!outbox.empty() && inflight_.size() < options_.max_inflight) {
      const Parked p = outbox.front();
      if (!p.reading->acked && !connections_[client_of(device, p.gateway)].up) break;
      outbox.pop_front();
      p.reading->parked = false;
      if (p.reading->acked) continue;  // another copy of it was acknowledged meanwhile
      // Sent again, or for the first time after it waited in the outbox (not a resend).
      if (!p.reading->resent && p.reading->published) {
        p.reading->resent = true;
        ++result_.resent;
        const ingest::Event stored = stored_event(options_.source, p.reading->event);
        manifest_ok_ =
            manifest_.add(stored.device.value, stored.seq.value, stored.boot_id, /*resent_mark=*/true) && manifest_ok_;
      }
      if (!send(device, p.reading->payload, p.reading, CopyKind::resend, p.gateway)) break;
    }
    it = outbox.empty() ? waiting_.erase(it) : std::next(it);
  }
}

std::string Run::encode(std::uint32_t device, const ingest::Event& event) const {
  if (options_.source != SourceFormat::native) return encode_source(options_.source, event);
  if (fleet_[device].json) return ingest::encode_json(event);
  const auto fb = ingest::encode_telemetry(event);
  return {fb.begin(), fb.end()};
}

// Sends a reading for the first time, with the faults drawn for it.
void Run::send_reading(const std::shared_ptr<Reading>& reading) {
  const std::uint32_t device = reading->device;
  if (options_.malformed_rate > 0 && unit_(rng_) < options_.malformed_rate) {
    std::string junk(1 + rng_() % 64, '\0');
    for (auto& c : junk) c = static_cast<char>(rng_());
    ++result_.malformed;
    send(device, junk, nullptr, CopyKind::original);
  }
  const std::string payload = encode(device, reading->event);
  if (options_.outbox) {
    // Handed to the device's SDK, whose outbox gets it upstream: the manifest lists it from now on.
    reading->payload = payload;
    reading->handed = handed_++;
    const ingest::Event stored = stored_event(options_.source, reading->event);
    manifest_ok_ = manifest_.add(stored.device.value, stored.seq.value, stored.boot_id) && manifest_ok_;
  }
  if (record_.is_open()) {
    // What the gateway stores (a mapped source's names, seq and boot id). encode_json leaves out a
    // boot id of 0; the record always has it.
    const ingest::Event stored = stored_event(options_.source, reading->event);
    auto line = nlohmann::ordered_json::parse(ingest::encode_json(stored));
    line["boot_id"] = stored.boot_id;
    record_ << line.dump() << '\n';
  }
  // Behind what the device's outbox still holds, as an SDK queues it: a new reading never overtakes
  // an unacknowledged older one (one gateway; with several each copy goes its own way).
  if (options_.outbox && options_.gateways == 1 && !fleet_[device].outbox.empty()) {
    park(reading, CopyKind::original, 0);
  } else {
    // Heard by every gateway: the same bytes through each one's connection.
    send(device, payload, reading, CopyKind::original);
  }
  for (std::size_t g = 1; g < options_.gateways; ++g) send(device, payload, reading, CopyKind::multi_gateway, g);
  if (options_.duplicate_rate > 0 && unit_(rng_) < options_.duplicate_rate) {
    ++result_.duplicates;
    send(device, payload, reading, CopyKind::duplicate);
  }
  if (options_.conflict_rate > 0 && !reading->event.metrics.empty() && unit_(rng_) < options_.conflict_rate) {
    // The same identity right behind it on the same connection, with other values.
    ingest::Event other = reading->event;
    other.metrics.front().value += 1;
    send(device, encode(device, other), reading, CopyKind::conflict);
  }
  if (reading->retransmit_after.count() > 0) schedule(reading);
}

// Queues the reading's retransmission, due retransmit_after from now.
void Run::schedule(const std::shared_ptr<Reading>& reading) {
  const std::uint32_t device = reading->device;
  auto& queue = fleet_[device].retransmissions;
  if (!queue.empty()) due_.erase({queue.top().due, device});
  queue.push({Clock::now() + reading->retransmit_after, reading});
  due_.insert({queue.top().due, device});
}

void Run::drop_retransmissions(std::uint32_t device) {
  auto& queue = fleet_[device].retransmissions;
  if (queue.empty()) return;
  due_.erase({queue.top().due, device});
  queue = {};
}

// Sends every retransmission due by `now`: the reading's bytes re-stamped with time + the delay
// (rounded up to whole ms), as a base station that relays a retransmission stamps it.
void Run::send_due(Clock::time_point now) {
  while (!due_.empty() && due_.begin()->first <= now && !stop_.load()) {
    const std::uint32_t device = due_.begin()->second;
    due_.erase(due_.begin());
    auto& queue = fleet_[device].retransmissions;
    while (!queue.empty() && queue.top().due <= now) {
      const std::shared_ptr<Reading> reading = queue.top().reading;
      queue.pop();
      ingest::Event copy = reading->event;
      const auto us = reading->retransmit_after.count();
      copy.time.ms += (us + 999) / 1000;
      send(device, encode(device, copy), reading, CopyKind::retransmit);
    }
    if (!queue.empty()) due_.insert({queue.top().due, device});
  }
}

// Sleeps until `until` (in steps of at most 100 ms, so that a stop is seen), sending the
// retransmissions that fall due meanwhile.
void Run::wait_until(Clock::time_point until) {
  for (auto now = Clock::now(); now < until && !stop_.load(); now = Clock::now()) {
    service();
    send_due(now);
    auto wake = std::min<Clock::time_point>(until, now + std::chrono::milliseconds(100));
    if (!due_.empty()) wake = std::min(wake, due_.begin()->first);
    std::this_thread::sleep_until(wake);
  }
  send_due(Clock::now());
}

// Sends what the device has pending, shuffled within reorder_window.
void Run::flush(std::uint32_t device) {
  auto& backlog = fleet_[device].backlog;
  if (options_.reorder_window > 1) {
    for (std::size_t i = 0; i < backlog.size(); i += options_.reorder_window) {
      const auto end = std::min(backlog.size(), i + options_.reorder_window);
      std::shuffle(backlog.begin() + static_cast<std::ptrdiff_t>(i),
                   backlog.begin() + static_cast<std::ptrdiff_t>(end), rng_);
    }
  }
  while (!backlog.empty() && !stop_.load()) {
    const std::shared_ptr<Reading> reading = std::move(backlog.front());
    backlog.pop_front();
    send_reading(reading);
  }
}

// The device reboots: what it had queued for sending goes out first (numbered by the old boot);
// pending retransmissions are lost with its RAM; an offline episode ends with the restart.
void Run::reboot(std::uint32_t device) {
  flush(device);
  drop_retransmissions(device);
  fleet_[device].offline_until = {};
}

// The device produces its next reading and sends it (or queues it: offline, gathering a window).
void Run::produce(std::uint32_t device) {
  auto& state = fleet_[device];
  const Numbering n = state.numbering.next();
  if (n.rebooted) reboot(device);
  std::int64_t time = source_time(options_.source, now_ms() + state.skew_ms);
  // A reboot takes time: the new boot's first reading is later than the old boot's last one.
  if (n.rebooted) time = std::max(time, state.last_time_ms + 1);
  // A source without a counter is known by its time: two readings of a device never share one.
  if (!has_counter(options_.source) && time <= state.last_time_ms) {
    time = source_time(options_.source, state.last_time_ms + (options_.source == SourceFormat::tasmota ? 1000 : 10));
  }
  state.last_time_ms = time;
  auto reading = std::make_shared<Reading>(
      Reading{ingest::Event{ingest::DeviceId{device_ids_[device]}, ingest::DeviceSeq{n.seq}, ingest::EventTime{time},
                            source_->next(device), {}, n.boot_id},
              device, n.boot, n.lap, n.retransmit_after, false, {}, false, false});
  state.backlog.push_back(std::move(reading));
  const auto now = Clock::now();
  if (options_.offline_rate > 0 && now >= state.offline_until && unit_(rng_) < options_.offline_rate) {
    state.offline_until = now + options_.offline_for;
    ++result_.offline_episodes;
  }
  if (now < state.offline_until) return;                       // buffered on the device
  if (state.backlog.size() < options_.reorder_window) return;  // gathering a window to shuffle
  flush(device);
}

// Waits (bounded) for the acknowledgements still outstanding, also after a stop signal; with the
// outbox, also reconnects and resends until every outbox is empty.
void Run::drain() {
  const auto drain_deadline = Clock::now() + options_.drain_timeout;
  while ((!inflight_.empty() || !waiting_.empty()) && Clock::now() < drain_deadline) {
    service();
    if (!inflight_.empty()) {
      settle_front(std::chrono::milliseconds(100));
    } else if (!waiting_.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // for a connection to come back
    }
  }
  result_.failed += inflight_.size();
  inflight_.clear();
}

// Disconnects every client; all are started before any is waited for (see connect()).
void Run::disconnect() {
  std::vector<std::pair<std::size_t, mqtt::token_ptr>> tokens;
  for (std::size_t c = 0; c < connections_.size(); ++c) {
    try {
      tokens.emplace_back(c, connections_[c].client->disconnect());
    } catch (const mqtt::exception& e) {
      spdlog::debug("firmware-sim: disconnect {}: {}", client_id(c), e.what());
    }
  }
  for (auto& [c, token] : tokens) {
    try {
      token->wait_for(std::chrono::seconds(5));
    } catch (const mqtt::exception& e) {
      spdlog::debug("firmware-sim: disconnect {}: {}", client_id(c), e.what());
    }
  }
}

std::error_code Run::run() {
  if (auto ec = connect()) return ec;
  start_ = Clock::now();  // the schedule starts once connected (a thousand connects take a while)
  const double total_rate = options_.rate * options_.devices;
  const std::uint64_t total =
      options_.count ? *options_.count * options_.devices : std::numeric_limits<std::uint64_t>::max();
  const auto jitter = std::chrono::duration_cast<Clock::duration>(options_.jitter);
  for (std::uint64_t k = 0; k < total && !stop_.load(); ++k) {
    // Paced, the schedule alone decides (rate x duration readings, however late a slow broker
    // makes the last ones); unpaced, the clock.
    if (options_.duration && total_rate == 0 && Clock::now() - start_ >= *options_.duration) break;
    if (total_rate > 0) {
      auto due = start_ + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(static_cast<double>(k) / total_rate));
      if (options_.duration && due - start_ >= *options_.duration) break;
      if (jitter.count() > 0) {
        due += Clock::duration(static_cast<Clock::rep>(unit_(rng_) * static_cast<double>(jitter.count())));
      }
      wait_until(due);
      if (stop_.load()) break;
    } else {
      send_due(Clock::now());
    }
    service();
    produce(static_cast<std::uint32_t>(k % options_.devices));
  }
  // Devices that are offline or hold a partial window catch up before the end, then the
  // retransmissions still pending go out when due (all within retransmit_delay).
  for (std::uint32_t d = 0; d < options_.devices && !stop_.load(); ++d) flush(d);
  if (!due_.empty()) wait_until(Clock::now() + options_.sequence.retransmit_delay + std::chrono::milliseconds(1));
  drain();
  disconnect();
  return {};
}

std::error_code Run::finish() {
  for (const auto& boots : acked_laps_) {
    if (!boots.empty()) result_.injected.reboots += boots.size() - 1;
    for (const auto& [boot, laps] : boots) result_.injected.wraps += laps.last - laps.first;
  }
  if (options_.outbox) result_.unacked = handed_ - result_.acked;
  manifest_ok_ = manifest_.close() && manifest_ok_;
  if (record_.is_open()) record_.close();
  result_.elapsed_s = std::chrono::duration<double>(Clock::now() - start_).count();
  if (!ack_latency_us_.empty()) {
    auto& v = ack_latency_us_;
    const auto at = [&v](double q) {
      const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1));
      std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
      return v[k];
    };
    result_.ack_p50_us = at(0.50);
    result_.ack_p99_us = at(0.99);
    result_.ack_max_us = *std::max_element(v.begin(), v.end());
  }
  if (!manifest_ok_) {
    spdlog::error("firmware-sim: writing the manifest {} failed", options_.manifest.string());
    return errc::io_error;
  }
  if (!options_.injected.empty()) {
    std::ofstream out(options_.injected, std::ios::out | std::ios::trunc);
    out << result_.injected.json() << '\n';
    out.close();
    if (out.fail()) {
      spdlog::error("firmware-sim: writing {} failed", options_.injected.string());
      return errc::io_error;
    }
  }
  return {};
}

}  // namespace

std::string PublishResult::summary() const {
  return fmt::format(
      "published={} acked={} failed={} duplicates={} malformed={} offline_episodes={} resent={} unacked={} "
      "elapsed_s={:.3f} ack_p50_us={} ack_p99_us={} ack_max_us={}",
      published, acked, failed, duplicates, malformed, offline_episodes, resent, unacked, elapsed_s, ack_p50_us,
      ack_p99_us, ack_max_us);
}

std::string Injected::summary() const {
  return fmt::format("injected: duplicates={} retransmits={} multi_gateway_copies={} conflicts={} reboots={} wraps={}",
                     duplicates(), retransmits, multi_gateway_copies, conflicts, reboots, wraps);
}

std::string Injected::json() const {
  nlohmann::ordered_json j;
  j["duplicates"] = duplicates();
  j["duplicate_copies"] = duplicate_copies;
  j["retransmits"] = retransmits;
  j["multi_gateway_copies"] = multi_gateway_copies;
  j["conflicts"] = conflicts;
  j["reboots"] = reboots;
  j["wraps"] = wraps;
  return j.dump();
}

std::string device_topic(const std::string& pattern, const std::string& device) {
  static constexpr std::string_view kPlaceholder = "{device}";
  std::string out;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t at = pattern.find(kPlaceholder, pos);
    if (at == std::string::npos) break;
    out.append(pattern, pos, at - pos);
    out += device;
    pos = at + kPlaceholder.size();
  }
  out.append(pattern, pos);
  return out;
}

std::expected<PublishResult, std::error_code> publish(const PublishOptions& options, const std::atomic<bool>& stop) {
  if (!valid(options)) return std::unexpected(make_error_code(errc::invalid_argument));
  std::unique_ptr<MetricSource> source;
  if (!options.data_dir.empty()) {
    auto lab = intel_lab_source(options.data_dir);
    if (!lab) return std::unexpected(lab.error());
    source = std::move(*lab);
  } else {
    source = synthetic_source(options.seed);
  }
  Run run(options, stop, std::move(source));
  if (auto ec = run.open_files()) return std::unexpected(ec);
  try {
    if (auto ec = run.run()) return std::unexpected(ec);
  } catch (const mqtt::exception& e) {
    spdlog::error("firmware-sim: MQTT client error: {}", e.what());
    return std::unexpected(make_error_code(errc::connect_failed));
  }
  if (auto ec = run.finish()) return std::unexpected(ec);
  return run.result();
}

}  // namespace gw::firmware_sim
