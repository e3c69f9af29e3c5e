// Tests of the upstream batch codec (uplink/batch.h): round trip, and hostile input.
#include "uplink/batch.h"

#include <zstd.h>

#include "tests/support/catch.h"
#include <bit>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <vector>

#include "tests/uplink/batch_before_record_types_generated.h"
#include "uplink/batch_generated.h"

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

// n closed windows at odd seqs 101, 103, ...: device and group scope, all kinds, with and without
// quantiles, values of every sign.
Batch aggregate_batch(std::size_t n) {
  Batch b{"gw-test-1", Seq{100}, Seq{100 + 2 * n}, {}, gw::buffer::RecordType::aggregate};
  for (std::size_t i = 0; i < n; ++i) {
    gw::windowing::Aggregate a;
    a.id = i + 1;
    a.kind = static_cast<gw::windowing::WindowKind>(1 + i % 3);
    a.scope = i % 4 == 3 ? gw::windowing::Scope::group : gw::windowing::Scope::device;
    a.key = a.scope == gw::windowing::Scope::group ? "site-" + std::to_string(i % 2) : "dev-" + std::to_string(i % 7);
    a.group_tag = a.scope == gw::windowing::Scope::group ? "site" : "";
    a.metric = i % 2 == 0 ? "temp" : "hum";
    a.window_start = gw::ingest::EventTime{1'700'000'000'000 + static_cast<std::int64_t>(i) * 1000};
    a.window_end = gw::ingest::EventTime{a.window_start.ms + 1000};
    a.closed_at_ms = a.window_end.ms + 5;
    a.count = i;  // also 0
    a.sum = -1.5 * static_cast<double>(i);
    a.min = -2.0;
    a.max = 1e300;
    a.mean = 0.25;
    a.stddev = 0.0;
    a.first_time = a.window_start;
    a.first = -0.5;
    a.last_time = gw::ingest::EventTime{a.window_end.ms - 1};
    a.last = 3.0;
    a.rate = static_cast<double>(i);
    a.has_quantiles = i % 2 == 1;
    if (a.has_quantiles) {
      a.p50 = 0.5;
      a.p90 = 0.9;
      a.p99 = 0.99;
    }
    b.aggregates.push_back({Seq{101 + 2 * i}, std::move(a)});
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

TEST_CASE("the columnar layout restores every value bit for bit", "[batch]") {
  Batch b = sample_batch(300);
  // Devices with gaps and resets, metrics missing or reordered, values of every kind.
  b.records[5].event.metrics.clear();
  b.records[6].event.metrics = {{"hum", 1.0}, {"temp", -0.0}};
  b.records[7].event.metrics.push_back({"nan", std::numeric_limits<double>::quiet_NaN()});
  b.records[8].event.metrics = {{"temp", 1e300}, {"hum", -1e-300}, {"x", std::numeric_limits<double>::infinity()}};
  b.records[9].event.seq = gw::ingest::DeviceSeq{UINT64_MAX};
  b.records[16].event.seq = gw::ingest::DeviceSeq{0};  // same device as record 9, after it
  b.records[10].event.time = gw::ingest::EventTime{INT64_MIN};
  b.records[17].event.time = gw::ingest::EventTime{INT64_MAX};
  b.records[20].event.metrics = {{"temp", 0.1 + 0.2}, {"hum", 12.345678}};
  b.records[21].event.tags = {{"site", "lab"}, {"floor", "2"}};
  b.records[22].event.tags = {{"site", "lab"}, {"floor", "2"}};
  b.records[23].event.boot_id = 7;
  {
    // (The row layout does not store a value equal to its default, so it turns -0.0 into 0.0.)
    auto decoded = gw::uplink::decode_batch(gw::uplink::encode_batch(b, 3));
    REQUIRE(decoded.has_value());
    REQUIRE(decoded->records.size() == b.records.size());
    for (std::size_t i = 0; i < b.records.size(); ++i) {
      INFO("record " << i);
      const auto& x = b.records[i];
      const auto& y = decoded->records[i];
      REQUIRE(x.seq == y.seq);
      REQUIRE(x.event.device == y.event.device);
      REQUIRE(x.event.seq == y.event.seq);
      REQUIRE(x.event.time == y.event.time);
      REQUIRE(x.event.tags == y.event.tags);
      REQUIRE(x.event.boot_id == y.event.boot_id);
      REQUIRE(x.event.metrics.size() == y.event.metrics.size());
      for (std::size_t m = 0; m < x.event.metrics.size(); ++m) {
        REQUIRE(x.event.metrics[m].name == y.event.metrics[m].name);
        REQUIRE(std::bit_cast<std::uint64_t>(x.event.metrics[m].value) ==
                std::bit_cast<std::uint64_t>(y.event.metrics[m].value));
      }
    }
  }
}

TEST_CASE("the columnar layout is much smaller than the row layout", "[batch]") {
  Batch b = sample_batch(1000);
  const auto rows = gw::uplink::encode_batch(b, 3, gw::uplink::BatchLayout::rows);
  const auto cols = gw::uplink::encode_batch(b, 3);
  CHECK(cols.size() * 3 < rows.size());
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

TEST_CASE("decode_batch refuses a vector of 8-byte values that is not 8-byte aligned", "[batch]") {
  // Found by fuzzing (tests/fuzz, fuzz_batch under UBSan): a columnar batch whose seq_deltas vector
  // sits at 4 mod 8 passes the FlatBuffers verifier (it checks only the length's alignment), and
  // reading it was a misaligned 8-byte load. The input is kept in the fuzz corpus.
  std::ifstream in(GW_SOURCE_DIR "/tests/fuzz/corpus/batch/crash-misaligned-vector.zst", std::ios::binary);
  REQUIRE(in);
  const std::vector<std::uint8_t> value((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::uint8_t> raw(ZSTD_getFrameContentSize(value.data(), value.size()));
  const std::size_t n = ZSTD_decompress(raw.data(), raw.size(), value.data(), value.size());
  if (ZSTD_isError(n) != 0U) {
    // Debian 13's libzstd on 32-bit ARM (under qemu-arm) finds this fuzzer-made frame corrupt
    // (error 20), where 64-bit builds decompress it: refused there before any FlatBuffer is read.
    CHECK(gw::uplink::decode_batch(value).error() == errc::bad_compression);
  } else {
    REQUIRE(n == raw.size());
    flatbuffers::Verifier verifier(raw.data(), raw.size());
    REQUIRE(gw::uplink::fb::VerifyBatchBuffer(verifier));  // what only decode_batch's own check refuses
    CHECK(gw::uplink::decode_batch(value).error() == errc::malformed);
  }
  // FlatBufferBuilder leaves an empty vector unaligned: a batch without records still decodes (the
  // first version of the check refused it; fuzz_batch's round trip found that too).
  for (const std::string id : {"g", "gw"}) {
    const Batch empty{id, Seq{1}, Seq{1}, {}};
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(empty, 1)).value() == empty);
  }
}

TEST_CASE("decode_batch refuses inconsistent sequence numbers", "[batch]") {
  Batch b = sample_batch(3);
  SECTION("columnar: the same seq twice") {
    b.records[1].seq = b.records[0].seq;
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1)).error() == errc::malformed);
  }
  SECTION("columnar: record outside the range") {
    b.last = Seq{102};
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1)).error() == errc::malformed);
  }
  const auto rows = gw::uplink::BatchLayout::rows;
  SECTION("first > last") {
    b.first = Seq{500};
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1)).error() == errc::malformed);
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1, rows)).error() == errc::malformed);
  }
  SECTION("rows: records out of order") {
    std::swap(b.records[0], b.records[1]);
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1, rows)).error() == errc::malformed);
  }
  SECTION("rows: record outside the range") {
    b.last = Seq{102};
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1, rows)).error() == errc::malformed);
  }
}

