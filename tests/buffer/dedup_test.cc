// Tests of duplicate detection in append() (RecordIn::dedup; the window's own rules are in
// dedup_window_test.cc), side tables with consumer commits, and the summarize overflow policy, over
// a real LMDB environment.
#include "tests/support/catch.h"

#include <algorithm>
#include <chrono>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "buffer/ring.h"
#include "tests/support/support.h"

namespace {

using gw::buffer::ConsumerCommit;
using gw::buffer::DedupKey;
using gw::buffer::Durability;
using gw::buffer::Options;
using gw::buffer::Overflow;
using gw::buffer::RecordIn;
using gw::buffer::RecordType;
using gw::buffer::Ring;
using gw::buffer::Seq;
using gw::buffer::TableWrite;

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

std::unique_ptr<Ring> open_ring(const Options& options) {
  auto ring = Ring::open(options);
  REQUIRE(ring.has_value());
  return std::move(*ring);
}

// Appends one record per key, each its own payload; returns the seqs (0 = dropped duplicate).
std::vector<Seq> append_keys(Ring& ring, const std::vector<DedupKey>& keys) {
  std::vector<std::vector<std::uint8_t>> payloads;
  std::vector<RecordIn> in;
  payloads.reserve(keys.size());
  for (const DedupKey& k : keys) {
    std::string text(k.source);
    text.append("/").append(std::to_string(k.seq));
    payloads.push_back(bytes_of(text));
  }
  for (std::size_t i = 0; i < keys.size(); ++i) in.push_back(RecordIn{RecordType::telemetry, payloads[i], keys[i]});
  auto r = ring.append(in);
  REQUIRE(r.has_value());
  return *r;
}

}  // namespace

TEST_CASE("append drops duplicates in the same transaction, also across restarts") {
  gw::test::TempDir dir;
  const Options options{.path = dir.path().string(), .durability = Durability::os};
  {
    auto ring = open_ring(options);
    auto seqs = append_keys(*ring, {{"dev-1", 0, 1, 100}, {"dev-1", 0, 2, 101}, {"dev-1", 0, 1, 100}, {"dev-2", 0, 1, 100}});
    CHECK(seqs == std::vector<Seq>{Seq{1}, Seq{2}, Seq{0}, Seq{3}});
    // A record without a key is never dropped.
    const auto p = bytes_of("plain");
    const RecordIn plain{RecordType::telemetry, p};
    CHECK(ring->append(std::span(&plain, 1)).value() == std::vector<Seq>{Seq{4}});
    CHECK(ring->append(std::span(&plain, 1)).value() == std::vector<Seq>{Seq{5}});
    auto s = ring->stats();
    CHECK(s.duplicates_total == 1);
    CHECK(s.dedup_sources == 2);
    CHECK(s.records == 5);
  }
  auto ring = open_ring(options);
  auto seqs = append_keys(*ring, {{"dev-2", 0, 1, 100}, {"dev-1", 0, 2, 101}, {"dev-1", 0, 3, 102}});
  CHECK(seqs == std::vector<Seq>{Seq{0}, Seq{0}, Seq{6}});
  CHECK(ring->stats().duplicates_total == 3);
}

