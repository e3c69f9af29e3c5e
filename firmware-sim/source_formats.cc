// The simulated sources' payloads (firmware-sim/source_formats.h), written with nlohmann-json in
// the shape each source's documentation gives.
#include "firmware-sim/source_formats.h"

#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ingest/mapping.h"
#include "ingest/sparkplug.h"

namespace gw::firmware_sim {
namespace {

using json = nlohmann::ordered_json;

constexpr std::int64_t kTasmotaOffsetMs = 3600 * 1000;  // the simulated Tasmota devices' zone, +01:00

// "2024-01-15T10:30:00" (+ ".123" when `fraction`) of `ms` shifted by `offset_ms`.
std::string iso8601(std::int64_t ms, std::int64_t offset_ms, bool fraction) {
  using namespace std::chrono;
  const sys_time<milliseconds> t{milliseconds(ms + offset_ms)};
  const auto day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", static_cast<int>(ymd.year()),
                                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), hms.hours().count(),
                                hms.minutes().count(), hms.seconds().count());
  if (fraction) out += fmt::format(".{:03}", hms.subseconds().count());
  return out;
}

json metrics_object(const ingest::Event& event) {
  json out = json::object();
  for (const auto& m : event.metrics) out[m.name] = m.value;
  return out;
}

// The prefix a preset puts before the metric names of a simulated device ("" when none).
std::string_view name_prefix(SourceFormat format) {
  switch (format) {
    case SourceFormat::tasmota: return "SIM.";
    case SourceFormat::shelly: return "sim:0.";
    default: return "";
  }
}

}  // namespace

std::optional<SourceFormat> source_format(std::string_view name) {
  if (name == "zigbee2mqtt") return SourceFormat::zigbee2mqtt;
  if (name == "tasmota") return SourceFormat::tasmota;
  if (name == "shelly") return SourceFormat::shelly;
  if (name == "chirpstack") return SourceFormat::chirpstack;
  if (name == "tts") return SourceFormat::tts;
  if (name == "sparkplug") return SourceFormat::sparkplug;
  return std::nullopt;
}

bool has_counter(SourceFormat format) {
  return format == SourceFormat::native || format == SourceFormat::chirpstack || format == SourceFormat::tts ||
         format == SourceFormat::sparkplug;
}

std::string source_topic(SourceFormat format, const std::string& device) {
  switch (format) {
    case SourceFormat::zigbee2mqtt: return "zigbee2mqtt/" + device;
    case SourceFormat::tasmota: return "tele/" + device + "/SENSOR";
    case SourceFormat::shelly: return device + "/events/rpc";
    case SourceFormat::chirpstack: return "application/9b0a2f4e-sim/device/" + device + "/event/up";
    case SourceFormat::tts: return "v3/sim-app@sim/devices/" + device + "/up";
    case SourceFormat::sparkplug: return "spBv1.0/sim/NDATA/" + device;
    case SourceFormat::native: break;
  }
  return "devices/" + device + "/telemetry";
}

std::string source_topic(SourceFormat format, const ingest::Event& event) {
  if (format == SourceFormat::sparkplug && event.seq.value == 0) return "spBv1.0/sim/NBIRTH/" + event.device.value;
  return source_topic(format, event.device.value);
}

std::int64_t source_time(SourceFormat format, std::int64_t ms) {
  if (format == SourceFormat::tasmota) return ms - ms % 1000;
  if (format == SourceFormat::shelly) return ms - ms % 10;
  return ms;
}

