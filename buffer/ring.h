// The crash-safe LMDB ring buffer: every event the gateway acknowledges lives here until every
// consumer (windowing, each uplink sink) has acknowledged it.
//
// Contract (see buffer/FORMAT.md for the bytes on disk):
// - append() stores a batch of records in one LMDB write transaction and returns their gateway-wide
//   sequence numbers. When append() returns success the records are durable at the configured
//   Durability. Sequence numbers are monotonic, never reused, also across trims and restarts.
// - A consumer reads through a named cursor: register_cursor() once, read(after, ...) any range,
//   ack(cursor, upto) when it is done with everything up to and including `upto`.
// - trim() deletes what every registered cursor has acknowledged. The only other way a record
//   leaves is Overflow::drop_oldest, which counts every record it evicts (Stats), and quarantine of
//   a stored value that does not decode (counted too).
// - Concurrent append() calls share one write transaction and one sync (group commit).
// - The store is bounded by Options::max_bytes. When it is full, Options::overflow decides: block
//   (append waits for trim() to make room) or drop_oldest (the oldest records are evicted in the
//   same transaction).
//
// Thread-safety: every member function may be called from any thread. Writers (append, ack, trim,
// register_cursor) are serialised by the ring; readers use LMDB read transactions and never block
// writers (except for the moment the ring grows its map).
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "buffer/dedup.h"

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
  aggregate = 2,  // payload: a windowing result forwarded upstream (windowing/FORMAT.md)
};

enum class errc {
  io_error = 1,      // LMDB or the filesystem failed; the message is logged
  map_full,          // the store reached max_bytes
  no_space,          // the filesystem is full (ENOSPC)
  unknown_cursor,    // a cursor name that was never registered
  corrupt,           // a stored value has an unknown format version
  invalid_argument,  // e.g. ack beyond the last appended sequence
  closed,            // close() was called: the ring takes no more appends
  stopped,           // the caller's stop_token asked a waiting append() to give up
};
const std::error_category& buffer_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

enum class Durability {
  fsync,  // every commit is synced: an appended record survives power loss
  os,     // commits reach the page cache: survives a process crash; a background sync every
          // Options::sync_interval bounds what a power loss can take
};

// What append() does when the store is full (max_bytes reached). Values are config words; they are
// not stored on disk.
enum class Overflow {
  block,        // append() waits until trim() frees room (ingest stops acknowledging; the broker queues)
  drop_oldest,  // the oldest records are evicted to make room; counted per cursor in Stats
  summarize,    // like drop_oldest, but evicts only records Options::summarize_cursor (the windowing
                // stage) has acknowledged, so the summaries of what is evicted still go upstream;
                // aggregate records are never evicted. If nothing may be evicted, appends wait.
};

struct Options {
  std::string path;                         // directory of the LMDB environment (created if missing)
  std::uint64_t max_bytes = 1ull << 30;     // cap on the store's size on disk (default 1 GiB)
  Durability durability = Durability::fsync;
  std::chrono::milliseconds sync_interval{1000};  // only for Durability::os
  Overflow overflow = Overflow::block;
  // The LMDB map starts at this size (at most max_bytes) and doubles as needed up to max_bytes. A
  // small start keeps the address space small on 32-bit devices. Default 16 MiB.
  std::uint64_t initial_map_bytes = 16ull << 20;
  // Durability::fsync only: a leader about to commit waits up to this long for as many appenders
  // as joined its recent groups, so that they share one sync instead of alternating between two
  // half-full ones. A lone appender never waits. 0 turns it off.
  std::chrono::milliseconds group_commit_wait{1};
  // Overflow::summarize: the cursor whose acknowledgement makes a record evictable.
  std::string summarize_cursor = "windowing";
  // The most the consumers' side tables (ConsumerCommit::writes) will take, in bytes; 0: not
  // known. Except under drop_oldest, appends leave room for them to grow to it, so that a consumer
  // can always commit what it read, however full appends made the store (the windowing stage's
  // open windows grow as it reads the events of new devices). Keep it within side_tables_budget().
  std::uint64_t consumer_tables_bytes = 0;
  // Duplicate detection (RecordIn::dedup): the window of readings remembered per source and
  // generation, the sources' counter width and the reboot time bound (buffer/dedup.h). Each source
  // costs about 8 x window + 92 bytes in the store, plus up to 1 KiB of seen-ranges when its
  // records arrive with gaps.
  DedupOptions dedup{};
};

