// A mergeable quantile sketch with a relative-error guarantee (the DDSketch idea: logarithmic
// buckets). With relative accuracy alpha, the bucket of a value v > 0 is i = ceil(log_gamma(v)),
// gamma = (1 + alpha) / (1 - alpha); bucket i covers (gamma^(i-1), gamma^i] and is represented by
// 2 * gamma^i / (gamma + 1), which is within alpha * |v| of every value in it. Negative values use
// the same buckets on |v|; 0 has its own count.
//
// The bound (tested in tests/windowing/sketch_test.cc): for every q in [0, 1], quantile(q) is
// within alpha relative error of the exact rank value, the element of rank floor(q * (n - 1)) of
// the sorted values (0-based). It holds as long as the values of one sketch with the same sign span
// less than a factor gamma^kMaxBuckets (alpha = 1%: about 10^35; 0.5%: about 10^17); beyond that the smallest
// buckets are collapsed into one, which keeps the count and the upper quantiles exact to the bound
// and overestimates only the smallest magnitudes. Merging two sketches of the same alpha gives the
// sketch of the union of their values, so the bound holds for merged sketches too.
//
// Memory: 8 bytes per bucket between the smallest and largest magnitude seen (with alpha = 1%,
// values within a factor 10 of each other take about 115 buckets).
//
// Thread-safety: none; a plain value.
#pragma once

#include <cstdint>
#include <vector>

#include "windowing/codec.h"

namespace gw::windowing {

class QuantileSketch {
 public:
  static constexpr std::size_t kMaxBuckets = 4096;  // per sign

  // alpha in (0, 0.5]; anything else is a configuration bug and aborts.
  explicit QuantileSketch(double alpha = 0.01);

  void add(double v);
  // Adds the other sketch's values. Both must have the same alpha (aborts otherwise).
  void merge(const QuantileSketch& other);
  // The estimate of the value of rank floor(q * (n - 1)); q is clamped to [0, 1]. NaN when empty.
  double quantile(double q) const;
  std::uint64_t count() const { return count_; }
  double alpha() const { return alpha_; }

  void encode(Writer& w) const;
  // Reads what encode() wrote; false if the bytes are not a sketch.
  [[nodiscard]] bool decode(Reader& r);
  bool operator==(const QuantileSketch& o) const;

 private:
  // Dense counts of the buckets offset .. offset + counts.size() - 1.
  struct Store {
    std::int32_t offset = 0;
    std::vector<std::uint64_t> counts;
    void add(std::int32_t index, std::uint64_t n);
    bool operator==(const Store&) const = default;
  };

  std::int32_t index_of(double magnitude) const;
  double value_of(std::int32_t index) const;

  double alpha_;
  double gamma_;
  double inv_log_gamma_;
  Store positive_;
  Store negative_;
  std::uint64_t zero_ = 0;
  std::uint64_t count_ = 0;
};

}  // namespace gw::windowing
