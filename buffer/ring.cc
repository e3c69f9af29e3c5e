// The LMDB implementation of gw::buffer::Ring (buffer/ring.h); the bytes on disk are described in
// buffer/FORMAT.md. LMDB types stay in this file.
//
// Thread-safety: every public member may be called from any thread. Write transactions are
// serialised by write_mutex_ (LMDB allows one writer per environment anyway, and taking our own
// mutex first keeps the error paths simple). The environment is opened with MDB_NOTLS, so read
// transactions are not tied to a thread and read(), acked() and stats() run concurrently with a
// writer.
#include "buffer/ring.h"

#include <lmdb.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace gw::buffer {
namespace {

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
    }
    return "unknown buffer error";
  }
};

// Stored format versions (buffer/FORMAT.md). Bump only with a reader for the old version.
constexpr std::uint8_t kRecordVersion = 1;
constexpr std::uint8_t kCursorVersion = 1;
constexpr std::uint8_t kMetaVersion = 1;
constexpr std::size_t kRecordHeader = 1 + 1 + 8;  // version, type, ingest_time_ms
constexpr std::string_view kNextSeqKey = "next_seq";

// A map smaller than this leaves no useful room after the headroom below.
constexpr std::uint64_t kMinMapPages = 64;

// Pages kept free of records so that ack() and trim() can always commit once appends are refused:
// LMDB copies pages on write, so even a delete needs free pages, and a map filled to the last page
// could never be trimmed again. A trim of a full map records its freed page numbers in LMDB's free
// list (8 bytes per page, i.e. map_pages/512 pages), so map_pages/64 leaves a wide margin.
std::uint64_t headroom_pages(std::uint64_t map_pages) { return std::max<std::uint64_t>(16, map_pages / 64); }

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

// Maps an LMDB (or errno) return code to the module's errors; logs the unexpected ones.
std::error_code lmdb_error(int rc, const char* what) {
  if (rc == MDB_MAP_FULL) return make_error_code(errc::map_full);
  if (rc == ENOSPC) return make_error_code(errc::no_space);
  spdlog::error("buffer: {} failed: {}", what, mdb_strerror(rc));
  return make_error_code(errc::io_error);
}