// Half of what a store of max_bytes leaves after the headroom kept for acks and trims (4 KiB
// pages): the most Options::consumer_tables_bytes should be, so that records keep the other half.
std::uint64_t side_tables_budget(std::uint64_t max_bytes);

// Why a store of max_bytes cannot be mapped by a process with pointers of pointer_bits bits, or
// nullopt. 64-bit: never. 32-bit: above 2 GiB (the LMDB map is one contiguous range of a 3 GiB
// address space, its size a 32-bit size_t), or, in a 32-bit process asking about itself, when no
// free range of max_bytes + 256 MiB exists now. Ring::open refuses such a store (invalid_argument,
// the reason logged); the map starts at initial_map_bytes and doubles, each step within max_bytes.
std::optional<std::string> map_size_problem(std::uint64_t max_bytes, unsigned pointer_bits = sizeof(void*) * 8);

// Identifies a record for duplicate detection: the source's own numbering (buffer/dedup.h).
struct DedupKey {
  std::string_view source;     // e.g. the device id; 1..255 bytes
  std::uint64_t epoch = 0;     // the source's boot id; 0 = it has none (a reboot is recognised by its counter)
  std::uint64_t seq = 0;       // the source's sequence number within the epoch (Options::dedup.seq_bits wide)
  std::int64_t time_ms = 0;    // the record's event time (a retransmission may carry another)
  std::uint32_t digest = 0;    // of the record's values, without its time; 0 or 1 = not known
  std::uint8_t seq_bits = 0;   // the source's counter width (8, 16, 32, 64); 0 = Options::dedup.seq_bits
  bool counter = true;         // false: seq is not a counter (the event time of a source without one):
                               // its jumps are not counted as gaps or wraps
};

// What append() returns in place of a sequence for a record it did not store (RecordIn::dedup).
// Gateway sequences never come near the two high values (2^64 records).
inline constexpr Seq kDroppedDuplicate{0};                   // the same reading was stored before
inline constexpr Seq kDroppedConflicting{~0ull};             // the same identity with other values
inline constexpr Seq kDroppedStale{~0ull - 1};               // too old to judge (dedup.h, row 10)
inline constexpr bool stored(Seq s) { return s.value != 0 && s.value < kDroppedStale.value; }

struct RecordIn {
  RecordType type = RecordType::telemetry;
  std::span<const std::uint8_t> payload;
  // When set, append() drops the record if the same (source, epoch, seq) was stored before, or it is
  // too old to judge (buffer/dedup.h); the check and the record commit in one transaction. A dropped
  // record gets one of the kDropped* values.
  std::optional<DedupKey> dedup{};
};

