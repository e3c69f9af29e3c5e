// The HTTP status server: Boost.Beast on its own Asio thread. It answers from a handler that the
// gateway gives it; the handler must only read published snapshots and LMDB read transactions,
// never block on the pipeline (a slow client can only slow its own connection).
//
// Thread-safety: start() and stop() from one owning thread; the handler is called on the server's
// thread, one request at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <system_error>

namespace gw::gateway {

struct HttpOptions {
  std::string listen = "127.0.0.1:8080";       // HOST:PORT; port 0 picks a free port
  std::size_t max_connections = 64;            // further connections are closed at once
  std::size_t max_header_bytes = 8 * 1024;     // larger request headers get 431
  std::size_t max_body_bytes = 64 * 1024;      // larger bodies get 413
  std::chrono::milliseconds request_timeout{10000};  // per read and per write
};

struct HttpRequest {
  std::string method;                          // "GET", ...
  std::string path;                            // "/status" (percent-decoded, no query)
  std::map<std::string, std::string> query;    // decoded query parameters; last one wins
  std::string authorization;                   // the Authorization header, if any
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  // Binds and starts serving on a thread of its own. Fails if the address cannot be bound.
  [[nodiscard]] static std::expected<std::unique_ptr<HttpServer>, std::error_code> start(const HttpOptions& options,
                                                                                        HttpHandler handler);
  virtual ~HttpServer() = default;
  // The bound address, e.g. "127.0.0.1:8080" (useful with port 0).
  virtual std::string address() const = 0;
  // Stops accepting, closes connections, joins the thread. Idempotent.
  virtual void stop() = 0;
};

// Splits "HOST:PORT". Returns false if it is not of that shape.
bool split_host_port(const std::string& listen, std::string& host, std::uint16_t& port);

}  // namespace gw::gateway
