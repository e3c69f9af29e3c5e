// The crash-safe LMDB ring buffer: every event the gateway acknowledges lives here until every
// consumer (windowing, each uplink sink) has acknowledged it.
//
// Contract (see buffer/FORMAT.md for the bytes on disk):
// - append() stores a batch of records in one LMDB write transaction and returns their gateway-wide
//   sequence numbers. When append() returns success the records are durable at the configured
//   Durability. Sequence numbers are monotonic, never reused, also across trims and restarts.
// - A consumer reads through a named cursor: register_cursor() once, read(after, ...) any range,
//   ack(cursor, upto) when it is done with everything up to and including `upto`.
// - trim() deletes what every registered cursor has acknowledged. Nothing else deletes records.
//
// Thread-safety: every member function may be called from any thread. Writers (append, ack, trim,
// register_cursor) are serialised by the ring; readers use LMDB read transactions and never block
// writers.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <expected>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace gw::buffer {

// A gateway-wide sequence number. 0 means "none": the first stored record gets 1.
struct Seq {
  std::uint64_t value = 0;
  auto operator<=>(const Seq&) const = default;
  Seq next() const { return Seq{value + 1}; }
};

// What a stored record holds. Stored values never change meaning (buffer/FORMAT.md).
enum class RecordType : std::uint8_t {
  telemetry = 1,  // payload: an ingest Telemetry FlatBuffer (ingest/telemetry.fbs)
  aggregate = 2,  // payload: reserved for windowing results forwarded upstream
};

enum class errc {
  io_error = 1,      // LMDB or the filesystem failed; the message is logged
  map_full,          // the store reached max_bytes
  no_space,          // the filesystem is full (ENOSPC)
  unknown_cursor,    // a cursor name that was never registered
  corrupt,           // a stored value has an unknown format version
  invalid_argument,  // e.g. ack beyond the last appended sequence
};
const std::error_category& buffer_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

enum class Durability {
  fsync,  // every commit is synced: an appended record survives power loss
  os,     // commits reach the page cache: survives a process crash; a background sync every
          // Options::sync_interval bounds what a power loss can take
};

struct Options {
  std::string path;                         // directory of the LMDB environment (created if missing)
  std::uint64_t max_bytes = 1ull << 30;     // cap on the store's size on disk (default 1 GiB)
  Durability durability = Durability::fsync;
  std::chrono::milliseconds sync_interval{1000};  // only for Durability::os
};

struct RecordIn {
  RecordType type = RecordType::telemetry;
  std::span<const std::uint8_t> payload;
};

struct StoredRecord {
  Seq seq;
  RecordType type = RecordType::telemetry;
  std::int64_t ingest_time_ms = 0;  // gateway clock when appended (Unix ms)
  std::vector<std::uint8_t> payload;
};

struct CursorStats {
  std::string name;
  Seq acked;             // everything <= acked is done for this consumer
  std::uint64_t lag = 0; // records stored after `acked`
};

struct Stats {
  std::uint64_t records = 0;         // records stored now
  std::uint64_t bytes = 0;           // bytes used by the LMDB environment (pages in use)
  Seq first;                         // oldest stored (0 when empty)
  Seq last;                          // newest ever appended (survives trims)
  std::int64_t oldest_age_ms = 0;    // now - ingest time of `first`; 0 when empty
  std::uint64_t appended_total = 0;  // records appended since open
  std::uint64_t trimmed_total = 0;   // records trimmed since open
  std::uint64_t commits_total = 0;   // write transactions committed since open
  std::vector<CursorStats> cursors;
};

class Ring {
 public:
  // Opens or creates the buffer at options.path. Costs the same whatever the number of records.
  [[nodiscard]] static std::expected<std::unique_ptr<Ring>, std::error_code> open(const Options& options);
  virtual ~Ring() = default;

  // Appends the records in one transaction; returns their sequence numbers in order. On error
  // nothing of the batch is stored.
  [[nodiscard]] virtual std::expected<std::vector<Seq>, std::error_code> append(std::span<const RecordIn> records) = 0;

  // Creates the cursor if it does not exist; a new cursor starts at the oldest stored record.
  [[nodiscard]] virtual std::expected<void, std::error_code> register_cursor(std::string_view name) = 0;
  // The cursor's acknowledged position.
  [[nodiscard]] virtual std::expected<Seq, std::error_code> acked(std::string_view name) const = 0;
  // Marks everything <= upto done for this cursor. Acks never move backwards (a lower value is ignored).
  [[nodiscard]] virtual std::expected<void, std::error_code> ack(std::string_view name, Seq upto) = 0;

  // Records with seq > after, in order, at most max_records and about max_bytes of payload (at least one).
  [[nodiscard]] virtual std::expected<std::vector<StoredRecord>, std::error_code> read(Seq after, std::size_t max_records,
                                                                                      std::size_t max_bytes) const = 0;
  // Blocks until a record with seq > after exists or the timeout passes; true if one exists.
  virtual bool wait_for(Seq after, std::chrono::milliseconds timeout) const = 0;

  // Deletes every record acknowledged by all cursors; returns how many were deleted.
  [[nodiscard]] virtual std::expected<std::uint64_t, std::error_code> trim() = 0;

  virtual Seq last_seq() const = 0;
  virtual Stats stats() const = 0;
};

}  // namespace gw::buffer

template <>
struct std::is_error_code_enum<gw::buffer::errc> : std::true_type {};
