// libFuzzer target: the upstream batch decoder (uplink/batch.h decode_batch), which uplink-cat and
// the downstream readers run on Kafka and Pulsar message values.
// Invariants: no crash, UB or leak on any bytes (zstd frame, FlatBuffer, both layouts); a decoded
// batch keeps its documented shape (one record type, entries in increasing seq order within
// first..last); it re-encodes, in either layout, to a value that decodes to the same FlatBuffer
// bytes (doubles compared bit for bit, so NaN and -0.0 count as themselves).
#include <cstdint>
#include <span>

#include "uplink/batch.h"
#include "tests/fuzz/check.h"

namespace {

using gw::fuzz::require;

template <class Entries>
void require_ordered(const gw::uplink::Batch& batch, const Entries& entries) {
  std::uint64_t previous = 0;
  bool first = true;
  for (const auto& e : entries) {
    require(e.seq >= batch.first && e.seq <= batch.last, "an entry outside first..last");
    require(first || e.seq.value > previous, "entries not in increasing seq order");
    previous = e.seq.value;
    first = false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gw::uplink;
  const auto batch = decode_batch(std::span<const std::uint8_t>(data, size));
  if (!batch) return 0;
  require(batch->records.empty() || batch->aggregates.empty(), "a batch with two record types");
  require(batch->aggregates.empty() || batch->record_type == gw::buffer::RecordType::aggregate,
          "aggregates in a telemetry batch");
  require(batch->records.empty() || batch->record_type == gw::buffer::RecordType::telemetry,
          "telemetry records in an aggregate batch");
  require_ordered(*batch, batch->records);
  require_ordered(*batch, batch->aggregates);

  for (const auto layout : {BatchLayout::columnar, BatchLayout::rows}) {
    const auto flat = encode_batch_flatbuffer(*batch, layout);
    const auto again = decode_batch(compress_frame(flat, 1));
    require(again.has_value(), "a re-encoded batch does not decode");
    require(encode_batch_flatbuffer(*again, layout) == flat, "batch round trip changed the batch");
  }
  return 0;
}
