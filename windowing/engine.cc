// The windowing engine (windowing/engine.h). Devices, groups and series live in vectors and are
// found by name through hash maps; the order of those vectors is an accident of history (it differs
// after a restore), so nothing observable may depend on it: every step sorts what it emits.
#include "windowing/engine.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <queue>
#include <set>
#include <tuple>
#include <unordered_map>

#include "windowing/codec.h"
#include "windowing/watermark.h"

namespace gw::windowing {
namespace {

constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();
constexpr std::uint8_t kVersion = 1;

struct Window {
  std::int64_t start = 0;
  std::int64_t end = 0;
  AggState agg;
};

struct Series {
  Scope scope = Scope::device;
  std::uint32_t owner = 0;  // index of the device or group
  std::string metric;
  std::vector<Window> open;  // sorted by start; ends are sorted too (equal sizes, or disjoint sessions)
  bool dirty = false;
  bool saved = false;  // the state table holds an entry for it
};

struct Device {
  std::string id;
  std::int64_t max_time = kNone;
  std::int64_t watermark = kNone;
  std::int64_t last_seen = kNone;
  std::int32_t group = -1;
  std::vector<std::uint32_t> series;
  std::int64_t next_close = kNever;  // smallest end among its open windows (a lower bound)
  bool active = false;
  bool in_heap = false;
  bool dirty = false;
  std::string restored_group;  // only between restore() and finish_restore()
};

struct Group {
  std::string value;
  std::int64_t watermark = kNone;
  std::vector<std::uint32_t> members;
  std::multiset<std::int64_t> active_watermarks;
  std::vector<std::uint32_t> series;
  std::int64_t next_close = kNever;
  bool dirty = false;
};

std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

std::vector<std::uint8_t> series_key(Scope scope, std::string_view owner, std::string_view metric) {
  Writer w;
  w.u8(static_cast<std::uint8_t>(scope));
  w.str(owner);
  w.raw(std::span(reinterpret_cast<const std::uint8_t*>(metric.data()), metric.size()));
  return limit_key(w.take());
}

}  // namespace

struct Engine::Impl {
  EngineOptions opt;
  std::int64_t now = kNone;
  std::uint64_t next_result_id = 1;
  std::uint64_t next_late_id = 1;
  EngineStats st;
  bool meta_dirty = false;
  bool restoring = true;  // restore() is allowed until the first add()/advance()

  std::vector<Device> devices;
  std::vector<Group> groups;
  std::vector<Series> series;
  std::unordered_map<std::string, std::uint32_t> device_index;
  std::unordered_map<std::string, std::uint32_t> group_index;
  std::vector<std::uint32_t> dirty_devices, dirty_groups, dirty_series;
  std::vector<std::pair<Scope, std::vector<std::uint8_t>>> pending_series;  // restore

  using HeapEntry = std::pair<std::int64_t, std::uint32_t>;  // (last_seen, device)
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, std::greater<>> idle_heap;

  std::vector<Aggregate> step_closed;
  std::vector<Aggregate> closed;
  std::vector<LateEvent> late;

  std::optional<double> alpha() const { return opt.quantile_accuracy; }

  void touch(Device& d, std::uint32_t i) {
    if (!d.dirty) {
      d.dirty = true;
      dirty_devices.push_back(i);
    }
  }
  void touch_group(std::uint32_t i) {
    if (!groups[i].dirty) {
      groups[i].dirty = true;
      dirty_groups.push_back(i);
    }
  }
  void touch_series(std::uint32_t i) {
    if (!series[i].dirty) {
      series[i].dirty = true;
      dirty_series.push_back(i);
    }
  }

  std::uint32_t device_of(const std::string& id) {
    auto [it, inserted] = device_index.try_emplace(id, static_cast<std::uint32_t>(devices.size()));
    if (inserted) {
      devices.emplace_back();
      devices.back().id = id;
      ++st.devices;
    }
    return it->second;
  }