TEST_CASE("decode_batch refuses text that is not UTF-8", "[batch]") {
  const std::string bad = "dev-\xff\xfe";  // found by fuzz_batch: uplink-cat's JSON writer threw on it
  const std::string overlong = "\xc0\xaf";  // '/' in two bytes
  Batch b = sample_batch(3);
  Batch a = aggregate_batch(4);
  bool in_rows = true;  // the row layout (format 1) has no tags
  SECTION("gateway id") { b.gateway_id = bad; }
  SECTION("device id") { b.records[1].event.device.value = bad; }
  SECTION("metric name") { b.records[2].event.metrics[0].name = overlong; }
  SECTION("tag key") {
    b.records[0].event.tags = {{bad, "lab"}};
    in_rows = false;
  }
  SECTION("tag value") {
    b.records[0].event.tags = {{"site", bad}};
    in_rows = false;
  }
  SECTION("aggregate key") {
    a.aggregates[0].aggregate.key = bad;
    b = a;
  }
  SECTION("aggregate group tag") {
    a.aggregates[3].aggregate.group_tag = overlong;
    b = a;
  }
  SECTION("aggregate metric") {
    a.aggregates[1].aggregate.metric = bad;
    b = a;
  }
  CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1)).error() == errc::malformed);
  if (b.record_type == gw::buffer::RecordType::telemetry && in_rows) {
    const auto rows = gw::uplink::BatchLayout::rows;
    CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1, rows)).error() == errc::malformed);
  }
  // UTF-8 beyond ASCII is fine.
  Batch ok = sample_batch(2);
  ok.records[0].event.device.value = "capteur-é-温度-🌡";
  auto decoded = gw::uplink::decode_batch(gw::uplink::encode_batch(ok, 1));
  REQUIRE(decoded.has_value());
  CHECK(*decoded == ok);
}

