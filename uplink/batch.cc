// The batch codec: FlatBuffers (uplink/batch.fbs) inside one zstd frame, row layout (format 1) or
// columnar layout (format 2, uplink/FORMAT.md). Pure functions; thread-safe (each thread keeps its own
// zstd compression context).
#include "uplink/batch.h"

#include <zstd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <tuple>
#include <unordered_map>

#include "uplink/batch_generated.h"

namespace gw::uplink {
namespace {

// 10^0 .. 10^15, each exact in a double.
constexpr std::array<double, 16> kPow10 = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                           1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
constexpr double kTwo53 = 9007199254740992.0;

// The integer n with n / 10^scale == v bit for bit, if there is one below 2^53.
bool decimal_of(double v, std::size_t scale, std::int64_t& n) {
  const double scaled = v * kPow10[scale];
  if (!(std::fabs(scaled) < kTwo53)) return false;  // also NaN and infinities
  n = static_cast<std::int64_t>(std::nearbyint(scaled));
  const double back = static_cast<double>(n) / kPow10[scale];
  return std::bit_cast<std::uint64_t>(back) == std::bit_cast<std::uint64_t>(v);  // -0.0 fails: xor keeps it
}

struct ColumnValue {
  double value;
  std::uint32_t run;
};

std::vector<std::uint8_t> encode_rows(const Batch& batch) {
  flatbuffers::FlatBufferBuilder fbb(256 + 96 * batch.records.size());
  std::vector<flatbuffers::Offset<fb::Record>> records;
  records.reserve(batch.records.size());
  std::vector<flatbuffers::Offset<fb::Metric>> metrics;
  for (const BatchRecord& r : batch.records) {
    metrics.clear();
    for (const ingest::Metric& m : r.event.metrics) {
      metrics.push_back(fb::CreateMetric(fbb, fbb.CreateString(m.name), m.value));
    }
    records.push_back(fb::CreateRecord(fbb, r.seq.value, fbb.CreateString(r.event.device.value),
                                       r.event.seq.value, r.event.time.ms, fbb.CreateVector(metrics)));
  }
  const auto gateway = fbb.CreateString(batch.gateway_id);
  const auto recs = fbb.CreateVector(records);
  fb::BatchBuilder root(fbb);
  root.add_format_version(kRowBatchFormatVersion);
  root.add_gateway_id(gateway);
  root.add_first_seq(batch.first.value);
  root.add_last_seq(batch.last.value);
  root.add_records(recs);
  fb::FinishBatchBuffer(fbb, root.Finish());
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

std::vector<std::uint8_t> encode_columnar(const Batch& batch) {
  const std::size_t n = batch.records.size();
  // Dictionaries, in order of first appearance.
  std::unordered_map<std::string_view, std::uint32_t> device_index;
  std::vector<std::string_view> devices;
  std::vector<std::vector<std::size_t>> runs;  // record indexes per device, in batch order
  std::unordered_map<std::string_view, std::uint32_t> metric_index;
  std::vector<std::string_view> metric_names;
  std::map<std::vector<std::uint32_t>, std::uint32_t> shape_index;
  std::vector<const std::vector<std::uint32_t>*> shapes;
  std::vector<std::uint32_t> record_shape(n);
  std::vector<std::uint32_t> shape;
  for (std::size_t i = 0; i < n; ++i) {
    const ingest::Event& e = batch.records[i].event;
    auto [dev, new_dev] = device_index.try_emplace(e.device.value, static_cast<std::uint32_t>(devices.size()));
    if (new_dev) {
      devices.push_back(e.device.value);
      runs.emplace_back();
    }
    runs[dev->second].push_back(i);
    shape.clear();
    for (const ingest::Metric& m : e.metrics) {
      auto [it, added] = metric_index.try_emplace(m.name, static_cast<std::uint32_t>(metric_names.size()));
      if (added) metric_names.push_back(m.name);
      shape.push_back(it->second);
    }
    auto [s, new_shape] = shape_index.try_emplace(shape, static_cast<std::uint32_t>(shapes.size()));
    if (new_shape) shapes.push_back(&s->first);
    record_shape[i] = s->second;
  }

  // Tag sets and boot ids, only when some record has them.
  struct TagsLess {
    bool operator()(const std::vector<ingest::Tag>& a, const std::vector<ingest::Tag>& b) const {
      return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                          [](const ingest::Tag& x, const ingest::Tag& y) {
                                            return std::tie(x.key, x.value) < std::tie(y.key, y.value);
                                          });
    }
  };
  std::map<std::vector<ingest::Tag>, std::uint32_t, TagsLess> tag_index;
  std::vector<const std::vector<ingest::Tag>*> tag_sets;
  bool any_tags = false, any_boot = false;
  for (const BatchRecord& r : batch.records) {
    any_tags = any_tags || !r.event.tags.empty();
    any_boot = any_boot || r.event.boot_id != 0;
  }
  std::vector<std::uint32_t> tag_set_ids, boot_ids;

  std::vector<std::uint32_t> run_lengths;
  std::vector<std::uint64_t> seq_deltas;
  std::vector<std::int64_t> device_seq_deltas, time_deltas;
  std::vector<std::uint32_t> shape_ids;
  seq_deltas.reserve(n);
  device_seq_deltas.reserve(n);
  time_deltas.reserve(n);
  shape_ids.reserve(n);
  std::vector<std::vector<ColumnValue>> columns(metric_names.size());
  for (std::uint32_t r = 0; r < runs.size(); ++r) {
    run_lengths.push_back(static_cast<std::uint32_t>(runs[r].size()));
    std::uint64_t prev_seq = 0, prev_dseq = 0, prev_time = 0, prev_delta = 0;
    for (std::size_t k = 0; k < runs[r].size(); ++k) {
      const BatchRecord& rec = batch.records[runs[r][k]];
      const std::uint64_t seq = rec.seq.value;
      const std::uint64_t dseq = rec.event.seq.value;
      const auto time = static_cast<std::uint64_t>(rec.event.time.ms);
      // Two's complement wrap-around: exact for any input, and what the decoder undoes.
      seq_deltas.push_back(k == 0 ? seq - batch.first.value : seq - prev_seq);
      device_seq_deltas.push_back(static_cast<std::int64_t>(k == 0 ? dseq : dseq - prev_dseq));
      const std::uint64_t delta = time - prev_time;
      time_deltas.push_back(static_cast<std::int64_t>(k == 0 ? time : k == 1 ? delta : delta - prev_delta));
      prev_delta = k == 0 ? 0 : delta;
      prev_seq = seq;
      prev_dseq = dseq;
      prev_time = time;
      shape_ids.push_back(record_shape[runs[r][k]]);
      if (any_tags) {
        auto [t, added] = tag_index.try_emplace(rec.event.tags, static_cast<std::uint32_t>(tag_sets.size()));
        if (added) tag_sets.push_back(&t->first);
        tag_set_ids.push_back(t->second);
      }
      if (any_boot) boot_ids.push_back(rec.event.boot_id);
      const std::vector<std::uint32_t>& metrics = *shapes[record_shape[runs[r][k]]];
      for (std::size_t m = 0; m < metrics.size(); ++m) {
        columns[metrics[m]].push_back({rec.event.metrics[m].value, r});
      }
    }
  }

  flatbuffers::FlatBufferBuilder fbb(1024 + 48 * n);
  std::vector<flatbuffers::Offset<fb::Column>> column_offsets;
  for (std::uint32_t c = 0; c < columns.size(); ++c) {
    const std::vector<ColumnValue>& values = columns[c];
    // The smallest decimal scale that restores every value exactly, else XOR of the bits.
    std::optional<std::size_t> scale;
    std::vector<std::int64_t> ints(values.size());
    for (std::size_t s = 0; s < kPow10.size() && !scale; ++s) {
      bool all = true;
      for (std::size_t i = 0; i < values.size() && all; ++i) all = decimal_of(values[i].value, s, ints[i]);
      if (all) scale = s;
    }
    if (scale) {
      std::vector<std::int64_t> deltas(values.size());
      for (std::size_t i = 0; i < values.size(); ++i) {
        const bool first = i == 0 || values[i - 1].run != values[i].run;
        deltas[i] = first ? ints[i] : ints[i] - ints[i - 1];
      }
      column_offsets.push_back(fb::CreateColumn(fbb, c, fb::Encoding::decimal_delta,
                                                static_cast<std::uint8_t>(*scale), 0, fbb.CreateVector(deltas)));
    } else {
      std::vector<std::uint64_t> bits(values.size());
      for (std::size_t i = 0; i < values.size(); ++i) {
        const bool first = i == 0 || values[i - 1].run != values[i].run;
        const auto b = std::bit_cast<std::uint64_t>(values[i].value);
        bits[i] = first ? b : b ^ std::bit_cast<std::uint64_t>(values[i - 1].value);
      }
      column_offsets.push_back(fb::CreateColumn(fbb, c, fb::Encoding::xor_bits, 0, fbb.CreateVector(bits)));
    }
  }
  std::vector<flatbuffers::Offset<fb::Shape>> shape_offsets;
  for (const auto* s : shapes) shape_offsets.push_back(fb::CreateShape(fbb, fbb.CreateVector(*s)));
  std::vector<flatbuffers::Offset<flatbuffers::String>> device_offsets, name_offsets;
  for (std::string_view d : devices) device_offsets.push_back(fbb.CreateString(d));
  for (std::string_view m : metric_names) name_offsets.push_back(fbb.CreateString(m));

  std::vector<flatbuffers::Offset<fb::TagSet>> tag_set_offsets;
  for (const auto* set : tag_sets) {
    std::vector<flatbuffers::Offset<fb::Tag>> tags;
    for (const ingest::Tag& t : *set) tags.push_back(fb::CreateTag(fbb, fbb.CreateString(t.key), fbb.CreateString(t.value)));
    tag_set_offsets.push_back(fb::CreateTagSet(fbb, fbb.CreateVector(tags)));
  }
  const auto v_tag_ids = any_tags ? fbb.CreateVector(tag_set_ids) : 0;
  const auto v_tag_sets = any_tags ? fbb.CreateVector(tag_set_offsets) : 0;
  const auto v_boot = any_boot ? fbb.CreateVector(boot_ids) : 0;
  const auto gateway = fbb.CreateString(batch.gateway_id);
  const auto v_devices = fbb.CreateVector(device_offsets);
  const auto v_runs = fbb.CreateVector(run_lengths);
  const auto v_seq = fbb.CreateVector(seq_deltas);
  const auto v_dseq = fbb.CreateVector(device_seq_deltas);
  const auto v_time = fbb.CreateVector(time_deltas);
  const auto v_shape_ids = fbb.CreateVector(shape_ids);
  const auto v_names = fbb.CreateVector(name_offsets);
  const auto v_shapes = fbb.CreateVector(shape_offsets);
  const auto v_columns = fbb.CreateVector(column_offsets);
  fb::BatchBuilder root(fbb);
  root.add_format_version(kBatchFormatVersion);
  root.add_gateway_id(gateway);
  root.add_first_seq(batch.first.value);
  root.add_last_seq(batch.last.value);
  root.add_devices(v_devices);
  root.add_run_lengths(v_runs);
  root.add_seq_deltas(v_seq);
  root.add_device_seq_deltas(v_dseq);
  root.add_time_deltas(v_time);
  root.add_shape_ids(v_shape_ids);
  root.add_metric_names(v_names);
  root.add_shapes(v_shapes);
  root.add_columns(v_columns);
  if (any_tags) {
    root.add_tag_set_ids(v_tag_ids);
    root.add_tag_sets(v_tag_sets);
  }
  if (any_boot) root.add_boot_ids(v_boot);
  fb::FinishBatchBuffer(fbb, root.Finish());
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

// Format 2 with record_type aggregate: one table per closed window, every field written (also
// zeros and -0.0, so that values come back bit for bit).
std::vector<std::uint8_t> encode_aggregates(const Batch& batch) {
  flatbuffers::FlatBufferBuilder fbb(256 + 256 * batch.aggregates.size());
  fbb.ForceDefaults(true);
  std::vector<flatbuffers::Offset<fb::Aggregate>> aggs;
  aggs.reserve(batch.aggregates.size());
  for (const AggregateRecord& r : batch.aggregates) {
    const windowing::Aggregate& a = r.aggregate;
    const auto key = fbb.CreateString(a.key);
    const auto group_tag = fbb.CreateString(a.group_tag);
    const auto metric = fbb.CreateString(a.metric);
    fb::AggregateBuilder b(fbb);
    b.add_seq(r.seq.value);
    b.add_id(a.id);
    b.add_kind(static_cast<fb::WindowKind>(a.kind));
    b.add_scope(static_cast<fb::Scope>(a.scope));
    b.add_key(key);
    b.add_group_tag(group_tag);
    b.add_metric(metric);
    b.add_window_start_ms(a.window_start.ms);
    b.add_window_end_ms(a.window_end.ms);
    b.add_closed_at_ms(a.closed_at_ms);
    b.add_count(a.count);
    b.add_sum(a.sum);
    b.add_min(a.min);
    b.add_max(a.max);
    b.add_mean(a.mean);
    b.add_stddev(a.stddev);
    b.add_first_time_ms(a.first_time.ms);
    b.add_first(a.first);
    b.add_last_time_ms(a.last_time.ms);
    b.add_last(a.last);
    b.add_rate(a.rate);
    b.add_has_quantiles(a.has_quantiles);
    b.add_p50(a.p50);
    b.add_p90(a.p90);
    b.add_p99(a.p99);
    aggs.push_back(b.Finish());
  }
  const auto gateway = fbb.CreateString(batch.gateway_id);
  const auto v_aggs = fbb.CreateVector(aggs);
  fb::BatchBuilder root(fbb);
  root.add_format_version(kBatchFormatVersion);
  root.add_gateway_id(gateway);
  root.add_first_seq(batch.first.value);
  root.add_last_seq(batch.last.value);
  root.add_record_type(fb::RecordType::aggregate);
  root.add_aggregates(v_aggs);
  fb::FinishBatchBuffer(fbb, root.Finish());
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

std::unexpected<std::error_code> malformed() { return std::unexpected(make_error_code(errc::malformed)); }

// Whether every text of a decoded batch is UTF-8, as FlatBuffers strings must be (the verifier does
// not check, and uplink-cat's and firmware-sim verify's JSON writers throw on anything else).
bool texts_utf8(const Batch& batch) {
  using ingest::valid_utf8;
  if (!valid_utf8(batch.gateway_id)) return false;
  for (const BatchRecord& r : batch.records) {
    if (!valid_utf8(r.event.device.value)) return false;
    for (const auto& m : r.event.metrics) {
      if (!valid_utf8(m.name)) return false;
    }
    for (const auto& t : r.event.tags) {
      if (!valid_utf8(t.key) || !valid_utf8(t.value)) return false;
    }
  }
  for (const AggregateRecord& a : batch.aggregates) {
    const windowing::Aggregate& g = a.aggregate;
    if (!valid_utf8(g.key) || !valid_utf8(g.group_tag) || !valid_utf8(g.metric)) return false;
  }
  return true;
}

// Whether every record's metric names, and its tag keys, are distinct: a record is a map of each
// (ingest refuses a repeated name), so a batch that repeats one is malformed, not a record with two
// values for one name (readers in other languages hold metrics and tags in maps).
bool names_distinct(const Batch& batch) {
  for (const BatchRecord& r : batch.records) {
    const auto& m = r.event.metrics;
    for (std::size_t i = 1; i < m.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (m[i].name == m[j].name) return false;
      }
    }
    const auto& t = r.event.tags;
    for (std::size_t i = 1; i < t.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (t[i].key == t[j].key) return false;
      }
    }
  }
  return true;
}

std::expected<void, std::error_code> decode_aggregates(const fb::Batch& b, Batch& batch) {
  if (b.aggregates() == nullptr) return {};
  batch.aggregates.reserve(b.aggregates()->size());
  for (const fb::Aggregate* a : *b.aggregates()) {
    const buffer::Seq seq{a->seq()};
    const bool in_order = batch.aggregates.empty() ? seq >= batch.first : seq > batch.aggregates.back().seq;
    if (!in_order || seq > batch.last) return malformed();
    const auto kind = static_cast<std::uint8_t>(a->kind());
    const auto scope = static_cast<std::uint8_t>(a->scope());
    if (kind < 1 || kind > 3 || scope < 1 || scope > 2) return malformed();
    windowing::Aggregate out;
    out.id = a->id();
    out.kind = static_cast<windowing::WindowKind>(kind);
    out.scope = static_cast<windowing::Scope>(scope);
    out.key = a->key()->str();
    out.group_tag = a->group_tag() != nullptr ? a->group_tag()->str() : std::string();
    out.metric = a->metric()->str();
    out.window_start = ingest::EventTime{a->window_start_ms()};
    out.window_end = ingest::EventTime{a->window_end_ms()};
    out.closed_at_ms = a->closed_at_ms();
    out.count = a->count();
    out.sum = a->sum();
    out.min = a->min();
    out.max = a->max();
    out.mean = a->mean();
    out.stddev = a->stddev();
    out.first_time = ingest::EventTime{a->first_time_ms()};
    out.first = a->first();
    out.last_time = ingest::EventTime{a->last_time_ms()};
    out.last = a->last();
    out.rate = a->rate();
    out.has_quantiles = a->has_quantiles();
    out.p50 = a->p50();
    out.p90 = a->p90();
    out.p99 = a->p99();
    batch.aggregates.push_back({seq, std::move(out)});
  }
  return {};
}

std::expected<void, std::error_code> decode_rows(const fb::Batch& b, Batch& batch) {
  if (b.records() == nullptr) return {};
  batch.records.reserve(b.records()->size());
  for (const fb::Record* r : *b.records()) {
    const buffer::Seq seq{r->seq()};
    const bool in_order = batch.records.empty() ? seq >= batch.first : seq > batch.records.back().seq;
    if (!in_order || seq > batch.last) return malformed();
    ingest::Event event{ingest::DeviceId{r->device_id()->str()}, ingest::DeviceSeq{r->device_seq()},
                        ingest::EventTime{r->time_ms()}, {}, {}, 0};
    if (r->metrics() != nullptr) {
      event.metrics.reserve(r->metrics()->size());
      for (const fb::Metric* m : *r->metrics()) event.metrics.push_back({m->name()->str(), m->value()});
    }
    batch.records.push_back({seq, std::move(event)});
  }
  return {};
}

template <class T>
std::size_t size_of(const flatbuffers::Vector<T>* v) {
  return v == nullptr ? 0 : v->size();
}

// Whether a verified vector's elements are aligned for their type. The FlatBuffers verifier checks
// only the alignment of a vector's 4-byte length, so a forged buffer can put a vector of 8-byte
// scalars at 4 mod 8, and reading it is a misaligned load (undefined; on 32-bit ARM a fault for
// some instructions). FlatBuffers writers align every vector to its element size, and the buffer
// itself comes from operator new, so a misaligned vector is a malformed batch. Except an empty one:
// FlatBufferBuilder does not align an empty vector (nothing is read from it either).
template <class T>
bool aligned(const flatbuffers::Vector<T>* v) {
  return v == nullptr || v->size() == 0 || reinterpret_cast<std::uintptr_t>(v->Data()) % alignof(T) == 0;
}

std::expected<void, std::error_code> decode_columnar(const fb::Batch& b, Batch& batch) {
  const std::size_t runs = size_of(b.devices());
  if (size_of(b.run_lengths()) != runs) return malformed();
  if (!aligned(b.seq_deltas()) || !aligned(b.device_seq_deltas()) || !aligned(b.time_deltas())) return malformed();
  std::uint64_t n = 0;
  for (std::size_t r = 0; r < runs; ++r) n += b.run_lengths()->Get(static_cast<flatbuffers::uoffset_t>(r));
  if (size_of(b.seq_deltas()) != n || size_of(b.device_seq_deltas()) != n || size_of(b.time_deltas()) != n ||
      size_of(b.shape_ids()) != n) {
    return malformed();
  }
  const auto* tag_ids = b.tag_set_ids();
  const auto* boot_ids = b.boot_ids();
  if ((tag_ids != nullptr && tag_ids->size() != n) || (boot_ids != nullptr && boot_ids->size() != n)) {
    return malformed();
  }
  const std::size_t names = size_of(b.metric_names());
  const std::size_t shapes = size_of(b.shapes());
  for (std::size_t s = 0; s < shapes; ++s) {
    const auto* m = b.shapes()->Get(static_cast<flatbuffers::uoffset_t>(s))->metrics();
    for (std::size_t k = 0; k < size_of(m); ++k) {
      if (m->Get(static_cast<flatbuffers::uoffset_t>(k)) >= names) return malformed();
    }
  }
  // Column per metric name; each column is read front to back.
  std::vector<const fb::Column*> column_of(names, nullptr);
  for (std::size_t c = 0; c < size_of(b.columns()); ++c) {
    const fb::Column* col = b.columns()->Get(static_cast<flatbuffers::uoffset_t>(c));
    if (col->metric() >= names || column_of[col->metric()] != nullptr) return malformed();
    if (!aligned(col->bits()) || !aligned(col->deltas())) return malformed();
    if (col->encoding() == fb::Encoding::decimal_delta ? col->scale() >= kPow10.size()
                                                       : col->encoding() != fb::Encoding::xor_bits) {
      return malformed();
    }
    column_of[col->metric()] = col;
  }
  std::vector<std::size_t> next(names, 0);        // next value index per column
  std::vector<std::uint64_t> prev_bits(names, 0);  // previous value in the run, per column
  std::vector<std::int64_t> prev_int(names, 0);
  std::vector<std::uint32_t> last_run(names, UINT32_MAX);

  batch.records.reserve(static_cast<std::size_t>(n));
  std::size_t i = 0;
  for (std::uint32_t r = 0; r < runs; ++r) {
    const std::string device = b.devices()->Get(r)->str();
    std::uint64_t seq = 0, dseq = 0, time = 0, delta = 0;
    const std::uint32_t len = b.run_lengths()->Get(r);
    for (std::uint32_t k = 0; k < len; ++k, ++i) {
      const auto at = static_cast<flatbuffers::uoffset_t>(i);
      const std::uint64_t sd = b.seq_deltas()->Get(at);
      if (k > 0 && sd == 0) return malformed();  // seqs increase within a run
      seq = k == 0 ? batch.first.value + sd : seq + sd;
      if (seq < batch.first.value || seq > batch.last.value || (k > 0 && seq < sd)) return malformed();
      const auto dd = static_cast<std::uint64_t>(b.device_seq_deltas()->Get(at));
      dseq = k == 0 ? dd : dseq + dd;
      const auto td = static_cast<std::uint64_t>(b.time_deltas()->Get(at));
      if (k == 0) {
        time = td;
      } else {
        delta = k == 1 ? td : delta + td;
        time += delta;
      }
      const std::uint32_t shape_id = b.shape_ids()->Get(at);
      if (shape_id >= shapes) return malformed();
      ingest::Event event{ingest::DeviceId{device}, ingest::DeviceSeq{dseq},
                          ingest::EventTime{static_cast<std::int64_t>(time)}, {}, {}, 0};
      if (tag_ids != nullptr) {
        const std::uint32_t t = tag_ids->Get(at);
        if (t >= size_of(b.tag_sets())) return malformed();
        const auto* tags = b.tag_sets()->Get(t)->tags();
        for (std::size_t g = 0; g < size_of(tags); ++g) {
          const fb::Tag* tag = tags->Get(static_cast<flatbuffers::uoffset_t>(g));
          event.tags.push_back({tag->key()->str(), tag->value()->str()});
        }
      }
      if (boot_ids != nullptr) event.boot_id = boot_ids->Get(at);
      const auto* metrics = b.shapes()->Get(shape_id)->metrics();
      event.metrics.reserve(size_of(metrics));
      for (std::size_t m = 0; m < size_of(metrics); ++m) {
        const std::uint32_t name = metrics->Get(static_cast<flatbuffers::uoffset_t>(m));
        const fb::Column* col = column_of[name];
        if (col == nullptr) return malformed();
        const bool first = last_run[name] != r;
        last_run[name] = r;
        const auto idx = static_cast<flatbuffers::uoffset_t>(next[name]++);
        double value = 0;
        if (col->encoding() == fb::Encoding::xor_bits) {
          if (idx >= size_of(col->bits())) return malformed();
          const std::uint64_t bits = first ? col->bits()->Get(idx) : col->bits()->Get(idx) ^ prev_bits[name];
          prev_bits[name] = bits;
          value = std::bit_cast<double>(bits);
        } else {
          if (idx >= size_of(col->deltas())) return malformed();
          const std::int64_t d = col->deltas()->Get(idx);
          // Wrapping add: hostile input must not be undefined behaviour.
          const auto v = static_cast<std::int64_t>(first ? static_cast<std::uint64_t>(d)
                                                         : static_cast<std::uint64_t>(prev_int[name]) +
                                                               static_cast<std::uint64_t>(d));
          prev_int[name] = v;
          value = static_cast<double>(v) / kPow10[col->scale()];
        }
        event.metrics.push_back({b.metric_names()->Get(name)->str(), value});
      }
      batch.records.push_back({buffer::Seq{seq}, std::move(event)});
    }
  }
  for (std::size_t c = 0; c < names; ++c) {
    if (column_of[c] != nullptr &&
        next[c] != size_of(column_of[c]->bits()) + size_of(column_of[c]->deltas())) {
      return malformed();  // values left over
    }
  }
  std::stable_sort(batch.records.begin(), batch.records.end(),
                   [](const BatchRecord& x, const BatchRecord& y) { return x.seq < y.seq; });
  for (std::size_t k = 1; k < batch.records.size(); ++k) {
    if (batch.records[k].seq == batch.records[k - 1].seq) return malformed();
  }
  return {};
}

}  // namespace

std::string_view record_type_name(buffer::RecordType type) noexcept {
  return type == buffer::RecordType::aggregate ? kRecordTypeAggregate : kRecordTypeTelemetry;
}

std::vector<std::uint8_t> encode_batch_flatbuffer(const Batch& batch, BatchLayout layout) {
  if (batch.record_type == buffer::RecordType::aggregate) return encode_aggregates(batch);
  return layout == BatchLayout::rows ? encode_rows(batch) : encode_columnar(batch);
}

std::vector<std::uint8_t> encode_batch(const Batch& batch, int zstd_level, BatchLayout layout) {
  return compress_frame(encode_batch_flatbuffer(batch, layout), zstd_level);
}

std::vector<std::uint8_t> compress_frame(std::span<const std::uint8_t> raw, int zstd_level) {
  const int level = std::clamp(zstd_level, ZSTD_minCLevel(), ZSTD_maxCLevel());
  std::vector<std::uint8_t> out(ZSTD_compressBound(raw.size()));
  // One context per thread, kept: ZSTD_compress would allocate and initialise a fresh one for every
  // batch (its malloc and table memset were about a third of the compression's CPU at 10,000 msg/s).
  // ZSTD_compressCCtx writes one frame with its content size in the header, as ZSTD_compress does.
  struct CCtxDeleter {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
  };
  thread_local const std::unique_ptr<ZSTD_CCtx, CCtxDeleter> cctx(ZSTD_createCCtx());
  if (!cctx) throw std::bad_alloc();
  const std::size_t n = ZSTD_compressCCtx(cctx.get(), out.data(), out.size(), raw.data(), raw.size(), level);
  if (ZSTD_isError(n) != 0U) {
    // Cannot happen with a bound-sized output buffer: a broken invariant.
    std::fprintf(stderr, "uplink: ZSTD_compress failed: %s\n", ZSTD_getErrorName(n));
    std::abort();
  }
  out.resize(n);
  return out;
}

std::expected<void, std::error_code> check_batch_headers(const Batch& batch, std::uint16_t format_version,
                                                         std::span<const std::pair<std::string, std::string>> headers) {
  const std::pair<std::string_view, std::string> expected[] = {
      {kHeaderGatewayId, batch.gateway_id},
      {kHeaderFirstSeq, std::to_string(batch.first.value)},
      {kHeaderLastSeq, std::to_string(batch.last.value)},
      {kHeaderSchemaVersion, std::to_string(format_version)},
      {kHeaderRecordType, std::string(record_type_name(batch.record_type))}};
  for (const auto& [name, value] : headers) {
    if (name == kHeaderCodec && value != kCodecZstd) return std::unexpected(make_error_code(errc::unsupported_codec));
    if (name == kHeaderDictId && value != kNoDictionary) {
      return std::unexpected(make_error_code(errc::unsupported_codec));
    }
    for (const auto& [want_name, want] : expected) {
      if (name == want_name && value != want) return std::unexpected(make_error_code(errc::header_mismatch));
    }
  }
  return {};
}

std::expected<Batch, std::error_code> decode_batch(std::span<const std::uint8_t> value, std::uint16_t* format_version) {
  // Exactly one frame, no trailing bytes, with a declared content size within bounds.
  if (ZSTD_findFrameCompressedSize(value.data(), value.size()) != value.size()) {
    return std::unexpected(make_error_code(errc::bad_compression));
  }
  const unsigned long long size = ZSTD_getFrameContentSize(value.data(), value.size());
  if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR) {
    return std::unexpected(make_error_code(errc::bad_compression));
  }
  if (size > kMaxBatchBytes) return std::unexpected(make_error_code(errc::too_large));
  std::vector<std::uint8_t> raw(static_cast<std::size_t>(size));
  const std::size_t n = ZSTD_decompress(raw.data(), raw.size(), value.data(), value.size());
  if (ZSTD_isError(n) != 0U || n != raw.size())
    return std::unexpected(make_error_code(errc::bad_compression));

