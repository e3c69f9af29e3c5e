// The quantile sketch (windowing/sketch.h).
#include "windowing/sketch.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace gw::windowing {

QuantileSketch::QuantileSketch(double alpha) : alpha_(alpha) {
  if (!(alpha > 0 && alpha <= 0.5)) {
    std::fprintf(stderr, "gw::windowing::QuantileSketch: alpha must be in (0, 0.5], got %g\n", alpha);
    std::abort();
  }
  gamma_ = (1 + alpha) / (1 - alpha);
  inv_log_gamma_ = 1.0 / std::log(gamma_);
}

std::int32_t QuantileSketch::index_of(double magnitude) const {
  // Magnitudes are finite and > 0, so the index fits: |log(v)| < 745, / log(gamma) >= 0.0002.
  return static_cast<std::int32_t>(std::ceil(std::log(magnitude) * inv_log_gamma_));
}

double QuantileSketch::value_of(std::int32_t index) const {
  return 2.0 * std::pow(gamma_, index) / (gamma_ + 1.0);
}

void QuantileSketch::Store::add(std::int32_t index, std::uint64_t n) {
  if (counts.empty()) {
    offset = index;
    counts.assign(1, 0);
  } else if (index < offset) {
    const std::int64_t span = static_cast<std::int64_t>(offset) + static_cast<std::int64_t>(counts.size()) - index;
    if (span > static_cast<std::int64_t>(kMaxBuckets)) {
      // Collapse: the smallest magnitudes fold into the lowest bucket that still fits.
      index = offset + static_cast<std::int32_t>(counts.size()) - static_cast<std::int32_t>(kMaxBuckets);
      if (index < offset) {
        counts.insert(counts.begin(), static_cast<std::size_t>(offset - index), 0);
        offset = index;
      }
    } else {
      counts.insert(counts.begin(), static_cast<std::size_t>(offset - index), 0);
      offset = index;
    }
  } else if (index >= offset + static_cast<std::int32_t>(counts.size())) {
    const std::size_t want = static_cast<std::size_t>(index - offset) + 1;
    if (want > kMaxBuckets) {
      // Keep the largest magnitudes exact: drop the lowest buckets into the new lowest one.
      const std::size_t shift = want - kMaxBuckets;
      std::uint64_t folded = 0;
      for (std::size_t i = 0; i < shift && i < counts.size(); ++i) folded += counts[i];
      counts.erase(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(std::min(shift, counts.size())));
      offset += static_cast<std::int32_t>(shift);
      if (counts.empty()) counts.assign(1, 0);
      counts[0] += folded;
    }
    counts.resize(static_cast<std::size_t>(index - offset) + 1, 0);
  }
  counts[static_cast<std::size_t>(index - offset)] += n;
}

void QuantileSketch::add(double v) {
  ++count_;
  const double m = std::fabs(v);
  // Magnitudes below the smallest normal double count as 0 (their log is not accurate).
  if (!(m >= std::numeric_limits<double>::min())) {
    ++zero_;
  } else if (v > 0) {
    positive_.add(index_of(m), 1);
  } else {
    negative_.add(index_of(m), 1);
  }
}

void QuantileSketch::merge(const QuantileSketch& other) {
  if (other.alpha_ != alpha_) {
    std::fprintf(stderr, "gw::windowing::QuantileSketch::merge: different alpha (%g, %g)\n", alpha_, other.alpha_);
    std::abort();
  }
  for (std::size_t i = 0; i < other.positive_.counts.size(); ++i) {
    if (other.positive_.counts[i] != 0)
      positive_.add(other.positive_.offset + static_cast<std::int32_t>(i), other.positive_.counts[i]);
  }
  for (std::size_t i = 0; i < other.negative_.counts.size(); ++i) {
    if (other.negative_.counts[i] != 0)
      negative_.add(other.negative_.offset + static_cast<std::int32_t>(i), other.negative_.counts[i]);
  }
  zero_ += other.zero_;
  count_ += other.count_;
}

double QuantileSketch::quantile(double q) const {
  if (count_ == 0) return std::numeric_limits<double>::quiet_NaN();
  q = std::clamp(q, 0.0, 1.0);
  const auto rank = static_cast<std::uint64_t>(std::floor(q * static_cast<double>(count_ - 1)));
  std::uint64_t seen = 0;
  // Sorted order: negatives from the largest magnitude down, zeros, positives upwards.
  for (std::size_t i = negative_.counts.size(); i-- > 0;) {
    seen += negative_.counts[i];
    if (seen > rank) return -value_of(negative_.offset + static_cast<std::int32_t>(i));
  }
  seen += zero_;
  if (seen > rank) return 0.0;
  for (std::size_t i = 0; i < positive_.counts.size(); ++i) {
    seen += positive_.counts[i];
    if (seen > rank) return value_of(positive_.offset + static_cast<std::int32_t>(i));
  }
  // Unreachable while the counts add up; the largest bucket is the safe answer.
  return value_of(positive_.offset + static_cast<std::int32_t>(positive_.counts.size()) - 1);
}

namespace {

void encode_store(Writer& w, std::int32_t offset, const std::vector<std::uint64_t>& counts) {
  w.u32(static_cast<std::uint32_t>(offset));
  w.u32(static_cast<std::uint32_t>(counts.size()));
  for (std::uint64_t c : counts) w.u64(c);
}

}  // namespace

void QuantileSketch::encode(Writer& w) const {
  w.f64(alpha_);
  w.u64(zero_);
  encode_store(w, positive_.offset, positive_.counts);
  encode_store(w, negative_.offset, negative_.counts);
}

bool QuantileSketch::decode(Reader& r) {
  const double alpha = r.f64();
  if (!r.ok() || !(alpha > 0 && alpha <= 0.5)) return false;
  *this = QuantileSketch(alpha);
  zero_ = r.u64();
  count_ = zero_;
  for (Store* s : {&positive_, &negative_}) {
    s->offset = static_cast<std::int32_t>(r.u32());
    const std::uint32_t n = r.u32();
    if (!r.ok() || n > kMaxBuckets) return false;
    s->counts.resize(n);
    for (auto& c : s->counts) {
      c = r.u64();
      count_ += c;
    }
  }
  return r.ok();
}

bool QuantileSketch::operator==(const QuantileSketch& o) const {
  return alpha_ == o.alpha_ && zero_ == o.zero_ && count_ == o.count_ && positive_ == o.positive_ &&
         negative_ == o.negative_;
}

}  // namespace gw::windowing
