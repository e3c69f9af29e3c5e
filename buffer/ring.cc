// The LMDB implementation of gw::buffer::Ring (buffer/ring.h); the bytes on disk are described in
// buffer/FORMAT.md. LMDB types stay in this file.
//
// Thread-safety: every public member may be called from any thread.
// - Appends are group-committed (the LevelDB writer-queue scheme): each append() queues a request
//   under queue_mutex_; the request at the front is the leader and writes every queued request it
//   can take in one LMDB write transaction, commits (one sync), then hands results to the others.
// - Every write transaction (a group, ack, trim, register_cursor, quarantine) runs under
//   write_mutex_. Growing the map (mdb_env_set_mapsize) needs no transaction open in the process:
//   it is done under write_mutex_ (no writer) and MapGate (no reader).
// - The environment is opened with MDB_NOTLS, so read transactions are not tied to a thread and
//   read(), acked() and stats() run concurrently with a writer. They hold MapGate shared.
// Lock order: queue_mutex_ is never held while taking write_mutex_ or the gate; write_mutex_ is
// taken before the gate.
#include "buffer/ring.h"

#include <lmdb.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <utility>

#include "buffer/dedup.h"

namespace gw::buffer {
namespace {

using Clock = std::chrono::steady_clock;

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "buffer"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::io_error:
        return "buffer I/O error";
      case errc::map_full:
        return "buffer is full (max_bytes reached)";
      case errc::no_space:
        return "no space left on the filesystem";
      case errc::unknown_cursor:
        return "unknown cursor";
      case errc::corrupt:
        return "stored value has an unknown format version";
      case errc::invalid_argument:
        return "invalid argument";
      case errc::closed:
        return "buffer is closed";
      case errc::stopped:
        return "append stopped while waiting for room";
    }
    return "unknown buffer error";
  }
};

// Stored format versions (buffer/FORMAT.md). Bump only with a reader for the old version.
constexpr std::uint8_t kRecordVersion = 1;
constexpr std::uint8_t kCursorVersion1 = 1;  // acked
constexpr std::uint8_t kCursorVersion2 = 2;  // acked, evicted (written since the overflow policies)
constexpr std::uint8_t kMetaVersion = 1;
constexpr std::size_t kRecordHeader = 1 + 1 + 8;  // version, type, ingest_time_ms
constexpr std::string_view kNextSeqKey = "next_seq";
constexpr std::string_view kEvictedKey = "evicted";
constexpr std::string_view kQuarantinedKey = "quarantined";
// The dedup counters (Stats), each persistent under its meta key.
enum DedupCounter : std::size_t {
  kDuplicates, kConflicting, kStale, kReboots, kWraps, kGaps, kLate, kZeroAmbiguous, kUnknown, kDedupCounters
};
constexpr std::array<std::string_view, kDedupCounters> kDedupCounterKeys{
    "duplicates", "duplicates_conflicting", "stale_sequence", "dedup_resets", "seq_wraps",
    "seq_gaps",   "seq_late",               "seq_zero_ambiguous", "dedup_unknown"};
constexpr std::string_view kSummarizedKey = "summarized";
// Side tables are LMDB databases named "t:" + the table name; at most this many.
constexpr std::size_t kMaxTables = 16;
constexpr std::size_t kMaxTableKey = 511;

// A map smaller than this leaves no useful room after the headroom below.
constexpr std::uint64_t kMinMapPages = 64;
// One group commit takes at most this much (so one transaction's dirty pages stay modest).
constexpr std::size_t kMaxGroupRecords = 16384;
constexpr std::size_t kMaxGroupBytes = 8u << 20;
// trim() deletes at most this many records per transaction (LMDB bounds a txn's dirty pages).
constexpr std::uint64_t kTrimChunk = 65536;
// How often a blocked append re-checks for room even without a trim, and the ENOSPC backoff.
constexpr auto kFullRecheck = std::chrono::milliseconds(500);
constexpr auto kNoSpaceBackoffMin = std::chrono::milliseconds(50);
constexpr auto kNoSpaceBackoffMax = std::chrono::milliseconds(5000);
constexpr auto kEvictLogInterval = std::chrono::seconds(10);
// How often the background thread hands the map's pages back to the page cache (release_map_pages).
// bench-box at 10,000 msg/s, subscribe os (gateway CPU per message; RSS at the end of a run): never
// 34.3 us, 26.3 MB; 1 s 34.2-35.5 us, 23.3-23.7 MB; 500 ms 34.0-36.2 us, 21.6-22.4 MB; 250 ms
// 35.5-38.2 us, 19.4-19.8 MB (the hot pages fault back in after each release).
constexpr auto kReleaseInterval = std::chrono::milliseconds(500);

// Pages kept free of records so that ack() and trim() can always commit once appends are refused:
// LMDB copies pages on write, so even a delete needs free pages, and a map filled to the last page
// could never be trimmed again. A trim of a full map records its freed page numbers in LMDB's free
// list (8 bytes per page, i.e. map_pages/512 pages), so map_pages/64 leaves a wide margin. The
// margin also absorbs the pages freed by the last two commits (LMDB reuses the pages freed by
// commit N from commit N+2 on) and the free list's own pages: a few pages per commit, measured at
// about 15 on a store kept full by drop_oldest, hence the floor of 32.
std::uint64_t headroom_pages(std::uint64_t map_pages) { return std::max<std::uint64_t>(32, map_pages / 64); }
}  // namespace

std::uint64_t side_tables_budget(std::uint64_t max_bytes) {
  const std::uint64_t headroom = headroom_pages(max_bytes / 4096) * 4096;
  return (max_bytes - std::min(max_bytes, headroom)) / 2;
}

namespace {
// drop_oldest evicts down to this many pages below the records budget (beyond the incoming group),
// for the same copy-on-write overhead of the evicting transaction itself.
constexpr std::uint64_t kEvictSlackPages = 8;

void put_u64_be(std::uint8_t* out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<std::uint8_t>(v & 0xff);
    v >>= 8;
  }
}
std::uint64_t get_u64_be(const std::uint8_t* in) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | in[i];
  return v;
}
void put_u64_le(std::uint8_t* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<std::uint8_t>(v & 0xff);
    v >>= 8;
  }
}
std::uint64_t get_u64_le(const std::uint8_t* in) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | in[i];
  return v;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

MDB_val as_val(const void* data, std::size_t size) { return MDB_val{size, const_cast<void*>(data)}; }

std::uint64_t key_seq(const MDB_val& key) { return get_u64_be(static_cast<const std::uint8_t*>(key.mv_data)); }

// Maps an LMDB (or errno) return code to the module's errors; logs the unexpected ones.
std::error_code lmdb_error(int rc, const char* what) {
  if (rc == MDB_MAP_FULL) return make_error_code(errc::map_full);
  if (rc == ENOSPC) return make_error_code(errc::no_space);
  spdlog::error("buffer: {} failed: {}", what, mdb_strerror(rc));
  return make_error_code(errc::io_error);
}

#if defined(__SANITIZE_THREAD__)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

// For ThreadSanitizer only (no code otherwise): LMDB orders its transactions through the meta
// pages and the reader table, with plain loads and stores in uninstrumented code, so TSan sees no
// order between a transaction that ended and one that began later: a page written by a committed
// write transaction and read by a later reader, or read by an ended reader and then reused by a
// later writer, looked like a race (found by the TSan build in ring_test's readers-while-growing
// case, with no LMDB frame to suppress). Every transaction begins and ends in TxnGuard, which
// states that order to TSan on the environment: an end happens before every later begin (and
// before every later page reservation, below).
void tsan_txn_begun([[maybe_unused]] MDB_txn* txn) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(mdb_txn_env(txn));
#endif
}
// A write transaction may be handed a freed page when it allocates one (MDB_RESERVE), not only
// at its begin: LMDB checks then that every reader that could see the page has ended.
void tsan_page_reserved([[maybe_unused]] MDB_txn* txn) { tsan_txn_begun(txn); }
void tsan_txn_ending([[maybe_unused]] MDB_txn* txn) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(mdb_txn_env(txn));
#endif
}

// Aborts a transaction unless it was committed or handed off. Every transaction of the ring is
// held by one from right after mdb_txn_begin.
class TxnGuard {
 public:
  explicit TxnGuard(MDB_txn* txn) : txn_(txn) { tsan_txn_begun(txn_); }
  TxnGuard(const TxnGuard&) = delete;
  TxnGuard& operator=(const TxnGuard&) = delete;
  ~TxnGuard() {
    if (txn_ != nullptr) {
      tsan_txn_ending(txn_);
      mdb_txn_abort(txn_);
    }
  }
  MDB_txn* get() const { return txn_; }
  int commit() {
    tsan_txn_ending(txn_);
    int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;  // LMDB frees the handle whether or not the commit succeeded
    return rc;
  }

 private:
  MDB_txn* txn_;
};

class CursorGuard {
 public:
  explicit CursorGuard(MDB_cursor* c) : c_(c) {}
  CursorGuard(const CursorGuard&) = delete;
  CursorGuard& operator=(const CursorGuard&) = delete;
  ~CursorGuard() {
    if (c_ != nullptr) mdb_cursor_close(c_);
  }
  MDB_cursor* get() const { return c_; }

 private:
  MDB_cursor* c_;
};

// Readers share the gate; growing the map takes it exclusively (and is preferred over new readers,
// so a steady stream of reads cannot starve it).
class MapGate {
 public:
  void enter() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !resizing_; });
    ++readers_;
  }
  void leave() {
    std::lock_guard lock(mu_);
    if (--readers_ == 0) cv_.notify_all();
  }
  template <typename F>
  void exclusive(F&& f) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !resizing_; });
    resizing_ = true;
    cv_.wait(lock, [&] { return readers_ == 0; });
    f();
    resizing_ = false;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t readers_ = 0;
  bool resizing_ = false;
};

class ReadGuard {
 public:
  explicit ReadGuard(MapGate& g) : g_(g) { g_.enter(); }
  ReadGuard(const ReadGuard&) = delete;
  ReadGuard& operator=(const ReadGuard&) = delete;
  ~ReadGuard() { g_.leave(); }

 private:
  MapGate& g_;
};

struct CursorValue {
  Seq acked;
  std::uint64_t evicted = 0;
};
struct EncodedCursor {
  std::uint8_t bytes[17];
};
EncodedCursor encode_cursor(const CursorValue& c) {
  EncodedCursor v{};
  v.bytes[0] = kCursorVersion2;
  put_u64_le(v.bytes + 1, c.acked.value);
  put_u64_le(v.bytes + 9, c.evicted);
  return v;
}
std::expected<CursorValue, std::error_code> decode_cursor(const MDB_val& v) {
  const auto* p = static_cast<const std::uint8_t*>(v.mv_data);
  if (v.mv_size >= 9 && p[0] == kCursorVersion1) return CursorValue{Seq{get_u64_le(p + 1)}, 0};
  if (v.mv_size >= 17 && p[0] == kCursorVersion2) return CursorValue{Seq{get_u64_le(p + 1)}, get_u64_le(p + 9)};
  return std::unexpected(make_error_code(errc::corrupt));
}

