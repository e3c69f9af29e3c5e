// The WebSocket client over Boost.Beast (uplink/pulsar_ws.h).
//
// Each step of connect() is an asynchronous operation run on the client's own io_context until it
// completes or the deadline passes, so that a silent server cannot block the caller for longer than
// connect_timeout. After the upgrade, one read is always outstanding (each completion queues the
// message and starts the next read) and writes go out one at a time from a FIFO; poll() runs them.
#include "uplink/pulsar_ws.h"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
// GCC 12 (Debian 12's, for armhf at -O3) warns -Warray-bounds inside Beast's inflate tables
// (boost/beast/zlib/detail/inflate_stream.ipp, inlined here; a false positive GCC 14 does not
// make): the warning is about Boost's code, not ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#include <boost/beast/websocket.hpp>
#pragma GCC diagnostic pop
#include <boost/beast/websocket/ssl.hpp>
#include <algorithm>
#include <charconv>
#include <deque>
#include <variant>

#include "uplink/batch.h"
#include "uplink/error.h"

namespace gw::uplink {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::expected<ServiceUrl, std::error_code> parse_service_url(std::string_view url) {
  ServiceUrl out;
  if (url.starts_with("ws://")) {
    url.remove_prefix(5);
  } else if (url.starts_with("wss://")) {
    url.remove_prefix(6);
    out.tls = true;
  } else {
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  const std::size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : url.substr(slash);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  const std::size_t colon = authority.rfind(':');
  out.host = std::string(authority.substr(0, colon));
  out.port = out.tls ? "443" : "80";
  if (colon != std::string_view::npos) {
    const std::string_view port = authority.substr(colon + 1);
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return std::unexpected(make_error_code(errc::invalid_argument));
    }
    out.port = std::string(port);
  }
  if (out.host.empty()) return std::unexpected(make_error_code(errc::invalid_argument));
  out.prefix = std::string(path);
  return out;
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string pulsar_topic_path(std::string_view kind, std::string_view tenant, std::string_view ns,
                              std::string_view topic) {
  return "/ws/v2/" + std::string(kind) + "/persistent/" + url_encode(tenant) + "/" + url_encode(ns) + "/" +
         url_encode(topic);
}

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  std::string out(beast::detail::base64::encoded_size(bytes.size()), '\0');
  out.resize(beast::detail::base64::encode(out.data(), bytes.data(), bytes.size()));
  return out;
}

std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  // Beast's decoder stops at the first character outside the alphabet; check the whole text first.
  if (text.size() % 4 != 0) return std::nullopt;
  const std::size_t pad = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  for (std::size_t i = 0; i < text.size() - pad; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (std::isalnum(c) == 0 && c != '+' && c != '/') return std::nullopt;
  }
  std::vector<std::uint8_t> out(beast::detail::base64::decoded_size(text.size()));
  const auto [written, read] = beast::detail::base64::decode(out.data(), text.data(), text.size());
  if (read != text.size() - pad) return std::nullopt;  // Beast does not count the padding
  out.resize(written);
  return out;
}

struct WsClient::Impl {
  using Plain = websocket::stream<beast::tcp_stream>;
  using Secure = websocket::stream<beast::ssl_stream<beast::tcp_stream>>;

  asio::io_context ioc;  // first: destroyed last, after the streams that use it
  ssl::context ctx{ssl::context::tls_client};
  std::variant<std::unique_ptr<Plain>, std::unique_ptr<Secure>> ws;
  beast::flat_buffer rbuf;
  std::deque<std::string> inbox;
  std::deque<std::string> outbox;
  bool reading = false;
  bool writing = false;
  bool closed = false;
  std::string error;

  template <class F>
  void with_ws(F&& f) {
    std::visit([&](auto& p) { f(*p); }, ws);
  }

