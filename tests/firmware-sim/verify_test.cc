// The verifier: lost, duplicates and unexpected are counted the way `firmware-sim verify` reports.
#include <catch2/catch.hpp>

#include <sstream>

#include "firmware-sim/verify.h"

using namespace gw::firmware_sim;

namespace {

VerifyResult run(const std::string& manifest, const std::string& records) {
  Verifier v;
  std::istringstream m(manifest), r(records);
  REQUIRE(read_manifest(m, v).has_value());
  REQUIRE(read_records(r, v).has_value());
  return v.result();
}

std::string rec(const std::string& device, std::uint64_t seq) {
  return R"({"gateway":"gw-1","seq":7,"device":")" + device + R"(","device_seq":)" + std::to_string(seq) +
         R"(,"time_ms":1700000000000,"metrics":{"temperature":20.5}})" + "\n";
}

}  // namespace

TEST_CASE("verify: everything received once is ok") {
  auto r = run("dev-1 1\ndev-1 2\ndev-2 1\n", rec("dev-1", 1) + rec("dev-2", 1) + rec("dev-1", 2));
  CHECK(r.expected == 3);
  CHECK(r.received == 3);
  CHECK(r.lost == 0);
  CHECK(r.duplicates == 0);
  CHECK(r.unexpected == 0);
  CHECK(r.ok());
  CHECK(r.summary() == "verify: expected=3 received=3 lost=0 duplicates=0 unexpected=0");
}

TEST_CASE("verify: lost entries are counted and fail") {
  auto r = run("dev-1 1\ndev-1 2\ndev-1 3\ndev-2 1\n", rec("dev-1", 2));
  CHECK(r.expected == 4);
  CHECK(r.received == 1);
  CHECK(r.lost == 3);
  CHECK_FALSE(r.ok());
}

TEST_CASE("verify: duplicates count every extra copy, also of unexpected records") {
  auto r = run("dev-1 1\ndev-1 2\n",
               rec("dev-1", 1) + rec("dev-1", 1) + rec("dev-1", 1) + rec("dev-1", 2) + rec("dev-9", 5) + rec("dev-9", 5));
  CHECK(r.lost == 0);
  CHECK(r.duplicates == 3);
  CHECK(r.unexpected == 1);
  CHECK(r.received == 6);
  CHECK_FALSE(r.ok());
}

TEST_CASE("verify: unexpected records alone are allowed") {
  auto r = run("dev-1 1\n", rec("dev-1", 1) + rec("dev-1", 2) + rec("dev-3", 1));
  CHECK(r.unexpected == 2);
  CHECK(r.ok());
}

TEST_CASE("verify: the same device id with different seqs and vice versa are distinct keys") {
  auto r = run("dev-1 2\ndev-2 1\n", rec("dev-1", 1) + rec("dev-2", 2));
  CHECK(r.lost == 2);
  CHECK(r.unexpected == 2);
  CHECK(r.duplicates == 0);
}

TEST_CASE("verify: blank lines are ignored, malformed lines are errors") {
  Verifier v;
  std::istringstream good("\ndev-1 1\n  \n");
  auto n = read_manifest(good, v);
  REQUIRE(n.has_value());
  CHECK(*n == 1);

  for (const char* bad : {"dev-1\n", "dev-1 x\n", "dev-1 1 2\n", "dev-1 -1\n"}) {
    Verifier w;
    std::istringstream in(bad);
    auto r = read_manifest(in, w);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == make_error_code(errc::bad_manifest));
  }
  for (const char* bad : {"not json\n", "{\"device\":\"d\"}\n", "{\"device\":1,\"device_seq\":1}\n",
                          "{\"device\":\"d\",\"device_seq\":-3}\n", "[1,2]\n"}) {
    Verifier w;
    std::istringstream in(bad);
    auto r = read_records(in, w);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == make_error_code(errc::bad_record));
  }
}
