// bench-buffer: throughput of the LMDB ring (buffer/ring.h) against a raw LMDB loop in the same
// run, so that the ratios hold on a noisy machine (DESIGN.md, Benchmarks). Prints
// `BENCH <name> <value> <unit>` and `RATIO <name> <value>` lines. `--quick`: a few seconds.
// Single-threaded except the concurrent-appender phases.
#include <lmdb.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "buffer/ring.h"

namespace {

using namespace gw::buffer;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr std::size_t kRecordSize = 100;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void bench(const char* name, double value, const char* unit) { std::printf("BENCH %s %.6g %s\n", name, value, unit); }
void ratio(const char* name, double value) { std::printf("RATIO %s %.4g\n", name, value); }

[[noreturn]] void die(const char* what, int rc) {
  std::fprintf(stderr, "bench-buffer: %s: %s\n", what, mdb_strerror(rc));
  std::exit(1);
}

// The map of both the raw LMDB baseline and the ring: 8 GiB where the address space holds it, 1 GiB
// in a 32-bit process (armhf), where the ring refuses more than 2 GiB.
constexpr std::size_t kMapBytes = sizeof(std::size_t) >= 8 ? std::size_t{8} << 30 : std::size_t{1} << 30;

// The ceiling: raw LMDB, MDB_APPEND puts of the same record size, `batch` records per transaction,
// for about `duration`. Returns records/s.
double raw_lmdb(const fs::path& dir, bool sync, std::size_t batch, double duration) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  MDB_env* env = nullptr;
  if (int rc = mdb_env_create(&env)) die("env_create", rc);
  if (int rc = mdb_env_set_mapsize(env, kMapBytes)) die("set_mapsize", rc);
  if (int rc = mdb_env_open(env, dir.c_str(), MDB_NOTLS | (sync ? 0 : MDB_NOSYNC), 0640)) die("env_open", rc);
  MDB_dbi dbi;
  MDB_txn* txn = nullptr;
  if (int rc = mdb_txn_begin(env, nullptr, 0, &txn)) die("txn_begin", rc);
  if (int rc = mdb_dbi_open(txn, nullptr, 0, &dbi)) die("dbi_open", rc);
  if (int rc = mdb_txn_commit(txn)) die("commit", rc);
  std::vector<std::uint8_t> value(kRecordSize + 10, 0x42);
  std::uint64_t seq = 0;
  const auto start = Clock::now();
  while (seconds_since(start) < duration) {
    if (int rc = mdb_txn_begin(env, nullptr, 0, &txn)) die("txn_begin", rc);
    for (std::size_t i = 0; i < batch; ++i) {
      ++seq;
      std::uint8_t key[8];
      for (int b = 7, v = 0; b >= 0; --b, ++v) key[b] = static_cast<std::uint8_t>(seq >> (8 * v));
      MDB_val k{8, key}, v{value.size(), value.data()};
      if (int rc = mdb_put(txn, dbi, &k, &v, MDB_APPEND)) die("put", rc);
    }
    if (int rc = mdb_txn_commit(txn)) die("commit", rc);
  }
  const double rate = static_cast<double>(seq) / seconds_since(start);
  mdb_env_close(env);
  fs::remove_all(dir);
  return rate;
}

std::unique_ptr<Ring> open_ring(const fs::path& dir, Durability d, std::uint64_t max_bytes = kMapBytes) {
  Options o;
  o.path = dir.string();
  o.durability = d;
  o.max_bytes = max_bytes;
  auto r = Ring::open(o);
  if (!r) {
    std::fprintf(stderr, "bench-buffer: open %s: %s\n", dir.c_str(), r.error().message().c_str());
    std::exit(1);
  }
  return std::move(*r);
}

// `threads` appenders, each appending `batch` records per call, for about `duration`. Records/s.
double ring_append(Ring& ring, int threads, std::size_t batch, double duration, double* per_commit = nullptr) {
  const std::vector<std::uint8_t> payload(kRecordSize, 0x42);
  const std::vector<RecordIn> in(batch, RecordIn{RecordType::telemetry, payload});
  std::atomic<std::uint64_t> n{0};
  const auto commits0 = ring.stats().commits_total;
  const auto start = Clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      while (seconds_since(start) < duration) {
        if (auto r = ring.append(in); !r) {
          std::fprintf(stderr, "bench-buffer: append: %s\n", r.error().message().c_str());
          std::exit(1);
        }
        n += batch;
      }
    });
  }
  for (auto& t : ts) t.join();
  const double secs = seconds_since(start);
  if (per_commit != nullptr) {
    *per_commit = static_cast<double>(n.load()) / static_cast<double>(ring.stats().commits_total - commits0);
  }
  return static_cast<double>(n.load()) / secs;
}

