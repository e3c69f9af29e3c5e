// Tests of the windowing stage over a real ring buffer in a temporary directory: folding, queries,
// late events, forwarded aggregate records, and state that survives a restart.
#include "windowing/stage.h"

#include <catch2/catch.hpp>
#include <chrono>
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
