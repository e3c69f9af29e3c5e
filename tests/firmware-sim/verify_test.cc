// The verifier: lost, duplicates and unexpected are counted the way `firmware-sim verify` reports,
// per identity (device, boot id, seq), as multisets.
#include "tests/support/catch.h"

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

// A record line as uplink-cat prints it before boot ids (no "boot_id": boot 0).
std::string rec(const std::string& device, std::uint64_t seq) {
  return R"({"gateway":"gw-1","seq":7,"device":")" + device + R"(","device_seq":)" + std::to_string(seq) +
         R"(,"time_ms":1700000000000,"metrics":{"temperature":20.5}})" + "\n";
}

// A record line as uplink-cat prints it now.
std::string rec(const std::string& device, std::uint64_t seq, std::uint32_t boot_id) {
  return R"({"gateway":"gw-1","seq":7,"device":")" + device + R"(","device_seq":)" + std::to_string(seq) +
         R"(,"boot_id":)" + std::to_string(boot_id) + R"(,"time_ms":1700000000000,"metrics":{"temperature":20.5}})" +
         "\n";
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
  CHECK(r.summary() == "verify: expected=3 received=3 lost=0 duplicates=0 unexpected=0 resent=0");
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

  for (const char* bad : {"dev-1\n", "dev-1 x\n", "dev-1 1 2 3\n", "dev-1 -1\n", "dev-1 1 x\n", "dev-1 1 -2\n",
                          "dev-1 1 4294967296\n", "dev-1 1 0 resend\n", "dev-1 1 0 resent x\n"}) {
    Verifier w;
    std::istringstream in(bad);
    auto r = read_manifest(in, w);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == make_error_code(errc::bad_manifest));
  }
  for (const char* bad : {"not json\n", "{\"device\":\"d\"}\n", "{\"device\":1,\"device_seq\":1}\n",
                          "{\"device\":\"d\",\"device_seq\":-3}\n", "[1,2]\n",
                          "{\"device\":\"d\",\"device_seq\":1,\"boot_id\":\"3\"}\n",
                          "{\"device\":\"d\",\"device_seq\":1,\"boot_id\":-1}\n",
                          "{\"device\":\"d\",\"device_seq\":1,\"boot_id\":4294967296}\n"}) {
    Verifier w;
    std::istringstream in(bad);
    auto r = read_records(in, w);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == make_error_code(errc::bad_record));
  }
}

TEST_CASE("verify: a resent mark counts the reading once and expects no more copies") {
  // dev-1 2 was resent twice (two marks), dev-2 1 once; marks may come before or after the line.
  auto r = run("dev-1 1 0\ndev-1 2 0\ndev-1 2 0 resent\ndev-2 1 5 resent\ndev-1 2 0 resent\ndev-2 1 5\n",
               rec("dev-1", 1) + rec("dev-1", 2) + rec("dev-2", 1, 5));
  CHECK(r.expected == 3);
  CHECK(r.resent == 2);
  CHECK(r.ok());
  CHECK(r.summary() == "verify: expected=3 received=3 lost=0 duplicates=0 unexpected=0 resent=2");
  auto lost = run("dev-1 1 0\ndev-1 1 0 resent\n", "");
  CHECK(lost.lost == 1);
  CHECK(lost.resent == 1);
}

TEST_CASE("verify: the boot id is part of a reading's identity") {
  auto r = run("dev-1 1 7\ndev-1 1 8\ndev-1 2 7\n", rec("dev-1", 1, 7) + rec("dev-1", 2, 7) + rec("dev-1", 1, 0));
  CHECK(r.expected == 3);
  CHECK(r.lost == 1);        // (dev-1, 8, 1)
  CHECK(r.unexpected == 1);  // (dev-1, 0, 1)
  CHECK(r.duplicates == 0);
  CHECK_FALSE(r.ok());
}

TEST_CASE("verify: an identity listed twice in the manifest is two readings - compared as multisets") {
  // A device without a boot id rebooted (or its counter wrapped) and numbered a new reading 5 again.
  const std::string manifest = "dev-1 4 0\ndev-1 5 0\ndev-1 5 0\n";
  auto both = run(manifest, rec("dev-1", 4, 0) + rec("dev-1", 5, 0) + rec("dev-1", 5));
  CHECK(both.expected == 3);
  CHECK(both.received == 3);
  CHECK(both.lost == 0);
  CHECK(both.duplicates == 0);
  CHECK(both.ok());

  auto one = run(manifest, rec("dev-1", 4, 0) + rec("dev-1", 5, 0));
  CHECK(one.lost == 1);
  CHECK(one.duplicates == 0);
  CHECK_FALSE(one.ok());

  auto three = run(manifest, rec("dev-1", 4, 0) + rec("dev-1", 5, 0) + rec("dev-1", 5, 0) + rec("dev-1", 5, 0));
  CHECK(three.lost == 0);
  CHECK(three.duplicates == 1);
  CHECK_FALSE(three.ok());

  // More records of one identity do not make up for fewer of another.
  auto swapped = run(manifest, rec("dev-1", 5, 0) + rec("dev-1", 5, 0) + rec("dev-1", 5, 0));
  CHECK(swapped.lost == 1);
  CHECK(swapped.duplicates == 1);
}

TEST_CASE("verify: an old two-field manifest reads as boot 0") {
  auto r = run("dev-1 1\ndev-1 2 0\ndev-2 1\n", rec("dev-1", 1) + rec("dev-1", 2, 0) + rec("dev-2", 1, 9));
  CHECK(r.expected == 3);
  CHECK(r.lost == 1);  // dev-2 seq 1 boot 0: what came was boot 9
  CHECK(r.unexpected == 1);
  CHECK(r.duplicates == 0);
}