// Why a stored record value does not decode, or nullptr if it does.
const char* record_defect(const MDB_val& key, const MDB_val& val) {
  if (key.mv_size != 8) return "key is not 8 bytes";
  if (val.mv_size < kRecordHeader) return "value shorter than its header";
  if (static_cast<const std::uint8_t*>(val.mv_data)[0] != kRecordVersion) return "unknown format version";
  return nullptr;
}

// With MDB_WRITEMAP, LMDB writes pages straight into the shared mapping and sizes the file to the
// map with ftruncate: a sparse file, where a page written into a hole on a full filesystem raises
// SIGBUS instead of returning ENOSPC. So every byte of the map is reserved on disk first; a
// reservation that fails is the ENOSPC the write would have met. Returns 0 or an errno value.
int reserve_map(MDB_env* env, std::uint64_t bytes) {
  mdb_filehandle_t fd;
  if (int rc = mdb_env_get_fd(env, &fd); rc != 0) return rc;
  return ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
}

bool uses_writemap(MDB_env* env) {
  unsigned flags = 0;
  return mdb_env_get_flags(env, &flags) == 0 && (flags & MDB_WRITEMAP) != 0;
}

StoredRecord decode_record(const MDB_val& key, const MDB_val& val) {
  const auto* p = static_cast<const std::uint8_t*>(val.mv_data);
  StoredRecord r;
  r.seq = Seq{key_seq(key)};
  r.type = static_cast<RecordType>(p[1]);
  r.ingest_time_ms = static_cast<std::int64_t>(get_u64_le(p + 2));
  r.payload.assign(p + kRecordHeader, p + val.mv_size);
  return r;
}

// One append() call waiting in the group-commit queue. Guarded by queue_mutex_.
struct Request {
  std::span<const RecordIn> records;
  std::size_t bytes = 0;
  bool in_flight = false;  // part of a group being written: it must not leave the queue
  bool done = false;
  std::error_code error;
  std::vector<Seq> seqs;  // when done without error: one per record, kDropped* for a dropped one
};

// What one attempt at writing a group came to.
enum class Outcome {
  committed,
  grow,        // the map must grow (below max_bytes); retry
  evict_more,  // drop_oldest at max_bytes, but LMDB found no free page: evict in a separate txn; retry
  full,        // block: at max_bytes; wait for a trim
  no_page,     // block at max_bytes, and LMDB found no free page (pages freed by the last commit are
               // reusable only after one more commit): commit an empty transaction, retry once
  too_big,     // the group alone does not fit in max_bytes
  no_space,    // ENOSPC: wait and retry
  failed,      // another error (in `error`)
};

// What a deletion of the oldest records removed: trimmed = acked by every cursor; evicted = not.
struct Eviction {
  std::vector<std::uint64_t> seqs;  // deleted, ascending (summarize skips aggregate records: not contiguous)
  std::uint64_t trimmed = 0, evicted = 0;
};

// The dedup windows one group touched, written back before its commit, and what it decided.
struct DedupBatch {
  std::map<std::string, DedupWindow, std::less<>> windows;
  std::array<std::uint64_t, kDedupCounters> counts{};
};

class LmdbRing final : public Ring {
 public:
  LmdbRing(MDB_env* env, const Options& options, std::uint64_t page_size, std::uint64_t map_pages,
           std::uint64_t cap_pages)
      : env_(env),
        options_(options),
        page_size_(page_size),
        cap_pages_(cap_pages),
        writemap_(uses_writemap(env)),
        map_pages_(map_pages),
        tables_bound_pages_((options.consumer_tables_bytes + page_size - 1) / page_size) {}

  ~LmdbRing() override {
    close();
    {
      // Appends in flight finish their group (callers must have stopped using the ring, but a
      // leader that was released by close() may still be on its way out).
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait_for(lock, std::chrono::seconds(30), [&] { return queue_.empty(); });
    }
    if (background_thread_.joinable()) {
      {
        std::lock_guard lock(background_mutex_);
        stopping_ = true;
      }
      background_cv_.notify_all();
      background_thread_.join();
    }
    if (options_.durability == Durability::os) {
      if (int rc = mdb_env_sync(env_, 1); rc != 0)
        spdlog::error("buffer: final sync failed: {}", mdb_strerror(rc));
    }
    mdb_env_close(env_);
  }

  LmdbRing(const LmdbRing&) = delete;
  LmdbRing& operator=(const LmdbRing&) = delete;