TEST_CASE("append drops conflicting and stale copies with their own answer, counted across restarts") {
  gw::test::TempDir dir;
  const Options options{.path = dir.path().string(),
                        .durability = Durability::os,
                        .dedup = {.window = 8, .seq_bits = 16, .reboot_time_bound = std::chrono::milliseconds(1000)}};
  {
    auto ring = open_ring(options);
    std::vector<DedupKey> keys;
    for (std::uint64_t s = 65530; s < 65536 + 12; ++s) keys.push_back({"dev-1", 0, s & 0xffff, static_cast<std::int64_t>(100'000 + s), 7});
    auto seqs = append_keys(*ring, keys);
    CHECK(std::all_of(seqs.begin(), seqs.end(), [](Seq s) { return gw::buffer::stored(s); }));
    seqs = append_keys(*ring, {{"dev-1", 0, 11, 200'000, 7},     // a re-stamped copy: duplicate
                               {"dev-1", 0, 10, 100'000, 99},    // same identity, other values
                               {"dev-1", 0, 65529, 100'000, 7},  // far behind, never seen, older than a reboot could be
                               {"dev-1", 0, 65533, 165'600, 7}});  // far behind, in time: a reboot
    CHECK(seqs[0] == gw::buffer::kDroppedDuplicate);
    CHECK(seqs[1] == gw::buffer::kDroppedConflicting);
    CHECK(seqs[2] == gw::buffer::kDroppedStale);
    CHECK(gw::buffer::stored(seqs[3]));
    CHECK_FALSE(gw::buffer::stored(seqs[1]));
  }
  auto ring = open_ring(options);
  const auto s = ring->stats();
  CHECK(s.duplicates_total == 1);
  CHECK(s.duplicates_conflicting_total == 1);
  CHECK(s.stale_sequence_total == 1);
  CHECK(s.reboots_total == 1);
  CHECK(s.seq_wraps_total == 1);
  CHECK(s.records == 18 + 1);
}

TEST_CASE("append dedup: concurrent appenders with redeliveries store each record exactly once") {
  gw::test::TempDir dir;
  auto ring = open_ring({.path = dir.path().string(), .durability = Durability::fsync});
  constexpr int kThreads = 4, kDevices = 20, kSeqs = 60;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::map<std::pair<int, int>, int> stored;  // (device, seq) -> times stored
  std::atomic<int> append_errors{0};
  // Catch2's assertions are not thread-safe (TSan): the threads count, the main thread checks.
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      // Every thread sends every record of its half of the devices, plus random redeliveries, so
      // the same record arrives from two threads (like two ingest workers after a redelivery).
      for (int i = 0; i < kDevices * kSeqs; ++i) {
        const int dev = (t % 2) + 2 * static_cast<int>(rng() % (kDevices / 2));
        const int seq = 1 + static_cast<int>(rng() % kSeqs);
        std::string source = "d";
        source.append(std::to_string(dev));
        const std::vector<std::uint8_t> payload = bytes_of(source + "/" + std::to_string(seq));
        const RecordIn in{RecordType::telemetry, payload,
                          DedupKey{source, 0, static_cast<std::uint64_t>(seq), 1000 + seq}};
        auto seqs = ring->append(std::span(&in, 1));
        if (!seqs || seqs->size() != 1) {
          ++append_errors;
          continue;
        }
        if ((*seqs)[0] != Seq{0}) {
          std::lock_guard lock(mu);
          ++stored[{dev, seq}];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(append_errors == 0);
  for (const auto& [key, n] : stored) {
    CAPTURE(key.first, key.second);
    CHECK(n == 1);
  }
  auto s = ring->stats();
  CHECK(s.records == stored.size());
  CHECK(s.duplicates_total == static_cast<std::uint64_t>(kThreads * kDevices * kSeqs) - stored.size());
}

TEST_CASE("side tables commit together with the cursor and appended records") {
  gw::test::TempDir dir;
  const Options options{.path = dir.path().string(), .durability = Durability::os};
  const auto k1 = bytes_of("key-1"), k2 = bytes_of("key-2"), v1 = bytes_of("state-1"), v2 = bytes_of("state-2");
  const auto agg = bytes_of("aggregate");
  {
    auto ring = open_ring(options);
    REQUIRE(ring->register_cursor("windowing").has_value());
    auto p = bytes_of("raw");
    const std::vector<RecordIn> raw(3, RecordIn{RecordType::telemetry, p});
    REQUIRE(ring->append(raw).has_value());
    CHECK_FALSE(ring->table_get("state", k1).value().has_value());  // never written: absent
    const std::vector<TableWrite> writes{{"state", k1, std::span<const std::uint8_t>(v1)},
                                         {"state", k2, std::span<const std::uint8_t>(v2)}};
    const RecordIn out{RecordType::aggregate, agg};
    auto seqs = ring->commit(ConsumerCommit{"windowing", Seq{2}, writes, std::span(&out, 1)});
    REQUIRE(seqs.has_value());
    CHECK(*seqs == std::vector<Seq>{Seq{4}});
    CHECK(ring->acked("windowing").value() == Seq{2});
    CHECK(ring->table_get("state", k1).value() == v1);
    // Delete one key; the cursor may stay where it is.
    const std::vector<TableWrite> del{{"state", k2, std::nullopt}};
    REQUIRE(ring->commit(ConsumerCommit{"windowing", Seq{2}, del}).has_value());
    // A bad commit changes nothing at all.
    CHECK_FALSE(ring->commit(ConsumerCommit{"windowing", Seq{99}, writes}).has_value());
    CHECK_FALSE(ring->commit(ConsumerCommit{"nobody", Seq{1}, writes}).has_value());
    const std::vector<TableWrite> bad_name{{"Bad Name", k1, std::span<const std::uint8_t>(v1)}};
    CHECK(ring->commit(ConsumerCommit{"windowing", Seq{3}, bad_name}).error() == gw::buffer::errc::invalid_argument);
    CHECK(ring->acked("windowing").value() == Seq{2});
  }
  auto ring = open_ring(options);  // tables are found again after a restart
  CHECK(ring->table_get("state", k1).value() == v1);
  CHECK_FALSE(ring->table_get("state", k2).value().has_value());
  auto all = ring->table_scan("state", {}, 10);
  REQUIRE(all.has_value());
  REQUIRE(all->size() == 1);
  CHECK((*all)[0].key == k1);
  auto read = ring->read(Seq{3}, 10, 1 << 20).value();
  REQUIRE(read.size() == 1);
  CHECK(read[0].type == RecordType::aggregate);
  CHECK(read[0].payload == agg);
  CHECK(ring->last_seq() == Seq{4});
}

TEST_CASE("table_scan returns keys in order from a start key") {
  gw::test::TempDir dir;
  auto ring = open_ring({.path = dir.path().string(), .durability = Durability::os});
  REQUIRE(ring->register_cursor("c").has_value());
  std::vector<std::vector<std::uint8_t>> keys;
  for (int i = 0; i < 50; ++i) {
    std::string k = "k";
    keys.push_back(bytes_of(k.append(std::to_string(100 + i))));
  }
  std::vector<TableWrite> writes;
  for (const auto& k : keys) writes.push_back({"t", k, std::span<const std::uint8_t>(k)});
  REQUIRE(ring->commit(ConsumerCommit{"c", Seq{0}, writes}).has_value());
  auto part = ring->table_scan("t", bytes_of("k120"), 5).value();
  REQUIRE(part.size() == 5);
  CHECK(part.front().key == bytes_of("k120"));
  CHECK(part.back().key == bytes_of("k124"));
  CHECK(ring->table_scan("t", bytes_of("k2"), 5).value().empty());
}

TEST_CASE("overflow summarize evicts only what the windows counted, never aggregates, else waits") {
  gw::test::TempDir dir;
  const Options options{.path = dir.path().string(), .max_bytes = 512 * 1024, .durability = Durability::os,
                        .overflow = Overflow::summarize};
  auto ring = open_ring(options);
  REQUIRE(ring->register_cursor("windowing").has_value());
  REQUIRE(ring->register_cursor("uplink").has_value());  // the uplink is down: it acks nothing
  const std::vector<std::uint8_t> payload(1000, 0x5a);
  const RecordIn in{RecordType::telemetry, payload};
  const auto agg = bytes_of("summary");
  std::uint64_t appended = 0;
  std::uint64_t aggregates = 0;
  // The windows keep up: they ack everything and emit an aggregate now and then.
  for (int i = 0; i < 3000; ++i) {
    auto seqs = ring->append(std::span(&in, 1));
    REQUIRE(seqs.has_value());
    ++appended;
    if (i % 100 == 99) {
      const RecordIn out{RecordType::aggregate, agg};
      REQUIRE(ring->commit(ConsumerCommit{"windowing", ring->last_seq(), {}, std::span(&out, 1)}).has_value());
      ++aggregates;
    } else {
      REQUIRE(ring->commit(ConsumerCommit{"windowing", ring->last_seq()}).has_value());
    }
  }
  auto s = ring->stats();
  CHECK(s.summarized_total > 0);
  CHECK(s.summarized_total == s.evicted_total);
  CHECK(s.records + s.evicted_total == appended + aggregates);
  // Every aggregate record is still there.
  std::uint64_t found = 0;
  Seq after{0};
  for (int i = 0; i < 10000; ++i) {
    auto batch = ring->read(after, 500, 1 << 30).value();
    if (batch.empty()) break;
    for (const auto& r : batch) found += r.type == RecordType::aggregate ? 1 : 0;
    after = batch.back().seq;
  }
  CHECK(found == aggregates);

  // Now the windows stop acknowledging: nothing more may be evicted, so an append waits.
  std::stop_source stop;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop.request_stop();
  });
  bool waited = false;
  for (int i = 0; i < 2000; ++i) {
    auto r = ring->append(std::span(&in, 1), stop.get_token());
    if (!r) {
      CHECK(r.error() == gw::buffer::errc::stopped);
      waited = true;
      break;
    }
  }
  stopper.join();
  CHECK(waited);
  // Nothing the windows had not counted was evicted.
  const Seq counted = ring->acked("windowing").value();
  auto rest = ring->read(counted, 1, 1 << 20).value();
  REQUIRE_FALSE(rest.empty());
  CHECK(rest.front().seq == counted.next());
  CHECK(ring->stats().summarized_total <= counted.value);
}