// One appender, one record per call, each with a dedup key: 100 sources taking turns, each
// counting up (the dedup window of the source is read, updated and written in every commit).
double ring_append_dedup(Ring& ring, double duration) {
  const std::vector<std::uint8_t> payload(kRecordSize, 0x42);
  std::vector<std::string> sources;
  for (int i = 0; i < 100; ++i) sources.push_back("device-" + std::to_string(i));
  std::uint64_t n = 0;
  const auto start = Clock::now();
  while (seconds_since(start) < duration) {
    for (std::size_t i = 0; i < 100; ++i, ++n) {
      const RecordIn in{RecordType::telemetry, payload,
                        DedupKey{sources[i], 0, n / 100, static_cast<std::int64_t>(n), 7}};
      if (auto r = ring.append(std::span(&in, 1)); !r || !stored(r->front())) {
        std::fprintf(stderr, "bench-buffer: append with dedup failed or dropped\n");
        std::exit(1);
      }
    }
  }
  return static_cast<double>(n) / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench-buffer: the LMDB ring buffer against a raw LMDB loop"};
  bool quick = false;
  std::string dir_s = (fs::temp_directory_path() / "gw-bench-buffer").string();
  std::uint64_t restart_records = 10'000'000;
  app.add_flag("--quick", quick, "a run of a few seconds (fewer records for the restart figure)");
  app.add_option("--dir", dir_s, "scratch directory (removed at the end); put it on the device's real disk");
  app.add_option("--restart-records", restart_records, "records in the store for the restart figure (full run)");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  const fs::path dir = dir_s;
  const double d = quick ? 0.4 : 3.0;
  if (quick) restart_records = 200'000;
  std::printf("# bench-buffer%s: %zu-byte records, scratch dir %s\n", quick ? " --quick" : "", kRecordSize, dir.c_str());

  // os: batches of 100 records per append, one appender, against raw LMDB with MDB_NOSYNC.
  const double raw_os = raw_lmdb(dir / "raw", false, 100, d);
  bench("raw_lmdb_append_os_batch100", raw_os, "records/s");
  double ring_os = 0;
  {
    fs::remove_all(dir / "ring");
    auto ring = open_ring(dir / "ring", Durability::os);
    ring_os = ring_append(*ring, 1, 100, d);
  }
  bench("ring_append_os_batch100", ring_os, "records/s");
  ratio("ring_os_vs_raw_lmdb", ring_os / raw_os);

  // os, one record per append with a dedup key from 100 sources: what one MQTT subscription does
  // per message (its PUBACK waits for the commit), against raw LMDB with one record per transaction.
  const double raw_os1 = raw_lmdb(dir / "raw", false, 1, d);
  bench("raw_lmdb_append_os_batch1", raw_os1, "records/s");
  {
    fs::remove_all(dir / "ring");
    auto ring = open_ring(dir / "ring", Durability::os);
    const double rate = ring_append_dedup(*ring, d);
    bench("ring_append_os_batch1_dedup", rate, "records/s");
    bench("ring_append_os_batch1_dedup_cost", 1e6 / rate, "us/record");
    ratio("ring_os_batch1_dedup_vs_raw_lmdb_batch1", rate / raw_os1);
  }

  // fsync: the baseline is one synced commit per record; appenders append one record per call.
  const double raw_fsync1 = raw_lmdb(dir / "raw", true, 1, d);
  bench("raw_lmdb_fsync_one_per_record", raw_fsync1, "records/s");
  for (int threads : {1, 4, 16}) {
    fs::remove_all(dir / "ring");
    auto ring = open_ring(dir / "ring", Durability::fsync);
    double per_commit = 0;
    const double rate = ring_append(*ring, threads, 1, d, &per_commit);
    const std::string name = "ring_append_fsync_" + std::to_string(threads) + "_appenders_batch1";
    bench(name.c_str(), rate, "records/s");
    bench(("ring_fsync_" + std::to_string(threads) + "_appenders_records_per_commit").c_str(), per_commit, "records");
    ratio(("ring_fsync_" + std::to_string(threads) + "_appenders_vs_one_fsync_per_record").c_str(), rate / raw_fsync1);
  }
  {
    fs::remove_all(dir / "ring");
    auto ring = open_ring(dir / "ring", Durability::fsync);
    const double rate = ring_append(*ring, 16, 10, d);
    bench("ring_append_fsync_16_appenders_batch10", rate, "records/s");
    ratio("ring_fsync_16_appenders_batch10_vs_one_fsync_per_record", rate / raw_fsync1);
  }

  // A store of restart_records records: cursor read rate, restart time, disk bytes per record, trim.
  fs::remove_all(dir / "ring");
  {
    auto ring = open_ring(dir / "ring", Durability::os);
    const std::vector<std::uint8_t> payload(kRecordSize, 0x42);
    const std::vector<RecordIn> in(1000, RecordIn{RecordType::telemetry, payload});
    const auto start = Clock::now();
    for (std::uint64_t n = 0; n < restart_records; n += in.size()) {
      if (!ring->append(in)) return 1;
    }
    bench("ring_fill_os_batch1000", static_cast<double>(restart_records) / seconds_since(start), "records/s");
    if (!ring->register_cursor("bench")) return 1;
    const auto s = ring->stats();
    bench("disk_bytes_per_record", static_cast<double>(s.bytes) / static_cast<double>(s.records), "bytes");
    std::printf("# store: %llu records, %llu bytes in use, map %llu bytes\n", static_cast<unsigned long long>(s.records),
                static_cast<unsigned long long>(s.bytes), static_cast<unsigned long long>(s.map_bytes));

    Seq after{0};
    std::uint64_t read = 0;
    const auto rstart = Clock::now();
    while (seconds_since(rstart) < d) {
      auto batch = ring->read(after, 1000, 1 << 20);
      if (!batch || batch->empty()) break;
      read += batch->size();
      after = batch->back().seq;
    }
    bench("cursor_read", static_cast<double>(read) / seconds_since(rstart), "records/s");
  }
  {
    const int opens = 5;
    auto start = Clock::now();
    for (int i = 0; i < opens; ++i) (void)open_ring(dir / "ring", Durability::fsync);
    const double big = seconds_since(start) / opens;
    fs::remove_all(dir / "small");
    {
      auto small = open_ring(dir / "small", Durability::fsync);
      const std::vector<std::uint8_t> payload(kRecordSize, 0x42);
      const std::vector<RecordIn> in(10, RecordIn{RecordType::telemetry, payload});
      if (!small->append(in)) return 1;
    }
    start = Clock::now();
    for (int i = 0; i < opens; ++i) (void)open_ring(dir / "small", Durability::fsync);
    const double small = seconds_since(start) / opens;
    const std::string name = "restart_open_" + std::to_string(restart_records) + "_records";
    bench(name.c_str(), big * 1000, "ms");
    bench("restart_open_10_records", small * 1000, "ms");
    ratio(("restart_" + std::to_string(restart_records) + "_vs_10_records").c_str(), big / small);
    if (quick) std::printf("# quick: the restart figure uses %llu records, not 10M\n",
                           static_cast<unsigned long long>(restart_records));
  }
  {
    auto ring = open_ring(dir / "ring", Durability::os);
    const std::uint64_t total = ring->stats().records;
    const std::uint64_t step = std::max<std::uint64_t>(1, total / 20);
    std::uint64_t trimmed = 0;
    const auto start = Clock::now();
    const std::uint64_t first = ring->stats().first.value;
    for (std::uint64_t upto = first - 1 + step; upto < first + total && seconds_since(start) < d; upto += step) {
      if (auto a = ring->ack("bench", Seq{upto}); !a) {
        std::fprintf(stderr, "bench-buffer: ack: %s\n", a.error().message().c_str());
        return 1;
      }
      auto t = ring->trim();
      if (!t) {
        std::fprintf(stderr, "bench-buffer: trim: %s\n", t.error().message().c_str());
        return 1;
      }
      trimmed += *t;
    }
    bench("trim", static_cast<double>(trimmed) / seconds_since(start), "records/s");
  }
  fs::remove_all(dir);
  return 0;
}
