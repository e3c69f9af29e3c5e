// The presets against payloads written from each source's public documentation: several device
// kinds, nested and missing fields, and each source's odd cases (Tasmota's local time, Shelly's
// notifications without readings, ChirpStack's counter 0 left out and its uplinks heard by several
// radio gateways, The Things Stack's session keys). The last case runs ChirpStack copies through
// admit() and a real ring: dedup drops them by fCnt.
#include "tests/support/catch.h"

#include <string>

#include "ingest/admit.h"
#include "ingest/mapping.h"
#include "tests/ingest/admit_ring.h"

using namespace gw::ingest;

namespace {

std::span<const std::uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

constexpr std::int64_t kNow = 1'705'314'600'000;  // 2024-01-15T10:30:00Z

MapResult map_preset(std::string_view preset, const std::string& topic, const std::string& payload,
                     std::optional<std::string> zone = std::nullopt) {
  auto m = preset_mapping(preset);
  REQUIRE(m.has_value());
  if (zone) m->time_zone = *zone;
  auto mapper = Mapper::compile({*m});
  REQUIRE(mapper.has_value());
  const auto* source = (*mapper)->match(topic);
  REQUIRE(source != nullptr);
  return (*mapper)->decode(*source, topic, {}, bytes(payload), kNow);
}

Event event_of(const MapResult& r) {
  REQUIRE(r.has_value());
  REQUIRE(r->has_value());
  return (*r)->event;
}

std::optional<double> metric(const Event& e, const std::string& name) {
  for (const auto& m : e.metrics) {
    if (m.name == name) return m.value;
  }
  return std::nullopt;
}

const char* kChirpStackUp = R"({
  "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
  "time": "2024-01-15T10:29:59.123456+00:00",
  "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "ChirpStack",
                 "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97", "applicationName": "farm",
                 "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad", "deviceProfileName": "LHT65",
                 "deviceName": "barn-1", "devEui": "0101010101010101", "tags": {}},
  "devAddr": "00189440", "adr": true, "dr": 1, "fCnt": 10, "fPort": 2, "confirmed": false,
  "data": "y5QHwAAA",
  "object": {"TempC_SHT": 21.5, "Hum_SHT": 48.2, "BatV": 3.05, "Ext_sensor": "Temperature Sensor"},
  "rxInfo": [{"gatewayId": "0016c001f153a14c", "uplinkId": 4217106255, "rssi": -36, "snr": 10.5,
              "location": {}, "context": "EFwMtA==", "metadata": {"region_name": "eu868"}}],
  "txInfo": {"frequency": 868100000, "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}}
})";

}  // namespace

TEST_CASE("zigbee2mqtt readings of several device kinds") {
  // A temperature/humidity sensor (no time: stamped on arrival).
  auto th = map_preset("zigbee2mqtt", "zigbee2mqtt/living_room_th",
                       R"({"battery":97,"humidity":48.31,"linkquality":134,"temperature":21.42,"voltage":2995})");
  REQUIRE(th.has_value());
  const Event e = event_of(th);
  CHECK(e.device.value == "living_room_th");
  CHECK((*th)->time_from_arrival);
  CHECK(e.time.ms == kNow);
  CHECK_FALSE((*th)->counter);
  CHECK(e.metrics.size() == 5);
  // A motion sensor with last_seen as epoch ms: booleans 0/1, texts skipped.
  auto motion = event_of(map_preset("zigbee2mqtt", "zigbee2mqtt/hall motion",
                                    R"({"occupancy":true,"tamper":false,"battery_low":false,"illuminance":11,
                                        "linkquality":76,"last_seen":1705314599000})"));
  CHECK(motion.time.ms == 1'705'314'599'000);
  CHECK(motion.seq.value == 1'705'314'599'000);
  CHECK(metric(motion, "occupancy") == 1);
  CHECK(metric(motion, "tamper") == 0);
  CHECK_FALSE(metric(motion, "last_seen"));
  // A plug with nested update state and last_seen as ISO 8601.
  auto plug = event_of(map_preset("zigbee2mqtt", "zigbee2mqtt/plug_1",
                                  R"({"state":"ON","power":12.5,"energy":3.21,"linkquality":200,
                                      "update":{"state":"idle","installed_version":192,"latest_version":192},
                                      "last_seen":"2024-01-15T10:29:58.500Z"})"));
  CHECK(plug.time.ms == kNow - 1500);
  CHECK(plug.metrics.size() == 3);  // power, energy, linkquality: not the state text nor update.*
  CHECK(metric(plug, "power") == 12.5);
  // A payload that is not an object of readings (an availability text).
  auto text = map_preset("zigbee2mqtt", "zigbee2mqtt/plug_1", "online");
  REQUIRE_FALSE(text.has_value());
  CHECK(text.error().reason == errc::malformed);
}