  // Opens the named databases (and the side tables, at most kMaxTables) and loads the counters: a
  // bounded number of lookups, whatever the number of records.
  std::expected<void, std::error_code> init() {
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    for (auto [name, dbi] : {std::pair{"records", &records_}, std::pair{"cursors", &cursors_},
                             std::pair{"meta", &meta_}, std::pair{"quarantine", &quarantine_},
                             std::pair{"dedup", &dedup_}}) {
      if (int rc = mdb_dbi_open(txn.get(), name, MDB_CREATE, dbi); rc != 0) {
        return std::unexpected(lmdb_error(rc, "dbi_open"));
      }
    }
    auto next = get_meta(txn.get(), kNextSeqKey);
    if (!next) return std::unexpected(next.error());
    auto evicted = get_meta(txn.get(), kEvictedKey);
    if (!evicted) return std::unexpected(evicted.error());
    auto quarantined = get_meta(txn.get(), kQuarantinedKey);
    if (!quarantined) return std::unexpected(quarantined.error());
    for (std::size_t i = 0; i < kDedupCounters; ++i) {
      auto v = get_meta(txn.get(), kDedupCounterKeys[i]);
      if (!v) return std::unexpected(v.error());
      dedup_totals_[i].store(v->value_or(0));
    }
    {
      auto v = get_meta(txn.get(), kSummarizedKey);
      if (!v) return std::unexpected(v.error());
      summarized_total_.store(v->value_or(0));
    }
    std::uint64_t next_seq = std::max<std::uint64_t>(1, next->value_or(1));
    // Defensive: never hand out a sequence at or below a stored one, even if meta were missing.
    auto last_stored = edge_key(txn.get(), MDB_LAST);
    if (!last_stored) return std::unexpected(last_stored.error());
    if (*last_stored) next_seq = std::max(next_seq, **last_stored + 1);
    // The side tables (of the consumers that commit with commit(), e.g. the windowing stage) are
    // opened here, so that appends count their pages against the budget (other_pages_of) from the
    // start, and those consumers get their reserve from the start. A table left unopened until its
    // consumer touched it again after a restart did not count: appends filled the room its pages
    // take, and the consumer's first commit since the restart found no page, so nothing was
    // acknowledged and nothing trimmed (tests/buffer: "overflow block at the smallest max_bytes").
    std::vector<std::pair<std::string, MDB_dbi>> tables;
    {
      MDB_dbi main_dbi = 0;
      if (int rc = mdb_dbi_open(txn.get(), nullptr, 0, &main_dbi); rc != 0) {
        return std::unexpected(lmdb_error(rc, "dbi_open (main)"));
      }
      MDB_cursor* c_raw = nullptr;
      if (int rc = mdb_cursor_open(txn.get(), main_dbi, &c_raw); rc != 0) {
        return std::unexpected(lmdb_error(rc, "cursor_open (main)"));
      }
      CursorGuard cursor(c_raw);
      MDB_val key{2, const_cast<char*>("t:")}, val;
      for (int rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_SET_RANGE);
           rc == 0 && key.mv_size > 2 && std::memcmp(key.mv_data, "t:", 2) == 0 && tables.size() < kMaxTables;
           rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT)) {
        tables.emplace_back(std::string(static_cast<const char*>(key.mv_data) + 2, key.mv_size - 2), 0);
      }
    }
    for (auto& [name, dbi] : tables) {
      const std::string db_name = "t:" + name;
      if (int rc = mdb_dbi_open(txn.get(), db_name.c_str(), 0, &dbi); rc != 0) {
        return std::unexpected(lmdb_error(rc, "dbi_open (table)"));
      }
    }
    if (!tables.empty()) consumer_reserve_pages_ = initial_consumer_reserve();
    if (int rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit"));
    last_seq_.store(next_seq - 1);
    evicted_total_.store(evicted->value_or(0));
    quarantined_total_.store(quarantined->value_or(0));
    {
      std::lock_guard lock(tables_mutex_);  // handles are valid from the commit on
      for (auto& [name, dbi] : tables) tables_.emplace(std::move(name), dbi);
    }

    background_thread_ = std::thread([this] { background_loop(); });
    return {};
  }

  std::expected<std::vector<Seq>, std::error_code> append(std::span<const RecordIn> records) override {
    return append(records, std::stop_token{});
  }

  std::expected<std::vector<Seq>, std::error_code> append(std::span<const RecordIn> records,
                                                          std::stop_token stop) override {
    if (records.empty()) return std::vector<Seq>{};
    Request req;
    req.records = records;
    for (const RecordIn& r : records) req.bytes += kRecordHeader + r.payload.size() + 16;

    std::unique_lock lock(queue_mutex_);
    if (closed_) return std::unexpected(make_error_code(errc::closed));
    queue_.push_back(&req);
    if (gathering_) gather_cv_.notify_one();  // the leader is waiting for its group to fill
    // Followers wait until a leader wrote their request or they reach the front.
    for (;;) {
      if (req.done) return result_of(req);
      if (queue_.front() == &req) break;
      if (!req.in_flight && (closed_ || stop.stop_requested())) {
        leave_queue(req);
        return std::unexpected(make_error_code(closed_ ? errc::closed : errc::stopped));
      }
      auto ready = [&] { return req.done || queue_.front() == &req || (!req.in_flight && closed_); };
      if (req.in_flight) {
        queue_cv_.wait(lock, ready);
      } else {
        queue_cv_.wait(lock, stop, ready);
      }
    }
    return lead(req, lock, stop);
  }

  void close() override {
    {
      std::lock_guard lock(queue_mutex_);
      closed_ = true;
    }
    queue_cv_.notify_all();
    gather_cv_.notify_all();
  }

  std::expected<void, std::error_code> register_cursor(std::string_view name) override {
    if (name.empty()) return std::unexpected(make_error_code(errc::invalid_argument));
    std::lock_guard write_lock(write_mutex_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    MDB_val key = as_val(name.data(), name.size());
    MDB_val val;
    int rc = mdb_get(txn.get(), cursors_, &key, &val);
    if (rc == 0) return {};  // already registered: keep its position
    if (rc != MDB_NOTFOUND) return std::unexpected(lmdb_error(rc, "get cursor"));
    // A new cursor starts at the oldest stored record, or after the last appended when empty.
    auto first = edge_key(txn.get(), MDB_FIRST);
    if (!first) return std::unexpected(first.error());
    const Seq start = *first ? Seq{**first - 1} : Seq{last_seq_.load()};
    if (auto ok = put_cursor(txn.get(), name, CursorValue{start, 0}); !ok) return ok;
    if (rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit cursor"));
    commits_total_.fetch_add(1);
    return {};
  }

  std::expected<Seq, std::error_code> acked(std::string_view name) const override {
    ReadGuard gate(gate_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &raw); rc != 0) {
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    }
    TxnGuard txn(raw);
    auto c = get_cursor(txn.get(), name);
    if (!c) return std::unexpected(c.error());
    return c->acked;
  }

  std::expected<void, std::error_code> ack(std::string_view name, Seq upto) override {
    auto result = ack_locked(name, upto);
    if (result) trim_if_waiting();
    return result;
  }

  std::expected<void, std::error_code> ack_locked(std::string_view name, Seq upto) {
    if (upto.value > last_seq_.load()) return std::unexpected(make_error_code(errc::invalid_argument));
    std::lock_guard write_lock(write_mutex_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    auto current = get_cursor(txn.get(), name);
    if (!current) return std::unexpected(current.error());
    if (upto <= current->acked) return {};  // acks never move backwards
    if (auto ok = put_cursor(txn.get(), name, CursorValue{upto, current->evicted}); !ok) return ok;
    if (int rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit ack"));
    commits_total_.fetch_add(1);
    if (options_.overflow == Overflow::summarize && name == options_.summarize_cursor) room_made();
    return {};
  }

  std::expected<std::vector<Seq>, std::error_code> commit(const ConsumerCommit& c) override {
    auto result = commit_locked(c);
    if (result) trim_if_waiting();
    return result;
  }

  // When appends wait for room, an ack may be what frees it: trim now rather than wait for the
  // next consumer that happens to trim (the other consumers may have nothing left to do).
  void trim_if_waiting() {
    {
      std::lock_guard lock(queue_mutex_);
      if (!blocked_) return;
    }
    if (auto t = trim(); !t) spdlog::warn("buffer: trim after an ack failed: {}", t.error().message());
  }

  std::expected<std::vector<Seq>, std::error_code> commit_locked(const ConsumerCommit& c) {
    for (const TableWrite& w : c.writes) {
      if (!valid_table_name(w.table) || w.key.empty() || w.key.size() > kMaxTableKey) {
        return std::unexpected(make_error_code(errc::invalid_argument));
      }
    }
    // Appends keep room free for consumer commits: twice the largest recent one (estimated).
    std::uint64_t bytes = 0;
    for (const TableWrite& w : c.writes) bytes += w.key.size() + (w.value ? w.value->size() : 0) + 16;
    for (const RecordIn& in : c.append) bytes += kRecordHeader + in.payload.size() + 24;
    const std::uint64_t est_pages = (bytes * 3 / 2) / page_size_ + 4 * (1 + c.writes.size() / 64);
    std::lock_guard write_lock(write_mutex_);
    consumer_reserve_pages_ = std::max({consumer_reserve_pages_ - consumer_reserve_pages_ / 64, 2 * est_pages,
                                        initial_consumer_reserve()});
    for (int attempt = 0; attempt < 16; ++attempt) {
      std::vector<std::pair<std::string, MDB_dbi>> opened;
      std::vector<Seq> seqs;
      auto done = commit_once(c, opened, seqs);
      if (done) {
        {
          std::lock_guard lock(tables_mutex_);
          for (auto& [name, dbi] : opened) tables_.emplace(std::move(name), dbi);
        }
        commits_total_.fetch_add(1);
        if (!seqs.empty()) {
          appended_total_.fetch_add(seqs.size());
          {
            std::lock_guard lock(wait_mutex_);
            last_seq_.store(seqs.back().value);
          }
          wait_cv_.notify_all();
        }
        if (options_.overflow == Overflow::summarize && c.cursor == options_.summarize_cursor) room_made();
        return seqs;
      }
      if (done.error() == errc::map_full && map_pages_.load() < cap_pages_ && grow_map(0) == 0) continue;
      if (done.error() == errc::map_full) {
        spdlog::warn("buffer: no room for a commit of cursor {} (about {} pages); appends now keep {} pages free "
                     "for consumer commits",
                     c.cursor, est_pages, consumer_reserve_pages_);
      }
      return std::unexpected(done.error());
    }
    return std::unexpected(make_error_code(errc::map_full));
  }

  std::expected<std::optional<std::vector<std::uint8_t>>, std::error_code> table_get(
      std::string_view table, std::span<const std::uint8_t> key) const override {
    using Result = std::optional<std::vector<std::uint8_t>>;
    if (!valid_table_name(table) || key.empty() || key.size() > kMaxTableKey) {
      return std::unexpected(make_error_code(errc::invalid_argument));
    }
    auto dbi = table_for_read(table);
    if (!dbi) return std::unexpected(dbi.error());
    if (!*dbi) return Result{};
    ReadGuard gate(gate_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &raw); rc != 0) {
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    }
    TxnGuard txn(raw);
    MDB_val k = as_val(key.data(), key.size());
    MDB_val v;
    int rc = mdb_get(txn.get(), **dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return Result{};
    if (rc != 0) return std::unexpected(lmdb_error(rc, "table get"));
    const auto* p = static_cast<const std::uint8_t*>(v.mv_data);
    return Result{std::vector<std::uint8_t>(p, p + v.mv_size)};
  }

  std::expected<std::vector<TableEntry>, std::error_code> table_scan(std::string_view table,
                                                                     std::span<const std::uint8_t> from,
                                                                     std::size_t max) const override {
    std::vector<TableEntry> out;
    if (!valid_table_name(table) || from.size() > kMaxTableKey) {
      return std::unexpected(make_error_code(errc::invalid_argument));
    }
    auto dbi = table_for_read(table);
    if (!dbi) return std::unexpected(dbi.error());
    if (!*dbi || max == 0) return out;
    ReadGuard gate(gate_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &raw); rc != 0) {
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    }
    TxnGuard txn(raw);
    MDB_cursor* c_raw = nullptr;
    if (int rc = mdb_cursor_open(txn.get(), **dbi, &c_raw); rc != 0) return std::unexpected(lmdb_error(rc, "cursor_open"));
    CursorGuard cursor(c_raw);
    MDB_val k = as_val(from.data(), from.size());
    MDB_val v;
    int rc = from.empty() ? mdb_cursor_get(cursor.get(), &k, &v, MDB_FIRST)
                          : mdb_cursor_get(cursor.get(), &k, &v, MDB_SET_RANGE);
    while (rc == 0 && out.size() < max) {
      const auto* kp = static_cast<const std::uint8_t*>(k.mv_data);
      const auto* vp = static_cast<const std::uint8_t*>(v.mv_data);
      out.push_back(TableEntry{{kp, kp + k.mv_size}, {vp, vp + v.mv_size}});
      rc = mdb_cursor_get(cursor.get(), &k, &v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return std::unexpected(lmdb_error(rc, "cursor_get"));
    return out;
  }

  std::expected<std::vector<StoredRecord>, std::error_code> read(Seq after, std::size_t max_records,
                                                                 std::size_t max_bytes) const override {
    std::vector<StoredRecord> out;
    if (max_records == 0 || after.value >= last_seq_.load()) return out;
    std::vector<std::uint64_t> defective;
    {
      ReadGuard gate(gate_);
      MDB_txn* raw = nullptr;
      if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &raw); rc != 0) {
        return std::unexpected(lmdb_error(rc, "txn_begin"));
      }
      TxnGuard txn(raw);
      MDB_cursor* rc_raw = nullptr;
      if (int rc = mdb_cursor_open(txn.get(), records_, &rc_raw); rc != 0) {
        return std::unexpected(lmdb_error(rc, "cursor_open"));
      }
      CursorGuard cursor(rc_raw);
      std::uint8_t key_bytes[8];
      put_u64_be(key_bytes, after.value + 1);
      MDB_val key = as_val(key_bytes, sizeof key_bytes);
      MDB_val val;
      std::size_t bytes = 0;
      int rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_SET_RANGE);
      while (rc == 0 && out.size() < max_records) {
        if (record_defect(key, val) != nullptr) {
          // Skipped here and moved to the quarantine below, once this read transaction is over.
          if (key.mv_size == 8) defective.push_back(key_seq(key));
        } else {
          const std::size_t payload = val.mv_size - kRecordHeader;
          if (!out.empty() && bytes + payload > max_bytes) break;
          bytes += payload;
          out.push_back(decode_record(key, val));
        }
        rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
      }
      if (rc != 0 && rc != MDB_NOTFOUND) return std::unexpected(lmdb_error(rc, "cursor_get"));
    }
    if (!defective.empty()) quarantine(defective);
    return out;
  }

  bool wait_for(Seq after, std::chrono::milliseconds timeout) const override {
    std::unique_lock lock(wait_mutex_);
    return wait_cv_.wait_for(lock, timeout, [&] { return last_seq_.load() > after.value; });
  }

  std::expected<std::uint64_t, std::error_code> trim() override {
    std::uint64_t deleted_total = 0;
    for (;;) {  // in chunks, so that one transaction never dirties an unbounded number of pages
      auto deleted = trim_chunk();
      if (!deleted) {
        if (deleted_total > 0) break;  // report what was trimmed; the next trim retries the rest
        return std::unexpected(deleted.error());
      }
      deleted_total += *deleted;
      if (*deleted < kTrimChunk) break;
    }
    return deleted_total;
  }

  Seq last_seq() const override { return Seq{last_seq_.load()}; }

  Stats stats() const override {
    Stats s;
    s.last = Seq{last_seq_.load()};
    s.appended_total = appended_total_.load();
    s.trimmed_total = trimmed_total_.load();
    s.commits_total = commits_total_.load();
    s.append_commits_total = append_commits_total_.load();
    s.evicted_total = evicted_total_.load();
    s.quarantined_total = quarantined_total_.load();
    s.map_bytes = map_pages_.load() * page_size_;
    s.max_bytes = cap_pages_ * page_size_;
    s.full = full_.load();
    s.blocked_total = blocked_total_.load();
    s.no_space = no_space_.load();
    s.no_space_total = no_space_total_.load();
    s.append_calls_total = append_calls_total_.load();
    s.duplicates_total = dedup_totals_[kDuplicates].load();
    s.duplicates_conflicting_total = dedup_totals_[kConflicting].load();
    s.stale_sequence_total = dedup_totals_[kStale].load();
    s.reboots_total = dedup_totals_[kReboots].load();
    s.seq_wraps_total = dedup_totals_[kWraps].load();
    s.seq_gaps_total = dedup_totals_[kGaps].load();
    s.seq_late_total = dedup_totals_[kLate].load();
    s.seq_zero_ambiguous_total = dedup_totals_[kZeroAmbiguous].load();
    s.dedup_unknown_total = dedup_totals_[kUnknown].load();
    s.summarized_total = summarized_total_.load();
    {
      std::lock_guard lock(queue_mutex_);
      s.blocked_appends = blocked_ ? queue_.size() : 0;
    }

    ReadGuard gate(gate_);
    MDB_envinfo info;
    if (mdb_env_info(env_, &info) == 0)
      s.bytes = (static_cast<std::uint64_t>(info.me_last_pgno) + 1) * page_size_;
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &raw); rc != 0) {
      (void)lmdb_error(rc, "txn_begin (stats)");
      return s;
    }
    TxnGuard txn(raw);
    MDB_stat st;
    if (mdb_stat(txn.get(), records_, &st) == 0) s.records = st.ms_entries;
    if (mdb_stat(txn.get(), dedup_, &st) == 0) s.dedup_sources = st.ms_entries;
    // The snapshot's last sequence (last_seq_ may already be ahead of this read transaction).
    std::uint64_t snapshot_last = s.last.value;
    if (s.records > 0) {
      MDB_cursor* c_raw = nullptr;
      if (mdb_cursor_open(txn.get(), records_, &c_raw) == 0) {
        CursorGuard cursor(c_raw);
        MDB_val key;
        MDB_val val;
        if (mdb_cursor_get(cursor.get(), &key, &val, MDB_FIRST) == 0 && key.mv_size == 8) {
          s.first = Seq{key_seq(key)};
          if (record_defect(key, val) == nullptr) {
            s.oldest_age_ms = std::max<std::int64_t>(0, now_ms() - decode_record(key, val).ingest_time_ms);
          }
        }
        if (mdb_cursor_get(cursor.get(), &key, &val, MDB_LAST) == 0 && key.mv_size == 8) {
          snapshot_last = key_seq(key);
        }
      }
    }
    if (auto all = all_cursors(txn.get())) {
      for (auto& [name, c] : *all) {
        CursorStats cs;
        cs.name = std::move(name);
        cs.acked = c.acked;
        cs.evicted = c.evicted;
        // Stored sequences are a contiguous range but for quarantined ones (rare): a difference.
        cs.lag = s.records > 0 && snapshot_last > c.acked.value
                     ? snapshot_last - std::max(c.acked.value, s.first.value - 1)
                     : 0;
        s.cursors.push_back(std::move(cs));
      }
    }
    return s;
  }

 private:
  static bool valid_table_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    return std::all_of(name.begin(), name.end(), [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.';
    });
  }

  // The open handle of a side table, if known in this process. tables_mutex_ taken.
  std::optional<MDB_dbi> known_table(std::string_view name) const {
    std::lock_guard lock(tables_mutex_);
    auto it = tables_.find(name);
    if (it == tables_.end()) return std::nullopt;
    return it->second;
  }

  // A side table's handle inside a write transaction, created if missing; a handle opened here is
  // added to `opened` and becomes known only once the transaction commits.
  std::expected<MDB_dbi, std::error_code> table_in_txn(MDB_txn* txn, std::string_view name,
                                                       std::vector<std::pair<std::string, MDB_dbi>>& opened) {
    if (auto dbi = known_table(name)) return *dbi;
    for (const auto& [n, dbi] : opened) {
      if (n == name) return dbi;
    }
    {
      std::lock_guard lock(tables_mutex_);
      if (tables_.size() + opened.size() >= kMaxTables) {
        spdlog::error("buffer: more than {} side tables requested ({})", kMaxTables, name);
        return std::unexpected(make_error_code(errc::invalid_argument));
      }
    }
    const std::string db_name = "t:" + std::string(name);
    MDB_dbi dbi = 0;
    if (int rc = mdb_dbi_open(txn, db_name.c_str(), MDB_CREATE, &dbi); rc != 0) {
      return std::unexpected(lmdb_error(rc, "dbi_open (table)"));
    }
    opened.emplace_back(std::string(name), dbi);
    return dbi;
  }

  // A side table's handle for readers; nullopt if the table does not exist. Opening an existing
  // table for the first time takes a short write transaction (LMDB handles live from a commit).
  std::expected<std::optional<MDB_dbi>, std::error_code> table_for_read(std::string_view name) const {
    if (auto dbi = known_table(name)) return dbi;
    std::lock_guard write_lock(write_mutex_);
    if (auto dbi = known_table(name)) return dbi;
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0) return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    const std::string db_name = "t:" + std::string(name);
    MDB_dbi dbi = 0;
    int rc = mdb_dbi_open(txn.get(), db_name.c_str(), 0, &dbi);
    if (rc == MDB_NOTFOUND) return std::optional<MDB_dbi>{};
    if (rc != 0) return std::unexpected(lmdb_error(rc, "dbi_open (table)"));
    if (rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit (table open)"));
    std::lock_guard lock(tables_mutex_);
    tables_.emplace(std::string(name), dbi);
    return std::optional<MDB_dbi>{dbi};
  }

  // One attempt at a consumer commit. write_mutex_ held.
  std::expected<void, std::error_code> commit_once(const ConsumerCommit& c,
                                                   std::vector<std::pair<std::string, MDB_dbi>>& opened,
                                                   std::vector<Seq>& seqs) {
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0) return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    auto current = get_cursor(txn.get(), c.cursor);
    if (!current) return std::unexpected(current.error());
    if (c.upto.value > last_seq_.load()) return std::unexpected(make_error_code(errc::invalid_argument));
    for (const TableWrite& w : c.writes) {
      auto dbi = table_in_txn(txn.get(), w.table, opened);
      if (!dbi) return std::unexpected(dbi.error());
      MDB_val key = as_val(w.key.data(), w.key.size());
      if (w.value) {
        MDB_val val = as_val(w.value->data(), w.value->size());
        if (int rc = mdb_put(txn.get(), *dbi, &key, &val, 0); rc != 0) return std::unexpected(lmdb_error(rc, "table put"));
      } else if (int rc = mdb_del(txn.get(), *dbi, &key, nullptr); rc != 0 && rc != MDB_NOTFOUND) {
        return std::unexpected(lmdb_error(rc, "table del"));
      }
    }
    std::uint64_t seq = last_seq_.load() + 1;
    const std::int64_t ingest_ms = now_ms();
    for (const RecordIn& in : c.append) {
      if (int rc = put_record(txn.get(), seq, in, ingest_ms); rc != 0) return std::unexpected(lmdb_error(rc, "put record"));
      seqs.push_back(Seq{seq++});
    }
    if (!seqs.empty()) {
      if (auto ok = put_meta(txn.get(), kNextSeqKey, seq); !ok) return ok;
    }
    if (c.upto > current->acked) {
      if (auto ok = put_cursor(txn.get(), c.cursor, CursorValue{c.upto, current->evicted}); !ok) return ok;
    }
    if (int rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit (consumer)"));
    return {};
  }

  // Writes one record at `seq` (the next in order) into the records database.
  int put_record(MDB_txn* txn, std::uint64_t seq, const RecordIn& in, std::int64_t ingest_ms) {
    std::uint8_t key_bytes[8];
    put_u64_be(key_bytes, seq);
    MDB_val key = as_val(key_bytes, sizeof key_bytes);
    MDB_val val{kRecordHeader + in.payload.size(), nullptr};
    if (int rc = mdb_put(txn, records_, &key, &val, MDB_APPEND | MDB_RESERVE); rc != 0) return rc;
    tsan_page_reserved(txn);
    auto* p = static_cast<std::uint8_t*>(val.mv_data);
    p[0] = kRecordVersion;
    p[1] = static_cast<std::uint8_t>(in.type);
    put_u64_le(p + 2, static_cast<std::uint64_t>(ingest_ms));
    if (!in.payload.empty()) std::memcpy(p + kRecordHeader, in.payload.data(), in.payload.size());
    return 0;
  }

  // fsync mode: waits (bounded by group_commit_wait) until as many requests are queued as the
  // largest recent group held, so that concurrent appenders share one sync. queue_mutex_ held.
  void gather(std::unique_lock<std::mutex>& lock) {
    if (options_.durability != Durability::fsync || options_.group_commit_wait.count() <= 0) return;
    const std::size_t want = recent_group_;
    if (want > 1 && queue_.size() < want) {
      gathering_ = true;
      gather_cv_.wait_for(lock, options_.group_commit_wait, [&] { return closed_ || queue_.size() >= want; });
      gathering_ = false;
    }
    // Decays by one per commit, so that appenders that went away cost at most a few short waits.
    recent_group_ = std::max(queue_.size(), recent_group_ > 1 ? recent_group_ - 1 : std::size_t{1});
  }

  // The leader's part of append(): writes groups until its own request is done. queue_mutex_ held.
  std::expected<std::vector<Seq>, std::error_code> lead(Request& req, std::unique_lock<std::mutex>& lock,
                                                        std::stop_token stop) {
    auto backoff = kNoSpaceBackoffMin;
    bool waited = false;
    bool solo = false;  // the last group was too big as a whole: try the leader's request alone
    const auto wait_start = Clock::now();
    gather(lock);
    for (;;) {
      std::vector<Request*> group;
      std::size_t records = 0;
      std::size_t bytes = 0;
      for (Request* r : queue_) {
        if (!group.empty() &&
            (solo || records + r->records.size() > kMaxGroupRecords || bytes + r->bytes > kMaxGroupBytes)) {
          break;
        }
        r->in_flight = true;
        group.push_back(r);
        records += r->records.size();
        bytes += r->bytes;
      }
      lock.unlock();
      std::error_code error;
      const Outcome outcome = write_group(group, bytes, error);
      lock.lock();
      for (Request* r : group) r->in_flight = false;

      if (outcome == Outcome::too_big && group.size() > 1) {
        solo = true;
        continue;
      }
      if (outcome == Outcome::committed || outcome == Outcome::failed || outcome == Outcome::too_big) {
        for (Request* r : group) {
          r->done = true;
          if (outcome == Outcome::too_big) {
            r->error = make_error_code(errc::map_full);
          } else if (outcome == Outcome::failed) {
            r->error = error;
          }
        }
        if (outcome == Outcome::too_big) {
          spdlog::error("buffer: a batch of {} bytes is larger than max_bytes ({}) allows; refused", bytes,
                        cap_pages_ * page_size_);
        }
        // The group is the front of the queue: only a leader removes in-flight requests.
        queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(group.size()));
        if (waited) {
          blocked_ = false;
          spdlog::info("buffer: appends resume after waiting {} ms",
                       std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - wait_start).count());
        }
        queue_cv_.notify_all();
        return result_of(req);
      }

      // Full with Overflow::block, or ENOSPC: wait for room (a trim), then retry with whatever is
      // queued by then. Followers are no longer in flight, so they may leave on stop or close.
      if (!waited) {
        waited = true;
        blocked_ = true;
        blocked_total_.fetch_add(1);
        if (outcome == Outcome::no_space) {
          spdlog::error("buffer: the filesystem holding {} is full (ENOSPC); appends wait and retry (ingest holds "
                        "its acknowledgements) until space returns",
                        options_.path);
        } else {
          spdlog::warn("buffer: full (max_bytes {} reached); appends wait until consumers acknowledge and trim "
                       "(overflow = block)",
                       cap_pages_ * page_size_);
        }
      }
      blocked_ = true;
      queue_cv_.notify_all();
      const std::uint64_t epoch = space_epoch_;
      const auto timeout = outcome == Outcome::no_space ? backoff : kFullRecheck;
      queue_cv_.wait_for(lock, stop, timeout, [&] { return closed_ || space_epoch_ != epoch; });
      if (outcome == Outcome::no_space) backoff = std::min(backoff * 2, kNoSpaceBackoffMax);
      if (closed_ || stop.stop_requested()) {
        blocked_ = false;  // the next leader sets it again if it has to wait too
        leave_queue(req);
        return std::unexpected(make_error_code(closed_ ? errc::closed : errc::stopped));
      }
    }
  }

  void leave_queue(Request& req) {  // queue_mutex_ held
    queue_.erase(std::find(queue_.begin(), queue_.end(), &req));
    queue_cv_.notify_all();
  }

  std::expected<std::vector<Seq>, std::error_code> result_of(const Request& req) {
    if (req.error) return std::unexpected(req.error);
    append_calls_total_.fetch_add(1);
    return req.seqs;
  }

  // Writes one group in one transaction, growing the map or evicting as needed.
  Outcome write_group(const std::vector<Request*>& group, std::size_t bytes, std::error_code& error) {
    std::lock_guard write_lock(write_mutex_);
    // Refuse up front what can never fit: more pages than max_bytes leaves for records.
    std::uint64_t est_pages = 1;
    std::uint64_t leaf_bytes = 0;
    for (const Request* r : group) {
      for (const RecordIn& in : r->records) {
        const std::uint64_t node = kRecordHeader + in.payload.size() + 8 + 8 + 2;
        if (node > page_size_ / 2) {
          est_pages += (node + page_size_ - 1) / page_size_;
        } else {
          leaf_bytes += node;
        }
      }
    }
    est_pages += leaf_bytes / page_size_;
    // drop_oldest keeps room for one more group below the cap, because LMDB reuses the pages a
    // commit frees only one commit later; so one group may take at most a quarter of the cap.
    const std::uint64_t budget = cap_pages_ - headroom_pages(cap_pages_) - consumer_reserve(0, 0);
    if (est_pages > (options_.overflow != Overflow::block ? budget / 4 : budget)) return Outcome::too_big;
    bool evicted_any = false;
    bool nudged = false;
    for (int attempt = 0; attempt < 64; ++attempt) {
      Outcome o = try_group(group, est_pages, evicted_any, error);
      if (o == Outcome::no_page) {
        if (!nudged) {
          nudged = true;
          if (nudge()) continue;
        }
        o = Outcome::full;
      }
      if (o == Outcome::grow) {
        if (int rc = grow_map(bytes); rc != 0) {
          if (rc == ENOSPC) return lmdb_failure(ENOSPC, 1, "", error);
          error = make_error_code(errc::io_error);
          return Outcome::failed;
        }
        continue;
      }
      if (o == Outcome::evict_more) {
        auto evicted = evict_txn(bytes);
        if (!evicted) {
          error = evicted.error();
          if (evicted.error() == errc::map_full) {  // not even room to delete: wait and retry
            full_.store(true);
            return Outcome::full;
          }
          return evicted.error() == errc::no_space ? Outcome::no_space : Outcome::failed;
        }
        if (*evicted == 0) {  // summarize: nothing the windows counted is left; wait like block
          if (options_.overflow != Overflow::summarize) return Outcome::too_big;
          full_.store(true);
          return Outcome::full;
        }
        evicted_any = true;
        (void)nudge();  // so that the pages the eviction freed are reusable by the retry
        continue;
      }
      if (o == Outcome::full || o == Outcome::too_big) full_.store(true);
      return o;
    }
    spdlog::error("buffer: an append found no room after 64 attempts to grow or evict");
    error = make_error_code(errc::io_error);
    return Outcome::failed;
  }

  // One attempt at writing the group. evicted_any: an eviction transaction ran for this group.
  Outcome try_group(const std::vector<Request*>& group, std::uint64_t est_pages, bool evicted_any,
                    std::error_code& error) {
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0) return lmdb_failure(rc, 1, "txn_begin", error);
    TxnGuard txn(raw);
    MDB_stat st;
    if (int rc = mdb_stat(txn.get(), records_, &st); rc != 0) return lmdb_failure(rc, 1, "stat", error);
    const std::uint64_t entries_before = st.ms_entries;

    const std::uint64_t first_new = last_seq_.load() + 1;
    std::uint64_t seq = first_new;
    const std::int64_t ingest_ms = now_ms();
    std::size_t records = 0;
    DedupBatch dedup;
    std::vector<std::vector<Seq>> assigned(group.size());
    for (std::size_t gi = 0; gi < group.size(); ++gi) {
      assigned[gi].reserve(group[gi]->records.size());
      for (const RecordIn& in : group[gi]->records) {
        if (in.dedup) {
          auto verdict = dedup_admit(txn.get(), dedup, *in.dedup);
          if (!verdict) return lmdb_failure(verdict.error(), error);
          if (*verdict != DedupVerdict::store) {
            assigned[gi].push_back(*verdict == DedupVerdict::duplicate     ? kDroppedDuplicate
                                   : *verdict == DedupVerdict::conflicting ? kDroppedConflicting
                                                                           : kDroppedStale);
            continue;
          }
        }
        if (int rc = put_record(txn.get(), seq, in, ingest_ms); rc != 0) {
          return lmdb_failure(rc, entries_before, "put record", error);
        }
        assigned[gi].push_back(Seq{seq});
        ++seq;
        ++records;
      }
    }
    if (auto ok = put_meta(txn.get(), kNextSeqKey, seq); !ok) return lmdb_failure(ok.error(), error);
    if (auto ok = dedup_write_back(txn.get(), dedup); !ok) return lmdb_failure(ok.error(), error);

    if (int rc = mdb_stat(txn.get(), records_, &st); rc != 0) return lmdb_failure(rc, entries_before, "stat", error);
    // The budget covers every database of the environment (records, dedup windows, the
    // consumers' side tables), so that the headroom stays free for acks, trims and consumer commits.
    const std::uint64_t table_pages = side_table_pages_of(txn.get());
    const std::uint64_t other_pages = fixed_pages_of(txn.get()) + table_pages;
    const std::uint64_t tree_pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages + other_pages;
    const std::uint64_t reserve = consumer_reserve(other_pages, table_pages);
    const std::uint64_t budget = cap_pages_ - headroom_pages(cap_pages_) - reserve;
    Eviction ev;
    const std::uint64_t keep = options_.overflow != Overflow::block && budget > est_pages + kEvictSlackPages
                                   ? budget - est_pages - kEvictSlackPages
                                   : budget;
    if (tree_pages > keep) {
      // (With no records stored, the consumers' tables fill the budget: they shrink as they prune.)
      if (options_.overflow == Overflow::block) return Outcome::full;
      auto evicted = evict_prefix(txn.get(), first_new, keep > other_pages ? keep - other_pages : 0);
      if (!evicted) return lmdb_failure(evicted.error(), error);
      ev = std::move(*evicted);
      if (auto ok = account_eviction(txn.get(), ev); !ok) return lmdb_failure(ok.error(), error);
      if (tree_pages_of(txn.get()) + other_pages > keep) {
        // summarize may evict only what the windows counted: the rest waits like block.
        if (options_.overflow == Overflow::summarize) return Outcome::full;
        return Outcome::too_big;
      }
    } else if (map_pages_.load() < cap_pages_ && tree_pages + headroom_pages(map_pages_.load()) > map_pages_.load()) {
      return Outcome::grow;
    }
    if (int rc = txn.commit(); rc != 0) return lmdb_failure(rc, entries_before, "commit append", error);

    commits_total_.fetch_add(1);
    append_commits_total_.fetch_add(1);
    appended_total_.fetch_add(records);
    note_dedup(dedup);
    note_eviction(ev);
    full_.store(evicted_any || ev.trimmed + ev.evicted > 0 || tree_pages + kEvictSlackPages >= keep);
    no_space_.store(false);
    for (std::size_t gi = 0; gi < group.size(); ++gi) group[gi]->seqs = std::move(assigned[gi]);
    {
      std::lock_guard lock(wait_mutex_);
      last_seq_.store(seq - 1);
    }
    wait_cv_.notify_all();
    return Outcome::committed;
  }

  // What an LMDB failure inside an append means for the group.
  Outcome lmdb_failure(int rc, std::uint64_t entries_before, const char* what, std::error_code& error) {
    if (rc == MDB_MAP_FULL) {
      (void)entries_before;
      if (map_pages_.load() < cap_pages_) return Outcome::grow;
      if (options_.overflow != Overflow::block) return Outcome::evict_more;
      return Outcome::no_page;
    }
    // LMDB reports a short write of its pages as EIO: a full filesystem often looks like that.
    if (rc == ENOSPC || (rc == EIO && filesystem_full())) {
      no_space_.store(true);
      no_space_total_.fetch_add(1);
      error = make_error_code(errc::no_space);
      return Outcome::no_space;
    }
    error = lmdb_error(rc, what);
    return Outcome::failed;
  }
  Outcome lmdb_failure(std::error_code ec, std::error_code& error) {
    if (ec == errc::map_full) return lmdb_failure(MDB_MAP_FULL, 1, "", error);
    if (ec == errc::no_space) return lmdb_failure(ENOSPC, 1, "", error);
    error = ec;
    return Outcome::failed;
  }

  // Whether the filesystem holding the ring has less room than a large group could need.
  bool filesystem_full() const {
    struct statvfs fs;
    if (::statvfs(options_.path.c_str(), &fs) != 0) return false;
    const std::uint64_t avail = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
    return avail < kMaxGroupBytes * 2 + 64 * page_size_;
  }

  // Pages appends leave free for consumer commits (write_mutex_ held): none until a consumer
  // commits with commit(), then twice the largest recent one, at least initial_consumer_reserve();
  // at most half of what the headroom and the pages of the other databases (`other_pages`: the
  // consumers' side tables, dedup windows, ...) leave. Without that bound, one large commit (a
  // consumer catching up after a restart) could raise the reserve past what its own tables leave of
  // the store, and appends waited for good on a store with no record left to trim (the reserve
  // shrinks only as the consumer commits, and without new records it has nothing to commit).
  //
  // And, except under drop_oldest (whose appends evict records to make room for a commit that did
  // not fit), room for the side tables (`table_pages` now) to grow to Options::consumer_tables_bytes,
  // the most their consumers keep: appends under block had filled a fresh store with the events of
  // hundreds of devices before the windowing stage committed, whose open windows then needed more
  // pages than the trimming of what it had read freed, so no commit fit again (tests/windowing:
  // "a store full of events ..."). That part has no cap: a bound larger than the store leaves
  // appends waiting; the gateway keeps it within side_tables_budget().
  std::uint64_t consumer_reserve(std::uint64_t other_pages, std::uint64_t table_pages) const {
    const std::uint64_t usable = cap_pages_ - headroom_pages(cap_pages_);
    std::uint64_t reserve = std::min(consumer_reserve_pages_, (usable - std::min(usable, other_pages)) / 2);
    if (options_.overflow != Overflow::drop_oldest && tables_bound_pages_ > table_pages) {
      reserve = std::max(reserve, tables_bound_pages_ - table_pages);
    }
    return std::min(reserve, usable);
  }
  // The least kept for consumer commits once there are any: an eighth of the cap, at most 8 MiB.
  std::uint64_t initial_consumer_reserve() const {
    return std::clamp<std::uint64_t>(cap_pages_ / 8, 8, (8u << 20) / page_size_);
  }

  // Pages of every database but `records` (dedup windows, side tables, cursors, meta, quarantine).
  std::uint64_t other_pages_of(MDB_txn* txn) const { return fixed_pages_of(txn) + side_table_pages_of(txn); }
  // Of the dedup windows, cursors, meta and quarantine.
  std::uint64_t fixed_pages_of(MDB_txn* txn) const { return pages_of(txn, {cursors_, meta_, quarantine_, dedup_}); }
  // Of the consumers' side tables.
  std::uint64_t side_table_pages_of(MDB_txn* txn) const {
    std::vector<MDB_dbi> dbis;
    {
      std::lock_guard lock(tables_mutex_);
      for (const auto& [name, dbi] : tables_) dbis.push_back(dbi);
    }
    return pages_of(txn, dbis);
  }
  static std::uint64_t pages_of(MDB_txn* txn, const std::vector<MDB_dbi>& dbis) {
    std::uint64_t pages = 0;
    for (MDB_dbi dbi : dbis) {
      MDB_stat st;
      if (mdb_stat(txn, dbi, &st) == 0) pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
    return pages;
  }

  std::uint64_t tree_pages_of(MDB_txn* txn) const {
    MDB_stat st;
    if (mdb_stat(txn, records_, &st) != 0) return 0;
    return st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
  }

  // Deletes the oldest records (those before `before`) until the records tree uses at most
  // target_pages. Under summarize only records the summarize cursor acknowledged go, and aggregate
  // records stay. The caller accounts for them with account_eviction() in the same transaction.
  std::expected<Eviction, std::error_code> evict_prefix(MDB_txn* txn, std::uint64_t before,
                                                        std::uint64_t target_pages) {
    Eviction ev;
    const bool summarize = options_.overflow == Overflow::summarize;
    if (summarize) {
      auto counted = get_cursor(txn, options_.summarize_cursor);
      if (!counted && counted.error() != errc::unknown_cursor) return std::unexpected(counted.error());
      before = std::min(before, counted ? counted->acked.value + 1 : 0);  // no windows yet: nothing may go
    }
    MDB_cursor* raw = nullptr;
    if (int rc = mdb_cursor_open(txn, records_, &raw); rc != 0) return std::unexpected(lmdb_error(rc, "cursor_open"));
    CursorGuard cursor(raw);
    std::uint64_t from = 0;  // re-seek after each delete rather than rely on where a delete leaves the cursor
    while (tree_pages_of(txn) > target_pages) {
      std::uint8_t key_bytes[8];
      put_u64_be(key_bytes, from);
      MDB_val key = as_val(key_bytes, sizeof key_bytes);
      MDB_val val;
      int rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_SET_RANGE);
      if (summarize) {  // step over aggregate records
        while (rc == 0 && key.mv_size == 8 && val.mv_size >= 2 &&
               static_cast<const std::uint8_t*>(val.mv_data)[1] == static_cast<std::uint8_t>(RecordType::aggregate)) {
          rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
        }
      }
      if (rc == MDB_NOTFOUND) break;
      if (rc != 0) return std::unexpected(lmdb_error(rc, "cursor_get"));
      if (key.mv_size != 8) return std::unexpected(make_error_code(errc::corrupt));
      const std::uint64_t seq = key_seq(key);
      if (seq >= before) break;
      if (rc = mdb_cursor_del(cursor.get(), 0); rc != 0) return std::unexpected(lmdb_error(rc, "cursor_del"));
      ev.seqs.push_back(seq);
      from = seq + 1;
    }
    return ev;
  }

  // Splits an eviction into records every cursor had acknowledged (trimmed) and the others
  // (evicted), and adds the evicted ones to each cursor that had not acknowledged them and to the
  // persistent totals.
  std::expected<void, std::error_code> account_eviction(MDB_txn* txn, Eviction& ev) {
    if (ev.seqs.empty()) return {};
    auto all = all_cursors(txn);
    if (!all) return std::unexpected(all.error());
    auto at_or_below = [&](Seq acked) {
      return static_cast<std::uint64_t>(std::upper_bound(ev.seqs.begin(), ev.seqs.end(), acked.value) - ev.seqs.begin());
    };
    std::uint64_t trimmed = 0;
    if (!all->empty()) {
      Seq min_acked = all->front().second.acked;
      for (const auto& c : *all) min_acked = std::min(min_acked, c.second.acked);
      trimmed = at_or_below(min_acked);
    }
    ev.trimmed = trimmed;
    ev.evicted = ev.seqs.size() - trimmed;
    for (auto& [name, c] : *all) {
      const std::uint64_t missed = ev.seqs.size() - at_or_below(c.acked);
      if (missed == 0) continue;
      c.evicted += missed;
      if (auto ok = put_cursor(txn, name, c); !ok) return ok;
    }
    if (ev.evicted > 0) {
      if (auto ok = put_meta(txn, kEvictedKey, evicted_total_.load() + ev.evicted); !ok) return ok;
      if (options_.overflow == Overflow::summarize) {
        if (auto ok = put_meta(txn, kSummarizedKey, summarized_total_.load() + ev.evicted); !ok) return ok;
      }
    }
    return {};
  }

  // Looks up (and caches for the group) the source's window and lets it decide about the record.
  std::expected<DedupVerdict, std::error_code> dedup_admit(MDB_txn* txn, DedupBatch& batch, const DedupKey& k) {
    if (k.source.empty() || k.source.size() > 255) return DedupVerdict::store;  // not a usable key: store it
    auto it = batch.windows.find(k.source);
    if (it == batch.windows.end()) {
      MDB_val key = as_val(k.source.data(), k.source.size());
      MDB_val val;
      int rc = mdb_get(txn, dedup_, &key, &val);
      if (rc != 0 && rc != MDB_NOTFOUND) return std::unexpected(lmdb_error(rc, "get dedup"));
      std::optional<DedupWindow> stored;
      DedupOptions options = options_.dedup;
      if (k.seq_bits != 0) options.seq_bits = k.seq_bits;  // a mapped source's own width
      if (rc == 0) {
        stored = DedupWindow::decode({static_cast<const std::uint8_t*>(val.mv_data), val.mv_size}, options);
        if (!stored) spdlog::error("buffer: dedup window of {} does not decode; starting it afresh", k.source);
      }
      it = batch.windows.emplace(std::string(k.source), stored ? std::move(*stored) : DedupWindow(options)).first;
    }
    const DedupDecision d = it->second.admit(Reading{k.epoch, k.seq, k.time_ms, k.digest});
    auto& n = batch.counts;
    n[kDuplicates] += d.verdict == DedupVerdict::duplicate;
    n[kConflicting] += d.verdict == DedupVerdict::conflicting;
    n[kStale] += d.verdict == DedupVerdict::stale;
    n[kReboots] += d.reboot;
    n[kWraps] += k.counter && d.wrapped;
    n[kGaps] += k.counter ? d.gap : 0;
    n[kLate] += d.late;
    n[kZeroAmbiguous] += d.ambiguous_zero;
    n[kUnknown] += d.unknown;
    return d.verdict;
  }

  // Stores the windows a group touched and its persistent counters, in the group's transaction.
  std::expected<void, std::error_code> dedup_write_back(MDB_txn* txn, const DedupBatch& batch) {
    for (const auto& [source, window] : batch.windows) {
      const std::vector<std::uint8_t> bytes = window.encode();
      MDB_val key = as_val(source.data(), source.size());
      MDB_val val = as_val(bytes.data(), bytes.size());
      if (int rc = mdb_put(txn, dedup_, &key, &val, 0); rc != 0) {
        if (rc == MDB_MAP_FULL) return std::unexpected(make_error_code(errc::map_full));
        return std::unexpected(lmdb_error(rc, "put dedup"));
      }
    }
    for (std::size_t i = 0; i < kDedupCounters; ++i) {
      if (batch.counts[i] == 0) continue;
      if (auto ok = put_meta(txn, kDedupCounterKeys[i], dedup_totals_[i].load() + batch.counts[i]); !ok) return ok;
    }
    return {};
  }

  void note_dedup(const DedupBatch& batch) {
    for (std::size_t i = 0; i < kDedupCounters; ++i) dedup_totals_[i].fetch_add(batch.counts[i]);
  }

  // Counters and the log line for a committed eviction.
  void note_eviction(const Eviction& ev) {
    if (ev.trimmed + ev.evicted == 0) return;
    trimmed_total_.fetch_add(ev.trimmed);
    evicted_total_.fetch_add(ev.evicted);
    if (options_.overflow == Overflow::summarize) summarized_total_.fetch_add(ev.evicted);
    evicted_since_log_ += ev.evicted;
    const auto now = Clock::now();
    if (evicted_since_log_ > 0 && now - last_evict_log_ >= kEvictLogInterval) {
      spdlog::warn("buffer: full (max_bytes {}); overflow = {} evicted {} unacknowledged records "
                   "(up to seq {}; {} in total)",
                   cap_pages_ * page_size_,
                   options_.overflow == Overflow::summarize ? "summarize (windows counted them)" : "drop-oldest",
                   evicted_since_log_, ev.seqs.back(), evicted_total_.load());
      evicted_since_log_ = 0;
      last_evict_log_ = now;
    }
  }

  // drop_oldest at max_bytes when LMDB itself found no free page: evicts in a transaction of its
  // own, so that the freed pages are reusable by the retried append. Returns how many went.
  std::expected<std::uint64_t, std::error_code> evict_txn(std::size_t group_bytes) {
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0) return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    const std::uint64_t pages = tree_pages_of(txn.get());
    const std::uint64_t need = 2 * (group_bytes / page_size_) + 4 + headroom_pages(cap_pages_) / 2;
    auto ev = evict_prefix(txn.get(), UINT64_MAX, pages > need ? pages - need : 0);
    if (!ev) return std::unexpected(ev.error());
    if (ev->seqs.empty()) return 0;
    const std::uint64_t count = ev->seqs.size();
    if (auto ok = account_eviction(txn.get(), *ev); !ok) return std::unexpected(ok.error());
    if (int rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit eviction"));
    commits_total_.fetch_add(1);
    note_eviction(*ev);
    return count;
  }

  // Commits a transaction that changes nothing (rewrites next_seq), so that pages freed by the
  // previous commit become reusable (LMDB reuses a commit's freed pages one commit later).
  bool nudge() {
    MDB_txn* raw = nullptr;
    if (mdb_txn_begin(env_, nullptr, 0, &raw) != 0) return false;
    TxnGuard txn(raw);
    if (!put_meta(txn.get(), kNextSeqKey, last_seq_.load() + 1)) return false;
    if (txn.commit() != 0) return false;
    commits_total_.fetch_add(1);
    return true;
  }

  // Grows the map towards max_bytes (doubling). write_mutex_ held, so no write transaction is open;
  // the gate waits for readers to leave. Returns 0, ENOSPC (the filesystem has no room for the
  // larger map: nothing changed) or another error.
  int grow_map(std::size_t group_bytes) {
    const std::uint64_t cur = map_pages_.load();
    if (cur >= cap_pages_) return MDB_MAP_FULL;
    const std::uint64_t want = std::max(cur * 2, cur + 2 * (group_bytes / page_size_) + headroom_pages(cur) + 1);
    const std::uint64_t next = std::min(cap_pages_, want);
    if (writemap_) {
      if (int rc = reserve_map(env_, next * page_size_); rc != 0) {
        spdlog::error("buffer: reserving {} bytes on disk for a larger map failed: {}", next * page_size_,
                      std::strerror(rc));
        return rc;
      }
    }
    int rc = 0;
    gate_.exclusive([&] {
      rc = mdb_env_set_mapsize(env_, static_cast<std::size_t>(next * page_size_));
      map_moves_.fetch_add(1);  // inside the gate: a reader of the map sees the count of its mapping
    });
    if (rc != 0) {
      spdlog::error("buffer: growing the map to {} bytes failed: {}", next * page_size_, mdb_strerror(rc));
      return rc;
    }
    map_pages_.store(next);
    spdlog::info("buffer: map grown to {} bytes (max_bytes {})", next * page_size_, cap_pages_ * page_size_);
    return 0;
  }

  std::expected<std::uint64_t, std::error_code> trim_chunk() {
    std::lock_guard write_lock(write_mutex_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    auto all = all_cursors(txn.get());
    if (!all) return std::unexpected(all.error());
    if (all->empty()) return 0;  // nobody consumes yet: nothing is done with
    Seq upto = all->front().second.acked;
    for (const auto& c : *all) upto = std::min(upto, c.second.acked);

    std::uint64_t deleted = 0;
    {
      // A cursor of a write transaction must be closed before the commit frees it.
      MDB_cursor* c_raw = nullptr;
      if (int rc = mdb_cursor_open(txn.get(), records_, &c_raw); rc != 0) {
        return std::unexpected(lmdb_error(rc, "cursor_open"));
      }
      CursorGuard cursor(c_raw);
      MDB_val key;
      MDB_val val;
      // Re-seek the first record after each delete rather than rely on where a delete leaves the cursor.
      int rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_FIRST);
      while (rc == 0 && deleted < kTrimChunk) {
        if (key.mv_size != 8) return std::unexpected(make_error_code(errc::corrupt));
        if (key_seq(key) > upto.value) break;
        if (rc = mdb_cursor_del(cursor.get(), 0); rc != 0)
          return std::unexpected(lmdb_error(rc, "cursor_del"));
        ++deleted;
        rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_FIRST);
      }
      if (rc != 0 && rc != MDB_NOTFOUND) return std::unexpected(lmdb_error(rc, "cursor_get"));
    }
    if (deleted == 0) return 0;
    if (int rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit trim"));
    commits_total_.fetch_add(1);
    trimmed_total_.fetch_add(deleted);
    room_made();
    return deleted;
  }

  // Wakes a leader waiting for room.
  void room_made() const {
    {
      std::lock_guard lock(queue_mutex_);
      ++space_epoch_;
    }
    queue_cv_.notify_all();
  }

  // Moves stored values that do not decode to the quarantine database (same key and bytes), so
  // that readers skip them for good; counted and logged.
  void quarantine(const std::vector<std::uint64_t>& seqs) const {
    std::lock_guard write_lock(write_mutex_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0) {
      (void)lmdb_error(rc, "txn_begin (quarantine)");
      return;
    }
    TxnGuard txn(raw);
    std::uint64_t moved = 0;
    for (std::uint64_t seq : seqs) {
      std::uint8_t key_bytes[8];
      put_u64_be(key_bytes, seq);
      MDB_val key = as_val(key_bytes, sizeof key_bytes);
      MDB_val val;
      if (mdb_get(txn.get(), records_, &key, &val) != 0) continue;  // trimmed meanwhile
      const char* defect = record_defect(key, val);
      if (defect == nullptr) continue;
      spdlog::error("buffer: stored record {} does not decode ({}); moved to the quarantine database", seq, defect);
      if (int rc = mdb_put(txn.get(), quarantine_, &key, &val, 0); rc != 0) {
        (void)lmdb_error(rc, "put quarantine");
        return;
      }
      if (int rc = mdb_del(txn.get(), records_, &key, nullptr); rc != 0) {
        (void)lmdb_error(rc, "del quarantined");
        return;
      }
      ++moved;
    }
    if (moved == 0) return;
    if (!put_meta(txn.get(), kQuarantinedKey, quarantined_total_.load() + moved)) return;
    if (int rc = txn.commit(); rc != 0) {
      (void)lmdb_error(rc, "commit quarantine");
      return;
    }
    commits_total_.fetch_add(1);
    quarantined_total_.fetch_add(moved);
    room_made();
  }

  // The key of the first or last stored record, if any.
  std::expected<std::optional<std::uint64_t>, std::error_code> edge_key(MDB_txn* txn, MDB_cursor_op op) const {
    MDB_cursor* raw = nullptr;
    if (int rc = mdb_cursor_open(txn, records_, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "cursor_open"));
    CursorGuard cursor(raw);
    MDB_val key;
    MDB_val val;
    int rc = mdb_cursor_get(cursor.get(), &key, &val, op);
    if (rc == MDB_NOTFOUND) return std::optional<std::uint64_t>{};
    if (rc != 0) return std::unexpected(lmdb_error(rc, "cursor_get"));
    if (key.mv_size != 8) return std::unexpected(make_error_code(errc::corrupt));
    return std::optional<std::uint64_t>{key_seq(key)};
  }

  std::expected<std::optional<std::uint64_t>, std::error_code> get_meta(MDB_txn* txn, std::string_view name) const {
    MDB_val key = as_val(name.data(), name.size());
    MDB_val val;
    int rc = mdb_get(txn, meta_, &key, &val);
    if (rc == MDB_NOTFOUND) return std::optional<std::uint64_t>{};
    if (rc != 0) return std::unexpected(lmdb_error(rc, "get meta"));
    const auto* p = static_cast<const std::uint8_t*>(val.mv_data);
    if (val.mv_size < 9 || p[0] != kMetaVersion) {
      spdlog::error("buffer: meta {} has an unknown format version", name);
      return std::unexpected(make_error_code(errc::corrupt));
    }
    return std::optional<std::uint64_t>{get_u64_le(p + 1)};
  }

  std::expected<void, std::error_code> put_meta(MDB_txn* txn, std::string_view name, std::uint64_t v) const {
    std::uint8_t bytes[9];
    bytes[0] = kMetaVersion;
    put_u64_le(bytes + 1, v);
    MDB_val key = as_val(name.data(), name.size());
    MDB_val val = as_val(bytes, sizeof bytes);
    if (int rc = mdb_put(txn, meta_, &key, &val, 0); rc != 0) return std::unexpected(lmdb_error(rc, "put meta"));
    return {};
  }

  std::expected<CursorValue, std::error_code> get_cursor(MDB_txn* txn, std::string_view name) const {
    if (name.empty()) return std::unexpected(make_error_code(errc::unknown_cursor));
    MDB_val key = as_val(name.data(), name.size());
    MDB_val val;
    int rc = mdb_get(txn, cursors_, &key, &val);
    if (rc == MDB_NOTFOUND) return std::unexpected(make_error_code(errc::unknown_cursor));
    if (rc != 0) return std::unexpected(lmdb_error(rc, "get cursor"));
    return decode_cursor(val);
  }

  std::expected<void, std::error_code> put_cursor(MDB_txn* txn, std::string_view name, const CursorValue& c) const {
    EncodedCursor cv = encode_cursor(c);
    MDB_val key = as_val(name.data(), name.size());
    MDB_val val = as_val(cv.bytes, sizeof cv.bytes);
    if (int rc = mdb_put(txn, cursors_, &key, &val, 0); rc != 0) return std::unexpected(lmdb_error(rc, "put cursor"));
    return {};
  }

  std::expected<std::vector<std::pair<std::string, CursorValue>>, std::error_code> all_cursors(MDB_txn* txn) const {
    std::vector<std::pair<std::string, CursorValue>> out;
    MDB_cursor* raw = nullptr;
    if (int rc = mdb_cursor_open(txn, cursors_, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "cursor_open"));
    CursorGuard cursor(raw);
    MDB_val key;
    MDB_val val;
    int rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_FIRST);
    while (rc == 0) {
      auto c = decode_cursor(val);
      if (!c) return std::unexpected(c.error());
      out.emplace_back(std::string(static_cast<const char*>(key.mv_data), key.mv_size), *c);
      rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) return std::unexpected(lmdb_error(rc, "cursor_get"));
    return out;
  }

  // The background thread: in `os` mode syncs every sync_interval; in both modes hands the map's
  // pages back every kReleaseInterval. The ring walks its file (appends land on pages freed by
  // trims, wherever they are), so without this every page of the file stays mapped into the process
  // and its RSS grows to the file's size (measured: 14 MB of map after 60 s at 10,000 msg/s). The
  // mapping is MAP_SHARED and file-backed, so MADV_DONTNEED drops only the page-table entries: the
  // pages stay in the page cache (dirty ones are still written back), and the next access maps the
  // same page again (a minor fault; a few dozen hot pages per interval).
  void background_loop() {
    const bool sync = options_.durability == Durability::os;
    const auto tick = sync ? std::min(options_.sync_interval, kReleaseInterval) : kReleaseInterval;
    auto next_sync = Clock::now() + options_.sync_interval;
    auto next_release = Clock::now() + kReleaseInterval;
    std::unique_lock lock(background_mutex_);
    while (!stopping_) {
      background_cv_.wait_for(lock, tick, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      const auto now = Clock::now();
      {
        ReadGuard gate(gate_);
        if (sync && now >= next_sync) {
          next_sync = now + options_.sync_interval;
          if (int rc = mdb_env_sync(env_, 1); rc != 0)
            spdlog::error("buffer: background sync failed: {}", mdb_strerror(rc));
        }
        if (now >= next_release) {
          next_release = now + kReleaseInterval;
          release_map_pages();
        }
      }
      lock.lock();
    }
  }

  // The mappings of the data file, as background_loop() last found them (only that thread uses it).
  struct MapRanges {
    std::vector<std::pair<void*, std::size_t>> ranges;  // start, length
    std::uint64_t moves = 0;  // map_moves_ when they were found
  };

  // LMDB does not say where it mapped the file (MDB_envinfo::me_mapaddr is only set with
  // MDB_FIXEDMAP), so the mappings of the data file are found in /proc/self/maps by its inode, once
  // per map size.
  MapRanges find_map() const {
    MapRanges found{{}, map_moves_.load()};
    mdb_filehandle_t fd;
    struct stat st {};
    if (mdb_env_get_fd(env_, &fd) != 0 || ::fstat(fd, &st) != 0) return found;
    std::FILE* maps = std::fopen("/proc/self/maps", "re");
    if (maps == nullptr) return found;
    char line[512];
    while (std::fgets(line, sizeof line, maps) != nullptr) {
      unsigned long start = 0, end = 0, inode = 0;
      unsigned dev_major = 0, dev_minor = 0;
      if (std::sscanf(line, "%lx-%lx %*s %*s %x:%x %lu", &start, &end, &dev_major, &dev_minor, &inode) != 5) continue;
      if (inode != st.st_ino || ::makedev(dev_major, dev_minor) != st.st_dev) continue;
      found.ranges.emplace_back(reinterpret_cast<void*>(start), end - start);
    }
    std::fclose(maps);
    return found;
  }

  void release_map_pages() {  // the gate held shared: the map does not move meanwhile
    if (map_.ranges.empty() || map_.moves != map_moves_.load()) map_ = find_map();
    for (const auto& [start, length] : map_.ranges) {
      if (::madvise(start, length, MADV_DONTNEED) != 0) {
        spdlog::debug("buffer: madvise(MADV_DONTNEED) on the map failed: {}", std::strerror(errno));
      }
    }
  }

  MDB_env* env_;
  Options options_;
  std::uint64_t page_size_;
  std::uint64_t cap_pages_;                // max_bytes in pages
  bool writemap_;                          // MDB_WRITEMAP: the map is reserved on disk (reserve_map)
  std::atomic<std::uint64_t> map_pages_;  // current map size; changed only under write_mutex_
  std::atomic<std::uint64_t> map_moves_{0};  // remaps (grow_map), counted inside the gate
  MDB_dbi records_ = 0;
  MDB_dbi cursors_ = 0;
  MDB_dbi meta_ = 0;
  MDB_dbi quarantine_ = 0;
  MDB_dbi dedup_ = 0;
  mutable std::mutex tables_mutex_;  // guards tables_ (handles become valid once their txn committed)
  mutable std::map<std::string, MDB_dbi, std::less<>> tables_;

  mutable std::mutex write_mutex_;
  mutable MapGate gate_;
  std::atomic<std::uint64_t> last_seq_{0};
  mutable std::mutex wait_mutex_;
  mutable std::condition_variable wait_cv_;

  // Group commit. Guarded by queue_mutex_.
  mutable std::mutex queue_mutex_;
  mutable std::condition_variable_any queue_cv_;
  std::deque<Request*> queue_;
  bool closed_ = false;
  bool blocked_ = false;                 // the leader waits for room
  std::size_t recent_group_ = 1;         // requests in recent groups (gather() waits for that many)
  bool gathering_ = false;               // the leader waits in gather() on gather_cv_
  std::condition_variable gather_cv_;    // only the gathering leader waits here (no thundering herd)
  mutable std::uint64_t space_epoch_ = 0;  // bumped whenever a trim or quarantine frees room

  std::atomic<std::uint64_t> appended_total_{0};
  std::atomic<std::uint64_t> append_calls_total_{0};
  std::atomic<std::uint64_t> trimmed_total_{0};
  mutable std::atomic<std::uint64_t> commits_total_{0};
  std::atomic<std::uint64_t> append_commits_total_{0};
  std::atomic<std::uint64_t> evicted_total_{0};
  mutable std::atomic<std::uint64_t> quarantined_total_{0};
  std::atomic<std::uint64_t> blocked_total_{0};
  std::atomic<std::uint64_t> no_space_total_{0};
  std::array<std::atomic<std::uint64_t>, kDedupCounters> dedup_totals_{};
  std::atomic<std::uint64_t> summarized_total_{0};
  std::atomic<bool> full_{false};
  std::atomic<bool> no_space_{false};
  std::uint64_t evicted_since_log_ = 0;  // under write_mutex_
  std::uint64_t consumer_reserve_pages_ = 0;  // under write_mutex_; see consumer_reserve()
  std::uint64_t tables_bound_pages_ = 0;      // Options::consumer_tables_bytes in pages
  Clock::time_point last_evict_log_{};

  std::mutex background_mutex_;
  std::condition_variable background_cv_;
  bool stopping_ = false;
  std::thread background_thread_;
  MapRanges map_;  // background_loop()'s
};

}  // namespace

