// The Pulsar WebSocket protocol server for the tests (tests/support/pulsar_ws_server.h), over
// Boost.Beast on one I/O thread. Written apart from the gateway's client (its own base64, JSON
// handling and paths), so that the tests check the client against the documented protocol rather
// than against itself.
#include "tests/support/pulsar_ws_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/beast/http.hpp>
// GCC 12 (Debian 12's, for armhf at -O3) warns -Warray-bounds inside Beast's inflate tables
// (boost/beast/zlib/detail/inflate_stream.ipp, inlined here; a false positive GCC 14 does not
// make): the warning is about Boost's code, not ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#include <boost/beast/websocket.hpp>
#pragma GCC diagnostic pop
#include <chrono>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

namespace gw::test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

std::string b64(std::string_view s) {
  std::string out(beast::detail::base64::encoded_size(s.size()), '\0');
  out.resize(beast::detail::base64::encode(out.data(), s.data(), s.size()));
  return out;
}

bool valid_b64(std::string_view s) {
  if (s.size() % 4 != 0) return false;
  const std::size_t pad = s.ends_with("==") ? 2 : s.ends_with('=') ? 1 : 0;
  for (std::size_t i = 0; i < s.size() - pad; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (std::isalnum(c) == 0 && c != '+' && c != '/') return false;
  }
  return true;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      out.emplace_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

// The message id of entry `index` of a topic: base64 of "ledger:entry", as opaque as Pulsar's.
std::string message_id(std::size_t index) { return b64("7:" + std::to_string(index)); }

std::optional<std::size_t> message_index(const std::string& id) {
  std::string raw(beast::detail::base64::decoded_size(id.size()), '\0');
  raw.resize(beast::detail::base64::decode(raw.data(), id.data(), id.size()).first);
  if (!raw.starts_with("7:")) return std::nullopt;
  try {
    return std::stoul(raw.substr(2));
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace

class Session;

struct PulsarWsServer::Impl {
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::thread thread;

  std::mutex mu;
  std::string token;
  bool reject = false;
  std::uint64_t fail_sends = 0;
  std::uint64_t drop_remaining = 0;
  PulsarWsStats st;
  std::map<std::string, std::vector<PulsarWsStoredMessage>> topics;
  std::map<std::string, std::set<std::size_t>> acked;  // "topic/subscription" -> acked indexes
  std::vector<std::weak_ptr<Session>> consumers;

  void accept();
  void notify(const std::string& topic);
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(PulsarWsServer::Impl& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {}

  void start() {
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(stream_, buf_, req_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (!ec) self->on_request();
    });
  }

  const std::string& topic() const { return topic_; }

  // Consumer: pushes every stored message of the topic this subscription has not acked and not
  // been sent on this connection.
  void pump() {
    std::vector<std::string> out;
    {
      std::lock_guard lock(server_.mu);
      const auto& log = server_.topics[topic_];
      const auto& done = server_.acked[topic_ + "/" + subscription_];
      for (; next_ < log.size(); ++next_) {
        if (done.contains(next_)) continue;
        const auto& m = log[next_];
        json props = json::object();
        for (const auto& [k, v] : m.properties) props[k] = v;
        out.push_back(json{{"messageId", m.message_id}, {"payload", m.payload}, {"properties", props},
                           {"publishTime", "2026-01-01T00:00:00.000Z"}, {"redeliveryCount", 0}, {"key", m.key}}
                          .dump());
      }
    }
    for (auto& o : out) write(std::move(o));
  }

 private:
  void reply_http(http::status status, std::string body) {
    auto res = std::make_shared<http::response<http::string_body>>(status, req_.version());
    res->set(http::field::content_type, "application/json");
    res->body() = std::move(body);
    res->prepare_payload();
    res->keep_alive(false);
    http::async_write(stream_, *res, [self = shared_from_this(), res](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  void on_request() {
    const std::string target(req_.target());
    const std::size_t q = target.find('?');
    const std::vector<std::string> parts = split(std::string_view(target).substr(0, q), '/');
    // "", "ws", "v2", kind, "persistent", tenant, namespace, topic[, subscription]
    const bool producer = parts.size() == 8 && parts[3] == "producer";
    const bool consumer = parts.size() == 9 && parts[3] == "consumer";
    bool authorized = true;
    {
      std::lock_guard lock(server_.mu);
      if (server_.reject || !server_.token.empty()) {
        authorized = !server_.reject && req_[http::field::authorization] == "Bearer " + server_.token;
      }
      if (!authorized || (!producer && !consumer) || parts[1] != "ws" || parts[2] != "v2" || parts[4] != "persistent") {
        ++server_.st.upgrades_rejected;
      }
    }
    if (!authorized) return reply_http(http::status::unauthorized, R"({"message":"Authentication required"})");
    if ((!producer && !consumer) || parts[1] != "ws" || parts[2] != "v2" || parts[4] != "persistent") {
      return reply_http(http::status::not_found, R"({"message":"Unknown path"})");
    }
    if (!websocket::is_upgrade(req_)) return reply_http(http::status::bad_request, R"({"message":"Not an upgrade"})");
    producer_ = producer;
    topic_ = percent_decode(parts[5]) + "/" + percent_decode(parts[6]) + "/" + percent_decode(parts[7]);
    if (consumer) subscription_ = percent_decode(parts[8]);
    stream_.expires_never();
    ws_.emplace(std::move(stream_));
    ws_->read_message_max(256u << 20);
    ws_->async_accept(req_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return;
      {
        std::lock_guard lock(self->server_.mu);
        if (self->producer_) {
          ++self->server_.st.producer_connections;
        } else {
          ++self->server_.st.consumer_connections;
          self->server_.consumers.push_back(self->weak_from_this());
        }
      }
      self->read();
      if (!self->producer_) self->pump();
    });
  }

  void read() {
    ws_->async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;
      std::string text = beast::buffers_to_string(self->buf_.data());
      self->buf_.consume(self->buf_.size());
      if (self->producer_ ? self->on_produce(text) : self->on_ack(text)) self->read();
    });
  }

  // One producer message; false when the connection was dropped on purpose.
  bool on_produce(const std::string& text) {
    const json j = json::parse(text, nullptr, false);
    const std::string context = j.is_object() && j.contains("context") && j["context"].is_string()
                                    ? j["context"].get<std::string>() : std::string();
    auto answer = [&](json a) {
      if (!context.empty()) a["context"] = context;
      write(a.dump());
    };
    if (!j.is_object() || !j.contains("payload") || !j["payload"].is_string() ||
        !valid_b64(j["payload"].get<std::string>())) {
      answer({{"result", "send-error:-1"}, {"errorMsg", "Failed to deserialize from JSON"}});
      return true;
    }
    PulsarWsStoredMessage m;
    m.payload = j["payload"].get<std::string>();
    if (j.contains("properties") && j["properties"].is_object()) {
      for (const auto& [k, v] : j["properties"].items()) {
        if (v.is_string()) m.properties[k] = v.get<std::string>();
      }
    }
    if (j.contains("key") && j["key"].is_string()) m.key = j["key"].get<std::string>();
    bool drop = false, fail = false;
    std::string id;
    {
      std::lock_guard lock(server_.mu);
      ++server_.st.messages_received;
      if (server_.drop_remaining == 0 && server_.fail_sends > 0) {
        --server_.fail_sends;
        ++server_.st.send_errors;
        fail = true;
      } else {
        auto& log = server_.topics[topic_];
        m.message_id = id = message_id(log.size());
        log.push_back(std::move(m));
        ++server_.st.messages_stored;
        if (server_.drop_remaining > 0) {
          ++server_.st.unanswered;
          if (--server_.drop_remaining == 0) {
            ++server_.st.drops;
            drop = true;
          } else {
            dropping_ = true;
          }
        }
      }
    }
    server_.notify(topic_);
    if (fail) {
      answer({{"result", "send-error:3"}, {"errorMsg", "injected failure"}});
    } else if (drop) {
      beast::error_code ignored;
      auto& sock = beast::get_lowest_layer(*ws_).socket();
      sock.set_option(asio::socket_base::linger(true, 0), ignored);  // RST: no close frame
      sock.close(ignored);
      return false;
    } else if (!dropping_) {
      answer({{"result", "ok"}, {"messageId", id}});
    }
    return true;
  }

  bool on_ack(const std::string& text) {
    const json j = json::parse(text, nullptr, false);
    if (!j.is_object() || !j.contains("messageId") || !j["messageId"].is_string()) return true;
    const auto index = message_index(j["messageId"].get<std::string>());
    std::lock_guard lock(server_.mu);
    ++server_.st.acks_received;
    if (index) server_.acked[topic_ + "/" + subscription_].insert(*index);
    return true;
  }

  void write(std::string text) {
    out_.push_back(std::move(text));
    if (out_.size() == 1) write_next();
  }

  void write_next() {
    ws_->text(true);
    ws_->async_write(asio::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;
      self->out_.pop_front();
      if (!self->out_.empty()) self->write_next();
    });
  }

  PulsarWsServer::Impl& server_;
  beast::tcp_stream stream_;
  std::optional<websocket::stream<beast::tcp_stream>> ws_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
  bool producer_ = false;
  bool dropping_ = false;  // a drop_after in progress on this connection: answer nothing
  std::string topic_, subscription_;
  std::size_t next_ = 0;
  std::deque<std::string> out_;
};

void PulsarWsServer::Impl::accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec) return;  // closed: the server stops
    std::make_shared<Session>(*this, std::move(socket))->start();
    accept();
  });
}

