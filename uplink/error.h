// The uplink module's error codes (std::error_code category "uplink").
//
// Thread-safety: plain values; the category is immutable.
#pragma once

#include <system_error>

namespace gw::uplink {

enum class errc {
  invalid_argument = 1,  // bad options: empty brokers, topic or gateway id, zero limits
  kafka,                 // librdkafka refused a configuration or an operation; the message is logged
  unreachable,           // no broker (or Pulsar WebSocket service) answered in time
  unknown_topic,         // the topic does not exist on the cluster
  bad_compression,       // not exactly one zstd frame with its content size, or it does not decompress
  too_large,             // the declared decompressed size exceeds kMaxBatchBytes
  malformed,             // not a valid Batch FlatBuffer, or its sequence numbers are inconsistent
  unsupported_version,   // format_version newer than this build understands
  already_started,       // start() called twice
  unauthorized,          // the upstream system refused our credentials (Pulsar: HTTP 401 on the upgrade)
  protocol,              // the upstream system answered outside its protocol (TLS failure, bad upgrade, bad JSON)
  header_mismatch,       // a message header disagrees with the batch it carries (check_batch_headers)
  unsupported_codec,     // gw-codec is not zstd, or gw-dict-id names a dictionary (none is defined)
};
const std::error_category& uplink_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

}  // namespace gw::uplink

template <>
struct std::is_error_code_enum<gw::uplink::errc> : std::true_type {};
