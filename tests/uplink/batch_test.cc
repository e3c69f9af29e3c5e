// Tests of the upstream batch codec (uplink/batch.h): round trip, and hostile input.
#include "uplink/batch.h"

#include <zstd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

namespace {

using gw::buffer::Seq;
using gw::uplink::Batch;
using gw::uplink::errc;

Batch sample_batch(std::size_t n) {
  Batch b{"gw-test-1", Seq{100}, Seq{100 + 2 * n}, {}};
  for (std::size_t i = 0; i < n; ++i) {
    gw::ingest::Event e{gw::ingest::DeviceId{"dev-" + std::to_string(i % 7)},
                        gw::ingest::DeviceSeq{i + 1},
                        gw::ingest::EventTime{1'700'000'000'000 + static_cast<std::int64_t>(i)},
                        {{"temp", 21.5 + static_cast<double>(i)}, {"hum", 40.25}}};
    b.records.push_back({Seq{101 + 2 * i}, std::move(e)});
  }
  return b;
}

std::vector<std::uint8_t> zstd_frame(const std::vector<std::uint8_t>& raw) {
  std::vector<std::uint8_t> out(ZSTD_compressBound(raw.size()));
  const std::size_t n = ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), 1);
  REQUIRE(ZSTD_isError(n) == 0U);
  out.resize(n);
  return out;
}

}  // namespace

TEST_CASE("a batch survives encode and decode", "[batch]") {
  for (std::size_t n : {0, 1, 500}) {
    const Batch b = sample_batch(n);
    const auto value = gw::uplink::encode_batch(b, 3);
    auto decoded = gw::uplink::decode_batch(value);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == b);
  }
}

TEST_CASE("the message value is one zstd frame with its content size", "[batch]") {
  const Batch b = sample_batch(10);
  const auto value = gw::uplink::encode_batch(b, 19);
  const auto raw = gw::uplink::encode_batch_flatbuffer(b);
  CHECK(ZSTD_getFrameContentSize(value.data(), value.size()) == raw.size());
  CHECK(ZSTD_findFrameCompressedSize(value.data(), value.size()) == value.size());
  REQUIRE(raw.size() > 8);
  CHECK(std::string(raw.begin() + 4, raw.begin() + 8) == "GWB1");
}

TEST_CASE("decode_batch refuses garbage, truncation and foreign frames", "[batch]") {
  const auto value = gw::uplink::encode_batch(sample_batch(50), 3);

  SECTION("empty") { CHECK(gw::uplink::decode_batch({}).error() == errc::bad_compression); }
  SECTION("every truncation") {
    for (std::size_t len = 0; len < value.size(); ++len) {
      auto r = gw::uplink::decode_batch(std::span(value.data(), len));
      REQUIRE_FALSE(r.has_value());
    }
  }
  SECTION("trailing bytes") {
    auto longer = value;
    longer.push_back(0);
    CHECK(gw::uplink::decode_batch(longer).error() == errc::bad_compression);
  }
  SECTION("random bytes never crash") {
    std::mt19937 rng(7);
    for (int i = 0; i < 2000; ++i) {
      std::vector<std::uint8_t> junk(rng() % 300);
      for (auto& c : junk) c = static_cast<std::uint8_t>(rng());
      CHECK_FALSE(gw::uplink::decode_batch(junk).has_value());
    }
  }
  SECTION("flipped bytes never crash") {
    std::mt19937 rng(11);
    for (int i = 0; i < 2000; ++i) {
      auto bad = value;
      bad[rng() % bad.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
      (void)gw::uplink::decode_batch(bad);  // may decode if the flip hit a don't-care bit; must not crash
    }
    SUCCEED();
  }
  SECTION("a zstd frame of something that is not a batch") {
    const std::vector<std::uint8_t> text = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '!'};
    CHECK(gw::uplink::decode_batch(zstd_frame(text)).error() == errc::malformed);
  }
  SECTION("a zstd frame without content size") {
    const auto raw = gw::uplink::encode_batch_flatbuffer(sample_batch(3));
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    REQUIRE(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0) == 0U);
    std::vector<std::uint8_t> out(ZSTD_compressBound(raw.size()));
    const std::size_t n = ZSTD_compress2(cctx, out.data(), out.size(), raw.data(), raw.size());
    ZSTD_freeCCtx(cctx);
    REQUIRE(ZSTD_isError(n) == 0U);
    out.resize(n);
    CHECK(gw::uplink::decode_batch(out).error() == errc::bad_compression);
  }
  SECTION("an uncompressed batch") {
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch_flatbuffer(sample_batch(3))).error() ==
          errc::bad_compression);
  }
}

TEST_CASE("decode_batch refuses inconsistent sequence numbers", "[batch]") {
  Batch b = sample_batch(3);
  SECTION("first > last") {
    b.first = Seq{500};
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1)).error() == errc::malformed);
  }
  SECTION("records out of order") {
    std::swap(b.records[0], b.records[1]);
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1)).error() == errc::malformed);
  }
  SECTION("record outside the range") {
    b.last = Seq{102};
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1)).error() == errc::malformed);
  }
}
