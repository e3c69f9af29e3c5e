// The device event: what a device reports, once decoded, and the codec of its canonical form,
// the Telemetry FlatBuffer of ingest/telemetry.fbs (which is also what the buffer stores).
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

namespace gw::ingest {

struct DeviceId {
  std::string value;
  auto operator<=>(const DeviceId&) const = default;
};

// Event time: milliseconds since the Unix epoch, by the device's clock.
struct EventTime {
  std::int64_t ms = 0;
  auto operator<=>(const EventTime&) const = default;
};

// The device's own sequence number for its events (monotonic per device; dedup key with DeviceId).
struct DeviceSeq {
  std::uint64_t value = 0;
  auto operator<=>(const DeviceSeq&) const = default;
};

struct Metric {
  std::string name;
  double value = 0;
  bool operator==(const Metric&) const = default;
};

struct Tag {
  std::string key;
  std::string value;
  bool operator==(const Tag&) const = default;
};

struct Event {
  DeviceId device;
  DeviceSeq seq;
  EventTime time;
  std::vector<Metric> metrics;
  std::vector<Tag> tags{};     // labels for grouping across devices (e.g. site); may be empty
  std::uint32_t boot_id = 0;   // changes when the device reboots and restarts its seq; 0 = unknown
  bool operator==(const Event&) const = default;
};

enum class errc {
  malformed = 1,        // not a valid Telemetry FlatBuffer (verifier failed) or not valid JSON
  unsupported_version,  // schema_version newer than this gateway understands
  missing_field,        // device id, seq or time absent
  bad_value,            // e.g. a non-finite metric value, an empty or repeated metric name, text not UTF-8
  oversize,             // the payload is larger than Limits::max_payload_bytes
  bad_timestamp,        // event time too far from the gateway clock (Limits::max_skew)
  conflicting_duplicate,  // a stored reading's identity (device, boot id, seq) with other values
  stale_sequence,       // no boot id, seq behind the dedup window, older than a reboot could be
  mapping,              // a payload on a mapped source's topic that does not fit its mapping (ingest/mapping.h)
  // Stored values (dead letters) keep these numbers: append, never renumber.
};
const std::error_category& ingest_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

// The newest Telemetry schema version this build writes and reads (ingest/telemetry.fbs).
inline constexpr std::uint16_t kTelemetrySchemaVersion = 2;

// A 32-bit digest of the event's values (metrics and tags, in any order; not its device, seq, boot id
// or time), never 0 or 1: two copies of one reading have the same digest, whatever their time_ms. Stable
// across builds and machines (the buffer keeps it: buffer/FORMAT.md, "dedup").
std::uint32_t value_digest(const Event& event);

// Encodes the event as a Telemetry FlatBuffer (schema_version = kTelemetrySchemaVersion).
std::vector<std::uint8_t> encode_telemetry(const Event& event);
// Verifies and decodes a Telemetry FlatBuffer. Never trusts the input: any byte string is safe.
[[nodiscard]] std::expected<Event, std::error_code> decode_telemetry(std::span<const std::uint8_t> bytes);

// The same event as JSON, for devices that cannot do FlatBuffers:
//   {"device":"dev-1","seq":42,"time_ms":1700000000000,"metrics":{"temperature":21.5},
//    "tags":{"site":"lab"},"boot_id":3,"schema_version":2}
// device, seq (>= 1) and time_ms (> 0) are required; metrics, tags, boot_id, schema_version are
// optional. Unknown fields are ignored (newer writers); wrong types are errc::malformed.
[[nodiscard]] std::expected<Event, std::error_code> decode_json(std::span<const std::uint8_t> bytes);
std::string encode_json(const Event& event);

// Whether `s` is valid UTF-8: what FlatBuffers strings must be (its verifier does not check) and
// what the JSON writers (/aggregates, /late, uplink-cat) require.
bool valid_utf8(const std::string& s) noexcept;

enum class PayloadFormat { flatbuffers, json };
// Which encoding a payload is in, by its first bytes (no validation); nullopt if neither.
std::optional<PayloadFormat> payload_format(std::span<const std::uint8_t> bytes) noexcept;
// Decodes either format: a FlatBuffer carries the "GWT1" identifier at bytes 4..8; JSON starts
// (after white space) with '{'. Anything else is errc::malformed.
[[nodiscard]] std::expected<Event, std::error_code> decode_payload(std::span<const std::uint8_t> bytes);

struct Limits {
  std::size_t max_payload_bytes = 64 * 1024;       // larger payloads are errc::oversize
  std::chrono::milliseconds max_skew{7LL * 24 * 3600 * 1000};  // event time within +-this of the gateway clock
};
// Checks what decoding cannot: size and event time against the gateway clock `now_ms` (injected).
[[nodiscard]] std::error_code validate(const Event& event, std::size_t payload_bytes, std::int64_t now_ms,
                                       const Limits& limits);

}  // namespace gw::ingest

template <>
struct std::is_error_code_enum<gw::ingest::errc> : std::true_type {};
