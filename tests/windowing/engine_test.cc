// Property tests of the windowing engine (windowing/engine.h) against the brute-force reference
// (tests/windowing/reference.h) on randomized, seeded streams with out-of-order, late and duplicate
// events, idle devices, clocks that run ahead and tag changes; and save/restore determinism.
#include "windowing/engine.h"

#include "tests/support/catch.h"
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "tests/windowing/reference.h"

namespace {

using gw::ingest::DeviceId;
using gw::ingest::DeviceSeq;
using gw::ingest::Event;
using gw::ingest::EventTime;
using gw::windowing::Aggregate;
using gw::windowing::Engine;
using gw::windowing::EngineOptions;
using gw::windowing::WindowKind;
using gw::windowing::test::RefValue;
using gw::windowing::test::Reference;

struct Step {
  Event event;
  std::int64_t now;
  bool advance_only = false;
};

// A random stream: a few devices with their own clock offsets (one far ahead), jitter, reordering,
// late stragglers, exact duplicates, silences longer than the idle timeout and tag changes.
std::vector<Step> random_stream(std::mt19937_64& rng, std::size_t n) {
  const int devices = 2 + static_cast<int>(rng() % 5);
  std::vector<std::int64_t> offset(devices), clock(devices);
  std::vector<std::uint64_t> seq(devices, 0);
  for (int d = 0; d < devices; ++d) offset[d] = static_cast<std::int64_t>(rng() % 2000) - 1000;
  offset[0] = 50000;  // runs ahead of the gateway by more than max_skew
  std::int64_t now = 1'000'000;
  std::vector<Step> out;
  std::uniform_real_distribution<double> value(-50, 50);
  const char* sites[] = {"north", "south"};
  while (out.size() < n) {
    now += static_cast<std::int64_t>(rng() % 200);
    const int d = static_cast<int>(rng() % static_cast<unsigned>(devices));
    const unsigned dice = static_cast<unsigned>(rng() % 100);
    if (dice < 3) {  // silence: the gateway clock jumps past the idle timeout
      now += 5000 + static_cast<std::int64_t>(rng() % 5000);
      out.push_back({{}, now, true});
      continue;
    }
    if (dice < 8 && !out.empty()) {  // an exact duplicate of an earlier event
      const Step& old = out[rng() % out.size()];
      if (!old.advance_only) {
        out.push_back({old.event, now});
        continue;
      }
    }
    std::int64_t t = now + offset[d] + static_cast<std::int64_t>(rng() % 300);
    if (dice < 20) t -= static_cast<std::int64_t>(rng() % 3000);   // out of order
    if (dice < 25) t -= static_cast<std::int64_t>(rng() % 20000);  // very late
    Event e;
    e.device = DeviceId{"dev-" + std::to_string(d)};
    e.seq = DeviceSeq{++seq[d]};
    e.time = EventTime{t};
    if (rng() % 4 != 0) e.metrics.push_back({"a", value(rng)});
    if (rng() % 3 != 0) e.metrics.push_back({"b", (rng() % 10 == 0) ? 1e6 + value(rng) : value(rng)});
    if (d != devices - 1) {  // the last device has no site tag
      const bool moved = rng() % 50 == 0;
      e.tags.push_back({"site", sites[(d + (moved ? 1 : 0)) % 2]});
    }
    out.push_back({e, now});
  }
  return out;
}

double exact_rank_value(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(std::floor(q * static_cast<double>(v.size() - 1)))];
}

void check_close(double got, double want, double rel) {
  const double tol = rel * std::max(1.0, std::fabs(want));
  INFO("got " << got << " want " << want);
  CHECK(std::fabs(got - want) <= tol);
}

// Compares one engine result with the reference's value list.
void check_aggregate(const Aggregate& a, const std::vector<RefValue>& values, const EngineOptions& o) {
  REQUIRE(a.count == values.size());
  double sum = 0, min = values[0].v, max = values[0].v;
  RefValue first = values[0], last = values[0];
  std::vector<double> vs;
  // First by event time, earliest arrival on a tie; last by event time, latest arrival on a tie.
  for (const RefValue& x : values) {
    sum += x.v;
    min = std::min(min, x.v);
    max = std::max(max, x.v);
    if (x.t < first.t || (x.t == first.t && x.arrival < first.arrival)) first = x;
    if (x.t > last.t || (x.t == last.t && x.arrival > last.arrival)) last = x;
    vs.push_back(x.v);
  }
  const double mean = sum / static_cast<double>(values.size());
  double var = 0;
  for (double v : vs) var += (v - mean) * (v - mean);
  const double stddev = std::sqrt(var / static_cast<double>(values.size()));
  CHECK(a.min == min);
  CHECK(a.max == max);
  check_close(a.sum, sum, 1e-9);
  check_close(a.mean, mean, 1e-9);
  check_close(a.stddev, stddev, 1e-7);
  CHECK(a.first_time.ms == first.t);
  CHECK(a.first == first.v);
  CHECK(a.last_time.ms == last.t);
  CHECK(a.last == last.v);
  check_close(a.rate, static_cast<double>(values.size()) * 1000.0 /
                          static_cast<double>(a.window_end.ms - a.window_start.ms), 1e-12);
  REQUIRE(a.has_quantiles == o.quantile_accuracy.has_value());
  if (a.has_quantiles) {
    const double alpha = *o.quantile_accuracy * (1 + 1e-9);
    for (auto [q, got] : {std::pair{0.5, a.p50}, std::pair{0.9, a.p90}, std::pair{0.99, a.p99}}) {
      const double want = exact_rank_value(vs, q);
      INFO("q " << q << " got " << got << " want " << want);
      CHECK(std::fabs(got - want) <= alpha * std::fabs(want));
    }
  }
}

