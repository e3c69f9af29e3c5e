// DedupWindow (buffer/dedup.h): the decision rules and the stored encoding.
#include "buffer/dedup.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace gw::buffer {
namespace {

constexpr std::uint8_t kDedupVersion1 = 1;  // fingerprints of (seq, time), no ranges (read only)
constexpr std::uint8_t kDedupVersion2 = 2;  // fingerprints of (seq, time), ranges (read only)
constexpr std::uint8_t kDedupVersion = 3;
constexpr std::size_t kMaxRanges = 32;
constexpr std::uint32_t kMinWindow = 8;
constexpr std::uint32_t kMaxWindow = 1u << 16;
// A new generation's first position on the unwrapped line: room for readings behind it.
constexpr std::uint64_t kStartPos = 1ull << 62;
// A slot whose values are not known (written by version 1 or 2, or a reading without a digest): any
// copy of it is a duplicate.
constexpr std::uint32_t kSeenNoDigest = 1;

bool valid_bits(unsigned bits) { return bits == 8 || bits == 16 || bits == 32 || bits == 64; }
std::uint64_t mask_of(unsigned bits) { return bits >= 64 ? ~0ull : (1ull << bits) - 1; }

std::uint32_t window_for(std::uint32_t window, unsigned bits) {
  std::uint32_t w = std::clamp(window, kMinWindow, kMaxWindow);
  if (bits < 64) w = static_cast<std::uint32_t>(std::min<std::uint64_t>(w, 1ull << (bits - 2)));
  return w;
}

// The slot value for a reading's digest: never 0 (empty); 0 and 1 both mean "not known".
std::uint32_t slot_value(std::uint32_t digest) { return digest < 2 ? kSeenNoDigest : digest; }

bool same_values(std::uint32_t stored, std::uint32_t incoming) {
  return stored == kSeenNoDigest || incoming == kSeenNoDigest || stored == incoming;
}

bool covered(const std::vector<std::pair<std::uint64_t, std::uint64_t>>& seen, std::uint64_t pos) {
  // The last range starting at or before pos.
  auto it = std::upper_bound(seen.begin(), seen.end(), pos, [](std::uint64_t s, const auto& r) { return s < r.first; });
  return it != seen.begin() && pos <= std::prev(it)->second;
}

void note_seen(std::vector<std::pair<std::uint64_t, std::uint64_t>>& seen, std::uint64_t pos) {
  auto it = std::upper_bound(seen.begin(), seen.end(), pos, [](std::uint64_t s, const auto& r) { return s < r.first; });
  if (it != seen.begin() && pos <= std::prev(it)->second) return;  // already in a range
  const bool joins_prev = it != seen.begin() && std::prev(it)->second + 1 == pos;
  const bool joins_next = it != seen.end() && pos + 1 == it->first;
  if (joins_prev && joins_next) {
    std::prev(it)->second = it->second;
    seen.erase(it);
  } else if (joins_prev) {
    std::prev(it)->second = pos;
  } else if (joins_next) {
    it->first = pos;
  } else {
    seen.insert(it, {pos, pos});
    if (seen.size() > kMaxRanges) seen.erase(seen.begin());
  }
}

// Little-endian writes into a buffer sized beforehand: one allocation per encode (it runs for every
// stored message), and no growth path, in which GCC 14 sees a free of a non-heap pointer.
std::uint8_t* put_u64(std::uint8_t* w, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) *w++ = static_cast<std::uint8_t>(v >> (8 * i));
  return w;
}
std::uint8_t* put_u32(std::uint8_t* w, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) *w++ = static_cast<std::uint8_t>(v >> (8 * i));
  return w;
}
std::uint64_t get_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
std::uint32_t get_u32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

DedupWindow::DedupWindow(const DedupOptions& options)
    : window_(window_for(options.window, valid_bits(options.seq_bits) ? options.seq_bits : 64)),
      bits_(valid_bits(options.seq_bits) ? options.seq_bits : 64),
      reboot_bound_ms_(std::max<std::int64_t>(0, options.reboot_time_bound.count())) {
  cur_.slots.assign(window_, 0);
  prev_.slots.assign(window_, 0);
}

DedupWindow::Place DedupWindow::place(const Generation& g, std::uint64_t seq) const {
  const std::uint64_t mask = mask_of(bits_);
  const std::uint64_t forward = (seq - g.high) & mask;
  const std::uint64_t half = bits_ >= 64 ? 1ull << 63 : 1ull << (bits_ - 1);
  if (forward != 0 && forward < half) return {true, forward};
  return {false, (g.high - seq) & mask};
}

std::uint32_t DedupWindow::slot(const Generation& g, std::uint64_t behind) const {
  return g.slots[(g.high_pos - behind) % window_];
}