  std::uint32_t group_of(const std::string& value) {
    auto [it, inserted] = group_index.try_emplace(value, static_cast<std::uint32_t>(groups.size()));
    if (inserted) {
      groups.emplace_back();
      groups.back().value = value;
      ++st.groups;
    }
    return it->second;
  }

  std::uint32_t series_of(std::vector<std::uint32_t>& list, Scope scope, std::uint32_t owner, const std::string& metric) {
    for (std::uint32_t i : list) {
      if (series[i].metric == metric) return i;
    }
    const auto i = static_cast<std::uint32_t>(series.size());
    series.push_back(Series{scope, owner, metric, {}, false, false});
    list.push_back(i);
    return i;
  }

  const std::string& owner_name(const Series& s) const {
    return s.scope == Scope::device ? devices[s.owner].id : groups[s.owner].value;
  }

  void emit(const Series& s, const Window& w) {
    Aggregate a;
    a.kind = opt.window.kind;
    a.scope = s.scope;
    a.key = owner_name(s);
    if (s.scope == Scope::group) a.group_tag = opt.group_by_tag;
    a.metric = s.metric;
    a.window_start = ingest::EventTime{w.start};
    a.window_end = ingest::EventTime{w.end};
    a.closed_at_ms = now;
    w.agg.fill(a, w.start, w.end);
    step_closed.push_back(std::move(a));
    --st.open_windows;
  }

  // Closes the windows of `list` that watermark w has passed.
  void close(std::vector<std::uint32_t>& list, std::int64_t w, std::int64_t& next_close) {
    if (!window_closed(next_close, w, opt.allowed_lateness_ms)) return;
    std::int64_t next = kNever;
    for (std::uint32_t i : list) {
      Series& s = series[i];
      std::size_t k = 0;
      while (k < s.open.size() && window_closed(s.open[k].end, w, opt.allowed_lateness_ms)) emit(s, s.open[k++]);
      if (k > 0) {
        s.open.erase(s.open.begin(), s.open.begin() + static_cast<std::ptrdiff_t>(k));
        touch_series(i);
      }
      if (!s.open.empty()) next = std::min(next, s.open.front().end);
    }
    next_close = next;
  }

  void refresh_group(std::uint32_t gi) {
    Group& g = groups[gi];
    std::int64_t candidate = kNone;
    if (!g.active_watermarks.empty()) {
      candidate = *g.active_watermarks.begin();
    } else {
      for (std::uint32_t m : g.members) candidate = std::max(candidate, devices[m].watermark);
    }
    if (candidate <= g.watermark) return;
    g.watermark = candidate;
    touch_group(gi);
    close(g.series, g.watermark, g.next_close);
  }

  void raise_device(std::uint32_t di, std::int64_t w) {
    Device& d = devices[di];
    if (w <= d.watermark) return;
    if (d.active && d.group >= 0) {
      auto& set = groups[static_cast<std::size_t>(d.group)].active_watermarks;
      set.erase(set.find(d.watermark));
      set.insert(w);
    }
    d.watermark = w;
    touch(d, di);
    close(d.series, d.watermark, d.next_close);
    if (d.group >= 0) refresh_group(static_cast<std::uint32_t>(d.group));
  }

  void go_idle(std::uint32_t di) {
    Device& d = devices[di];
    d.active = false;
    touch(d, di);
    ++st.idle_transitions;
    if (d.group >= 0) {
      auto& set = groups[static_cast<std::size_t>(d.group)].active_watermarks;
      set.erase(set.find(d.watermark));
    }
    if (d.max_time != kNone) {
      const std::int64_t flush = sat_add(last_end_containing(opt.window, d.max_time), opt.allowed_lateness_ms);
      raise_device(di, std::min(flush, sat_add(now, opt.max_skew_ms)));
    }
    if (d.group >= 0) refresh_group(static_cast<std::uint32_t>(d.group));
  }

