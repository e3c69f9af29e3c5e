// The simulator's publisher (see publisher.h): one Paho async_client per gateway that hears the
// devices, paced publishes, a bounded window of outstanding delivery tokens, a queue per device of
// copies to retransmit later, and a manifest line per acknowledged reading. Runs on the caller's
// thread.
#include "firmware-sim/publisher.h"

#include <fmt/format.h>
#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <fstream>
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
enum class CopyKind { original, duplicate, retransmit, multi_gateway, conflict };

// One reading, shared by every copy of it that is in flight.
struct Reading {
  ingest::Event event;  // as first sent: the original time
  std::uint32_t device = 0;  // 0-based
  std::uint64_t boot = 0;    // Numbering::boot
  std::uint64_t lap = 0;     // Numbering::lap
  std::chrono::microseconds retransmit_after{0};  // Numbering::retransmit_after
  bool acked = false;        // some copy was acknowledged (it is in the manifest)
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
};

// What one simulated device does besides producing readings.
struct DeviceState {
  explicit DeviceState(SimDevice n) : numbering(n) {}
  SimDevice numbering;
  std::deque<std::shared_ptr<Reading>> outbox;  // produced, not yet sent (offline, or waiting to be reordered)
  // Copies to send again, soonest first; lost at a reboot (the device's RAM).
  std::priority_queue<Retransmission, std::vector<Retransmission>, std::greater<>> retransmissions;
  Clock::time_point offline_until{};
  std::int64_t skew_ms = 0;
  std::int64_t last_time_ms = 0;  // of its latest reading
  bool json = false;
};

