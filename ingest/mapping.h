// Mapped sources: JSON payloads in other people's formats (zigbee2mqtt, Tasmota, Shelly, ChirpStack,
// The Things Stack, or a custom one) turned into device events. A mapping names, per MQTT topic
// filter, where the device id, the event time, the sequence, the boot id, the metrics and the tags
// come from; a preset (`preset_mapping`) is a mapping written once for a known source.
//
// Identity (ingest/README.md "Mapped sources"): a source with a counter keeps (device, boot, seq) at
// its own width (`seq_bits`); a source without one is identified by its event time: the event's seq
// is its time in ms (a redelivered message carries the same time and values: a duplicate), and the
// buffer does not count gaps or wraps for it (`counter = false`).
//
// Thread-safety: SourceMapping is a plain value; a compiled Mapper is immutable, decode() may be
// called from any thread.
#pragma once

#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ingest/event.h"

namespace gw::ingest {

class SparkplugSessions;

// How a payload's time field is written.
enum class TimeForm {
  epoch_s,   // a number of seconds since the epoch (fractions kept to the ms)
  epoch_ms,  // an integer (or number) of milliseconds
  epoch_us,  // microseconds
  rfc3339,   // "2024-01-15T10:30:00.123Z", "...+01:00" (an offset is required)
  local,     // ISO 8601 without an offset, in `time_zone` (an offset, when present, wins)
  automatic, // a number is epoch ms, a string RFC 3339 (zigbee2mqtt's last_seen, whichever form it is set to)
};

// One [[ingest.source]] table. Field references are "topic:N" (topic level N, 0-based), "payload:PATH"
// (dotted path into the JSON document; array elements by index, "rxInfo.0.rssi"), "client_id" (the
// publisher's MQTT client id: ingest mode plugin only) or, for tags only, any other text (a fixed value).
struct SourceMapping {
  std::string preset;            // the preset it started from (empty: none); for messages
  // How payloads are read: JSON through the keys below, or Sparkplug B protobuf (ingest/sparkplug.h:
  // device, time, seq and boot come from the protocol; include/exclude apply).
  enum class Decoder { json, sparkplug } decoder = Decoder::json;
  std::string topic;             // MQTT topic filter (+ and # wildcards); required
  std::string device;            // required: "topic:N", "payload:PATH" or "client_id"
  std::string time;              // "payload:PATH"; empty: the arrival time (counted as such)
  TimeForm time_format = TimeForm::epoch_ms;
  // For TimeForm::local: "UTC", a fixed offset "+01:00" / "-05:30", or "gateway" (the gateway's own
  // zone, TZ, with its daylight-saving rules; an hour repeated in autumn is taken as the first one).
  std::string time_zone = "UTC";
  bool time_required = false;    // true: a message without its time is refused (else: arrival time)
  std::string seq;               // "payload:PATH"; empty: none (identity by event time)
  std::uint8_t seq_bits = 32;    // 8, 16, 32 or 64: the counter's width (wraps after 2^bits - 1)
  bool seq_missing_is_zero = false;  // proto3 JSON writers leave a counter of 0 out
  std::string boot;              // "payload:PATH" of a boot or session id (integer, or text hashed); empty: none
  std::vector<std::string> metrics{""};  // payload paths whose numeric leaves are metrics ("" = the root)
  std::string separator = ".";   // joins the levels of a nested metric's name
  std::vector<std::string> include;  // metric names kept (empty: all); "prefix*" matches a prefix
  std::vector<std::string> exclude;  // metric names dropped; same patterns
  std::vector<std::pair<std::string, std::string>> tags;  // key -> field reference or fixed text
  // Only messages whose text at `when` is one of `when_values` are events; others are ignored
  // (acknowledged, counted, not stored). Empty: every message.
  std::string when;
  std::vector<std::string> when_values;
};

// The presets' names, and a preset's mapping; nullopt for an unknown name.
std::span<const std::string_view> preset_names();
std::optional<SourceMapping> preset_mapping(std::string_view name);

// A mapping that does not compile: which one, which key, why.
struct MappingError {
  std::size_t index = 0;  // into the vector given to compile()
  std::string key;        // "device", "time", ...
  std::string message;
};

// What a payload that does not fit its mapping lacks: the path (or topic level) that failed.
struct MappingFailure {
  errc reason = errc::mapping;  // errc::mapping, or errc::malformed for a payload that is not JSON
  std::string path;             // e.g. "uplink_message.f_cnt: expected an unsigned integer"
};

struct Mapped {
  Event event;
  std::uint8_t seq_bits = 64;     // the counter's width
  bool counter = true;            // false: seq is the event time (no counter in the source)
  bool time_from_arrival = false; // the payload had no time
  std::string dedup_source{};     // whose counter seq is, when not the device's (Sparkplug: the node)
};

// The outcome of decode(): an event, a failure, or nothing (a `when` that did not match).
using MapResult = std::expected<std::optional<Mapped>, MappingFailure>;

class Mapper {
 public:
  // Checks and prepares the mappings (paths split, zones parsed, patterns compiled). `state_dir`:
  // where Sparkplug sessions are saved (empty: not saved).
  [[nodiscard]] static std::expected<std::shared_ptr<const Mapper>, MappingError> compile(
      const std::vector<SourceMapping>& sources, const std::string& state_dir = {});
  ~Mapper();

  struct Compiled;
  // The first mapping whose topic filter matches `topic`, or nullptr (a native payload).
  const Compiled* match(std::string_view topic) const;
  // Decodes `payload` with the mapping match() returned; `now_ms` is the arrival time, `client_id`
  // the publisher's (empty when unknown).
  [[nodiscard]] MapResult decode(const Compiled& mapping, std::string_view topic, std::string_view client_id,
                                 std::span<const std::uint8_t> payload, std::int64_t now_ms) const;
  std::size_t size() const;
  // Sparkplug NDEATH and DDEATH messages per device (empty without a Sparkplug source).
  std::map<std::string, std::uint64_t> sparkplug_deaths() const;

 private:
  Mapper() = default;
  std::vector<std::unique_ptr<Compiled>> sources_;
  std::unique_ptr<SparkplugSessions> sparkplug_;  // with a Sparkplug source; internally locked
};

// Whether a metric of this name is kept under the mapping's include and exclude lists.
[[nodiscard]] bool metric_kept(const SourceMapping& source, std::string_view name);
// Whether this build reads Sparkplug B (CMake GW_SPARKPLUG).
bool sparkplug_supported();

// The boot id a mapping takes from a text boot or session id (FNV-1a, never 0). Stable: it is part
// of the identity the buffer keeps.
std::uint32_t text_boot_id(std::string_view text);

// Whether MQTT topic filter `filter` matches `topic` (+ one level, # the rest).
[[nodiscard]] bool topic_matches(std::string_view filter, std::string_view topic);

// A time zone for local date-times: a fixed offset, or the gateway's own zone (TZ).
struct LocalZone {
  std::int64_t offset_ms = 0;
  bool gateway = false;
};
// "UTC", "Z", "+01:00", "-0530", "gateway"; nullopt for anything else.
[[nodiscard]] std::optional<LocalZone> parse_zone(std::string_view text);
// Milliseconds since the epoch of an ISO 8601 / RFC 3339 date-time ("2024-01-15T10:30:00",
// optional fraction up to 9 digits, optional "Z" or +hh:mm). A text without an offset is in `zone`;
// with zone nullopt an offset is required.
[[nodiscard]] std::optional<std::int64_t> parse_iso8601(std::string_view text, std::optional<LocalZone> zone);

}  // namespace gw::ingest