  void set_now(std::int64_t t) {
    restoring = false;
    if (t > now) {
      now = t;
      meta_dirty = true;
    }
    const std::int64_t idle_before = sat_add(now, -opt.idle_timeout_ms);
    while (!idle_heap.empty() && idle_heap.top().first <= idle_before) {
      const auto [seen, di] = idle_heap.top();
      idle_heap.pop();
      Device& d = devices[di];
      d.in_heap = false;
      if (!d.active) continue;
      if (d.last_seen > seen) {
        idle_heap.emplace(d.last_seen, di);
        d.in_heap = true;
        continue;
      }
      go_idle(di);
    }
  }

  void leave_group(std::uint32_t di) {
    Device& d = devices[di];
    if (d.group < 0) return;
    const auto gi = static_cast<std::uint32_t>(d.group);
    Group& g = groups[gi];
    if (d.active) g.active_watermarks.erase(g.active_watermarks.find(d.watermark));
    g.members.erase(std::find(g.members.begin(), g.members.end(), di));
    d.group = -1;
    refresh_group(gi);
  }

  void join_group(std::uint32_t di, std::uint32_t gi) {
    Device& d = devices[di];
    Group& g = groups[gi];
    g.members.push_back(di);
    if (d.active) g.active_watermarks.insert(d.watermark);
    d.group = static_cast<std::int32_t>(gi);
  }

  // Folds one value into the series' windows that watermark w has not closed.
  void fold(std::uint32_t si, std::int64_t t, double v, std::int64_t w, std::uint32_t& missed, std::uint32_t& folded,
            std::int64_t& next_close) {
    Series& s = series[si];
    const std::int64_t lateness = opt.allowed_lateness_ms;
    bool changed = false;
    if (opt.window.kind == WindowKind::session) {
      const std::int64_t end = sat_add(t, opt.window.gap_ms);
      if (window_closed(end, w, lateness)) {
        ++missed;
        return;
      }
      auto first = std::find_if(s.open.begin(), s.open.end(), [&](const Window& x) { return x.end > t; });
      auto last = std::find_if(first, s.open.end(), [&](const Window& x) { return x.start >= end; });
      if (first == last) {
        first = s.open.insert(first, Window{t, end, AggState(alpha())});
        ++st.open_windows;
      } else {
        first->start = std::min(first->start, t);
        first->end = std::max((last - 1)->end, end);
        for (auto it = first + 1; it != last; ++it) first->agg.merge(it->agg);
        st.open_windows -= static_cast<std::uint64_t>(last - first - 1);
        first = s.open.erase(first + 1, last) - 1;
      }
      first->agg.add(t, v);
      next_close = std::min(next_close, first->end);
      ++folded;
      touch_series(si);
      return;
    }
    for_each_window(opt.window, t, [&](std::int64_t start, std::int64_t end) {
      if (window_closed(end, w, lateness)) {
        ++missed;
        return;
      }
      auto it = s.open.end();
      while (it != s.open.begin() && (it - 1)->start > start) --it;
      if (it == s.open.begin() || (it - 1)->start != start) {
        it = s.open.insert(it, Window{start, end, AggState(alpha())});
        ++st.open_windows;
      } else {
        --it;
      }
      it->agg.add(t, v);
      next_close = std::min(next_close, end);
      ++folded;
      changed = true;
    });
    if (changed) touch_series(si);
  }

  void finish_step() {
    if (step_closed.empty()) return;
    std::sort(step_closed.begin(), step_closed.end(), [](const Aggregate& a, const Aggregate& b) {
      return std::tie(a.scope, a.key, a.metric, a.window_start.ms) < std::tie(b.scope, b.key, b.metric, b.window_start.ms);
    });
    for (Aggregate& a : step_closed) {
      a.id = next_result_id++;
      closed.push_back(std::move(a));
    }
    st.windows_closed += step_closed.size();
    step_closed.clear();
    meta_dirty = true;
  }

