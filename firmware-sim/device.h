// How one simulated device numbers its readings, as real devices do (the gateway's dedup,
// buffer/dedup.h, has to tell each case apart): a sequence counter that starts at 0 or 1 after each
// boot and wraps at 2^B, reboots that restart it, a boot id that changes at each boot (or is 0:
// the device has none), and which readings are sent again later (retransmitted).
//
// Every decision is drawn from the device's own generator, seeded from (seed, device index), in
// the order the device produces its readings: a run repeats for a seed whatever the timing and
// whatever the other devices or the other fleet behaviours do.
//
// Thread-safety: a SimDevice is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace gw::firmware_sim {

struct SequenceOptions {
  // The first seq after each boot: 0 or 1.
  std::uint64_t seq_start = 1;
  // The counter's width B: 8, 16, 32 or 64. 2^B-1 is followed by 0 (not by seq_start).
  unsigned seq_bits = 64;
  // Per reading: probability that the device reboots just before it (once reboot_min_events
  // readings were produced since its last boot). Its counter restarts at seq_start.
  double reboot_rate = 0;
  // true: each boot draws a new non-zero boot id (different from the one before); false: boot id 0,
  // the device has none (what the simulator always sent before boot ids).
  bool boot_id = false;
  // A device reboots only after at least this many readings since its last boot (or since the
  // start). A gateway recognises the reboot of a device without a boot id only when its seq goes
  // back by at least the dedup window W (default 64): a device that rebooted after fewer readings
  // would look like one that retransmits old readings. 256 leaves room above the default W for
  // reordering and late copies.
  std::uint64_t reboot_min_events = 256;
  // Per reading: probability that it is retransmitted once: sent again a uniform 0.1 ms ..
  // retransmit_delay after it was first sent, with the same seq, boot id and values and a time
  // re-stamped as a base station would (see Numbering::retransmit_after).
  double retransmit_rate = 0;
  std::chrono::milliseconds retransmit_delay{1000};  // >= 1 ms when retransmit_rate > 0
};

// Whether the options are in range (seq_start 0/1, seq_bits 8/16/32/64, probabilities in [0, 1], a
// retransmit delay of at least 1 ms if there are retransmissions).
bool valid(const SequenceOptions& options);

// The numbering of one reading.
struct Numbering {
  std::uint64_t seq = 0;
  std::uint32_t boot_id = 0;
  std::uint64_t boot = 0;  // which boot of the run: 0 the first, +1 at each reboot
  std::uint64_t lap = 0;   // how often the counter wrapped (2^B-1 -> 0) since this boot began
  bool rebooted = false;   // the device rebooted just before this reading
  // 0 = not retransmitted; else the copy goes out this long after the reading was first sent, its
  // time_ms the reading's plus this delay rounded up to whole ms (1 .. retransmit_delay later).
  std::chrono::microseconds retransmit_after{0};
};

class SimDevice {
 public:
  // `device` is the device's 0-based index; `options` must be valid().
  SimDevice(const SequenceOptions& options, std::uint64_t seed, std::uint32_t device);

  // Numbers the next reading: first draws whether the device reboots before it, then whether it
  // will be retransmitted.
  Numbering next();

 private:
  std::uint32_t new_boot_id();

  SequenceOptions options_;
  std::mt19937_64 rng_;
  std::uint64_t max_seq_;  // 2^B - 1
  std::uint64_t next_seq_;
  std::uint32_t boot_id_ = 0;
  std::uint64_t boot_ = 0;
  std::uint64_t lap_ = 0;
  std::uint64_t since_boot_ = 0;  // readings numbered since the last boot
};

}  // namespace gw::firmware_sim
