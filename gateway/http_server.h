// The HTTP status server: Boost.Beast on its own Asio thread. It answers from a handler that the
// gateway gives it; the handler must only read published snapshots and LMDB read transactions,
// never block on the pipeline (a slow client can only slow its own connection).
//
// The server enforces the transport rules itself, before the handler sees a request: header, body
// and time limits (431, 413, connection closed), malformed requests (400), the connection cap, and
// the bearer token (401 for every path not in open_paths; compared in constant time, never logged).
//
// Thread-safety: start() and stop() from one owning thread; stats() from any thread; the handler is
// called on the server's thread, one request at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace gw::gateway {

struct HttpOptions {
  std::string listen = "127.0.0.1:8080";       // HOST:PORT; port 0 picks a free port
  std::size_t max_connections = 64;            // further connections are closed at once
  std::size_t max_header_bytes = 8 * 1024;     // larger request headers get 431
  std::size_t max_body_bytes = 64 * 1024;      // larger bodies get 413
  // Time to read one whole request (a client trickling bytes is cut off too) and to write one
  // response; an idle keep-alive connection is closed after it as well.
  std::chrono::milliseconds request_timeout{10000};
  // Non-empty: every request, except to open_paths, must carry "Authorization: Bearer <token>"
  // (else 401). A secret: never logged.
  std::string token;
  std::vector<std::string> open_paths = {"/healthz"};  // exact paths served without the token
  // The server's thread runs this much nicer than the process (Linux nice, capped at 19), so that
  // under CPU contention ingest and the uplink run first and HTTP load slows only HTTP answers.
  // 0: the same priority.
  int nice_increment = 10;
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

struct HttpStats {
  std::uint64_t connections_total = 0;    // accepted and served
  std::uint64_t connections_refused = 0;  // closed at once: max_connections reached
  std::size_t connections_open = 0;
  std::uint64_t requests_total = 0;       // complete requests answered by the handler or with 401
  std::uint64_t unauthorized_total = 0;   // 401: missing or wrong token
  std::uint64_t rejected_total = 0;       // malformed or over a size limit (400, 413, 431)
  std::uint64_t timeouts_total = 0;       // connections cut off in the middle of a request or response
  std::uint64_t responses_4xx = 0;        // all 4xx answers, rejected and unauthorized included
  std::uint64_t responses_5xx = 0;
};

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
  virtual HttpStats stats() const = 0;
};

// Answers `bytes` as a connection of the server answers a client that sends them and then closes
// its side: the same parser limits, rejections (400, 413, 431), bearer-token check, handler call
// and response headers. Requests are answered one after another (keep-alive) until the bytes run
// out or a response closes the connection; an incomplete last request gets a 400, as on a socket.
// Returns the responses as written to the wire. No socket, no thread: for tests and fuzzing.
std::string answer_raw_requests(std::string_view bytes, const HttpOptions& options, const HttpHandler& handler);

// Splits "HOST:PORT". Returns false if it is not of that shape.
bool split_host_port(const std::string& listen, std::string& host, std::uint16_t& port);

}  // namespace gw::gateway
