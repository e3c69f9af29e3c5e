// uplink-cat: prints the records of every batch in a Kafka topic as JSON lines, decoding each
// message with gw::uplink::decode_batch (uplink/FORMAT.md).
//
//   uplink-cat --kafka BOOTSTRAP [--topic T] [--idle-exit-ms N] [--max-records N] [--headers]
//              [--done-file FILE] [-X KEY=VALUE]...
// With --done-file it consumes while a run goes (a mock partition keeps only about 5 MB): brokers
// down for a while are waited for, and the idle exit applies only once FILE exists.
//
// One line per record on stdout:
//   {"gateway":"...","seq":N,"device":"...","device_seq":N,"boot_id":N,"time_ms":N,"metrics":{"temp":21.5}}
// (boot_id 0 = the device sent none)
// and one per aggregate of an aggregate batch (the aggregates topic):
//   {"gateway":"...","seq":N,"type":"aggregate","id":N,"kind":"tumbling","scope":"device",
//    "device":"...","metric":"temp","window_start_ms":N,"window_end_ms":N,"closed_at_ms":N,
//    "count":N,"sum":x,"min":x,"max":x,"mean":x,"stddev":x,"first":x,"first_time_ms":N,"last":x,
//    "last_time_ms":N,"rate_per_s":x[,"quantiles":{"p50":x,"p90":x,"p99":x}]}
// (scope "group": "group" and "group_tag" instead of "device"). --max-records counts both.
// With --headers, each message is preceded by
//   {"message":{"partition":P,"offset":O,"key":"...","headers":{"gw-first-seq":"1",...}}}
//
//   uplink-cat --pulsar ws://HOST:PORT [--tenant T] [--namespace NS] [--topic T] [--token T]
//              [--no-dedup] [--idle-exit-ms N] [--max-records N] [--headers]
// reads a Pulsar topic through the WebSocket consumer API (a new subscription, from the first
// message). The Pulsar sink is at least once, so records are deduplicated by (gateway id, seq)
// unless --no-dedup; the number removed is reported on stderr. --headers prints
// {"message":{"message_id":"...","properties":{...}}}. Exits once nothing came for N ms.
// Exit status: 0 done, 1 some message did not decode (each one is reported on stderr) or (Kafka)
// offsets were gone before they were read (retention while uplink-cat lagged; reported),
// 2 usage or connection error. Logs go to stderr. Single-threaded (plus librdkafka's threads).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <thread>
#include <nlohmann/json.hpp>

#include "uplink/batch.h"
#include "uplink/kafka_reader.h"
#include "uplink/pulsar_reader.h"

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

// Prints the records (or aggregates) of one batch; with `seen`, only (gateway id, seq) not printed
// before (the rest are counted in `removed`).
void print_batch(const gw::uplink::Batch& batch, std::uint64_t max_records, std::uint64_t& printed,
                 std::map<std::string, std::set<std::uint64_t>>* seen, std::uint64_t& removed) {
  auto fresh = [&](gw::buffer::Seq seq) {
    if (seen == nullptr || (*seen)[batch.gateway_id].insert(seq.value).second) return true;
    ++removed;
    return false;
  };
  for (const gw::uplink::BatchRecord& r : batch.records) {
    if (max_records != 0 && printed >= max_records) break;
    if (!fresh(r.seq)) continue;
    nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
    for (const auto& m : r.event.metrics) metrics[m.name] = m.value;
    nlohmann::ordered_json j;
    j["gateway"] = batch.gateway_id;
    j["seq"] = r.seq.value;
    j["device"] = r.event.device.value;
    j["device_seq"] = r.event.seq.value;
    j["boot_id"] = r.event.boot_id;
    j["time_ms"] = r.event.time.ms;
    j["metrics"] = std::move(metrics);
    std::cout << dump(j) << '\n';
    ++printed;
  }
  for (const gw::uplink::AggregateRecord& r : batch.aggregates) {
    if (max_records != 0 && printed >= max_records) break;
    if (!fresh(r.seq)) continue;
    std::cout << dump(aggregate_line(batch.gateway_id, r)) << '\n';
    ++printed;
  }
  std::cout.flush();
}

