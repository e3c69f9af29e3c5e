// The upstream batch: what one Kafka message carries (uplink/FORMAT.md has the bytes and headers).
// A batch is a FlatBuffer (uplink/batch.fbs) compressed as one zstd frame.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "buffer/ring.h"
#include "ingest/event.h"
#include "uplink/error.h"
#include "windowing/aggregates.h"

namespace gw::uplink {

// The Batch.format_version written by this build (2: columnar); decode_batch reads 1 and 2 and
// refuses newer ones.
inline constexpr std::uint16_t kBatchFormatVersion = 2;
inline constexpr std::uint16_t kRowBatchFormatVersion = 1;
// decode_batch refuses a frame that declares more decompressed bytes than this.
inline constexpr std::size_t kMaxBatchBytes = 64u << 20;

// Kafka message header names; every value is ASCII text (numbers in decimal).
inline constexpr std::string_view kHeaderGatewayId = "gw-gateway-id";
inline constexpr std::string_view kHeaderFirstSeq = "gw-first-seq";
inline constexpr std::string_view kHeaderLastSeq = "gw-last-seq";
inline constexpr std::string_view kHeaderSchemaVersion = "gw-schema-version";  // kBatchFormatVersion
inline constexpr std::string_view kHeaderCodec = "gw-codec";
inline constexpr std::string_view kHeaderDictId = "gw-dict-id";
// What the batch carries: kRecordTypeTelemetry or kRecordTypeAggregate. Absent (batches written
// before it existed): telemetry.
inline constexpr std::string_view kHeaderRecordType = "gw-record-type";
inline constexpr std::string_view kRecordTypeTelemetry = "telemetry";
inline constexpr std::string_view kRecordTypeAggregate = "aggregate";
inline constexpr std::string_view kCodecZstd = "zstd";
inline constexpr std::string_view kNoDictionary = "0";  // no zstd dictionary (see FORMAT.md)

// The layout inside the zstd frame. Both decode; the gateway writes `columnar`.
enum class BatchLayout {
  rows,      // format_version 1: one table per record
  columnar,  // format_version 2: device dictionary, runs, delta/delta-of-delta, metric columns
};

struct BatchRecord {
  buffer::Seq seq;
  ingest::Event event;
  bool operator==(const BatchRecord&) const = default;
};

// A closed window of the windowing stage, stored in the buffer as a RecordType::aggregate record.
struct AggregateRecord {
  buffer::Seq seq;
  windowing::Aggregate aggregate;
  bool operator==(const AggregateRecord&) const = default;
};

// The header value of a record type ("telemetry", "aggregate").
std::string_view record_type_name(buffer::RecordType type) noexcept;

// A batch covers the gateway sequence numbers first..last and carries one record type: telemetry
// in `records`, or aggregates in `aggregates` (the other vector is empty). Entries are in
// increasing seq order, each within first..last; seqs in the range without an entry (another
// record type, or undecodable in the buffer) were skipped on purpose.
struct Batch {
  std::string gateway_id;
  buffer::Seq first, last;
  std::vector<BatchRecord> records;
  buffer::RecordType record_type = buffer::RecordType::telemetry;
  std::vector<AggregateRecord> aggregates{};
  bool operator==(const Batch&) const = default;
};

// The Kafka message value: a Batch FlatBuffer in one zstd frame (content size set) at zstd_level
// (clamped to zstd's range). Does not check the batch; decode_batch does. An aggregate batch is
// written as format 2 with one table per aggregate, whatever `layout` says.
// Values are restored bit for bit (any double, also NaN and -0.0).
std::vector<std::uint8_t> encode_batch(const Batch& batch, int zstd_level,
                                       BatchLayout layout = BatchLayout::columnar);

// The two steps of encode_batch, for callers that account for both sizes: the FlatBuffer alone,
// and one zstd frame (content size set) of any bytes.
std::vector<std::uint8_t> encode_batch_flatbuffer(const Batch& batch, BatchLayout layout = BatchLayout::columnar);
std::vector<std::uint8_t> compress_frame(std::span<const std::uint8_t> bytes, int zstd_level);

// Decompresses and verifies a message value. Never trusts the input: any byte string is safe.
// Reads format versions 1 and 2; the records (or aggregates) come back in increasing seq order.
// A record type it does not know is errc::unsupported_version.
// Errors: bad_compression, too_large, malformed, unsupported_version.
// format_version, when given, receives the batch's Batch.format_version (for check_batch_headers).
[[nodiscard]] std::expected<Batch, std::error_code> decode_batch(std::span<const std::uint8_t> value,
                                                                std::uint16_t* format_version = nullptr);

// Checks a message's headers (Kafka) or properties (Pulsar) against the batch decoded from its
// value, as a consumer should: gw-codec must be zstd and gw-dict-id 0 (errc::unsupported_codec);
// gw-gateway-id, gw-first-seq, gw-last-seq, gw-schema-version and gw-record-type, where present,
// must equal the batch's (errc::header_mismatch). Absent headers are not an error (gw-record-type
// is absent in batches written before it existed). format_version: the batch's (decode_batch
// gives it).
[[nodiscard]] std::expected<void, std::error_code> check_batch_headers(
    const Batch& batch, std::uint16_t format_version,
    std::span<const std::pair<std::string, std::string>> headers);

}  // namespace gw::uplink
