// Routing and parameter checks of the HTTP API (see gateway/api.h); JSON by nlohmann::json.
#include "gateway/api.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <initializer_list>
#include <map>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gateway/metrics.h"
#include "gateway/status_page.h"

namespace gw::gateway {
namespace {

using json = nlohmann::json;

// JSON text of a value that may hold bytes from the network (a path, a parameter's name or value)
// or from devices: invalid UTF-8 becomes U+FFFD instead of an exception (which was a 500).
std::string json_text(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse json_response(int status, const json& body) { return {status, "application/json", json_text(body) + "\n"}; }

HttpResponse bad_parameter(std::string_view name, std::string_view why) {
  return json_response(400, {{"error", "bad parameter '" + std::string(name) + "': " + std::string(why)}});
}

// 400 for the first parameter not in `allowed`.
std::optional<HttpResponse> only_params(const HttpRequest& req, std::initializer_list<std::string_view> allowed) {
  for (const auto& [name, value] : req.query) {
    if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;
    std::string list;
    for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    return bad_parameter(name, list.empty() ? "this path takes no parameters" : "unknown parameter (" + list + ")");
  }
  return std::nullopt;
}

// Reads an optional integer parameter in [min, max]; an error names the parameter.
std::optional<HttpResponse> int_param(const HttpRequest& req, std::string_view name, std::int64_t min,
                                      std::int64_t max, std::optional<std::int64_t>& out) {
  auto it = req.query.find(std::string(name));
  if (it == req.query.end()) return std::nullopt;
  const std::string& text = it->second;
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec == std::errc::result_out_of_range) {
    return bad_parameter(name, text.empty() ? "empty" : "out of range");
  }
  if (ec != std::errc{} || ptr != text.data() + text.size()) return bad_parameter(name, "not an integer");
  if (v < min || v > max) return bad_parameter(name, "out of range " + std::to_string(min) + ".." + std::to_string(max));
  out = v;
  return std::nullopt;
}

// Reads an optional non-empty string parameter.
std::optional<HttpResponse> string_param(const HttpRequest& req, std::string_view name,
                                         std::optional<std::string>& out) {
  auto it = req.query.find(std::string(name));
  if (it == req.query.end()) return std::nullopt;
  if (it->second.empty()) return bad_parameter(name, "empty");
  out = it->second;
  return std::nullopt;
}

// JSON of a list of aggregates, written directly (the hot path of /aggregates: several times
// faster than building nlohmann objects); strings are escaped by nlohmann.
std::string aggregates_json(const std::vector<windowing::Aggregate>& list) {
  std::string out = "[";
  auto out_it = std::back_inserter(out);
  auto number = [&](const char* name, double v) {
    if (std::isfinite(v)) {
      fmt::format_to(out_it, ",\"{}\":{}", name, v);
    } else {
      fmt::format_to(out_it, ",\"{}\":null", name);  // as nlohmann writes them
    }
  };
  for (const auto& a : list) {
    if (out.size() > 1) out += ',';
    fmt::format_to(out_it, R"({{"id":{},"kind":"{}",)", a.id, windowing::to_string(a.kind));
    if (a.scope == windowing::Scope::device) {
      fmt::format_to(out_it, R"("device":{})", json_text(a.key));
    } else {
      fmt::format_to(out_it, R"("group":{},"group_tag":{})", json_text(a.key), json_text(a.group_tag));
    }
    fmt::format_to(out_it, R"(,"metric":{},"window_start_ms":{},"window_end_ms":{},"closed_at_ms":{},"count":{})",
                   json_text(a.metric), a.window_start.ms, a.window_end.ms, a.closed_at_ms, a.count);
    number("sum", a.sum);
    number("min", a.min);
    number("max", a.max);
    number("mean", a.mean);
    number("stddev", a.stddev);
    number("first", a.first);
    fmt::format_to(out_it, R"(,"first_time_ms":{})", a.first_time.ms);
    number("last", a.last);
    fmt::format_to(out_it, R"(,"last_time_ms":{})", a.last_time.ms);
    number("rate_per_s", a.rate);
    if (a.has_quantiles) {
      out += R"(,"quantiles":{)";
      fmt::format_to(out_it, R"("p50":{},"p90":{},"p99":{})", std::isfinite(a.p50) ? a.p50 : 0.0,
                     std::isfinite(a.p90) ? a.p90 : 0.0, std::isfinite(a.p99) ? a.p99 : 0.0);
      out += '}';
    }
    out += '}';
  }
  out += "]\n";
  return out;
}

// GET /aggregates?device=|group=&metric=&window=&from=&to=&limit=: stored closed windows, newest first.
HttpResponse aggregates(const ApiSources& sources, const HttpRequest& req) {
  if (auto bad = only_params(req, {"device", "group", "metric", "window", "from", "to", "limit"})) return *bad;
  std::optional<std::string> device, group, metric, window;
  std::optional<std::int64_t> from, to, limit;
  if (auto bad = string_param(req, "device", device)) return *bad;
  if (auto bad = string_param(req, "group", group)) return *bad;
  if (device && group) return bad_parameter("group", "give either device or group");
  if (auto bad = string_param(req, "metric", metric)) return *bad;
  if (auto bad = string_param(req, "window", window)) return *bad;
  if (auto bad = int_param(req, "from", 0, INT64_MAX, from)) return *bad;
  if (auto bad = int_param(req, "to", 0, INT64_MAX, to)) return *bad;
  if (auto bad = int_param(req, "limit", 1, 10000, limit)) return *bad;
  if (from && to && *from > *to) return bad_parameter("to", "before from");
  windowing::Query q;
  if (device) q.device = ingest::DeviceId{*device};
  q.group = group;
  q.metric = metric;
  if (window) {
    for (auto k : {windowing::WindowKind::tumbling, windowing::WindowKind::hopping, windowing::WindowKind::session}) {
      if (*window == windowing::to_string(k)) q.kind = k;
    }
    if (!q.kind) return bad_parameter("window", "one of tumbling, hopping, session");
  }
  if (from) q.from = ingest::EventTime{*from};
  if (to) q.to = ingest::EventTime{*to};
  if (limit) q.limit = static_cast<std::size_t>(*limit);
  return {200, "application/json", aggregates_json(sources.aggregates(q))};
}

// GET /late?limit=&before=: the newest events that arrived after their windows had closed; the
// next page with before = the last id of this one.
HttpResponse late_list(const ApiSources& sources, const HttpRequest& req) {
  if (auto bad = only_params(req, {"limit", "before"})) return *bad;
  std::optional<std::int64_t> limit, before;
  if (auto bad = int_param(req, "limit", 1, 10000, limit)) return *bad;
  if (auto bad = int_param(req, "before", 1, INT64_MAX, before)) return *bad;
  if (!sources.late) return json_response(503, {{"error", "the windowing stage is not running yet"}});
  json out = json::array();
  std::optional<std::uint64_t> below;
  if (before) below = static_cast<std::uint64_t>(*before);
  for (const auto& e : sources.late(static_cast<std::size_t>(limit.value_or(100)), below)) {
    json metrics = json::object();
    for (const auto& m : e.metrics) metrics[m.name] = m.value;
    out.push_back({{"id", e.id},
                   {"device", e.device.value},
                   {"seq", e.seq.value},
                   {"time_ms", e.time.ms},
                   {"seen_at_ms", e.seen_at_ms},
                   {"watermark_ms", e.watermark_ms},
                   {"windows_missed", e.windows_missed},
                   {"windows_folded", e.windows_folded},
                   {"metrics", metrics}});
  }
  return json_response(200, out);
}

// GET /devices?limit=: the devices that have closed windows, with their newest window (last seen,
// in event time) and the events per second in it. Derived from the aggregates store in one pass.
HttpResponse devices(const ApiSources& sources, const HttpRequest& req) {
  if (auto bad = only_params(req, {"limit"})) return *bad;
  std::optional<std::int64_t> limit;
  if (auto bad = int_param(req, "limit", 1, 100000, limit)) return *bad;
  struct Device {
    std::int64_t start = 0, end = 0;
    std::uint64_t events = 0;  // in the newest window: the largest count of its metrics
    std::vector<std::string> metrics;
  };
  std::map<std::string, Device> seen;
  windowing::Query all;
  all.limit = SIZE_MAX;
  for (const auto& a : sources.aggregates(all)) {
    if (a.scope != windowing::Scope::device) continue;
    auto [it, fresh] = seen.try_emplace(a.key);
    Device& d = it->second;
    if (fresh || a.window_start.ms > d.start) {
      d.start = a.window_start.ms;
      d.end = a.window_end.ms;
      d.events = 0;
    }
    if (a.window_start.ms == d.start) d.events = std::max(d.events, a.count);
    if (std::find(d.metrics.begin(), d.metrics.end(), a.metric) == d.metrics.end()) d.metrics.push_back(a.metric);
  }
  json out = json::array();
  for (auto& [name, d] : seen) {
    if (limit && out.size() >= static_cast<std::size_t>(*limit)) break;
    std::sort(d.metrics.begin(), d.metrics.end());
    double window_s = static_cast<double>(d.end - d.start) / 1000.0;
    out.push_back({{"device", name},
                   {"last_window_start_ms", d.start},
                   {"last_window_end_ms", d.end},
                   {"events_per_s", window_s > 0 ? static_cast<double>(d.events) / window_s : 0.0},
                   {"metrics", d.metrics}});
  }
  return json_response(200, out);
}

// GET /dlq?reason=&limit=: the newest rejected messages, with their first bytes in hex.
HttpResponse dead_letter_list(const ApiSources& sources, const HttpRequest& req) {
  if (auto bad = only_params(req, {"reason", "limit"})) return *bad;
  std::optional<ingest::errc> reason;
  if (auto it = req.query.find("reason"); it != req.query.end()) {
    reason = ingest::reason_from_name(it->second);
    if (!reason) {
      std::string names;
      for (auto r : ingest::kDeadLetterReasons) names += (names.empty() ? "" : ", ") + std::string(ingest::reason_name(r));
      return bad_parameter("reason", "one of " + names);
    }
  }
  std::optional<std::int64_t> limit;
  if (auto bad = int_param(req, "limit", 1, 1000, limit)) return *bad;
  if (!sources.dead_letters) return json_response(503, {{"error", "the dead-letter store is not open yet"}});
  json out = json::array();
  for (const auto& d : sources.dead_letters(reason, static_cast<std::size_t>(limit.value_or(100)))) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string hex;
    for (std::uint8_t b : d.raw) {
      hex += kHex[b >> 4];
      hex += kHex[b & 15];
    }
    out.push_back({{"id", d.id}, {"received_ms", d.received_ms}, {"topic", d.topic},
                   {"reason", std::string(ingest::reason_name(d.reason))}, {"size", d.size}, {"raw_hex", hex}});
    if (!d.detail.empty()) out.back()["detail"] = d.detail;
  }
  return json_response(200, out);
}

}  // namespace