void DedupWindow::mark(Generation& g, std::uint64_t pos, std::uint32_t digest) {
  g.slots[pos % window_] = slot_value(digest);
  note_seen(g.seen, pos);
}

void DedupWindow::start(Generation& g, const Reading& r) {
  g.used = true;
  g.epoch = r.epoch;
  g.high = r.seq & mask_of(bits_);
  g.high_pos = kStartPos;
  g.high_time = r.time_ms;
  g.start_time = r.time_ms;
  g.seen.assign(1, {kStartPos, kStartPos});
  g.slots.assign(window_, 0);
  g.slots[kStartPos % window_] = slot_value(r.digest);
}

void DedupWindow::advance(Generation& g, const Reading& r, std::uint64_t distance, DedupDecision& d) {
  const std::uint64_t seq = r.seq & mask_of(bits_);
  d.gap = distance - 1;
  d.wrapped = seq < g.high;  // ahead, yet a smaller number: the counter went through 2^B - 1 -> 0
  if (distance > std::numeric_limits<std::uint64_t>::max() - g.high_pos) {
    // Only a 64-bit counter jumping by about 2^63 again and again gets here: start the line anew.
    const std::uint64_t epoch = g.epoch;
    const std::int64_t start_time = g.start_time;
    start(g, r);
    g.epoch = epoch;
    g.start_time = start_time;
    return;
  }
  // Clear the slots the window slides over (at most the whole window).
  const std::uint64_t steps = std::min<std::uint64_t>(distance, window_);
  for (std::uint64_t i = 1; i <= steps; ++i) g.slots[(g.high_pos + i) % window_] = 0;
  g.high = seq;
  g.high_pos += distance;
  g.high_time = r.time_ms;
  mark(g, g.high_pos, r.digest);
}

DedupDecision DedupWindow::judge(Generation& g, const Reading& r, Place p) {
  DedupDecision d;
  if (p.ahead) {
    advance(g, r, p.distance, d);
    return d;
  }
  const std::uint64_t behind = p.distance;
  if (behind > g.high_pos) {  // before the line's beginning: nothing is known of it
    d.late = d.unknown = true;
    return d;
  }
  const std::uint64_t pos = g.high_pos - behind;
  if (behind < window_) {
    if (const std::uint32_t s = slot(g, behind); s != 0) {
      d.verdict = same_values(s, slot_value(r.digest)) ? DedupVerdict::duplicate : DedupVerdict::conflicting;
      return d;
    }
    mark(g, pos, r.digest);
    d.late = true;
    return d;
  }
  // Behind the window: its values are forgotten, but the ranges still know whether it was seen.
  if (covered(g.seen, pos)) {
    d.verdict = DedupVerdict::duplicate;
    return d;
  }
  note_seen(g.seen, pos);
  d.late = d.unknown = true;
  return d;
}

DedupDecision DedupWindow::admit(const Reading& in) {
  Reading r = in;
  r.seq &= mask_of(bits_);
  if (!cur_.used) {
    start(cur_, r);
    return {};
  }
  if (r.epoch != 0 || cur_.epoch != 0) {  // the source names its boots (rows 8, 11 by boot id)
    if (r.epoch == cur_.epoch) return judge(cur_, r, place(cur_, r.seq));
    if (prev_.used && r.epoch == prev_.epoch) return judge(prev_, r, place(prev_, r.seq));
    std::swap(prev_, cur_);
    start(cur_, r);
    return DedupDecision{.reboot = true};
  }
  // No boot ids. A copy from before the current generation began (by event time) belongs to the
  // previous one (row 11).
  if (prev_.used && r.time_ms < cur_.start_time) return judge(prev_, r, place(prev_, r.seq));
  const Place p = place(cur_, r.seq);
  if (p.ahead || p.distance < window_) {
    DedupDecision d = judge(cur_, r, p);
    if (d.verdict == DedupVerdict::store && !p.ahead && r.seq == 0) d.ambiguous_zero = true;  // row 12
    return d;
  }
  // Behind by W or more (rows 9, 10; dedup.h says why these rules).
  const bool known = p.distance <= cur_.high_pos;
  const std::uint64_t pos = known ? cur_.high_pos - p.distance : 0;
  if (r.time_ms <= cur_.high_time && known && covered(cur_.seen, pos)) return DedupDecision{.verdict = DedupVerdict::duplicate};
  if (r.time_ms > cur_.high_time) {
    std::swap(prev_, cur_);
    start(cur_, r);
    return DedupDecision{.reboot = true};
  }
  if (r.time_ms >= cur_.high_time - reboot_bound_ms_) {
    if (known) note_seen(cur_.seen, pos);
    return DedupDecision{.late = true, .unknown = true};
  }
  return DedupDecision{.verdict = DedupVerdict::stale};
}

