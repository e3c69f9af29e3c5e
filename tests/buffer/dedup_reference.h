// A brute-force model of device-sequences.md, written from its table and the decisions written
// next to buffer/dedup.h, not from the implementation: every reading a generation accepted is kept
// forever in a map keyed by its position on an unwrapped line (plain signed integers), so nothing is
// forgotten, slid over or wrapped. The property tests feed it and a DedupWindow the same deliveries
// and compare every decision.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>

#include "buffer/dedup.h"

namespace gw::test {

class DedupReference {
 public:
  explicit DedupReference(const buffer::DedupOptions& o) : bits_(o.seq_bits), bound_(o.reboot_time_bound.count()) {
    // The window is W, but at most 2^(B-2) (dedup.h).
    w_ = std::clamp<std::uint64_t>(o.window, 8, 65536);
    if (bits_ < 64) w_ = std::min<std::uint64_t>(w_, 1ull << (bits_ - 2));
  }

  buffer::DedupDecision admit(const buffer::Reading& in) {
    buffer::Reading r = in;
    r.seq &= mask();
    if (!cur_.used) {  // row 1
      start(cur_, r);
      return {};
    }
    if (r.epoch != 0 || cur_.epoch != 0) {  // rows 8 (and 11 by boot id)
      if (r.epoch == cur_.epoch) return judge(cur_, r);
      if (prev_.used && r.epoch == prev_.epoch) return judge(prev_, r);
      prev_ = cur_;
      start(cur_, r);
      return {.reboot = true};
    }
    if (prev_.used && r.time_ms < cur_.first_time) return judge(prev_, r);  // row 11
    const std::uint64_t forward = (r.seq - cur_.last) & mask();
    const std::uint64_t behind = (cur_.last - r.seq) & mask();
    const bool ahead = forward != 0 && forward < half();
    if (ahead || behind < w_) {
      auto d = judge(cur_, r);
      if (!ahead && d.verdict == buffer::DedupVerdict::store && r.seq == 0) d.ambiguous_zero = true;  // row 12
      return d;
    }
    // Rows 9 and 10 as dedup.h decides them.
    const std::int64_t pos = cur_.last_pos - static_cast<std::int64_t>(behind);
    if (r.time_ms <= cur_.last_time && cur_.accepted.contains(pos)) return {.verdict = buffer::DedupVerdict::duplicate};
    if (r.time_ms > cur_.last_time) {
      prev_ = cur_;
      start(cur_, r);
      return {.reboot = true};
    }
    if (r.time_ms >= cur_.last_time - bound_) {
      cur_.accepted.emplace(pos, r.digest);
      return {.late = true, .unknown = true};
    }
    return {.verdict = buffer::DedupVerdict::stale};  // row 10
  }

 private:
  struct Gen {
    bool used = false;
    std::uint64_t epoch = 0;
    std::uint64_t last = 0;         // L
    std::int64_t last_pos = 0;      // L's position
    std::int64_t last_time = 0;     // tL
    std::int64_t first_time = 0;    // tR
    std::map<std::int64_t, std::uint32_t> accepted;  // position -> digest (0, 1: not known)
  };

  std::uint64_t mask() const { return bits_ >= 64 ? ~0ull : (1ull << bits_) - 1; }
  std::uint64_t half() const { return bits_ >= 64 ? 1ull << 63 : 1ull << (bits_ - 1); }

  static void start(Gen& g, const buffer::Reading& r) {
    g = Gen{true, r.epoch, r.seq, 0, r.time_ms, r.time_ms, {}};
    g.accepted[0] = r.digest;
  }

  // Rows 2-7 within one generation (no reboot recognition: that is the caller's).
  buffer::DedupDecision judge(Gen& g, const buffer::Reading& r) const {
    buffer::DedupDecision d;
    const std::uint64_t forward = (r.seq - g.last) & mask();
    if (forward != 0 && forward < half()) {  // rows 2, 3, 7
      d.gap = forward - 1;
      d.wrapped = r.seq < g.last;
      g.last = r.seq;
      g.last_pos += static_cast<std::int64_t>(forward);
      g.last_time = r.time_ms;
      g.accepted[g.last_pos] = r.digest;
      return d;
    }
    const std::uint64_t behind = (g.last - r.seq) & mask();
    const std::int64_t pos = g.last_pos - static_cast<std::int64_t>(behind);
    if (auto it = g.accepted.find(pos); it != g.accepted.end()) {
      // Rows 5 and 6; behind the window the values are no longer known: a duplicate.
      const bool same = behind >= w_ || it->second < 2 || r.digest < 2 || it->second == r.digest;
      d.verdict = same ? buffer::DedupVerdict::duplicate : buffer::DedupVerdict::conflicting;
      return d;
    }
    g.accepted[pos] = r.digest;  // row 4 (or unknown: behind the window, never seen)
    d.late = true;
    d.unknown = behind >= w_;
    return d;
  }

  unsigned bits_;
  std::int64_t bound_;
  std::uint64_t w_;
  Gen cur_, prev_;
};

}  // namespace gw::test
