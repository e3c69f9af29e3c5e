// The simulator against a real mosquitto on loopback: what it publishes arrives, the manifest lists
// exactly the acknowledged messages, and the program's CLI prints its summary and verifies.
#include "tests/support/catch.h"
#include <mqtt/async_client.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "firmware-sim/metrics.h"
#include "firmware-sim/publisher.h"
#include "ingest/event.h"
#include "tests/firmware-sim/capture.h"
#include "tests/support/support.h"

using namespace gw::firmware_sim;
using namespace gw::firmware_sim::test;
using gw::test::ChildProcess;
using gw::test::Mosquitto;
using gw::test::TempDir;

TEST_CASE("device_topic replaces every placeholder") {
  CHECK(device_topic("devices/{device}/telemetry", "dev-3") == "devices/dev-3/telemetry");
  CHECK(device_topic("{device}/{device}", "a") == "a/a");
  CHECK(device_topic("fixed", "a") == "fixed");
}

TEST_CASE("synthetic values are finite and deterministic per seed") {
  auto a = synthetic_source(7);
  auto b = synthetic_source(7);
  auto c = synthetic_source(8);
  bool differs = false;
  for (int i = 0; i < 200; ++i) {
    auto ma = a->next(i % 3);
    auto mb = b->next(i % 3);
    auto mc = c->next(i % 3);
    REQUIRE(ma.size() == 4);
    CHECK(ma == mb);
    differs = differs || ma != mc;
    for (const auto& m : ma) CHECK(std::isfinite(m.value));
  }
  CHECK(differs);
}

TEST_CASE("intel lab replay skips bad rows and cycles") {
  TempDir dir;
  {
    std::ofstream f(dir.path() / "7.txt");
    f << "2004-03-04 00:00:26.98 14285 7 20.5 35.8 46.9 2.65\n"
      << "2004-03-04 00:00:27.98 14286 7 20.6 35.9\n"           // too few fields
      << "2004-03-04 00:00:27.99 14286 7    \n"                  // no metric at all
      << "2004-03-04 00:00:28.98 14287 7 abc 35.9 46.9 2.65\n"  // unparsable temperature
      << "2004-03-04 00:00:29.98 14288 7 21.5 36.8 47.9 2.64\n"
      << "2004-03-04 00:00:30.98 14289 7 22.5 37.8  2.63\n";  // empty light field (as in 28.txt)
    std::ofstream(dir.path() / "node.txt") << "not a mote file\n";
  }
  auto src = intel_lab_source(dir.path());
  REQUIRE(src.has_value());
  auto first = (*src)->next(0);
  REQUIRE(first.size() == 4);
  CHECK(first[0].name == "temperature");
  CHECK(first[0].value == Approx(20.5));
  auto no_temperature = (*src)->next(0);
  REQUIRE(no_temperature.size() == 3);
  CHECK(no_temperature[0].name == "humidity");
  CHECK((*src)->next(0)[0].value == Approx(21.5));
  auto no_light = (*src)->next(0);
  REQUIRE(no_light.size() == 3);
  CHECK(no_light[2].name == "voltage");
  CHECK(no_light[2].value == Approx(2.63));
  CHECK((*src)->next(0)[0].value == Approx(20.5));  // cycled
  // Device 1 shares the only file but starts at another row (997 mod 4 = 1).
  CHECK((*src)->next(1)[0].name == "humidity");

  TempDir empty;
  auto none = intel_lab_source(empty.path());
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error() == make_error_code(errc::bad_data));
}

TEST_CASE("publish fails cleanly when no broker listens") {
  PublishOptions opt;
  opt.broker = "tcp://127.0.0.1:" + std::to_string(gw::test::free_port());
  opt.count = 1;
  opt.connect_timeout = std::chrono::seconds(5);
  std::atomic<bool> stop{false};
  auto r = publish(opt, stop);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(errc::connect_failed));
}

TEST_CASE("publish delivers every acknowledged message and the manifest lists exactly those") {
  Mosquitto broker;
  TempDir dir;

  mqtt::async_client sub(broker.url(), "test-sub");
  sub.start_consuming();  // a plain test subscriber; acking on enqueue is fine here
  REQUIRE(sub.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait_for(std::chrono::seconds(10)));
  REQUIRE(sub.subscribe("devices/+/telemetry", 1)->wait_for(std::chrono::seconds(10)));

  PublishOptions opt;
  opt.broker = broker.url();
  opt.devices = 3;
  opt.count = 40;
  opt.rate = 0;
  opt.max_inflight = 50;  // above Paho's default window of 10
  opt.manifest = dir.path() / "manifest.txt";
  std::atomic<bool> stop{false};
  auto r = publish(opt, stop);
  REQUIRE(r.has_value());
  CHECK(r->published == 120);
  CHECK(r->acked == 120);
  CHECK(r->failed == 0);

  std::size_t lines = 0;
  auto manifest = read_manifest_keys(opt.manifest, lines);
  CHECK(lines == 120);
  std::set<Key> want;
  for (int d = 1; d <= 3; ++d) {
    for (std::uint64_t s = 1; s <= 40; ++s) want.emplace("dev-" + std::to_string(d), s);
  }
  CHECK(manifest == want);

  std::set<Key> got;
  for (int i = 0; i < 1000 && got.size() < want.size(); ++i) {
    mqtt::const_message_ptr msg;
    if (!sub.try_consume_message_for(&msg, std::chrono::milliseconds(100)) || !msg) continue;
    const auto& p = msg->get_payload();
    auto ev = gw::ingest::decode_telemetry({reinterpret_cast<const std::uint8_t*>(p.data()), p.size()});
    REQUIRE(ev.has_value());
    CHECK(msg->get_topic() == "devices/" + ev->device.value + "/telemetry");
    CHECK(ev->metrics.size() == 4);
    got.emplace(ev->device.value, ev->seq.value);
  }
  CHECK(got == want);
  sub.disconnect()->wait_for(std::chrono::seconds(5));
}

