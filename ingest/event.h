// The device event: what a device reports, once decoded, and the codec of its canonical form,
// the Telemetry FlatBuffer of ingest/telemetry.fbs (which is also what the buffer stores).
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <compare>
#include <cstdint>
#include <expected>
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

struct Event {
  DeviceId device;
  DeviceSeq seq;
  EventTime time;
  std::vector<Metric> metrics;
  bool operator==(const Event&) const = default;
};

enum class errc {
  malformed = 1,        // not a valid Telemetry FlatBuffer (verifier failed) or not valid JSON
  unsupported_version,  // schema_version newer than this gateway understands
  missing_field,        // device id, seq or time absent
  bad_value,            // e.g. a non-finite metric value or an empty metric name
};
const std::error_category& ingest_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

inline constexpr std::uint16_t kTelemetrySchemaVersion = 1;

// Encodes the event as a Telemetry FlatBuffer (schema_version = kTelemetrySchemaVersion).
std::vector<std::uint8_t> encode_telemetry(const Event& event);
// Verifies and decodes a Telemetry FlatBuffer. Never trusts the input: any byte string is safe.
[[nodiscard]] std::expected<Event, std::error_code> decode_telemetry(std::span<const std::uint8_t> bytes);

}  // namespace gw::ingest

template <>
struct std::is_error_code_enum<gw::ingest::errc> : std::true_type {};
