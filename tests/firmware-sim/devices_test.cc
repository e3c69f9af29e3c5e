// What real devices do, as the simulator reproduces it: the first seq after a boot, a counter that
// wraps, reboots with and without a boot id - the numbering alone (SimDevice), and what a real
// mosquitto receives from a publish run, with the manifest and the injected counts it writes.
#include "tests/support/catch.h"
#include <nlohmann/json.hpp>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "firmware-sim/device.h"
#include "firmware-sim/publisher.h"
#include "firmware-sim/verify.h"
#include "tests/firmware-sim/capture.h"
#include "tests/support/support.h"

using namespace std::chrono_literals;
using namespace gw::firmware_sim;
using namespace gw::firmware_sim::test;
using gw::test::ChildProcess;
using gw::test::Mosquitto;
using gw::test::TempDir;

namespace {

std::vector<Numbering> numbers(const SequenceOptions& options, std::size_t n, std::uint64_t seed = 1,
                               std::uint32_t device = 0) {
  SimDevice d(options, seed, device);
  std::vector<Numbering> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(d.next());
  return out;
}

// A mosquitto, a subscriber and the options of a publish run against it: `devices` devices,
// unpaced, `count` readings each, with a manifest, a record and an injected file.
struct Fleet {
  Fleet(std::uint32_t devices, std::uint64_t count) {
    opt.broker = broker.url();
    opt.devices = devices;
    opt.count = count;
    opt.rate = 0;
    opt.manifest = dir.path() / "manifest.txt";
    opt.record = dir.path() / "record.jsonl";
    opt.injected = dir.path() / "injected.json";
  }

  // Publishes (no copy may fail, every one of the `readings` acknowledged) and takes every copy
  // the subscriber must then have: the readings and the injected duplicates.
  std::pair<PublishResult, std::vector<Sent>> run(std::size_t readings) {
    std::atomic<bool> stop{false};
    auto r = publish(opt, stop);
    REQUIRE(r.has_value());
    CHECK(r->failed == 0);
    CHECK(r->acked == readings);
    const std::size_t messages = readings + r->injected.duplicates() + r->injected.conflicts;
    auto got = capture.take(messages);
    REQUIRE(got.size() == messages);
    return {*r, std::move(got)};
  }

  Mosquitto broker;
  TempDir dir;
  Capture capture{broker.url()};
  PublishOptions opt;
};

// What verify makes of the manifest against these messages, taken as the gateway's output: one
// record per message.
VerifyResult verify_against(const std::filesystem::path& manifest, const std::vector<Sent>& records) {
  Verifier v;
  std::istringstream m(slurp(manifest));
  REQUIRE(read_manifest(m, v).has_value());
  for (const auto& s : records) v.receive(s.event.device.value, s.event.boot_id, s.event.seq.value);
  return v.result();
}

// The messages with distinct (device, boot id, seq, values): what the gateway's output holds (a
// reading numbered like an earlier one has other values).
std::vector<Sent> distinct_readings(const std::vector<Sent>& messages) {
  std::vector<Sent> out;
  std::set<std::tuple<std::string, std::uint32_t, std::uint64_t, std::vector<double>>> seen;
  for (const auto& s : messages) {
    const auto& e = s.event;
    std::vector<double> values;
    for (const auto& m : e.metrics) values.push_back(m.value);
    if (seen.emplace(e.device.value, e.boot_id, e.seq.value, std::move(values)).second) out.push_back(s);
  }
  return out;
}

// The messages of each device, in the order they arrived.
std::map<std::string, std::vector<Sent>> by_device(const std::vector<Sent>& messages) {
  std::map<std::string, std::vector<Sent>> out;
  for (const auto& s : messages) out[s.event.device.value].push_back(s);
  return out;
}

}  // namespace

TEST_CASE("sim device: the counter starts at seq-start and an 8-bit counter wraps 255 to 0") {
  for (std::uint64_t start : {0u, 1u}) {
    SequenceOptions o;
    o.seq_start = start;
    o.seq_bits = 8;
    const auto n = numbers(o, 600);
    CHECK(n[0].seq == start);
    for (std::size_t i = 1; i < n.size(); ++i) {
      CHECK(n[i].seq == (n[i - 1].seq + 1) % 256);
      CHECK(n[i].lap == n[i - 1].lap + (n[i].seq == 0 ? 1 : 0));
      CHECK_FALSE(n[i].rebooted);
      CHECK(n[i].boot_id == 0);
    }
    const std::size_t first_zero = 256 - start;  // 255 is followed by 0, not by seq-start
    CHECK(n[first_zero - 1].seq == 255);
    CHECK(n[first_zero].seq == 0);
    CHECK(n[first_zero].lap == 1);
    CHECK(n.back().lap == 2);
  }
  SequenceOptions wide;
  wide.seq_bits = 16;
  CHECK(numbers(wide, 70000)[65535].seq == 0);
}

