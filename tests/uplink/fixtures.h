// Fixtures shared by the uplink tests: events, a ring in a temporary directory, appends.
//
// Thread-safety: plain functions; a Ring's own rules apply.
#pragma once

#include "tests/support/catch.h"
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "buffer/ring.h"
#include "ingest/event.h"
#include "tests/support/support.h"

namespace gw::test {

using gw::buffer::Seq;

inline gw::ingest::Event make_event(std::uint64_t i) {
  return {gw::ingest::DeviceId{"dev-" + std::to_string(i % 13)},
          gw::ingest::DeviceSeq{i},
          gw::ingest::EventTime{1'700'000'000'000 + static_cast<std::int64_t>(i)},
          {{"temp", 20.0 + static_cast<double>(i % 100) / 4}, {"n", static_cast<double>(i)}}};
}

// Appends events first..first+count-1 (device seq = i) in chunks; returns the seqs in order.
inline std::vector<Seq> append_events(gw::buffer::Ring& ring, std::uint64_t first, std::uint64_t count) {
  std::vector<Seq> seqs;
  for (std::uint64_t done = 0; done < count;) {
    const std::uint64_t n = std::min<std::uint64_t>(250, count - done);
    std::vector<std::vector<std::uint8_t>> payloads;
    std::vector<gw::buffer::RecordIn> in;
    for (std::uint64_t k = 0; k < n; ++k)
      payloads.push_back(gw::ingest::encode_telemetry(make_event(first + done + k)));
    for (const auto& p : payloads) in.push_back({gw::buffer::RecordType::telemetry, p});
    auto r = ring.append(in);
    REQUIRE(r.has_value());
    seqs.insert(seqs.end(), r->begin(), r->end());
    done += n;
  }
  return seqs;
}

inline std::unique_ptr<gw::buffer::Ring> open_ring(const gw::test::TempDir& dir) {
  gw::buffer::Options opt;
  opt.path = (dir.path() / "ring").string();
  opt.max_bytes = 256ull << 20;
  opt.durability = gw::buffer::Durability::os;
  auto ring = gw::buffer::Ring::open(opt);
  REQUIRE(ring.has_value());
  return std::move(*ring);
}

}  // namespace gw::test
