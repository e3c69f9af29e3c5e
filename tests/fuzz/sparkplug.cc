// libFuzzer target: the Sparkplug B decoder and its node sessions (ingest/sparkplug.h). The input is
// a series of messages, each `u8 type | u16 length | payload`, sent to one node (types: NBIRTH,
// DBIRTH, NDATA, DDATA, NDEATH, DDEATH, NCMD, STATE). Invariants: no crash, UB or leak; a failure
// names its reason; an event has the node's 8-bit seq, a boot id, and unique finite metrics.
#include <cmath>
#include <cstdint>
#include <span>
#include <string>

#include "ingest/mapping.h"
#include "tests/fuzz/check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gw::ingest;
  using gw::fuzz::require;
  static const char* kTopics[8] = {"spBv1.0/g/NBIRTH/n",   "spBv1.0/g/DBIRTH/n/d", "spBv1.0/g/NDATA/n",
                                   "spBv1.0/g/DDATA/n/d",  "spBv1.0/g/NDEATH/n",   "spBv1.0/g/DDEATH/n/d",
                                   "spBv1.0/g/NCMD/n",     "spBv1.0/STATE/host"};
  auto mapper = Mapper::compile({*preset_mapping("sparkplug")});  // fresh sessions per input
  require(mapper.has_value(), "the sparkplug preset does not compile");
  std::size_t at = 0;
  while (at + 3 <= size) {
    const std::string topic = kTopics[data[at] % 8];
    const std::size_t n = std::min<std::size_t>(size - at - 3, data[at + 1] | std::size_t{data[at + 2]} << 8);
    const std::span<const std::uint8_t> payload(data + at + 3, n);
    at += 3 + n;
    const MapResult r = (*mapper)->decode(*(*mapper)->match(topic), topic, {}, payload, 1'700'000'000'000);
    if (!r) {
      require(!r.error().path.empty(), "a failure without a reason");
      continue;
    }
    if (!r->has_value()) continue;
    const Mapped& m = **r;
    require(m.event.seq.value <= 255 && m.seq_bits == 8 && m.event.boot_id != 0, "bad Sparkplug identity");
    require(m.dedup_source == "g/n", "dedup is not per node");
    for (std::size_t i = 0; i < m.event.metrics.size(); ++i) {
      require(std::isfinite(m.event.metrics[i].value), "a non-finite metric");
      for (std::size_t j = 0; j < i; ++j) require(m.event.metrics[i].name != m.event.metrics[j].name, "a metric named twice");
    }
  }
  return 0;
}