TEST_CASE("sim device: reboots restart the counter only after reboot-min-events, with a new boot id or none") {
  SequenceOptions o;
  o.reboot_rate = 1;  // reboot as soon as allowed
  o.reboot_min_events = 5;
  o.seq_start = 0;
  const auto without = numbers(o, 20);
  for (std::size_t i = 0; i < without.size(); ++i) {
    CHECK(without[i].seq == i % 5);
    CHECK(without[i].boot == i / 5);
    CHECK(without[i].rebooted == (i % 5 == 0 && i > 0));
    CHECK(without[i].boot_id == 0);
  }

  o.boot_id = true;
  const auto with = numbers(o, 20);
  for (std::size_t i = 0; i < with.size(); ++i) {
    CHECK(with[i].seq == i % 5);
    CHECK(with[i].boot_id != 0);
    if (i % 5 != 0) CHECK(with[i].boot_id == with[i - 1].boot_id);
    if (i % 5 == 0 && i > 0) CHECK(with[i].boot_id != with[i - 1].boot_id);
  }

  // Repeatable by seed, distinct per device and per seed.
  auto ids = [&](std::uint64_t seed, std::uint32_t device) {
    std::vector<std::uint32_t> out;
    for (const auto& n : numbers(o, 20, seed, device)) out.push_back(n.boot_id);
    return out;
  };
  CHECK(ids(7, 3) == ids(7, 3));
  CHECK(ids(7, 3) != ids(7, 4));
  CHECK(ids(7, 3) != ids(8, 3));

  SequenceOptions rare;
  rare.reboot_rate = 0.05;
  rare.reboot_min_events = 40;
  std::size_t reboots = 0, since = 0;
  for (const auto& n : numbers(rare, 5000)) {
    if (n.rebooted) {
      CHECK(since >= 40);
      ++reboots;
      since = 0;
    }
    ++since;
  }
  CHECK(reboots > 10);
}

TEST_CASE("sim device: a share of the readings is retransmitted 0.1 ms to retransmit-delay later") {
  SequenceOptions o;
  o.retransmit_rate = 0.3;
  o.retransmit_delay = std::chrono::milliseconds(50);
  std::size_t retransmitted = 0;
  std::chrono::microseconds shortest{50000}, longest{0};
  const auto n = numbers(o, 2000);
  for (const auto& r : n) {
    if (r.retransmit_after.count() == 0) continue;
    ++retransmitted;
    shortest = std::min(shortest, r.retransmit_after);
    longest = std::max(longest, r.retransmit_after);
  }
  CHECK(retransmitted > 500);
  CHECK(retransmitted < 700);
  CHECK(shortest >= std::chrono::microseconds(100));
  CHECK(shortest < std::chrono::milliseconds(5));
  CHECK(longest <= std::chrono::milliseconds(50));
  CHECK(longest > std::chrono::milliseconds(45));
  // The draws do not disturb the numbering.
  for (std::size_t i = 0; i < n.size(); ++i) CHECK(n[i].seq == i + 1);
}

TEST_CASE("sim device: options out of range are refused") {
  CHECK(valid(SequenceOptions{}));
  SequenceOptions o;
  o.seq_start = 2;
  CHECK_FALSE(valid(o));
  o = {};
  o.seq_bits = 12;
  CHECK_FALSE(valid(o));
  o = {};
  o.reboot_rate = 1.5;
  CHECK_FALSE(valid(o));
  o = {};
  o.retransmit_rate = 0.5;
  o.retransmit_delay = std::chrono::milliseconds(0);
  CHECK_FALSE(valid(o));
}

