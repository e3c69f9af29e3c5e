// Tests of the windowing stage over a real ring buffer in a temporary directory.
#include "windowing/stage.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "buffer/ring.h"
#include "ingest/event.h"
#include "tests/support/support.h"

namespace {

using gw::buffer::RecordIn;
using gw::buffer::RecordType;
using gw::buffer::Seq;
using gw::ingest::DeviceId;
using gw::ingest::EventTime;


std::vector<std::uint8_t> telemetry(const std::string& device, std::uint64_t seq, std::int64_t t,
                                    double value) {
  return gw::ingest::encode_telemetry(gw::ingest::Event{
      DeviceId{device}, gw::ingest::DeviceSeq{seq}, EventTime{t}, {{"temp", value}, {"hum", value * 2}}});
}

// Polls until the stage has acknowledged `upto`; bounded by count and time.
bool wait_acked(const gw::windowing::Stage& stage, Seq upto) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (int i = 0; i < 2000 && std::chrono::steady_clock::now() < deadline; ++i) {
    if (stage.stats().acked >= upto) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

}  // namespace

TEST_CASE("the stage folds stored telemetry into windows, acks, and answers queries") {
  gw::test::TempDir dir;
  auto opened = gw::buffer::Ring::open({.path = dir.path().string()});
  REQUIRE(opened.has_value());
  gw::buffer::Ring& ring = **opened;

  // Stored before the stage starts: a new cursor starts at the oldest record, so nothing is missed.
  std::vector<std::vector<std::uint8_t>> early = {telemetry("d1", 1, 100, 1.0), telemetry("d1", 2, 900, 3.0)};
  std::vector<RecordIn> in;
  for (const auto& p : early) in.push_back({RecordType::telemetry, p});
  REQUIRE(ring.append(in).has_value());

  gw::windowing::Stage stage({.size = std::chrono::milliseconds(1000), .max_results = 100}, ring);
  REQUIRE(stage.start().has_value());

  std::vector<std::vector<std::uint8_t>> later = {
      telemetry("d1", 3, 1500, 5.0),  // closes d1 [0,1000)
      telemetry("d2", 1, 200, 7.0),
      std::vector<std::uint8_t>(16, 0xEE),  // does not decode: counted and skipped
      telemetry("d2", 2, 3000, 9.0),        // closes d2 [0,1000)
      telemetry("d1", 4, 2100, 6.0),        // closes d1 [1000,2000)
      telemetry("d1", 5, 50, 100.0),        // late for d1
  };
  in.clear();
  for (const auto& p : later) in.push_back({RecordType::telemetry, p});
  auto seqs = ring.append(in);
  REQUIRE(seqs.has_value());
  REQUIRE(wait_acked(stage, seqs->back()));
  CHECK(ring.acked("windowing").value() == seqs->back());

  auto s = stage.stats();
  CHECK(s.events == 6);
  CHECK(s.late_events == 1);
  CHECK(s.decode_errors == 1);
  CHECK(s.windows_closed == 6);  // 3 windows x 2 metrics
  CHECK(s.open_windows == 4);    // d1 [2000,3000) and d2 [3000,4000), 2 metrics each

  auto d1_temp = stage.query({.device = DeviceId{"d1"}, .metric = std::string("temp")});
  REQUIRE(d1_temp.size() == 2);
  CHECK(d1_temp[0].window_start == EventTime{1000});  // newest first
  CHECK(d1_temp[0].count == 1);
  CHECK(d1_temp[0].sum == 5.0);
  CHECK(d1_temp[1].window_start == EventTime{0});
  CHECK(d1_temp[1].count == 2);
  CHECK(d1_temp[1].min == 1.0);
  CHECK(d1_temp[1].max == 3.0);
  CHECK(d1_temp[1].mean() == 2.0);

  auto d2 = stage.query({.device = DeviceId{"d2"}});
  REQUIRE(d2.size() == 2);
  for (const auto& a : d2) CHECK(a.device == DeviceId{"d2"});

  auto ranged = stage.query({.from = EventTime{1000}, .to = EventTime{2000}});
  REQUIRE(ranged.size() == 2);
  for (const auto& a : ranged) CHECK(a.window_start == EventTime{1000});

  CHECK(stage.query({.limit = 3}).size() == 3);
  CHECK(stage.query({.device = DeviceId{"nobody"}}).empty());
  CHECK(stage.devices() == std::vector<std::string>{"d1", "d2"});

  const auto before_stop = std::chrono::steady_clock::now();
  stage.stop();
  CHECK(std::chrono::steady_clock::now() - before_stop < std::chrono::seconds(5));
  stage.stop();  // idempotent
}

TEST_CASE("the result store keeps the newest max_results aggregates") {
  gw::test::TempDir dir;
  auto opened = gw::buffer::Ring::open({.path = dir.path().string()});
  REQUIRE(opened.has_value());
  gw::buffer::Ring& ring = **opened;
  gw::windowing::Stage stage({.size = std::chrono::milliseconds(10), .cursor = "w2", .max_results = 4}, ring);
  REQUIRE(stage.start().has_value());

  std::vector<std::vector<std::uint8_t>> payloads;
  // Event times 1000..1050 (ingest treats time 0 as absent).
  for (int i = 0; i < 6; ++i)
    payloads.push_back(telemetry("d", static_cast<std::uint64_t>(i + 1), 1000 + i * 10, i));
  std::vector<RecordIn> in;
  for (const auto& p : payloads) in.push_back({RecordType::telemetry, p});
  auto seqs = ring.append(in);
  REQUIRE(seqs.has_value());
  REQUIRE(wait_acked(stage, seqs->back()));

  auto s = stage.stats();
  CHECK(s.decode_errors == 0);
  CHECK(s.windows_closed == 10);  // windows 1000..1040 closed, 2 metrics each
  CHECK(s.results_dropped == 6);
  auto all = stage.query({.limit = 100});
  REQUIRE(all.size() == 4);
  CHECK(all[0].window_start == EventTime{1040});
  CHECK(all[3].window_start == EventTime{1030});
}
