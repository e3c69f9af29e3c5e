// The simulator as a device SDK: with --outbox a reading that was not acknowledged (the broker went
// away) is published again once the connection is back, the manifest lists every reading handed
// over, and with --client-per-device each device has its own connection.
#include "tests/support/catch.h"
#include <mqtt/async_client.h>

#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <thread>

#include "firmware-sim/publisher.h"
#include "tests/firmware-sim/capture.h"
#include "tests/support/support.h"

using namespace gw::firmware_sim;
using namespace gw::firmware_sim::test;
using gw::test::ChildProcess;
using gw::test::Mosquitto;
using gw::test::TempDir;

namespace {

// A QoS 1 subscriber to '#' with a persistent session that reconnects by itself: across a broker
// restart that keeps the sessions, it gets what was queued for it meanwhile.
class Subscriber {
 public:
  Subscriber(const std::string& url, const std::string& client_id) : client_(url, client_id) {
    client_.start_consuming();  // a plain test subscriber; acking on enqueue is fine here
    const auto connect = mqtt::connect_options_builder()
                             .clean_session(false)
                             .automatic_reconnect(std::chrono::milliseconds(100), std::chrono::milliseconds(500))
                             .finalize();
    if (!client_.connect(connect)->wait_for(std::chrono::seconds(10)) ||
        !client_.subscribe("#", 1)->wait_for(std::chrono::seconds(10))) {
      throw std::runtime_error("test subscriber could not connect and subscribe to " + url);
    }
  }
  ~Subscriber() {
    try {
      client_.disconnect()->wait_for(std::chrono::seconds(5));
    } catch (const mqtt::exception&) {
      // the broker may be gone already
    }
  }

  // Counts the copies of each (device, seq) that come until `done` says so or `timeout` passes.
  template <class Done>
  void collect(std::map<Key, int>& copies, Done done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      mqtt::const_message_ptr msg;
      if (!client_.try_consume_message_for(&msg, std::chrono::milliseconds(100)) || !msg) continue;
      if (auto s = parse_sent(msg->get_payload_str())) ++copies[{s->event.device.value, s->event.seq.value}];
    }
  }

 private:
  mqtt::async_client client_;
};

// The value of "NAME=N" in the simulator's summary; -1 if it is not there.
long long summary_value(const std::string& summary, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(summary, m, std::regex("\\b" + name + "=([0-9]+)"))) return -1;
  return std::stoll(m[1]);
}

}  // namespace

TEST_CASE("publish --outbox: what the broker did not acknowledge before it went down arrives after it is back") {
  TempDir dir;
  // Both brokers keep their database in `dir` (persistence_file is relative to a broker's own
  // directory, a sibling of `dir`): the second one starts with the first one's sessions, so the
  // subscriber's session and what was queued for it survive the restart.
  const std::string persistence = "persistence_file ../" + dir.path().filename().string() + "/mosquitto.db\n";
  const int port = gw::test::free_port();
  auto broker = std::make_unique<Mosquitto>(port, "/usr/sbin/mosquitto", persistence);
  REQUIRE(broker->dir().parent_path() == dir.path().parent_path());
  const std::string url = broker->url();
  Subscriber sub(url, "test-outbox-sub");

  const auto manifest = dir.path() / "manifest.txt";
  const auto out = dir.path() / "out.txt";
  ChildProcess publisher({GW_FIRMWARE_SIM_BIN, "--broker", url, "--devices", "5", "--rate", "50", "--duration", "4",
                          "--outbox", "--resend-backoff-ms", "100", "--resend-backoff-max-ms", "1000",
                          "--drain-timeout", "20", "--client-id", "outbox-sim", "--manifest", manifest.string()},
                         out);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  broker.reset();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  broker = std::make_unique<Mosquitto>(port, "/usr/sbin/mosquitto", persistence);
  const auto rc = publisher.wait(std::chrono::seconds(60));
  REQUIRE(rc.has_value());
  CHECK(*rc == 0);

  const std::string summary = slurp(out);
  INFO(summary);
  CHECK(summary_value(summary, "unacked") == 0);
  // The restart cut the connection (the readings of that second waited in the outbox; whether some
  // were in flight and had to be resent depends on timing).
  CHECK(summary.find("connection(s) lost") != std::string::npos);
  std::size_t lines = 0, resent_marks = 0;
  const auto want = read_manifest_keys(manifest, lines, &resent_marks);
  CHECK(lines == want.size());  // each reading once, however often it was sent
  CHECK(static_cast<long long>(resent_marks) == summary_value(summary, "resent"));  // one mark per resent reading
  CHECK(static_cast<long long>(lines) == summary_value(summary, "acked"));
  CHECK(lines > 500);  // 5 devices x 50/s for 4 s, less what a slow start costs

  // Over both brokers' lifetimes, every reading of the manifest at least once (a copy whose PUBACK
  // the shutdown took arrives twice).
  std::map<Key, int> copies;
  auto all_there = [&] {
    for (const auto& key : want) {
      if (!copies.contains(key)) return false;
    }
    return true;
  };
  sub.collect(copies, all_there, std::chrono::seconds(30));
  std::size_t missing = 0;
  for (const auto& key : want) missing += copies.contains(key) ? 0 : 1;
  CHECK(missing == 0);
}