TEST_CASE("publish --seq-start 0: every device starts at 0, written as 0 in JSON and FlatBuffers") {
  Fleet f(6, 5);
  f.opt.sequence.seq_start = 0;
  f.opt.format = PayloadFormat::mixed;
  f.opt.seed = 2;
  const auto [r, got] = f.run(30);
  std::size_t json_zero = 0, fb_zero = 0;
  for (const auto& [device, msgs] : by_device(got)) {
    for (std::size_t i = 0; i < msgs.size(); ++i) CHECK(msgs[i].event.seq.value == i);
    CHECK(msgs[0].has_seq);
    if (msgs[0].json) {
      CHECK(msgs[0].payload.find("\"seq\":0,") != std::string::npos);
      ++json_zero;
    } else {
      ++fb_zero;
    }
  }
  CHECK(json_zero > 0);
  CHECK(fb_zero > 0);
  const auto manifest = read_manifest_lines(f.opt.manifest);
  REQUIRE(manifest.size() == 30);
  CHECK(std::count(manifest.begin(), manifest.end(), ManifestLine{"dev-1", 0, 0}) == 1);
  CHECK(verify_against(f.opt.manifest, got).ok());
}

TEST_CASE("publish --seq-bits 8: the counter wraps 255 to 0, the manifest repeats identities and verify balances") {
  Fleet f(2, 300);
  f.opt.sequence.seq_bits = 8;
  f.opt.format = PayloadFormat::json;
  const auto [r, got] = f.run(600);
  CHECK(r.injected.wraps == 2);  // one per device
  CHECK(r.injected.reboots == 0);
  CHECK(r.injected.duplicates() == 0);
  for (const auto& [device, msgs] : by_device(got)) {
    REQUIRE(msgs.size() == 300);
    CHECK(msgs[254].event.seq.value == 255);
    CHECK(msgs[255].event.seq.value == 0);
    CHECK(msgs[299].event.seq.value == 44);
  }
  const auto manifest = read_manifest_lines(f.opt.manifest);
  CHECK(manifest.size() == 600);
  CHECK(std::count(manifest.begin(), manifest.end(), ManifestLine{"dev-2", 7, 0}) == 2);  // before and after the wrap
  const auto v = verify_against(f.opt.manifest, got);
  CHECK(v.expected == 600);
  CHECK(v.ok());
  // One of the two dev-2 seq 7 lost: the multiset comparison sees it.
  std::vector<Sent> less = got;
  less.erase(std::find_if(less.begin(), less.end(), [](const Sent& s) {
    return s.event.device.value == "dev-2" && s.event.seq.value == 7;
  }));
  CHECK(verify_against(f.opt.manifest, less).lost == 1);
  CHECK(slurp(f.opt.injected) ==
        R"({"duplicates":0,"duplicate_copies":0,"retransmits":0,"multi_gateway_copies":0,"conflicts":0,"reboots":0,"wraps":2})"
        "\n");
}

TEST_CASE("publish --reboot --boot-id: a reboot restarts the counter under a new boot id, in the manifest too") {
  Fleet f(3, 60);
  f.opt.seed = 5;
  f.opt.sequence.boot_id = true;
  f.opt.sequence.reboot_rate = 0.2;
  f.opt.sequence.reboot_min_events = 8;
  f.opt.reorder_window = 4;  // the reorder window is sent before the reboot
  const auto [r, got] = f.run(180);
  std::uint64_t boot_changes = 0;
  for (const auto& [device, msgs] : by_device(got)) {
    std::set<std::uint32_t> finished;  // boot ids seen before the current one
    for (std::size_t i = 0; i < msgs.size(); ++i) {
      CHECK(msgs[i].event.boot_id != 0);
      if (i > 0 && msgs[i].event.boot_id != msgs[i - 1].event.boot_id) {
        ++boot_changes;
        CHECK(finished.insert(msgs[i - 1].event.boot_id).second);
        CHECK(finished.count(msgs[i].event.boot_id) == 0);  // nothing of an old boot after the new one began
      }
    }
    // Per boot, the seqs are 1..n (in some order: reordered within windows of 4).
    std::map<std::uint32_t, std::set<std::uint64_t>> seqs;
    for (const auto& s : msgs) CHECK(seqs[s.event.boot_id].insert(s.event.seq.value).second);
    for (const auto& [boot, set] : seqs) {
      CHECK(*set.begin() == 1);
      CHECK(*set.rbegin() == set.size());
    }
  }
  CHECK(boot_changes > 0);
  CHECK(r.injected.reboots == boot_changes);
  std::multiset<ManifestLine> sent, listed;
  for (const auto& s : got) sent.insert({s.event.device.value, s.event.seq.value, s.event.boot_id});
  for (const auto& l : read_manifest_lines(f.opt.manifest)) listed.insert(l);
  CHECK(listed == sent);

  // The record: one line per reading, with its boot id.
  std::istringstream record(slurp(f.opt.record));
  std::multiset<ManifestLine> recorded;
  for (std::string line; std::getline(record, line);) {
    const auto j = nlohmann::json::parse(line);
    recorded.insert({j.at("device").get<std::string>(), j.at("seq").get<std::uint64_t>(),
                     j.at("boot_id").get<std::uint32_t>()});
  }
  CHECK(recorded == sent);

  // The same seed gives the same run.
  const std::string first = slurp(f.opt.manifest);
  TempDir again;
  f.opt.manifest = again.path() / "manifest.txt";
  f.run(180);
  CHECK(slurp(f.opt.manifest) == first);
}

