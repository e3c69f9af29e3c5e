// A test helper: messages of one mapped source through admit() into a real ring in a temporary
// directory, one append each, as an ingest mode stores them (dedup in the ring's transaction).
#pragma once

#include <string>
#include <vector>

#include "tests/support/catch.h"

#include "buffer/ring.h"
#include "ingest/admit.h"
#include "tests/support/support.h"

namespace gw::test {

class AdmitRing {
 public:
  AdmitRing(const ingest::SourceMapping& source, std::int64_t now_ms) : now_ms_(now_ms) {
    buffer::Options o;
    o.path = dir_.path().string();
    auto ring = buffer::Ring::open(o);
    REQUIRE(ring.has_value());
    ring_ = std::move(*ring);
    options_.mapper = ingest::compile_sources({source});
  }
  // Admits and appends one message; what the ring answered (a seq, or buffer::kDropped*).
  buffer::Seq store(const std::string& topic, const std::string& payload) {
    auto a = ingest::admit(topic, {reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()}, now_ms_,
                           options_);
    REQUIRE(a.has_value());
    const std::vector<buffer::RecordIn> in{a->record()};
    auto stored = ring_->append(in, {});
    REQUIRE(stored.has_value());
    return stored->front();
  }
  buffer::Ring& ring() { return *ring_; }

 private:
  TempDir dir_;
  std::int64_t now_ms_;
  std::unique_ptr<buffer::Ring> ring_;
  ingest::AdmitOptions options_;
};

}  // namespace gw::test
