// One MQTT message into one buffer record: decode, validate, the device id from the topic, the
// canonical form and the dedup key. Shared by every ingest mode (the Paho subscription in the
// gateway or in its workers, and the mosquitto plugin's requests), so that each accepts, rejects
// and deduplicates exactly the same messages.
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "buffer/ring.h"
#include "ingest/event.h"

namespace gw::ingest {

struct AdmitOptions {
  // A topic pattern with one "{device}" level, e.g. "devices/{device}/telemetry". When a message's
  // topic matches, its device id is the topic's (the broker's ACLs are per topic). Empty, or a
  // topic that does not match: the payload's device id.
  std::string device_pattern = "devices/{device}/telemetry";
  Limits limits;
};

// A message that decoded and validated. It refers to the caller's payload bytes: keep them alive.
struct Admitted {
  Event event;
  std::span<const std::uint8_t> received;  // the payload as the device sent it
  std::vector<std::uint8_t> encoded;       // the canonical re-encoding, when the payload was not one
  bool device_mismatch = false;            // the payload named another device than the topic (topic won)

  // What the buffer keeps: a Telemetry FlatBuffer naming the right device.
  std::span<const std::uint8_t> stored_bytes() const {
    return encoded.empty() ? received : std::span<const std::uint8_t>(encoded);
  }
  // The record to append, with its identity (device, boot id, seq), time and value digest.
  buffer::RecordIn record() const {
    return {buffer::RecordType::telemetry, stored_bytes(),
            buffer::DedupKey{event.device.value, event.boot_id, event.seq.value, event.time.ms, value_digest(event)}};
  }
};

// Decodes and validates a message received at now_ms; an error is the reason to reject it for good
// (ingest::errc: oversize, malformed, missing_field, ...).
[[nodiscard]] std::expected<Admitted, std::error_code> admit(std::string_view topic,
                                                             std::span<const std::uint8_t> payload, std::int64_t now_ms,
                                                             const AdmitOptions& options);

// What the buffer's answer to an append means for the message: nullopt if it is stored or a copy
// of a stored reading (acknowledge it), else the reason to reject it for good (a conflicting
// duplicate, a stale sequence: kept as a dead letter, as the device sent it).
[[nodiscard]] std::optional<errc> rejection_of(buffer::Seq stored);

// The device id `topic` names under `pattern` (one "{device}" level), or nullopt if it does not match.
[[nodiscard]] std::optional<std::string> device_from_topic(std::string_view pattern, std::string_view topic);

}  // namespace gw::ingest
