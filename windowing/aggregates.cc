// Aggregates and their encodings (windowing/aggregates.h, windowing/FORMAT.md).
#include "windowing/aggregates.h"

#include <algorithm>
#include <cmath>

namespace gw::windowing {
namespace {

constexpr std::uint8_t kAggregateVersion = 1;
constexpr std::uint8_t kStateVersion = 1;

}  // namespace

const char* to_string(WindowKind k) {
  switch (k) {
    case WindowKind::tumbling: return "tumbling";
    case WindowKind::hopping: return "hopping";
    case WindowKind::session: return "session";
  }
  return "unknown";
}

const char* to_string(Scope s) {
  switch (s) {
    case Scope::device: return "device";
    case Scope::group: return "group";
  }
  return "unknown";
}

AggState::AggState(std::optional<double> alpha) {
  if (alpha) sketch_.emplace(*alpha);
}

void AggState::add(std::int64_t time_ms, double value) {
  if (count_ == 0) {
    min_ = max_ = value;
    first_time_ = last_time_ = time_ms;
    first_ = last_ = value;
  } else {
    min_ = std::min(min_, value);
    max_ = std::max(max_, value);
    if (time_ms < first_time_) {
      first_time_ = time_ms;
      first_ = value;
    }
    if (time_ms >= last_time_) {
      last_time_ = time_ms;
      last_ = value;
    }
  }
  ++count_;
  sum_ += value;
  const double delta = value - mean_;
  mean_ += delta / static_cast<double>(count_);
  m2_ += delta * (value - mean_);
  if (sketch_) sketch_->add(value);
}

void AggState::merge(const AggState& o) {
  if (o.count_ == 0) return;
  if (count_ == 0) {
    *this = o;
    return;
  }
  min_ = std::min(min_, o.min_);
  max_ = std::max(max_, o.max_);
  if (o.first_time_ < first_time_) {
    first_time_ = o.first_time_;
    first_ = o.first_;
  }
  if (o.last_time_ >= last_time_) {
    last_time_ = o.last_time_;
    last_ = o.last_;
  }
  // Chan et al.'s parallel combination of two Welford states.
  const double n_a = static_cast<double>(count_), n_b = static_cast<double>(o.count_);
  const double n = n_a + n_b;
  const double delta = o.mean_ - mean_;
  mean_ += delta * n_b / n;
  m2_ += o.m2_ + delta * delta * n_a * n_b / n;
  count_ += o.count_;
  sum_ += o.sum_;
  if (sketch_ && o.sketch_) sketch_->merge(*o.sketch_);
}

void AggState::fill(Aggregate& out, std::int64_t start_ms, std::int64_t end_ms) const {
  out.count = count_;
  out.sum = sum_;
  out.min = min_;
  out.max = max_;
  out.mean = mean_;
  out.stddev = count_ == 0 ? 0.0 : std::sqrt(std::max(0.0, m2_ / static_cast<double>(count_)));
  out.first_time = ingest::EventTime{first_time_};
  out.first = first_;
  out.last_time = ingest::EventTime{last_time_};
  out.last = last_;
  const double seconds = static_cast<double>(end_ms - start_ms) / 1000.0;
  out.rate = seconds > 0 ? static_cast<double>(count_) / seconds : 0.0;
  out.has_quantiles = sketch_.has_value() && count_ > 0;
  if (out.has_quantiles) {
    out.p50 = std::clamp(sketch_->quantile(0.50), min_, max_);
    out.p90 = std::clamp(sketch_->quantile(0.90), min_, max_);
    out.p99 = std::clamp(sketch_->quantile(0.99), min_, max_);
  }
}

void AggState::encode(Writer& w) const {
  w.u8(kStateVersion);
  w.u64(count_);
  w.f64(sum_);
  w.f64(min_);
  w.f64(max_);
  w.f64(mean_);
  w.f64(m2_);
  w.i64(first_time_);
  w.f64(first_);
  w.i64(last_time_);
  w.f64(last_);
  w.u8(sketch_ ? 1 : 0);
  if (sketch_) sketch_->encode(w);
}

bool AggState::decode(Reader& r) {
  if (r.u8() != kStateVersion) return false;
  count_ = r.u64();
  sum_ = r.f64();
  min_ = r.f64();
  max_ = r.f64();
  mean_ = r.f64();
  m2_ = r.f64();
  first_time_ = r.i64();
  first_ = r.f64();
  last_time_ = r.i64();
  last_ = r.f64();
  sketch_.reset();
  if (r.u8() == 1) {
    QuantileSketch s;
    if (!s.decode(r)) return false;
    sketch_ = std::move(s);
  }
  return r.ok();
}

std::vector<std::uint8_t> encode_aggregate(const Aggregate& a) {
  Writer w;
  w.u8(kAggregateVersion);
  w.u64(a.id);
  w.u8(static_cast<std::uint8_t>(a.kind));
  w.u8(static_cast<std::uint8_t>(a.scope));
  w.str(a.key);
  w.str(a.group_tag);
  w.str(a.metric);
  w.i64(a.window_start.ms);
  w.i64(a.window_end.ms);
  w.i64(a.closed_at_ms);
  w.u64(a.count);
  for (double v : {a.sum, a.min, a.max, a.mean, a.stddev}) w.f64(v);
  w.i64(a.first_time.ms);
  w.f64(a.first);
  w.i64(a.last_time.ms);
  w.f64(a.last);
  w.f64(a.rate);
  w.u8(a.has_quantiles ? 1 : 0);
  for (double v : {a.p50, a.p90, a.p99}) w.f64(v);
  return w.take();
}

std::optional<Aggregate> decode_aggregate(std::span<const std::uint8_t> bytes) {
  Reader r(bytes);
  if (r.u8() != kAggregateVersion) return std::nullopt;
  Aggregate a;
  a.id = r.u64();
  const std::uint8_t kind = r.u8(), scope = r.u8();
  if (kind < 1 || kind > 3 || scope < 1 || scope > 2) return std::nullopt;
  a.kind = static_cast<WindowKind>(kind);
  a.scope = static_cast<Scope>(scope);
  a.key = r.str();
  a.group_tag = r.str();
  a.metric = r.str();
  a.window_start.ms = r.i64();
  a.window_end.ms = r.i64();
  a.closed_at_ms = r.i64();
  a.count = r.u64();
  for (double* v : {&a.sum, &a.min, &a.max, &a.mean, &a.stddev}) *v = r.f64();
  a.first_time.ms = r.i64();
  a.first = r.f64();
  a.last_time.ms = r.i64();
  a.last = r.f64();
  a.rate = r.f64();
  a.has_quantiles = r.u8() == 1;
  for (double* v : {&a.p50, &a.p90, &a.p99}) *v = r.f64();
  // Newer writers may append fields: read what this version knows.
  if (!r.ok()) return std::nullopt;
  return a;
}

}  // namespace gw::windowing
