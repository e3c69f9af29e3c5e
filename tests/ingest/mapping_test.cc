// The mapping engine (ingest/mapping.h): topic filters, field references, time forms, metric
// flattening, include/exclude, tags, the counter, and what a payload that does not fit gets.
#include "tests/support/catch.h"

#include <string>

#include "ingest/admit.h"
#include "ingest/mapping.h"

using namespace gw::ingest;

namespace {

std::span<const std::uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

constexpr std::int64_t kNow = 1'705'314'600'000;  // 2024-01-15T10:30:00Z

// Maps one payload with one mapping; REQUIREs that the topic matches.
MapResult map_one(const SourceMapping& m, const std::string& topic, const std::string& payload,
                  std::string_view client_id = {}) {
  auto mapper = Mapper::compile({m});
  REQUIRE(mapper.has_value());
  const auto* source = (*mapper)->match(topic);
  REQUIRE(source != nullptr);
  return (*mapper)->decode(*source, topic, client_id, bytes(payload), kNow);
}

double metric(const Event& e, const std::string& name) {
  for (const auto& m : e.metrics) {
    if (m.name == name) return m.value;
  }
  FAIL("no metric " << name);
  return 0;
}

SourceMapping custom() {
  SourceMapping m;
  m.topic = "site/+/sensors/#";
  m.device = "topic:1";
  m.time = "payload:ts";
  m.time_format = TimeForm::epoch_ms;
  m.seq = "payload:n";
  m.seq_bits = 16;
  m.metrics = {"data"};
  return m;
}

}  // namespace

TEST_CASE("topic filters follow MQTT wildcards") {
  CHECK(topic_matches("a/+/c", "a/b/c"));
  CHECK_FALSE(topic_matches("a/+/c", "a/b/d"));
  CHECK_FALSE(topic_matches("a/+/c", "a/b/c/d"));
  CHECK(topic_matches("a/#", "a/b/c"));
  CHECK(topic_matches("a/#", "a"));
  CHECK(topic_matches("+/events/rpc", "shellyplus1-a8/events/rpc"));
  CHECK_FALSE(topic_matches("#", "$SYS/broker/uptime"));
  CHECK_FALSE(topic_matches("zigbee2mqtt/+", "zigbee2mqtt/bridge/state"));
}

TEST_CASE("a custom mapping takes device from the topic and flattens nested readings") {
  auto r = map_one(custom(), "site/lab/sensors/x",
                   R"({"ts":1705314600123,"n":7,"data":{"t":21.5,"on":true,"off":false,"name":"x","env":{"rh":40},"v":[1,2]}})");
  REQUIRE(r.has_value());
  REQUIRE(r->has_value());
  const Mapped& m = **r;
  CHECK(m.event.device.value == "lab");
  CHECK(m.event.time.ms == 1'705'314'600'123);
  CHECK(m.event.seq.value == 7);
  CHECK(m.seq_bits == 16);
  CHECK(m.counter);
  CHECK(metric(m.event, "t") == 21.5);
  CHECK(metric(m.event, "on") == 1);
  CHECK(metric(m.event, "off") == 0);
  CHECK(metric(m.event, "env.rh") == 40);
  CHECK(metric(m.event, "v.1") == 2);
  CHECK(m.event.metrics.size() == 6);  // the text "name" is not a reading
}

TEST_CASE("include exclude and the separator shape the metric names") {
  SourceMapping m = custom();
  m.separator = std::string(1, '_');  // (assigning "_" trips GCC 12's -Wrestrict)
  m.include = {"env*", "t"};
  m.exclude = {"env_p"};
  auto r = map_one(m, "site/lab/sensors", R"({"ts":5,"n":1,"data":{"t":1,"u":2,"env":{"rh":40,"p":1000}}})");
  REQUIRE(r.has_value());
  const Event& e = (*r)->event;
  REQUIRE(e.metrics.size() == 2);
  CHECK(metric(e, "t") == 1);
  CHECK(metric(e, "env_rh") == 40);
}

