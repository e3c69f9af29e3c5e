// The Pulsar sink's read-back (as read_tail is the Kafka sink's): which batches of this gateway the
// topic holds at its end, so that after a restart or a lost connection the sink sends only what the
// topic lacks (uplink/resume.h), and nothing twice.
//
// The WebSocket API has no "last message" call, so the position comes from the broker's admin REST
// API on the same host and port (GET /admin/v2/persistent/{tenant}/{ns}/{topic}/internalStats: the
// topic's ledgers and its last confirmed entry; a role with produce or consume permission may ask),
// and the messages from the documented WebSocket reader API
// (/ws/v2/reader/persistent/{tenant}/{ns}/{topic}?messageId=...), started a window of entries
// before the end: 8 entries, then 64, 512, ... until a batch of this gateway ending at or before
// `after` appears, or the topic's beginning. The reader needs consume permission on the topic.
//
// Thread-safety: a plain function of its arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "buffer/ring.h"
#include "uplink/pulsar_ws.h"
#include "uplink/resume.h"

namespace gw::uplink {

struct PulsarTailQuery {
  ServiceUrl service;  // the WebSocket service, inside a broker (its admin API on the same port)
  std::string tenant, ns, topic;
  std::string token;
  PulsarTls tls;
  std::string gateway_id;               // whose batches to look for (gw-gateway-id property)
  std::string record_type = "telemetry";  // gw-record-type; absent counts as telemetry
  std::chrono::milliseconds timeout{10000};  // the whole read-back gives up after this
};

// A position in a topic: (ledger, entry), as the broker numbers them.
struct PulsarPosition {
  std::int64_t ledger = -1;
  std::int64_t entry = -1;
  auto operator<=>(const PulsarPosition&) const = default;
};

// The batches of the query's gateway (and record type) at the topic's end that end after `after`,
// in topic order (empty: none, or no such topic). Errors: unreachable (no answer in time, the
// connection failed), unauthorized (401/403), protocol (an answer it cannot read).
[[nodiscard]] std::expected<std::vector<HeldRange>, WsFailure> read_pulsar_tail(const PulsarTailQuery& query,
                                                                              buffer::Seq after);

// Pulsar's MessageIdData (its protocol's protobuf) for a position, and back (nullopt: not one).
std::vector<std::uint8_t> encode_message_id(PulsarPosition position);
std::optional<PulsarPosition> decode_message_id(std::span<const std::uint8_t> bytes);

}  // namespace gw::uplink
