// batch-vectors: the shared test vectors of the upstream batch format (uplink/FORMAT.md) and the
// C++ reader's check of them. The Python and Java readers (uplink/consumers/python, .../java) run the
// same check on the same folder, so a vector one reader decodes differently fails that reader's
// suite against the one expected JSON.
//
//   batch-vectors write DIR    writes NAME.zst (a message value, exactly as the sink sends it) and
//                              NAME.json (its headers and the expected records, or the error) per vector
//   batch-vectors check DIR    decodes every vector with decode_batch + check_batch_headers and
//                              compares with its JSON field by field, reading the JSON independently
//   batch-vectors bench DIR    records/s of decode_batch over the valid vectors (BENCH line)
//
// The expected JSON (uplink/consumers/README.md, "Vectors"): integers as JSON numbers (full 64-bit
// range), every double as its IEEE-754 bit pattern in hex ("0x7ff8000000000000") so that NaN, -0.0
// and infinities compare bit for bit in every language.
//
// Single-threaded.
#include <flatbuffers/flatbuffers.h>
#include <zstd.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "uplink/batch.h"
#include "uplink/batch_generated.h"

namespace {

namespace fs = std::filesystem;
using gw::buffer::RecordType;
using gw::buffer::Seq;
using gw::uplink::AggregateRecord;
using gw::uplink::Batch;
using gw::uplink::BatchRecord;
using Json = nlohmann::ordered_json;
using Bytes = std::vector<std::uint8_t>;
using Headers = std::vector<std::pair<std::string, std::string>>;
namespace fb = gw::uplink::fb;

std::string hex_bits(double v) {
  char out[19];
  std::snprintf(out, sizeof out, "0x%016llx", static_cast<unsigned long long>(std::bit_cast<std::uint64_t>(v)));
  return out;
}

Json record_json(const BatchRecord& r) {
  Json tags = Json::array(), metrics = Json::array();
  for (const auto& t : r.event.tags) tags.push_back({t.key, t.value});
  for (const auto& m : r.event.metrics) metrics.push_back({m.name, hex_bits(m.value)});
  return Json{{"seq", r.seq.value},          {"device", r.event.device.value}, {"device_seq", r.event.seq.value},
              {"time_ms", r.event.time.ms},  {"boot_id", r.event.boot_id},     {"tags", tags},
              {"metrics", metrics}};
}

Json aggregate_json(const AggregateRecord& r) {
  const gw::windowing::Aggregate& a = r.aggregate;
  return Json{{"seq", r.seq.value},
              {"id", a.id},
              {"kind", gw::windowing::to_string(a.kind)},
              {"scope", gw::windowing::to_string(a.scope)},
              {"key", a.key},
              {"group_tag", a.group_tag},
              {"metric", a.metric},
              {"window_start_ms", a.window_start.ms},
              {"window_end_ms", a.window_end.ms},
              {"closed_at_ms", a.closed_at_ms},
              {"count", a.count},
              {"sum", hex_bits(a.sum)},
              {"min", hex_bits(a.min)},
              {"max", hex_bits(a.max)},
              {"mean", hex_bits(a.mean)},
              {"stddev", hex_bits(a.stddev)},
              {"first_time_ms", a.first_time.ms},
              {"first", hex_bits(a.first)},
              {"last_time_ms", a.last_time.ms},
              {"last", hex_bits(a.last)},
              {"rate", hex_bits(a.rate)},
              {"has_quantiles", a.has_quantiles},
              {"p50", hex_bits(a.p50)},
              {"p90", hex_bits(a.p90)},
              {"p99", hex_bits(a.p99)}};
}

Json batch_json(const Batch& b, std::uint16_t format_version) {
  Json records = Json::array(), aggregates = Json::array();
  for (const auto& r : b.records) records.push_back(record_json(r));
  for (const auto& a : b.aggregates) aggregates.push_back(aggregate_json(a));
  return Json{{"format_version", format_version},
              {"gateway_id", b.gateway_id},
              {"first_seq", b.first.value},
              {"last_seq", b.last.value},
              {"record_type", gw::uplink::record_type_name(b.record_type)},
              {"records", records},
              {"aggregates", aggregates}};
}

Headers sink_headers(const Batch& b, std::uint16_t format_version) {
  return {{"gw-gateway-id", b.gateway_id},
          {"gw-first-seq", std::to_string(b.first.value)},
          {"gw-last-seq", std::to_string(b.last.value)},
          {"gw-schema-version", std::to_string(format_version)},
          {"gw-codec", "zstd"},
          {"gw-dict-id", "0"},
          {"gw-record-type", std::string(gw::uplink::record_type_name(b.record_type))}};
}

Json headers_json(const Headers& h) {
  Json out = Json::array();
  for (const auto& [k, v] : h) out.push_back({k, v});
  return out;
}

// --- the vectors -----------------------------------------------------------------------------

BatchRecord rec(std::uint64_t seq, std::string device, std::uint64_t dseq, std::int64_t t,
                std::vector<gw::ingest::Metric> metrics, std::vector<gw::ingest::Tag> tags = {},
                std::uint32_t boot_id = 0) {
  return BatchRecord{Seq{seq}, gw::ingest::Event{gw::ingest::DeviceId{std::move(device)}, gw::ingest::DeviceSeq{dseq},
                                                 gw::ingest::EventTime{t}, std::move(metrics), std::move(tags), boot_id}};
}

// Three devices interleaved as the ring stores them, seqs with gaps (records of another type or
// undecodable ones are skipped by the sink), decimal columns and one column only XOR can hold.
Batch basic() {
  Batch b{"gw-vectors", Seq{100}, Seq{114}, {}};  // 100, 106 and 114 without a record
  const std::int64_t t0 = 1'700'000'000'000;
  std::uint64_t seq = 101;
  for (int k = 0; k < 4; ++k) {
    for (int d = 0; d < 3; ++d) {
      if (seq == 106) ++seq;  // a seq of the range without a record
      std::vector<gw::ingest::Metric> m{{"temperature", 21.5 + 0.25 * k - d}, {"humidity", 40.0 + k * 0.1}};
      if (d == 2) m.push_back({"ratio", 1.0 / 3.0 + k});  // not a short decimal: xor_bits
      if (d == 1 && k == 2) m.pop_back();                 // another shape
      b.records.push_back(rec(seq++, "dev-" + std::to_string(d), 7 + k, t0 + 1000 * k + d * 3, std::move(m)));
    }
  }
  return b;
}

// Tags on some records, none on others; boot ids, some unknown (0).
Batch tags_boot() {
  Batch b{"gw-vectors", Seq{1}, Seq{6}, {}};
  const std::int64_t t0 = 1'733'000'000'000;
  b.records.push_back(rec(1, "thermo-a", 0, t0, {{"t", 20.0}}, {{"site", "north"}, {"floor", "2"}}, 3));
  b.records.push_back(rec(2, "thermo-b", 1, t0 + 5, {{"t", 19.5}}, {}, 0));
  b.records.push_back(rec(3, "thermo-a", 1, t0 + 1000, {{"t", 20.1}}, {{"site", "north"}, {"floor", "2"}}, 3));
  b.records.push_back(rec(4, "thermo-b", 2, t0 + 1005, {{"t", 19.4}}, {{"site", "south"}}, 4294967295u));
  b.records.push_back(rec(5, "thermo-c", 0, t0 + 1010, {{"t", 18.0}, {"rssi", -71}}, {{"site", ""}}, 1));
  b.records.push_back(rec(6, "thermo-a", 0, t0 + 2000, {{"t", 20.2}}, {}, 4));  // rebooted: seq from 0
  return b;
}

// Values and numbers at their limits: every kind of double bit for bit, the full seq ranges,
// event times before 1970 and far ahead, text outside ASCII.
Batch extremes() {
  const std::uint64_t top = std::numeric_limits<std::uint64_t>::max();
  const double nan_payload = std::bit_cast<double>(0x7ff8000000000123ull);
  Batch b{"gw-ünïcödé-東京", Seq{top - 10}, Seq{top - 1}, {}};
  b.records.push_back(rec(top - 10, "dev \"quoted\" \\ slash", top, std::numeric_limits<std::int64_t>::min() / 4,
                          {{"nan", std::numeric_limits<double>::quiet_NaN()},
                           {"neg_zero", -0.0},
                           {"inf", std::numeric_limits<double>::infinity()},
                           {"max", std::numeric_limits<double>::max()}}));
  b.records.push_back(rec(top - 5, "dev \"quoted\" \\ slash", 0, std::numeric_limits<std::int64_t>::max() / 4,
                          {{"nan", nan_payload},
                           {"neg_zero", 0.0},
                           {"inf", -std::numeric_limits<double>::infinity()},
                           {"max", std::numeric_limits<double>::denorm_min()}}));
  b.records.push_back(rec(top - 1, "温度計-1", 1ull << 63, -1, {{"μ metric / with spaces", -1e-300}}, {{"ключ", "значение"}}, 7));
  return b;
}

// The largest batch the sink sends with its defaults: batch_max_records = 1000 records, 100
// devices, 4 metrics each with the decimals sensors report.
Batch largest() {
  Batch b{"gw-vectors", Seq{5'000'001}, Seq{5'001'000}, {}};
  const std::int64_t t0 = 1'760'000'000'000;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    const std::uint64_t d = i % 100, k = i / 100;
    const auto x = static_cast<double>((d * 7919 + k * 104729) % 1000);
    b.records.push_back(rec(5'000'001 + i, "sensor-" + std::to_string(d), 1000 + k,
                            t0 + static_cast<std::int64_t>(k * 1000 + d * 10),
                            {{"temperature", 15.0 + x / 100.0},
                             {"humidity", 30.0 + x / 20.0},
                             {"light", 100.0 + x},
                             {"voltage", 2.5 + x / 1000.0}},
                            {{"site", d < 50 ? "lab-a" : "lab-b"}}, static_cast<std::uint32_t>(d + 1)));
  }
  return b;
}

