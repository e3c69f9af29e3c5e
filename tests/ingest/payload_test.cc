// Payload formats beyond the basic codec: schema evolution in both directions (version 1 readers
// and writers against this build), the JSON form, format sniffing, and validation limits.
#include "tests/support/catch.h"

#include <string>

#include "ingest/event.h"
#include "ingest/telemetry_generated.h"
#include "tests/ingest/telemetry_v1_generated.h"

using namespace gw::ingest;

namespace {

std::span<const std::uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

Event tagged_event() {
  return Event{DeviceId{"dev-3"}, DeviceSeq{7}, EventTime{1'700'000'000'000},
               {{"temperature", 19.25}, {"voltage", 2.61}},
               {{"site", "lab"}, {"floor", "2"}},
               11};
}

}  // namespace

TEST_CASE("a version 1 reader reads what this build writes") {
  const Event e = tagged_event();
  auto bytes = encode_telemetry(e);
  flatbuffers::Verifier verifier(bytes.data(), bytes.size());
  REQUIRE(fb_v1::VerifyTelemetryBuffer(verifier));
  const fb_v1::Telemetry* old = fb_v1::GetTelemetry(bytes.data());
  CHECK(old->device_id()->str() == "dev-3");
  CHECK(old->seq() == 7);
  CHECK(old->time_ms() == 1'700'000'000'000);
  REQUIRE(old->metrics()->size() == 2);
  CHECK(old->metrics()->Get(1)->name()->str() == "voltage");
  CHECK(old->metrics()->Get(1)->value() == 2.61);
}

TEST_CASE("this build reads what a version 1 writer wrote - new fields take their defaults") {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<fb_v1::Metric>> ms{fb_v1::CreateMetric(fbb, fbb.CreateString("humidity"), 41.5)};
  auto root = fb_v1::CreateTelemetry(fbb, 1, fbb.CreateString("old-device"), 5, 1'600'000'000'000, fbb.CreateVector(ms));
  fb_v1::FinishTelemetryBuffer(fbb, root);
  std::span<const std::uint8_t> bytes(fbb.GetBufferPointer(), fbb.GetSize());
  auto e = decode_telemetry(bytes);
  REQUIRE(e.has_value());
  CHECK(e->device.value == "old-device");
  CHECK(e->seq.value == 5);
  CHECK(e->metrics == std::vector<Metric>{{"humidity", 41.5}});
  CHECK(e->tags.empty());
  CHECK(e->boot_id == 0);
}

TEST_CASE("tags and boot id survive the FlatBuffers round trip") {
  const Event e = tagged_event();
  auto back = decode_telemetry(encode_telemetry(e));
  REQUIRE(back.has_value());
  CHECK(*back == e);
}

TEST_CASE("JSON round trip and equivalence with FlatBuffers") {
  const Event e = tagged_event();
  const std::string json = encode_json(e);
  auto back = decode_json(as_bytes(json));
  REQUIRE(back.has_value());
  CHECK(*back == e);
  auto sniffed = decode_payload(as_bytes("  \n" + json));
  REQUIRE(sniffed.has_value());
  CHECK(*sniffed == e);
  auto fb = encode_telemetry(e);
  auto sniffed_fb = decode_payload(fb);
  REQUIRE(sniffed_fb.has_value());
  CHECK(*sniffed_fb == e);
}

TEST_CASE("JSON errors have the right reason") {
  auto reason = [](const std::string& text) {
    auto e = decode_json(as_bytes(text));
    REQUIRE_FALSE(e.has_value());
    return static_cast<errc>(e.error().value());
  };
  CHECK(reason("{not json") == errc::malformed);
  CHECK(reason("[1,2,3]") == errc::malformed);
  CHECK(reason(R"({"seq":1,"time_ms":5})") == errc::missing_field);
  CHECK(reason(R"({"device":"d","time_ms":5})") == errc::missing_field);
  CHECK(decode_json(as_bytes(R"({"device":"d","seq":0,"time_ms":5})")).value().seq.value == 0);
  CHECK(reason(R"({"device":"d","seq":"1","time_ms":5})") == errc::malformed);
  CHECK(reason(R"({"device":"d","seq":-1,"time_ms":5})") == errc::malformed);
  CHECK(reason(R"({"device":"d","seq":1,"time_ms":5,"metrics":{"t":"hot"}})") == errc::malformed);
  CHECK(reason(R"({"device":"d","seq":1,"time_ms":5,"metrics":[1]})") == errc::malformed);
  CHECK(reason(R"({"device":"d","seq":1,"time_ms":5,"metrics":{"":1}})") == errc::bad_value);
  CHECK(reason(R"({"device":"d","seq":1,"time_ms":5,"schema_version":99})") == errc::unsupported_version);
  CHECK(reason(R"({"device":"d","seq":1,"time_ms":5,"tags":{"site":3}})") == errc::malformed);
  // A number that overflows a double is a parse error in nlohmann-json: never stored as inf.
  CHECK(reason(R"({"device":"d","seq":1,"time_ms":5,"metrics":{"t":1e999}})") == errc::malformed);
}

TEST_CASE("unknown JSON fields are ignored, as a newer writer may add them") {
  auto e = decode_json(as_bytes(R"({"device":"d","seq":1,"time_ms":5,"firmware":"2.1","metrics":{"t":1}})"));
  REQUIRE(e.has_value());
  CHECK(e->metrics == std::vector<Metric>{{"t", 1.0}});
}

TEST_CASE("payloads that are neither format are malformed") {
  for (const std::string text : {"", "   ", "hello", "\x01\x02\x03\x04GWT0xxxx", "42"}) {
    INFO(text);
    auto e = decode_payload(as_bytes(text));
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error() == make_error_code(errc::malformed));
  }
}

TEST_CASE("validation: size limit and event time skew against an injected clock") {
  Limits limits;
  limits.max_payload_bytes = 100;
  limits.max_skew = std::chrono::milliseconds(60'000);
  Event e = tagged_event();
  const std::int64_t now = e.time.ms;
  CHECK_FALSE(validate(e, 100, now, limits));
  CHECK(validate(e, 101, now, limits) == make_error_code(errc::oversize));
  CHECK_FALSE(validate(e, 10, now + 60'000, limits));
  CHECK(validate(e, 10, now + 60'001, limits) == make_error_code(errc::bad_timestamp));
  CHECK(validate(e, 10, now - 60'001, limits) == make_error_code(errc::bad_timestamp));
}