TEST_CASE("tasmota sensors nested per sensor with local time") {
  auto am = map_preset("tasmota", "tele/tasmota_4A1B2C/SENSOR",
                       R"({"Time":"2024-01-15T11:30:00","AM2301":{"Temperature":22.3,"Humidity":45.1,"DewPoint":9.8},"TempUnit":"C"})",
                       "+01:00");
  const Event e = event_of(am);
  CHECK(e.device.value == "tasmota_4A1B2C");
  CHECK(e.time.ms == kNow);  // 11:30 local at +01:00
  CHECK(metric(e, "AM2301.Temperature") == 22.3);
  CHECK(e.metrics.size() == 3);
  // Two DS18B20 probes (each with a text Id) and a multi-phase energy meter with arrays.
  auto multi = event_of(map_preset("tasmota", "tele/pool/SENSOR",
                                   R"({"Time":"2024-01-15T10:30:00","DS18B20-1":{"Id":"01144A0CB2AA","Temperature":24.1},
                                       "DS18B20-2":{"Id":"0316A279B5FF","Temperature":18.9},
                                       "ENERGY":{"TotalStartTime":"2023-06-01T08:00:00","Total":123.456,"Power":[230,0,15],
                                                 "Voltage":[231,230,229]},"TempUnit":"C"})"));
  CHECK(multi.time.ms == kNow);  // the default zone is UTC
  CHECK(metric(multi, "DS18B20-2.Temperature") == 18.9);
  CHECK(metric(multi, "ENERGY.Power.2") == 15);
  CHECK(metric(multi, "ENERGY.Total") == 123.456);
  CHECK_FALSE(metric(multi, "DS18B20-1.Id"));
  // SetOption52: the time carries its offset, which wins over the configured zone.
  auto offset = event_of(map_preset("tasmota", "tele/x/SENSOR", R"({"Time":"2024-01-15T12:30:00+02:00","ANALOG":{"A0":512}})",
                                    "+01:00"));
  CHECK(offset.time.ms == kNow);
  // Without its time, a Tasmota message is refused (its time is required).
  auto no_time = map_preset("tasmota", "tele/x/SENSOR", R"({"ANALOG":{"A0":512}})");
  REQUIRE_FALSE(no_time.has_value());
  CHECK(no_time.error().path == "Time: missing");
  // A state message is on another topic and is not matched by the preset's filter.
  auto tasmota = preset_mapping("tasmota");
  CHECK_FALSE(topic_matches(tasmota->topic, "tele/x/STATE"));
}

TEST_CASE("shelly gen2 status notifications per component") {
  auto pm = event_of(map_preset("shelly", "shellyplus1pm-a8032ab12345/events/rpc",
                                R"({"src":"shellyplus1pm-a8032ab12345","dst":"shellyplus1pm-a8032ab12345/events",
                                    "method":"NotifyStatus","params":{"ts":1705314600.43,
                                    "switch:0":{"id":0,"apower":12.3,"voltage":229.8,"current":0.061,"output":true,
                                                "aenergy":{"total":1234.567,"by_minute":[10.1,11.2,12.3],"minute_ts":1705314600},
                                                "temperature":{"tC":41.2,"tF":106.2}}}})"));
  CHECK(pm.device.value == "shellyplus1pm-a8032ab12345");
  CHECK(pm.time.ms == kNow + 430);
  CHECK(metric(pm, "switch:0.apower") == 12.3);
  CHECK(metric(pm, "switch:0.output") == 1);
  CHECK(metric(pm, "switch:0.aenergy.by_minute.1") == 11.2);
  CHECK(metric(pm, "switch:0.temperature.tC") == 41.2);
  CHECK_FALSE(metric(pm, "ts"));
  // An H&T: two components, only what changed.
  auto ht = event_of(map_preset("shelly", "shellyhtg3-84fce63ad204/events/rpc",
                                R"({"src":"shellyhtg3-84fce63ad204","dst":"shellyhtg3-84fce63ad204/events","method":"NotifyStatus",
                                    "params":{"ts":1705314600.00,"temperature:0":{"id":0,"tC":20.4,"tF":68.7},
                                              "devicepower:0":{"id":0,"battery":{"V":5.9,"percent":88},"external":{"present":false}}}})"));
  CHECK(metric(ht, "devicepower:0.battery.percent") == 88);
  CHECK(metric(ht, "devicepower:0.external.present") == 0);
  // A button press (NotifyEvent) carries no readings: not an event.
  auto press = map_preset("shelly", "shellyplus1-x/events/rpc",
                          R"({"src":"shellyplus1-x","dst":"shellyplus1-x/events","method":"NotifyEvent",
                              "params":{"ts":1705314600.1,"events":[{"component":"input:0","id":0,"event":"single_push","ts":1705314600.1}]}})");
  REQUIRE(press.has_value());
  CHECK_FALSE(press->has_value());
}