  // VerifyBatchBuffer also checks the "GWB1" identifier, within bounds.
  flatbuffers::Verifier verifier(raw.data(), raw.size());
  if (raw.size() < 8 || !fb::VerifyBatchBuffer(verifier)) return malformed();
  const fb::Batch* b = fb::GetBatch(raw.data());
  if (b->format_version() > kBatchFormatVersion || b->format_version() < kRowBatchFormatVersion)
    return std::unexpected(make_error_code(errc::unsupported_version));
  Batch batch{b->gateway_id()->str(), buffer::Seq{b->first_seq()}, buffer::Seq{b->last_seq()}, {}};
  if (batch.first > batch.last) return malformed();
  if (b->record_type() == fb::RecordType::aggregate) {
    batch.record_type = buffer::RecordType::aggregate;
    auto r = decode_aggregates(*b, batch);
    if (!r) return std::unexpected(r.error());
  } else if (b->record_type() == fb::RecordType::telemetry) {
    auto r = b->format_version() == kRowBatchFormatVersion ? decode_rows(*b, batch) : decode_columnar(*b, batch);
    if (!r) return std::unexpected(r.error());
  } else {
    return std::unexpected(make_error_code(errc::unsupported_version));  // a record type from the future
  }
  if (!texts_utf8(batch) || !names_distinct(batch)) return malformed();
  if (format_version != nullptr) *format_version = b->format_version();
  return batch;
}

}  // namespace gw::uplink