// --pulsar: reads through the WebSocket consumer API until nothing came for idle_exit_ms.
int cat_pulsar(const gw::uplink::PulsarReaderOptions& options, long idle_exit_ms, std::uint64_t max_records,
               bool headers, bool dedup) {
  auto reader = gw::uplink::PulsarReader::open(options);
  if (!reader) {
    std::cerr << "uplink-cat: " << options.service_url << " topic " << options.topic << ": "
              << reader.error().message() << '\n';
    return 2;
  }
  using Clock = std::chrono::steady_clock;
  auto last_message = Clock::now();
  std::uint64_t printed = 0, bad = 0, removed = 0;
  std::map<std::string, std::set<std::uint64_t>> seen;
  while (g_stop == 0 && (max_records == 0 || printed < max_records)) {
    auto next = (*reader)->next(std::chrono::milliseconds(100));
    if (!next) {
      std::cerr << "uplink-cat: " << next.error().message() << '\n';
      return 2;
    }
    if (!next->has_value()) {
      if (idle_exit_ms > 0 && Clock::now() - last_message >= std::chrono::milliseconds(idle_exit_ms)) break;
      continue;
    }
    last_message = Clock::now();
    const gw::uplink::PulsarMessage& msg = **next;
    if (headers) {
      nlohmann::ordered_json p = nlohmann::ordered_json::object();
      for (const auto& [k, v] : msg.properties) p[k] = v;
      nlohmann::ordered_json m;
      m["message"] = {{"message_id", msg.message_id}, {"key", msg.key}, {"properties", p}};
      std::cout << dump(m) << '\n';
    }
    auto batch = gw::uplink::decode_batch(msg.payload);
    if (!batch) {
      ++bad;
      std::cerr << "uplink-cat: message " << msg.message_id << ": " << batch.error().message() << '\n';
      continue;
    }
    print_batch(*batch, max_records, printed, dedup ? &seen : nullptr, removed);
  }
  std::cout.flush();
  if (dedup) std::cerr << "uplink-cat: " << removed << " duplicate record(s) removed (by gateway id and seq)\n";
  if (bad > 0) std::cerr << "uplink-cat: " << bad << " message(s) did not decode\n";
  return bad > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("uplink-cat"));
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{
      "uplink-cat: prints the records (or aggregates) of the gateway's Kafka batches as JSON lines.\n"
      "Reads every partition of the topic from the beginning (no consumer group).\n"
      "Exit status: 0 done, 1 some message did not decode or (Kafka) offsets were gone before they were read, 2 usage or connection error."};
  std::string brokers;
  std::string topic = "telemetry";
  long idle_exit_ms = 3000;
  std::uint64_t max_records = 0;
  bool headers = false;
  std::string done_file;
  std::vector<std::string> props;
  auto* kafka_opt = app.add_option("--kafka", brokers, "bootstrap servers, HOST:PORT[,...]");
  gw::uplink::PulsarReaderOptions pulsar;
  bool no_dedup = false;
  auto* pulsar_opt = app.add_option("--pulsar", pulsar.service_url,
                                    "read a Pulsar topic through the WebSocket consumer API at this service URL");
  pulsar_opt->excludes(kafka_opt);
  app.add_option("--tenant", pulsar.tenant, "with --pulsar: the tenant")->capture_default_str();
  app.add_option("--namespace", pulsar.ns, "with --pulsar: the namespace")->capture_default_str();
  app.add_option("--token", pulsar.token, "with --pulsar: bearer token");
  app.add_flag("--no-dedup", no_dedup, "with --pulsar: print every copy (no dedup by gateway id and seq)");
  app.add_option("--topic", topic, "topic to read")->capture_default_str();
  app.add_option("--idle-exit-ms", idle_exit_ms,
                 "exit once every partition reached its end and nothing new came for this long (0: never)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max-records", max_records, "exit after printing this many records (0: no limit)");
  app.add_option("--done-file", done_file,
                 "with --kafka: keep consuming (through broker outages) until this file exists, then idle-exit");
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
  if (*pulsar_opt) {
    pulsar.topic = topic;
    return cat_pulsar(pulsar, idle_exit_ms, max_records, headers, !no_dedup);
  }
  if (!*kafka_opt) {
    std::cerr << "uplink-cat: --kafka or --pulsar is required\n";
    return 2;
  }

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
  // With a done file the brokers may be down when the run starts: keep trying until it exists.
  while (!reader && !done_file.empty() && reader.error() == gw::uplink::errc::unreachable && g_stop == 0 &&
         !std::filesystem::exists(done_file)) {
    std::cerr << "uplink-cat: " << brokers << ": " << reader.error().message() << "; trying again\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    reader = gw::uplink::KafkaReader::open(ropt);
  }
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
      if (done_file.empty()) return 2;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));  // brokers down during a run: wait
      continue;
    }
    if (!next->has_value()) {
      const bool done = done_file.empty() || std::filesystem::exists(done_file);
      // at_end() is what the consumer last heard (stale while it reconnects): the brokers confirm.
      if (done && idle_exit_ms > 0 && (*reader)->at_end() &&
          Clock::now() - last_message >= std::chrono::milliseconds(idle_exit_ms) &&
          (*reader)->caught_up(std::chrono::seconds(2))) {
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
    std::uint64_t removed = 0;
    print_batch(*batch, max_records, printed, nullptr, removed);
  }
  std::cout.flush();
  if (bad > 0) std::cerr << "uplink-cat: " << bad << " message(s) did not decode\n";
  const std::uint64_t skipped = (*reader)->skipped();
  if (skipped > 0) {
    std::cerr << "uplink-cat: " << skipped << " offset(s) of " << topic
              << " were gone (retention) before they were read: the output is incomplete\n";
  }
  return bad > 0 || skipped > 0 ? 1 : 0;
}
