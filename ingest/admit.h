// One MQTT message into one buffer record: decode (natively, or through the mapping of its topic's
// source: ingest/mapping.h), validate, the device id from the topic, the canonical form and the
// dedup key. Shared by every ingest mode (the Paho subscription in the
// gateway or in its workers, and the mosquitto plugin's requests), so that each accepts, rejects
// and deduplicates exactly the same messages.
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "buffer/ring.h"
#include "ingest/event.h"
#include "ingest/mapping.h"

namespace gw::ingest {

struct AdmitOptions {
  // A topic pattern with one "{device}" level, e.g. "devices/{device}/telemetry". When a message's
  // topic matches, its device id is the topic's (the broker's ACLs are per topic). Empty, or a
  // topic that does not match: the payload's device id.
  std::string device_pattern = "devices/{device}/telemetry";
  Limits limits;
  // The mapped sources ([[ingest.source]]); a message on a topic none of them matches is native.
  std::shared_ptr<const Mapper> mapper;
};

// Why a message is not admitted: a reason to reject it for good (ingest::errc: oversize, malformed,
// mapping, ...) with what failed (a mapping's path), or no reason: a mapped source's message that is
// not an event (its `when` did not match), acknowledged and not stored.
struct Rejection {
  std::error_code reason;
  std::string detail;
};

// A message that decoded and validated. It refers to the caller's payload bytes: keep them alive.
struct Admitted {
  Event event;
  std::span<const std::uint8_t> received;  // the payload as the device sent it
  std::vector<std::uint8_t> encoded;       // the canonical re-encoding, when the payload was not one
  bool device_mismatch = false;            // the payload named another device than the topic (topic won)
  std::uint8_t seq_bits = 0;               // a mapped source's counter width; 0: [ingest] seq_bits
  bool counter = true;                     // false: a mapped source without a counter (seq = event time)
  bool time_from_arrival = false;          // a mapped source's payload without its time
  std::string dedup_source{};              // whose counter seq is, when not the device's (Sparkplug: its node)

  // What the buffer keeps: a Telemetry FlatBuffer naming the right device.
  std::span<const std::uint8_t> stored_bytes() const {
    return encoded.empty() ? received : std::span<const std::uint8_t>(encoded);
  }
  // The record to append, with its identity (device, boot id, seq), time and value digest.
  buffer::RecordIn record() const {
    return {buffer::RecordType::telemetry, stored_bytes(),
            buffer::DedupKey{dedup_source.empty() ? event.device.value : dedup_source, event.boot_id,
                             event.seq.value, event.time.ms, value_digest(event), seq_bits, counter}};
  }
};

// Decodes and validates a message received at now_ms from the client `client_id` (empty when the
// ingest mode does not know it).
[[nodiscard]] std::expected<Admitted, Rejection> admit(std::string_view topic, std::span<const std::uint8_t> payload,
                                                       std::int64_t now_ms, const AdmitOptions& options,
                                                       std::string_view client_id = {});

// The compiled mappings of `sources` (nullptr when empty). They must compile (the gateway's config
// checks them with Mapper::compile): a mapping that does not is a broken invariant and aborts.
// `state_dir`: where Sparkplug sessions are saved (Mapper::compile).
std::shared_ptr<const Mapper> compile_sources(const std::vector<SourceMapping>& sources,
                                              const std::string& state_dir = {});

// What the buffer's answer to an append means for the message: nullopt if it is stored or a copy
// of a stored reading (acknowledge it), else the reason to reject it for good (a conflicting
// duplicate, a stale sequence: kept as a dead letter, as the device sent it).
[[nodiscard]] std::optional<errc> rejection_of(buffer::Seq stored);

// The device id `topic` names under `pattern` (one "{device}" level), or nullopt if it does not match.
[[nodiscard]] std::optional<std::string> device_from_topic(std::string_view pattern, std::string_view topic);

}  // namespace gw::ingest
