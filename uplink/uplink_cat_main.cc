// uplink-cat: prints the records of every batch in a Kafka topic as JSON lines, decoding each
// message with gw::uplink::decode_batch (uplink/FORMAT.md).
//
//   uplink-cat --kafka BOOTSTRAP [--topic T] [--idle-exit-ms N] [--max-records N] [--headers]
//              [-X KEY=VALUE]...
//
// One line per record on stdout:
//   {"gateway":"...","seq":N,"device":"...","device_seq":N,"time_ms":N,"metrics":{"temp":21.5}}
// and one per aggregate of an aggregate batch (the aggregates topic):
//   {"gateway":"...","seq":N,"type":"aggregate","id":N,"kind":"tumbling","scope":"device",
//    "device":"...","metric":"temp","window_start_ms":N,"window_end_ms":N,"closed_at_ms":N,
//    "count":N,"sum":x,"min":x,"max":x,"mean":x,"stddev":x,"first":x,"first_time_ms":N,"last":x,
//    "last_time_ms":N,"rate_per_s":x[,"quantiles":{"p50":x,"p90":x,"p99":x}]}
// (scope "group": "group" and "group_tag" instead of "device"). --max-records counts both.
// With --headers, each message is preceded by
//   {"message":{"partition":P,"offset":O,"key":"...","headers":{"gw-first-seq":"1",...}}}
// Exit status: 0 done, 1 some message did not decode (each one is reported on stderr),
// 2 usage or connection error. Logs go to stderr. Single-threaded (plus librdkafka's threads).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <iostream>
#include <nlohmann/json.hpp>

#include "uplink/batch.h"
#include "uplink/kafka_reader.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

std::string dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

nlohmann::ordered_json aggregate_line(const std::string& gateway, const gw::uplink::AggregateRecord& r) {
  const gw::windowing::Aggregate& a = r.aggregate;
  nlohmann::ordered_json j;
  j["gateway"] = gateway;
  j["seq"] = r.seq.value;
  j["type"] = gw::uplink::kRecordTypeAggregate;
  j["id"] = a.id;
  j["kind"] = gw::windowing::to_string(a.kind);
  j["scope"] = gw::windowing::to_string(a.scope);
  if (a.scope == gw::windowing::Scope::device) {
    j["device"] = a.key;
  } else {
    j["group"] = a.key;
    j["group_tag"] = a.group_tag;
  }
  j["metric"] = a.metric;
  j["window_start_ms"] = a.window_start.ms;
  j["window_end_ms"] = a.window_end.ms;
  j["closed_at_ms"] = a.closed_at_ms;
  j["count"] = a.count;
  j["sum"] = a.sum;
  j["min"] = a.min;
  j["max"] = a.max;
  j["mean"] = a.mean;
  j["stddev"] = a.stddev;
  j["first"] = a.first;
  j["first_time_ms"] = a.first_time.ms;
  j["last"] = a.last;
  j["last_time_ms"] = a.last_time.ms;
  j["rate_per_s"] = a.rate;
  if (a.has_quantiles) j["quantiles"] = {{"p50", a.p50}, {"p90", a.p90}, {"p99", a.p99}};
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("uplink-cat"));
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{
      "uplink-cat: prints the records (or aggregates) of the gateway's Kafka batches as JSON lines.\n"
      "Reads every partition of the topic from the beginning (no consumer group).\n"
      "Exit status: 0 done, 1 some message did not decode, 2 usage or connection error."};
  std::string brokers;
  std::string topic = "telemetry";
  long idle_exit_ms = 3000;
  std::uint64_t max_records = 0;
  bool headers = false;
  std::vector<std::string> props;
  app.add_option("--kafka", brokers, "bootstrap servers, HOST:PORT[,...]")->required();
  app.add_option("--topic", topic, "topic to read")->capture_default_str();
  app.add_option("--idle-exit-ms", idle_exit_ms,
                 "exit once every partition reached its end and nothing new came for this long (0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-records", max_records, "exit after printing this many records (0: no limit)");
  app.add_flag("--headers", headers, "print a {\"message\":{...}} line with each message's headers");
  app.add_option("-X,--property", props, "KEY=VALUE: a librdkafka property (security.protocol, sasl.*, ssl.*)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  gw::uplink::ReaderOptions ropt{brokers, topic, std::chrono::milliseconds(5000), {}};
  for (const std::string& p : props) {
    const auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "uplink-cat: -X " << p << ": expected KEY=VALUE\n";
      return 2;
    }
    ropt.properties.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  auto reader = gw::uplink::KafkaReader::open(ropt);
  if (!reader) {
    std::cerr << "uplink-cat: " << brokers << " topic " << topic << ": " << reader.error().message() << '\n';
    return 2;
  }
  using Clock = std::chrono::steady_clock;
  auto last_message = Clock::now();
  std::uint64_t printed = 0;
  std::uint64_t bad = 0;
  while (g_stop == 0 && (max_records == 0 || printed < max_records)) {
    auto next = (*reader)->next(std::chrono::milliseconds(100));
    if (!next) {
      std::cerr << "uplink-cat: " << next.error().message() << '\n';
      return 2;
    }
    if (!next->has_value()) {
      if (idle_exit_ms > 0 && (*reader)->at_end() &&
          Clock::now() - last_message >= std::chrono::milliseconds(idle_exit_ms)) {
        break;
      }
      continue;
    }
    last_message = Clock::now();
    const gw::uplink::KafkaMessage& msg = **next;
    if (headers) {
      nlohmann::ordered_json h = nlohmann::ordered_json::object();
      for (const auto& [k, v] : msg.headers) h[k] = v;
      nlohmann::ordered_json m;
      m["message"] = {{"partition", msg.partition},
                      {"offset", msg.offset},
                      {"key", std::string(msg.key.begin(), msg.key.end())},
                      {"headers", h}};
      std::cout << dump(m) << '\n';
    }
    auto batch = gw::uplink::decode_batch(msg.value);
    if (!batch) {
      ++bad;
      std::cerr << "uplink-cat: partition " << msg.partition << " offset " << msg.offset << ": "
                << batch.error().message() << '\n';
      continue;
    }
    for (const gw::uplink::BatchRecord& r : batch->records) {
      if (max_records != 0 && printed >= max_records) break;
      nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
      for (const auto& m : r.event.metrics) metrics[m.name] = m.value;
      nlohmann::ordered_json j;
      j["gateway"] = batch->gateway_id;
      j["seq"] = r.seq.value;
      j["device"] = r.event.device.value;
      j["device_seq"] = r.event.seq.value;
      j["time_ms"] = r.event.time.ms;
      j["metrics"] = std::move(metrics);
      std::cout << dump(j) << '\n';
      ++printed;
    }
    for (const gw::uplink::AggregateRecord& r : batch->aggregates) {
      if (max_records != 0 && printed >= max_records) break;
      std::cout << dump(aggregate_line(batch->gateway_id, r)) << '\n';
      ++printed;
    }
    std::cout.flush();
  }
  std::cout.flush();
  if (bad > 0) std::cerr << "uplink-cat: " << bad << " message(s) did not decode\n";
  return bad > 0 ? 1 : 0;
}
