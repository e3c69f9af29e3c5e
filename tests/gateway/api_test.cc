// The HTTP API's routing and parameter checks (gateway/api.h), called directly with fake sources:
// what each path answers, and that every bad parameter gets a 400 that names it.
#include "tests/support/catch.h"
#include <nlohmann/json.hpp>

#include "gateway/api.h"
#include "gateway/metrics.h"

using gw::gateway::ApiSources;
using gw::gateway::HttpRequest;
using gw::gateway::PublishedStatus;
using json = nlohmann::json;

namespace {

gw::windowing::Aggregate agg(std::string device, std::string metric, std::int64_t start, std::uint64_t count) {
  gw::windowing::Aggregate a;
  a.key = std::move(device);
  a.metric = std::move(metric);
  a.window_start = gw::ingest::EventTime{start};
  a.window_end = gw::ingest::EventTime{start + 1000};
  a.count = count;
  a.sum = static_cast<double>(count) * 2.0;
  a.min = 1;
  a.max = 3;
  a.mean = a.sum / static_cast<double>(count);
  return a;
}

struct Fake {
  std::shared_ptr<PublishedStatus> published = std::make_shared<PublishedStatus>();
  std::vector<gw::windowing::Aggregate> aggregates;  // newest first, as the store answers
  std::vector<gw::windowing::Query> queries;
  std::optional<gw::ingest::errc> dlq_reason;
  std::size_t dlq_limit = 0;
  std::optional<std::uint64_t> late_before;

  ApiSources sources(bool with_dead_letters = true) {
    ApiSources s;
    s.status = [this] { return std::shared_ptr<const PublishedStatus>(published); };
    s.aggregates = [this](const gw::windowing::Query& q) {
      queries.push_back(q);
      std::vector<gw::windowing::Aggregate> out;
      for (const auto& a : aggregates) {
        if (q.device && (a.scope != gw::windowing::Scope::device || a.key != q.device->value)) continue;
        if (q.group && (a.scope != gw::windowing::Scope::group || a.key != *q.group)) continue;
        if (q.metric && a.metric != *q.metric) continue;
        if (out.size() < q.limit) out.push_back(a);
      }
      return out;
    };
    s.late = [this](std::size_t limit, std::optional<std::uint64_t> before) {
      late_before = before;
      gw::windowing::LateEvent e;
      e.id = 3;
      e.device = gw::ingest::DeviceId{"d9"};
      e.seq = gw::ingest::DeviceSeq{12};
      e.windows_missed = 1;
      e.metrics = {{"temp", 20.5}};
      return std::vector<gw::windowing::LateEvent>(std::min<std::size_t>(limit, 1), e);
    };
    if (with_dead_letters) {
      s.dead_letters = [this](std::optional<gw::ingest::errc> reason, std::size_t limit) {
        dlq_reason = reason;
        dlq_limit = limit;
        gw::ingest::DeadLetter d;
        d.id = 7;
        d.topic = "devices/x/telemetry";
        d.reason = gw::ingest::errc::oversize;
        d.raw = {0xab, 0x01};
        return std::vector<gw::ingest::DeadLetter>{d};
      };
    }
    return s;
  }
};

HttpRequest get(std::string path, std::map<std::string, std::string> query = {}) {
  HttpRequest r;
  r.method = "GET";
  r.path = std::move(path);
  r.query = std::move(query);
  return r;
}

// The error message of a 400, after checking that it is one.
std::string bad_request(const gw::gateway::HttpResponse& res) {
  CHECK(res.status == 400);
  return json::parse(res.body).value("error", "");
}

}  // namespace

TEST_CASE("paths, methods and unknown paths") {
  Fake fake;
  fake.published->status_json = "{\"x\":1}\n";
  fake.published->metrics_text = "gw_ready 1\n";
  auto sources = fake.sources();
  CHECK(gw::gateway::handle_api(sources, get("/healthz")).status == 200);
  auto status = gw::gateway::handle_api(sources, get("/status"));
  CHECK(status.body == "{\"x\":1}\n");
  auto metrics = gw::gateway::handle_api(sources, get("/metrics"));
  CHECK(metrics.body == "gw_ready 1\n");
  CHECK(metrics.content_type == gw::gateway::kMetricsContentType);
  auto page = gw::gateway::handle_api(sources, get("/"));
  CHECK(page.content_type == "text/html; charset=utf-8");
  CHECK(page.body.find("<svg id=\"chart\"") != std::string::npos);
  CHECK(page.body.find("http://") == page.body.find("http://www.w3.org/2000/svg"));  // no external assets
  CHECK(page.body.find("https://") == std::string::npos);

  auto missing = gw::gateway::handle_api(sources, get("/nope"));
  CHECK(missing.status == 404);
  CHECK(json::parse(missing.body)["error"] == "no such path: /nope");
  auto post = get("/status");
  post.method = "POST";
  CHECK(gw::gateway::handle_api(sources, post).status == 405);
  CHECK_THAT(bad_request(gw::gateway::handle_api(sources, get("/status", {{"verbose", "1"}}))),
             Catch::Contains("'verbose'"));
}