void PulsarWsServer::Impl::notify(const std::string& topic) {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(mu);
    std::erase_if(consumers, [](const std::weak_ptr<Session>& w) { return w.expired(); });
    for (auto& w : consumers) {
      if (auto s = w.lock(); s && s->topic() == topic) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->pump();
}

PulsarWsServer::PulsarWsServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<PulsarWsServer> PulsarWsServer::start(std::string token, int port) {
  auto impl = std::make_shared<Impl>();
  impl->token = std::move(token);
  const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
  impl->acceptor.open(at.protocol());
  impl->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl->acceptor.bind(at);
  impl->acceptor.listen();
  impl->accept();
  impl->thread = std::thread([p = impl.get()] { p->ioc.run(); });
  return std::unique_ptr<PulsarWsServer>(new PulsarWsServer(std::move(impl)));
}

PulsarWsServer::~PulsarWsServer() {
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int PulsarWsServer::port() const { return impl_->acceptor.local_endpoint().port(); }

std::string PulsarWsServer::url() const { return "ws://127.0.0.1:" + std::to_string(port()); }

void PulsarWsServer::fail_next_sends(std::uint64_t n) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_sends = n;
}

void PulsarWsServer::drop_after(std::uint64_t k) {
  std::lock_guard lock(impl_->mu);
  impl_->drop_remaining = k;
}

void PulsarWsServer::reject_tokens(bool on) {
  std::lock_guard lock(impl_->mu);
  impl_->reject = on;
}

std::vector<PulsarWsStoredMessage> PulsarWsServer::topic(const std::string& path) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->topics.find(path);
  return it == impl_->topics.end() ? std::vector<PulsarWsStoredMessage>{} : it->second;
}

PulsarWsStats PulsarWsServer::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->st;
}

std::string PulsarWsServer::stats_json() const {
  std::lock_guard lock(impl_->mu);
  const PulsarWsStats& s = impl_->st;
  json topics = json::object();
  for (const auto& [name, log] : impl_->topics) topics[name] = log.size();
  return json{{"producer_connections", s.producer_connections}, {"consumer_connections", s.consumer_connections},
              {"upgrades_rejected", s.upgrades_rejected},       {"messages_received", s.messages_received},
              {"messages_stored", s.messages_stored},           {"send_errors", s.send_errors},
              {"drops", s.drops},                               {"unanswered", s.unanswered},
              {"acks_received", s.acks_received},               {"topics", topics}}
      .dump();
}

}  // namespace gw::test