Batch single() {
  Batch b{"g", Seq{1}, Seq{1}, {}};
  b.records.push_back(rec(1, "d", 0, 0, {{"m", 1.0}}));
  return b;
}

// Version 1 rows: no tags, no boot id; a record may have no metric.
Batch rows() {
  Batch b{"gw-legacy", Seq{40}, Seq{45}, {}};
  b.records.push_back(rec(41, "dev-1", 7, 1'600'000'000'000, {{"temp", 21.5}, {"hum", 40.0}}));
  b.records.push_back(rec(43, "dev-2", 3, 1'600'000'000'002, {{"temp", std::numeric_limits<double>::quiet_NaN()}}));
  b.records.push_back(rec(45, "dev-1", 8, 1'600'000'001'000, {}));
  return b;
}

gw::windowing::Aggregate agg(std::uint64_t id, gw::windowing::WindowKind kind, gw::windowing::Scope scope,
                             std::string key, std::string group_tag, std::string metric, std::int64_t start,
                             std::int64_t end, std::uint64_t count, double base, bool quantiles) {
  gw::windowing::Aggregate a;
  a.id = id;
  a.kind = kind;
  a.scope = scope;
  a.key = std::move(key);
  a.group_tag = std::move(group_tag);
  a.metric = std::move(metric);
  a.window_start = gw::ingest::EventTime{start};
  a.window_end = gw::ingest::EventTime{end};
  a.closed_at_ms = end + 2000;
  a.count = count;
  a.sum = base * static_cast<double>(count);
  a.min = base - 1.5;
  a.max = base + 2.25;
  a.mean = base;
  a.stddev = 0.7071067811865476;
  a.first_time = gw::ingest::EventTime{start + 12};
  a.first = base - 0.5;
  a.last_time = gw::ingest::EventTime{end - 1};
  a.last = base + 0.5;
  a.rate = static_cast<double>(count) * 1000.0 / static_cast<double>(end - start);
  a.has_quantiles = quantiles;
  if (quantiles) {
    a.p50 = base;
    a.p90 = base + 1.0;
    a.p99 = base + 2.0;
  }
  return a;
}