TEST_CASE("chirpstack uplinks with fCnt and the decoded object") {
  auto up = map_preset("chirpstack", "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up",
                       kChirpStackUp);
  const Event e = event_of(up);
  CHECK(e.device.value == "0101010101010101");
  CHECK(e.seq.value == 10);
  CHECK((*up)->seq_bits == 32);
  CHECK(e.time.ms == kNow - 877);
  CHECK(e.metrics.size() == 3);
  CHECK(metric(e, "BatV") == 3.05);
  CHECK(e.tags == std::vector<Tag>{{"application", "farm"}, {"device_name", "barn-1"}});
  // The first uplink after a join: the JSON leaves fCnt 0 out.
  std::string first = kChirpStackUp;
  first.replace(first.find(R"("fCnt": 10,)"), 11, "");
  CHECK(event_of(map_preset("chirpstack", "application/a/device/0101010101010101/event/up", first)).seq.value == 0);
  // No codec in the device profile: no object, a dead letter that says so.
  std::string raw = kChirpStackUp;
  raw.replace(raw.find(R"("object")"), 8, R"("objekt")");
  auto no_object = map_preset("chirpstack", "application/a/device/0101010101010101/event/up", raw);
  REQUIRE_FALSE(no_object.has_value());
  CHECK(no_object.error().path == "object: missing");
}

TEST_CASE("the things stack uplinks with f_cnt and the session key as boot id") {
  const std::string up = R"({
    "end_device_ids": {"device_id": "eui-70b3d57ed005a1b2", "application_ids": {"application_id": "weather"},
                       "dev_eui": "70B3D57ED005A1B2", "join_eui": "0000000000000000", "dev_addr": "260B1234"},
    "correlation_ids": ["as:up:01HM3Z9J4TQ7"],
    "received_at": "2024-01-15T10:30:00.250123456Z",
    "uplink_message": {"session_key_id": "AYz3Yq0vKkq3m1r8T0H1Tg==", "f_port": 1, "f_cnt": 4242,
                       "frm_payload": "AQIDBA==", "decoded_payload": {"temperature": -3.5, "wind": {"speed": 7.2, "dir": 270}},
                       "rx_metadata": [{"gateway_ids": {"gateway_id": "gw-roof"}, "rssi": -101, "snr": -4.25}],
                       "settings": {"data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 9}}, "frequency": "867300000"},
                       "received_at": "2024-01-15T10:30:00.201Z", "consumed_airtime": "0.185344s"}
  })";
  const std::string topic = "v3/weather@ttn/devices/eui-70b3d57ed005a1b2/up";
  auto r = map_preset("tts", topic, up);
  const Event e = event_of(r);
  CHECK(e.device.value == "eui-70b3d57ed005a1b2");
  CHECK(e.seq.value == 4242);
  CHECK(e.time.ms == kNow + 250);
  CHECK(e.boot_id != 0);
  CHECK(metric(e, "wind.dir") == 270);
  CHECK(e.tags == std::vector<Tag>{{"application", "weather"}, {"dev_eui", "70B3D57ED005A1B2"}});
  // A rejoin: a new session key, the counter from 0 (left out of the JSON).
  std::string rejoin = up;
  rejoin.replace(rejoin.find("AYz3"), 4, "BQa9");
  rejoin.replace(rejoin.find(R"("f_cnt": 4242,)"), 14, "");
  const Event after = event_of(map_preset("tts", topic, rejoin));
  CHECK(after.seq.value == 0);
  CHECK(after.boot_id != e.boot_id);
}

TEST_CASE("chirpstack copies of one uplink are dropped by fCnt in the buffer") {
  gw::test::AdmitRing ring(*preset_mapping("chirpstack"), kNow);
  const std::string topic = "application/a/device/0101010101010101/event/up";
  // The same uplink through another radio gateway (another rxInfo, another time), then fCnt 11.
  std::string other = kChirpStackUp;
  other.replace(other.find("0016c001f153a14c"), 16, "0016c001f1500812");
  other.replace(other.find("10:29:59.123456"), 15, "10:29:59.301000");
  std::string next = kChirpStackUp;
  next.replace(next.find(R"("fCnt": 10)"), 10, R"("fCnt": 11)");
  CHECK(gw::buffer::stored(ring.store(topic, kChirpStackUp)));
  CHECK(ring.store(topic, other) == gw::buffer::kDroppedDuplicate);
  CHECK(gw::buffer::stored(ring.store(topic, next)));
  CHECK(ring.ring().stats().duplicates_total == 1);
  CHECK(ring.ring().stats().seq_gaps_total == 0);
}
