// The batch codec: FlatBuffers (uplink/batch.fbs) inside one zstd frame. Pure functions; thread-safe.
#include "uplink/batch.h"

#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "uplink/batch_generated.h"

namespace gw::uplink {

std::vector<std::uint8_t> encode_batch_flatbuffer(const Batch& batch) {
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
  auto root = fb::CreateBatch(fbb, kBatchFormatVersion, fbb.CreateString(batch.gateway_id), batch.first.value,
                              batch.last.value, fbb.CreateVector(records));
  fb::FinishBatchBuffer(fbb, root);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

std::vector<std::uint8_t> encode_batch(const Batch& batch, int zstd_level) {
  return compress_frame(encode_batch_flatbuffer(batch), zstd_level);
}

std::vector<std::uint8_t> compress_frame(std::span<const std::uint8_t> raw, int zstd_level) {
  const int level = std::clamp(zstd_level, ZSTD_minCLevel(), ZSTD_maxCLevel());
  std::vector<std::uint8_t> out(ZSTD_compressBound(raw.size()));
  // ZSTD_compress writes one frame with its content size in the header.
  const std::size_t n = ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), level);
  if (ZSTD_isError(n) != 0U) {
    // Cannot happen with a bound-sized output buffer: a broken invariant.
    std::fprintf(stderr, "uplink: ZSTD_compress failed: %s\n", ZSTD_getErrorName(n));
    std::abort();
  }
  out.resize(n);
  return out;
}

std::expected<Batch, std::error_code> decode_batch(std::span<const std::uint8_t> value) {
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
  if (raw.size() < 8 || !fb::VerifyBatchBuffer(verifier)) {
    return std::unexpected(make_error_code(errc::malformed));
  }
  const fb::Batch* b = fb::GetBatch(raw.data());
  if (b->format_version() > kBatchFormatVersion)
    return std::unexpected(make_error_code(errc::unsupported_version));
  Batch batch{b->gateway_id()->str(), buffer::Seq{b->first_seq()}, buffer::Seq{b->last_seq()}, {}};
  if (batch.first > batch.last) return std::unexpected(make_error_code(errc::malformed));
  if (b->records() != nullptr) {
    batch.records.reserve(b->records()->size());
    for (const fb::Record* r : *b->records()) {
      const buffer::Seq seq{r->seq()};
      const bool in_order = batch.records.empty() ? seq >= batch.first : seq > batch.records.back().seq;
      if (!in_order || seq > batch.last) return std::unexpected(make_error_code(errc::malformed));
      ingest::Event event{ingest::DeviceId{r->device_id()->str()},
                          ingest::DeviceSeq{r->device_seq()},
                          ingest::EventTime{r->time_ms()},
                          {}};
      if (r->metrics() != nullptr) {
        event.metrics.reserve(r->metrics()->size());
        for (const fb::Metric* m : *r->metrics()) event.metrics.push_back({m->name()->str(), m->value()});
      }
      batch.records.push_back({seq, std::move(event)});
    }
  }
  return batch;
}

}  // namespace gw::uplink
