// libFuzzer target: the mapping decoder of mapped sources (ingest/mapping.h) under each JSON preset
// and a custom mapping, and the date-time reader. The first byte picks the mapping; the rest is the
// payload (and, read as text, a date-time). Invariants: no crash, UB or leak on any bytes; a failure
// names a path; an event has a device, unique finite metrics, and survives the canonical encoding.
#include <cmath>
#include <cstdint>
#include <span>
#include <string>

#include "ingest/mapping.h"
#include "tests/fuzz/check.h"

namespace {

using namespace gw::ingest;
using gw::fuzz::require;

struct Fixture {
  Fixture() {
    std::vector<SourceMapping> sources;
    for (const char* name : {"zigbee2mqtt", "tasmota", "shelly", "chirpstack", "tts"}) sources.push_back(*preset_mapping(name));
    SourceMapping custom;
    custom.topic = "site/+/x";
    custom.device = "payload:a.b.0";
    custom.time = "payload:t";
    custom.time_format = TimeForm::automatic;
    custom.seq = "payload:n";
    custom.seq_bits = 8;
    custom.boot = "payload:boot";
    custom.metrics = {"", "m"};
    custom.exclude = {"t", "n*"};
    custom.tags = {{"k", "payload:a.b.1"}, {"site", "topic:1"}};
    sources.push_back(custom);
    mapper = *Mapper::compile(sources);
  }
  std::shared_ptr<const Mapper> mapper;
  const char* topics[6] = {"zigbee2mqtt/d", "tele/d/SENSOR", "d/events/rpc", "application/a/device/d/event/up",
                           "v3/a@t/devices/d/up", "site/s/x"};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Fixture f;
  if (size == 0) return 0;
  const std::string topic = f.topics[data[0] % 6];
  const std::span<const std::uint8_t> payload(data + 1, size - 1);
  const std::string text(reinterpret_cast<const char*>(payload.data()), payload.size());
  (void)parse_iso8601(text, LocalZone{3600000, false});
  (void)parse_iso8601(text, std::nullopt);
  const auto* source = f.mapper->match(topic);
  require(source != nullptr, "a preset's topic does not match its filter");
  const MapResult r = f.mapper->decode(*source, topic, "client-1", payload, 1'700'000'000'000);
  if (!r) {
    require(!r.error().path.empty(), "a failure without a path");
    return 0;
  }
  if (!r->has_value()) return 0;
  const Event& e = (*r)->event;
  require(!e.device.value.empty() && valid_utf8(e.device.value), "an event without a usable device id");
  for (std::size_t i = 0; i < e.metrics.size(); ++i) {
    require(std::isfinite(e.metrics[i].value) && !e.metrics[i].name.empty(), "a bad metric");
    for (std::size_t j = 0; j < i; ++j) require(e.metrics[i].name != e.metrics[j].name, "a metric named twice");
  }
  const auto back = decode_telemetry(encode_telemetry(e));
  require(back.has_value() && *back == e, "the canonical encoding changed a mapped event");
  return 0;
}