Batch aggregates_device() {
  using gw::windowing::Scope;
  using gw::windowing::WindowKind;
  Batch b{"gw-vectors", Seq{200}, Seq{230}, {}, RecordType::aggregate};
  const std::int64_t t0 = 1'700'000'040'000;
  b.aggregates.push_back({Seq{201}, agg(1, WindowKind::tumbling, Scope::device, "dev-0", "", "temperature", t0,
                                        t0 + 10'000, 10, 21.5, false)});
  b.aggregates.push_back({Seq{207}, agg(2, WindowKind::hopping, Scope::device, "dev-1", "", "humidity", t0,
                                        t0 + 60'000, 60, 40.25, true)});
  b.aggregates.push_back({Seq{230}, agg(3, WindowKind::session, Scope::device, "dev-2", "", "temperature",
                                        t0 + 3, t0 + 91'007, 1, -3.0, true)});
  return b;
}

Batch aggregates_group() {
  using gw::windowing::Scope;
  using gw::windowing::WindowKind;
  Batch b{"gw-vectors", Seq{1}, Seq{3}, {}, RecordType::aggregate};
  const std::int64_t t0 = 1'700'000'100'000;
  b.aggregates.push_back({Seq{1}, agg(41, WindowKind::tumbling, Scope::group, "north", "site", "temperature", t0,
                                      t0 + 60'000, 1200, 19.75, true)});
  auto odd = agg(42, WindowKind::tumbling, Scope::group, "", "site", "t", t0, t0 + 60'000, 0, 0.0, false);
  odd.min = std::numeric_limits<double>::infinity();  // an empty window's neutral values
  odd.max = -std::numeric_limits<double>::infinity();
  odd.mean = std::numeric_limits<double>::quiet_NaN();
  odd.stddev = -0.0;
  b.aggregates.push_back({Seq{3}, std::move(odd)});
  return b;
}

// --- malformed vectors -------------------------------------------------------------------------

Bytes flatbuffer_of(const Batch& b, gw::uplink::BatchLayout layout = gw::uplink::BatchLayout::columnar) {
  return gw::uplink::encode_batch_flatbuffer(b, layout);
}

Bytes frame(const Bytes& raw) { return gw::uplink::compress_frame(raw, 3); }

Bytes frame_without_content_size(const Bytes& raw) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  Bytes out(ZSTD_compressBound(raw.size()) + 64);
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  ZSTD_inBuffer in{raw.data(), raw.size(), 0};
  while (ZSTD_compressStream2(cctx, &o, &in, ZSTD_e_end) != 0) {
  }
  ZSTD_freeCCtx(cctx);
  out.resize(o.pos);
  return out;
}

// A batch FlatBuffer written field by field, so that fields the generated builder would require or
// fix can be left out or set to what a writer from elsewhere might send.
Bytes raw_batch(std::uint16_t format_version, bool with_gateway_id, std::uint8_t record_type, const char* identifier) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceDefaults(true);  // format_version 0 must be written, not left to its default (1)
  const auto gid = fbb.CreateString("gw-raw");
  const auto dev = fbb.CreateString("dev-1");
  const auto name = fbb.CreateString("temp");
  const auto metric = fb::CreateMetric(fbb, name, 21.5);
  const auto metrics = fbb.CreateVector(std::vector<flatbuffers::Offset<fb::Metric>>{metric});
  const auto record = fb::CreateRecord(fbb, 5, dev, 1, 1'700'000'000'000, metrics);
  const auto records = fbb.CreateVector(std::vector<flatbuffers::Offset<fb::Record>>{record});
  const auto start = fbb.StartTable();
  fbb.AddElement<std::uint16_t>(fb::Batch::VT_FORMAT_VERSION, format_version, 0);
  if (with_gateway_id) fbb.AddOffset(fb::Batch::VT_GATEWAY_ID, gid);
  fbb.AddElement<std::uint64_t>(fb::Batch::VT_FIRST_SEQ, 5, 0);
  fbb.AddElement<std::uint64_t>(fb::Batch::VT_LAST_SEQ, 5, 0);
  fbb.AddOffset(fb::Batch::VT_RECORDS, records);
  fbb.AddElement<std::uint8_t>(fb::Batch::VT_RECORD_TYPE, record_type, 0);
  fbb.Finish(flatbuffers::Offset<fb::Batch>(fbb.EndTable(start)), identifier);
  return Bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

// --- writing and checking ----------------------------------------------------------------------

void write_file(const fs::path& p, const Bytes& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

struct Writer {
  fs::path dir;
  std::vector<std::string> names{};

  void put(const std::string& name, const std::string& about, const Bytes& value, const Headers& headers,
           const std::string& outcome_key, const Json& outcome) {
    write_file(dir / (name + ".zst"), value);
    Json j{{"vector", name}, {"about", about}, {"value", name + ".zst"}, {"headers", headers_json(headers)}};
    j[outcome_key] = outcome;
    std::ofstream(dir / (name + ".json")) << j.dump(2) << '\n';
    names.push_back(name);
  }
  void good(const std::string& name, const std::string& about, const Batch& b,
            gw::uplink::BatchLayout layout = gw::uplink::BatchLayout::columnar) {
    const std::uint16_t v = layout == gw::uplink::BatchLayout::rows && b.record_type == RecordType::telemetry ? 1 : 2;
    put(name, about, frame(flatbuffer_of(b, layout)), sink_headers(b, v), "expect", batch_json(b, v));
  }
  void bad(const std::string& name, const std::string& about, const Bytes& value, const std::string& error,
           Headers headers = {}) {
    put(name, about, value, headers, "error", error);
  }
};

void write_vectors(const fs::path& dir) {
  // A folder of vectors from an earlier run is replaced; any other non-empty folder is left alone.
  if (fs::exists(dir / "index.json")) {
    fs::remove_all(dir);
  } else if (fs::exists(dir) && !fs::is_empty(dir)) {
    throw std::runtime_error(dir.string() + " is not empty and holds no vectors (index.json)");
  }
  fs::create_directories(dir);
  Writer w{dir};
  w.good("v2_telemetry_basic", "three devices interleaved, seqs with gaps, decimal and XOR columns, two shapes",
         basic());
  w.good("v2_telemetry_tags_boot", "tags on some records and an empty tag list on others; boot ids, 0 = unknown",
         tags_boot());
  w.good("v2_telemetry_extremes",
         "NaN with a payload, -0.0, infinities, the largest and smallest doubles; seqs at 2^64-1; times before 1970; "
         "text outside ASCII, quotes and backslashes",
         extremes());
  w.good("v2_telemetry_largest", "the largest batch the sink sends by default: 1000 records of 100 devices", largest());
  w.good("v2_telemetry_single", "one record, one metric", single());
  w.good("v1_telemetry_rows", "format_version 1 (rows): no tags, no boot ids; a record without metrics", rows(),
         gw::uplink::BatchLayout::rows);
  w.good("v2_aggregate_device", "closed windows of every kind, scope device, with and without quantiles",
         aggregates_device());
  w.good("v2_aggregate_group", "scope group; an empty window with infinities, NaN and -0.0", aggregates_group());

  const Bytes good = frame(flatbuffer_of(basic()));
  w.bad("bad_truncated_frame", "the first half of a valid frame", Bytes(good.begin(), good.begin() + good.size() / 2),
        "bad_compression");
  Bytes trailing = good;
  trailing.push_back(0);
  w.bad("bad_trailing_bytes", "a valid frame followed by one byte", trailing, "bad_compression");
  w.bad("bad_no_content_size", "a valid batch in a frame that does not declare its content size",
        frame_without_content_size(flatbuffer_of(basic())), "bad_compression");
  w.bad("bad_not_zstd", "not a zstd frame at all", Bytes{'{', '"', 'a', '"', ':', '1', '}'}, "bad_compression");
  w.bad("bad_too_large", "a frame declaring 64 MiB + 1 byte of content (zeros)",
        frame(Bytes(gw::uplink::kMaxBatchBytes + 1, 0)), "too_large");
  w.bad("bad_format_version_3", "format_version 3, newer than the readers", frame(raw_batch(3, true, 1, "GWB1")),
        "unsupported_version");
  w.bad("bad_format_version_0", "format_version 0", frame(raw_batch(0, true, 1, "GWB1")), "unsupported_version");
  w.bad("bad_record_type_9", "a record type from the future", frame(raw_batch(2, true, 9, "GWB1")),
        "unsupported_version");
  w.bad("bad_identifier", "file identifier XXXX instead of GWB1", frame(raw_batch(1, true, 1, "XXXX")), "malformed");
  w.bad("bad_missing_gateway_id", "the required gateway_id absent", frame(raw_batch(1, false, 1, "GWB1")),
        "malformed");
  Bytes root = flatbuffer_of(basic());
  root[0] = 0xf0, root[1] = 0xff, root[2] = 0xff, root[3] = 0x7f;  // the root offset points far beyond the buffer
  w.bad("bad_root_offset", "the root table offset points beyond the buffer", frame(root), "malformed");
  {
    // The first byte of a vector of a valid batch, changed: run_lengths[0] + 1 (the runs claim one
    // record more than the per-record vectors hold), shape_ids[0] = 200 (of 2 shapes).
    auto patched = [](auto vector_of, auto change) {
      Bytes raw = flatbuffer_of(basic());
      const auto* data = reinterpret_cast<const std::uint8_t*>(vector_of(*fb::GetBatch(raw.data()))->Data());
      std::uint8_t& first = raw[static_cast<std::size_t>(data - raw.data())];
      first = change(first);
      return frame(raw);
    };
    w.bad("bad_run_lengths", "run_lengths sum to one record more than seq_deltas holds",
          patched([](const fb::Batch& b) { return b.run_lengths(); },
                  [](std::uint8_t v) { return static_cast<std::uint8_t>(v + 1); }),
          "malformed");
    w.bad("bad_shape_index", "a record's shape id beyond the shapes",
          patched([](const fb::Batch& b) { return b.shape_ids(); }, [](std::uint8_t) { return std::uint8_t{200}; }),
          "malformed");
  }
  {
    Batch b = rows();
    b.last = Seq{44};  // the last record has seq 45
    w.bad("bad_seq_out_of_range", "a version 1 record's seq beyond last_seq",
          frame(flatbuffer_of(b, gw::uplink::BatchLayout::rows)), "malformed");
  }
  {
    Batch b = rows();
    b.records[0].event.metrics.push_back({"temp", 22.0});
    w.bad("bad_repeated_metric", "a version 1 record with the metric temp twice",
          frame(flatbuffer_of(b, gw::uplink::BatchLayout::rows)), "malformed");
    b = tags_boot();
    b.records[0].event.tags.push_back({"site", "south"});
    w.bad("bad_repeated_tag_key", "a record whose tag set has the key site twice", frame(flatbuffer_of(b)),
          "malformed");
  }
  {
    Batch b = single();
    b.records[0].event.device.value = std::string("d\xff\xfe", 3);
    w.bad("bad_utf8_device", "a device id that is not UTF-8", frame(flatbuffer_of(b)), "malformed");
  }
  {
    Batch b = basic();
    Headers h = sink_headers(b, 2);
    h[4].second = "lz4";
    w.bad("bad_header_codec", "a valid batch whose gw-codec header says lz4", good, "unsupported_codec", h);
    h = sink_headers(b, 2);
    h[5].second = "7";
    w.bad("bad_header_dictionary", "a valid batch whose gw-dict-id names a dictionary", good, "unsupported_codec", h);
    h = sink_headers(b, 2);
    h[2].second = "111";
    w.bad("bad_header_last_seq", "gw-last-seq disagrees with the batch's last_seq", good, "header_mismatch", h);
    h = sink_headers(b, 2);
    h[6].second = "aggregate";
    w.bad("bad_header_record_type", "gw-record-type aggregate on a telemetry batch", good, "header_mismatch", h);
  }
  Json index = Json::array();
  for (const auto& n : w.names) index.push_back(n);
  std::ofstream(dir / "index.json") << index.dump(2) << '\n';
  std::printf("batch-vectors: wrote %zu vectors to %s\n", w.names.size(), dir.c_str());
}

Bytes read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

const char* error_name(const std::error_code& ec) {
  using gw::uplink::errc;
  switch (static_cast<errc>(ec.value())) {
    case errc::bad_compression:
      return "bad_compression";
    case errc::too_large:
      return "too_large";
    case errc::malformed:
      return "malformed";
    case errc::unsupported_version:
      return "unsupported_version";
    case errc::header_mismatch:
      return "header_mismatch";
    case errc::unsupported_codec:
      return "unsupported_codec";
    default:
      return "other";
  }
}

// The C++ reader's whole answer for one vector: the batch as JSON, or {"error": kind}.
Json decode_json(const Bytes& value, const Headers& headers) {
  std::uint16_t version = 0;
  auto batch = gw::uplink::decode_batch(value, &version);
  if (!batch) return Json{{"error", error_name(batch.error())}};
  if (auto ok = gw::uplink::check_batch_headers(*batch, version, headers); !ok) {
    return Json{{"error", error_name(ok.error())}};
  }
  return batch_json(*batch, version);
}

// Field by field; returns the first difference's path, empty if equal.
std::string first_difference(const Json& want, const Json& got, const std::string& path) {
  if (want.type() != got.type() && !(want.is_number_integer() && got.is_number_integer())) {
    return path + ": expected " + want.dump() + ", got " + got.dump();
  }
  if (want.is_object()) {
    for (const auto& [k, v] : want.items()) {
      if (!got.contains(k)) return path + "." + k + ": missing";
      if (auto d = first_difference(v, got.at(k), path + "." + k); !d.empty()) return d;
    }
    for (const auto& [k, v] : got.items()) {
      if (!want.contains(k)) return path + "." + k + ": not expected";
    }
    return {};
  }
  if (want.is_array()) {
    if (want.size() != got.size()) {
      return path + ": " + std::to_string(want.size()) + " entries expected, " + std::to_string(got.size()) + " got";
    }
    for (std::size_t i = 0; i < want.size(); ++i) {
      if (auto d = first_difference(want[i], got[i], path + "[" + std::to_string(i) + "]"); !d.empty()) return d;
    }
    return {};
  }
  return want == got ? std::string() : path + ": expected " + want.dump() + ", got " + got.dump();
}

struct Vector {
  std::string name;
  Json spec;
  Bytes value;
  Headers headers;
};

std::vector<Vector> load(const fs::path& dir) {
  std::vector<Vector> out;
  for (const auto& name : Json::parse(std::ifstream(dir / "index.json"))) {
    Vector v{name.get<std::string>(), Json::parse(std::ifstream(dir / (name.get<std::string>() + ".json"))), {}, {}};
    v.value = read_file(dir / v.spec.at("value").get<std::string>());
    for (const auto& h : v.spec.at("headers")) v.headers.emplace_back(h[0].get<std::string>(), h[1].get<std::string>());
    out.push_back(std::move(v));
  }
  return out;
}

int check(const fs::path& dir) {
  int failed = 0;
  const auto vectors = load(dir);
  for (const auto& v : vectors) {
    const Json got = decode_json(v.value, v.headers);
    const Json want = v.spec.contains("error") ? Json{{"error", v.spec.at("error")}} : v.spec.at("expect");
    const std::string diff = first_difference(want, got, v.name);
    std::printf("%s %s%s%s\n", diff.empty() ? "ok  " : "FAIL", v.name.c_str(), diff.empty() ? "" : ": ", diff.c_str());
    failed += diff.empty() ? 0 : 1;
  }
  std::printf("batch-vectors check (C++ decode_batch): %zu vectors, %d failed\n", vectors.size(), failed);
  return failed == 0 && !vectors.empty() ? 0 : 1;
}

int bench(const fs::path& dir, double seconds) {
  const auto vectors = load(dir);
  std::uint64_t records = 0;
  const auto start = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (const auto& v : vectors) {
      if (!v.spec.contains("expect")) continue;
      auto b = gw::uplink::decode_batch(v.value);
      if (!b) return 1;
      records += b->records.size() + b->aggregates.size();
    }
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::printf("BENCH decode_cpp %.0f records/s\n", static_cast<double>(records) / elapsed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string usage = "usage: batch-vectors write|check|bench DIR [SECONDS]\n";
  if (argc < 3) {
    std::fputs(usage.c_str(), stderr);
    return 2;
  }
  const std::string mode = argv[1];
  const fs::path dir = argv[2];
  try {
    if (mode == "write") {
      write_vectors(dir);
      return 0;
    }
    if (mode == "check") return check(dir);
    if (mode == "bench") return bench(dir, argc > 3 ? std::stod(argv[3]) : 3.0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "batch-vectors: %s\n", e.what());
    return 1;
  }
  std::fputs(usage.c_str(), stderr);
  return 2;
}
