// Tests of the windowing stage over a real ring buffer in a temporary directory: folding, queries,
// late events, forwarded aggregate records, and state that survives a restart.
#include "windowing/stage.h"

#include <atomic>
#include "tests/support/catch.h"
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "buffer/ring.h"
#include "ingest/event.h"
#include "tests/support/faulty_ring.h"
#include "tests/support/support.h"

namespace {

using gw::buffer::RecordIn;
using gw::buffer::RecordType;
using gw::buffer::Seq;
using gw::ingest::DeviceId;
using gw::ingest::EventTime;

std::vector<std::uint8_t> telemetry(const std::string& device, std::uint64_t seq, std::int64_t t, double value,
                                    const std::string& site = "lab") {
  return gw::ingest::encode_telemetry(gw::ingest::Event{DeviceId{device}, gw::ingest::DeviceSeq{seq}, EventTime{t},
                                                        {{"temp", value}, {"hum", value * 2}}, {{"site", site}}});
}

Seq append(gw::buffer::Ring& ring, const std::vector<std::vector<std::uint8_t>>& payloads) {
  std::vector<RecordIn> in;
  for (const auto& p : payloads) in.push_back({RecordType::telemetry, p});
  auto seqs = ring.append(in);
  REQUIRE(seqs.has_value());
  return seqs->back();
}

// Polls until the stage has committed `upto`; bounded by count and time.
bool wait_acked(const gw::windowing::Stage& stage, Seq upto) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (int i = 0; i < 2000 && std::chrono::steady_clock::now() < deadline; ++i) {
    if (stage.stats().acked >= upto) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

gw::windowing::Options options() {
  gw::windowing::Options o;
  o.size = std::chrono::milliseconds(1000);
  o.group_by_tag = "site";
  o.max_skew = std::chrono::hours(24 * 365 * 100);  // the test's event times are far from the clock
  o.commit_interval = std::chrono::milliseconds(10);
  o.clock = [] { return std::int64_t{0}; };
  return o;
}

}  // namespace

TEST_CASE("the stage folds stored telemetry, commits results, late events and aggregate records") {
  gw::test::TempDir dir;
  auto opened = gw::buffer::Ring::open({.path = dir.path().string()});
  REQUIRE(opened.has_value());
  gw::buffer::Ring& ring = **opened;
  append(ring, {telemetry("d1", 1, 100, 1.0), telemetry("d1", 2, 900, 3.0)});

  gw::windowing::Stage stage(options(), ring);
  REQUIRE(stage.start().has_value());
  const Seq last = append(ring, {
                                    telemetry("d1", 3, 1500, 5.0),  // closes d1 [0,1000)
                                    telemetry("d2", 1, 200, 7.0),  // the group's [0,1000) closed: late there
                                    std::vector<std::uint8_t>(16, 0xEE),  // does not decode: counted, skipped
                                    telemetry("d2", 2, 3000, 9.0),        // closes d2 [0,1000)
                                    telemetry("d1", 4, 2100, 6.0),        // closes d1 [1000,2000)
                                    telemetry("d1", 5, 50, 100.0),        // late for d1 and for the group
                                });
  REQUIRE(wait_acked(stage, last));

  auto s = stage.stats();
  CHECK(s.events == 7);
  CHECK(s.late_events == 2);
  CHECK(s.decode_errors == 1);
  CHECK(s.devices == 2);
  CHECK(s.groups == 1);
  CHECK(s.commits >= 1);

  auto d1_temp = stage.query({.device = DeviceId{"d1"}, .metric = std::string("temp")});
  REQUIRE(d1_temp.size() == 2);
  CHECK(d1_temp[0].window_start == EventTime{1000});  // newest first
  CHECK(d1_temp[0].count == 1);
  CHECK(d1_temp[1].window_start == EventTime{0});
  CHECK(d1_temp[1].count == 2);
  CHECK(d1_temp[1].min == 1.0);
  CHECK(d1_temp[1].max == 3.0);
  CHECK(d1_temp[1].mean == 2.0);
  CHECK(d1_temp[1].stddev == 1.0);
  CHECK(d1_temp[1].first == 1.0);
  CHECK(d1_temp[1].last == 3.0);
  CHECK(d1_temp[1].rate == 2.0);
  CHECK(d1_temp[1].has_quantiles);

  // The group "lab": d1 alone closed [0,1000) at 1500 (d2 had not sent yet); then min over d1
  // (2100) and d2 (3000) closed [1000,2000).
  auto lab = stage.query({.group = std::string("lab"), .metric = std::string("temp")});
  REQUIRE(lab.size() == 2);
  CHECK(lab[1].count == 2);  // d1@100, d1@900
  CHECK(lab[0].count == 1);  // d1@1500
  CHECK(lab[1].group_tag == "site");
  CHECK(stage.query({.device = DeviceId{"nobody"}}).empty());
  CHECK(stage.query({.kind = gw::windowing::WindowKind::session}).empty());
  CHECK(stage.query({.limit = 3}).size() == 3);
  auto ranged = stage.query({.from = EventTime{1000}, .to = EventTime{2000}});
  for (const auto& a : ranged) CHECK(a.window_start == EventTime{1000});
  CHECK(!ranged.empty());

  auto late = stage.late(10);
  REQUIRE(late.size() == 2);
  CHECK(late[0].device.value == "d1");  // newest first
  CHECK(late[0].seq.value == 5);
  CHECK(late[0].windows_missed == 4);  // 2 metrics x (device, group)
  CHECK(late[1].device.value == "d2");
  CHECK(late[1].windows_missed == 2);  // the group's windows only
  CHECK(late[1].windows_folded == 2);
  // Paging: below the newest id, the older one; below the oldest, nothing.
  auto older = stage.late(10, late[0].id);
  REQUIRE(older.size() == 1);
  CHECK(older[0].id == late[1].id);
  CHECK(stage.late(10, late[1].id).empty());
  CHECK(stage.late(1).size() == 1);
  CHECK(stage.devices() == std::vector<std::string>{"d1", "d2"});

  // The closed windows went into the ring as aggregate records, once each.
  auto records = ring.read(Seq{}, 1000, 1 << 20);
  REQUIRE(records.has_value());
  std::size_t aggregates = 0;
  for (const auto& r : *records) {
    if (r.type != RecordType::aggregate) continue;
    ++aggregates;
    auto a = gw::windowing::decode_aggregate(r.payload);
    REQUIRE(a.has_value());
    CHECK(a->count > 0);
  }
  CHECK(aggregates == s.windows_closed);
  CHECK(stage.stats().aggregates_forwarded == aggregates);
  stage.stop();
  stage.stop();  // idempotent
}

TEST_CASE("open windows survive a restart: a window spanning the restart counts every event once") {
  gw::test::TempDir dir;
  auto opened = gw::buffer::Ring::open({.path = dir.path().string()});
  REQUIRE(opened.has_value());
  gw::buffer::Ring& ring = **opened;
  {
    gw::windowing::Stage stage(options(), ring);
    REQUIRE(stage.start().has_value());
    REQUIRE(wait_acked(stage, append(ring, {telemetry("d", 1, 100, 1.0), telemetry("d", 2, 200, 2.0)})));
    CHECK(stage.stats().open_windows == 4);  // temp and hum, device and group
  }
  gw::windowing::Stage again(options(), ring);
  REQUIRE(again.start().has_value());
  CHECK(again.stats().state_restored);
  REQUIRE(wait_acked(again, append(ring, {telemetry("d", 3, 300, 3.0), telemetry("d", 4, 5000, 0.0)})));
  auto r = again.query({.device = DeviceId{"d"}, .metric = std::string("temp")});
  REQUIRE(r.size() == 1);
  CHECK(r[0].count == 3);
  CHECK(r[0].sum == 6.0);
  CHECK(again.stats().events == 4);
}

TEST_CASE("a restart with another window configuration drops the open windows, keeps the results") {
  gw::test::TempDir dir;
  auto opened = gw::buffer::Ring::open({.path = dir.path().string()});
  REQUIRE(opened.has_value());
  gw::buffer::Ring& ring = **opened;
  {
    gw::windowing::Stage stage(options(), ring);
    REQUIRE(stage.start().has_value());
    REQUIRE(wait_acked(stage, append(ring, {telemetry("d", 1, 100, 1.0), telemetry("d", 2, 1200, 2.0)})));
  }
  auto other = options();
  other.size = std::chrono::milliseconds(500);
  gw::windowing::Stage stage(other, ring);
  REQUIRE(stage.start().has_value());
  CHECK(stage.stats().state_discarded);
  CHECK(stage.stats().open_windows == 0);
  CHECK(stage.query({.device = DeviceId{"d"}}).size() == 2);
  REQUIRE(wait_acked(stage, append(ring, {telemetry("d", 3, 3000, 1.0)})));
  CHECK(stage.query({.device = DeviceId{"d"}}).size() >= 2);
}

// Appends `events` events of `devices` devices (round robin, all in their first 1 s window) in
// batches of 50, as ingest does (waiting while the store is full), while the stage runs; returns
// once all are appended and the stage has committed the last, or after 90 s.
struct Filled {
  std::uint64_t appended = 0;
  std::uint64_t last = 0;
};
Filled fill_while_the_stage_runs(gw::buffer::Ring& ring, const gw::windowing::Stage& stage, std::uint64_t devices,
                                 std::uint64_t events) {
  constexpr std::uint64_t kBatch = 50;
  std::atomic<std::uint64_t> appended{0};
  std::atomic<std::uint64_t> last{0};
  std::jthread appender([&](std::stop_token stop) {
    for (std::uint64_t first = 0; first < events && !stop.stop_requested(); first += kBatch) {
      std::vector<std::vector<std::uint8_t>> payloads;
      for (std::uint64_t i = first; i < first + kBatch; ++i) {
        const std::uint64_t seq = i / devices + 1;
        payloads.push_back(telemetry("device-" + std::to_string(i % devices), seq,
                                     static_cast<std::int64_t>(seq * 10), 1.0));
      }
      std::vector<RecordIn> in;
      for (const auto& p : payloads) in.push_back({RecordType::telemetry, p});
      auto seqs = ring.append(in, stop);
      if (!seqs) return;
      last = seqs->back().value;
      appended += kBatch;
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  for (int i = 0; i < 18000 && std::chrono::steady_clock::now() < deadline; ++i) {
    if (appended == events && stage.stats().acked.value == last) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  appender.request_stop();
  appender.join();
  return {appended, last};
}

// At the smallest buffer the config accepts, under block, appends fill a fresh store before the
// stage commits once, with the events of 600 devices, so that the stage's first commit would hold
// the open windows of all of them. The gateway fits the stage's caps in half the store
// (gateway/config.cc) and the buffer keeps room for its tables to grow to them
// (consumer_tables_bytes): the stage's commits fit, trim what they cover, and let the appends go
// on; the devices beyond max_devices are counted, not windowed. Without that room (even with the
// cap), the events filled the store, the open windows of the devices read so far needed more pages
// than trimming their events freed, no commit of the stage fit again, and both waited for good.
TEST_CASE("a store full of events of many devices before the stage's first commit does not stop the stage") {
  gw::test::TempDir dir;
  auto o = options();
  o.commit_interval = std::chrono::seconds(2);  // the store fills before the first commit
  o.max_results = 200;
  o.max_late = 50;
  o.max_devices = 150;
  const std::uint64_t tables = gw::windowing::retained_bytes(o.max_results, o.max_late, o.max_devices);
  REQUIRE(tables <= gw::buffer::side_tables_budget(1ull << 20));  // what the config would accept
  auto opened = gw::buffer::Ring::open({.path = dir.path().string(),
                                        .max_bytes = 1ull << 20,
                                        .durability = gw::buffer::Durability::os,
                                        .consumer_tables_bytes = tables});
  REQUIRE(opened.has_value());
  gw::buffer::Ring& ring = **opened;
  gw::windowing::Stage stage(o, ring);
  REQUIRE(stage.start().has_value());

  constexpr std::uint64_t kDevices = 600, kEvents = 8000;
  const Filled f = fill_while_the_stage_runs(ring, stage, kDevices, kEvents);
  const auto s = stage.stats();
  INFO("appended " << f.appended << ", stage at seq " << s.acked.value << " of " << f.last);
  CHECK(ring.stats().blocked_total >= 1);  // the store was full: the case under test happened
  REQUIRE(f.appended == kEvents);
  REQUIRE(s.acked.value == f.last);
  CHECK(s.devices == o.max_devices);
  CHECK(s.events + s.unwindowed_events == kEvents);
  // Devices 150..599 of each round of 600, and of the last, partial round (8000 = 13 x 600 + 200).
  CHECK(s.unwindowed_events == 13 * (kDevices - o.max_devices) + (200 - o.max_devices));
}

// The fallback when a commit of the stage does not fit all the same (the room the buffer keeps for
// it rests on estimates): the stage halves its commit until one fits, then doubles back, and
// catches up. Before, it retried the whole commit for good. Here the ring refuses commits of more
// than 100 table writes, and 400 new devices take about 3 writes each.
TEST_CASE("a commit the buffer has no room for is split until it fits") {
  gw::test::TempDir dir;
  auto opened = gw::buffer::Ring::open({.path = dir.path().string(), .durability = gw::buffer::Durability::os});
  REQUIRE(opened.has_value());
  gw::test::FaultyRing ring(**opened);
  ring.max_commit_writes = 100;
  auto o = options();
  o.commit_interval = std::chrono::milliseconds(200);
  gw::windowing::Stage stage(o, ring);
  REQUIRE(stage.start().has_value());
  std::vector<std::vector<std::uint8_t>> payloads;
  for (int i = 0; i < 400; ++i) payloads.push_back(telemetry("device-" + std::to_string(i), 1, 10, 1.0));
  const Seq last = append(**opened, payloads);
  REQUIRE(wait_acked(stage, last));
  const auto s = stage.stats();
  CHECK(ring.commits_refused > 0);  // the case under test happened
  CHECK(s.commit_errors == static_cast<std::uint64_t>(ring.commits_refused.load()));
  CHECK(s.devices == 400);
  CHECK(s.events == 400);
  CHECK(s.commits >= 12);  // at most about 33 devices a commit
}
