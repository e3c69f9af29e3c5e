// bench-windowing: events/s per core of the windowing engine (windowing/engine.h) against a plain
// loop that only reads the same events, measured in the same run so that the ratios hold on a noisy
// machine (DESIGN.md, Benchmarks). Single-threaded: events/s is per core.
//
// Workload: 10,000 keys (devices with one metric each), events in device round-robin with
// advancing event times, 50 events per key per window, the changed state collected as for a commit
// every 500,000 events (the stage commits every windowing.commit_events events or
// windowing.commit_interval; collect_state costs per changed key, reported on its own). Phases: tumbling (count, sum, min, max, mean, stddev,
// first, last, rate), the same with p50/p90/p99 sketches, and hopping with slide = size / 4.
// Prints `BENCH <name> <value> <unit>` and `RATIO <name> <value>`. `--quick`: a few seconds.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "windowing/engine.h"

namespace {

using gw::windowing::Engine;
using gw::windowing::EngineOptions;
using gw::windowing::WindowKind;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kKeys = 10000;
constexpr std::size_t kEventsPerKey = 50;   // per pass: one window's worth
constexpr std::int64_t kWindowMs = 1000;
constexpr std::size_t kCommitEvents = 500000;
constexpr std::int64_t kStepMs = kWindowMs / static_cast<std::int64_t>(kEventsPerKey);

std::vector<gw::ingest::Event> make_events() {
  std::vector<gw::ingest::Event> out;
  out.reserve(kKeys * kEventsPerKey);
  for (std::size_t round = 0; round < kEventsPerKey; ++round) {
    for (std::size_t k = 0; k < kKeys; ++k) {
      gw::ingest::Event e;
      e.device = gw::ingest::DeviceId{"dev-" + std::to_string(k)};
      e.seq = gw::ingest::DeviceSeq{round + 1};
      e.time = gw::ingest::EventTime{static_cast<std::int64_t>(round) * kStepMs + static_cast<std::int64_t>(k % 7)};
      e.metrics.push_back({"temp", 20.0 + static_cast<double>((round * 31 + k) % 100) / 10.0});
      out.push_back(std::move(e));
    }
  }
  return out;
}

// Runs `passes` passes over the events, each shifted by one window in event time; returns events/s.
template <class F>
double run(std::vector<gw::ingest::Event>& events, int passes, F&& per_event) {
  const auto start = Clock::now();
  std::size_t n = 0;
  for (int p = 0; p < passes; ++p) {
    const std::int64_t shift = kWindowMs;
    for (auto& e : events) {
      if (p > 0) e.time.ms += shift;
      per_event(e, n++);
    }
  }
  return static_cast<double>(n) / std::chrono::duration<double>(Clock::now() - start).count();
}

double run_engine(std::vector<gw::ingest::Event> events, int passes, const EngineOptions& o, std::uint64_t& closed) {
  Engine engine(o);
  std::vector<gw::windowing::StateWrite> writes;
  const std::int64_t base_now = 1'000'000;
  const double rate = run(events, passes, [&](const gw::ingest::Event& e, std::size_t i) {
    engine.add(e, base_now + e.time.ms);
    if (i % kCommitEvents == kCommitEvents - 1) {
      closed += engine.take_closed().size();
      writes.clear();
      engine.collect_state(writes);
    }
  });
  closed += engine.take_closed().size();
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench-windowing: windowing engine events/s per core vs a plain read loop"};
  bool quick = false;
  app.add_flag("--quick", quick, "a run of a few seconds");
  CLI11_PARSE(app, argc, argv);
  const int passes = quick ? 4 : 20;

  auto events = make_events();
  double checksum = 0;
  const double baseline = run(events, passes, [&](const gw::ingest::Event& e, std::size_t) {
    checksum += e.metrics[0].value + static_cast<double>(e.time.ms) + static_cast<double>(e.device.value.size());
  });
  // Fresh copies so that every phase starts from the same event times.
  auto fresh = make_events();

  EngineOptions tumbling;
  tumbling.window = {WindowKind::tumbling, kWindowMs, kWindowMs, 0};
  tumbling.window.gap_ms = 1;
  tumbling.quantile_accuracy.reset();
  tumbling.idle_timeout_ms = 3'600'000;
  EngineOptions quantiles = tumbling;
  quantiles.quantile_accuracy = 0.01;
  EngineOptions hopping = tumbling;
  hopping.window.kind = WindowKind::hopping;
  hopping.window.slide_ms = kWindowMs / 4;

  std::uint64_t closed_t = 0, closed_q = 0, closed_h = 0;
  const double t = run_engine(fresh, passes, tumbling, closed_t);
  const double q = run_engine(fresh, passes, quantiles, closed_q);
  const double h = run_engine(fresh, passes, hopping, closed_h);

  std::printf("BENCH read_loop_events_per_s %.6g events/s\n", baseline);
  std::printf("BENCH tumbling_events_per_s %.6g events/s\n", t);
  std::printf("BENCH tumbling_quantiles_events_per_s %.6g events/s\n", q);
  std::printf("BENCH hopping_slide_quarter_events_per_s %.6g events/s\n", h);
  std::printf("BENCH windows_closed_tumbling %llu windows\n", static_cast<unsigned long long>(closed_t));
  std::printf("BENCH windows_closed_hopping %llu windows\n", static_cast<unsigned long long>(closed_h));
  std::printf("RATIO tumbling_vs_read_loop %.4g\n", t / baseline);
  std::printf("RATIO tumbling_quantiles_vs_read_loop %.4g\n", q / baseline);
  std::printf("RATIO hopping_vs_read_loop %.4g\n", h / baseline);
  std::printf("RATIO quantiles_vs_tumbling %.4g\n", q / t);
  std::fprintf(stderr, "(checksum %g, %zu keys, %d passes of %zu events)\n", checksum, kKeys, passes, events.size());
  return 0;
}
