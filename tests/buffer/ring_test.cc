// Tests of gw::buffer::Ring over a real LMDB environment in a fresh temporary directory.
#include "buffer/ring.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using gw::buffer::Durability;
using gw::buffer::Options;
using gw::buffer::RecordIn;
using gw::buffer::RecordType;
using gw::buffer::Ring;
using gw::buffer::Seq;

// prefix, then "-<n>" for each number. Built by appending: GCC 12 at -O3 reports a false -Wrestrict
// for "literal" + std::string.
template <typename... Ints>
std::string tagged(const char* prefix, Ints... ns) {
  std::string s = prefix;
  (s.append("-").append(std::to_string(ns)), ...);
  return s;
}

// A unique directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = std::filesystem::temp_directory_path() / tagged("gw-ring-test", stamp, rd());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

std::unique_ptr<Ring> open_ring(const Options& options) {
  auto ring = Ring::open(options);
  REQUIRE(ring.has_value());
  return std::move(*ring);
}

Seq append_one(Ring& ring, const std::vector<std::uint8_t>& payload,
               RecordType type = RecordType::telemetry) {
  RecordIn in{type, payload};
  auto seqs = ring.append(std::span<const RecordIn>(&in, 1));
  REQUIRE(seqs.has_value());
  REQUIRE(seqs->size() == 1);
  return seqs->front();
}

}  // namespace

TEST_CASE("append then read returns the records in order with their payloads") {
  TempDir dir;
  auto ring = open_ring({.path = dir.str()});
  REQUIRE(ring->last_seq() == Seq{0});

  std::vector<std::vector<std::uint8_t>> payloads = {bytes_of("alpha"), bytes_of(""), bytes_of("gamma"),
                                                     std::vector<std::uint8_t>(5000, 0xAB)};
  std::vector<RecordIn> in;
  for (const auto& p : payloads) in.push_back({RecordType::telemetry, p});
  in[2].type = RecordType::aggregate;
  auto seqs = ring->append(in);
  REQUIRE(seqs.has_value());
  REQUIRE(*seqs == std::vector<Seq>{Seq{1}, Seq{2}, Seq{3}, Seq{4}});
  REQUIRE(ring->last_seq() == Seq{4});

  auto all = ring->read(Seq{0}, 100, 1 << 20);
  REQUIRE(all.has_value());
  REQUIRE(all->size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK((*all)[i].seq == Seq{i + 1});
    CHECK((*all)[i].payload == payloads[i]);
    CHECK((*all)[i].ingest_time_ms > 0);
  }
  CHECK((*all)[2].type == RecordType::aggregate);
  CHECK((*all)[0].type == RecordType::telemetry);

  auto tail = ring->read(Seq{2}, 100, 1 << 20);
  REQUIRE(tail.has_value());
  REQUIRE(tail->size() == 2);
  CHECK(tail->front().seq == Seq{3});

  auto limited = ring->read(Seq{0}, 2, 1 << 20);
  REQUIRE(limited.has_value());
  CHECK(limited->size() == 2);

  // max_bytes is a soft cap, but at least one record is returned.
  auto one = ring->read(Seq{3}, 100, 1);
  REQUIRE(one.has_value());
  REQUIRE(one->size() == 1);
  CHECK(one->front().seq == Seq{4});

  auto none = ring->read(Seq{4}, 100, 1 << 20);
  REQUIRE(none.has_value());
  CHECK(none->empty());
}

TEST_CASE("sequence numbers stay monotonic across reopen, and after trimming everything") {
  TempDir dir;
  {
    auto ring = open_ring({.path = dir.str()});
    append_one(*ring, bytes_of("a"));
    append_one(*ring, bytes_of("b"));
    REQUIRE(append_one(*ring, bytes_of("c")) == Seq{3});
  }
  {
    auto ring = open_ring({.path = dir.str()});
    REQUIRE(ring->last_seq() == Seq{3});
    REQUIRE(append_one(*ring, bytes_of("d")) == Seq{4});
    REQUIRE(ring->register_cursor("c").has_value());
    REQUIRE(ring->ack("c", Seq{4}).has_value());
    auto trimmed = ring->trim();
    REQUIRE(trimmed.has_value());
    REQUIRE(*trimmed == 4);
    REQUIRE(ring->stats().records == 0);
  }
  {
    auto ring = open_ring({.path = dir.str()});
    REQUIRE(ring->last_seq() == Seq{4});
    REQUIRE(ring->stats().records == 0);
    REQUIRE(append_one(*ring, bytes_of("e")) == Seq{5});
    auto acked = ring->acked("c");
    REQUIRE(acked.has_value());
    CHECK(*acked == Seq{4});
  }
}

