// The status snapshot's derived figures (rates, backlog state and drain ETA, uplink down time),
// readiness, and the Prometheus text rendering (every line well formed, labels escaped).
#include "tests/support/catch.h"

#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "gateway/metrics.h"
#include "gateway/status.h"

using gw::gateway::BacklogState;
using gw::gateway::Snapshot;
using gw::gateway::Trends;
using std::chrono::milliseconds;

namespace {

Snapshot snapshot(std::uint64_t appended, std::uint64_t acked, std::uint64_t lag) {
  Snapshot s;
  s.gateway_id = "gw-1";
  s.version = "0.1.0";
  s.buffer.appended_total = appended;
  s.kafka.cursor = "uplink.kafka";
  s.kafka.batch_max_records = 100;
  s.kafka.stats.records_acked = acked;
  s.kafka.stats.state = gw::uplink::SinkState::up;
  s.buffer.cursors.push_back({"windowing", gw::buffer::Seq{appended}, 0, 0});
  s.buffer.cursors.push_back({"uplink.kafka", gw::buffer::Seq{acked}, lag, 0});
  return s;
}

}  // namespace

TEST_CASE("trends: rates over the window, backlog state and drain ETA") {
  Trends trends(milliseconds(5000));
  auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);

  auto s0 = snapshot(1000, 1000, 0);
  trends.update(s0, t0);
  CHECK(s0.ingest_events_per_s == 0);  // one snapshot: no rate yet
  CHECK(s0.backlog == BacklogState::none);

  // 2 s later: 2,000 more stored, 8,000 more acknowledged, 10,000 behind.
  auto s1 = snapshot(3000, 9000, 10000);
  trends.update(s1, t0 + milliseconds(2000));
  CHECK(s1.ingest_events_per_s == Approx(1000));
  CHECK(s1.uplink_records_per_s == Approx(4000));
  CHECK(s1.backlog_records == 10000);
  CHECK(s1.backlog == BacklogState::draining);
  REQUIRE(s1.drain_eta_s.has_value());
  CHECK(*s1.drain_eta_s == Approx(10000.0 / 3000.0));

  // Kafka stalls: nothing acknowledged while ingest goes on.
  auto s2 = snapshot(5000, 9000, 12000);
  s2.kafka.stats.state = gw::uplink::SinkState::down;
  trends.update(s2, t0 + milliseconds(4000));
  CHECK(s2.backlog == BacklogState::growing);
  CHECK_FALSE(s2.drain_eta_s.has_value());
  CHECK(s2.uplink_down_ms == 0);
  auto s3 = snapshot(7000, 9000, 14000);
  s3.kafka.stats.state = gw::uplink::SinkState::down;
  trends.update(s3, t0 + milliseconds(7000));
  CHECK(s3.uplink_down_ms == 3000);
  // The window dropped the sample at t0: rates over t0+2s .. t0+7s.
  CHECK(s3.ingest_events_per_s == Approx(4000.0 / 5.0));
  CHECK(s3.uplink_records_per_s == 0);

  // Back up and caught up: a small lag is live traffic, not a backlog.
  auto s4 = snapshot(8000, 7950, 50);
  trends.update(s4, t0 + milliseconds(8000));
  CHECK_FALSE(s4.uplink_down_ms.has_value());
  CHECK(s4.backlog == BacklogState::none);
  CHECK_FALSE(s4.drain_eta_s.has_value());
}

TEST_CASE("readiness names every reason") {
  gw::gateway::ReadinessOptions options;
  options.uplink_down_max = milliseconds(60000);
  auto s = snapshot(0, 0, 0);
  CHECK(gw::gateway::readiness(s, options) == std::vector<std::string>{"mqtt: not started"});

  s.ingest = gw::ingest::MqttStats{};
  s.ingest->connected = true;
  s.ingest->subscribed = true;
  CHECK(gw::gateway::readiness(s, options).empty());

  s.ingest->subscribed = false;
  s.buffer.blocked_appends = 2;
  s.buffer.no_space = true;
  s.uplink_down_ms = 61000;
  s.kafka.stats.last_error = "all brokers down";
  auto reasons = gw::gateway::readiness(s, options);
  REQUIRE(reasons.size() == 4);
  CHECK(reasons[0] == "mqtt: subscriptions not confirmed yet");
  CHECK(reasons[1].starts_with("buffer: no space"));
  CHECK(reasons[2].starts_with("buffer: full"));
  CHECK(reasons[3] == "uplink: down for 61 s (all brokers down)");

  s.uplink_down_ms = 59000;
  CHECK(gw::gateway::readiness(s, options).size() == 3);
  options.uplink_down_max = milliseconds(0);
  s.uplink_down_ms = 3600000;
  CHECK(gw::gateway::readiness(s, options).size() == 3);
}

TEST_CASE("status JSON keeps the fields scripts rely on") {
  auto s = snapshot(10, 8, 2);
  s.ingest = gw::ingest::MqttStats{};
  s.ingest->subscribed = true;
  s.buffer.last = gw::buffer::Seq{10};
  s.kafka.stats.last_acked = gw::buffer::Seq{8};
  s.not_ready = {"mqtt: not connected"};
  auto j = nlohmann::json::parse(gw::gateway::status_json(s));
  CHECK(j["ingest"]["subscribed"] == true);
  CHECK(j["buffer"]["last_seq"] == 10);
  CHECK(j["uplink"]["kafka"]["last_acked_seq"] == 8);
  CHECK(j["ready"]["ready"] == false);
  CHECK(j["backlog"]["state"] == "none");
  CHECK(j["backlog"]["drain_eta_s"].is_null());
}

