// The Telemetry FlatBuffer codec: round trip, and every kind of bad input is an error, never a crash.
#include "tests/support/catch.h"

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <limits>
#include <random>

#include "ingest/event.h"
#include "ingest/telemetry_generated.h"

using namespace gw::ingest;

namespace {

Event sample() {
  return Event{DeviceId{"dev-7"}, DeviceSeq{42}, EventTime{1'700'000'000'123},
               {{"temperature", 21.5}, {"humidity", 40.25}, {"light", 0.0}, {"voltage", -2.5}}};
}

// A Telemetry built field by field, to make what encode_telemetry() never writes.
std::vector<std::uint8_t> build(std::uint16_t version, const std::string& device, flatbuffers::Optional<std::uint64_t> seq,
                                std::int64_t time_ms, const std::vector<std::pair<std::string, double>>& metrics) {
  flatbuffers::FlatBufferBuilder fbb;
  std::vector<flatbuffers::Offset<fb::Metric>> ms;
  for (const auto& [name, value] : metrics) ms.push_back(fb::CreateMetric(fbb, fbb.CreateString(name), value));
  auto root = fb::CreateTelemetry(fbb, version, fbb.CreateString(device), seq, time_ms, fbb.CreateVector(ms));
  fb::FinishTelemetryBuffer(fbb, root);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

std::error_code code(errc e) { return make_error_code(e); }

}  // namespace

TEST_CASE("telemetry round trip") {
  const Event e = sample();
  auto bytes = encode_telemetry(e);
  auto back = decode_telemetry(bytes);
  REQUIRE(back.has_value());
  CHECK(*back == e);

  Event no_metrics{DeviceId{"d"}, DeviceSeq{1}, EventTime{1}, {}};
  auto back2 = decode_telemetry(encode_telemetry(no_metrics));
  REQUIRE(back2.has_value());
  CHECK(*back2 == no_metrics);
}

TEST_CASE("random bytes are rejected as malformed") {
  std::mt19937 rng(12345);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<std::size_t> len(0, 300);
  for (int i = 0; i < 2000; ++i) {
    std::vector<std::uint8_t> junk(len(rng));
    for (auto& b : junk) b = static_cast<std::uint8_t>(byte(rng));
    if (i % 2 == 0 && junk.size() >= 8) std::copy_n("GWT1", 4, junk.begin() + 4);  // get past the identifier
    auto r = decode_telemetry(junk);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == code(errc::malformed));
  }
}

// Shorter than the root offset + file identifier, down to nothing: no read out of bounds.
TEST_CASE("payloads shorter than a FlatBuffers header are rejected") {
  CHECK(decode_telemetry({}).error() == code(errc::malformed));
  const std::vector<std::uint8_t> three{1, 2, 3};
  CHECK(decode_telemetry(three).error() == code(errc::malformed));
}

TEST_CASE("every truncation of a valid payload is rejected") {
  auto bytes = encode_telemetry(sample());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto r = decode_telemetry(std::span(bytes.data(), n));
    INFO("prefix length " << n);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == code(errc::malformed));
  }
}

TEST_CASE("a wrong file identifier is rejected") {
  auto bytes = encode_telemetry(sample());
  REQUIRE(bytes.size() > 8);
  bytes[4] = 'X';
  CHECK(decode_telemetry(bytes).error() == code(errc::malformed));
}

TEST_CASE("a newer schema version is rejected, an equal one accepted") {
  CHECK(decode_telemetry(build(kTelemetrySchemaVersion + 1, "d", 1, 1, {})).error() ==
        code(errc::unsupported_version));
  CHECK(decode_telemetry(build(kTelemetrySchemaVersion, "d", 1, 1, {})).has_value());
}

TEST_CASE("missing identity fields are rejected") {
  CHECK(decode_telemetry(build(1, "", 1, 1, {})).error() == code(errc::missing_field));
  CHECK(decode_telemetry(build(1, "d", flatbuffers::nullopt, 1, {})).error() == code(errc::missing_field));
  CHECK(decode_telemetry(build(1, "d", 1, 0, {})).error() == code(errc::missing_field));
  CHECK(decode_telemetry(build(1, "d", 1, -5, {})).error() == code(errc::missing_field));
}

TEST_CASE("seq 0 is a sequence number, written and read as such") {
  CHECK(decode_telemetry(build(1, "d", 0, 1, {})).value().seq.value == 0);
  Event e = sample();
  e.seq.value = 0;
  const auto bytes = encode_telemetry(e);
  CHECK(decode_telemetry(bytes).value() == e);
  // The field is stored although it equals the old schema's default.
  CHECK(fb::GetTelemetry(bytes.data())->seq().has_value());
  const std::string json = encode_json(e);
  CHECK(json.find("\"seq\":0") != std::string::npos);
  CHECK(decode_json(std::span(reinterpret_cast<const std::uint8_t*>(json.data()), json.size())).value().seq.value == 0);
}

