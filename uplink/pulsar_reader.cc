// The WebSocket consumer (uplink/pulsar_reader.h).
#include "uplink/pulsar_reader.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <deque>
#include <nlohmann/json.hpp>

#include "uplink/error.h"

namespace gw::uplink {

std::optional<std::string_view> PulsarMessage::property(std::string_view name) const {
  for (const auto& [k, v] : properties) {
    if (k == name) return v;
  }
  return std::nullopt;
}

struct PulsarReader::Impl {
  std::string subscription;
  std::unique_ptr<WsClient> ws;
  std::deque<std::string> pending;  // messages received, not yet returned
};

PulsarReader::PulsarReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PulsarReader::~PulsarReader() {
  if (impl_->ws) impl_->ws->close();
}

const std::string& PulsarReader::subscription() const { return impl_->subscription; }

std::expected<std::unique_ptr<PulsarReader>, std::error_code> PulsarReader::open(const PulsarReaderOptions& o) {
  auto service = parse_service_url(o.service_url);
  if (!service || o.tenant.empty() || o.ns.empty() || o.topic.empty()) {
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  auto impl = std::make_unique<Impl>();
  impl->subscription = o.subscription;
  if (impl->subscription.empty()) {
    impl->subscription = "gw-reader-" + std::to_string(::getpid()) + "-" +
                         std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  }
  WsClient::Options w;
  w.service = std::move(*service);
  w.target = w.service.prefix + pulsar_topic_path("consumer", o.tenant, o.ns, o.topic) + "/" +
             url_encode(impl->subscription) + "?subscriptionType=Exclusive&subscriptionInitialPosition=Earliest";
  w.token = o.token;
  w.tls = o.tls;
  w.connect_timeout = o.connect_timeout;
  auto c = WsClient::connect(w);
  if (!c) {
    spdlog::error("pulsar reader: {}{}: {}", o.service_url, w.target, c.error().message);
    return std::unexpected(c.error().code);
  }
  impl->ws = std::move(*c);
  return std::unique_ptr<PulsarReader>(new PulsarReader(std::move(impl)));
}

std::expected<std::optional<PulsarMessage>, std::error_code> PulsarReader::next(std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  if (s.pending.empty()) {
    std::vector<std::string> got;
    auto r = s.ws->poll(timeout, got);
    for (auto& m : got) s.pending.push_back(std::move(m));
    if (!r && s.pending.empty()) {
      spdlog::warn("pulsar reader: {}", r.error());
      return std::unexpected(make_error_code(errc::unreachable));
    }
  }
  if (s.pending.empty()) return std::optional<PulsarMessage>{};
  const std::string text = std::move(s.pending.front());
  s.pending.pop_front();
  PulsarMessage m;
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("messageId") || !j["messageId"].is_string()) {
    spdlog::warn("pulsar reader: not a message: {}", text.substr(0, 200));
    return std::optional<PulsarMessage>{std::move(m)};
  }
  m.message_id = j["messageId"].get<std::string>();
  if (auto p = j.find("payload"); p != j.end() && p->is_string()) {
    if (auto bytes = base64_decode(p->get<std::string>())) m.payload = std::move(*bytes);
  }
  if (auto p = j.find("properties"); p != j.end() && p->is_object()) {
    for (const auto& [k, v] : p->items()) {
      if (v.is_string()) m.properties.emplace_back(k, v.get<std::string>());
    }
  }
  m.key = j.value("key", std::string());
  m.publish_time = j.value("publishTime", std::string());
  if (auto r = j.find("redeliveryCount"); r != j.end() && r->is_number_unsigned()) m.redelivery_count = r->get<std::uint64_t>();
  s.ws->send(nlohmann::json{{"messageId", m.message_id}}.dump());
  return std::optional<PulsarMessage>{std::move(m)};
}

}  // namespace gw::uplink
