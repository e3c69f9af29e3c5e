// firmware-sim's source formats against the gateway's presets: what a simulated device of each
// source publishes, mapped by the preset of that name, is exactly the event firmware-sim lists in its
// manifest and record (stored_event), on the topic the preset subscribes.
#include "tests/support/catch.h"

#include <string>

#include "firmware-sim/source_formats.h"
#include "ingest/admit.h"
#include "ingest/mapping.h"

using namespace gw;
using firmware_sim::SourceFormat;

TEST_CASE("each simulated source maps through its preset to the event the manifest lists") {
  const std::int64_t now = 1'705'314'600'000;
  for (const char* name : {"zigbee2mqtt", "tasmota", "shelly", "chirpstack", "tts"}) {
    INFO(name);
    const SourceFormat format = *firmware_sim::source_format(name);
    auto preset = ingest::preset_mapping(name);
    REQUIRE(preset.has_value());
    if (format == SourceFormat::tasmota) preset->time_zone = "+01:00";
    ingest::AdmitOptions options;
    options.mapper = ingest::compile_sources({*preset});
    for (std::uint64_t seq : {0ull, 1ull, 70000ull}) {
      const ingest::Event sent{ingest::DeviceId{"dev-7"}, ingest::DeviceSeq{seq},
                               ingest::EventTime{firmware_sim::source_time(format, now + 123'457)},
                               {{"temperature", 21.25}, {"humidity", 40.5}, {"light", 0}}, {}, 3};
      const std::string topic = firmware_sim::source_topic(format, "dev-7");
      const std::string payload = firmware_sim::encode_source(format, sent);
      INFO(topic << " " << payload);
      auto admitted = ingest::admit(topic, {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()},
                                    now, options);
      REQUIRE(admitted.has_value());
      CHECK(admitted->event == firmware_sim::stored_event(format, sent));
      CHECK(admitted->counter == firmware_sim::has_counter(format));
    }
  }
}

TEST_CASE("a simulated sparkplug node births with names and then sends by alias") {
  if (!ingest::sparkplug_supported()) return;
  ingest::AdmitOptions options;
  options.mapper = ingest::compile_sources({*ingest::preset_mapping("sparkplug")});
  for (std::uint64_t seq : {0ull, 1ull, 255ull}) {
    const ingest::Event sent{ingest::DeviceId{"dev-7"}, ingest::DeviceSeq{seq}, ingest::EventTime{1'705'314'600'000},
                             {{"temperature", 21.25}, {"light", 0}}, {}, 3};
    const std::string topic = firmware_sim::source_topic(SourceFormat::sparkplug, sent);
    CHECK(topic == (seq == 0 ? "spBv1.0/sim/NBIRTH/dev-7" : "spBv1.0/sim/NDATA/dev-7"));
    const std::string payload = firmware_sim::encode_source(SourceFormat::sparkplug, sent);
    auto admitted = ingest::admit(topic, {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()},
                                  1'705'314'600'000, options);
    REQUIRE(admitted.has_value());
    CHECK(admitted->event == firmware_sim::stored_event(SourceFormat::sparkplug, sent));
    CHECK(admitted->dedup_source == "sim/dev-7");
  }
}

TEST_CASE("source times are at each source's resolution") {
  CHECK(firmware_sim::source_time(SourceFormat::tasmota, 1'705'314'600'999) == 1'705'314'600'000);
  CHECK(firmware_sim::source_time(SourceFormat::shelly, 1'705'314'600'999) == 1'705'314'600'990);
  CHECK(firmware_sim::source_time(SourceFormat::tts, 1'705'314'600'999) == 1'705'314'600'999);
  CHECK_FALSE(firmware_sim::source_format("json").has_value());
}
