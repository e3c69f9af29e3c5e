// DedupWindow (buffer/dedup.h): the decision rules and the stored encoding.
#include "buffer/dedup.h"

#include <algorithm>
#include <cstring>

namespace gw::buffer {
namespace {

constexpr std::uint8_t kDedupVersion1 = 1;  // without the seen ranges (read only)
constexpr std::uint8_t kDedupVersion = 2;
constexpr std::size_t kMaxRanges = 32;
constexpr std::uint32_t kMinWindow = 8;
constexpr std::uint32_t kMaxWindow = 1u << 16;

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// Never 0 (0 marks an empty slot).
std::uint32_t fingerprint(std::uint64_t seq, std::int64_t time_ms) {
  return static_cast<std::uint32_t>(mix(seq * 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(time_ms)) >> 32) | 1u;
}

void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
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

DedupWindow::DedupWindow(std::uint32_t window) : window_(std::clamp(window, kMinWindow, kMaxWindow)) {
  cur_.slots.assign(window_, 0);
  prev_.slots.assign(window_, 0);
}

bool DedupWindow::slot_taken(const Generation& g, std::uint64_t seq) const {
  return g.used && seq <= g.high && g.high - seq < window_ && g.slots[seq % window_] != 0;
}

bool DedupWindow::covered(const Generation& g, std::uint64_t seq) {
  if (!g.used) return false;
  // The last range starting at or before seq.
  auto it = std::upper_bound(g.seen.begin(), g.seen.end(), seq,
                             [](std::uint64_t s, const auto& r) { return s < r.first; });
  return it != g.seen.begin() && seq <= std::prev(it)->second;
}

void DedupWindow::note_seen(Generation& g, std::uint64_t seq) {
  auto it = std::upper_bound(g.seen.begin(), g.seen.end(), seq,
                             [](std::uint64_t s, const auto& r) { return s < r.first; });
  if (it != g.seen.begin() && seq <= std::prev(it)->second) return;  // already in a range
  const bool joins_prev = it != g.seen.begin() && std::prev(it)->second + 1 == seq;
  const bool joins_next = it != g.seen.end() && seq + 1 == it->first;
  if (joins_prev && joins_next) {
    std::prev(it)->second = it->second;
    g.seen.erase(it);
  } else if (joins_prev) {
    std::prev(it)->second = seq;
  } else if (joins_next) {
    it->first = seq;
  } else {
    g.seen.insert(it, {seq, seq});
    if (g.seen.size() > kMaxRanges) g.seen.erase(g.seen.begin());
  }
}

bool DedupWindow::contains(const Generation& g, std::uint64_t seq, std::uint32_t fp) const {
  return slot_taken(g, seq) && g.slots[seq % window_] == fp;
}

void DedupWindow::mark(Generation& g, std::uint64_t seq, std::int64_t time_ms, std::uint32_t fp) {
  if (seq > g.high) {
    // Clear the slots the window slides over (at most the whole window).
    const std::uint64_t steps = std::min<std::uint64_t>(seq - g.high, window_);
    for (std::uint64_t i = 1; i <= steps; ++i) g.slots[(g.high + i) % window_] = 0;
    g.high = seq;
  }
  if (g.high - seq < window_) g.slots[seq % window_] = fp;
  g.last_time = std::max(g.last_time, time_ms);
  note_seen(g, seq);
}

void DedupWindow::start(Generation& g, std::uint64_t epoch, std::uint64_t seq, std::int64_t time_ms,
                        std::uint32_t fp) {
  g.used = true;
  g.epoch = epoch;
  g.high = seq;
  g.last_time = time_ms;
  g.seen.assign(1, {seq, seq});
  std::fill(g.slots.begin(), g.slots.end(), 0);
  g.slots[seq % window_] = fp;
}

DedupVerdict DedupWindow::admit_in(Generation& g, std::uint64_t seq, std::int64_t time_ms, std::uint32_t fp) {
  if (contains(g, seq, fp) || covered(g, seq)) return DedupVerdict::duplicate;
  const bool below = seq <= g.high && g.high - seq >= window_;
  mark(g, seq, time_ms, fp);
  return below ? DedupVerdict::unknown : DedupVerdict::fresh;
}

DedupVerdict DedupWindow::admit(std::uint64_t epoch, std::uint64_t seq, std::int64_t time_ms) {
  const std::uint32_t fp = fingerprint(seq, time_ms);
  if (!cur_.used) {
    start(cur_, epoch, seq, time_ms, fp);
    return DedupVerdict::fresh;
  }
  if (epoch != 0 || cur_.epoch != 0) {  // the source names its boots
    if (epoch == cur_.epoch) return admit_in(cur_, seq, time_ms, fp);
    if (prev_.used && epoch == prev_.epoch) return admit_in(prev_, seq, time_ms, fp);  // late, from the last boot
    std::swap(prev_, cur_);
    start(cur_, epoch, seq, time_ms, fp);
    return DedupVerdict::reset;
  }
  // No boot ids: a redelivery carries the same time; a reboot sends a lower seq with a later time,
  // or a seq whose slot holds another record.
  if (contains(cur_, seq, fp) || contains(prev_, seq, fp)) return DedupVerdict::duplicate;
  const bool backwards = seq < cur_.high && time_ms > cur_.last_time;
  if (backwards || slot_taken(cur_, seq)) {
    std::swap(prev_, cur_);
    start(cur_, 0, seq, time_ms, fp);
    return DedupVerdict::reset;
  }
  return admit_in(cur_, seq, time_ms, fp);  // (covered seqs of this generation are duplicates there)
}

// version u8 | window u32 | 2 x (used u8, epoch u64, high u64, last_time i64, u16 n, n x (first u64,
// last u64), window x u32), little-endian. Version 1 had no ranges (n and the pairs).
std::vector<std::uint8_t> DedupWindow::encode() const {
  std::vector<std::uint8_t> out;
  out.reserve(5 + 2 * (41 + 4 * static_cast<std::size_t>(window_)));
  out.push_back(kDedupVersion);
  put_u32(out, window_);
  for (const Generation* g : {&cur_, &prev_}) {
    out.push_back(g->used ? 1 : 0);
    put_u64(out, g->epoch);
    put_u64(out, g->high);
    put_u64(out, static_cast<std::uint64_t>(g->last_time));
    out.push_back(static_cast<std::uint8_t>(g->seen.size() & 0xff));
    out.push_back(static_cast<std::uint8_t>(g->seen.size() >> 8));
    for (const auto& [first, last] : g->seen) {
      put_u64(out, first);
      put_u64(out, last);
    }
    for (std::uint32_t s : g->slots) put_u32(out, s);
  }
  return out;
}

std::optional<DedupWindow> DedupWindow::decode(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < 5 || (bytes[0] != kDedupVersion && bytes[0] != kDedupVersion1)) return std::nullopt;
  const bool v2 = bytes[0] == kDedupVersion;
  const std::uint32_t window = get_u32(bytes.data() + 1);
  if (window < kMinWindow || window > kMaxWindow) return std::nullopt;
  DedupWindow w(window);
  std::size_t pos = 5;
  auto need = [&](std::size_t n) { return bytes.size() - pos >= n; };
  for (Generation* g : {&w.cur_, &w.prev_}) {
    if (!need(25)) return std::nullopt;
    const std::uint8_t* p = bytes.data() + pos;
    g->used = p[0] != 0;
    g->epoch = get_u64(p + 1);
    g->high = get_u64(p + 9);
    g->last_time = static_cast<std::int64_t>(get_u64(p + 17));
    pos += 25;
    if (v2) {
      if (!need(2)) return std::nullopt;
      const std::size_t n = bytes[pos] | (static_cast<std::size_t>(bytes[pos + 1]) << 8);
      pos += 2;
      if (n > kMaxRanges || !need(16 * n)) return std::nullopt;
      for (std::size_t r = 0; r < n; ++r, pos += 16) {
        g->seen.emplace_back(get_u64(bytes.data() + pos), get_u64(bytes.data() + pos + 8));
      }
    }
    if (!need(4 * static_cast<std::size_t>(window))) return std::nullopt;
    for (std::uint32_t i = 0; i < window; ++i, pos += 4) g->slots[i] = get_u32(bytes.data() + pos);
  }
  if (pos != bytes.size()) return std::nullopt;
  return w;
}

}  // namespace gw::buffer