std::string encode_source(SourceFormat format, const ingest::Event& e) {
  json doc;
  const std::string& device = e.device.value;
  switch (format) {
    case SourceFormat::zigbee2mqtt:
      doc = metrics_object(e);
      doc["state"] = "ON";  // a text beside the readings (a plug's state): not a metric
      doc["last_seen"] = e.time.ms;
      break;
    case SourceFormat::tasmota:
      doc["Time"] = iso8601(e.time.ms, kTasmotaOffsetMs, false);
      doc["SIM"] = metrics_object(e);
      doc["TempUnit"] = "C";
      break;
    case SourceFormat::shelly:
      doc["src"] = device;
      doc["dst"] = device + "/events";
      doc["method"] = "NotifyStatus";
      doc["params"] = json::object();
      // Two decimals, as Shelly writes it; a JSON number, so printed from the integer parts.
      doc["params"]["ts"] = json::parse(fmt::format("{}.{:02}", e.time.ms / 1000, e.time.ms % 1000 / 10));
      doc["params"]["sim:0"] = metrics_object(e);
      break;
    case SourceFormat::chirpstack:
      doc["deduplicationId"] = fmt::format("{}-{}", device, e.seq.value);
      doc["time"] = iso8601(e.time.ms, 0, true) + "+00:00";
      doc["deviceInfo"] = {{"tenantName", "sim"}, {"applicationName", "sim-app"}, {"deviceName", device},
                           {"devEui", device}};
      doc["devAddr"] = "01020304";
      if (e.seq.value != 0) doc["fCnt"] = e.seq.value;  // proto3 JSON leaves 0 out
      doc["fPort"] = 1;
      doc["object"] = metrics_object(e);
      doc["rxInfo"] = json::array({{{"gatewayId", "0016c001f153a14c"}, {"rssi", -57}, {"snr", 9.5}}});
      break;
    case SourceFormat::tts:
      doc["end_device_ids"] = {{"device_id", device}, {"application_ids", {{"application_id", "sim-app"}}},
                               {"dev_eui", "70B3D57ED0000000"}};
      doc["received_at"] = iso8601(e.time.ms, 0, true) + "Z";
      doc["uplink_message"] = {{"session_key_id", fmt::format("sk-{}", e.boot_id)},
                               {"f_port", 1},
                               {"decoded_payload", metrics_object(e)},
                               {"rx_metadata", json::array({{{"rssi", -101}, {"snr", -4.25}}})}};
      if (e.seq.value != 0) doc["uplink_message"]["f_cnt"] = e.seq.value;
      break;
    case SourceFormat::sparkplug: {
      ingest::SparkplugPayload p{static_cast<std::uint64_t>(e.time.ms), e.seq.value, {}};
      const bool birth = e.seq.value == 0;
      if (birth) p.metrics.push_back({"bdSeq", std::nullopt, 4, static_cast<std::int64_t>(e.boot_id)});
      for (std::size_t i = 0; i < e.metrics.size(); ++i) {
        p.metrics.push_back({birth ? e.metrics[i].name : std::string(), i + 1, 10, e.metrics[i].value});
      }
      return ingest::encode_sparkplug(p);
    }
    case SourceFormat::native: return ingest::encode_json(e);
  }
  return doc.dump();
}

ingest::Event stored_event(SourceFormat format, const ingest::Event& event) {
  ingest::Event out = event;
  const std::string_view prefix = name_prefix(format);
  for (auto& m : out.metrics) m.name = std::string(prefix) + m.name;
  switch (format) {
    case SourceFormat::zigbee2mqtt:
    case SourceFormat::tasmota:
    case SourceFormat::shelly:
      out.seq.value = static_cast<std::uint64_t>(event.time.ms);
      out.boot_id = 0;
      break;
    case SourceFormat::chirpstack:
      out.boot_id = 0;
      out.tags = {{"application", "sim-app"}, {"device_name", event.device.value}};
      break;
    case SourceFormat::tts:
      out.boot_id = ingest::text_boot_id(fmt::format("sk-{}", event.boot_id));
      out.tags = {{"application", "sim-app"}, {"dev_eui", "70B3D57ED0000000"}};
      break;
    case SourceFormat::sparkplug:
      out.device.value = "sim/" + event.device.value;
      out.seq.value = event.seq.value & 0xff;
      out.boot_id = event.boot_id + 1;  // bdSeq + 1
      break;
    case SourceFormat::native: break;
  }
  return out;
}

}  // namespace gw::firmware_sim
