// Sparkplug B (ingest/sparkplug.h) with payloads written from the specification: BIRTH names and
// aliases, DATA by alias, unknown aliases refused with a reason, sessions read back after a restart,
// NDEATH and DDEATH counted, data types, and the node's 8-bit seq through admit() and a real ring.
#include "tests/support/catch.h"

#include <string>

#include "ingest/admit.h"
#include "ingest/mapping.h"
#include "ingest/sparkplug.h"
#include "tests/ingest/admit_ring.h"
#include "tests/support/support.h"

using namespace gw::ingest;

namespace {

constexpr std::int64_t kNow = 1'705'314'600'000;
constexpr std::uint32_t kInt8 = 1, kInt64 = 4, kUInt32 = 7, kFloat = 9, kDouble = 10, kBoolean = 11, kString = 12;

std::span<const std::uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

std::string nbirth(std::uint64_t bdseq) {
  return encode_sparkplug({kNow, 0,
                           {{"bdSeq", std::nullopt, kInt64, std::int64_t(bdseq)},
                            {"Node Control/Rebirth", 0, kBoolean, false},
                            {"cpu_temp", 1, kDouble, 48.5}}});
}

std::string dbirth(std::uint64_t seq) {
  return encode_sparkplug({kNow, seq,
                           {{"Temperature", 1, kFloat, 21.5},
                            {"Pressure", 2, kDouble, 1013.25},
                            {"Offset", 3, kInt8, std::int64_t(-3)},
                            {"Running", 4, kBoolean, true},
                            {"Serial", 5, kString, std::string("A-17")}}});
}

std::string ddata(std::uint64_t seq, double temperature, std::uint64_t alias = 1) {
  return encode_sparkplug({kNow + 1000 * static_cast<std::int64_t>(seq), seq, {{"", alias, kFloat, temperature}}});
}

struct Fixture {
  explicit Fixture(std::string dir = {}) {
    auto m = Mapper::compile({*preset_mapping("sparkplug")}, dir);
    REQUIRE(m.has_value());
    mapper = *m;
  }
  MapResult send(const std::string& topic, const std::string& payload) {
    return mapper->decode(*mapper->match(topic), topic, {}, bytes(payload), kNow);
  }
  std::shared_ptr<const Mapper> mapper;
};

const std::string kNode = "spBv1.0/plant/NBIRTH/edge-1";
const std::string kDevBirth = "spBv1.0/plant/DBIRTH/edge-1/boiler";
const std::string kDevData = "spBv1.0/plant/DDATA/edge-1/boiler";

}  // namespace

TEST_CASE("sparkplug BIRTH names and aliases and DDATA by alias") {
  Fixture f;
  auto birth = f.send(kNode, nbirth(7));
  REQUIRE(birth.has_value());
  REQUIRE(birth->has_value());
  CHECK((*birth)->event.device.value == "plant/edge-1");
  CHECK((*birth)->event.boot_id == 8);  // bdSeq + 1
  REQUIRE((*birth)->event.metrics.size() == 1);  // bdSeq and Node Control are protocol, not readings
  CHECK((*birth)->event.metrics[0].name == "cpu_temp");

  auto dev = f.send(kDevBirth, dbirth(1));
  REQUIRE((dev && *dev));
  const Event& e = (*dev)->event;
  CHECK(e.device.value == "plant/edge-1/boiler");
  CHECK(e.seq.value == 1);
  CHECK((*dev)->seq_bits == 8);
  CHECK((*dev)->dedup_source == "plant/edge-1");
  CHECK(e.metrics == std::vector<Metric>{{"Temperature", 21.5}, {"Pressure", 1013.25}, {"Offset", -3}, {"Running", 1}});

  auto data = f.send(kDevData, ddata(2, 22.25));
  REQUIRE((data && *data));
  CHECK((*data)->event.metrics == std::vector<Metric>{{"Temperature", 22.25}});
  CHECK((*data)->event.time.ms == kNow + 2000);
  CHECK((*data)->event.boot_id == 8);
}

TEST_CASE("sparkplug DATA whose alias device or node session is unknown is refused with the reason") {
  Fixture f;
  auto early = f.send(kDevData, ddata(2, 1));
  REQUIRE_FALSE(early.has_value());
  CHECK(early.error().reason == errc::mapping);
  CHECK(early.error().path == "node plant/edge-1: no NBIRTH in this session (its aliases are unknown)");
  REQUIRE(f.send(kNode, nbirth(1)).has_value());
  auto no_device = f.send(kDevData, ddata(1, 1));
  REQUIRE_FALSE(no_device.has_value());
  CHECK(no_device.error().path == "device boiler: no DBIRTH in this node session");
  REQUIRE(f.send(kDevBirth, dbirth(1)).has_value());
  auto alias = f.send(kDevData, ddata(2, 1, 99));
  REQUIRE_FALSE(alias.has_value());
  CHECK(alias.error().path == "metrics.0.alias 99: unknown in this node session");
  auto junk = f.send(kDevData, "\xff\xff\xff");
  REQUIRE_FALSE(junk.has_value());
  CHECK(junk.error().reason == errc::malformed);
  auto no_bdseq = f.send(kNode, encode_sparkplug({kNow, 0, {{"x", 1, kDouble, 1.0}}}));
  REQUIRE_FALSE(no_bdseq.has_value());
  CHECK(no_bdseq.error().path == "metrics.bdSeq: missing from NBIRTH");
}

