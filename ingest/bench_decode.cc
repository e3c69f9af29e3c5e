// bench-ingest's decode figures: admit() (decode, validation, canonical re-encoding, dedup key)
// of one message per source format, in this process, against our native JSON in the same run
// (Sparkplug: NDATA by alias, after its node's NBIRTH).
// The payloads are firmware-sim's (the same four metrics in every format), so the ratio is the
// cost of the mapping and of each source's shape, not of more readings.
#include "ingest/bench_decode.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "firmware-sim/source_formats.h"
#include "ingest/admit.h"
#include "ingest/mapping.h"

namespace gw::ingest {
namespace {

using Clock = std::chrono::steady_clock;

struct Case {
  std::string name;
  std::string topic;
  std::vector<std::string> payloads;  // a few readings, cycled
};

// Admits every payload of `c` in turn for about `seconds`; messages per second.
double rate(const Case& c, const AdmitOptions& options, std::int64_t now_ms, double seconds) {
  std::uint64_t n = 0;
  std::uint64_t sink = 0;
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    for (int i = 0; i < 256; ++i, ++n) {
      const std::string& p = c.payloads[n % c.payloads.size()];
      auto a = admit(c.topic, {reinterpret_cast<const std::uint8_t*>(p.data()), p.size()}, now_ms, options);
      if (!a) {
        std::fprintf(stderr, "bench-ingest: %s does not admit: %s\n", c.name.c_str(), a.error().detail.c_str());
        return 0;
      }
      sink += a->record().dedup->digest;
    }
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (sink == 1) std::printf(" ");  // keeps the work observable
  return static_cast<double>(n) / elapsed;
}

}  // namespace

int bench_decode(double seconds_per_case, int rounds) {
  using firmware_sim::SourceFormat;
  const std::int64_t now = 1'705'314'600'000;
  std::vector<SourceMapping> sources;
  std::vector<Case> cases;
  cases.push_back({"native_json", "devices/dev-1/telemetry", {}});
  std::vector<const char*> names{"zigbee2mqtt", "tasmota", "shelly", "chirpstack", "tts"};
  if (sparkplug_supported()) names.push_back("sparkplug");
  for (const char* name : names) {
    auto preset = preset_mapping(name);
    if (!preset) return 1;
    sources.push_back(*preset);
    cases.push_back({name, firmware_sim::source_topic(*firmware_sim::source_format(name), "dev-1"), {}});
  }
  AdmitOptions options;
  options.mapper = compile_sources(sources);
  for (int i = 0; i < 8; ++i) {
    const Event e{DeviceId{"dev-1"}, DeviceSeq{static_cast<std::uint64_t>(1000 + i)}, EventTime{now - 1000 * i},
                  {{"temperature", 21.5 + i}, {"humidity", 40.25 - i}, {"light", 120.0 * i}, {"voltage", 2.71}}, {}, 7};
    cases[0].payloads.push_back(encode_json(e));
    for (std::size_t c = 1; c < cases.size(); ++c) {
      const SourceFormat f = *firmware_sim::source_format(cases[c].name);
      Event at = e;
      at.time.ms = firmware_sim::source_time(f, e.time.ms);
      if (f == SourceFormat::sparkplug) at.seq.value = 1 + i;  // NDATA; seq 0 is the NBIRTH
      cases[c].payloads.push_back(firmware_sim::encode_source(f, at));
    }
  }
  if (sparkplug_supported()) {  // the node's NBIRTH first: NDATA names its metrics by alias
    const Event birth{DeviceId{"dev-1"}, DeviceSeq{0}, EventTime{now},
                      {{"temperature", 1}, {"humidity", 1}, {"light", 1}, {"voltage", 1}}, {}, 7};
    const std::string p = firmware_sim::encode_source(SourceFormat::sparkplug, birth);
    const std::string topic = firmware_sim::source_topic(SourceFormat::sparkplug, birth);
    if (!admit(topic, {reinterpret_cast<const std::uint8_t*>(p.data()), p.size()}, now, options)) return 1;
  }
  std::printf("bench-ingest decode: admit() per message, in process, 4 metrics each, %d round(s) of %.1f s per "
              "format\n", rounds, seconds_per_case);
  std::vector<double> best(cases.size(), 0);
  for (int round = 0; round < rounds; ++round) {
    for (std::size_t c = 0; c < cases.size(); ++c) best[c] = std::max(best[c], rate(cases[c], options, now, seconds_per_case));
  }
  for (std::size_t c = 0; c < cases.size(); ++c) {
    std::printf("BENCH decode_%s %.0f msgs/s\n", cases[c].name.c_str(), best[c]);
    std::printf("BENCH decode_%s_payload %zu bytes\n", cases[c].name.c_str(), cases[c].payloads.front().size());
  }
  // Cost per message against native JSON (1.0 = the same; the budget for a mapped message is 1.5).
  for (std::size_t c = 1; c < cases.size(); ++c) {
    std::printf("RATIO decode_cost_%s_vs_native_json %.2f\n", cases[c].name.c_str(),
                best[c] > 0 ? best[0] / best[c] : 0.0);
  }
  return 0;
}

}  // namespace gw::ingest
