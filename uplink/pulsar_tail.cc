#include "uplink/pulsar_tail.h"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <memory>

#include "uplink/error.h"

namespace gw::uplink {
namespace {

using Clock = std::chrono::steady_clock;

void put_varint(std::vector<std::uint8_t>& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<std::uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<std::uint8_t>(v));
}

bool get_varint(std::span<const std::uint8_t>& in, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const std::uint8_t b = in.front();
    in = in.subspan(1);
    v |= std::uint64_t{b & 0x7Fu} << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

WsFailure protocol_failure(std::string what) {
  return WsFailure{make_error_code(errc::protocol), 0, std::move(what)};
}

// "L:E" -> position.
std::optional<PulsarPosition> parse_position(std::string_view text) {
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  PulsarPosition p;
  auto a = std::from_chars(text.data(), text.data() + colon, p.ledger);
  auto b = std::from_chars(text.data() + colon + 1, text.data() + text.size(), p.entry);
  if (a.ec != std::errc{} || b.ec != std::errc{} || b.ptr != text.data() + text.size()) return std::nullopt;
  return p;
}

// The topic's entries as (ledger, entries) in order, up to its last confirmed entry (`last`).
struct Ledgers {
  std::vector<std::pair<std::int64_t, std::int64_t>> ledgers;
  PulsarPosition last;
  std::int64_t total = 0;

  // The position of the g-th entry (0-based, g < total).
  PulsarPosition at(std::int64_t g) const {
    for (const auto& [ledger, entries] : ledgers) {
      if (g < entries) return {ledger, g};
      g -= entries;
    }
    return last;
  }
};

// The admin API's internalStats of the topic; an empty Ledgers for a topic that does not exist.
std::expected<Ledgers, WsFailure> ledgers_of(const PulsarTailQuery& q, Clock::time_point deadline) {
  const std::string target = "/admin/v2/persistent/" + url_encode(q.tenant) + "/" + url_encode(q.ns) + "/" +
                             url_encode(q.topic) + "/internalStats";
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  auto answer = http_get(q.service, target, q.token, q.tls, std::max(left, std::chrono::milliseconds(1)));
  if (!answer) return std::unexpected(answer.error());
  Ledgers out;
  if (answer->status == 404) {
    // Pulsar answers a topic it does not have with {"reason": "Topic ... not found"}: nothing held.
    // Any other 404 is a service without the admin API (a separate WebSocket proxy): nothing can be
    // read back, so a batch in flight at a crash may go to the topic twice.
    const auto j = nlohmann::json::parse(answer->body, nullptr, false);
    if (!j.is_object() || !j.contains("reason")) {
      spdlog::warn("Pulsar read-back: {} has no admin API on {}:{} (a separate WebSocket proxy?); resuming from "
                   "the cursor: a batch in flight at a crash may be on the topic twice",
                   target, q.service.host, q.service.port);
    }
    return out;
  }
  if (answer->status == 401 || answer->status == 403) {
    return std::unexpected(WsFailure{make_error_code(errc::unauthorized), answer->status,
                                     "the topic's stats refused with HTTP " + std::to_string(answer->status) +
                                         " (the token's role needs produce or consume permission)"});
  }
  if (answer->status != 200) {
    return std::unexpected(WsFailure{make_error_code(errc::protocol), answer->status,
                                     "the topic's stats: HTTP " + std::to_string(answer->status) + ": " +
                                         answer->body.substr(0, 200)});
  }
  const auto j = nlohmann::json::parse(answer->body, nullptr, false);
  const auto lac = j.is_object() ? j.find("lastConfirmedEntry") : j.end();
  std::optional<PulsarPosition> last;
  if (lac != j.end() && lac->is_string()) last = parse_position(lac->get<std::string>());
  if (!last || !j.contains("ledgers") || !j["ledgers"].is_array()) {
    return std::unexpected(protocol_failure("the topic's stats: unexpected answer: " + answer->body.substr(0, 200)));
  }
  out.last = *last;
  for (const auto& l : j["ledgers"]) {
    const std::int64_t id = l.value("ledgerId", std::int64_t{-1});
    std::int64_t entries = l.value("entries", std::int64_t{0});
    if (id < 0 || id > last->ledger) continue;
    if (id == last->ledger) entries = last->entry + 1;  // the open ledger lists 0 entries
    if (entries > 0) out.ledgers.emplace_back(id, entries);
  }
  for (const auto& [id, entries] : out.ledgers) out.total += entries;
  return out;
}

struct Window {
  std::vector<HeldRange> ranges;  // this gateway's batches read, topic order
  bool reached_after = false;     // one of them ends at or before `after`
};

// Reads the topic from its g-th entry to its last confirmed entry through the WebSocket reader.
std::expected<Window, WsFailure> read_window(const PulsarTailQuery& q, const Ledgers& ledgers, std::int64_t g,
                                             buffer::Seq after, Clock::time_point deadline) {
  WsClient::Options o;
  o.service = q.service;
  o.token = q.token;
  o.tls = q.tls;
  o.connect_timeout = std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()),
                               std::chrono::milliseconds(1));
  // The reader starts after the message it is given: the entry before g (or the earliest).
  const std::string start = g == 0 ? "earliest" : url_encode(base64_encode(encode_message_id(ledgers.at(g - 1))));
  o.target = q.service.prefix + pulsar_topic_path("reader", q.tenant, q.ns, q.topic) + "?messageId=" + start +
             "&receiverQueueSize=1000";
  auto ws = WsClient::connect(o);
  if (!ws) return std::unexpected(ws.error());
  Window out;
  for (;;) {
    const auto now = Clock::now();
    if (now >= deadline) {
      (*ws)->close();
      return std::unexpected(WsFailure{make_error_code(errc::unreachable), 0,
                                       "reading the topic's end timed out"});
    }
    std::vector<std::string> received;
    auto r = (*ws)->poll(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now), received);
    bool done = false;
    for (const std::string& text : received) {
      const auto j = nlohmann::json::parse(text, nullptr, false);
      if (!j.is_object() || !j.contains("messageId") || !j["messageId"].is_string()) {
        return std::unexpected(protocol_failure("reader: unexpected message: " + text.substr(0, 200)));
      }
      const std::string id = j["messageId"].get<std::string>();
      (*ws)->send(nlohmann::json{{"messageId", id}}.dump());  // the reader's flow control
      const auto bytes = base64_decode(id);
      const auto position = bytes ? decode_message_id(*bytes) : std::nullopt;
      if (!position) return std::unexpected(protocol_failure("reader: a message id that is not one: " + id));
      const auto props = j.value("properties", nlohmann::json::object());
      auto prop = [&](const char* name) {
        const auto it = props.find(name);
        return it != props.end() && it->is_string() ? it->get<std::string>() : std::string();
      };
      const std::string type = prop("gw-record-type");
      if (prop("gw-gateway-id") == q.gateway_id && (type.empty() ? "telemetry" : type) == q.record_type) {
        std::uint64_t first = 0, last = 0;
        const std::string f = prop("gw-first-seq"), l = prop("gw-last-seq");
        if (std::from_chars(f.data(), f.data() + f.size(), first).ec == std::errc{} &&
            std::from_chars(l.data(), l.data() + l.size(), last).ec == std::errc{}) {
          out.ranges.push_back({buffer::Seq{first}, buffer::Seq{last}});
          if (buffer::Seq{last} <= after) out.reached_after = true;
        }
      }
      if (*position >= ledgers.last) done = true;
    }
    if (done) break;
    if (!r) return std::unexpected(WsFailure{make_error_code(errc::unreachable), 0, "reader: " + r.error()});
  }
  (*ws)->close();
  return out;
}

}  // namespace