TEST_CASE("publish --reboot --no-boot-id: boot id 0, the counter goes back, identities repeat and verify balances") {
  Fleet f(2, 100);
  f.opt.seed = 9;
  f.opt.sequence.seq_start = 0;
  f.opt.sequence.reboot_rate = 0.1;
  f.opt.sequence.reboot_min_events = 10;
  f.opt.format = PayloadFormat::mixed;
  const auto [r, got] = f.run(200);
  std::uint64_t went_back = 0;
  for (const auto& [device, msgs] : by_device(got)) {
    for (std::size_t i = 1; i < msgs.size(); ++i) {
      CHECK(msgs[i].event.boot_id == 0);
      if (msgs[i].event.seq.value != msgs[i - 1].event.seq.value + 1) {
        CHECK(msgs[i].event.seq.value == 0);
        CHECK(msgs[i - 1].event.seq.value >= 9);  // at least reboot-min-events readings in the boot
        CHECK(msgs[i].event.time.ms > msgs[i - 1].event.time.ms);  // a new boot starts later
        ++went_back;
      }
    }
  }
  CHECK(went_back > 0);
  CHECK(r.injected.reboots == went_back);
  std::map<ManifestLine, int> repeats;
  for (const auto& l : read_manifest_lines(f.opt.manifest)) ++repeats[l];
  CHECK(std::any_of(repeats.begin(), repeats.end(), [](const auto& kv) { return kv.second > 1; }));
  const auto v = verify_against(f.opt.manifest, got);
  CHECK(v.expected == 200);
  CHECK(v.ok());
}

TEST_CASE("publish --retransmit: a copy with the same seq, boot id and values and a later time, listed once") {
  Fleet f(2, 60);
  f.opt.seed = 4;
  f.opt.rate = 400;  // 2.5 ms apart per device: copies due within 40 ms go out between later readings
  f.opt.format = PayloadFormat::mixed;
  f.opt.sequence.boot_id = true;
  f.opt.sequence.retransmit_rate = 0.3;
  f.opt.sequence.retransmit_delay = std::chrono::milliseconds(40);
  const auto [r, got] = f.run(120);
  CHECK(r.injected.retransmits > 20);
  CHECK(r.injected.duplicates() == r.injected.retransmits);

  std::uint64_t copies = 0, interleaved = 0;
  for (const auto& [device, msgs] : by_device(got)) {
    std::map<std::uint64_t, std::size_t> first;  // seq -> where it first arrived
    for (std::size_t i = 0; i < msgs.size(); ++i) {
      auto [it, fresh] = first.try_emplace(msgs[i].event.seq.value, i);
      if (fresh) continue;
      const Sent& original = msgs[it->second];
      const Sent& copy = msgs[i];
      ++copies;
      CHECK(copy.event.boot_id == original.event.boot_id);
      CHECK(copy.event.metrics == original.event.metrics);
      CHECK(copy.event.time.ms > original.event.time.ms);
      CHECK(copy.event.time.ms <= original.event.time.ms + 40);
      if (i > it->second + 1) ++interleaved;  // readings of the device went out in between
    }
  }
  CHECK(copies == r.injected.retransmits);
  CHECK(interleaved > 0);
  CHECK(read_manifest_lines(f.opt.manifest).size() == 120);
  // The record has each reading once, with its original time.
  std::istringstream record(slurp(f.opt.record));
  std::map<std::pair<std::string, std::uint64_t>, std::int64_t> recorded;
  for (std::string line; std::getline(record, line);) {
    const auto j = nlohmann::json::parse(line);
    CHECK(recorded.emplace(std::pair{j.at("device").get<std::string>(), j.at("seq").get<std::uint64_t>()},
                           j.at("time_ms").get<std::int64_t>())
              .second);
  }
  CHECK(recorded.size() == 120);
  for (const auto& s : got) CHECK(recorded.at({s.event.device.value, s.event.seq.value}) <= s.event.time.ms);
  // The gateway's output would hold each reading once.
  std::vector<Sent> once;
  std::set<std::pair<std::string, std::uint64_t>> seen;
  for (const auto& s : got) {
    if (seen.insert({s.event.device.value, s.event.seq.value}).second) once.push_back(s);
  }
  CHECK(verify_against(f.opt.manifest, once).ok());
  CHECK(verify_against(f.opt.manifest, got).duplicates == r.injected.retransmits);
}

