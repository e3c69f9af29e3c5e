// Tests of the pure tumbling-window logic (windowing/tumbling.h).
#include "windowing/tumbling.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

namespace {

using gw::ingest::DeviceId;
using gw::ingest::Event;
using gw::ingest::EventTime;
using gw::windowing::Aggregate;
using gw::windowing::TumblingWindows;

Event ev(const std::string& device, std::int64_t t, std::vector<gw::ingest::Metric> metrics) {
  static std::uint64_t seq = 0;
  return Event{DeviceId{device}, gw::ingest::DeviceSeq{++seq}, EventTime{t}, std::move(metrics)};
}

}  // namespace

TEST_CASE("a window closes when the device's watermark reaches its end, not before") {
  TumblingWindows w(std::chrono::milliseconds(1000));
  w.add(ev("d1", 0, {{"temp", 1.0}}));
  w.add(ev("d1", 999, {{"temp", 3.0}}));
  CHECK(w.take_closed().empty());
  CHECK(w.open_windows() == 1);

  w.add(ev("d1", 1000, {{"temp", 10.0}}));  // watermark = 1000 = end of [0, 1000)
  auto closed = w.take_closed();
  REQUIRE(closed.size() == 1);
  CHECK(closed[0].device == DeviceId{"d1"});
  CHECK(closed[0].metric == "temp");
  CHECK(closed[0].window_start == EventTime{0});
  CHECK(closed[0].window_end == EventTime{1000});
  CHECK(closed[0].count == 2);
  CHECK(closed[0].sum == 4.0);
  CHECK(w.open_windows() == 1);    // [1000, 2000) holds the event at 1000
  CHECK(w.take_closed().empty());  // taken once
}

TEST_CASE("count, sum, min, max and mean are exact") {
  TumblingWindows w(std::chrono::milliseconds(10));
  const std::vector<double> values = {5.5, -2.25, 7.0, 0.0, 3.75};
  for (std::size_t i = 0; i < values.size(); ++i) {
    w.add(ev("d", static_cast<std::int64_t>(i), {{"v", values[i]}, {"w", 1.0}}));
  }
  w.add(ev("d", 25, {}));  // closes [0, 10); an event without metrics still moves the watermark
  auto closed = w.take_closed();
  REQUIRE(closed.size() == 2);
  // Ordered by device, window start, metric.
  CHECK(closed[0].metric == "v");
  CHECK(closed[1].metric == "w");
  const Aggregate& v = closed[0];
  CHECK(v.count == 5);
  CHECK(v.sum == 14.0);
  CHECK(v.min == -2.25);
  CHECK(v.max == 7.0);
  CHECK(v.mean() == 2.8);
  CHECK(closed[1].count == 5);
  CHECK(closed[1].mean() == 1.0);
  CHECK(w.events() == 6);
  CHECK(Aggregate{}.mean() == 0.0);
}

TEST_CASE("watermarks are per device") {
  TumblingWindows w(std::chrono::milliseconds(100));
  w.add(ev("fast", 50, {{"m", 1}}));
  w.add(ev("slow", 50, {{"m", 2}}));
  w.add(ev("fast", 500, {{"m", 3}}));  // closes fast's [0,100) only
  auto closed = w.take_closed();
  REQUIRE(closed.size() == 1);
  CHECK(closed[0].device == DeviceId{"fast"});

  // slow's window is still open and takes its in-order event, which is not late for slow.
  w.add(ev("slow", 60, {{"m", 4}}));
  CHECK(w.late() == 0);
  w.add(ev("slow", 100, {{"m", 5}}));
  closed = w.take_closed();
  REQUIRE(closed.size() == 1);
  CHECK(closed[0].device == DeviceId{"slow"});
  CHECK(closed[0].count == 2);
  CHECK(closed[0].sum == 6.0);
}

TEST_CASE("events for a closed window are counted as late and not folded in") {
  TumblingWindows w(std::chrono::milliseconds(100));
  w.add(ev("d", 10, {{"m", 1}}));
  w.add(ev("d", 250, {{"m", 1}}));  // closes [0,100); [100,200) never had data but has passed too
  REQUIRE(w.take_closed().size() == 1);

  w.add(ev("d", 99, {{"m", 100}}));   // [0,100) closed: late
  w.add(ev("d", 150, {{"m", 100}}));  // [100,200) passed: late
  w.add(ev("d", 200, {{"m", 7}}));    // [200,300) still open: out of order but on time
  CHECK(w.late() == 2);
  CHECK(w.events() == 3);

  w.add(ev("d", 300, {}));
  auto closed = w.take_closed();
  REQUIRE(closed.size() == 1);
  CHECK(closed[0].window_start == EventTime{200});
  CHECK(closed[0].count == 2);
  CHECK(closed[0].sum == 8.0);
  CHECK(closed[0].max == 7.0);
}

TEST_CASE("window boundaries are aligned to the epoch, also before it") {
  TumblingWindows w(std::chrono::milliseconds(1000));
  w.add(ev("d", -1, {{"m", 1}}));
  w.add(ev("d", 1999, {{"m", 2}}));
  w.add(ev("d", 5000, {{"m", 3}}));
  auto closed = w.take_closed();
  REQUIRE(closed.size() == 2);
  CHECK(closed[0].window_start == EventTime{-1000});
  CHECK(closed[0].window_end == EventTime{0});
  CHECK(closed[1].window_start == EventTime{1000});
  CHECK(closed[1].window_end == EventTime{2000});
  CHECK(w.open_windows() == 1);
}