// version u8 = 3 | window u32 | seq_bits u8 | 2 x (used u8, epoch u64, high u64, high_pos u64,
// high_time i64, start_time i64, u16 n, n x (first u64, last u64), window x u32), little-endian.
std::vector<std::uint8_t> DedupWindow::encode() const {
  std::size_t size = 6;
  for (const Generation* g : {&cur_, &prev_}) size += 43 + 16 * g->seen.size() + 4 * g->slots.size();
  std::vector<std::uint8_t> out(size);
  std::uint8_t* w = out.data();
  *w++ = kDedupVersion;
  w = put_u32(w, window_);
  *w++ = static_cast<std::uint8_t>(bits_);
  for (const Generation* g : {&cur_, &prev_}) {
    *w++ = g->used ? 1 : 0;
    w = put_u64(w, g->epoch);
    w = put_u64(w, g->high);
    w = put_u64(w, g->high_pos);
    w = put_u64(w, static_cast<std::uint64_t>(g->high_time));
    w = put_u64(w, static_cast<std::uint64_t>(g->start_time));
    *w++ = static_cast<std::uint8_t>(g->seen.size() & 0xff);
    *w++ = static_cast<std::uint8_t>(g->seen.size() >> 8);
    for (const auto& [first, last] : g->seen) {
      w = put_u64(w, first);
      w = put_u64(w, last);
    }
    for (std::uint32_t s : g->slots) w = put_u32(w, s);
  }
  return out;
}

std::optional<DedupWindow> DedupWindow::decode(std::span<const std::uint8_t> bytes, const DedupOptions& options) {
  if (bytes.size() < 5) return std::nullopt;
  const std::uint8_t version = bytes[0];
  if (version != kDedupVersion && version != kDedupVersion2 && version != kDedupVersion1) return std::nullopt;
  const bool v3 = version == kDedupVersion;
  const std::uint32_t window = get_u32(bytes.data() + 1);
  std::size_t pos = 5;
  unsigned bits = 64;
  if (v3) {
    if (bytes.size() < 6) return std::nullopt;
    bits = bytes[pos++];
  }
  if (!valid_bits(bits) || window != window_for(window, bits)) return std::nullopt;
  DedupWindow w(DedupOptions{window, static_cast<std::uint8_t>(bits), options.reboot_time_bound});
  auto need = [&](std::size_t n) { return bytes.size() - pos >= n; };
  for (Generation* g : {&w.cur_, &w.prev_}) {
    const std::size_t header = v3 ? 41 : 25;
    if (!need(header)) return std::nullopt;
    const std::uint8_t* p = bytes.data() + pos;
    g->used = p[0] != 0;
    g->epoch = get_u64(p + 1);
    g->high = get_u64(p + 9);
    if (v3) {
      g->high_pos = get_u64(p + 17);
      g->high_time = static_cast<std::int64_t>(get_u64(p + 25));
      g->start_time = static_cast<std::int64_t>(get_u64(p + 33));
    } else {
      // Versions 1 and 2 numbered positions by the seq itself (no wraps) and knew no first time.
      g->high_pos = g->high;
      g->high_time = static_cast<std::int64_t>(get_u64(p + 17));
      g->start_time = std::numeric_limits<std::int64_t>::min();
    }
    pos += header;
    if (version != kDedupVersion1) {
      if (!need(2)) return std::nullopt;
      const std::size_t n = bytes[pos] | (static_cast<std::size_t>(bytes[pos + 1]) << 8);
      pos += 2;
      if (n > kMaxRanges || !need(16 * n)) return std::nullopt;
      for (std::size_t r = 0; r < n; ++r, pos += 16) {
        g->seen.emplace_back(get_u64(bytes.data() + pos), get_u64(bytes.data() + pos + 8));
      }
    }
    if (!need(4 * static_cast<std::size_t>(window))) return std::nullopt;
    for (std::uint32_t i = 0; i < window; ++i, pos += 4) {
      const std::uint32_t s = get_u32(bytes.data() + pos);
      // Versions 1 and 2 kept fingerprints of (seq, time), not of the values: seen, values unknown.
      g->slots[i] = v3 || s == 0 ? s : kSeenNoDigest;
    }
  }
  if (pos != bytes.size()) return std::nullopt;
  // A changed [ingest] seq_bits applies to windows stored before, where their width allows: the
  // highest seq keeps its value under the new width (devices' counters never exceeded it), and
  // positions are the window's own.
  const unsigned want = valid_bits(options.seq_bits) ? options.seq_bits : 64;
  if (want != bits && window_for(window, want) == window) {
    w.bits_ = static_cast<std::uint8_t>(want);
    for (Generation* g : {&w.cur_, &w.prev_}) g->high &= mask_of(want);
  }
  return w;
}

}  // namespace gw::buffer