TEST_CASE("the values' digest ignores time, seq and order, and sees every value and tag") {
  Event a = sample();
  a.tags = {{"site", "lab"}, {"room", "2"}};
  Event b = a;
  b.time.ms += 4000;
  b.seq.value += 1;
  b.boot_id = 9;
  std::reverse(b.metrics.begin(), b.metrics.end());
  std::reverse(b.tags.begin(), b.tags.end());
  CHECK(value_digest(a) == value_digest(b));
  CHECK(value_digest(a) >= 2);
  Event c = a;
  c.metrics[1].value += 0.01;
  CHECK(value_digest(c) != value_digest(a));
  Event d = a;
  d.tags[0].value = "lab2";
  CHECK(value_digest(d) != value_digest(a));
  Event e = a;
  e.metrics.pop_back();
  CHECK(value_digest(e) != value_digest(a));
  // Stable across builds and machines (it is stored): a fixed value for a fixed event.
  CHECK(value_digest(Event{DeviceId{"x"}, DeviceSeq{1}, EventTime{1}, {{"t", 21.5}}}) == 0xe3aecd61u);
}

TEST_CASE("text that is not UTF-8 is rejected, valid UTF-8 kept") {
  // Found by fuzzing (tests/fuzz, fuzz_telemetry): the verifier accepted a metric name with a stray
  // 0x98 byte, and the event's text later made the JSON writers (/aggregates, encode_json) throw.
  const std::string bad_names[] = {"temper\x98ture", "\xc3", "\xe2\x82", "\xc0\xaf" /* overlong */,
                                   "\xed\xa0\x80" /* surrogate */, "\xf4\x90\x80\x80" /* > U+10FFFF */};
  for (const auto& bad : bad_names) {
    CAPTURE(bad);
    CHECK(decode_telemetry(build(2, "d", 1, 1, {{bad, 1.0}})).error() == code(errc::bad_value));
    CHECK(decode_telemetry(build(2, bad, 1, 1, {{"t", 1.0}})).error() == code(errc::bad_value));
    Event tagged = sample();
    tagged.tags = {{"site", bad}};
    CHECK(decode_telemetry(encode_telemetry(tagged)).error() == code(errc::bad_value));
    tagged.tags = {{bad, "lab"}};
    CHECK(decode_telemetry(encode_telemetry(tagged)).error() == code(errc::bad_value));
  }
  Event utf8 = sample();
  utf8.device.value = "capteur-\xc3\xa9t\xc3\xa9-\xf0\x9f\x98\x80";  // "capteur-été-😀"
  utf8.metrics = {{"temp\xc3\xa9rature", 21.5}, {std::string("nul\0inside", 11), 1.0}};
  utf8.tags = {{"site", "\xe6\x9d\xb1\xe4\xba\xac"}};
  auto decoded = decode_telemetry(encode_telemetry(utf8));
  REQUIRE(decoded.has_value());
  CHECK(*decoded == utf8);
  const std::string json = encode_json(*decoded);  // would throw on text that is not UTF-8
  CHECK(decode_json(std::span(reinterpret_cast<const std::uint8_t*>(json.data()), json.size())).value() == utf8);
}

TEST_CASE("a repeated metric name or tag key is rejected") {
  // Found by fuzzing (tests/fuzz, fuzz_telemetry): a FlatBuffer with two "hum" metrics decoded, but
  // its JSON form (one value per key) lost one of them.
  CHECK(decode_telemetry(build(2, "d", 1, 1, {{"hum", 40.5}, {"t", 1.0}, {"hum", 41.0}})).error() ==
        code(errc::bad_value));
  Event tagged = sample();
  tagged.tags = {{"site", "lab"}, {"rack", "r1"}, {"site", "hall"}};
  CHECK(decode_telemetry(encode_telemetry(tagged)).error() == code(errc::bad_value));
  tagged.tags = {{"site", "lab"}, {"rack", "lab"}};  // repeated values are fine
  CHECK(decode_telemetry(encode_telemetry(tagged)).value() == tagged);
}

TEST_CASE("non-finite metric values and empty metric names are rejected") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(decode_telemetry(build(1, "d", 1, 1, {{"t", 1.0}, {"h", nan}})).error() == code(errc::bad_value));
  CHECK(decode_telemetry(build(1, "d", 1, 1, {{"t", inf}})).error() == code(errc::bad_value));
  CHECK(decode_telemetry(build(1, "d", 1, 1, {{"t", -inf}})).error() == code(errc::bad_value));
  CHECK(decode_telemetry(build(1, "d", 1, 1, {{"", 1.0}})).error() == code(errc::bad_value));
}
