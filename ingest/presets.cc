// The presets: mappings (ingest/mapping.h) of the MQTT payloads that common sources publish, each
// written from the source's own documentation. A config names one (`preset = "zigbee2mqtt"`) and
// may override any of its keys. Pure data; thread-safe.
#include <array>

#include "ingest/mapping.h"

namespace gw::ingest {
namespace {

constexpr std::array<std::string_view, 6> kNames = {"zigbee2mqtt", "tasmota", "shelly", "chirpstack", "tts", "sparkplug"};

}  // namespace

std::span<const std::string_view> preset_names() { return kNames; }

std::optional<SourceMapping> preset_mapping(std::string_view name) {
  SourceMapping m;
  m.preset = std::string(name);
  if (name == "zigbee2mqtt") {
    // zigbee2mqtt/<friendly name>: a flat object of the device's exposed readings. No counter and no
    // time, unless advanced.last_seen is set (epoch ms, or ISO 8601 with or without "Z").
    m.topic = "zigbee2mqtt/+";
    m.device = "topic:1";
    m.time = "payload:last_seen";
    m.time_format = TimeForm::automatic;
    m.exclude = {"last_seen", "update*", "elapsed"};
    return m;
  }
  if (name == "tasmota") {
    // tele/<topic>/SENSOR (the default FullTopic %prefix%/%topic%/): readings nested per sensor,
    // "Time" in the device's local time without an offset (SetOption52 adds one).
    m.topic = "tele/+/SENSOR";
    m.device = "topic:1";
    m.time = "payload:Time";
    m.time_format = TimeForm::local;
    m.time_required = true;
    m.exclude = {"Time"};
    return m;
  }
  if (name == "shelly") {
    // Gen2+ devices with MQTT "RPC status notifications": <prefix>/events/rpc, a JSON-RPC
    // notification whose params hold ts (epoch seconds, with fractions) and one object per
    // component ("switch:0", "temperature:0", ...). NotifyEvent (button presses) carries no readings.
    m.topic = "+/events/rpc";
    m.device = "payload:src";
    m.time = "payload:params.ts";
    m.time_format = TimeForm::epoch_s;
    m.metrics = {"params"};
    m.exclude = {"ts"};
    m.when = "payload:method";
    m.when_values = {"NotifyStatus", "NotifyFullStatus"};
    return m;
  }
  if (name == "chirpstack") {
    // ChirpStack v4 uplink events (JSON marshaler): the frame counter (32 bits; left out of the
    // JSON when 0), the RFC 3339 time, the codec's decoded object.
    m.topic = "application/+/device/+/event/up";
    m.device = "payload:deviceInfo.devEui";
    m.time = "payload:time";
    m.time_format = TimeForm::rfc3339;
    m.seq = "payload:fCnt";
    m.seq_bits = 32;
    m.seq_missing_is_zero = true;
    m.metrics = {"object"};
    m.tags = {{"application", "payload:deviceInfo.applicationName"}, {"device_name", "payload:deviceInfo.deviceName"}};
    return m;
  }
  if (name == "tts") {
    // The Things Stack v3 uplink messages: v3/<app id>@<tenant>/devices/<device id>/up. The session
    // key id changes at each join, when the frame counter restarts: the boot id.
    m.topic = "v3/+/devices/+/up";
    m.device = "payload:end_device_ids.device_id";
    m.time = "payload:received_at";
    m.time_format = TimeForm::rfc3339;
    m.time_required = true;
    m.seq = "payload:uplink_message.f_cnt";
    m.seq_bits = 32;
    m.seq_missing_is_zero = true;
    m.boot = "payload:uplink_message.session_key_id";
    m.metrics = {"uplink_message.decoded_payload"};
    m.tags = {{"application", "payload:end_device_ids.application_ids.application_id"},
              {"dev_eui", "payload:end_device_ids.dev_eui"}};
    return m;
  }
  if (name == "sparkplug") {
    // Sparkplug B (protobuf, ingest/sparkplug.h): names from BIRTH, aliases after it, the node's
    // 8-bit seq with bdSeq as boot id. The protocol's own metrics are not readings.
    m.decoder = SourceMapping::Decoder::sparkplug;
    m.topic = "spBv1.0/#";
    m.device = "topic:3";  // not used: the protocol names the device
    m.exclude = {"bdSeq", "Node Control/*", "Device Control/*", "Properties/*"};
    return m;
  }
  return std::nullopt;
}

}  // namespace gw::ingest
