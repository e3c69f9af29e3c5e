// libFuzzer target: the JSON payload decoder (decode_json, for devices without FlatBuffers) and
// validate. Invariants: no crash, UB or leak on any bytes; what decodes re-encodes as JSON and as
// a Telemetry FlatBuffer to the same event; validate accepts it with generous limits at its own
// event time and refuses it as oversize when the payload exceeds the limit.
#include <cstdint>
#include <span>
#include <string>

#include "ingest/event.h"
#include "tests/fuzz/check.h"

namespace {

using gw::fuzz::require;

std::span<const std::uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gw::ingest;
  const std::span<const std::uint8_t> bytes(data, size);
  const auto event = decode_json(bytes);
  if (!event) {
    require(event.error().category() == ingest_category(), "an error outside the ingest category");
    return 0;
  }
  require(!event->device.value.empty(), "an event without a device id");
  require(event->time.ms > 0, "an event with a time <= 0");

  Limits limits;
  limits.max_payload_bytes = size;
  require(!validate(*event, size, event->time.ms, limits), "validate refuses a decoded event at its own time");
  if (size > 0) {
    limits.max_payload_bytes = size - 1;
    require(validate(*event, size, event->time.ms, limits) == errc::oversize, "an oversize payload passes");
  }

  const std::string json = encode_json(*event);
  const auto again = decode_json(as_bytes(json));
  require(again.has_value(), "the JSON encoding of an event does not decode");
  require(*again == *event, "JSON round trip changed the event");
  require(encode_json(*again) == json, "JSON encoding is not stable");

  const auto fb = decode_telemetry(encode_telemetry(*event));
  require(fb.has_value() && *fb == *event, "FlatBuffer round trip of a JSON event changed it");
  return 0;
}