TEST_CASE("each time form gives milliseconds since the epoch") {
  SourceMapping m = custom();
  auto time_of = [&](TimeForm form, const std::string& value, const std::string& zone = "UTC") {
    m.time_format = form;
    m.time_zone = zone;
    std::string payload = R"({"n":1,"data":{},"ts":)";
    payload.append(value).append("}");  // (operator+ here trips GCC 12's -Wrestrict)
    auto r = map_one(m, "site/a/sensors", payload);
    return r.has_value() ? (*r)->event.time.ms : -1;
  };
  CHECK(time_of(TimeForm::epoch_s, "1705314600") == kNow);
  CHECK(time_of(TimeForm::epoch_s, "1705314600.43") == kNow + 430);
  CHECK(time_of(TimeForm::epoch_us, "1705314600123456") == kNow + 123);
  CHECK(time_of(TimeForm::rfc3339, R"("2024-01-15T10:30:00Z")") == kNow);
  CHECK(time_of(TimeForm::rfc3339, R"("2024-01-15T11:30:00.250+01:00")") == kNow + 250);
  CHECK(time_of(TimeForm::rfc3339, R"("2024-01-15T10:30:00.123456789Z")") == kNow + 123);
  CHECK(time_of(TimeForm::rfc3339, R"("2024-01-15T10:30:00")") == -1);  // RFC 3339 needs an offset
  CHECK(time_of(TimeForm::local, R"("2024-01-15T11:30:00")", "+01:00") == kNow);
  CHECK(time_of(TimeForm::local, R"("2024-01-15T05:00:00")", "-05:30") == kNow);
  CHECK(time_of(TimeForm::local, R"("2024-01-15T12:30:00+02:00")", "+01:00") == kNow);  // its own offset wins
  CHECK(time_of(TimeForm::automatic, "1705314600000") == kNow);
  CHECK(time_of(TimeForm::automatic, R"("2024-01-15T10:30:00.000Z")") == kNow);
  CHECK(time_of(TimeForm::rfc3339, R"("2024-02-30T10:30:00Z")") == -1);
}

TEST_CASE("the gateway zone reads a local time with the gateway's rules") {
  ::setenv("TZ", "Europe/Berlin", 1);
  ::tzset();
  CHECK(parse_iso8601("2024-01-15T11:30:00", LocalZone{0, true}) == kNow);        // CET, +01:00
  CHECK(parse_iso8601("2024-07-15T12:30:00", LocalZone{0, true}) == 1'721'039'400'000);  // CEST, +02:00
  ::unsetenv("TZ");
  ::tzset();
}

TEST_CASE("a source without a counter is identified by its event time") {
  SourceMapping m = custom();
  m.seq.clear();
  auto r = map_one(m, "site/a/sensors", R"({"ts":1705314600500,"data":{"t":1}})");
  REQUIRE(r.has_value());
  CHECK_FALSE((*r)->counter);
  CHECK((*r)->event.seq.value == 1'705'314'600'500);
  CHECK((*r)->seq_bits == 64);
}

TEST_CASE("a payload without its time is stamped on arrival unless the time is required") {
  SourceMapping m = custom();
  auto r = map_one(m, "site/a/sensors", R"({"n":3,"data":{"t":1}})");
  REQUIRE(r.has_value());
  CHECK((*r)->time_from_arrival);
  CHECK((*r)->event.time.ms == kNow);
  m.time_required = true;
  auto refused = map_one(m, "site/a/sensors", R"({"n":3,"data":{"t":1}})");
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().reason == errc::mapping);
  CHECK(refused.error().path == "ts: missing");
}

TEST_CASE("a payload that does not fit names the path that failed") {
  const SourceMapping m = custom();
  auto fail = [&](const std::string& payload) {
    auto r = map_one(m, "site/a/sensors", payload);
    REQUIRE_FALSE(r.has_value());
    return r.error();
  };
  CHECK(fail(R"({"ts":1,"data":{}})").path == "n: missing");
  CHECK(fail(R"({"ts":1,"n":-1,"data":{}})").path == "n: expected an unsigned integer");
  CHECK(fail(R"({"ts":1,"n":65536,"data":{}})").path == "n: wider than seq_bits");
  CHECK(fail(R"({"ts":"x","n":1,"data":{}})").path == "ts: expected a number");
  CHECK(fail(R"({"ts":1,"n":1})").path == "data: missing");
  CHECK(fail("not json").reason == errc::malformed);
  CHECK(fail("[1,2]").path == "n: missing");
}