void run_property(const EngineOptions& o, std::uint64_t seed, std::size_t n) {
  std::mt19937_64 rng(seed);
  const auto stream = random_stream(rng, n);
  Engine engine(o);
  Reference ref(o);
  std::vector<Aggregate> results;
  std::vector<gw::windowing::LateEvent> late;
  for (const Step& s : stream) {
    if (s.advance_only) {
      engine.advance(s.now);
      ref.advance(s.now);
    } else {
      engine.add(s.event, s.now);
      ref.add(s.event, s.now);
    }
    for (auto& a : engine.take_closed()) results.push_back(std::move(a));
  }
  const auto before_flush = results.size();
  engine.flush();
  ref.flush();
  for (auto& a : engine.take_closed()) results.push_back(std::move(a));
  late = engine.take_late();
  INFO("seed " << seed << " kind " << gw::windowing::to_string(o.window.kind) << " results " << results.size()
               << " (before flush " << before_flush << ")");
  REQUIRE(results.size() == ref.closed.size());
  std::uint64_t id = 0;
  for (const Aggregate& a : results) {
    CHECK(a.id == ++id);
    auto it = ref.closed.find({static_cast<int>(a.scope), a.key, a.metric, a.window_start.ms, a.window_end.ms});
    INFO("window " << a.key << " " << a.metric << " [" << a.window_start.ms << ", " << a.window_end.ms << ")");
    REQUIRE(it != ref.closed.end());
    check_aggregate(a, it->second, o);
  }
  REQUIRE(late.size() == ref.late.size());
  for (std::size_t i = 0; i < late.size(); ++i) {
    CHECK(late[i].device.value == ref.late[i].device);
    CHECK(late[i].seq.value == ref.late[i].seq);
    CHECK(late[i].time.ms == ref.late[i].time);
    CHECK(late[i].windows_missed == ref.late[i].missed);
    CHECK(late[i].windows_folded == ref.late[i].folded);
  }
  CHECK(engine.stats().late_events == late.size());
  CHECK(engine.stats().open_windows == 0);
  // The streams must exercise what they claim to.
  CHECK(before_flush > 0);
}

std::vector<EngineOptions> option_sets() {
  std::vector<EngineOptions> out;
  for (WindowKind kind : {WindowKind::tumbling, WindowKind::hopping, WindowKind::session}) {
    for (int variant = 0; variant < 2; ++variant) {
      EngineOptions o;
      o.window.kind = kind;
      o.window.size_ms = 1000;
      o.window.slide_ms = variant == 0 ? 250 : 300;  // also a slide that does not divide the size
      o.window.gap_ms = 400;
      o.group_by_tag = variant == 0 ? "site" : "";
      o.allowed_lateness_ms = variant == 0 ? 0 : 700;
      o.idle_timeout_ms = 3000;
      o.max_skew_ms = 2000;
      o.quantile_accuracy = variant == 0 ? std::optional<double>(0.01) : std::optional<double>(0.05);
      out.push_back(o);
    }
  }
  EngineOptions no_q;
  no_q.window.size_ms = 500;
  no_q.quantile_accuracy.reset();
  no_q.group_by_tag = "site";
  no_q.idle_timeout_ms = 2000;
  no_q.max_skew_ms = 1000;
  out.push_back(no_q);
  return out;
}

}  // namespace

TEST_CASE("every window kind and aggregate matches the brute-force reference on random streams") {
  std::uint64_t seed = 1;
  for (const EngineOptions& o : option_sets()) {
    for (int i = 0; i < 6; ++i) run_property(o, seed++, 1500);
  }
}

