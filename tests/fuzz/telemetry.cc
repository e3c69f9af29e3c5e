// libFuzzer target: device payloads as they arrive over MQTT, through decode_payload (the format
// sniffing, the Telemetry FlatBuffer verifier and decoder, the JSON decoder) and validate.
// Invariants: no crash, UB or leak on any bytes; what decodes re-encodes (in both formats) to the
// same event; decode_telemetry agrees with decode_payload on FlatBuffers.
#include <cstdint>
#include <span>

#include "ingest/event.h"
#include "tests/fuzz/check.h"

using gw::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gw::ingest;
  const std::span<const std::uint8_t> bytes(data, size);
  const auto format = payload_format(bytes);
  const auto event = decode_payload(bytes);
  if (format == PayloadFormat::flatbuffers) {
    const auto direct = decode_telemetry(bytes);
    require(direct.has_value() == event.has_value(), "decode_telemetry and decode_payload disagree");
    if (direct) require(*direct == *event, "decode_telemetry and decode_payload give different events");
  }
  if (!format) require(!event && event.error() == errc::malformed, "neither format, yet not malformed");
  if (!event) return 0;

  (void)validate(*event, size, 1'700'000'000'000, Limits{});

  const auto fb = encode_telemetry(*event);
  require(payload_format(fb) == PayloadFormat::flatbuffers, "an encoded FlatBuffer is not recognised");
  const auto again = decode_telemetry(fb);
  require(again.has_value(), "an encoded event does not decode");
  require(*again == *event, "FlatBuffer round trip changed the event");
  require(encode_telemetry(*again) == fb, "FlatBuffer encoding is not stable");

  const std::string json = encode_json(*event);
  const auto from_json = decode_json(std::span(reinterpret_cast<const std::uint8_t*>(json.data()), json.size()));
  require(from_json.has_value(), "the JSON encoding of an event does not decode");
  require(*from_json == *event, "JSON round trip changed the event");
  return 0;
}
