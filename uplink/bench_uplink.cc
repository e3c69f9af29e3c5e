// bench-uplink: bytes per record on the wire, and delivery throughput of the Kafka sink.
//
//   bench-uplink [--quick] [--data DIR] [--records N] [--brokers HOST:PORT] [--pulsar ws://HOST:PORT]
//   bench-uplink --rates [--seconds S] [--lingers 100ms,1s,...]
//
// Sizes, on two data sets (the simulator's standard mix, and the Intel Lab sensor data replayed as
// telemetry), in batches of 1000 records: the records as JSON lines (uplink-cat's form), JSON lines
// in one zstd frame per batch (what a simple gateway sends), the row batch (format 1) and our
// columnar batch (format 2), each zstd level 3. Throughput: records/s the KafkaUplink delivers from
// an LMDB ring to an in-process mock cluster, against a plain librdkafka producer (idempotent,
// acks=all) in the same run sending the same records, each stored payload as one message (the
// ratio), and sending our precomputed batch values (a ceiling for reference: no reading, no encoding);
// and the sink with exactly_once (transactions) against the same records. --brokers sends to a real
// Kafka instead of the mock (topics uplink-idempotent, uplink-exactly-once, plain-per-record and
// plain-batches, created by the caller or by the broker's auto-creation: tests/bench/uplink_real.sh).
// The Pulsar sink sends the same records to the tests' WebSocket protocol server (built with the
// tests: it answers at once and keeps messages in memory, so that measures the sink alone), or with
// --pulsar to a real Pulsar's WebSocket service (topic uplink-pulsar).
//
// --rates: what a small fleet costs on the link. Records are stored at a paced 10, 100, 1,000 and
// 10,000 events/s (the simulator's mix, each stamped with the time it is stored) for S seconds
// (default 10) while the sink sends them to the mock with each linger; per rate and linger: bytes
// per record sent (compressed values) and records per batch, and the mean delay from storing to
// the broker's acknowledgement (what the linger costs).
//
// Prints `BENCH <name> <value> <unit>` and `RATIO <name> <value>` lines on stdout; logs on stderr.
// Single-threaded apart from the sink's and librdkafka's threads.
#include <librdkafka/rdkafka.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "buffer/ring.h"
#include "firmware-sim/metrics.h"
#include "uplink/batch.h"
#include "uplink/kafka_mock.h"
#include "uplink/kafka_sink.h"
#include "uplink/pulsar_sink.h"
#ifdef GW_BENCH_PULSAR
#include "tests/support/pulsar_ws_server.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr std::size_t kBatch = 1000;
constexpr std::uint32_t kDevices = 50;

void bench(const std::string& name, double value, const char* unit) {
  std::printf("BENCH %s %.3f %s\n", name.c_str(), value, unit);
  std::fflush(stdout);
}
void ratio(const std::string& name, double value) {
  std::printf("RATIO %s %.3f\n", name.c_str(), value);
  std::fflush(stdout);
}

double round_to(double v, int decimals) {
  const double p = std::pow(10.0, decimals);
  return std::round(v * p) / p;
}

// `n` records from `devices` devices reporting in turn every ~100 ms (a few ms of jitter), the
// way the simulator publishes and the ring stores them.
std::vector<gw::uplink::BatchRecord> make_records(gw::firmware_sim::MetricSource& source, std::size_t n,
                                                  bool sensor_resolution) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> jitter(0, 3);
  std::vector<gw::uplink::BatchRecord> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t device = i % kDevices;
    const std::uint64_t round = i / kDevices;
    gw::ingest::Event e{gw::ingest::DeviceId{"dev-" + std::to_string(device + 1)}, gw::ingest::DeviceSeq{round + 1},
                        gw::ingest::EventTime{1'700'000'000'000 + static_cast<std::int64_t>(round) * 100 +
                                              static_cast<std::int64_t>(device) * 2 + jitter(rng)},
                        source.next(device)};
    if (sensor_resolution) {
      // What a real sensor reports: 0.01 degC, 0.01 %RH, 0.1 lux, 1 mV.
      static constexpr int kDecimals[] = {2, 2, 1, 3};
      for (std::size_t m = 0; m < e.metrics.size() && m < 4; ++m)
        e.metrics[m].value = round_to(e.metrics[m].value, kDecimals[m]);
    }
    out.push_back({gw::buffer::Seq{i + 1}, std::move(e)});
  }
  return out;
}

