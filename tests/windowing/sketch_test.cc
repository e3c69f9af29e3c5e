// The quantile sketch's documented bound (windowing/sketch.h): every quantile within alpha relative
// error of the exact rank value, for single, merged and re-decoded sketches.
#include "windowing/sketch.h"

#include "tests/support/catch.h"
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace {

using gw::windowing::QuantileSketch;

void check_bound(const QuantileSketch& s, std::vector<double> values, double alpha) {
  std::sort(values.begin(), values.end());
  for (int i = 0; i <= 100; ++i) {
    const double q = i / 100.0;
    const double want = values[static_cast<std::size_t>(std::floor(q * static_cast<double>(values.size() - 1)))];
    const double got = s.quantile(q);
    INFO("q " << q << " got " << got << " want " << want);
    REQUIRE(std::fabs(got - want) <= alpha * (1 + 1e-9) * std::fabs(want));
  }
}

}  // namespace

TEST_CASE("every quantile is within alpha relative error of the exact rank value") {
  std::mt19937_64 rng(7);
  for (double alpha : {0.005, 0.01, 0.05}) {
    for (int dist = 0; dist < 5; ++dist) {
      std::vector<double> values;
      const std::size_t n = 1 + rng() % 5000;
      std::lognormal_distribution<double> lognormal(0, 3);
      std::normal_distribution<double> normal(20, 5);
      std::uniform_real_distribution<double> uniform(-1000, 1000);
      for (std::size_t i = 0; i < n; ++i) {
        switch (dist) {
          case 0: values.push_back(lognormal(rng)); break;             // 10^-4 .. 10^4
          case 1: values.push_back(normal(rng)); break;                // sensor-like
          case 2: values.push_back(uniform(rng)); break;               // both signs
          case 3: values.push_back(static_cast<double>(rng() % 3)); break;  // zeros and duplicates
          default: values.push_back(-lognormal(rng) * 1e9); break;      // large negatives
        }
      }
      QuantileSketch s(alpha);
      for (double v : values) s.add(v);
      CHECK(s.count() == values.size());
      check_bound(s, values, alpha);
    }
  }
}

TEST_CASE("merged sketches keep the bound and equal the sketch of all values") {
  std::mt19937_64 rng(11);
  std::lognormal_distribution<double> lognormal(2, 2);
  QuantileSketch all(0.01), merged(0.01);
  std::vector<double> values;
  for (int part = 0; part < 7; ++part) {
    QuantileSketch s(0.01);
    for (int i = 0; i < 300 + part * 100; ++i) {
      const double v = (rng() % 5 == 0 ? -1 : 1) * lognormal(rng) * (part + 1);
      values.push_back(v);
      s.add(v);
      all.add(v);
    }
    merged.merge(s);
  }
  check_bound(merged, values, 0.01);
  CHECK(merged.count() == all.count());
  for (double q : {0.0, 0.1, 0.5, 0.9, 0.99, 1.0}) CHECK(merged.quantile(q) == all.quantile(q));
}

TEST_CASE("a sketch survives encode and decode bit for bit - bad bytes are refused") {
  QuantileSketch s(0.02);
  for (int i = -50; i < 500; ++i) s.add(i * 1.5);
  gw::windowing::Writer w;
  s.encode(w);
  auto bytes = w.take();
  QuantileSketch back;
  gw::windowing::Reader r(bytes);
  REQUIRE(back.decode(r));
  CHECK(r.done());
  CHECK(back == s);
  bytes.resize(bytes.size() / 2);
  gw::windowing::Reader cut(bytes);
  QuantileSketch bad;
  CHECK_FALSE(bad.decode(cut));
  CHECK(std::isnan(QuantileSketch().quantile(0.5)));
}

TEST_CASE("values spanning more than kMaxBuckets collapse the smallest and keep the largest exact") {
  QuantileSketch s(0.01);
  std::vector<double> values;
  for (int e = -300; e <= 300; e += 3) values.push_back(std::pow(10.0, e));
  for (double v : values) s.add(v);
  CHECK(s.count() == values.size());
  std::sort(values.begin(), values.end());
  const double top = values[static_cast<std::size_t>(std::floor(0.99 * static_cast<double>(values.size() - 1)))];
  CHECK(std::fabs(s.quantile(0.99) - top) <= 0.01 * (1 + 1e-9) * top);
}