  // Runs the io_context until `done` or the deadline; false on timeout.
  bool run_until(const bool& done, Clock::time_point deadline) {
    ioc.restart();
    while (!done) {
      if (ioc.run_one_until(deadline) == 0) {
        if (done) break;
        if (Clock::now() >= deadline || ioc.stopped()) return false;
        ioc.restart();
      }
    }
    return true;
  }

  void fail(const beast::error_code& ec) {
    if (!error.empty()) return;
    if (ec == websocket::error::closed) {
      with_ws([&](auto& s) {
        error = "closed by the server (code " + std::to_string(static_cast<int>(s.reason().code)) + ")" +
                (s.reason().reason.empty() ? std::string() : ": " + std::string(s.reason().reason.data(), s.reason().reason.size()));
      });
    } else {
      error = ec.message();
    }
  }

  void start_read() {
    if (reading || !error.empty()) return;
    reading = true;
    with_ws([this](auto& s) {
      s.async_read(rbuf, [this](const beast::error_code& ec, std::size_t) {
        reading = false;
        if (ec) return fail(ec);
        inbox.push_back(beast::buffers_to_string(rbuf.data()));
        rbuf.consume(rbuf.size());
        start_read();
      });
    });
  }

  void start_write() {
    if (writing || outbox.empty() || !error.empty()) return;
    writing = true;
    with_ws([this](auto& s) {
      s.async_write(asio::buffer(outbox.front()), [this](const beast::error_code& ec, std::size_t) {
        writing = false;
        if (ec) return fail(ec);
        outbox.pop_front();
        start_write();
      });
    });
  }

  static std::unexpected<WsFailure> timed_out(const char* step) {
    return std::unexpected(WsFailure{make_error_code(errc::unreachable), 0, std::string(step) + " timed out"});
  }

  // Resolves, connects and (for TLS) shakes hands on `next`: a tcp_stream or an ssl_stream over one.
  template <class Next>
  std::expected<void, WsFailure> open_transport(Next& next, const ServiceUrl& service, const PulsarTls& tls,
                                                Clock::time_point deadline) {
    bool done = false;
    beast::error_code ec;
    tcp::resolver resolver(ioc);
    tcp::resolver::results_type endpoints;
    resolver.async_resolve(service.host, service.port, [&](const beast::error_code& e, tcp::resolver::results_type r) {
      ec = e;
      endpoints = std::move(r);
      done = true;
    });
    if (!run_until(done, deadline)) return timed_out("resolving the host");
    if (ec) return std::unexpected(WsFailure{make_error_code(errc::unreachable), 0, "resolve " + service.host + ": " + ec.message()});
    auto& tcp_layer = beast::get_lowest_layer(next);
    tcp_layer.expires_at(deadline);
    done = false;
    tcp_layer.async_connect(endpoints, [&](const beast::error_code& e, const tcp::endpoint&) {
      ec = e;
      done = true;
    });
    if (!run_until(done, deadline)) return timed_out("connecting");
    if (ec) return std::unexpected(WsFailure{make_error_code(errc::unreachable), 0, "connect: " + ec.message()});
    if constexpr (!std::is_same_v<Next, beast::tcp_stream>) {
      if (SSL_set_tlsext_host_name(next.native_handle(), service.host.c_str()) != 1) {
        return std::unexpected(WsFailure{make_error_code(errc::protocol), 0, "TLS: cannot set the server name"});
      }
      if (tls.verify) next.set_verify_callback(ssl::host_name_verification(service.host));
      done = false;
      next.async_handshake(ssl::stream_base::client, [&](const beast::error_code& e) {
        ec = e;
        done = true;
      });
      if (!run_until(done, deadline)) return timed_out("the TLS handshake");
      if (ec) return std::unexpected(WsFailure{make_error_code(errc::protocol), 0, "TLS handshake: " + ec.message()});
    }
    return {};
  }

