// Reads a Pulsar topic through the documented WebSocket consumer API
// (ws[s]://HOST:PORT/ws/v2/consumer/persistent/{tenant}/{namespace}/{topic}/{subscription}): the
// consumer side for uplink-cat --pulsar, firmware-sim verify --pulsar and tests. Each message it
// yields is acknowledged ({"messageId":...}) first.
//
// A new subscription is created at the earliest message (subscriptionInitialPosition=Earliest), so
// a fresh subscription name reads the whole topic; an existing one resumes after its last ack.
//
// Thread-safety: one thread at a time per reader.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "uplink/pulsar_ws.h"

namespace gw::uplink {

struct PulsarMessage {
  std::string message_id;  // the service's id (base64), as acknowledged
  std::vector<std::pair<std::string, std::string>> properties;
  std::vector<std::uint8_t> payload;  // decoded from base64
  std::string key;
  std::string publish_time;
  std::uint64_t redelivery_count = 0;

  // The property of that name, if any.
  std::optional<std::string_view> property(std::string_view name) const;
};

struct PulsarReaderOptions {
  std::string service_url;  // ws[s]://HOST:PORT[/PREFIX]; required
  std::string tenant = "public";
  std::string ns = "default";
  std::string topic = "telemetry";
  std::string subscription;  // empty: a new one, "gw-reader-<pid>-<time>" (reads from the start)
  std::string token;         // Authorization: Bearer
  PulsarTls tls;
  std::chrono::milliseconds connect_timeout{5000};
};

class PulsarReader {
 public:
  // Connects and subscribes (Exclusive). Errors: invalid_argument, unreachable, unauthorized
  // (HTTP 401/403), protocol.
  [[nodiscard]] static std::expected<std::unique_ptr<PulsarReader>, std::error_code> open(
      const PulsarReaderOptions& options);
  ~PulsarReader();
  PulsarReader(const PulsarReader&) = delete;
  PulsarReader& operator=(const PulsarReader&) = delete;

  // The next message, waiting up to `timeout`; nullopt if none came. A message whose JSON or
  // base64 is malformed comes back with an empty payload (it still counts, and is acknowledged).
  // Errors: unreachable (the connection was lost; reopen to go on from the last ack).
  [[nodiscard]] std::expected<std::optional<PulsarMessage>, std::error_code> next(std::chrono::milliseconds timeout);

  const std::string& subscription() const;

  struct Impl;

 private:
  explicit PulsarReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw::uplink
