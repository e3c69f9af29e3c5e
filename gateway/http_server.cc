// Boost.Beast adapter for gateway/http_server.h. One io_context on one thread; every connection is
// an asynchronous session with its own timeouts, so a slow or stalled client holds only its socket.
#include "gateway/http_server.h"

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>
#include <charconv>
#include <optional>
#include <thread>

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

struct Shared {
  HttpOptions options;
  HttpHandler handler;
  std::atomic<std::size_t> connections{0};
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Shared> shared) : stream_(std::move(socket)), shared_(std::move(shared)) {
    ++shared_->connections;
  }
  ~Session() { --shared_->connections; }

  void run() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(shared_->options.max_header_bytes));
    parser_->body_limit(shared_->options.max_body_bytes);
    stream_.expires_after(shared_->options.request_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted) {
      return close();
    }
    if (ec == http::error::header_limit) return reply_error(http::status::request_header_fields_too_large, "header too large");
    if (ec == http::error::body_limit) return reply_error(http::status::payload_too_large, "body too large");
    if (ec) return reply_error(http::status::bad_request, ec.message());

    auto& req = parser_->get();
    HttpResponse out;
    try {
      out = shared_->handler(to_request(req));
    } catch (const std::exception& e) {
      spdlog::error("http: handler failed on {}: {}", std::string(req.target().data(), req.target().size()), e.what());
      out = HttpResponse{500, "application/json", R"({"error":"internal error"})"};
    }
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(out.status), req.version());
    res->set(http::field::server, "edge-gateway");
    res->set(http::field::content_type, out.content_type);
    res->set(http::field::cache_control, "no-store");
    res->keep_alive(req.keep_alive());
    res->body() = std::move(out.body);
    res->prepare_payload();
    write(std::move(res));
  }

  void reply_error(http::status status, std::string message) {
    auto res = std::make_shared<http::response<http::string_body>>(status, 11);
    res->set(http::field::content_type, "text/plain");
    res->keep_alive(false);
    res->body() = std::move(message) + "\n";
    res->prepare_payload();
    write(std::move(res));
  }

  void write(std::shared_ptr<http::response<http::string_body>> res) {
    stream_.expires_after(shared_->options.request_timeout);
    bool keep = res->keep_alive();
    http::async_write(stream_, *res, [self = shared_from_this(), res, keep](beast::error_code ec, std::size_t) {
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
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<Shared> shared_;
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
    thread_ = std::thread([this] { io_.run(); });
    return {};
  }

  std::string address() const override { return address_; }

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