std::string json_line(const std::string& gateway, const gw::uplink::BatchRecord& r) {
  nlohmann::ordered_json metrics = nlohmann::ordered_json::object();
  for (const auto& m : r.event.metrics) metrics[m.name] = m.value;
  nlohmann::ordered_json j;
  j["gateway"] = gateway;
  j["seq"] = r.seq.value;
  j["device"] = r.event.device.value;
  j["device_seq"] = r.event.seq.value;
  j["time_ms"] = r.event.time.ms;
  j["metrics"] = std::move(metrics);
  return j.dump() + "\n";
}

void sizes(const std::string& set, const std::vector<gw::uplink::BatchRecord>& records) {
  const std::string gateway = "edge-1";
  double json = 0, zjson = 0, rows = 0, cols = 0;
  for (std::size_t at = 0; at < records.size(); at += kBatch) {
    const std::size_t end = std::min(records.size(), at + kBatch);
    gw::uplink::Batch batch{gateway, records[at].seq, records[end - 1].seq,
                            {records.begin() + static_cast<std::ptrdiff_t>(at),
                             records.begin() + static_cast<std::ptrdiff_t>(end)}};
    std::string lines;
    for (const auto& r : batch.records) lines += json_line(gateway, r);
    json += static_cast<double>(lines.size());
    zjson += static_cast<double>(
        gw::uplink::compress_frame({reinterpret_cast<const std::uint8_t*>(lines.data()), lines.size()}, 3).size());
    rows += static_cast<double>(gw::uplink::encode_batch(batch, 3, gw::uplink::BatchLayout::rows).size());
    const auto value = gw::uplink::encode_batch(batch, 3);
    cols += static_cast<double>(value.size());
    auto back = gw::uplink::decode_batch(value);
    if (!back || back->records != batch.records) {
      std::fprintf(stderr, "bench-uplink: the columnar batch did not round-trip\n");
      std::exit(1);
    }
  }
  const double n = static_cast<double>(records.size());
  bench(set + ".json_lines", json / n, "bytes/record");
  bench(set + ".json_lines_zstd", zjson / n, "bytes/record");
  bench(set + ".row_batch_zstd", rows / n, "bytes/record");
  bench(set + ".columnar_batch_zstd", cols / n, "bytes/record");
  ratio(set + ".columnar_vs_json", cols / json);
  ratio(set + ".columnar_vs_json_zstd", cols / zjson);
}

// Records/s of a plain idempotent producer sending `values` (one message each) to `topic`.
double plain_producer(const std::string& bootstrap, const std::string& topic,
                      const std::vector<std::vector<std::uint8_t>>& values, std::size_t records) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  for (auto [k, v] : {std::pair{"bootstrap.servers", bootstrap.c_str()}, {"enable.idempotence", "true"},
                      {"acks", "all"}, {"compression.codec", "none"}, {"log_level", "3"}}) {
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "bench-uplink: %s\n", err);
      std::exit(1);
    }
  }
  static std::size_t delivered;
  delivered = 0;
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) ++delivered;
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    std::fprintf(stderr, "bench-uplink: %s\n", err);
    std::exit(1);
  }
  const std::string key = "edge-plain";
  const auto t0 = Clock::now();
  for (const auto& v : values) {
    while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
                             RD_KAFKA_V_VALUE(const_cast<std::uint8_t*>(v.data()), v.size()),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 10);
    }
    rd_kafka_poll(rk, 0);
  }
  rd_kafka_flush(rk, 60000);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (delivered != values.size()) std::fprintf(stderr, "bench-uplink: plain producer delivered %zu of %zu\n", delivered, values.size());
  rd_kafka_destroy(rk);
  return static_cast<double>(records) / s;
}

// A fresh ring in `dir` (removed first; the caller removes it at the end), durability os.
std::unique_ptr<gw::buffer::Ring> open_scratch_ring(const fs::path& dir) {
  fs::remove_all(dir);
  gw::buffer::Options bopt;
  bopt.path = dir.string();
  bopt.max_bytes = 2ull << 30;
  bopt.durability = gw::buffer::Durability::os;
  auto ring = gw::buffer::Ring::open(bopt);
  if (!ring) {
    std::fprintf(stderr, "bench-uplink: ring: %s\n", ring.error().message().c_str());
    std::exit(1);
  }
  return std::move(*ring);
}

