// Boost.Beast adapter for gateway/http_server.h. One io_context on one thread; every connection is
// an asynchronous session with its own timeouts, so a slow or stalled client holds only its socket.
// Counters are atomics written on the server's thread and read by stats() from any thread.
#include "gateway/http_server.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <charconv>
#include <optional>
#include <sstream>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

namespace gw::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string percent_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < in.size()) {
      unsigned value = 0;
      auto [ptr, ec] = std::from_chars(in.data() + i + 1, in.data() + i + 3, value, 16);
      if (ec == std::errc{} && ptr == in.data() + i + 3) {
        out.push_back(static_cast<char>(value));
        i += 2;
      } else {
        out.push_back(c);
      }
    } else {
      out.push_back(c);
    }
  }
  return out;
}

HttpRequest to_request(const http::request<http::string_body>& req) {
  HttpRequest out;
  out.method = std::string(req.method_string());
  std::string_view target(req.target().data(), req.target().size());
  auto qpos = target.find('?');
  out.path = percent_decode(target.substr(0, qpos));
  if (qpos != std::string_view::npos) {
    std::string_view query = target.substr(qpos + 1);
    while (!query.empty()) {
      auto amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      auto eq = pair.find('=');
      if (!pair.empty()) {
        out.query[percent_decode(pair.substr(0, eq))] =
            eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
      }
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  if (auto it = req.find(http::field::authorization); it != req.end()) {
    out.authorization.assign(it->value().data(), it->value().size());
  }
  return out;
}

// A request path or method as it may appear in a log line: bounded, control characters replaced
// (the text comes from the network).
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 200)) out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
  if (text.size() > 200) out += "...";
  return out;
}

// Whether `header` is "Bearer <token>". The comparison (OpenSSL's CRYPTO_memcmp) takes a time that
// depends on the token's length only, not on how much of it a guess got right.
bool bearer_matches(std::string_view header, const std::string& token) {
  constexpr std::string_view scheme = "bearer ";  // the scheme is case-insensitive (RFC 9110)
  auto same = [](char lower, char c) { return lower == std::tolower(static_cast<unsigned char>(c)); };
  if (header.size() < scheme.size() || !std::equal(scheme.begin(), scheme.end(), header.begin(), same)) return false;
  std::string_view given = header.substr(scheme.size());
  while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
  if (given.size() != token.size()) {
    (void)CRYPTO_memcmp(token.data(), token.data(), token.size());
    return false;
  }
  return CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
}

// Makes the calling thread `increment` nicer than it is (Linux threads have their own nice value).
// Only ever lowers the priority, which needs no privilege; a failure changes nothing and is logged.
void lower_priority(int increment) {
  if (increment <= 0) return;
  const auto tid = static_cast<id_t>(::gettid());
  errno = 0;
  int nice = ::getpriority(PRIO_PROCESS, tid);
  if (errno == 0 && ::setpriority(PRIO_PROCESS, tid, std::min(nice + increment, 19)) == 0) return;
  spdlog::warn("http: cannot lower the server thread's priority: {}", std::strerror(errno));
}

struct Counters {
  std::atomic<std::uint64_t> connections_total{0}, connections_refused{0}, requests_total{0}, unauthorized_total{0},
      rejected_total{0}, timeouts_total{0}, responses_4xx{0}, responses_5xx{0};
};

struct Shared {
  HttpOptions options;
  HttpHandler handler;
  std::atomic<std::size_t> connections{0};
  Counters counters;

  bool needs_token(const std::string& path) const {
    if (options.token.empty()) return false;
    for (const auto& open : options.open_paths) {
      if (open == path) return false;
    }
    return true;
  }
};