TEST_CASE("a state saved at any point and restored continues bit for bit like the uninterrupted engine") {
  for (const EngineOptions& o : option_sets()) {
    std::mt19937_64 rng(99);
    const auto stream = random_stream(rng, 1200);
    Engine straight(o);
    // Strings, not byte vectors: GCC 12 warns falsely (stringop-overread) comparing those.
    std::vector<std::string> want, got;
    auto text = [](const std::vector<std::uint8_t>& b) { return std::string(b.begin(), b.end()); };
    for (const Step& s : stream) {
      s.advance_only ? straight.advance(s.now) : straight.add(s.event, s.now);
      for (const auto& a : straight.take_closed()) want.push_back(text(gw::windowing::encode_aggregate(a)));
      for (const auto& l : straight.take_late()) want.push_back(text(gw::windowing::encode_late(l)));
    }

    // The same stream, saved incrementally into "tables" and restored into a fresh engine at random points.
    std::map<std::string, std::map<std::string, std::vector<std::uint8_t>>> tables;
    auto engine = std::make_unique<Engine>(o);
    int restarts = 0;
    for (std::size_t i = 0; i < stream.size(); ++i) {
      const Step& s = stream[i];
      s.advance_only ? engine->advance(s.now) : engine->add(s.event, s.now);
      for (const auto& a : engine->take_closed()) got.push_back(text(gw::windowing::encode_aggregate(a)));
      for (const auto& l : engine->take_late()) got.push_back(text(gw::windowing::encode_late(l)));
      std::vector<gw::windowing::StateWrite> writes;
      engine->collect_state(writes);
      for (auto& w : writes) {
        if (w.value) {
          tables[w.table][text(w.key)] = *w.value;
        } else {
          tables[w.table].erase(text(w.key));
        }
      }
      if (rng() % 40 == 0) {
        engine = std::make_unique<Engine>(o);
        for (const char* t : {gw::windowing::kStateMeta, gw::windowing::kStateDevices, gw::windowing::kStateGroups,
                              gw::windowing::kStateSeries}) {
          for (const auto& [k, v] : tables[t]) REQUIRE(engine->restore(t, v));
        }
        engine->finish_restore();
        ++restarts;
      }
    }
    CHECK(restarts > 10);
    REQUIRE(got.size() == want.size());
    CHECK(got == want);
    CHECK(engine->stats().open_windows == straight.stats().open_windows);
  }
}

TEST_CASE("a restore refuses the state of a different window configuration") {
  EngineOptions a;
  Engine e(a);
  e.add(Event{DeviceId{"d"}, DeviceSeq{1}, EventTime{5000}, {{"m", 1}}}, 5000);
  std::vector<gw::windowing::StateWrite> writes;
  e.collect_state(writes, true);
  EngineOptions b = a;
  b.window.size_ms = 2000;
  Engine other(b);
  bool refused = false;
  for (const auto& w : writes) {
    if (std::string(w.table) == gw::windowing::kStateMeta) refused = !other.restore(w.table, *w.value);
  }
  CHECK(refused);
}

TEST_CASE("a device whose clock runs ahead cannot close windows beyond the gateway clock plus max_skew") {
  EngineOptions o;
  o.window.size_ms = 1000;
  o.max_skew_ms = 500;
  Engine e(o);
  e.add(Event{DeviceId{"d"}, DeviceSeq{1}, EventTime{10'100}, {{"m", 1}}}, 10'000);
  e.add(Event{DeviceId{"d"}, DeviceSeq{2}, EventTime{99'000}, {{"m", 2}}}, 10'000);  // clock far ahead
  CHECK(e.take_closed().empty());  // watermark capped at 10'500: [10'000, 11'000) still open
  e.add(Event{DeviceId{"d"}, DeviceSeq{3}, EventTime{10'200}, {{"m", 3}}}, 10'400);
  CHECK(e.take_late().empty());
  e.advance(10'600);  // cap 11'100 passes the window's end
  auto closed = e.take_closed();
  REQUIRE(closed.size() == 1);
  CHECK(closed[0].count == 2);
  CHECK(closed[0].sum == 4.0);
}

TEST_CASE("an idle device does not hold a group's windows open - late events are kept") {
  EngineOptions o;
  o.window.size_ms = 1000;
  o.group_by_tag = "site";
  o.idle_timeout_ms = 5000;
  o.max_skew_ms = 100000;
  Engine e(o);
  auto ev = [](const char* dev, std::uint64_t seq, std::int64_t t) {
    return Event{DeviceId{dev}, DeviceSeq{seq}, EventTime{t}, {{"m", 1.0}}, {{"site", "lab"}}};
  };
  e.add(ev("a", 1, 1000), 1000);
  e.add(ev("b", 1, 1000), 1000);
  e.add(ev("a", 2, 3000), 3000);  // b (watermark 1000) holds the group's [1000, 2000)
  auto closed = e.take_closed();
  REQUIRE(closed.size() == 1);  // only device a's own [1000, 2000)
  CHECK(closed[0].scope == gw::windowing::Scope::device);
  e.add(ev("a", 3, 4000), 6500);  // b silent for 5.5 s: idle, excluded
  closed = e.take_closed();
  bool group_closed = false;
  for (const auto& a : closed) {
    if (a.scope == gw::windowing::Scope::group && a.window_start.ms == 1000) {
      group_closed = true;
      CHECK(a.key == "lab");
      CHECK(a.group_tag == "site");
      CHECK(a.count == 2);
    }
  }
  CHECK(group_closed);
  e.add(ev("b", 2, 1500), 6600);  // too late for the group's and b's own closed windows
  auto late = e.take_late();
  REQUIRE(late.size() == 1);
  CHECK(late[0].device.value == "b");
  CHECK(late[0].windows_missed == 2);
  CHECK(e.stats().late_events == 1);
  CHECK(e.stats().idle_transitions >= 1);
}