// Aborts a transaction unless it was committed or handed off.
class TxnGuard {
 public:
  explicit TxnGuard(MDB_txn* txn) : txn_(txn) {}
  TxnGuard(const TxnGuard&) = delete;
  TxnGuard& operator=(const TxnGuard&) = delete;
  ~TxnGuard() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
  }
  MDB_txn* get() const { return txn_; }
  int commit() {
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

struct CursorValue {
  std::uint8_t bytes[9];
};
CursorValue encode_cursor(Seq acked) {
  CursorValue v{};
  v.bytes[0] = kCursorVersion;
  put_u64_le(v.bytes + 1, acked.value);
  return v;
}
std::expected<Seq, std::error_code> decode_cursor(const MDB_val& v) {
  const auto* p = static_cast<const std::uint8_t*>(v.mv_data);
  if (v.mv_size < 9 || p[0] != kCursorVersion) return std::unexpected(make_error_code(errc::corrupt));
  return Seq{get_u64_le(p + 1)};
}

class LmdbRing final : public Ring {
 public:
  LmdbRing(MDB_env* env, const Options& options, std::uint64_t page_size, std::uint64_t map_pages)
      : env_(env), options_(options), page_size_(page_size), map_pages_(map_pages) {}

  ~LmdbRing() override {
    if (sync_thread_.joinable()) {
      {
        std::lock_guard lock(sync_mutex_);
        stopping_ = true;
      }
      sync_cv_.notify_all();
      sync_thread_.join();
    }
    if (options_.durability == Durability::os) {
      if (int rc = mdb_env_sync(env_, 1); rc != 0)
        spdlog::error("buffer: final sync failed: {}", mdb_strerror(rc));
    }
    mdb_env_close(env_);
  }

  LmdbRing(const LmdbRing&) = delete;
  LmdbRing& operator=(const LmdbRing&) = delete;

  // Opens the named databases and loads the next sequence number: constant cost.
  std::expected<void, std::error_code> init() {
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    for (auto [name, dbi] :
         {std::pair{"records", &records_}, std::pair{"cursors", &cursors_}, std::pair{"meta", &meta_}}) {
      if (int rc = mdb_dbi_open(txn.get(), name, MDB_CREATE, dbi); rc != 0) {
        return std::unexpected(lmdb_error(rc, "dbi_open"));
      }
    }
    std::uint64_t next = 1;
    MDB_val key = as_val(kNextSeqKey.data(), kNextSeqKey.size());
    MDB_val val;
    int rc = mdb_get(txn.get(), meta_, &key, &val);
    if (rc == 0) {
      const auto* p = static_cast<const std::uint8_t*>(val.mv_data);
      if (val.mv_size < 9 || p[0] != kMetaVersion) {
        spdlog::error("buffer: meta next_seq has an unknown format version");
        return std::unexpected(make_error_code(errc::corrupt));
      }
      next = get_u64_le(p + 1);
    } else if (rc != MDB_NOTFOUND) {
      return std::unexpected(lmdb_error(rc, "get next_seq"));
    }
    // Defensive: never hand out a sequence at or below a stored one, even if meta were missing.
    auto last_stored = edge_key(txn.get(), MDB_LAST);
    if (!last_stored) return std::unexpected(last_stored.error());
    if (*last_stored) next = std::max(next, **last_stored + 1);
    if (rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit"));
    last_seq_.store(next - 1);

    if (options_.durability == Durability::os) sync_thread_ = std::thread([this] { sync_loop(); });
    return {};
  }

  std::expected<std::vector<Seq>, std::error_code> append(std::span<const RecordIn> records) override {
    std::vector<Seq> seqs;
    if (records.empty()) return seqs;
    seqs.reserve(records.size());
    std::lock_guard write_lock(write_mutex_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);

    const std::int64_t ingest_ms = now_ms();
    std::uint64_t seq = last_seq_.load() + 1;
    std::vector<std::uint8_t> value;
    for (const RecordIn& r : records) {
      std::uint8_t key_bytes[8];
      put_u64_be(key_bytes, seq);
      value.resize(kRecordHeader + r.payload.size());
      value[0] = kRecordVersion;
      value[1] = static_cast<std::uint8_t>(r.type);
      put_u64_le(value.data() + 2, static_cast<std::uint64_t>(ingest_ms));
      if (!r.payload.empty()) std::memcpy(value.data() + kRecordHeader, r.payload.data(), r.payload.size());
      MDB_val key = as_val(key_bytes, sizeof key_bytes);
      MDB_val val = as_val(value.data(), value.size());
      if (int rc = mdb_put(txn.get(), records_, &key, &val, MDB_APPEND); rc != 0) {
        return std::unexpected(lmdb_error(rc, "put record"));
      }
      seqs.push_back(Seq{seq});
      ++seq;
    }
    if (auto e = put_next_seq(txn.get(), seq); !e) return std::unexpected(e.error());

    // Refuse the batch if records would eat into the headroom kept for ack() and trim().
    MDB_stat st;
    if (int rc = mdb_stat(txn.get(), records_, &st); rc != 0) return std::unexpected(lmdb_error(rc, "stat"));
    const std::uint64_t data_pages = st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    if (data_pages + headroom_pages(map_pages_) > map_pages_)
      return std::unexpected(make_error_code(errc::map_full));

    if (int rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit append"));
    commits_total_.fetch_add(1);
    appended_total_.fetch_add(records.size());
    {
      std::lock_guard lock(wait_mutex_);
      last_seq_.store(seq - 1);
    }
    wait_cv_.notify_all();
    return seqs;
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
    CursorValue cv = encode_cursor(start);
    val = as_val(cv.bytes, sizeof cv.bytes);
    if (rc = mdb_put(txn.get(), cursors_, &key, &val, 0); rc != 0)
      return std::unexpected(lmdb_error(rc, "put cursor"));
    if (rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit cursor"));
    commits_total_.fetch_add(1);
    return {};
  }

  std::expected<Seq, std::error_code> acked(std::string_view name) const override {
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &raw); rc != 0) {
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    }
    TxnGuard txn(raw);
    return get_cursor(txn.get(), name);
  }

  std::expected<void, std::error_code> ack(std::string_view name, Seq upto) override {
    if (upto.value > last_seq_.load()) return std::unexpected(make_error_code(errc::invalid_argument));
    std::lock_guard write_lock(write_mutex_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    auto current = get_cursor(txn.get(), name);
    if (!current) return std::unexpected(current.error());
    if (upto <= *current) return {};  // acks never move backwards
    CursorValue cv = encode_cursor(upto);
    MDB_val key = as_val(name.data(), name.size());
    MDB_val val = as_val(cv.bytes, sizeof cv.bytes);
    if (int rc = mdb_put(txn.get(), cursors_, &key, &val, 0); rc != 0) {
      return std::unexpected(lmdb_error(rc, "put cursor"));
    }
    if (int rc = txn.commit(); rc != 0) return std::unexpected(lmdb_error(rc, "commit ack"));
    commits_total_.fetch_add(1);
    return {};
  }

  std::expected<std::vector<StoredRecord>, std::error_code> read(Seq after, std::size_t max_records,
                                                                 std::size_t max_bytes) const override {
    std::vector<StoredRecord> out;
    if (max_records == 0 || after.value >= last_seq_.load()) return out;
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
      auto rec = decode_record(key, val);
      if (!rec) return std::unexpected(rec.error());
      if (!out.empty() && bytes + rec->payload.size() > max_bytes) break;
      bytes += rec->payload.size();
      out.push_back(std::move(*rec));
      rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return std::unexpected(lmdb_error(rc, "cursor_get"));
    return out;
  }

  bool wait_for(Seq after, std::chrono::milliseconds timeout) const override {
    std::unique_lock lock(wait_mutex_);
    return wait_cv_.wait_for(lock, timeout, [&] { return last_seq_.load() > after.value; });
  }

  std::expected<std::uint64_t, std::error_code> trim() override {
    std::lock_guard write_lock(write_mutex_);
    MDB_txn* raw = nullptr;
    if (int rc = mdb_txn_begin(env_, nullptr, 0, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "txn_begin"));
    TxnGuard txn(raw);
    auto all = all_cursors(txn.get());
    if (!all) return std::unexpected(all.error());
    if (all->empty()) return 0;  // nobody consumes yet: nothing is done with
    Seq upto = all->front().second;
    for (const auto& c : *all) upto = std::min(upto, c.second);

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
      while (rc == 0) {
        if (key.mv_size != 8) return std::unexpected(make_error_code(errc::corrupt));
        if (get_u64_be(static_cast<const std::uint8_t*>(key.mv_data)) > upto.value) break;
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
    return deleted;
  }

  Seq last_seq() const override { return Seq{last_seq_.load()}; }

  Stats stats() const override {
    Stats s;
    s.last = Seq{last_seq_.load()};
    s.appended_total = appended_total_.load();
    s.trimmed_total = trimmed_total_.load();
    s.commits_total = commits_total_.load();
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
    // The snapshot's last sequence (last_seq_ may already be ahead of this read transaction).
    std::uint64_t snapshot_last = s.last.value;
    if (s.records > 0) {
      MDB_cursor* c_raw = nullptr;
      if (mdb_cursor_open(txn.get(), records_, &c_raw) == 0) {
        CursorGuard cursor(c_raw);
        MDB_val key;
        MDB_val val;
        if (mdb_cursor_get(cursor.get(), &key, &val, MDB_FIRST) == 0) {
          if (auto rec = decode_record(key, val)) {
            s.first = rec->seq;
            s.oldest_age_ms = std::max<std::int64_t>(0, now_ms() - rec->ingest_time_ms);
          }
        }
        if (mdb_cursor_get(cursor.get(), &key, &val, MDB_LAST) == 0 && key.mv_size == 8) {
          snapshot_last = get_u64_be(static_cast<const std::uint8_t*>(key.mv_data));
        }
      }
    }
    if (auto all = all_cursors(txn.get())) {
      for (auto& [name, acked] : *all) {
        CursorStats cs;
        cs.name = std::move(name);
        cs.acked = acked;
        // Stored sequences are contiguous (trim removes a prefix), so the lag is a difference.
        cs.lag = s.records > 0 && snapshot_last > acked.value
                     ? snapshot_last - std::max(acked.value, s.first.value - 1)
                     : 0;
        s.cursors.push_back(std::move(cs));
      }
    }
    return s;
  }

 private:
  // The key of the first or last stored record, if any.
  std::expected<std::optional<std::uint64_t>, std::error_code> edge_key(MDB_txn* txn,
                                                                        MDB_cursor_op op) const {
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
    return std::optional<std::uint64_t>{get_u64_be(static_cast<const std::uint8_t*>(key.mv_data))};
  }

  std::expected<void, std::error_code> put_next_seq(MDB_txn* txn, std::uint64_t next) {
    std::uint8_t bytes[9];
    bytes[0] = kMetaVersion;
    put_u64_le(bytes + 1, next);
    MDB_val key = as_val(kNextSeqKey.data(), kNextSeqKey.size());
    MDB_val val = as_val(bytes, sizeof bytes);
    if (int rc = mdb_put(txn, meta_, &key, &val, 0); rc != 0)
      return std::unexpected(lmdb_error(rc, "put next_seq"));
    return {};
  }

  std::expected<Seq, std::error_code> get_cursor(MDB_txn* txn, std::string_view name) const {
    if (name.empty()) return std::unexpected(make_error_code(errc::unknown_cursor));
    MDB_val key = as_val(name.data(), name.size());
    MDB_val val;
    int rc = mdb_get(txn, cursors_, &key, &val);
    if (rc == MDB_NOTFOUND) return std::unexpected(make_error_code(errc::unknown_cursor));
    if (rc != 0) return std::unexpected(lmdb_error(rc, "get cursor"));
    return decode_cursor(val);
  }

  std::expected<std::vector<std::pair<std::string, Seq>>, std::error_code> all_cursors(MDB_txn* txn) const {
    std::vector<std::pair<std::string, Seq>> out;
    MDB_cursor* raw = nullptr;
    if (int rc = mdb_cursor_open(txn, cursors_, &raw); rc != 0)
      return std::unexpected(lmdb_error(rc, "cursor_open"));
    CursorGuard cursor(raw);
    MDB_val key;
    MDB_val val;
    int rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_FIRST);
    while (rc == 0) {
      auto acked = decode_cursor(val);
      if (!acked) return std::unexpected(acked.error());
      out.emplace_back(std::string(static_cast<const char*>(key.mv_data), key.mv_size), *acked);
      rc = mdb_cursor_get(cursor.get(), &key, &val, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) return std::unexpected(lmdb_error(rc, "cursor_get"));
    return out;
  }

  static std::expected<StoredRecord, std::error_code> decode_record(const MDB_val& key, const MDB_val& val) {
    const auto* p = static_cast<const std::uint8_t*>(val.mv_data);
    if (key.mv_size != 8 || val.mv_size < kRecordHeader || p[0] != kRecordVersion) {
      return std::unexpected(make_error_code(errc::corrupt));
    }
    StoredRecord r;
    r.seq = Seq{get_u64_be(static_cast<const std::uint8_t*>(key.mv_data))};
    r.type = static_cast<RecordType>(p[1]);
    r.ingest_time_ms = static_cast<std::int64_t>(get_u64_le(p + 2));
    r.payload.assign(p + kRecordHeader, p + val.mv_size);
    return r;
  }

  void sync_loop() {
    std::unique_lock lock(sync_mutex_);
    while (!stopping_) {
      sync_cv_.wait_for(lock, options_.sync_interval, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      if (int rc = mdb_env_sync(env_, 1); rc != 0)
        spdlog::error("buffer: background sync failed: {}", mdb_strerror(rc));
      lock.lock();
    }
  }

  MDB_env* env_;
  Options options_;
  std::uint64_t page_size_;
  std::uint64_t map_pages_;
  MDB_dbi records_ = 0;
  MDB_dbi cursors_ = 0;
  MDB_dbi meta_ = 0;

  std::mutex write_mutex_;
  std::atomic<std::uint64_t> last_seq_{0};
  mutable std::mutex wait_mutex_;
  mutable std::condition_variable wait_cv_;

  std::atomic<std::uint64_t> appended_total_{0};
  std::atomic<std::uint64_t> trimmed_total_{0};
  std::atomic<std::uint64_t> commits_total_{0};

  std::mutex sync_mutex_;
  std::condition_variable sync_cv_;
  bool stopping_ = false;
  std::thread sync_thread_;
};

}  // namespace

const std::error_category& buffer_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), buffer_category()}; }

std::expected<std::unique_ptr<Ring>, std::error_code> Ring::open(const Options& options) {
  if (options.path.empty()) return std::unexpected(make_error_code(errc::invalid_argument));
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
  const std::uint64_t map_pages = std::max(kMinMapPages, (options.max_bytes + page_size - 1) / page_size);

  MDB_env* env = nullptr;
  if (int rc = mdb_env_create(&env); rc != 0) return std::unexpected(lmdb_error(rc, "env_create"));
  auto fail = [&](int rc, const char* what) {
    mdb_env_close(env);
    return std::unexpected(lmdb_error(rc, what));
  };
  if (int rc = mdb_env_set_maxdbs(env, 4); rc != 0) return fail(rc, "env_set_maxdbs");
  if (int rc = mdb_env_set_mapsize(env, static_cast<std::size_t>(map_pages * page_size)); rc != 0) {
    return fail(rc, "env_set_mapsize");
  }
  unsigned flags = MDB_NOTLS;
  if (options.durability == Durability::os) flags |= MDB_NOSYNC;
  if (int rc = mdb_env_open(env, options.path.c_str(), flags, 0640); rc != 0) return fail(rc, "env_open");

  // An existing environment keeps its own page size; size the headroom in its pages.
  MDB_stat st;
  std::uint64_t env_page = page_size;
  if (mdb_env_stat(env, &st) == 0 && st.ms_psize > 0) env_page = st.ms_psize;
  MDB_envinfo info;
  std::uint64_t env_map_pages = map_pages;
  if (mdb_env_info(env, &info) == 0) env_map_pages = info.me_mapsize / env_page;

  auto ring = std::make_unique<LmdbRing>(env, options, env_page, env_map_pages);  // owns env from here
  if (auto ok = ring->init(); !ok) return std::unexpected(ok.error());
  spdlog::info("buffer: opened {} (map {} bytes, durability {}, last seq {})", options.path,
               env_map_pages * env_page, options.durability == Durability::fsync ? "fsync" : "os",
               ring->last_seq().value);
  return ring;
}

}  // namespace gw::buffer