  // The TLS context for a wss:// (https://) service.
  std::expected<void, WsFailure> load_tls(const PulsarTls& tls) {
    beast::error_code ec;
    ctx.set_verify_mode(tls.verify ? ssl::verify_peer : ssl::verify_none);
    if (tls.ca_file.empty()) {
      ctx.set_default_verify_paths(ec);
    } else {
      ctx.load_verify_file(tls.ca_file, ec);
    }
    if (!ec && !tls.cert_file.empty()) ctx.use_certificate_chain_file(tls.cert_file, ec);
    if (!ec && !tls.key_file.empty()) ctx.use_private_key_file(tls.key_file, ssl::context::pem, ec);
    if (ec) return std::unexpected(WsFailure{make_error_code(errc::protocol), 0, "TLS files: " + ec.message()});
    return {};
  }

  template <class Stream>
  std::expected<void, WsFailure> handshake(Stream& s, const Options& o, Clock::time_point deadline) {
    if (auto r = open_transport(s.next_layer(), o.service, o.tls, deadline); !r) return r;
    auto& tcp_layer = beast::get_lowest_layer(s);
    s.set_option(websocket::stream_base::decorator([token = o.token](websocket::request_type& req) {
      req.set(beast::http::field::user_agent, "edge-gateway");
      if (!token.empty()) req.set(beast::http::field::authorization, "Bearer " + token);
    }));
    s.read_message_max(kMaxBatchBytes * 2);
    websocket::response_type res;
    bool done = false;
    beast::error_code ec;
    s.async_handshake(res, o.service.host + ":" + o.service.port, o.target, [&](const beast::error_code& e) {
      ec = e;
      done = true;
    });
    if (!run_until(done, deadline)) return timed_out("the WebSocket upgrade");
    if (ec) {
      const int status = static_cast<int>(res.result_int());
      if (status == 401 || status == 403) {
        return std::unexpected(WsFailure{make_error_code(errc::unauthorized), status,
                                         "upgrade refused with HTTP " + std::to_string(status) +
                                             (status == 401 ? " (token rejected)"
                                                            : " (the token's role lacks permission on the topic)")});
      }
      if (status == 409) {
        return std::unexpected(WsFailure{make_error_code(errc::protocol), status,
                                         "upgrade refused with HTTP 409: a producer or consumer of that name is "
                                         "still connected to the topic"});
      }
      std::string body = res.body().substr(0, 200);
      std::replace(body.begin(), body.end(), '\n', ' ');
      return std::unexpected(WsFailure{make_error_code(errc::protocol), status,
                                       status != 0 && status != 101
                                           ? "upgrade refused with HTTP " + std::to_string(status) + ": " + body
                                           : "WebSocket upgrade: " + ec.message()});
    }
    tcp_layer.expires_never();
    s.text(true);
    return {};
  }

  std::expected<void, WsFailure> connect(const Options& o) {
    const auto deadline = Clock::now() + o.connect_timeout;
    if (!o.service.tls) {
      auto p = std::make_unique<Plain>(ioc);
      auto r = handshake(*p, o, deadline);
      ws = std::move(p);
      return r;
    }
    if (auto r = load_tls(o.tls); !r) return r;
    auto p = std::make_unique<Secure>(ioc, ctx);
    auto r = handshake(*p, o, deadline);
    ws = std::move(p);
    return r;
  }
};