  void add(const ingest::Event& e, std::int64_t now_ms) {
    set_now(now_ms);
    // A device, once seen, keeps its state for good (its series, and their open windows): the cap
    // bounds what the state takes in the buffer.
    if (opt.max_devices != 0 && devices.size() >= opt.max_devices && !device_index.contains(e.device.value)) {
      ++st.unwindowed_events;
      return;
    }
    ++st.events;
    meta_dirty = true;
    const std::uint32_t di = device_of(e.device.value);
    std::int32_t gi = -1;
    if (!opt.group_by_tag.empty()) {
      auto tag = std::find_if(e.tags.begin(), e.tags.end(), [&](const ingest::Tag& x) { return x.key == opt.group_by_tag; });
      if (tag != e.tags.end()) {
        gi = static_cast<std::int32_t>(group_of(tag->value));
      } else {
        ++st.untagged_events;
      }
    }
    if (devices[di].group != gi) {
      leave_group(di);
      if (gi >= 0) join_group(di, static_cast<std::uint32_t>(gi));
      touch(devices[di], di);
    }
    // The gateway clock may have moved since the device last sent: its cap may allow more now.
    if (devices[di].max_time != kNone) raise_device(di, capped_watermark(devices[di].max_time, now, opt.max_skew_ms));
    if (gi >= 0) refresh_group(static_cast<std::uint32_t>(gi));

    const std::int64_t t = e.time.ms;
    const std::int64_t wd = devices[di].watermark;
    const std::int64_t wg = gi >= 0 ? groups[static_cast<std::size_t>(gi)].watermark : 0;
    std::uint32_t missed = 0, folded = 0;
    for (const ingest::Metric& m : e.metrics) {
      const std::uint32_t si = series_of(devices[di].series, Scope::device, di, m.name);
      fold(si, t, m.value, wd, missed, folded, devices[di].next_close);
      if (gi >= 0) {
        Group& g = groups[static_cast<std::size_t>(gi)];
        const std::uint32_t gsi = series_of(g.series, Scope::group, static_cast<std::uint32_t>(gi), m.name);
        fold(gsi, t, m.value, wg, missed, folded, groups[static_cast<std::size_t>(gi)].next_close);
      }
    }
    if (missed > 0) {
      ++st.late_events;
      late.push_back(LateEvent{next_late_id++, e.device, e.seq, e.time, now, wd, missed, folded, e.metrics});
    }

    Device& d = devices[di];
    d.max_time = std::max(d.max_time, t);
    d.last_seen = now;
    touch(d, di);
    if (!d.active) {
      d.active = true;
      if (d.group >= 0) groups[static_cast<std::size_t>(d.group)].active_watermarks.insert(d.watermark);
    }
    if (!d.in_heap) {
      idle_heap.emplace(d.last_seen, di);
      d.in_heap = true;
    }
    raise_device(di, capped_watermark(d.max_time, now, opt.max_skew_ms));
    if (devices[di].group >= 0) refresh_group(static_cast<std::uint32_t>(devices[di].group));
    finish_step();
  }

  void advance(std::int64_t now_ms) {
    set_now(now_ms);
    for (std::uint32_t di = 0; di < devices.size(); ++di) {
      if (devices[di].max_time != kNone && devices[di].active)
        raise_device(di, capped_watermark(devices[di].max_time, now, opt.max_skew_ms));
    }
    finish_step();
  }

  void flush() {
    restoring = false;
    for (Series& s : series) {
      for (const Window& w : s.open) emit(s, w);
      if (!s.open.empty()) {
        s.open.clear();
        touch_series(static_cast<std::uint32_t>(&s - series.data()));
      }
    }
    for (Device& d : devices) d.next_close = kNever;
    for (Group& g : groups) g.next_close = kNever;
    finish_step();
  }

  // --- state ---------------------------------------------------------------------------------