std::vector<std::string> api_open_paths() { return {"/healthz", "/"}; }

HttpResponse handle_api(const ApiSources& sources, const HttpRequest& req) {
  if (req.method != "GET" && req.method != "HEAD") return json_response(405, {{"error", "only GET and HEAD"}});
  const std::string& path = req.path;
  if (path == "/aggregates") return aggregates(sources, req);
  if (path == "/devices") return devices(sources, req);
  if (path == "/dlq") return dead_letter_list(sources, req);
  if (path == "/late") return late_list(sources, req);
  if (path != "/" && path != "/healthz" && path != "/readyz" && path != "/metrics" && path != "/status") {
    return json_response(404, {{"error", "no such path: " + path}});
  }
  if (auto bad = only_params(req, {})) return *bad;
  if (path == "/") return {200, "text/html; charset=utf-8", std::string(status_page_html())};
  if (path == "/healthz") return json_response(200, {{"status", "ok"}});
  auto published = sources.status();
  if (path == "/status") return {200, "application/json", published->status_json};
  if (path == "/metrics") return {200, kMetricsContentType, published->metrics_text};
  // /readyz
  const auto& reasons = published->snapshot.not_ready;
  return json_response(reasons.empty() ? 200 : 503, {{"ready", reasons.empty()}, {"reasons", reasons}});
}

}  // namespace gw::gateway
