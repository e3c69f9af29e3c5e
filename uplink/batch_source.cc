// Reading batches from the buffer and their properties (uplink/batch_source.h).
#include "uplink/batch_source.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace gw::uplink {
namespace {

// Adds a stored record of the batch's type; false if it is of another type or does not decode.
bool add_record(const buffer::StoredRecord& r, Batch& batch, std::string_view log_name) {
  if (r.type != batch.record_type) return false;
  if (batch.record_type == buffer::RecordType::aggregate) {
    auto a = windowing::decode_aggregate(r.payload);
    if (a) {
      batch.aggregates.push_back({r.seq, std::move(*a)});
      return true;
    }
    spdlog::warn("{}: buffer record seq {} is not an aggregate v1; not forwarded", log_name, r.seq.value);
    return false;
  }
  auto event = ingest::decode_telemetry(r.payload);
  if (event) {
    batch.records.push_back({r.seq, std::move(*event)});
    return true;
  }
  spdlog::warn("{}: buffer record seq {} does not decode ({}); not forwarded", log_name, r.seq.value,
               event.error().message());
  return false;
}

}  // namespace

std::expected<ReadBatch, std::error_code> read_batch(buffer::Ring& ring, buffer::Seq after,
                                                     const std::string& gateway_id, const BatchLimits& limits) {
  constexpr int kMaxReads = 64;
  ReadBatch out{Batch{gateway_id, {}, {}, {}, limits.records}, 0};
  Batch& batch = out.batch;
  std::size_t sendable = 0, bytes = 0;
  bool full = false;
  for (int reads = 0; reads < kMaxReads && !full; ++reads) {
    const buffer::Seq from = batch.last == buffer::Seq{} ? after : batch.last;
    auto stored = ring.read(from, limits.max_records, limits.max_bytes);
    if (!stored) {
      spdlog::error("{}: reading the buffer after seq {} failed: {}", limits.log_name, from.value,
                    stored.error().message());
      if (reads > 0) break;  // send what was read
      return std::unexpected(stored.error());
    }
    for (const buffer::StoredRecord& r : *stored) {
      if (sendable >= limits.max_records || bytes >= limits.max_bytes ||
          (limits.before != buffer::Seq{} && r.seq >= limits.before)) {
        full = true;
        break;
      }
      if (batch.last == buffer::Seq{}) batch.first = r.seq;
      batch.last = r.seq;
      if (add_record(r, batch, limits.log_name)) {
        ++sendable;
        bytes += r.payload.size();
      } else {
        ++out.skipped;
      }
    }
    if (stored->empty() || batch.last >= ring.last_seq()) break;  // at the head: send what there is
  }
  return out;
}

std::vector<std::pair<std::string_view, std::string>> batch_properties(const Batch& batch) {
  return {{kHeaderGatewayId, batch.gateway_id},
          {kHeaderFirstSeq, std::to_string(batch.first.value)},
          {kHeaderLastSeq, std::to_string(batch.last.value)},
          {kHeaderSchemaVersion, std::to_string(kBatchFormatVersion)},
          {kHeaderCodec, std::string(kCodecZstd)},
          {kHeaderDictId, std::string(kNoDictionary)},
          {kHeaderRecordType, std::string(record_type_name(batch.record_type))}};
}

std::expected<buffer::Seq, std::error_code> open_cursor(buffer::Ring& ring, const std::string& cursor) {
  if (auto r = ring.register_cursor(cursor); !r) return std::unexpected(r.error());
  return ring.acked(cursor);
}

std::chrono::steady_clock::time_point RetryBackoff::next() {
  wait_ = wait_.count() == 0 ? first_ : std::min(wait_ * 2, max_);
  std::uniform_int_distribution<std::int64_t> jitter(0, wait_.count() / 2);
  return std::chrono::steady_clock::now() + wait_ - std::chrono::milliseconds(jitter(rng_));
}

std::vector<std::int64_t> event_times(const Batch& batch) {
  std::vector<std::int64_t> times;
  times.reserve(batch.records.size());
  for (const auto& r : batch.records) times.push_back(r.event.time.ms);
  return times;
}

}  // namespace gw::uplink