  void write_fingerprint(Writer& w) const {
    w.u8(static_cast<std::uint8_t>(opt.window.kind));
    w.i64(opt.window.kind == WindowKind::session ? 0 : opt.window.size_ms);
    w.i64(opt.window.kind == WindowKind::hopping ? opt.window.slide_ms : 0);
    w.i64(opt.window.kind == WindowKind::session ? opt.window.gap_ms : 0);
    w.f64(opt.quantile_accuracy.value_or(0.0));
    w.str(opt.group_by_tag);
  }

  void collect(std::vector<StateWrite>& out, bool all) {
    if (meta_dirty || all) {
      Writer w;
      w.u8(kVersion);
      write_fingerprint(w);
      w.i64(now);
      w.u64(next_result_id);
      w.u64(next_late_id);
      for (std::uint64_t v : {st.events, st.late_events, st.windows_closed, st.untagged_events, st.idle_transitions})
        w.u64(v);
      w.u64(st.unwindowed_events);  // appended later: absent in older state (read as 0)
      out.push_back({kStateMeta, bytes_of("engine"), w.take()});
      meta_dirty = false;
    }
    if (all) {
      dirty_devices.clear();
      dirty_groups.clear();
      dirty_series.clear();
      for (std::uint32_t i = 0; i < devices.size(); ++i) dirty_devices.push_back(i);
      for (std::uint32_t i = 0; i < groups.size(); ++i) dirty_groups.push_back(i);
      for (std::uint32_t i = 0; i < series.size(); ++i) dirty_series.push_back(i);
    }
    std::sort(dirty_devices.begin(), dirty_devices.end(),
              [&](std::uint32_t a, std::uint32_t b) { return devices[a].id < devices[b].id; });
    for (std::uint32_t i : dirty_devices) {
      Device& d = devices[i];
      d.dirty = false;
      Writer w;
      w.u8(kVersion);
      w.str(d.id);
      w.i64(d.max_time);
      w.i64(d.watermark);
      w.i64(d.last_seen);
      w.u8(d.active ? 1 : 0);
      w.u8(d.group >= 0 ? 1 : 0);
      if (d.group >= 0) w.str(groups[static_cast<std::size_t>(d.group)].value);
      out.push_back({kStateDevices, limit_key(bytes_of(d.id)), w.take()});
    }
    dirty_devices.clear();
    std::sort(dirty_groups.begin(), dirty_groups.end(),
              [&](std::uint32_t a, std::uint32_t b) { return groups[a].value < groups[b].value; });
    for (std::uint32_t i : dirty_groups) {
      Group& g = groups[i];
      g.dirty = false;
      Writer w;
      w.u8(kVersion);
      w.str(g.value);
      w.i64(g.watermark);
      out.push_back({kStateGroups, limit_key(bytes_of(g.value)), w.take()});
    }
    dirty_groups.clear();
    // Sorted as strings: GCC 12 warns falsely (stringop-overread) on sorting byte vectors.
    std::vector<std::pair<std::string, std::uint32_t>> keyed;
    keyed.reserve(dirty_series.size());
    for (std::uint32_t i : dirty_series) {
      const auto k = series_key(series[i].scope, owner_name(series[i]), series[i].metric);
      keyed.emplace_back(std::string(k.begin(), k.end()), i);
    }
    std::sort(keyed.begin(), keyed.end());
    for (auto& [text, i] : keyed) {
      std::vector<std::uint8_t> key(text.begin(), text.end());
      Series& s = series[i];
      s.dirty = false;
      if (s.open.empty()) {
        if (s.saved) out.push_back({kStateSeries, std::move(key), std::nullopt});
        s.saved = false;
        continue;
      }
      Writer w;
      w.u8(kVersion);
      w.u8(static_cast<std::uint8_t>(s.scope));
      w.str(owner_name(s));
      w.str(s.metric);
      w.u32(static_cast<std::uint32_t>(s.open.size()));
      for (const Window& x : s.open) {
        w.i64(x.start);
        w.i64(x.end);
        x.agg.encode(w);
      }
      out.push_back({kStateSeries, std::move(key), w.take()});
      s.saved = true;
    }
    dirty_series.clear();
  }

