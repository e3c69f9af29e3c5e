// The composition root: builds every stage from a Config, starts them in dependency order, publishes
// the status snapshot that the HTTP server serves, and stops them in reverse order.
//
// Thread-safety: start() and stop() from the owning (main) thread only.
#pragma once

#include <expected>
#include <memory>
#include <string>
#include <system_error>

#include "gateway/config.h"

namespace gw::gateway {

inline constexpr const char* kVersion = "0.1.0";

class App {
 public:
  // Opens the buffer, starts the embedded Kafka (if configured), windowing, the uplink, the HTTP
  // server and, last, the MQTT ingest (so nothing is acknowledged before its consumers exist).
  [[nodiscard]] static std::expected<std::unique_ptr<App>, std::string> start(const Config& config);
  virtual ~App() = default;
  // Stops ingest first (no more PUBACKs), then the uplink (flushes what it can), windowing, HTTP.
  virtual void stop() = 0;
  // The HTTP server's bound address ("127.0.0.1:8080").
  virtual std::string http_address() const = 0;
};

}  // namespace gw::gateway