TEST_CASE("trim deletes only what every cursor acknowledged") {
  TempDir dir;
  auto ring = open_ring({.path = dir.str()});
  for (int i = 0; i < 10; ++i) append_one(*ring, bytes_of(tagged("r", i)));

  SECTION("no cursor: nothing is trimmed") {
    auto t = ring->trim();
    REQUIRE(t.has_value());
    CHECK(*t == 0);
    CHECK(ring->stats().records == 10);
  }

  SECTION("two cursors") {
    REQUIRE(ring->register_cursor("windowing").has_value());
    REQUIRE(ring->register_cursor("kafka").has_value());
    CHECK(ring->acked("windowing").value() == Seq{0});
    REQUIRE(ring->ack("windowing", Seq{7}).has_value());
    REQUIRE(ring->ack("kafka", Seq{3}).has_value());
    // Acks never move backwards.
    REQUIRE(ring->ack("windowing", Seq{5}).has_value());
    CHECK(ring->acked("windowing").value() == Seq{7});

    auto t = ring->trim();
    REQUIRE(t.has_value());
    CHECK(*t == 3);
    auto rest = ring->read(Seq{0}, 100, 1 << 20);
    REQUIRE(rest.has_value());
    REQUIRE(rest->size() == 7);
    CHECK(rest->front().seq == Seq{4});

    // Registering again keeps the position.
    REQUIRE(ring->register_cursor("kafka").has_value());
    CHECK(ring->acked("kafka").value() == Seq{3});

    // A new cursor starts at the oldest stored record (4), so it holds back further trims.
    REQUIRE(ring->register_cursor("late").has_value());
    CHECK(ring->acked("late").value() == Seq{3});
    REQUIRE(ring->ack("kafka", Seq{10}).has_value());
    t = ring->trim();
    REQUIRE(t.has_value());
    CHECK(*t == 0);
    REQUIRE(ring->ack("late", Seq{8}).has_value());
    t = ring->trim();
    REQUIRE(t.has_value());
    CHECK(*t == 4);  // 4..7: windowing acked 7
    CHECK(ring->stats().records == 3);
    CHECK(ring->stats().trimmed_total == 7);
  }

  SECTION("unknown cursor") {
    auto a = ring->ack("nobody", Seq{1});
    REQUIRE_FALSE(a.has_value());
    CHECK(a.error() == gw::buffer::errc::unknown_cursor);
    auto b = ring->acked("nobody");
    REQUIRE_FALSE(b.has_value());
    CHECK(b.error() == gw::buffer::errc::unknown_cursor);
  }
}

TEST_CASE("a new cursor on an empty, trimmed ring starts after the last appended record") {
  TempDir dir;
  auto ring = open_ring({.path = dir.str()});
  REQUIRE(ring->register_cursor("a").has_value());
  append_one(*ring, bytes_of("x"));
  append_one(*ring, bytes_of("y"));
  REQUIRE(ring->ack("a", Seq{2}).has_value());
  REQUIRE(ring->trim().value() == 2);
  REQUIRE(ring->register_cursor("b").has_value());
  CHECK(ring->acked("b").value() == Seq{2});
}

TEST_CASE("ack beyond the last appended sequence is an error") {
  TempDir dir;
  auto ring = open_ring({.path = dir.str()});
  REQUIRE(ring->register_cursor("c").has_value());
  append_one(*ring, bytes_of("x"));
  auto bad = ring->ack("c", Seq{2});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error() == gw::buffer::errc::invalid_argument);
  CHECK(ring->acked("c").value() == Seq{0});
  REQUIRE(ring->ack("c", Seq{1}).has_value());
  CHECK(ring->acked("c").value() == Seq{1});
}