TEST_CASE("an aggregate batch survives encode and decode", "[batch][aggregate]") {
  for (std::size_t n : {0, 1, 200}) {
    const Batch b = aggregate_batch(n);
    auto decoded = gw::uplink::decode_batch(gw::uplink::encode_batch(b, 3));
    REQUIRE(decoded.has_value());
    CHECK(decoded->record_type == gw::buffer::RecordType::aggregate);
    CHECK(decoded->records.empty());
    CHECK(*decoded == b);
  }
  // -0.0 and NaN come back bit for bit (every field is written, none left to its default).
  Batch b = aggregate_batch(1);
  b.aggregates[0].aggregate.sum = -0.0;
  b.aggregates[0].aggregate.stddev = std::numeric_limits<double>::quiet_NaN();
  auto decoded = gw::uplink::decode_batch(gw::uplink::encode_batch(b, 3));
  REQUIRE(decoded.has_value());
  CHECK(std::bit_cast<std::uint64_t>(decoded->aggregates[0].aggregate.sum) == std::bit_cast<std::uint64_t>(-0.0));
  CHECK(std::isnan(decoded->aggregates[0].aggregate.stddev));
}

TEST_CASE("decode_batch refuses inconsistent aggregate batches", "[batch][aggregate]") {
  Batch b = aggregate_batch(3);
  SECTION("the same seq twice") { b.aggregates[1].seq = b.aggregates[0].seq; }
  SECTION("out of order") { std::swap(b.aggregates[0], b.aggregates[1]); }
  SECTION("outside the range") { b.last = Seq{102}; }
  SECTION("an unknown window kind") { b.aggregates[2].aggregate.kind = static_cast<gw::windowing::WindowKind>(9); }
  SECTION("an unknown scope") { b.aggregates[2].aggregate.scope = static_cast<gw::windowing::Scope>(0); }
  CHECK(gw::uplink::decode_batch(gw::uplink::encode_batch(b, 1)).error() == errc::malformed);
}