TEST_CASE("metrics: every line is a comment or a well-formed sample of a declared family") {
  auto s = snapshot(100, 90, 10);
  s.gateway_id = "odd \"gw\"\\ id\nline";
  s.ingest = gw::ingest::MqttStats{};
  s.ingest->decode_errors[gw::ingest::errc::oversize] = 3;
  s.dead_letters = gw::ingest::DeadLetterStats{};
  s.http = gw::gateway::HttpStats{};
  std::string text = gw::gateway::metrics_text(s);

  const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+]+|NaN|\+Inf|-Inf)$)");
  const std::regex type_line(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  std::set<std::string> declared, counters, histograms;
  std::istringstream in(text);
  std::string line;
  int samples = 0;
  while (std::getline(in, line)) {
    INFO(line);
    std::smatch m;
    if (std::regex_match(line, m, type_line)) {
      CHECK(declared.insert(m[1]).second);  // each family once
      if (m[2] == "counter") counters.insert(m[1]);
      if (m[2] == "histogram") histograms.insert(m[1]);
      continue;
    }
    if (line.starts_with("# HELP ")) continue;
    REQUIRE(std::regex_match(line, m, sample));
    std::string family = m[1];
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {  // a histogram's series
      const std::string base = family.substr(0, family.size() - std::min(family.size(), std::strlen(suffix)));
      if (family.ends_with(suffix) && histograms.count(base) == 1) family = base;
    }
    CHECK(declared.count(family) == 1);  // TYPE came before
    ++samples;
  }
  for (const auto& c : counters) CHECK(c.ends_with("_total"));
  CHECK(samples > 60);
  CHECK(text.find(R"(gw_build_info{gateway_id="odd \"gw\"\\ id\nline",version="0.1.0"} 1)") != std::string::npos);
  CHECK(text.find("gw_ingest_rejected_total{reason=\"oversize\"} 3\n") != std::string::npos);
  CHECK(text.find("gw_ingest_rejected_total{reason=\"malformed\"} 0\n") != std::string::npos);
  CHECK(text.find("gw_buffer_cursor_lag_records{cursor=\"uplink.kafka\"} 10\n") != std::string::npos);
  CHECK(text.find("gw_uplink_state{sink=\"kafka\",state=\"up\"} 1\n") != std::string::npos);
  CHECK(text.find("gw_uplink_drain_eta_seconds") == std::string::npos);  // not draining: no value, not 0

  // The end-to-end latency histogram: cumulative buckets, +Inf = count.
  s.kafka.stats.latency.observe(0.2);
  s.kafka.stats.latency.observe(7);
  text = gw::gateway::metrics_text(s);
  CHECK(text.find("gw_uplink_e2e_latency_seconds_bucket{sink=\"kafka\",le=\"0.1\"} 0\n") != std::string::npos);
  CHECK(text.find("gw_uplink_e2e_latency_seconds_bucket{sink=\"kafka\",le=\"0.25\"} 1\n") != std::string::npos);
  CHECK(text.find("gw_uplink_e2e_latency_seconds_bucket{sink=\"kafka\",le=\"10\"} 2\n") != std::string::npos);
  CHECK(text.find("gw_uplink_e2e_latency_seconds_bucket{sink=\"kafka\",le=\"+Inf\"} 2\n") != std::string::npos);
  CHECK(text.find("gw_uplink_e2e_latency_seconds_count{sink=\"kafka\"} 2\n") != std::string::npos);

  s.drain_eta_s = 12.5;
  CHECK(gw::gateway::metrics_text(s).find("gw_uplink_drain_eta_seconds{sink=\"kafka\"} 12.5\n") != std::string::npos);
}

TEST_CASE("status and metrics: a Pulsar-only gateway shows its sink as uplink.pulsar, sink=\"pulsar\"") {
  Snapshot s = snapshot(100, 40, 60);
  s.has_kafka = false;
  Snapshot::Kafka p;
  p.cursor = "uplink.pulsar";
  p.bootstrap = "ws://127.0.0.1:1";
  p.topic = "persistent://public/default/telemetry";
  p.stats.state = gw::uplink::SinkState::down;
  p.stats.batches_resent = 3;
  p.stats.last_error = "upgrade refused with HTTP 401 (token rejected)";
  s.pulsar = p;
  Trends t;
  t.update(s, std::chrono::steady_clock::now());
  REQUIRE(s.uplink_down_ms.has_value());  // the Pulsar sink is the uplink now
  const auto j = nlohmann::json::parse(gw::gateway::status_json(s));
  CHECK_FALSE(j["uplink"].contains("kafka"));
  CHECK(j["uplink"]["pulsar"]["batches_resent"] == 3);
  CHECK(j["uplink"]["pulsar"]["topic"] == "persistent://public/default/telemetry");
  CHECK(j["uplink"]["pulsar"]["down_for_ms"].is_number());
  const std::string text = gw::gateway::metrics_text(s);
  CHECK(text.find("gw_uplink_state{sink=\"pulsar\",state=\"down\"} 1\n") != std::string::npos);
  CHECK(text.find("gw_uplink_batches_resent_total{sink=\"pulsar\"} 3\n") != std::string::npos);
  CHECK(text.find("sink=\"kafka\"") == std::string::npos);
}