TEST_CASE("publish --conflicts: the same identity right after a reading, with other values, counted") {
  Fleet f(3, 50);
  f.opt.seed = 6;
  f.opt.format = PayloadFormat::mixed;
  f.opt.conflict_rate = 0.2;
  const auto [r, got] = f.run(150);
  CHECK(r.injected.conflicts > 10);
  CHECK(r.injected.duplicates() == 0);
  std::uint64_t conflicts = 0;
  for (const auto& [device, msgs] : by_device(got)) {
    for (std::size_t i = 1; i < msgs.size(); ++i) {
      if (msgs[i].event.seq != msgs[i - 1].event.seq) continue;
      ++conflicts;
      CHECK(msgs[i].event.boot_id == msgs[i - 1].event.boot_id);
      CHECK(msgs[i].event.time == msgs[i - 1].event.time);
      CHECK(msgs[i].event.metrics != msgs[i - 1].event.metrics);
      CHECK(msgs[i].event.metrics.front().value == msgs[i - 1].event.metrics.front().value + 1);
    }
  }
  CHECK(conflicts == r.injected.conflicts);
  CHECK(read_manifest_lines(f.opt.manifest).size() == 150);  // readings, not the conflicting copies
}

TEST_CASE("publish --retransmit --reboot: a reboot loses the pending retransmissions") {
  Fleet f(1, 300);
  f.opt.seed = 6;
  f.opt.rate = 1000;  // 1 ms apart: a 100 ms delay spans about 100 readings
  f.opt.sequence.boot_id = true;
  f.opt.sequence.reboot_rate = 0.05;
  f.opt.sequence.reboot_min_events = 20;
  f.opt.sequence.retransmit_rate = 0.5;
  f.opt.sequence.retransmit_delay = std::chrono::milliseconds(100);
  const auto [r, got] = f.run(300);
  CHECK(r.injected.reboots > 2);
  // Nothing of a boot arrives once the next boot began (without the loss, over 100 copies pending
  // at the reboots would).
  std::set<std::uint32_t> finished;
  for (std::size_t i = 1; i < got.size(); ++i) {
    if (got[i].event.boot_id == got[i - 1].event.boot_id) continue;
    CHECK(finished.insert(got[i - 1].event.boot_id).second);
    CHECK(finished.count(got[i].event.boot_id) == 0);
  }
  CHECK(finished.size() == r.injected.reboots);
  CHECK(r.injected.retransmits > 0);
}