TEST_CASE("a path or parameter that is not UTF-8 gets its 4xx with valid JSON, not a 500") {
  // Found by fuzzing (tests/fuzz, fuzz_http): the 404 for "/agg\x95egates" quoted the path, and the
  // JSON writer threw on the stray byte, so the server answered 500. The input is in the corpus.
  Fake fake;
  auto sources = fake.sources();
  auto unknown = gw::gateway::handle_api(sources, get("/agg\x95" "egates"));
  CHECK(unknown.status == 404);
  CHECK(json::parse(unknown.body).at("error").get<std::string>().find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
  CHECK(bad_request(gw::gateway::handle_api(sources, get("/status", {{"\xff", "1"}}))).find("\xef\xbf\xbd") !=
        std::string::npos);
  fake.aggregates = {agg("dev-\xc3", "t\xff", 1'700'000'000'000, 2)};  // stored by a gateway before the UTF-8 check
  auto aggregates = gw::gateway::handle_api(sources, get("/aggregates"));
  CHECK(aggregates.status == 200);
  CHECK(json::parse(aggregates.body).size() == 1);
}

TEST_CASE("/readyz answers 503 with the reasons while not ready") {
  Fake fake;
  auto sources = fake.sources();
  auto ready = gw::gateway::handle_api(sources, get("/readyz"));
  CHECK(ready.status == 200);
  CHECK(json::parse(ready.body)["ready"] == true);
  fake.published->snapshot.not_ready = {"mqtt: not connected", "buffer: full (max_bytes); appends wait for the consumers"};
  auto not_ready = gw::gateway::handle_api(sources, get("/readyz"));
  CHECK(not_ready.status == 503);
  auto body = json::parse(not_ready.body);
  CHECK(body["ready"] == false);
  CHECK(body["reasons"].size() == 2);
  CHECK(body["reasons"][0] == "mqtt: not connected");
}

TEST_CASE("/aggregates passes its filters to the store and refuses bad parameters by name") {
  Fake fake;
  fake.aggregates = {agg("d1", "temp", 2000, 4), agg("d2", "temp", 2000, 1), agg("d1", "temp", 1000, 2)};
  auto sources = fake.sources();
  auto res = gw::gateway::handle_api(
      sources, get("/aggregates", {{"device", "d1"}, {"metric", "temp"}, {"from", "0"}, {"to", "5000"}, {"limit", "1"}}));
  REQUIRE(res.status == 200);
  auto body = json::parse(res.body);
  REQUIRE(body.size() == 1);
  CHECK(body[0]["device"] == "d1");
  CHECK(body[0]["window_start_ms"] == 2000);
  CHECK(body[0]["mean"] == 2.0);
  REQUIRE(fake.queries.size() == 1);
  CHECK(fake.queries[0].from->ms == 0);
  CHECK(fake.queries[0].to->ms == 5000);
  CHECK(fake.queries[0].limit == 1);

  auto bad = [&](std::map<std::string, std::string> q) {
    return bad_request(gw::gateway::handle_api(sources, get("/aggregates", std::move(q))));
  };
  CHECK_THAT(bad({{"limit", "abc"}}), Catch::Contains("'limit'") && Catch::Contains("not an integer"));
  CHECK_THAT(bad({{"limit", "0"}}), Catch::Contains("'limit'") && Catch::Contains("out of range"));
  CHECK_THAT(bad({{"limit", "99999999999999999999999"}}), Catch::Contains("'limit'"));
  CHECK_THAT(bad({{"limit", ""}}), Catch::Contains("'limit'"));
  CHECK_THAT(bad({{"from", "-5"}}), Catch::Contains("'from'"));
  CHECK_THAT(bad({{"from", "10"}, {"to", "5"}}), Catch::Contains("'to'"));
  CHECK_THAT(bad({{"device", ""}}), Catch::Contains("'device'"));
  CHECK_THAT(bad({{"colour", "red"}}), Catch::Contains("'colour'") && Catch::Contains("unknown parameter"));
  CHECK_THAT(bad({{"window", "weekly"}}), Catch::Contains("'window'") && Catch::Contains("tumbling"));
  CHECK_THAT(bad({{"device", "d1"}, {"group", "site-a"}}), Catch::Contains("'group'"));
  CHECK(fake.queries.size() == 1);  // no bad request reached the store

  // Group windows and the window kind reach the store; group results name their tag.
  auto g = agg("site-a", "temp", 5000, 7);
  g.scope = gw::windowing::Scope::group;
  g.group_tag = "site";
  g.kind = gw::windowing::WindowKind::hopping;
  fake.aggregates.insert(fake.aggregates.begin(), g);
  res = gw::gateway::handle_api(sources, get("/aggregates", {{"group", "site-a"}, {"window", "hopping"}}));
  REQUIRE(res.status == 200);
  body = json::parse(res.body);
  REQUIRE(body.size() == 1);
  CHECK(body[0]["group"] == "site-a");
  CHECK(body[0]["group_tag"] == "site");
  CHECK(body[0]["kind"] == "hopping");
  CHECK(body[0].count("device") == 0);
  CHECK(fake.queries.back().kind == gw::windowing::WindowKind::hopping);
}

TEST_CASE("/late lists late events and checks its limit") {
  Fake fake;
  auto sources = fake.sources();
  auto res = gw::gateway::handle_api(sources, get("/late", {{"limit", "5"}}));
  REQUIRE(res.status == 200);
  auto body = json::parse(res.body);
  REQUIRE(body.size() == 1);
  CHECK(body[0]["device"] == "d9");
  CHECK(body[0]["seq"] == 12);
  CHECK(body[0]["metrics"]["temp"] == 20.5);
  CHECK(!fake.late_before);
  REQUIRE(gw::gateway::handle_api(sources, get("/late", {{"before", "3"}})).status == 200);
  CHECK(fake.late_before == 3u);
  CHECK_THAT(bad_request(gw::gateway::handle_api(sources, get("/late", {{"before", "0"}}))), Catch::Contains("'before'"));
  CHECK_THAT(bad_request(gw::gateway::handle_api(sources, get("/late", {{"limit", "0"}}))), Catch::Contains("'limit'"));
  CHECK_THAT(bad_request(gw::gateway::handle_api(sources, get("/late", {{"x", "1"}}))), Catch::Contains("'x'"));
}

TEST_CASE("/devices lists each device's newest window and its event rate") {
  Fake fake;
  fake.aggregates = {agg("d1", "temp", 3000, 5), agg("d1", "hum", 3000, 4), agg("d2", "temp", 1000, 2),
                     agg("d1", "temp", 2000, 9)};
  auto sources = fake.sources();
  auto res = gw::gateway::handle_api(sources, get("/devices"));
  REQUIRE(res.status == 200);
  auto body = json::parse(res.body);
  REQUIRE(body.size() == 2);
  CHECK(body[0]["device"] == "d1");
  CHECK(body[0]["last_window_start_ms"] == 3000);
  CHECK(body[0]["last_window_end_ms"] == 4000);
  CHECK(body[0]["events_per_s"] == 5.0);  // the newest window only, largest count of its metrics
  CHECK(body[0]["metrics"] == json::array({"hum", "temp"}));
  CHECK(body[1]["device"] == "d2");
  CHECK(json::parse(gw::gateway::handle_api(sources, get("/devices", {{"limit", "1"}})).body).size() == 1);
  CHECK_THAT(bad_request(gw::gateway::handle_api(sources, get("/devices", {{"limit", "x"}}))), Catch::Contains("'limit'"));
}

TEST_CASE("/dlq filters by reason and refuses unknown reasons") {
  Fake fake;
  auto sources = fake.sources();
  auto res = gw::gateway::handle_api(sources, get("/dlq", {{"reason", "oversize"}, {"limit", "5"}}));
  REQUIRE(res.status == 200);
  CHECK(fake.dlq_reason == gw::ingest::errc::oversize);
  CHECK(fake.dlq_limit == 5);
  auto body = json::parse(res.body);
  CHECK(body[0]["raw_hex"] == "ab01");
  CHECK(body[0]["reason"] == "oversize");
  CHECK_THAT(bad_request(gw::gateway::handle_api(sources, get("/dlq", {{"reason", "bogus"}}))),
             Catch::Contains("'reason'"));
  CHECK_THAT(bad_request(gw::gateway::handle_api(sources, get("/dlq", {{"limit", "1001"}}))), Catch::Contains("'limit'"));

  auto without = fake.sources(false);
  CHECK(gw::gateway::handle_api(without, get("/dlq")).status == 503);
}
