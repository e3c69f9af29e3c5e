// The aggregate of the values of one metric in one window, and the state that folds them.
//
// - count, sum, min, max.
// - mean and standard deviation by Welford's method (numerically stable: no catastrophic
//   cancellation for values with a large common offset). stddev is the population standard
//   deviation (divide by count); 0 for one value.
// - first and last by event time: the value with the smallest (largest) event time; on a tie the
//   one that arrived first (last) wins.
// - rate: count divided by the window's length in seconds (events per second of event time; for a
//   session window the length is end - start, which includes the trailing gap).
// - p50, p90, p99 from a QuantileSketch (windowing/sketch.h) when quantiles are on; clamped to
//   [min, max], which only moves an estimate closer to the exact value.
//
// Thread-safety: plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ingest/event.h"
#include "windowing/codec.h"
#include "windowing/sketch.h"

namespace gw::windowing {

// Stored values: never renumber (windowing/FORMAT.md).
enum class WindowKind : std::uint8_t { tumbling = 1, hopping = 2, session = 3 };
enum class Scope : std::uint8_t {
  device = 1,  // one device's metric
  group = 2,   // one metric across the devices that share a tag value (Options::group_by_tag)
};

const char* to_string(WindowKind k);
const char* to_string(Scope s);

// A closed window's result: what the results table stores, the HTTP API returns and the uplink
// forwards (as RecordType::aggregate).
struct Aggregate {
  std::uint64_t id = 0;       // result number, in closing order (1, 2, ...)
  WindowKind kind = WindowKind::tumbling;
  Scope scope = Scope::device;
  std::string key;            // the device id (Scope::device) or the tag value (Scope::group)
  std::string group_tag;      // Scope::group: the tag key (e.g. "site"); empty otherwise
  std::string metric;
  ingest::EventTime window_start;  // inclusive
  ingest::EventTime window_end;    // exclusive
  std::int64_t closed_at_ms = 0;   // gateway time when the window closed
  std::uint64_t count = 0;
  double sum = 0, min = 0, max = 0, mean = 0, stddev = 0;
  ingest::EventTime first_time;
  double first = 0;
  ingest::EventTime last_time;
  double last = 0;
  double rate = 0;  // count / window length in seconds
  bool has_quantiles = false;
  double p50 = 0, p90 = 0, p99 = 0;

  bool operator==(const Aggregate&) const = default;
};

// The versioned encoding of an Aggregate (windowing/FORMAT.md, "aggregate v1"): the results
// table's values and the payload of RecordType::aggregate records.
std::vector<std::uint8_t> encode_aggregate(const Aggregate& a);
[[nodiscard]] std::optional<Aggregate> decode_aggregate(std::span<const std::uint8_t> bytes);

// Folds values into one window.
class AggState {
 public:
  // alpha: the sketch's relative accuracy; nullopt: no quantiles.
  explicit AggState(std::optional<double> alpha = std::nullopt);

  void add(std::int64_t time_ms, double value);
  // Adds the values of `other` (session windows merging); other's values count as arriving later.
  void merge(const AggState& other);

  std::uint64_t count() const { return count_; }
  // The result over [start, end) (fields of the window's identity are left to the caller).
  void fill(Aggregate& out, std::int64_t start_ms, std::int64_t end_ms) const;

  void encode(Writer& w) const;
  [[nodiscard]] bool decode(Reader& r);
  bool operator==(const AggState&) const = default;

 private:
  std::uint64_t count_ = 0;
  double sum_ = 0, min_ = 0, max_ = 0;
  double mean_ = 0, m2_ = 0;  // Welford
  std::int64_t first_time_ = 0, last_time_ = 0;
  double first_ = 0, last_ = 0;
  std::optional<QuantileSketch> sketch_;
};

}  // namespace gw::windowing