TEST_CASE("sparkplug sessions are read back after a restart and end with their NDEATH") {
  gw::test::TempDir dir;
  {
    Fixture f(dir.path().string());
    REQUIRE(f.send(kNode, nbirth(3)).has_value());
    REQUIRE(f.send(kDevBirth, dbirth(1)).has_value());
  }
  Fixture restarted(dir.path().string());
  auto data = restarted.send(kDevData, ddata(2, 23.0));
  REQUIRE((data && *data));
  CHECK((*data)->event.metrics == std::vector<Metric>{{"Temperature", 23.0}});
  CHECK((*data)->event.boot_id == 4);

  // A late will of an older session leaves this one alone; the current one's ends it.
  auto stale = restarted.send("spBv1.0/plant/NDEATH/edge-1", encode_sparkplug({{}, {}, {{"bdSeq", {}, kInt64, std::int64_t(2)}}}));
  REQUIRE((stale && !*stale));
  REQUIRE(restarted.send(kDevData, ddata(3, 1)).has_value());
  REQUIRE(restarted.send("spBv1.0/plant/DDEATH/edge-1/boiler", encode_sparkplug({kNow, 4, {}})).has_value());
  CHECK_FALSE(restarted.send(kDevData, ddata(5, 1)).has_value());  // offline until its next DBIRTH
  REQUIRE(restarted.send("spBv1.0/plant/NDEATH/edge-1", encode_sparkplug({{}, {}, {{"bdSeq", {}, kInt64, std::int64_t(3)}}})).has_value());
  CHECK(restarted.mapper->sparkplug_deaths() ==
        std::map<std::string, std::uint64_t>{{"plant/edge-1", 2}, {"plant/edge-1/boiler", 1}});
  Fixture again(dir.path().string());
  CHECK_FALSE(again.send(kDevData, ddata(6, 1)).has_value());  // the session ended: nothing read back
}

TEST_CASE("sparkplug data types commands and host state") {
  Fixture f;
  auto birth = f.send(kNode, encode_sparkplug({kNow, 0,
                                               {{"bdSeq", {}, kInt64, std::int64_t(0)},
                                                {"neg64", 1, kInt64, std::int64_t(-5)},
                                                {"u32", 2, kUInt32, std::int64_t(4'000'000'000)},
                                                {"label", 3, kString, std::string("x")}}}));
  REQUIRE((birth && *birth));
  CHECK((*birth)->event.metrics == std::vector<Metric>{{"neg64", -5}, {"u32", 4e9}});
  CHECK((*birth)->event.boot_id == 1);  // bdSeq 0
  auto cmd = f.send("spBv1.0/plant/NCMD/edge-1", encode_sparkplug({kNow, {}, {{"Node Control/Rebirth", {}, kBoolean, true}}}));
  REQUIRE((cmd && !*cmd));
  auto state = f.send("spBv1.0/STATE/scada-1", R"({"online":true,"timestamp":1705314600000})");
  REQUIRE((state && !*state));
  auto twice = f.send("spBv1.0/plant/NDATA/edge-1", encode_sparkplug({kNow, 1, {{"", 1, kInt64, std::int64_t(1)}, {"", 1, kInt64, std::int64_t(2)}}}));
  REQUIRE_FALSE(twice.has_value());
  CHECK(twice.error().path == "neg64: metric named twice");
}

TEST_CASE("sparkplug copies are dropped by the node's 8-bit seq across its devices and wraps") {
  gw::test::AdmitRing ring(*preset_mapping("sparkplug"), kNow);
  auto store = [&](const std::string& topic, const std::string& payload) { return ring.store(topic, payload); };
  CHECK(gw::buffer::stored(store(kNode, nbirth(9))));
  CHECK(gw::buffer::stored(store(kDevBirth, dbirth(1))));
  CHECK(gw::buffer::stored(store("spBv1.0/plant/DBIRTH/edge-1/pump", dbirth(2))));
  std::uint64_t seq = 3;
  for (int i = 0; i < 300; ++i, seq = (seq + 1) % 256) {
    const std::string& device = i % 2 == 0 ? kDevData : std::string("spBv1.0/plant/DDATA/edge-1/pump");
    CHECK(gw::buffer::stored(store(device, ddata(seq, i))));
  }
  // The last message again (the pump's): a copy; the node's counter went 3..255, 0..46 with no gap.
  CHECK(store("spBv1.0/plant/DDATA/edge-1/pump", ddata((seq + 255) % 256, 299)) == gw::buffer::kDroppedDuplicate);
  const auto stats = ring.ring().stats();
  CHECK(stats.duplicates_total == 1);
  CHECK(stats.seq_gaps_total == 0);
  CHECK(stats.seq_wraps_total == 1);
}