TEST_CASE("publish --outbox: what is still unacknowledged when the drain times out is reported and fails the run") {
  TempDir dir;
  auto broker = std::make_unique<Mosquitto>();
  const auto out = dir.path() / "out.txt";
  ChildProcess publisher({GW_FIRMWARE_SIM_BIN, "--broker", broker->url(), "--devices", "2", "--rate", "50",
                          "--duration", "1.5", "--outbox", "--drain-timeout", "1", "--manifest",
                          (dir.path() / "manifest.txt").string()},
                         out);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  broker.reset();  // and never back
  const auto rc = publisher.wait(std::chrono::seconds(30));
  REQUIRE(rc.has_value());
  CHECK(*rc == 1);
  const std::string summary = slurp(out);
  INFO(summary);
  std::size_t lines = 0;
  read_manifest_keys(dir.path() / "manifest.txt", lines);
  CHECK(summary_value(summary, "unacked") > 0);
  CHECK(summary_value(summary, "acked") + summary_value(summary, "unacked") == static_cast<long long>(lines));
}

// In MQTT 5 with QoS 2 (the other outbox tests are 3.1.1 with QoS 1).
TEST_CASE("publish --client-per-device --outbox in MQTT 5 at QoS 2: 50 devices on 50 connections and every reading once") {
  Mosquitto broker;
  TempDir dir;
  Subscriber sub(broker.url(), "test-per-device-sub");

  PublishOptions opt;
  opt.broker = broker.url();
  opt.devices = 50;
  opt.count = 20;
  opt.rate = 0;
  opt.outbox = true;
  opt.client_per_device = true;
  opt.mqtt_version = 5;
  opt.qos = 2;
  opt.client_id = "per-device";
  opt.manifest = dir.path() / "manifest.txt";
  std::atomic<bool> stop{false};
  auto r = publish(opt, stop);
  REQUIRE(r.has_value());
  CHECK(r->published == 1000);
  CHECK(r->acked == 1000);
  CHECK(r->failed == 0);
  CHECK(r->resent == 0);
  CHECK(r->unacked == 0);

  std::size_t lines = 0;
  const auto want = read_manifest_keys(opt.manifest, lines);
  CHECK(lines == 1000);
  CHECK(want.size() == 1000);

  // Every reading once: all 1000 came, and nothing more within a further half second.
  std::map<Key, int> copies;
  sub.collect(copies, [&] { return copies.size() == want.size(); }, std::chrono::seconds(30));
  sub.collect(copies, [] { return false; }, std::chrono::milliseconds(500));
  CHECK(copies.size() == want.size());
  std::size_t extra = 0, unknown = 0;
  for (const auto& [key, n] : copies) {
    extra += static_cast<std::size_t>(n - 1);
    unknown += want.contains(key) ? 0 : 1;
  }
  CHECK(extra == 0);
  CHECK(unknown == 0);

  // The broker saw one client per device, by its id.
  std::set<std::string> ids;
  const std::string log = slurp(broker.dir() / "mosquitto.log");
  const std::regex connected(" as (per-device-dev-[0-9]+) ");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), connected); it != std::sregex_iterator(); ++it) {
    ids.insert((*it)[1]);
  }
  CHECK(ids.size() == 50);
  CHECK(ids.contains("per-device-dev-1"));
  CHECK(ids.contains("per-device-dev-50"));
}
