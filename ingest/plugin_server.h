// The gateway's end of ingest mode "plugin": a Unix socket where the mosquitto plugin
// (ingest/mosquitto_plugin.cc) hands over each message on the gateway's topics before mosquitto
// acknowledges it. Each message is admitted like a subscribed one (ingest/admit.h: the same
// validation, dedup key and dead letters), stored at the buffer's durability, and only then
// answered "acknowledged"; a message the buffer cannot take now (full under block, closing, disk
// full) is answered "refused" and the device sends it again. The protocol: plugin_protocol.h.
//
// Thread-safety: stats() from any thread; stop() from one.
#pragma once

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <system_error>

#include "ingest/admit.h"
#include "ingest/mqtt_source.h"
#include "ingest/store.h"

namespace gw::ingest {

struct PluginServerOptions {
  std::string socket_path;  // created (a stale socket file is replaced), mode 0660, removed at stop
  std::string socket_group;  // non-empty: the socket's group (the broker's, e.g. "mosquitto")
  AdmitOptions admit;
  std::size_t max_connections = 8;  // more are closed at once (the broker keeps one)
  std::function<std::int64_t()> clock;  // Unix ms; default: the system clock
};

class PluginServer {
 public:
  // Listens on the socket and serves connections on threads of its own. `store` must outlive it.
  [[nodiscard]] static std::expected<std::unique_ptr<PluginServer>, std::error_code> start(
      PluginServerOptions options, EventStore& store);
  virtual ~PluginServer() = default;  // implementations stop() first
  // Stops listening, ends every connection (a store waiting for room gives up: not answered, so the
  // message is not acknowledged) and joins the threads. Idempotent.
  virtual void stop() = 0;
  // The ingest counters in the same shape as the subscription's: connected = a plugin is connected,
  // store_retries = messages refused (not stored now; the device sends them again).
  virtual MqttStats stats() const = 0;
};

}  // namespace gw::ingest
