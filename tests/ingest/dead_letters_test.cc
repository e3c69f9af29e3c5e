// The dead-letter store: what is kept, in which order, how it is bounded, what survives a reopen.
#include "tests/support/catch.h"

#include <string>

#include <lmdb.h>

#include "ingest/dead_letters.h"
#include "tests/support/support.h"

using namespace gw::ingest;

namespace {

std::span<const std::uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace

TEST_CASE("dead letters are listed newest first, filtered by reason, with topic and truncated bytes") {
  gw::test::TempDir dir;
  auto store = DeadLetters::open({.path = dir.path().string(), .max_entries = 100, .max_raw_bytes = 4});
  REQUIRE(store.has_value());
  REQUIRE((*store)->add("devices/a/telemetry", errc::malformed, bytes("garbage!"), 1000).has_value());
  REQUIRE((*store)->add("devices/b/telemetry", errc::oversize, bytes("0123456789"), 2000).has_value());
  REQUIRE((*store)->add("devices/c/telemetry", errc::malformed, bytes(""), 3000).has_value());

  auto all = (*store)->list(std::nullopt, 10);
  REQUIRE(all.size() == 3);
  CHECK(all[0].topic == "devices/c/telemetry");
  CHECK(all[0].size == 0);
  CHECK(all[1].reason == errc::oversize);
  CHECK(all[1].size == 10);
  CHECK(all[1].raw == std::vector<std::uint8_t>{'0', '1', '2', '3'});
  CHECK(all[2].received_ms == 1000);
  CHECK(all[0].id > all[1].id);

  auto malformed = (*store)->list(errc::malformed, 10);
  REQUIRE(malformed.size() == 2);
  CHECK(malformed[1].topic == "devices/a/telemetry");
  CHECK((*store)->list(std::nullopt, 1).size() == 1);

  auto s = (*store)->stats();
  CHECK(s.entries == 3);
  CHECK(s.stored_total == 3);
  CHECK(s.by_reason.at(errc::malformed) == 2);
  CHECK(s.by_reason.at(errc::oversize) == 1);
}

TEST_CASE("the store is bounded: the oldest entries are evicted and counted") {
  gw::test::TempDir dir;
  auto store = DeadLetters::open({.path = dir.path().string(), .max_entries = 5});
  REQUIRE(store.has_value());
  for (int i = 0; i < 12; ++i) {
    REQUIRE((*store)->add("t/" + std::to_string(i), errc::bad_value, bytes("x"), i + 1).has_value());
  }
  auto s = (*store)->stats();
  CHECK(s.entries == 5);
  CHECK(s.stored_total == 12);
  CHECK(s.evicted_total == 7);
  auto all = (*store)->list(std::nullopt, 100);
  REQUIRE(all.size() == 5);
  CHECK(all.front().topic == "t/11");
  CHECK(all.back().topic == "t/7");
}

TEST_CASE("counters and entries survive a reopen - ids are never reused") {
  gw::test::TempDir dir;
  std::uint64_t last_id = 0;
  {
    auto store = DeadLetters::open({.path = dir.path().string()});
    REQUIRE(store.has_value());
    REQUIRE((*store)->add("a", errc::bad_timestamp, bytes("{}"), 5).has_value());
    last_id = (*store)->list(std::nullopt, 1).at(0).id;
  }
  auto store = DeadLetters::open({.path = dir.path().string()});
  REQUIRE(store.has_value());
  CHECK((*store)->stats().by_reason.at(errc::bad_timestamp) == 1);
  REQUIRE((*store)->add("b", errc::missing_field, bytes("{}"), 6).has_value());
  CHECK((*store)->list(std::nullopt, 1).at(0).id == last_id + 1);
  CHECK((*store)->stats().entries == 2);
}

TEST_CASE("reason names are stable and round trip") {
  for (errc r : {errc::malformed, errc::unsupported_version, errc::missing_field, errc::bad_value, errc::oversize,
                 errc::bad_timestamp}) {
    CHECK(reason_from_name(reason_name(r)) == r);
  }
  CHECK(reason_name(errc::oversize) == "oversize");
  CHECK_FALSE(reason_from_name("nonsense").has_value());
}

TEST_CASE("a dead letter keeps what failed and entries of version 1 are still read") {
  gw::test::TempDir dir;
  {
    auto store = DeadLetters::open({.path = dir.path().string()});
    REQUIRE(store.has_value());
    REQUIRE((*store)->add("tele/x/SENSOR", errc::mapping, bytes("{}"), 1000, "Time: missing").has_value());
  }
  {
    // A value as the build before wrote it (version 1: no detail), put beside it under id 100.
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    REQUIRE(mdb_env_set_maxdbs(env, 4) == 0);
    REQUIRE(mdb_env_open(env, dir.path().c_str(), MDB_NOTLS, 0640) == 0);
    MDB_txn* txn = nullptr;
    MDB_dbi letters;
    REQUIRE(mdb_txn_begin(env, nullptr, 0, &txn) == 0);
    REQUIRE(mdb_dbi_open(txn, "letters", 0, &letters) == 0);
    const std::uint8_t key[8] = {0, 0, 0, 0, 0, 0, 0, 100};
    const std::uint8_t value[] = {1, 1, 0xd0, 0x07, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 't', 'a', 'b', 'c'};
    MDB_val k{sizeof(key), const_cast<std::uint8_t*>(key)}, v{sizeof(value), const_cast<std::uint8_t*>(value)};
    REQUIRE(mdb_put(txn, letters, &k, &v, 0) == 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);
  }
  auto store = DeadLetters::open({.path = dir.path().string()});
  REQUIRE(store.has_value());
  auto all = (*store)->list(std::nullopt, 10);
  REQUIRE(all.size() == 2);
  CHECK(all[0].id == 100);
  CHECK(all[0].reason == errc::malformed);
  CHECK(all[0].received_ms == 2000);
  CHECK(all[0].topic == "t");
  CHECK(all[0].detail.empty());
  CHECK(all[0].raw == std::vector<std::uint8_t>{'a', 'b', 'c'});
  CHECK(all[1].reason == errc::mapping);
  CHECK(all[1].detail == "Time: missing");
  CHECK(reason_name(errc::mapping) == "mapping");
}