void count(std::atomic<std::uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;
using RequestParser = http::request_parser<http::string_body>;

void set_limits(RequestParser& parser, const HttpOptions& options) {
  parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
  parser.body_limit(options.max_body_bytes);
}

// The headers every response carries, and the 4xx/5xx counts.
void finish(Shared& shared, Response& res) {
  res.set(http::field::server, "edge-gateway");
  res.set(http::field::cache_control, "no-store");
  if (res.result() == http::status::unauthorized) res.set(http::field::www_authenticate, R"(Bearer realm="edge-gateway")");
  if (res.result_int() >= 500) {
    count(shared.counters.responses_5xx);
  } else if (res.result_int() >= 400) {
    count(shared.counters.responses_4xx);
  }
}

std::shared_ptr<Response> reject(Shared& shared, http::status status, std::string message) {
  count(shared.counters.rejected_total);
  auto res = std::make_shared<Response>(status, 11);
  res->set(http::field::content_type, "application/json");
  res->keep_alive(false);
  res->body() = nlohmann::json{{"error", message}}.dump() + "\n";
  res->prepare_payload();
  finish(shared, *res);
  return res;
}

// The answer to what one read of a request gave (`ec`, and `req` when ec is success); null when
// the connection is to be closed without one (the peer closed between requests, or the server
// stops). Read time-outs are the caller's: only a connection has a clock.
std::shared_ptr<Response> answer(Shared& shared, beast::error_code ec, const Request& req) {
  if (ec == http::error::end_of_stream || ec == asio::error::operation_aborted) return nullptr;
  if (ec == http::error::header_limit) return reject(shared, http::status::request_header_fields_too_large, "header too large");
  if (ec == http::error::body_limit) return reject(shared, http::status::payload_too_large, "body too large");
  if (ec) return reject(shared, http::status::bad_request, "malformed request: " + ec.message());

  HttpRequest request = to_request(req);
  count(shared.counters.requests_total);
  HttpResponse out;
  if (shared.needs_token(request.path) && !bearer_matches(request.authorization, shared.options.token)) {
    count(shared.counters.unauthorized_total);
    out = HttpResponse{401, "application/json", R"({"error":"missing or wrong bearer token"})" "\n"};
  } else {
    try {
      out = shared.handler(request);
    } catch (const std::exception& e) {
      spdlog::error("http: handler failed on {}: {}", printable(request.path), e.what());
      out = HttpResponse{500, "application/json", R"({"error":"internal error"})" "\n"};
    }
  }
  spdlog::debug("http: {} {} -> {} ({} bytes)", printable(request.method), printable(request.path), out.status,
                out.body.size());
  auto res = std::make_shared<Response>(static_cast<http::status>(out.status), req.version());
  res->set(http::field::content_type, out.content_type);
  res->keep_alive(req.keep_alive());
  res->body() = std::move(out.body);
  res->prepare_payload();
  if (req.method() == http::verb::head) res->body().clear();  // Content-Length stays the GET's
  finish(shared, *res);
  return res;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Shared> shared) : stream_(std::move(socket)), shared_(std::move(shared)) {
    ++shared_->connections;
    count(shared_->counters.connections_total);
  }
  ~Session() { --shared_->connections; }

  void run() { read(); }

 private:
  void read() {
    parser_.emplace();
    set_limits(*parser_, shared_->options);
    stream_.expires_after(shared_->options.request_timeout);  // for the whole request, not per read
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == beast::error::timeout) {
      if (parser_->got_some() || buffer_.size() > 0) count(shared_->counters.timeouts_total);  // not an idle keep-alive
      return close();
    }
    auto res = answer(*shared_, ec, parser_->get());
    if (!res) return close();
    write(std::move(res));
  }

  void write(std::shared_ptr<Response> res) {
    stream_.expires_after(shared_->options.request_timeout);
    bool keep = res->keep_alive();
    http::async_write(stream_, *res, [self = shared_from_this(), res, keep](beast::error_code ec, std::size_t) {
      if (ec == beast::error::timeout) count(self->shared_->counters.timeouts_total);
      if (ec || !keep) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<RequestParser> parser_;
  std::shared_ptr<Shared> shared_;
};

// A stream that has nothing more to give, as after the peer closed its side: http::read on it
// parses what its buffer already holds and ends like a connection's read would.
struct ClosedStream {
  template <class Buffers>
  std::size_t read_some(const Buffers&, beast::error_code& ec) {
    ec = asio::error::eof;
    return 0;
  }
  template <class Buffers>
  std::size_t read_some(const Buffers& buffers) {
    beast::error_code ec;
    read_some(buffers, ec);
    throw beast::system_error(ec);
  }
};

class BeastServer final : public HttpServer {
 public:
  BeastServer(std::shared_ptr<Shared> shared) : shared_(std::move(shared)), acceptor_(io_) {}
  ~BeastServer() override { stop(); }

  std::error_code listen(const std::string& host, std::uint16_t port) {
    beast::error_code ec;
    auto address = asio::ip::make_address(host, ec);
    if (ec) return ec;
    tcp::endpoint endpoint(address, port);
    if (acceptor_.open(endpoint.protocol(), ec); ec) return ec;
    if (acceptor_.set_option(asio::socket_base::reuse_address(true), ec); ec) return ec;
    if (acceptor_.bind(endpoint, ec); ec) return ec;
    if (acceptor_.listen(asio::socket_base::max_listen_connections, ec); ec) return ec;
    auto bound = acceptor_.local_endpoint();
    address_ = bound.address().to_string() + ":" + std::to_string(bound.port());
    accept();
    thread_ = std::thread([this] {
      lower_priority(shared_->options.nice_increment);
      io_.run();
    });
    return {};
  }

  std::string address() const override { return address_; }

  HttpStats stats() const override {
    const Counters& c = shared_->counters;
    auto get = [](const std::atomic<std::uint64_t>& v) { return v.load(std::memory_order_relaxed); };
    return HttpStats{get(c.connections_total), get(c.connections_refused), shared_->connections.load(),
                     get(c.requests_total),    get(c.unauthorized_total),   get(c.rejected_total),
                     get(c.timeouts_total),    get(c.responses_4xx),        get(c.responses_5xx)};
  }

  void stop() override {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
    io_.stop();
    thread_.join();
  }

 private:
  void accept() {
    acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        if (shared_->connections.load() >= shared_->options.max_connections) {
          count(shared_->counters.connections_refused);
          beast::error_code ignored;
          socket.close(ignored);
        } else {
          std::make_shared<Session>(std::move(socket), shared_)->run();
        }
      }
      accept();
    });
  }

  std::shared_ptr<Shared> shared_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  std::thread thread_;
  std::string address_;
};

}  // namespace

