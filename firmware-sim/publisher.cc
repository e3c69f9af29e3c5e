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
  return fmt::format("published={} acked={} failed={} elapsed_s={:.3f}", published, acked, failed, elapsed_s);
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
        ++result.acked;
        manifest_ok = manifest.add(device_ids[f.device], f.seq) && manifest_ok;
      } catch (const mqtt::exception& e) {
        ++result.failed;
        spdlog::debug("firmware-sim: {} seq {} not acknowledged: {}", device_ids[f.device], f.seq, e.what());
      }
      inflight.pop_front();
      return true;
    };

    const double total_rate = options.rate * options.devices;
    const std::uint64_t total =
        options.count ? *options.count * options.devices : std::numeric_limits<std::uint64_t>::max();
    for (std::uint64_t k = 0; k < total && !stop.load(); ++k) {
      if (options.duration && Clock::now() - start >= *options.duration) break;
      if (total_rate > 0) {
        const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(static_cast<double>(k) / total_rate));
        while (!stop.load() && Clock::now() < due) {
          std::this_thread::sleep_for(std::min<Clock::duration>(due - Clock::now(), std::chrono::milliseconds(100)));
        }
        if (stop.load()) break;
        if (options.duration && due - start >= *options.duration) break;
      }
      // Harvest what is already done, then make room in the window.
      while (!inflight.empty() && inflight.front().token->is_complete()) settle_front(std::chrono::milliseconds(0));
      while (inflight.size() >= options.max_inflight && !stop.load()) settle_front(std::chrono::milliseconds(100));
      if (stop.load()) break;

      const auto device = static_cast<std::uint32_t>(k % options.devices);
      ingest::Event event{ingest::DeviceId{device_ids[device]}, ingest::DeviceSeq{next_seq[device]++},
                          ingest::EventTime{now_ms()}, source->next(device)};
      const auto payload = ingest::encode_telemetry(event);
      ++result.published;
      try {
        inflight.push_back({client.publish(topics[device], payload.data(), payload.size(), options.qos, false),
                            device, event.seq.value});
      } catch (const mqtt::exception& e) {
        ++result.failed;
        spdlog::warn("firmware-sim: publish {} seq {} failed: {}", device_ids[device], event.seq.value, e.what());
      }
    }

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