// Records/s the sink delivers from `ring` through `cursor` (registered, at the start) to `topic`.
double sink_rate(gw::buffer::Ring& ring, const std::string& bootstrap, const std::string& topic,
                 const std::string& cursor, bool exactly_once, gw::uplink::SinkStats& st) {
  gw::uplink::KafkaOptions opt;
  opt.brokers = bootstrap;
  opt.topic = topic;
  opt.cursor = cursor;
  opt.linger = 0ms;
  opt.exactly_once = exactly_once;
  opt.drain_max_records_per_s = 0;  // the whole ring is a backlog here: measure the sink, not its pacing
  auto sink = gw::uplink::KafkaUplink::create(opt, "edge-1", ring);
  if (!sink) std::exit(1);
  const gw::buffer::Seq last = ring.last_seq();
  if (!(*sink)->start()) std::exit(1);
  // Timed from the end of the start-up (partition lookup, read-back, the topic's limits): a one-off
  // cost of each start, not of sending (against the mock, which does not answer DescribeConfigs,
  // it is about 1 s).
  const auto deadline = Clock::now() + 300s;
  while ((*sink)->stats().read_backs == 0 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  const auto t0 = Clock::now();
  while ((*sink)->stats().last_acked < last && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  st = (*sink)->stats();
  (*sink)->stop();
  if (st.last_acked < last) {
    std::fprintf(stderr, "bench-uplink: %s delivered up to seq %llu of %llu in 300 s\n", cursor.c_str(),
                 static_cast<unsigned long long>(st.last_acked.value), static_cast<unsigned long long>(last.value));
    std::exit(1);
  }
  return static_cast<double>(st.records_acked) / s;
}

// Records/s the Pulsar sink delivers from `ring` through cursor uplink.pulsar to `service_url`,
// timed from its first read-back (the start-up: connect, the topic's end), as the Kafka sink's.
double pulsar_rate(gw::buffer::Ring& ring, const std::string& service_url) {
  gw::uplink::PulsarOptions opt;
  opt.service_url = service_url;
  opt.topic = "uplink-pulsar";
  opt.linger = 0ms;
  auto sink = gw::uplink::PulsarUplink::create(opt, "edge-1", ring);
  if (!sink || !(*sink)->start()) std::exit(1);
  const gw::buffer::Seq last = ring.last_seq();
  const auto deadline = Clock::now() + 300s;
  while ((*sink)->stats().read_backs == 0 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  const auto t0 = Clock::now();
  while ((*sink)->stats().last_acked < last && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto st = (*sink)->stats();
  (*sink)->stop();
  if (st.last_acked < last) {
    std::fprintf(stderr, "bench-uplink: the Pulsar sink delivered up to seq %llu of %llu in 300 s\n",
                 static_cast<unsigned long long>(st.last_acked.value), static_cast<unsigned long long>(last.value));
    std::exit(1);
  }
  return static_cast<double>(st.records_acked) / s;
}

void throughput(const std::vector<gw::uplink::BatchRecord>& records, std::string bootstrap,
                const std::string& pulsar_url) {
  std::unique_ptr<gw::uplink::MockCluster> mock;
  if (bootstrap.empty()) {
    auto cluster = gw::uplink::MockCluster::create(1);
    if (!cluster) {
      std::fprintf(stderr, "bench-uplink: no mock cluster\n");
      std::exit(1);
    }
    for (const char* topic : {"uplink-idempotent", "uplink-exactly-once", "plain-per-record", "plain-batches"}) {
      if (!(*cluster)->create_topic(topic, 1)) std::exit(1);
    }
    mock = std::move(*cluster);
    bootstrap = mock->bootstrap();
  }
  const std::string where = mock ? "" : "_real_kafka";
  const fs::path dir = fs::temp_directory_path() / ("bench-uplink-" + std::to_string(::getpid()));
  auto ring = open_scratch_ring(dir);
  std::vector<std::vector<std::uint8_t>> payloads;
  for (std::size_t at = 0; at < records.size(); at += kBatch) {
    payloads.clear();
    std::vector<gw::buffer::RecordIn> in;
    for (std::size_t i = at; i < std::min(records.size(), at + kBatch); ++i)
      payloads.push_back(gw::ingest::encode_telemetry(records[i].event));
    for (const auto& p : payloads) in.push_back({gw::buffer::RecordType::telemetry, p});
    if (!ring->append(in)) std::exit(1);
  }

  // The same message values the sink will send, for the plain producer.
  std::vector<std::vector<std::uint8_t>> values;
  for (std::size_t at = 0; at < records.size(); at += kBatch) {
    const std::size_t end = std::min(records.size(), at + kBatch);
    gw::uplink::Batch batch{"edge-1", records[at].seq, records[end - 1].seq,
                            {records.begin() + static_cast<std::ptrdiff_t>(at),
                             records.begin() + static_cast<std::ptrdiff_t>(end)}};
    values.push_back(gw::uplink::encode_batch(batch, 3));
  }
  // The baseline: a plain producer of the same records, each stored payload one message (what a
  // simple gateway does, librdkafka batching them); and, for reference, of our batch values.
  std::vector<std::vector<std::uint8_t>> singles;
  singles.reserve(records.size());
  for (const auto& r : records) singles.push_back(gw::ingest::encode_telemetry(r.event));
  const double plain = plain_producer(bootstrap, "plain-per-record", singles, records.size());
  const double plain_batches = plain_producer(bootstrap, "plain-batches", values, records.size());

  // Each sink reads the same records through a cursor of its own: all registered first, so that
  // one sink's acks do not trim what another has still to read.
  for (const char* cursor : {"uplink.idempotent", "uplink.exactly_once", "uplink.pulsar"}) {
    if (!ring->register_cursor(cursor)) std::exit(1);
  }
  gw::uplink::SinkStats st, eo_st;
  const double ours = sink_rate(*ring, bootstrap, "uplink-idempotent", "uplink.idempotent", false, st);
  const double eo = sink_rate(*ring, bootstrap, "uplink-exactly-once", "uplink.exactly_once", true, eo_st);
  if (!pulsar_url.empty()) {
    const double pulsar = pulsar_rate(*ring, pulsar_url);
    bench("deliver.pulsar_uplink_real_pulsar", pulsar, "records/s");
    ratio("deliver.pulsar_uplink_vs_kafka_uplink" + where, pulsar / ours);
  }
#ifdef GW_BENCH_PULSAR
  if (pulsar_url.empty()) {
    auto server = gw::test::PulsarWsServer::start();
    const double pulsar = pulsar_rate(*ring, server->url());
    bench("deliver.pulsar_uplink_ws_test_server", pulsar, "records/s");
    ratio("deliver.pulsar_uplink_vs_kafka_uplink", pulsar / ours);
  }
#endif
  ring.reset();
  fs::remove_all(dir);
  bench("deliver.kafka_uplink" + where, ours, "records/s");
  bench("deliver.kafka_uplink_exactly_once" + where, eo, "records/s");
  bench("deliver.kafka_uplink_exactly_once_transactions" + where, static_cast<double>(eo_st.transactions_committed),
        "transactions");
  bench("deliver.plain_producer_per_record" + where, plain, "records/s");
  bench("deliver.plain_producer_our_batch_values" + where, plain_batches, "records/s");
  std::size_t single_bytes = 0;
  for (const auto& v : singles) single_bytes += v.size();
  const double n = static_cast<double>(records.size());
  bench("deliver.kafka_uplink_value_bytes" + where, static_cast<double>(st.bytes_sent) / n, "bytes/record");
  bench("deliver.plain_producer_per_record_value_bytes" + where, static_cast<double>(single_bytes) / n, "bytes/record");
  ratio("deliver.uplink_vs_plain_producer" + where, ours / plain);
  ratio("deliver.exactly_once_vs_idempotent" + where, eo / ours);
}

// One paced run: `rate` records/s stored for `seconds` while a sink with `linger` sends them.
void paced(const std::vector<gw::uplink::BatchRecord>& records, double rate, std::chrono::milliseconds linger,
           std::chrono::seconds seconds) {
  auto cluster = gw::uplink::MockCluster::create(1);
  if (!cluster || !(*cluster)->create_topic("telemetry", 1)) std::exit(1);
  const fs::path dir = fs::temp_directory_path() / ("bench-uplink-paced-" + std::to_string(::getpid()));
  auto ring = open_scratch_ring(dir);
  gw::uplink::KafkaOptions opt;
  opt.brokers = (*cluster)->bootstrap();
  opt.linger = linger;
  auto sink = gw::uplink::KafkaUplink::create(opt, "edge-1", *ring);
  if (!sink || !(*sink)->start()) std::exit(1);
  while ((*sink)->stats().read_backs == 0) std::this_thread::sleep_for(1ms);
  const auto interval = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
  const auto t0 = Clock::now();
  auto next = t0;
  std::size_t n = 0;
  for (; Clock::now() - t0 < seconds; ++n) {
    std::this_thread::sleep_until(next);
    next += interval;
    gw::ingest::Event e = records[n % records.size()].event;
    e.time = gw::ingest::EventTime{std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count()};
    const auto payload = gw::ingest::encode_telemetry(e);
    const gw::buffer::RecordIn in[] = {{gw::buffer::RecordType::telemetry, payload}};
    if (!ring->append(in)) std::exit(1);
  }
  const gw::buffer::Seq last = ring->last_seq();
  const auto deadline = Clock::now() + 60s;
  while ((*sink)->stats().last_acked < last && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  const auto st = (*sink)->stats();
  (*sink)->stop();
  sink->reset();
  ring.reset();
  fs::remove_all(dir);
  const std::string name = "paced_" + std::to_string(static_cast<long>(rate)) + "_per_s_linger_" +
                           std::to_string(linger.count()) + "ms";
  bench(name + ".bytes_per_record", static_cast<double>(st.bytes_sent) / static_cast<double>(n), "bytes/record");
  bench(name + ".records_per_batch", static_cast<double>(n) / static_cast<double>(std::max<std::uint64_t>(1, st.batches_acked)),
        "records");
  bench(name + ".mean_delay", st.latency.count ? 1000.0 * st.latency.sum_s / static_cast<double>(st.latency.count) : 0.0,
        "ms");
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("bench-uplink"));
  spdlog::set_level(spdlog::level::warn);
  CLI::App app{"bench-uplink: bytes per record on the wire, and Kafka delivery throughput"};
  bool quick = false;
  std::string data;
  std::size_t n = 0;
  app.add_flag("--quick", quick, "a run of a few seconds");
  app.add_option("--data", data, "the Intel Lab data directory (default: ../shared/data/intel-lab-ibrl from the source)");
  app.add_option("--records", n, "records per data set (default 100000, --quick 20000)");
  std::string brokers;
  app.add_option("--brokers", brokers, "deliver to this Kafka instead of an in-process mock cluster");
  std::string pulsar;
  app.add_option("--pulsar", pulsar, "the Pulsar sink delivers to this WebSocket service (a real Pulsar)");
  bool rates = false;
  int seconds = 10;
  std::vector<std::string> lingers{"100ms", "1s", "5s"};
  app.add_flag("--rates", rates, "bytes per record and delay at paced rates, per linger (only this)");
  app.add_option("--seconds", seconds, "--rates: seconds per rate and linger (default 10)");
  app.add_option("--lingers", lingers, "--rates: the lingers to compare (default 100ms,1s,5s)")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  if (rates) {
    auto source = gw::firmware_sim::synthetic_source(1);
    const auto sim = make_records(*source, 1000, true);
    for (double rate : {10.0, 100.0, 1000.0, 10000.0}) {
      for (const std::string& l : lingers) {
        const long ms = l.ends_with("ms") ? std::stol(l) : std::stol(l) * 1000;
        paced(sim, rate, std::chrono::milliseconds(ms), std::chrono::seconds(seconds));
      }
    }
    return 0;
  }
  if (n == 0) n = quick ? 20000 : 100000;
  if (data.empty()) data = (fs::path(GW_SOURCE_DIR) / ".." / "shared" / "data" / "intel-lab-ibrl").lexically_normal();

  auto synthetic = gw::firmware_sim::synthetic_source(1);
  const auto sim = make_records(*synthetic, n, true);
  sizes("sim", sim);
  auto synthetic_raw = gw::firmware_sim::synthetic_source(1);
  sizes("sim_full_precision", make_records(*synthetic_raw, n, false));
  if (auto intel = gw::firmware_sim::intel_lab_source(data)) {
    sizes("intel_lab", make_records(**intel, n, false));
  } else {
    std::fprintf(stderr, "bench-uplink: no Intel Lab data in %s (--data DIR); skipped\n", data.c_str());
  }
  throughput(sim, brokers, pulsar);
  return 0;
}
