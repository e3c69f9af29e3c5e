// A brute-force reference of the windowing semantics (windowing/README.md) for the property tests:
// it keeps every accepted value of every window and computes each aggregate from the full list at
// the end, and re-evaluates every watermark from scratch at each step. Slow and obvious on purpose.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "windowing/engine.h"
#include "windowing/engine.h"

namespace gw::windowing::test {

struct RefValue {
  std::int64_t t;
  double v;
  std::uint64_t arrival;
};

struct RefWindow {
  std::int64_t start, end;
  std::vector<RefValue> values;
};

struct RefLate {
  std::string device;
  std::uint64_t seq;
  std::int64_t time;
  std::uint32_t missed, folded;
};

// Identity of a result: (scope, key, metric, start, end).
using RefKey = std::tuple<int, std::string, std::string, std::int64_t, std::int64_t>;

// Written out here rather than taken from windowing/watermark.h and windows.h, so that a mistake
// there shows up as a difference.
inline bool ref_closed(std::int64_t end, std::int64_t wm, std::int64_t lateness) { return wm >= end + lateness; }
inline std::int64_t ref_cap(std::int64_t max_time, std::int64_t now, std::int64_t skew) {
  return std::min(max_time, now + skew);
}
// Every window [start, start + size) with start a multiple of slide that holds t, by trying all
// nearby multiples.
template <class F>
void ref_windows(const WindowSpec& w, std::int64_t t, F&& f) {
  const std::int64_t slide = w.kind == WindowKind::tumbling ? w.size_ms : w.slide_ms;
  const std::int64_t k0 = t / slide;
  for (std::int64_t k = k0 - w.size_ms / slide - 2; k <= k0 + 1; ++k) {
    const std::int64_t start = k * slide;
    if (start <= t && t < start + w.size_ms) f(start, start + w.size_ms);
  }
}
inline std::int64_t ref_last_end(const WindowSpec& w, std::int64_t t) {
  if (w.kind == WindowKind::session) return t + w.gap_ms;
  std::int64_t end = std::numeric_limits<std::int64_t>::min();
  ref_windows(w, t, [&](std::int64_t, std::int64_t e) { end = std::max(end, e); });
  return end;
}

class Reference {
 public:
  explicit Reference(EngineOptions o) : o_(std::move(o)) {}

  void add(const ingest::Event& e, std::int64_t now) {
    step(now);
    Dev& d = devs_[e.device.value];
    std::optional<std::string> group;
    if (!o_.group_by_tag.empty()) {
      for (const auto& t : e.tags) {
        if (t.key == o_.group_by_tag) {
          group = t.value;
          break;
        }
      }
      if (group) groups_[*group];
    }
    d.group = group;
    if (d.max_time != kNone) d.wm = std::max(d.wm, ref_cap(d.max_time, now_, o_.max_skew_ms));
    refresh_groups();
    const std::int64_t wd = d.wm;
    const std::int64_t wg = group ? groups_[*group].wm : 0;
    std::uint32_t missed = 0, folded = 0;
    for (const auto& m : e.metrics) {
      fold(series_[{1, e.device.value, m.name}], e.time.ms, m.value, wd, missed, folded);
      if (group) fold(series_[{2, *group, m.name}], e.time.ms, m.value, wg, missed, folded);
    }
    if (missed > 0) late.push_back({e.device.value, e.seq.value, e.time.ms, missed, folded});
    d.max_time = std::max(d.max_time, e.time.ms);
    d.last_seen = now_;
    d.active = true;
    d.wm = std::max(d.wm, ref_cap(d.max_time, now_, o_.max_skew_ms));
    refresh_groups();
  }

  void advance(std::int64_t now) {
    step(now);
    for (auto& [id, d] : devs_) {
      if (d.active && d.max_time != kNone) d.wm = std::max(d.wm, ref_cap(d.max_time, now_, o_.max_skew_ms));
    }
    refresh_groups();
  }