std::vector<std::uint8_t> encode_message_id(PulsarPosition position) {
  std::vector<std::uint8_t> out;
  out.push_back(0x08);  // field 1 (ledgerId), varint
  put_varint(out, static_cast<std::uint64_t>(position.ledger));
  out.push_back(0x10);  // field 2 (entryId), varint
  put_varint(out, static_cast<std::uint64_t>(position.entry));
  return out;
}

std::optional<PulsarPosition> decode_message_id(std::span<const std::uint8_t> in) {
  std::optional<std::int64_t> ledger, entry;
  while (!in.empty()) {
    std::uint64_t key = 0, v = 0;
    if (!get_varint(in, key)) return std::nullopt;
    switch (key & 7) {
      case 0:
        if (!get_varint(in, v)) return std::nullopt;
        if (key >> 3 == 1) ledger = static_cast<std::int64_t>(v);
        if (key >> 3 == 2) entry = static_cast<std::int64_t>(v);
        break;
      case 1:
        if (in.size() < 8) return std::nullopt;
        in = in.subspan(8);
        break;
      case 2:
        if (!get_varint(in, v) || v > in.size()) return std::nullopt;
        in = in.subspan(v);
        break;
      case 5:
        if (in.size() < 4) return std::nullopt;
        in = in.subspan(4);
        break;
      default:
        return std::nullopt;
    }
  }
  if (!ledger || !entry) return std::nullopt;
  return PulsarPosition{*ledger, *entry};
}

std::expected<std::vector<HeldRange>, WsFailure> read_pulsar_tail(const PulsarTailQuery& q, buffer::Seq after) {
  const auto deadline = Clock::now() + q.timeout;
  auto ledgers = ledgers_of(q, deadline);
  if (!ledgers) return std::unexpected(ledgers.error());
  std::vector<HeldRange> held;
  if (ledgers->total == 0) return held;
  for (std::int64_t window = 8;; window *= 8) {
    const std::int64_t g = std::max<std::int64_t>(ledgers->total - window, 0);
    auto w = read_window(q, *ledgers, g, after, deadline);
    if (!w) return std::unexpected(w.error());
    if (w->reached_after || g == 0) {
      for (const HeldRange& r : w->ranges) {
        if (r.last > after) held.push_back(r);
      }
      if (window > 8) {
        spdlog::info("Pulsar read-back of {}: looked {} entries back to find this gateway's batches",
                     q.topic, ledgers->total - g);
      }
      return held;
    }
  }
}

}  // namespace gw::uplink
