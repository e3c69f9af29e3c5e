// The verifier: compares the simulator's manifest (every message the broker acknowledged) with
// the records that came out of the gateway, and counts what was lost, duplicated or unexpected.
//
// Thread-safety: a Verifier is used by one thread at a time.
#pragma once

#include <cstdint>
#include <expected>
#include <istream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>

#include "firmware-sim/errc.h"

namespace gw::firmware_sim {

struct VerifyResult {
  std::uint64_t expected = 0;    // distinct (device, seq) in the manifest
  std::uint64_t received = 0;    // record lines read, copies included
  std::uint64_t lost = 0;        // manifest entries never received
  std::uint64_t duplicates = 0;  // extra copies of a (device, seq), manifest or not
  std::uint64_t unexpected = 0;  // distinct (device, seq) received but not in the manifest (allowed)

  bool ok() const { return lost == 0 && duplicates == 0; }
  // "verify: expected=N received=M lost=L duplicates=D unexpected=U"
  std::string summary() const;
};

class Verifier {
 public:
  void expect(std::string_view device, std::uint64_t seq);
  void receive(std::string_view device, std::uint64_t seq);
  VerifyResult result() const;

 private:
  struct Entry {
    bool expected = false;
    std::uint64_t received = 0;
  };
  std::unordered_map<std::string, std::unordered_map<std::uint64_t, Entry>> devices_;
  std::uint64_t received_lines_ = 0;
};

// Reads manifest lines "DEVICE SEQ" into verifier.expect(); blank lines are ignored. Returns the
// number of entries read, or errc::bad_manifest (the line number is logged).
[[nodiscard]] std::expected<std::uint64_t, std::error_code> read_manifest(std::istream& in, Verifier& verifier);

// Reads JSON lines as printed by uplink-cat ({"device":"dev-1","device_seq":N,...}) into
// verifier.receive(); blank lines are ignored. Returns the number of records read, or
// errc::bad_record (the line number is logged).
[[nodiscard]] std::expected<std::uint64_t, std::error_code> read_records(std::istream& in, Verifier& verifier);

}  // namespace gw::firmware_sim