TEST_CASE("fleet faults: duplicates, malformed payloads, reordering, offline bursts, JSON, skew - the manifest stays exact") {
  Mosquitto broker;
  TempDir dir;
  mqtt::async_client sub(broker.url(), "test-sub-faults");
  sub.start_consuming();
  REQUIRE(sub.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait_for(std::chrono::seconds(10)));
  REQUIRE(sub.subscribe("devices/+/telemetry", 1)->wait_for(std::chrono::seconds(10)));

  PublishOptions opt;
  opt.broker = broker.url();
  opt.devices = 4;
  opt.count = 50;
  opt.rate = 0;
  opt.seed = 3;
  opt.format = PayloadFormat::mixed;
  opt.reorder_window = 5;
  opt.duplicate_rate = 0.2;
  opt.malformed_rate = 0.1;
  opt.offline_rate = 0.05;
  opt.offline_for = std::chrono::milliseconds(20);
  opt.clock_skew = std::chrono::milliseconds(60000);
  opt.manifest = dir.path() / "manifest.txt";
  opt.record = dir.path() / "record.jsonl";
  std::atomic<bool> stop{false};
  auto r = publish(opt, stop);
  REQUIRE(r.has_value());
  CHECK(r->acked == 200);
  CHECK(r->duplicates > 0);
  CHECK(r->malformed > 0);
  CHECK(r->published == 200 + r->duplicates + r->malformed);

  std::size_t lines = 0;
  auto manifest = read_manifest_keys(opt.manifest, lines);
  CHECK(lines == 200);  // each (device, seq) once, however often it was sent
  CHECK(manifest.size() == 200);

  std::map<Key, int> copies;
  std::size_t junk = 0, json = 0, out_of_order = 0, received = 0;
  std::map<std::string, std::uint64_t> last_seq;
  const std::size_t expected_messages = r->published;
  for (int i = 0; i < 2000 && received < expected_messages; ++i) {
    mqtt::const_message_ptr msg;
    if (!sub.try_consume_message_for(&msg, std::chrono::milliseconds(100)) || !msg) continue;
    ++received;
    const auto& p = msg->get_payload();
    auto ev = gw::ingest::decode_payload({reinterpret_cast<const std::uint8_t*>(p.data()), p.size()});
    if (!ev) {
      ++junk;
      continue;
    }
    if (!p.empty() && p[0] == '{') ++json;
    if (ev->seq.value < last_seq[ev->device.value]) ++out_of_order;
    last_seq[ev->device.value] = std::max(last_seq[ev->device.value], ev->seq.value);
    ++copies[{ev->device.value, ev->seq.value}];
  }
  CHECK(copies.size() == 200);
  std::uint64_t extra = 0;
  for (const auto& [key, n] : copies) extra += static_cast<std::uint64_t>(n - 1);
  CHECK(extra == r->duplicates);
  CHECK(json > 0);
  CHECK(out_of_order > 0);
  // Junk that happens to start like JSON or FlatBuffers may decode as neither; it must never decode as an event.
  CHECK(junk <= r->malformed);

  std::ifstream rec(opt.record);
  std::size_t record_lines = 0;
  for (std::string line; std::getline(rec, line);) {
    auto ev = gw::ingest::decode_json({reinterpret_cast<const std::uint8_t*>(line.data()), line.size()});
    REQUIRE(ev.has_value());
    ++record_lines;
  }
  CHECK(record_lines == 200);
}

TEST_CASE("the firmware-sim program publishes, prints its summary and verifies") {
  Mosquitto broker;
  TempDir dir;
  const auto manifest = dir.path() / "manifest.txt";
  const auto out = dir.path() / "out.txt";
  {
    ChildProcess p({GW_FIRMWARE_SIM_BIN, "--broker", broker.url(), "--devices", "2", "--count", "5", "--rate", "50",
                    "--manifest", manifest.string()},
                   out);
    auto rc = p.wait(std::chrono::seconds(60));
    REQUIRE(rc.has_value());
    CHECK(*rc == 0);
  }
  const std::string summary = slurp(out);
  CHECK(summary.starts_with("injected: duplicates=0 retransmits=0 multi_gateway_copies=0 conflicts=0 reboots=0 wraps=0\n"
                            "published=10 acked=10 failed=0 duplicates=0 malformed=0 offline_episodes=0 resent=0 unacked=0 elapsed_s="));

  // Records as uplink-cat would print them: all but dev-2 seq 5, and one duplicate.
  {
    std::ofstream rec(dir.path() / "records.jsonl");
    for (int d = 1; d <= 2; ++d) {
      for (int s = 1; s <= 5; ++s) {
        if (d == 2 && s == 5) continue;
        rec << R"({"gateway":"g","seq":1,"device":"dev-)" << d << R"(","device_seq":)" << s
            << R"(,"time_ms":1,"metrics":{}})" << '\n';
      }
    }
    rec << R"({"gateway":"g","seq":1,"device":"dev-1","device_seq":1,"time_ms":1,"metrics":{}})" << '\n';
  }
  ChildProcess v({GW_FIRMWARE_SIM_BIN, "verify", "--manifest", manifest.string(), "--records",
                  (dir.path() / "records.jsonl").string()},
                 dir.path() / "verify.txt");
  auto rc = v.wait(std::chrono::seconds(30));
  REQUIRE(rc.has_value());
  CHECK(*rc == 1);
  CHECK(slurp(dir.path() / "verify.txt") == "verify: expected=10 received=10 lost=1 duplicates=1 unexpected=0 resent=0\n");
}