  void flush() {
    for (auto& [key, s] : series_) {
      for (auto& w : s.open) closed[{std::get<0>(key), std::get<1>(key), std::get<2>(key), w.start, w.end}] = w.values;
      s.open.clear();
    }
  }

  std::map<RefKey, std::vector<RefValue>> closed;
  std::vector<RefLate> late;

 private:
  static constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::min();
  struct Dev {
    std::int64_t max_time = kNone, wm = kNone, last_seen = kNone;
    bool active = false;
    std::optional<std::string> group;
  };
  struct Grp {
    std::int64_t wm = kNone;
  };
  struct Ser {
    std::vector<RefWindow> open;  // tumbling/hopping: by start; session: disjoint
  };

  void step(std::int64_t now) {
    now_ = std::max(now_, now);
    for (auto& [id, d] : devs_) {
      if (d.active && now_ - d.last_seen >= o_.idle_timeout_ms) {
        d.active = false;
        if (d.max_time != kNone) {
          const std::int64_t flush = ref_last_end(o_.window, d.max_time) + o_.allowed_lateness_ms;
          d.wm = std::max(d.wm, std::min(flush, now_ + o_.max_skew_ms));
        }
      }
    }
    refresh_groups();
  }

  void refresh_groups() {
    for (auto& [name, g] : groups_) {
      std::int64_t active_min = std::numeric_limits<std::int64_t>::max(), all_max = kNone;
      bool any_active = false, any = false;
      for (auto& [id, d] : devs_) {
        if (d.group != name) continue;
        any = true;
        all_max = std::max(all_max, d.wm);
        if (d.active) {
          any_active = true;
          active_min = std::min(active_min, d.wm);
        }
      }
      if (!any) continue;
      g.wm = std::max(g.wm, any_active ? active_min : all_max);
    }
    // Close what the watermarks passed (only sessions need it: the others are looked up by start).
    for (auto& [key, s] : series_) {
      const std::int64_t wm = std::get<0>(key) == 1 ? devs_[std::get<1>(key)].wm : groups_[std::get<1>(key)].wm;
      for (auto it = s.open.begin(); it != s.open.end();) {
        if (ref_closed(it->end, wm, o_.allowed_lateness_ms)) {
          closed[{std::get<0>(key), std::get<1>(key), std::get<2>(key), it->start, it->end}] = it->values;
          it = s.open.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  void fold(Ser& s, std::int64_t t, double v, std::int64_t wm, std::uint32_t& missed, std::uint32_t& folded) {
    const RefValue rv{t, v, arrival_++};
    if (o_.window.kind == WindowKind::session) {
      const std::int64_t end = t + o_.window.gap_ms;
      if (ref_closed(end, wm, o_.allowed_lateness_ms)) {
        ++missed;
        return;
      }
      RefWindow merged{t, end, {}};
      for (auto it = s.open.begin(); it != s.open.end();) {
        if (it->start < end && t < it->end) {
          merged.start = std::min(merged.start, it->start);
          merged.end = std::max(merged.end, it->end);
          merged.values.insert(merged.values.end(), it->values.begin(), it->values.end());
          it = s.open.erase(it);
        } else {
          ++it;
        }
      }
      merged.values.push_back(rv);
      s.open.push_back(std::move(merged));
      ++folded;
      return;
    }
    ref_windows(o_.window, t, [&](std::int64_t start, std::int64_t end) {
      if (ref_closed(end, wm, o_.allowed_lateness_ms)) {
        ++missed;
        return;
      }
      auto it = std::find_if(s.open.begin(), s.open.end(), [&](const RefWindow& w) { return w.start == start; });
      if (it == s.open.end()) {
        s.open.push_back({start, end, {}});
        it = s.open.end() - 1;
      }
      it->values.push_back(rv);
      ++folded;
    });
  }

  EngineOptions o_;
  std::int64_t now_ = kNone;
  std::uint64_t arrival_ = 0;
  std::map<std::string, Dev> devs_;
  std::map<std::string, Grp> groups_;
  std::map<std::tuple<int, std::string, std::string>, Ser> series_;
};

}  // namespace gw::windowing::test
