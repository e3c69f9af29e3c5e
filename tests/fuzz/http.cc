// libFuzzer target: HTTP request handling without a socket. The bytes go through the server's own
// request parsing, limits and bearer-token check (gateway/http_server.h answer_raw_requests) into
// the API's routing and parameter parsing (gateway/api.h handle_api) over fake sources that hold
// a real status snapshot, aggregates, late events and dead letters.
// Invariants: no crash, UB or leak on any bytes; the API never throws (the server would answer
// 500); the wire output is a sequence of well-formed HTTP/1.1 responses with an expected status,
// the server's headers, a WWW-Authenticate on every 401, and the body its Content-Length declares
// (or none: the answer to a HEAD).
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <set>
#include <string_view>

#include "gateway/api.h"
#include "gateway/metrics.h"
#include "gateway/status.h"
#include "tests/fuzz/check.h"

namespace {

using gw::fuzz::require;

namespace http = boost::beast::http;
using namespace gw::gateway;

std::shared_ptr<const PublishedStatus> published() {
  auto p = std::make_shared<PublishedStatus>();
  p->snapshot.gateway_id = "edge-fuzz";
  p->snapshot.version = "0.1.0";
  p->snapshot.uptime_s = 42;
  p->snapshot.unix_ms = 1'700'000'000'000;
  p->status_json = status_json(p->snapshot);
  p->metrics_text = metrics_text(p->snapshot);
  return p;
}

gw::windowing::Aggregate aggregate(std::string device, std::string metric, std::int64_t start) {
  gw::windowing::Aggregate a;
  a.id = static_cast<std::uint64_t>(start / 1000);
  a.key = std::move(device);
  a.metric = std::move(metric);
  a.window_start = gw::ingest::EventTime{start};
  a.window_end = gw::ingest::EventTime{start + 1000};
  a.count = 4;
  a.sum = 8;
  a.min = 1;
  a.max = 3;
  a.mean = 2;
  return a;
}

ApiSources fake_sources() {
  static const auto status = published();
  ApiSources s;
  s.status = [] { return status; };
  s.aggregates = [](const gw::windowing::Query& q) {
    std::vector<gw::windowing::Aggregate> all = {aggregate("dev-1", "temp", 1'700'000'002'000),
                                                 aggregate("dev-2", "hum", 1'700'000'001'000),
                                                 aggregate("dev-1", "temp", 1'700'000'000'000)};
    std::vector<gw::windowing::Aggregate> out;
    for (const auto& a : all) {
      if (q.device && a.key != q.device->value) continue;
      if (q.metric && a.metric != *q.metric) continue;
      if (q.from && a.window_start < *q.from) continue;
      if (q.to && !(a.window_start < *q.to)) continue;
      if (out.size() < q.limit) out.push_back(a);
    }
    return out;
  };
  s.late = [](std::size_t limit, std::optional<std::uint64_t>) {
    gw::windowing::LateEvent e;
    e.id = 3;
    e.device = gw::ingest::DeviceId{"dev-9"};
    e.seq = gw::ingest::DeviceSeq{12};
    e.windows_missed = 1;
    e.metrics = {{"temp", 20.5}};
    return std::vector<gw::windowing::LateEvent>(std::min<std::size_t>(limit, 1), e);
  };
  s.dead_letters = [](std::optional<gw::ingest::errc> reason, std::size_t limit) {
    gw::ingest::DeadLetter d;
    d.id = 7;
    d.topic = "devices/x/telemetry";
    d.reason = reason.value_or(gw::ingest::errc::oversize);
    d.size = 3;
    d.raw = {0xab, 0x01, 0xff};
    return std::vector<gw::ingest::DeadLetter>(std::min<std::size_t>(limit, 1), d);
  };
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const ApiSources sources = fake_sources();
  static const HttpOptions options = [] {
    HttpOptions o;
    o.token = "fuzz-token";
    o.open_paths = api_open_paths();
    o.max_header_bytes = 2048;  // small limits, so that inputs reach them
    o.max_body_bytes = 1024;
    return o;
  }();
  const HttpHandler handler = [](const HttpRequest& request) {
    try {
      return handle_api(sources, request);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz_http: handle_api threw on %s %s: %s\n", request.method.c_str(), request.path.c_str(),
                   e.what());
      std::abort();
    }
  };
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string wire = answer_raw_requests(input, options, handler);
  if (size == 0) require(wire.empty(), "an answer to no request");

  static const std::set<unsigned> expected = {200, 400, 401, 404, 405, 413, 431, 503};
  std::string_view rest = wire;
  while (!rest.empty()) {
    http::response_parser<http::empty_body> parser;
    parser.skip(true);  // the header only: the body is checked against Content-Length below
    parser.header_limit(64 * 1024);
    boost::beast::error_code ec;
    const std::size_t used = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
    require(!ec && parser.is_header_done(), "a response header that does not parse");
    const auto& res = parser.get();
    require(expected.contains(res.result_int()), "an unexpected status");
    require(res[http::field::server] == "edge-gateway", "a response without the server's headers");
    if (res.result_int() == 401) require(res.count(http::field::www_authenticate) == 1, "a 401 without WWW-Authenticate");
    rest.remove_prefix(used);
    const std::uint64_t length = parser.content_length().value_or(0);
    // The answer to a HEAD has the GET's Content-Length and no body: the next response (or the end)
    // follows at once. Only an input with a HEAD in it can have one.
    // (A response has the request's version: "HTTP/1.0" answers a 1.0 request.)
    const bool bodiless = (rest.empty() || rest.starts_with("HTTP/1.")) && input.find("HEAD") != input.npos;
    if (length > 0 && !bodiless) {
      require(rest.size() >= length, "a body shorter than its Content-Length");
      rest.remove_prefix(length);
    }
  }
  return 0;
}