  bool restore(std::string_view table, std::span<const std::uint8_t> value) {
    if (!restoring) {
      std::fprintf(stderr, "gw::windowing::Engine::restore: called after the engine started\n");
      std::abort();
    }
    Reader r(value);
    if (r.u8() != kVersion) return false;
    if (table == kStateMeta) {
      Writer mine;
      write_fingerprint(mine);
      Writer theirs;
      theirs.u8(r.u8());
      for (int i = 0; i < 3; ++i) theirs.i64(r.i64());
      theirs.f64(r.f64());
      theirs.str(r.str());
      if (!r.ok() || mine.bytes() != theirs.bytes()) return false;
      now = r.i64();
      next_result_id = r.u64();
      next_late_id = r.u64();
      for (std::uint64_t* v : {&st.events, &st.late_events, &st.windows_closed, &st.untagged_events, &st.idle_transitions})
        *v = r.u64();
      if (r.ok() && !r.done()) st.unwindowed_events = r.u64();
      return r.ok();
    }
    if (table == kStateDevices) {
      const std::string id = r.str();
      const std::int64_t max_time = r.i64(), watermark = r.i64(), last_seen = r.i64();
      const bool active = r.u8() == 1;
      std::string group;
      if (r.u8() == 1) group = r.str();
      if (!r.ok()) return false;
      Device& d = devices[device_of(id)];
      d.max_time = max_time;
      d.watermark = watermark;
      d.last_seen = last_seen;
      d.active = active;
      d.restored_group = std::move(group);
      d.group = d.restored_group.empty() ? -1 : -2;  // -2: resolved in finish_restore()
      return true;
    }
    if (table == kStateGroups) {
      const std::string value_name = r.str();
      const std::int64_t watermark = r.i64();
      if (!r.ok()) return false;
      groups[group_of(value_name)].watermark = watermark;
      return true;
    }
    if (table == kStateSeries) {
      const std::uint8_t scope = r.u8();
      if (scope != 1 && scope != 2) return false;
      pending_series.emplace_back(static_cast<Scope>(scope), std::vector<std::uint8_t>(value.begin(), value.end()));
      return true;
    }
    return false;
  }

  bool restore_series(Scope scope, std::span<const std::uint8_t> value) {
    Reader r(value);
    r.u8();
    r.u8();
    const std::string owner = r.str();
    const std::string metric = r.str();
    const std::uint32_t n = r.u32();
    if (!r.ok()) return false;
    std::uint32_t si;
    if (scope == Scope::device) {
      const std::uint32_t di = device_of(owner);
      si = series_of(devices[di].series, scope, di, metric);
    } else {
      const std::uint32_t gi = group_of(owner);
      si = series_of(groups[gi].series, scope, gi, metric);
    }
    Series& s = series[si];
    for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
      Window w{r.i64(), r.i64(), AggState(alpha())};
      if (!w.agg.decode(r)) return false;
      s.open.push_back(std::move(w));
    }
    s.saved = true;
    st.open_windows += s.open.size();
    return r.ok();
  }

  void finish() {
    bool ok = true;
    for (auto& [scope, value] : pending_series) ok = restore_series(scope, value) && ok;
    pending_series.clear();
    if (!ok) {
      std::fprintf(stderr, "gw::windowing::Engine::finish_restore: a saved window does not decode\n");
      std::abort();
    }
    for (std::uint32_t di = 0; di < devices.size(); ++di) {
      Device& d = devices[di];
      if (d.group == -2) {
        const std::uint32_t gi = group_of(d.restored_group);
        d.group = -1;
        join_group(di, gi);
        d.restored_group.clear();
      }
      if (d.active) {
        idle_heap.emplace(d.last_seen, di);
        d.in_heap = true;
      }
    }
    for (Series& s : series) {
      if (s.open.empty()) continue;
      std::int64_t& nc = s.scope == Scope::device ? devices[s.owner].next_close : groups[s.owner].next_close;
      nc = std::min(nc, s.open.front().end);
    }
  }
};