const std::error_category& buffer_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), buffer_category()}; }

std::optional<std::string> map_size_problem(std::uint64_t max_bytes, unsigned pointer_bits) {
  if (pointer_bits >= 64) return std::nullopt;
  constexpr std::uint64_t kMax32BitMapBytes = 2ull << 30;
  if (max_bytes > kMax32BitMapBytes) {
    return fmt::format("buffer.max_bytes {} is more than a 32-bit process can map (at most {} bytes, 2 GiB: the map "
                       "is one contiguous range of its 3 GiB of address space); lower buffer.max_bytes",
                       max_bytes, kMax32BitMapBytes);
  }
  if (pointer_bits == sizeof(void*) * 8) {
    // The whole range, and 256 MiB more for what the process maps later (thread stacks, libraries,
    // heap), must be free now: reserve it without memory, then give it back.
    const std::size_t probe = static_cast<std::size_t>(max_bytes + (256ull << 20));
    void* p = ::mmap(nullptr, probe, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      return fmt::format("buffer.max_bytes {} does not fit in this 32-bit process's free address space (no free "
                         "range of {} bytes: the map and room for what the process maps later); lower "
                         "buffer.max_bytes",
                         max_bytes, probe);
    }
    ::munmap(p, probe);
  }
  return std::nullopt;
}