// Side tables: named key/value tables in the ring's LMDB environment, for consumers that commit
// their own state together with their cursor (exactly-once).
struct TableWrite {
  std::string_view table;                               // [a-z0-9_.]+, at most 16 distinct tables
  std::span<const std::uint8_t> key;                    // 1..511 bytes; tables sort keys bytewise
  std::optional<std::span<const std::uint8_t>> value{};  // nullopt deletes the key
};
struct ConsumerCommit {
  std::string_view cursor;              // a registered cursor
  Seq upto;                             // new ack position (lower or equal: the cursor stays)
  std::span<const TableWrite> writes{};  // applied in order
  std::span<const RecordIn> append{};    // records appended in the same transaction (no dedup)
};
struct TableEntry {
  std::vector<std::uint8_t> key, value;
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
  std::uint64_t evicted = 0;  // records drop_oldest evicted before this cursor acked them (ever; persistent)
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
  std::uint64_t append_commits_total = 0;  // of those, the appends' (group commits: appended_total / this
                                           // = records per commit, per sync with durability fsync)
  std::vector<CursorStats> cursors;
  std::uint64_t evicted_total = 0;      // records evicted by drop_oldest, ever (persistent)
  std::uint64_t quarantined_total = 0;  // stored values that failed to decode and were moved aside, ever
  std::uint64_t map_bytes = 0;          // current LMDB map size (grows up to max_bytes)
  std::uint64_t max_bytes = 0;          // the configured cap
  bool full = false;                    // the last append found the store at max_bytes
  std::uint64_t blocked_appends = 0;    // append() calls waiting now (full with block, or no disk space)
  std::uint64_t blocked_total = 0;      // episodes in which appends had to wait, since open
  bool no_space = false;                // the last commit failed with ENOSPC (appends wait and retry)
  std::uint64_t no_space_total = 0;     // ENOSPC failures since open
  std::uint64_t append_calls_total = 0; // append() calls that succeeded since open (vs commits_total: grouping)
  // Dedup (buffer/dedup.h), each ever (persistent):
  std::uint64_t duplicates_total = 0;   // records append() dropped as duplicates (same identity, same values)
  std::uint64_t duplicates_conflicting_total = 0;  // dropped: same identity, other values (kDroppedConflicting)
  std::uint64_t stale_sequence_total = 0;  // dropped: no boot id, too old to judge (kDroppedStale)
  std::uint64_t reboots_total = 0;      // new generations: a source rebooted (new boot id, or recognised)
  std::uint64_t seq_wraps_total = 0;    // a source's counter went through 2^B - 1 -> 0
  std::uint64_t seq_gaps_total = 0;     // numbers skipped ahead (lost before the gateway, or still to come)
  std::uint64_t seq_late_total = 0;     // records stored behind their source's highest seq (late, reordered)
  std::uint64_t seq_zero_ambiguous_total = 0;  // seq 0 within the window, unseen: taken as late, not a reboot
  std::uint64_t dedup_unknown_total = 0; // records behind their source's window, not known: stored unchecked
  std::uint64_t dedup_sources = 0;      // sources with a dedup window now
  std::uint64_t summarized_total = 0;   // records evicted by summarize (their windows were counted), ever
};

class Ring {
 public:
  // Opens or creates the buffer at options.path. Costs the same whatever the number of records.
  [[nodiscard]] static std::expected<std::unique_ptr<Ring>, std::error_code> open(const Options& options);
  virtual ~Ring() = default;

  // Appends the records in one transaction; returns their sequence numbers in order, once they are
  // committed at the configured durability; a record dropped as a duplicate (RecordIn::dedup) gets
  // Seq{0}. On error nothing of the batch is stored. Concurrent
  // calls are committed together (group commit). When the store is full with Overflow::block, or
  // the filesystem is full (ENOSPC, either policy), the call waits inside the ring and retries until
  // it succeeds or close() is called (errc::closed).
  [[nodiscard]] virtual std::expected<std::vector<Seq>, std::error_code> append(std::span<const RecordIn> records) = 0;
  // The same, and a wait for room also ends with errc::stopped when `stop` is requested (records not
  // stored). The default implementation ignores `stop` (for test doubles).
  [[nodiscard]] virtual std::expected<std::vector<Seq>, std::error_code> append(std::span<const RecordIn> records,
                                                                              std::stop_token stop) {
    (void)stop;
    return append(records);
  }
  // Releases every waiting append() (errc::closed) and refuses later ones. Reads, acks and trims
  // keep working. Idempotent. The destructor calls it.
  virtual void close() {}

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

  // One write transaction: the table writes, the appended records and the cursor's ack. Appends here
  // do not wait for room (they may exceed the block limit by their own size); errc::map_full only if
  // LMDB has no room at all. Returns the sequences of the appended records.
  [[nodiscard]] virtual std::expected<std::vector<Seq>, std::error_code> commit(const ConsumerCommit& c) = 0;
  // A side table's value for `key`, nullopt if absent (or the table was never written).
  [[nodiscard]] virtual std::expected<std::optional<std::vector<std::uint8_t>>, std::error_code> table_get(
      std::string_view table, std::span<const std::uint8_t> key) const = 0;
  // Entries with key >= from (bytewise), in key order, at most max.
  [[nodiscard]] virtual std::expected<std::vector<TableEntry>, std::error_code> table_scan(
      std::string_view table, std::span<const std::uint8_t> from, std::size_t max) const = 0;

  virtual Seq last_seq() const = 0;
  virtual Stats stats() const = 0;
};

}  // namespace gw::buffer

template <>
struct std::is_error_code_enum<gw::buffer::errc> : std::true_type {};
