// A simulated device's numbering (see device.h). Not thread-safe (one publisher thread).
#include "firmware-sim/device.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gw::firmware_sim {
namespace {

// SplitMix64's finaliser: spreads (seed, device) over the generator's seed space, so that devices
// and seeds close to each other do not draw related streams.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

bool valid(const SequenceOptions& options) {
  const unsigned b = options.seq_bits;
  auto probability = [](double p) { return p >= 0 && p <= 1; };
  return options.seq_start <= 1 && (b == 8 || b == 16 || b == 32 || b == 64) && probability(options.reboot_rate) &&
         probability(options.retransmit_rate) &&
         (options.retransmit_rate == 0 || options.retransmit_delay >= std::chrono::milliseconds(1));
}

SimDevice::SimDevice(const SequenceOptions& options, std::uint64_t seed, std::uint32_t device)
    : options_(options),
      rng_(mix(mix(seed) ^ device)),
      max_seq_(options.seq_bits >= 64 ? std::numeric_limits<std::uint64_t>::max()
                                      : (std::uint64_t{1} << options.seq_bits) - 1),
      next_seq_(options.seq_start) {
  boot_id_ = new_boot_id();
}

std::uint32_t SimDevice::new_boot_id() {
  if (!options_.boot_id) return 0;
  std::uniform_int_distribution<std::uint32_t> any(1, std::numeric_limits<std::uint32_t>::max());
  std::uint32_t id = any(rng_);
  // A new boot must not repeat the last boot's id (a chance of 2^-32 a draw; bounded anyway).
  for (int i = 0; i < 8 && id == boot_id_; ++i) id = any(rng_);
  return id;
}

Numbering SimDevice::next() {
  Numbering n;
  if (options_.reboot_rate > 0) {
    // Drawn for every reading, so that reboot_min_events does not shift the later draws.
    const bool draw = std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < options_.reboot_rate;
    if (draw && since_boot_ >= options_.reboot_min_events) {
      ++boot_;
      boot_id_ = new_boot_id();
      next_seq_ = options_.seq_start;
      lap_ = 0;
      since_boot_ = 0;
      n.rebooted = true;
    }
  }
  n.seq = next_seq_;
  n.boot_id = boot_id_;
  n.boot = boot_;
  n.lap = lap_;
  if (next_seq_ == max_seq_) {
    next_seq_ = 0;
    ++lap_;
  } else {
    ++next_seq_;
  }
  ++since_boot_;
  const double p = options_.retransmit_rate;
  if (p > 0 && std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p) {
    const double max_us = std::chrono::duration<double, std::micro>(options_.retransmit_delay).count();
    const double us = std::uniform_real_distribution<double>(100.0, max_us)(rng_);
    n.retransmit_after =
        std::chrono::microseconds(std::clamp<std::int64_t>(std::llround(us), 100, std::llround(max_us)));
  }
  return n;
}

}  // namespace gw::firmware_sim