// Compatibility across the addition of record types (tests/uplink/batch_before_record_types.fbs is
// the schema as it was before): old consumers read the new batches, the new decoder reads old ones.
TEST_CASE("record types are an additive change of the batch format", "[batch][aggregate]") {
  namespace old = gw::uplink::fb_old;
  SECTION("an old reader verifies a new telemetry batch and sees the same records") {
    const Batch b = sample_batch(50);
    const auto raw = gw::uplink::encode_batch_flatbuffer(b);
    flatbuffers::Verifier verifier(raw.data(), raw.size());
    REQUIRE(old::VerifyBatchBuffer(verifier));
    const old::Batch* ob = old::GetBatch(raw.data());
    CHECK(ob->format_version() == 2);
    CHECK(ob->first_seq() == 100);
    REQUIRE(ob->run_lengths() != nullptr);
    std::uint64_t n = 0;
    for (auto len : *ob->run_lengths()) n += len;
    CHECK(n == 50);
  }
  SECTION("an old reader verifies a new aggregate batch and finds no telemetry in it") {
    const auto raw = gw::uplink::encode_batch_flatbuffer(aggregate_batch(20));
    flatbuffers::Verifier verifier(raw.data(), raw.size());
    REQUIRE(old::VerifyBatchBuffer(verifier));
    const old::Batch* ob = old::GetBatch(raw.data());
    CHECK(ob->format_version() == 2);  // not refused as a newer version
    CHECK(ob->gateway_id()->str() == "gw-test-1");
    CHECK(ob->records() == nullptr);
    CHECK(ob->devices() == nullptr);
    CHECK(ob->run_lengths() == nullptr);
  }
  SECTION("the new decoder reads a batch written with the old schema as telemetry") {
    flatbuffers::FlatBufferBuilder fbb;
    const auto gateway = fbb.CreateString("gw-old");
    const std::vector<flatbuffers::Offset<flatbuffers::String>> dev = {fbb.CreateString("dev-1")};
    const auto devices = fbb.CreateVector(dev);
    const auto runs = fbb.CreateVector(std::vector<std::uint32_t>{2});
    const auto seqs = fbb.CreateVector(std::vector<std::uint64_t>{0, 2});
    const auto dseqs = fbb.CreateVector(std::vector<std::int64_t>{7, 1});
    const auto times = fbb.CreateVector(std::vector<std::int64_t>{1'700'000'000'000, 1000});
    const auto shape_ids = fbb.CreateVector(std::vector<std::uint32_t>{0, 0});
    const std::vector<flatbuffers::Offset<flatbuffers::String>> name = {fbb.CreateString("temp")};
    const auto names = fbb.CreateVector(name);
    const std::vector<flatbuffers::Offset<old::Shape>> shape = {
        old::CreateShape(fbb, fbb.CreateVector(std::vector<std::uint32_t>{0}))};
    const auto shapes = fbb.CreateVector(shape);
    const std::vector<flatbuffers::Offset<old::Column>> column = {
        old::CreateColumn(fbb, 0, old::Encoding::decimal_delta, 1, 0, fbb.CreateVector(std::vector<std::int64_t>{215, -1}))};
    const auto columns = fbb.CreateVector(column);
    old::BatchBuilder root(fbb);
    root.add_format_version(2);
    root.add_gateway_id(gateway);
    root.add_first_seq(41);
    root.add_last_seq(43);
    root.add_devices(devices);
    root.add_run_lengths(runs);
    root.add_seq_deltas(seqs);
    root.add_device_seq_deltas(dseqs);
    root.add_time_deltas(times);
    root.add_shape_ids(shape_ids);
    root.add_metric_names(names);
    root.add_shapes(shapes);
    root.add_columns(columns);
    old::FinishBatchBuffer(fbb, root.Finish());
    const std::vector<std::uint8_t> raw(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    auto decoded = gw::uplink::decode_batch(zstd_frame(raw));
    REQUIRE(decoded.has_value());
    CHECK(decoded->record_type == gw::buffer::RecordType::telemetry);
    CHECK(decoded->aggregates.empty());
    REQUIRE(decoded->records.size() == 2);
    CHECK(decoded->records[0].seq == Seq{41});
    CHECK(decoded->records[1].seq == Seq{43});
    CHECK(decoded->records[1].event.seq.value == 8);
    CHECK(decoded->records[1].event.time.ms == 1'700'000'001'000);
    CHECK(decoded->records[0].event.metrics == std::vector<gw::ingest::Metric>{{"temp", 21.5}});
    CHECK(decoded->records[1].event.metrics == std::vector<gw::ingest::Metric>{{"temp", 21.4}});
  }
}