bool split_host_port(const std::string& listen, std::string& host, std::uint16_t& port) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned value = 0;
  auto text = std::string_view(listen).substr(colon + 1);
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr != text.data() + text.size() || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

std::string answer_raw_requests(std::string_view bytes, const HttpOptions& options, const HttpHandler& handler) {
  Shared shared;
  shared.options = options;
  shared.handler = handler;
  beast::flat_buffer buffer;
  buffer.commit(asio::buffer_copy(buffer.prepare(bytes.size()), asio::buffer(bytes.data(), bytes.size())));
  ClosedStream stream;
  std::string out;
  for (;;) {
    RequestParser parser;
    set_limits(parser, options);
    beast::error_code ec;
    http::read(stream, buffer, parser, ec);
    auto res = answer(shared, ec, parser.get());
    if (!res) break;
    std::ostringstream wire;
    wire << *res;
    out += wire.str();
    if (!res->keep_alive()) break;
  }
  return out;
}

std::expected<std::unique_ptr<HttpServer>, std::error_code> HttpServer::start(const HttpOptions& options,
                                                                              HttpHandler handler) {
  std::string host;
  std::uint16_t port = 0;
  if (!split_host_port(options.listen, host, port)) {
    return std::unexpected(std::make_error_code(std::errc::invalid_argument));
  }
  auto shared = std::make_shared<Shared>();
  shared->options = options;
  shared->handler = std::move(handler);
  auto server = std::make_unique<BeastServer>(std::move(shared));
  if (auto ec = server->listen(host, port)) return std::unexpected(ec);
  return server;
}

}  // namespace gw::gateway
