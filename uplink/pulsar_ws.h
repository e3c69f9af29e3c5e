// A WebSocket client connection to a Pulsar WebSocket service (ws:// or wss://), for the Pulsar
// sink and the Pulsar reader. Boost.Beast stays inside pulsar_ws.cc: this header shows text
// messages in and out, nothing else.
//
// Also the small pieces of the documented protocol both sides need: the service URL, the topic
// paths (/ws/v2/producer|consumer/persistent/{tenant}/{namespace}/{topic}[/{subscription}]), and
// base64 for payloads (Beast's own codec).
//
// Thread-safety: a WsClient is used by one thread at a time (it runs its own io_context only
// inside connect() and poll()).
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace gw::uplink {

struct PulsarTls {
  std::string ca_file;    // PEM CA bundle for wss://; empty: the system's default paths
  std::string cert_file;  // PEM client certificate (TLS client authentication); empty: none
  std::string key_file;   // its private key (PEM)
  bool verify = true;     // verify the server's certificate and host name (false: testing only)
};

// ws[s]://HOST[:PORT][/PREFIX]: the WebSocket service (a broker with webSocketServiceEnabled or a
// separate proxy). The default port is 80 for ws, 443 for wss.
struct ServiceUrl {
  bool tls = false;
  std::string host;
  std::string port;
  std::string prefix;  // path before /ws/v2/..., without a trailing slash
};
// Errors: errc::invalid_argument (not ws:// or wss://, no host, bad port).
[[nodiscard]] std::expected<ServiceUrl, std::error_code> parse_service_url(std::string_view url);

// /ws/v2/{kind}/persistent/{tenant}/{namespace}/{topic}: kind is "producer" or "consumer" (a
// consumer path continues with /{subscription}). Each segment is percent-encoded.
std::string pulsar_topic_path(std::string_view kind, std::string_view tenant, std::string_view ns,
                              std::string_view topic);
std::string url_encode(std::string_view text);

std::string base64_encode(std::span<const std::uint8_t> bytes);
// nullopt: not valid base64 (bad character, bad length or padding).
std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);

struct WsFailure {
  std::error_code code;   // errc::unreachable, errc::unauthorized, errc::protocol
  int http_status = 0;    // the status of a refused upgrade (401, 404, ...), else 0
  std::string message;    // what happened, for logs and SinkStats::last_error
};

struct HttpAnswer {
  int status = 0;
  std::string body;
};

// One HTTP GET to the service's host and port (https for a wss:// service), `target` after its
// prefix: the broker's admin REST API where the WebSocket service runs inside the broker. The same
// failures as WsClient::connect(); any status is an answer.
[[nodiscard]] std::expected<HttpAnswer, WsFailure> http_get(const ServiceUrl& service, const std::string& target,
                                                            const std::string& token, const PulsarTls& tls,
                                                            std::chrono::milliseconds timeout);

class WsClient {
 public:
  struct Options {
    ServiceUrl service;
    std::string target;  // path and query, e.g. /ws/v2/producer/persistent/t/ns/topic?producerName=x
    std::string token;   // non-empty: "Authorization: Bearer TOKEN" on the upgrade request
    PulsarTls tls;
    std::chrono::milliseconds connect_timeout{10000};  // resolve, connect, TLS and upgrade together
  };
  // Connects and upgrades. A refused upgrade (401: the token was rejected) is errc::unauthorized with
  // its status; a connection that cannot be made, errc::unreachable; TLS or other protocol
  // failures, errc::protocol.
  [[nodiscard]] static std::expected<std::unique_ptr<WsClient>, WsFailure> connect(const Options& options);
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Queues a text message; messages are written in order during poll().
  void send(std::string text);
  // Messages queued and not yet written completely.
  std::size_t unsent() const;
  // Runs the connection's I/O for up to `timeout` (0: only what is ready), returning early once a
  // message arrived; appends what arrived to `received`. An error means the connection is gone
  // (closed by the server, reset, ...): drop the client.
  [[nodiscard]] std::expected<void, std::string> poll(std::chrono::milliseconds timeout,
                                                      std::vector<std::string>& received);
  // Sends a close frame (bounded wait) and closes the socket. Idempotent.
  void close();

  struct Impl;

 private:
  explicit WsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw::uplink
