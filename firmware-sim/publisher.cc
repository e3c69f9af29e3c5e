// The simulator's publisher (see publisher.h): one Paho async_client, paced publishes, a bounded
// window of outstanding delivery tokens, and a manifest line per acknowledged message.
// Runs on the caller's thread.
#include "firmware-sim/publisher.h"

#include <fmt/format.h>
#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <deque>
#include <fstream>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "firmware-sim/metrics.h"
#include "ingest/event.h"

namespace gw::firmware_sim {
namespace {

using Clock = std::chrono::steady_clock;

struct InFlight {
  mqtt::delivery_token_ptr token;
  std::uint32_t device = 0;  // 0-based
  std::uint64_t seq = 0;
  bool in_manifest = true;   // false for deliberate duplicates and malformed payloads
};

// What one simulated device does besides producing readings.
struct DeviceState {
  std::deque<ingest::Event> outbox;  // produced, not yet sent (offline, or waiting to be reordered)
  Clock::time_point offline_until{};
  std::int64_t skew_ms = 0;
  bool json = false;
};

// Writes "DEVICE SEQ" lines; flushes at most once a second and at the end.
class Manifest {
 public:
  bool open(const std::filesystem::path& path) {
    if (path.empty()) return true;
    out_.open(path, std::ios::out | std::ios::trunc);
    enabled_ = static_cast<bool>(out_);
    return enabled_;
  }
  bool add(const std::string& device, std::uint64_t seq) {
    if (!enabled_) return true;
    out_ << device << ' ' << seq << '\n';
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

}  // namespace

std::string PublishResult::summary() const {
  return fmt::format("published={} acked={} failed={} duplicates={} malformed={} offline_episodes={} elapsed_s={:.3f}",
                     published, acked, failed, duplicates, malformed, offline_episodes, elapsed_s);
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
  if (options.devices == 0 || options.qos < 0 || options.qos > 2 || options.rate < 0 || options.max_inflight == 0) {
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  std::unique_ptr<MetricSource> source;
  if (!options.data_dir.empty()) {
    auto lab = intel_lab_source(options.data_dir);
    if (!lab) return std::unexpected(lab.error());
    source = std::move(*lab);
  } else {
    source = synthetic_source(options.seed);
  }
  Manifest manifest;
  if (!manifest.open(options.manifest)) {
    spdlog::error("firmware-sim: cannot open manifest {}", options.manifest.string());
    return std::unexpected(make_error_code(errc::io_error));
  }

  std::vector<std::string> device_ids;
  std::vector<std::string> topics;
  for (std::uint32_t i = 0; i < options.devices; ++i) {
    device_ids.push_back(options.device_prefix + std::to_string(i + 1));
    topics.push_back(device_topic(options.topic_pattern, device_ids.back()));
  }
  std::vector<std::uint64_t> next_seq(options.devices, 1);
  std::mt19937_64 rng(options.seed * 0x9E3779B97F4A7C15ull + 1);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<DeviceState> fleet(options.devices);
  for (auto& d : fleet) {
    const auto skew = options.clock_skew.count();
    d.skew_ms = skew > 0 ? std::uniform_int_distribution<std::int64_t>(-skew, skew)(rng) : 0;
    d.json = options.format == PayloadFormat::json ||
             (options.format == PayloadFormat::mixed && unit(rng) < options.json_fraction);
  }
  std::ofstream record;
  if (!options.record.empty()) {
    record.open(options.record, std::ios::out | std::ios::trunc);
    if (!record) {
      spdlog::error("firmware-sim: cannot open record file {}", options.record.string());
      return std::unexpected(make_error_code(errc::io_error));
    }
  }

  PublishResult result;
  const auto start = Clock::now();
  bool manifest_ok = true;
  try {
    // No client persistence: the simulator's own manifest is the record of what was acknowledged.
    mqtt::async_client client(options.broker, options.client_id);
    auto connect = mqtt::connect_options_builder()
                       .clean_session(true)
                       .keep_alive_interval(std::chrono::seconds(30))
                       .automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(10))
                       .max_inflight(static_cast<int>(options.max_inflight))  // Paho's own window (default 10)
                       .finalize();
    try {
      if (!client.connect(connect)->wait_for(options.connect_timeout)) {
        spdlog::error("firmware-sim: connect to {} timed out", options.broker);
        return std::unexpected(make_error_code(errc::connect_failed));
      }
    } catch (const mqtt::exception& e) {
      spdlog::error("firmware-sim: connect to {} failed: {}", options.broker, e.what());
      return std::unexpected(make_error_code(errc::connect_failed));
    }

    std::deque<InFlight> inflight;
    // Settles the oldest outstanding publish, waiting at most `timeout`; false if still pending.
    auto settle_front = [&](std::chrono::milliseconds timeout) {
      InFlight& f = inflight.front();
      try {
        if (!f.token->wait_for(timeout)) return false;
        if (f.in_manifest) {
          ++result.acked;
          manifest_ok = manifest.add(device_ids[f.device], f.seq) && manifest_ok;
        }
      } catch (const mqtt::exception& e) {
        ++result.failed;
        spdlog::debug("firmware-sim: {} seq {} not acknowledged: {}", device_ids[f.device], f.seq, e.what());
      }
      inflight.pop_front();
      return true;
    };

    // Publishes one payload on the device's topic; a failure to hand it over is counted.
    auto send = [&](std::uint32_t device, std::uint64_t seq, const std::string& payload, bool in_manifest) {
      while (!inflight.empty() && inflight.front().token->is_complete()) settle_front(std::chrono::milliseconds(0));
      while (inflight.size() >= options.max_inflight && !stop.load()) settle_front(std::chrono::milliseconds(100));
      ++result.published;
      try {
        inflight.push_back({client.publish(topics[device], payload.data(), payload.size(), options.qos, false),
                            device, seq, in_manifest});
      } catch (const mqtt::exception& e) {
        ++result.failed;
        spdlog::warn("firmware-sim: publish {} seq {} failed: {}", device_ids[device], seq, e.what());
      }
    };
    // Sends what the device has pending, shuffled within reorder_window, with the chosen faults.
    auto flush = [&](std::uint32_t device) {
      auto& outbox = fleet[device].outbox;
      if (options.reorder_window > 1) {
        for (std::size_t i = 0; i < outbox.size(); i += options.reorder_window) {
          const auto end = std::min(outbox.size(), i + options.reorder_window);
          std::shuffle(outbox.begin() + static_cast<std::ptrdiff_t>(i), outbox.begin() + static_cast<std::ptrdiff_t>(end), rng);
        }
      }
      while (!outbox.empty() && !stop.load()) {
        const ingest::Event event = std::move(outbox.front());
        outbox.pop_front();
        if (options.malformed_rate > 0 && unit(rng) < options.malformed_rate) {
          std::string junk(1 + rng() % 64, '\0');
          for (auto& c : junk) c = static_cast<char>(rng());
          ++result.malformed;
          send(device, 0, junk, false);
        }
        std::string payload;
        if (fleet[device].json) {
          payload = ingest::encode_json(event);
        } else {
          const auto fb = ingest::encode_telemetry(event);
          payload.assign(fb.begin(), fb.end());
        }
        if (record.is_open()) record << ingest::encode_json(event) << '\n';
        send(device, event.seq.value, payload, true);
        if (options.duplicate_rate > 0 && unit(rng) < options.duplicate_rate) {
          ++result.duplicates;
          send(device, event.seq.value, payload, false);
        }
      }
    };

    const double total_rate = options.rate * options.devices;
    const std::uint64_t total =
        options.count ? *options.count * options.devices : std::numeric_limits<std::uint64_t>::max();
    const auto jitter = std::chrono::duration_cast<Clock::duration>(options.jitter);
    for (std::uint64_t k = 0; k < total && !stop.load(); ++k) {
      if (options.duration && Clock::now() - start >= *options.duration) break;
      if (total_rate > 0) {
        auto due = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(static_cast<double>(k) / total_rate));
        if (options.duration && due - start >= *options.duration) break;
        if (jitter.count() > 0) due += Clock::duration(static_cast<Clock::rep>(unit(rng) * static_cast<double>(jitter.count())));
        while (!stop.load() && Clock::now() < due) {
          std::this_thread::sleep_for(std::min<Clock::duration>(due - Clock::now(), std::chrono::milliseconds(100)));
        }
        if (stop.load()) break;
      }
      const auto device = static_cast<std::uint32_t>(k % options.devices);
      auto& state = fleet[device];
      state.outbox.push_back(ingest::Event{ingest::DeviceId{device_ids[device]}, ingest::DeviceSeq{next_seq[device]++},
                                           ingest::EventTime{now_ms() + state.skew_ms}, source->next(device)});
      const auto now = Clock::now();
      if (options.offline_rate > 0 && now >= state.offline_until && unit(rng) < options.offline_rate) {
        state.offline_until = now + options.offline_for;
        ++result.offline_episodes;
      }
      if (now < state.offline_until) continue;  // buffered on the device
      if (state.outbox.size() < options.reorder_window) continue;  // gathering a window to shuffle
      flush(device);
    }
    // Devices that are offline or hold a partial window catch up before the end.
    for (std::uint32_t d = 0; d < options.devices && !stop.load(); ++d) flush(d);

    // Drain: wait (bounded) for the acknowledgements still outstanding, also after a stop signal.
    const auto drain_deadline = Clock::now() + options.drain_timeout;
    while (!inflight.empty() && Clock::now() < drain_deadline) settle_front(std::chrono::milliseconds(100));
    result.failed += inflight.size();
    inflight.clear();
    try {
      client.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const mqtt::exception& e) {
      spdlog::debug("firmware-sim: disconnect: {}", e.what());
    }
  } catch (const mqtt::exception& e) {
    spdlog::error("firmware-sim: MQTT client error: {}", e.what());
    return std::unexpected(make_error_code(errc::connect_failed));
  }
  manifest_ok = manifest.close() && manifest_ok;
  result.elapsed_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!manifest_ok) {
    spdlog::error("firmware-sim: writing the manifest {} failed", options.manifest.string());
    return std::unexpected(make_error_code(errc::io_error));
  }
  return result;
}

}  // namespace gw::firmware_sim