TEST_CASE("publish --multi-gateway 3: each reading arrives through 3 clients, same seq, values and time") {
  // A broker that logs every PUBLISH with the client that sent it.
  TempDir dir;
  const int port = gw::test::free_port();
  const auto log = dir.path() / "mosquitto.log";
  {
    std::ofstream conf(dir.path() / "mosquitto.conf");
    conf << "listener " << port << " 127.0.0.1\nallow_anonymous true\nlog_type all\nlog_dest file " << log.string()
         << "\n";
    // As root, mosquitto would drop to user "mosquitto", which cannot write the temp dir.
    if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr) conf << "user " << pw->pw_name << "\n";
  }
  ChildProcess broker({"/usr/sbin/mosquitto", "-c", (dir.path() / "mosquitto.conf").string()});
  REQUIRE(gw::test::wait_for_port(port, 10s));
  const std::string url = "tcp://127.0.0.1:" + std::to_string(port);
  Capture capture(url);

  PublishOptions opt;
  opt.broker = url;
  opt.devices = 2;
  opt.count = 20;
  opt.rate = 0;
  opt.gateways = 3;
  opt.format = PayloadFormat::mixed;
  opt.sequence.boot_id = true;
  opt.manifest = dir.path() / "manifest.txt";
  std::atomic<bool> stop{false};
  const auto r = publish(opt, stop);
  REQUIRE(r.has_value());
  CHECK(r->acked == 40);
  CHECK(r->failed == 0);
  CHECK(r->published == 120);
  CHECK(r->injected.multi_gateway_copies == 80);
  CHECK(r->injected.duplicates() == 80);
  const auto got = capture.take(120);
  REQUIRE(got.size() == 120);

  std::map<std::pair<std::string, std::uint64_t>, std::vector<std::string>> copies;
  for (const auto& s : got) copies[{s.event.device.value, s.event.seq.value}].push_back(s.payload);
  CHECK(copies.size() == 40);
  for (const auto& [key, payloads] : copies) {
    REQUIRE(payloads.size() == 3);
    CHECK(payloads[1] == payloads[0]);  // same bytes: seq, boot id, values, time_ms
    CHECK(payloads[2] == payloads[0]);
  }
  // 40 publishes from each client.
  std::map<std::string, int> from;
  std::istringstream lines(slurp(log));
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find("Received PUBLISH from ");
    if (at == std::string::npos) continue;
    const auto id = line.substr(at + 22, line.find(' ', at + 22) - (at + 22));
    if (id != "test-capture") ++from[id];
  }
  const std::map<std::string, int> each_40{{"firmware-sim-gw1", 40}, {"firmware-sim-gw2", 40}, {"firmware-sim-gw3", 40}};
  CHECK(from == each_40);

  CHECK(read_manifest_lines(opt.manifest).size() == 40);
  CHECK(verify_against(opt.manifest, distinct_readings(got)).ok());
  CHECK(verify_against(opt.manifest, got).duplicates == 80);
}

TEST_CASE("the firmware-sim program with every device behaviour - injected line and file agree, verify balances") {
  Mosquitto broker;
  TempDir dir;
  Capture capture(broker.url());
  const auto manifest = dir.path() / "manifest.txt";
  const auto injected = dir.path() / "injected.json";
  const auto out = dir.path() / "out.txt";
  {
    ChildProcess p({GW_FIRMWARE_SIM_BIN, "--broker", broker.url(), "--devices", "3", "--count", "300", "--rate", "0",
                    "--seed", "8", "--format", "mixed", "--seq-start", "0", "--seq-bits", "8", "--multi-gateway", "2",
                    "--duplicates", "0.1", "--retransmit", "0.2", "--retransmit-delay-ms", "20", "--reboot", "0.02",
                    "--reboot-min-events", "100", "--boot-id", "--manifest", manifest.string(), "--injected",
                    injected.string()},
                   out);
    REQUIRE(p.wait(60s) == 0);
  }
  const auto j = nlohmann::json::parse(slurp(injected));
  const auto n = [&](const char* key) { return j.at(key).get<std::uint64_t>(); };
  CHECK(n("multi_gateway_copies") == 900);
  CHECK(n("duplicate_copies") > 0);
  CHECK(n("retransmits") > 0);
  CHECK(n("reboots") > 0);
  CHECK(n("wraps") > 0);
  CHECK(n("duplicates") == n("duplicate_copies") + n("retransmits") + n("multi_gateway_copies"));
  std::ostringstream line;
  line << "injected: duplicates=" << n("duplicates") << " retransmits=" << n("retransmits")
       << " multi_gateway_copies=" << n("multi_gateway_copies") << " conflicts=0 reboots=" << n("reboots")
       << " wraps=" << n("wraps") << "\npublished=" << 900 + n("duplicates") << " acked=900 failed=0 ";
  CHECK(slurp(out).starts_with(line.str()));

  // The gateway's output would be each reading once: verify finds nothing lost, nothing twice.
  const auto got = capture.take(900 + n("duplicates"));
  REQUIRE(got.size() == 900 + n("duplicates"));
  const auto records = dir.path() / "records.jsonl";
  {
    std::ofstream rec(records);
    for (const auto& s : distinct_readings(got)) {
      rec << nlohmann::json{{"device", s.event.device.value}, {"device_seq", s.event.seq.value},
                            {"boot_id", s.event.boot_id}}
                 .dump()
          << '\n';
    }
  }
  ChildProcess v({GW_FIRMWARE_SIM_BIN, "verify", "--manifest", manifest.string(), "--records", records.string()},
                 dir.path() / "verify.txt");
  CHECK(v.wait(30s) == 0);
  CHECK(slurp(dir.path() / "verify.txt") == "verify: expected=900 received=900 lost=0 duplicates=0 unexpected=0 resent=0\n");
}