std::expected<std::unique_ptr<Ring>, std::error_code> Ring::open(const Options& options) {
  if (options.path.empty()) return std::unexpected(make_error_code(errc::invalid_argument));
  if (auto problem = map_size_problem(options.max_bytes); problem) {
    spdlog::error("buffer: {}", *problem);
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  if (options.durability == Durability::os && options.sync_interval.count() <= 0) {
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  std::error_code fs_ec;
  std::filesystem::create_directories(options.path, fs_ec);
  if (fs_ec) {
    spdlog::error("buffer: cannot create {}: {}", options.path, fs_ec.message());
    return std::unexpected(fs_ec.value() == ENOSPC ? make_error_code(errc::no_space)
                                                   : make_error_code(errc::io_error));
  }

  const long sys_page = sysconf(_SC_PAGESIZE);
  const std::uint64_t page_size = sys_page > 0 ? static_cast<std::uint64_t>(sys_page) : 4096;
  const std::uint64_t cap_pages = std::max(kMinMapPages, (options.max_bytes + page_size - 1) / page_size);
  const std::uint64_t initial_pages =
      std::clamp((options.initial_map_bytes + page_size - 1) / page_size, kMinMapPages, cap_pages);

  // Opens the environment, with MDB_WRITEMAP (no write() per dirty page: much cheaper commits)
  // when the filesystem can reserve the whole map (reserve_map); otherwise (full, or no room for
  // the headroom of a reopened store) without it, where a full filesystem shows as ENOSPC commits.
  struct Opened {
    MDB_env* env = nullptr;
    std::uint64_t page = 0, map_pages = 0, cap_pages = 0;
  };
  auto open_env = [&](bool writemap) -> std::expected<Opened, std::error_code> {
    MDB_env* env = nullptr;
    if (int rc = mdb_env_create(&env); rc != 0) return std::unexpected(lmdb_error(rc, "env_create"));
    auto fail = [&](int rc, const char* what) {
      mdb_env_close(env);
      return std::unexpected(lmdb_error(rc, what));
    };
    if (int rc = mdb_env_set_maxdbs(env, 8 + kMaxTables); rc != 0) return fail(rc, "env_set_maxdbs");
    // LMDB raises this to the size already in use, so a reopened store maps at least its data.
    if (int rc = mdb_env_set_mapsize(env, static_cast<std::size_t>(initial_pages * page_size)); rc != 0) {
      return fail(rc, "env_set_mapsize");
    }
    unsigned flags = MDB_NOTLS;
    if (writemap) flags |= MDB_WRITEMAP;
    if (options.durability == Durability::os) flags |= MDB_NOSYNC;
    if (int rc = mdb_env_open(env, options.path.c_str(), flags, 0640); rc != 0) return fail(rc, "env_open");

    // An existing environment keeps its own page size; count the cap and the headroom in its pages.
    MDB_stat st;
    Opened o{env, page_size, initial_pages, 0};
    if (mdb_env_stat(env, &st) == 0 && st.ms_psize > 0) o.page = st.ms_psize;
    MDB_envinfo info;
    if (mdb_env_info(env, &info) == 0) o.map_pages = info.me_mapsize / o.page;
    o.cap_pages = std::max(kMinMapPages, (options.max_bytes + o.page - 1) / o.page);
    // LMDB maps a reopened store at exactly its used size, which leaves ack() and trim() no free
    // page: give it room at once (half the used size again, within max_bytes).
    if (mdb_env_info(env, &info) == 0 && o.map_pages < o.cap_pages) {
      const std::uint64_t used = static_cast<std::uint64_t>(info.me_last_pgno) + 1;
      const std::uint64_t want = std::min(o.cap_pages, std::max(o.map_pages, used + used / 2 + headroom_pages(used)));
      if (want > o.map_pages) {
        if (int rc = mdb_env_set_mapsize(env, static_cast<std::size_t>(want * o.page)); rc != 0) {
          return fail(rc, "env_set_mapsize (reopen)");
        }
        o.map_pages = want;
      }
    }
    if (writemap) {
      if (int rc = reserve_map(env, o.map_pages * o.page); rc != 0) {
        spdlog::warn("buffer: cannot reserve {} bytes on disk for the map ({}); opening without MDB_WRITEMAP",
                     o.map_pages * o.page, std::strerror(rc));
        return fail(rc, "reserve_map");
      }
    }
    return o;
  };
  auto opened = open_env(true);
  if (!opened) opened = open_env(false);
  if (!opened) return std::unexpected(opened.error());
  MDB_env* env = opened->env;
  const std::uint64_t env_page = opened->page, env_map_pages = opened->map_pages, env_cap_pages = opened->cap_pages;

  auto ring = std::make_unique<LmdbRing>(env, options, env_page, env_map_pages, env_cap_pages);  // owns env
  if (auto ok = ring->init(); !ok) return std::unexpected(ok.error());
  spdlog::info("buffer: opened {} (map {} bytes, max_bytes {}, durability {}, overflow {}, last seq {})", options.path,
               env_map_pages * env_page, env_cap_pages * env_page,
               options.durability == Durability::fsync ? "fsync" : "os",
               options.overflow == Overflow::block         ? "block"
               : options.overflow == Overflow::drop_oldest ? "drop-oldest"
                                                           : "summarize",
               ring->last_seq().value);
  return ring;
}

}  // namespace gw::buffer
