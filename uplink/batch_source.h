// What every sink does the same way, whatever its upstream system: opening its cursor, reading the
// next batch of its record type from the buffer, the text properties (Kafka headers, Pulsar message
// properties) that describe a batch (uplink/FORMAT.md), and the retry backoff.
//
// Thread-safety: pure functions over a Ring (whose own rules apply).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "buffer/ring.h"
#include "uplink/batch.h"

namespace gw::uplink {

struct BatchLimits {
  buffer::RecordType records = buffer::RecordType::telemetry;  // the type the sink forwards
  std::size_t max_records = 1000;                              // records of that type per batch
  std::size_t max_bytes = 1 << 20;                             // stored payload bytes per batch, about
  std::string_view log_name;                                   // the sink's cursor, for log lines
  buffer::Seq before{};  // if set: only records with a smaller seq (the batch ends before it)
};

struct ReadBatch {
  Batch batch;               // batch.last == Seq{}: nothing stored after `after`
  std::size_t skipped = 0;   // records in first..last not in the batch (another type, undecodable)
  std::size_t sendable() const { return batch.records.size() + batch.aggregates.size(); }
  bool empty() const { return batch.last == buffer::Seq{}; }
};

// Reads the records after `after` into one batch of limits.records. Reads again while records of
// another type left room in the batch (a sink of a rare type, aggregates, fills its batches from
// many reads), up to the buffer's head and at most 64 reads. A full batch ends at its last record.
// Records of another type, or that do not decode (logged), are skipped: counted, not sent, but
// covered by first..last so that the cursor moves past them. Errors: the ring's, only when the
// first read fails (a later failure ends the batch early).
[[nodiscard]] std::expected<ReadBatch, std::error_code> read_batch(buffer::Ring& ring, buffer::Seq after,
                                                                   const std::string& gateway_id,
                                                                   const BatchLimits& limits);

// The gw-* properties of a batch of `type`, in the order the Kafka sink writes its headers:
// gateway id, first and last seq, schema version, codec, dictionary id, record type.
std::vector<std::pair<std::string_view, std::string>> batch_properties(const Batch& batch);

// Each telemetry record's event time (ms since the epoch), for the end-to-end latency histogram.
std::vector<std::int64_t> event_times(const Batch& batch);

// Registers a sink's cursor (a new one starts at the oldest record stored) and returns the last seq
// it acknowledged. Errors: the buffer's.
[[nodiscard]] std::expected<buffer::Seq, std::error_code> open_cursor(buffer::Ring& ring, const std::string& cursor);

// The waits between a sink's retries: `first`, doubling up to `max`, each less a random jitter of up
// to half of it (so that many gateways do not retry in step); reset() after a success.
class RetryBackoff {
 public:
  RetryBackoff(std::chrono::milliseconds first, std::chrono::milliseconds max) : first_(first), max_(max) {}
  // The time of the next attempt, one wait from now.
  std::chrono::steady_clock::time_point next();
  void reset() { wait_ = std::chrono::milliseconds(0); }
  std::chrono::milliseconds current() const { return wait_; }

 private:
  std::chrono::milliseconds first_, max_;
  std::chrono::milliseconds wait_{0};
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace gw::uplink