TEST_CASE("a full map refuses appends and the ring keeps working") {
  TempDir dir;
  auto ring = open_ring({.path = dir.str(), .max_bytes = 256 * 1024});
  REQUIRE(ring->register_cursor("c").has_value());
  // Small records in leaf pages, and records large enough for LMDB overflow pages; single and batched.
  const std::size_t size = GENERATE(std::size_t{100}, std::size_t{1000}, std::size_t{9000});
  const std::size_t batch = GENERATE(std::size_t{1}, std::size_t{7});
  CAPTURE(size, batch);
  const std::vector<std::uint8_t> payload(size, 0x5A);
  const std::vector<RecordIn> in(batch, RecordIn{RecordType::telemetry, payload});

  std::error_code full;
  Seq last_ok{0};
  for (int i = 0; i < 10000 && !full; ++i) {  // far beyond 256 KiB for every size
    auto r = ring->append(in);
    if (r) {
      REQUIRE(r->size() == batch);
      last_ok = r->back();
    } else {
      full = r.error();
    }
  }
  REQUIRE(full == gw::buffer::errc::map_full);
  REQUIRE(last_ok.value > 5);
  CHECK(ring->last_seq() == last_ok);

  // Still fully usable: reads, stats, acks, trims, and appends once room was made.
  auto all = ring->read(Seq{0}, 100000, 1 << 30);
  REQUIRE(all.has_value());
  REQUIRE(all->size() == last_ok.value);
  CHECK(all->back().payload == payload);
  CHECK(ring->stats().records == last_ok.value);
  REQUIRE(ring->ack("c", last_ok).has_value());
  auto t = ring->trim();
  REQUIRE(t.has_value());
  CHECK(*t == last_ok.value);
  CHECK(append_one(*ring, payload) == last_ok.next());
  CHECK(append_one(*ring, payload) == Seq{last_ok.value + 2});
}

TEST_CASE("durability os: records survive close and reopen") {
  TempDir dir;
  const Options options{
      .path = dir.str(), .durability = Durability::os, .sync_interval = std::chrono::milliseconds(20)};
  {
    auto ring = open_ring(options);
    for (int i = 0; i < 50; ++i) append_one(*ring, bytes_of(tagged("os", i)));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the background sync run at least once
  }
  auto ring = open_ring(options);
  CHECK(ring->last_seq() == Seq{50});
  auto all = ring->read(Seq{0}, 100, 1 << 20);
  REQUIRE(all.has_value());
  REQUIRE(all->size() == 50);
  CHECK(all->back().payload == bytes_of("os-49"));
}

TEST_CASE("wait_for wakes on an append from another thread") {
  TempDir dir;
  auto ring = open_ring({.path = dir.str()});
  CHECK_FALSE(ring->wait_for(Seq{0}, std::chrono::milliseconds(10)));

  std::atomic<bool> woke{false};
  std::thread waiter([&] { woke = ring->wait_for(Seq{0}, std::chrono::seconds(10)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  append_one(*ring, bytes_of("wake"));
  waiter.join();
  CHECK(woke.load());
  CHECK(ring->wait_for(Seq{0}, std::chrono::milliseconds(0)));
  CHECK_FALSE(ring->wait_for(Seq{1}, std::chrono::milliseconds(10)));
}

TEST_CASE("stats report records, bytes, bounds, age and cursor lag") {
  TempDir dir;
  auto ring = open_ring({.path = dir.str()});
  auto empty = ring->stats();
  CHECK(empty.records == 0);
  CHECK(empty.first == Seq{0});
  CHECK(empty.last == Seq{0});
  CHECK(empty.oldest_age_ms == 0);
  CHECK(empty.bytes > 0);

  REQUIRE(ring->register_cursor("w").has_value());
  for (int i = 0; i < 5; ++i) append_one(*ring, bytes_of(tagged("s", i)));
  REQUIRE(ring->ack("w", Seq{2}).has_value());
  REQUIRE(ring->trim().value() == 2);

  auto s = ring->stats();
  CHECK(s.records == 3);
  CHECK(s.first == Seq{3});
  CHECK(s.last == Seq{5});
  CHECK(s.oldest_age_ms >= 0);
  CHECK(s.oldest_age_ms < 60'000);
  CHECK(s.appended_total == 5);
  CHECK(s.trimmed_total == 2);
  CHECK(s.commits_total >= 8);  // register, 5 appends, ack, trim
  CHECK(s.bytes >= 4096);
  REQUIRE(s.cursors.size() == 1);
  CHECK(s.cursors[0].name == "w");
  CHECK(s.cursors[0].acked == Seq{2});
  CHECK(s.cursors[0].lag == 3);
}