TEST_CASE("device ids come from the payload or the client id and tags from anywhere") {
  SourceMapping m = custom();
  m.device = "payload:meta.id";
  m.tags = {{"site", "topic:1"}, {"fw", "payload:meta.fw"}, {"kind", "thermo"}, {"absent", "payload:nope"}};
  auto r = map_one(m, "site/lab/sensors", R"({"ts":1,"n":1,"data":{},"meta":{"id":"th-1","fw":12}})");
  REQUIRE(r.has_value());
  const Event& e = (*r)->event;
  CHECK(e.device.value == "th-1");
  CHECK(e.tags == std::vector<Tag>{{"site", "lab"}, {"fw", "12"}, {"kind", "thermo"}});
  m.device = "client_id";
  auto by_client = map_one(m, "site/lab/sensors", R"({"ts":1,"n":1,"data":{}})", "sensor-9");
  REQUIRE(by_client.has_value());
  CHECK((*by_client)->event.device.value == "sensor-9");
  auto unknown = map_one(m, "site/lab/sensors", R"({"ts":1,"n":1,"data":{}})");
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().path == "client_id: not known in this ingest mode");
}

TEST_CASE("a boot id is an integer or the hash of a text") {
  SourceMapping m = custom();
  m.boot = "payload:b";
  auto n = map_one(m, "site/a/sensors", R"({"ts":1,"n":1,"data":{},"b":42})");
  auto s1 = map_one(m, "site/a/sensors", R"({"ts":1,"n":1,"data":{},"b":"AXBSH1Pk6Z0G166/cJT1fA=="})");
  auto s2 = map_one(m, "site/a/sensors", R"({"ts":1,"n":1,"data":{},"b":"BXBSH1Pk6Z0G166/cJT1fA=="})");
  REQUIRE((n && s1 && s2));
  CHECK((*n)->event.boot_id == 42);
  CHECK((*s1)->event.boot_id != 0);
  CHECK((*s1)->event.boot_id != (*s2)->event.boot_id);
}

TEST_CASE("compile refuses a bad mapping and names the key") {
  auto key_of = [](SourceMapping m) {
    auto r = Mapper::compile({SourceMapping{}, std::move(m)});
    REQUIRE_FALSE(r.has_value());
    return r.error().key;
  };
  SourceMapping ok = custom();
  CHECK(Mapper::compile({ok}).has_value());
  SourceMapping m = ok;
  m.device = "body:x";
  auto bad_device = Mapper::compile({m});
  REQUIRE_FALSE(bad_device.has_value());
  CHECK(bad_device.error().key == "device");
  m = ok;
  m.topic = "a/#/b";
  CHECK(Mapper::compile({m}).error().key == "topic");
  m = ok;
  m.time_format = TimeForm::local;
  m.time_zone = "Mars/Olympus";
  CHECK(Mapper::compile({m}).error().key == "time_zone");
  m = ok;
  m.seq = "topic:2";
  CHECK(Mapper::compile({m}).error().key == "seq");
  m = ok;
  m.metrics = {"a..b"};
  CHECK(Mapper::compile({m}).error().key == "metrics");
  m = ok;
  m.when = "payload:method";
  CHECK(Mapper::compile({m}).error().key == "when_values");
  CHECK(key_of(ok) == "topic");  // the first (empty) one
}

TEST_CASE("admit maps a source's topic and leaves other topics native") {
  SourceMapping m = custom();
  AdmitOptions options;
  options.mapper = compile_sources({m});
  auto mapped = admit("site/lab/sensors", bytes(R"({"ts":1705314600000,"n":9,"data":{"t":2}})"), kNow, options);
  REQUIRE(mapped.has_value());
  CHECK(mapped->seq_bits == 16);
  const auto record = mapped->record();
  REQUIRE(record.dedup.has_value());
  CHECK(record.dedup->seq_bits == 16);
  CHECK(record.dedup->source == "lab");
  auto stored = decode_telemetry(mapped->stored_bytes());  // the buffer keeps the canonical form
  REQUIRE(stored.has_value());
  CHECK(stored->seq.value == 9);
  auto native = admit("devices/d1/telemetry", bytes(R"({"device":"d1","seq":1,"time_ms":1705314600000})"), kNow, options);
  REQUIRE(native.has_value());
  CHECK(native->seq_bits == 0);
  auto bad = admit("site/lab/sensors", bytes(R"({"ts":1705314600000,"data":{}})"), kNow, options);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().reason == make_error_code(errc::mapping));
  CHECK(bad.error().detail == "n: missing");
  auto far = admit("site/lab/sensors", bytes(R"({"ts":1,"n":1,"data":{}})"), kNow, options);
  REQUIRE_FALSE(far.has_value());
  CHECK(far.error().reason == make_error_code(errc::bad_timestamp));
}
