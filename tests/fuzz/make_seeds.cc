// Writes the binary seeds of the fuzz corpora with the project's own encoders:
//   fuzz_make_seeds tests/fuzz/corpus
// corpus/telemetry/seed-*.fb (Telemetry FlatBuffers) and corpus/batch/seed-*.zst (batch values in
// both layouts, telemetry and aggregates). The files are committed; rerun it when a format changes.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ingest/event.h"
#include "uplink/batch.h"

namespace {

using namespace gw;

void write(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_seeds: cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

ingest::Event event(std::uint64_t i) {
  ingest::Event e{ingest::DeviceId{"dev-" + std::to_string(i % 3)},
                  ingest::DeviceSeq{i},
                  ingest::EventTime{1'700'000'000'000 + static_cast<std::int64_t>(i) * 1000},
                  {{"temp", 20.0 + static_cast<double>(i) / 4}, {"hum", 40.5}}};
  if (i % 2 == 0) e.tags = {{"site", "lab"}, {"rack", "r" + std::to_string(i)}};
  if (i % 3 == 0) e.boot_id = static_cast<std::uint32_t>(i);
  return e;
}

windowing::Aggregate aggregate(std::uint64_t i) {
  windowing::Aggregate a;
  a.id = i;
  a.kind = i % 2 ? windowing::WindowKind::tumbling : windowing::WindowKind::hopping;
  a.scope = i % 3 ? windowing::Scope::device : windowing::Scope::group;
  a.key = a.scope == windowing::Scope::device ? "dev-1" : "lab";
  if (a.scope == windowing::Scope::group) a.group_tag = "site";
  a.metric = "temp";
  a.window_start = ingest::EventTime{1'700'000'000'000 + static_cast<std::int64_t>(i) * 10'000};
  a.window_end = ingest::EventTime{a.window_start.ms + 10'000};
  a.closed_at_ms = a.window_end.ms + 500;
  a.count = 10;
  a.sum = 215;
  a.min = 20;
  a.max = 23;
  a.mean = 21.5;
  a.stddev = 0.9;
  a.first_time = a.window_start;
  a.first = 20;
  a.last_time = ingest::EventTime{a.window_end.ms - 1};
  a.last = 23;
  a.rate = 1;
  a.has_quantiles = i % 2 == 0;
  a.p50 = 21.4;
  a.p90 = 22.8;
  a.p99 = 23;
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_make_seeds CORPUS_DIR\n");
    return 2;
  }
  const std::filesystem::path root = argv[1];
  const auto telemetry = root / "telemetry";
  const auto batch = root / "batch";
  std::filesystem::create_directories(telemetry);
  std::filesystem::create_directories(batch);

  write(telemetry / "seed-minimal.fb", ingest::encode_telemetry({ingest::DeviceId{"d"}, ingest::DeviceSeq{1},
                                                                  ingest::EventTime{1}, {}}));
  for (std::uint64_t i : {2, 3, 6}) write(telemetry / ("seed-event-" + std::to_string(i) + ".fb"), ingest::encode_telemetry(event(i)));

  uplink::Batch telemetry_batch{"edge-1", buffer::Seq{100}, buffer::Seq{111}, {}};
  for (std::uint64_t i = 0; i < 12; ++i) {
    if (i == 5) continue;  // a seq skipped on purpose (another record type)
    telemetry_batch.records.push_back({buffer::Seq{100 + i}, event(i + 1)});
  }
  write(batch / "seed-columnar.zst", uplink::encode_batch(telemetry_batch, 3, uplink::BatchLayout::columnar));
  write(batch / "seed-rows.zst", uplink::encode_batch(telemetry_batch, 3, uplink::BatchLayout::rows));
  uplink::Batch one{"g", buffer::Seq{1}, buffer::Seq{1}, {{buffer::Seq{1}, event(2)}}};
  write(batch / "seed-one.zst", uplink::encode_batch(one, 1));

  uplink::Batch aggregates{"edge-1", buffer::Seq{200}, buffer::Seq{203}, {}, buffer::RecordType::aggregate};
  for (std::uint64_t i = 0; i < 4; ++i) aggregates.aggregates.push_back({buffer::Seq{200 + i}, aggregate(i + 1)});
  write(batch / "seed-aggregates.zst", uplink::encode_batch(aggregates, 3));
  return 0;
}