std::expected<HttpAnswer, WsFailure> http_get(const ServiceUrl& service, const std::string& target,
                                              const std::string& token, const PulsarTls& tls,
                                              std::chrono::milliseconds timeout) {
  namespace http = beast::http;
  WsClient::Impl io;  // its io_context, TLS context and timed steps; declared before the streams below
  const auto deadline = Clock::now() + timeout;
  auto exchange = [&](auto& stream) -> std::expected<HttpAnswer, WsFailure> {
    if (auto r = io.open_transport(stream, service, tls, deadline); !r) return std::unexpected(r.error());
    http::request<http::empty_body> req{http::verb::get, service.prefix + target, 11};
    req.set(http::field::host, service.host + ":" + service.port);
    req.set(http::field::user_agent, "edge-gateway");
    req.set(http::field::accept, "application/json");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    bool done = false;
    beast::error_code ec;
    http::async_write(stream, req, [&](const beast::error_code& e, std::size_t) {
      ec = e;
      done = true;
    });
    if (!io.run_until(done, deadline)) return WsClient::Impl::timed_out("the HTTP request");
    if (ec) return std::unexpected(WsFailure{make_error_code(errc::unreachable), 0, "HTTP request: " + ec.message()});
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    done = false;
    http::async_read(stream, buffer, res, [&](const beast::error_code& e, std::size_t) {
      ec = e;
      done = true;
    });
    if (!io.run_until(done, deadline)) return WsClient::Impl::timed_out("the HTTP answer");
    if (ec) return std::unexpected(WsFailure{make_error_code(errc::unreachable), 0, "HTTP answer: " + ec.message()});
    return HttpAnswer{static_cast<int>(res.result_int()), std::move(res.body())};
  };
  if (!service.tls) {
    beast::tcp_stream stream(io.ioc);
    return exchange(stream);
  }
  if (auto r = io.load_tls(tls); !r) return std::unexpected(r.error());
  beast::ssl_stream<beast::tcp_stream> stream(io.ioc, io.ctx);
  return exchange(stream);
}

WsClient::WsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WsClient::~WsClient() = default;

std::expected<std::unique_ptr<WsClient>, WsFailure> WsClient::connect(const Options& options) {
  auto impl = std::make_unique<Impl>();
  if (auto r = impl->connect(options); !r) return std::unexpected(r.error());
  return std::unique_ptr<WsClient>(new WsClient(std::move(impl)));
}

void WsClient::send(std::string text) { impl_->outbox.push_back(std::move(text)); }

std::size_t WsClient::unsent() const { return impl_->outbox.size(); }

std::expected<void, std::string> WsClient::poll(std::chrono::milliseconds timeout, std::vector<std::string>& received) {
  Impl& s = *impl_;
  if (s.closed) return std::unexpected(std::string("closed"));
  const auto deadline = Clock::now() + timeout;
  s.start_read();
  s.start_write();
  s.ioc.restart();
  s.ioc.poll();
  while (s.inbox.empty() && s.error.empty() && Clock::now() < deadline) {
    if (s.ioc.run_one_until(deadline) == 0) break;
  }
  s.ioc.poll();
  for (auto& m : s.inbox) received.push_back(std::move(m));
  s.inbox.clear();
  if (!s.error.empty()) return std::unexpected(s.error);
  return {};
}

void WsClient::close() {
  Impl& s = *impl_;
  if (s.closed) return;
  s.closed = true;
  bool done = false;  // outlives every handler: they all run before close() returns
  // Flush what is queued (a reader's last acks), for a bounded time.
  const auto flush_until = Clock::now() + std::chrono::seconds(1);
  while (s.error.empty() && (!s.outbox.empty() || s.writing) && Clock::now() < flush_until) {
    s.start_write();
    s.ioc.restart();
    s.ioc.run_one_until(flush_until);
  }
  if (s.error.empty()) {
    s.with_ws([&](auto& ws) {
      beast::get_lowest_layer(ws).expires_after(std::chrono::seconds(1));
      ws.async_close(websocket::close_code::normal, [&](const beast::error_code&) { done = true; });
    });
    (void)s.run_until(done, Clock::now() + std::chrono::seconds(1));
  }
  s.with_ws([](auto& ws) {
    beast::error_code ignored;
    beast::get_lowest_layer(ws).socket().close(ignored);
  });
  // Run the handlers of the aborted operations now, while everything they touch exists.
  s.ioc.restart();
  s.ioc.poll();
}

}  // namespace gw::uplink