Engine::Engine(EngineOptions options) : impl_(std::make_unique<Impl>()) {
  const WindowSpec& w = options.window;
  const bool ok = (w.kind != WindowKind::tumbling || w.size_ms > 0) &&
                  (w.kind != WindowKind::hopping || (w.size_ms > 0 && w.slide_ms > 0 && w.slide_ms <= w.size_ms)) &&
                  (w.kind != WindowKind::session || w.gap_ms > 0) && options.allowed_lateness_ms >= 0 &&
                  options.idle_timeout_ms >= 0 && options.max_skew_ms >= 0 &&
                  (!options.quantile_accuracy || (*options.quantile_accuracy > 0 && *options.quantile_accuracy <= 0.5));
  if (!ok) {
    std::fprintf(stderr, "gw::windowing::Engine: invalid options (sizes must be positive, slide <= size)\n");
    std::abort();
  }
  impl_->opt = std::move(options);
}
Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;

void Engine::add(const ingest::Event& event, std::int64_t now_ms) { impl_->add(event, now_ms); }
void Engine::advance(std::int64_t now_ms) { impl_->advance(now_ms); }
void Engine::flush() { impl_->flush(); }

std::vector<Aggregate> Engine::take_closed() {
  std::vector<Aggregate> out;
  out.swap(impl_->closed);
  return out;
}

std::vector<LateEvent> Engine::take_late() {
  std::vector<LateEvent> out;
  out.swap(impl_->late);
  return out;
}

EngineStats Engine::stats() const {
  EngineStats s = impl_->st;
  s.now_ms = impl_->now == kNone ? 0 : impl_->now;
  return s;
}

std::vector<std::string> Engine::devices() const {
  std::vector<std::string> out;
  out.reserve(impl_->devices.size());
  for (const Device& d : impl_->devices) out.push_back(d.id);
  std::sort(out.begin(), out.end());
  return out;
}

void Engine::collect_state(std::vector<StateWrite>& out, bool all) { impl_->collect(out, all); }
bool Engine::restore(std::string_view table, std::span<const std::uint8_t> value) { return impl_->restore(table, value); }
void Engine::finish_restore() { impl_->finish(); }

std::vector<std::uint8_t> encode_late(const LateEvent& e) {
  Writer w;
  w.u8(kVersion);
  w.u64(e.id);
  w.str(e.device.value);
  w.u64(e.seq.value);
  w.i64(e.time.ms);
  w.i64(e.seen_at_ms);
  w.i64(e.watermark_ms);
  w.u32(e.windows_missed);
  w.u32(e.windows_folded);
  w.u32(static_cast<std::uint32_t>(e.metrics.size()));
  for (const ingest::Metric& m : e.metrics) {
    w.str(m.name);
    w.f64(m.value);
  }
  return w.take();
}

std::optional<LateEvent> decode_late(std::span<const std::uint8_t> bytes) {
  Reader r(bytes);
  if (r.u8() != kVersion) return std::nullopt;
  LateEvent e;
  e.id = r.u64();
  e.device.value = r.str();
  e.seq.value = r.u64();
  e.time.ms = r.i64();
  e.seen_at_ms = r.i64();
  e.watermark_ms = r.i64();
  e.windows_missed = r.u32();
  e.windows_folded = r.u32();
  const std::uint32_t n = r.u32();
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    ingest::Metric m;
    m.name = r.str();
    m.value = r.f64();
    e.metrics.push_back(std::move(m));
  }
  if (!r.ok()) return std::nullopt;
  return e;
}

}  // namespace gw::windowing