// Writes "DEVICE SEQ BOOT" lines; flushes at most once a second and at the end.
class Manifest {
 public:
  bool open(const std::filesystem::path& path) {
    if (path.empty()) return true;
    out_.open(path, std::ios::out | std::ios::trunc);
    enabled_ = static_cast<bool>(out_);
    return enabled_;
  }
  bool add(const std::string& device, std::uint64_t seq, std::uint32_t boot_id) {
    if (!enabled_) return true;
    out_ << device << ' ' << seq << ' ' << boot_id << '\n';
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
         o.gateways <= kMaxGateways && valid(o.sequence);
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
      : options_(options), stop_(stop), source_(std::move(source)), rng_(options.seed * 0x9E3779B97F4A7C15ull + 1) {
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    for (std::uint32_t i = 0; i < options.devices; ++i) {
      device_ids_.push_back(options.device_prefix + std::to_string(i + 1));
      topics_.push_back(device_topic(options.topic_pattern, device_ids_.back()));
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
  void produce(std::uint32_t device);
  void reboot(std::uint32_t device);
  void flush(std::uint32_t device);
  void send_reading(const std::shared_ptr<Reading>& reading);
  void schedule(const std::shared_ptr<Reading>& reading);
  void drop_retransmissions(std::uint32_t device);
  void send_due(Clock::time_point now);
  void wait_until(Clock::time_point until);
  std::string encode(std::uint32_t device, const ingest::Event& event) const;
  void send(std::uint32_t device, const std::string& payload, std::shared_ptr<Reading> reading, CopyKind kind,
            std::size_t gateway = 0);
  bool settle_front(std::chrono::milliseconds timeout);
  void acknowledged(const InFlight& f);
  void drain();

  const PublishOptions& options_;
  const std::atomic<bool>& stop_;
  std::unique_ptr<MetricSource> source_;
  std::mt19937_64 rng_;  // the fleet behaviours that predate SimDevice (their draws stay as they were)
  std::uniform_real_distribution<double> unit_{0.0, 1.0};
  std::vector<std::string> device_ids_;
  std::vector<std::string> topics_;
  std::vector<DeviceState> fleet_;
  // (soonest due, device) of every device with retransmissions pending: what is due is found
  // without visiting every device.
  std::set<std::pair<Clock::time_point, std::uint32_t>> due_;
  std::vector<std::unique_ptr<mqtt::async_client>> clients_;  // one per gateway, [0] the first
  std::deque<InFlight> inflight_;
  Manifest manifest_;
  bool manifest_ok_ = true;
  std::ofstream record_;
  // Per device: boot -> the laps of its acknowledged readings (reboots and wraps the gateway saw).
  std::vector<std::map<std::uint64_t, LapRange>> acked_laps_;
  PublishResult result_;
  Clock::time_point start_ = Clock::now();
};

// Connects one client per gateway: "<client_id>" alone, else "<client_id>-gw1" .. "-gwN". The
// connects are all started before any is waited for: Paho's background thread notices a new socket
// only when its poll of the others returns (up to a second), so one after the other takes seconds.
std::error_code Run::connect() {
  auto connect = mqtt::connect_options_builder()
                     .clean_session(true)
                     .keep_alive_interval(std::chrono::seconds(30))
                     .automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(10))
                     .max_inflight(static_cast<int>(options_.max_inflight))  // Paho's own window (default 10)
                     .finalize();
  std::vector<mqtt::token_ptr> tokens;
  try {
    for (std::uint32_t g = 1; g <= options_.gateways; ++g) {
      const std::string id =
          options_.gateways == 1 ? options_.client_id : fmt::format("{}-gw{}", options_.client_id, g);
      // No client persistence: the simulator's own manifest is the record of what was acknowledged.
      clients_.push_back(std::make_unique<mqtt::async_client>(options_.broker, id));
      tokens.push_back(clients_.back()->connect(connect));
    }
    for (std::size_t g = 0; g < tokens.size(); ++g) {
      if (!tokens[g]->wait_for(options_.connect_timeout)) {
        spdlog::error("firmware-sim: connect to {} as {} timed out", options_.broker, clients_[g]->get_client_id());
        return errc::connect_failed;
      }
    }
  } catch (const mqtt::exception& e) {
    spdlog::error("firmware-sim: connect to {} failed: {}", options_.broker, e.what());
    return errc::connect_failed;
  }
  return {};
}

// Settles the oldest outstanding publish, waiting at most `timeout`; false if still pending.
bool Run::settle_front(std::chrono::milliseconds timeout) {
  InFlight& f = inflight_.front();
  try {
    if (!f.token->wait_for(timeout)) return false;
    if (f.reading) acknowledged(f);
  } catch (const mqtt::exception& e) {
    ++result_.failed;
    spdlog::debug("firmware-sim: {} seq {} not acknowledged: {}", device_ids_[f.device],
                  f.reading ? f.reading->event.seq.value : 0, e.what());
  }
  inflight_.pop_front();
  return true;
}

// A copy of a reading was acknowledged: the first one puts the reading in the manifest, a later one
// is an injected duplicate. Copies settle in the order they were published.
void Run::acknowledged(const InFlight& f) {
  Reading& r = *f.reading;
  if (r.acked) {
    switch (f.kind) {
      case CopyKind::duplicate: ++result_.injected.duplicate_copies; break;
      case CopyKind::retransmit: ++result_.injected.retransmits; break;
      case CopyKind::multi_gateway: ++result_.injected.multi_gateway_copies; break;
      case CopyKind::conflict: ++result_.injected.conflicts; break;
      case CopyKind::original: break;  // not reached: the original is the first copy published
    }
    return;
  }
  r.acked = true;
  ++result_.acked;
  manifest_ok_ = manifest_.add(device_ids_[r.device], r.event.seq.value, r.event.boot_id) && manifest_ok_;
  auto [it, first] = acked_laps_[r.device].try_emplace(r.boot, LapRange{r.lap, r.lap});
  if (!first) {
    it->second.first = std::min(it->second.first, r.lap);
    it->second.last = std::max(it->second.last, r.lap);
  }
}

// Publishes one payload on the device's topic through the gateway's client; a failure to hand it
// over is counted.
void Run::send(std::uint32_t device, const std::string& payload, std::shared_ptr<Reading> reading, CopyKind kind,
               std::size_t gateway) {
  while (!inflight_.empty() && inflight_.front().token->is_complete()) settle_front(std::chrono::milliseconds(0));
  while (inflight_.size() >= options_.max_inflight && !stop_.load()) settle_front(std::chrono::milliseconds(100));
  ++result_.published;
  try {
    inflight_.push_back({clients_[gateway]->publish(topics_[device], payload.data(), payload.size(), options_.qos,
                                                    false),
                         device, std::move(reading), kind});
  } catch (const mqtt::exception& e) {
    ++result_.failed;
    spdlog::warn("firmware-sim: publish {} failed: {}", device_ids_[device], e.what());
  }
}

std::string Run::encode(std::uint32_t device, const ingest::Event& event) const {
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
  if (record_.is_open()) {
    // encode_json leaves out a boot id of 0; the record always has it.
    auto line = nlohmann::ordered_json::parse(ingest::encode_json(reading->event));
    line["boot_id"] = reading->event.boot_id;
    record_ << line.dump() << '\n';
  }
  // Heard by every gateway: the same bytes through each one's connection.
  send(device, payload, reading, CopyKind::original);
  for (std::size_t g = 1; g < clients_.size(); ++g) send(device, payload, reading, CopyKind::multi_gateway, g);
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
    send_due(now);
    auto wake = std::min<Clock::time_point>(until, now + std::chrono::milliseconds(100));
    if (!due_.empty()) wake = std::min(wake, due_.begin()->first);
    std::this_thread::sleep_until(wake);
  }
  send_due(Clock::now());
}

// Sends what the device has pending, shuffled within reorder_window.
void Run::flush(std::uint32_t device) {
  auto& outbox = fleet_[device].outbox;
  if (options_.reorder_window > 1) {
    for (std::size_t i = 0; i < outbox.size(); i += options_.reorder_window) {
      const auto end = std::min(outbox.size(), i + options_.reorder_window);
      std::shuffle(outbox.begin() + static_cast<std::ptrdiff_t>(i), outbox.begin() + static_cast<std::ptrdiff_t>(end),
                   rng_);
    }
  }
  while (!outbox.empty() && !stop_.load()) {
    const std::shared_ptr<Reading> reading = std::move(outbox.front());
    outbox.pop_front();
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
  std::int64_t time = now_ms() + state.skew_ms;
  // A reboot takes time: the new boot's first reading is later than the old boot's last one.
  if (n.rebooted) time = std::max(time, state.last_time_ms + 1);
  state.last_time_ms = time;
  auto reading = std::make_shared<Reading>(
      Reading{ingest::Event{ingest::DeviceId{device_ids_[device]}, ingest::DeviceSeq{n.seq}, ingest::EventTime{time},
                            source_->next(device), {}, n.boot_id},
              device, n.boot, n.lap, n.retransmit_after, false});
  state.outbox.push_back(std::move(reading));
  const auto now = Clock::now();
  if (options_.offline_rate > 0 && now >= state.offline_until && unit_(rng_) < options_.offline_rate) {
    state.offline_until = now + options_.offline_for;
    ++result_.offline_episodes;
  }
  if (now < state.offline_until) return;                       // buffered on the device
  if (state.outbox.size() < options_.reorder_window) return;  // gathering a window to shuffle
  flush(device);
}

// Waits (bounded) for the acknowledgements still outstanding, also after a stop signal.
void Run::drain() {
  const auto drain_deadline = Clock::now() + options_.drain_timeout;
  while (!inflight_.empty() && Clock::now() < drain_deadline) settle_front(std::chrono::milliseconds(100));
  result_.failed += inflight_.size();
  inflight_.clear();
}

std::error_code Run::run() {
  if (auto ec = connect()) return ec;
  const double total_rate = options_.rate * options_.devices;
  const std::uint64_t total =
      options_.count ? *options_.count * options_.devices : std::numeric_limits<std::uint64_t>::max();
  const auto jitter = std::chrono::duration_cast<Clock::duration>(options_.jitter);
  for (std::uint64_t k = 0; k < total && !stop_.load(); ++k) {
    if (options_.duration && Clock::now() - start_ >= *options_.duration) break;
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
    produce(static_cast<std::uint32_t>(k % options_.devices));
  }
  // Devices that are offline or hold a partial window catch up before the end, then the
  // retransmissions still pending go out when due (all within retransmit_delay).
  for (std::uint32_t d = 0; d < options_.devices && !stop_.load(); ++d) flush(d);
  if (!due_.empty()) wait_until(Clock::now() + options_.sequence.retransmit_delay + std::chrono::milliseconds(1));
  drain();
  for (auto& client : clients_) {
    try {
      client->disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const mqtt::exception& e) {
      spdlog::debug("firmware-sim: disconnect: {}", e.what());
    }
  }
  return {};
}

std::error_code Run::finish() {
  for (const auto& boots : acked_laps_) {
    if (!boots.empty()) result_.injected.reboots += boots.size() - 1;
    for (const auto& [boot, laps] : boots) result_.injected.wraps += laps.last - laps.first;
  }
  manifest_ok_ = manifest_.close() && manifest_ok_;
  if (record_.is_open()) record_.close();
  result_.elapsed_s = std::chrono::duration<double>(Clock::now() - start_).count();
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
  return fmt::format("published={} acked={} failed={} duplicates={} malformed={} offline_episodes={} elapsed_s={:.3f}",
                     published, acked, failed, duplicates, malformed, offline_episodes, elapsed_s);
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
