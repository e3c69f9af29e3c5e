// LMDB adapter behind ingest/dead_letters.h. Layout (ingest/FORMAT.md): DB "letters" keyed by the
// big-endian id; DB "meta" with the next id and the persistent counters. One write transaction per
// add, synced, so a rejected message is in the store before its PUBACK.
#include "ingest/dead_letters.h"

#include <lmdb.h>
#include <spdlog/spdlog.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <mutex>

namespace gw::ingest {
namespace {

constexpr std::uint8_t kFormatVersion = 2;  // 2: a detail text after the topic (1 is still read)

std::error_code lmdb_error(int rc) {
  if (rc == ENOSPC) return std::make_error_code(std::errc::no_space_on_device);
  if (rc == MDB_MAP_FULL) return std::make_error_code(std::errc::file_too_large);
  return std::make_error_code(std::errc::io_error);
}

std::array<std::uint8_t, 8> big_endian(std::uint64_t v) {
  std::array<std::uint8_t, 8> out{};
  for (int i = 7; i >= 0; --i, v >>= 8) out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v);
  return out;
}

std::uint64_t from_big_endian(const MDB_val& v) {
  std::uint64_t out = 0;
  const auto* p = static_cast<const std::uint8_t*>(v.mv_data);
  for (std::size_t i = 0; i < 8 && i < v.mv_size; ++i) out = (out << 8) | p[i];
  return out;
}

// Writes into a value sized beforehand (no growth path, in which GCC 14 sees a free of a non-heap
// pointer). Little-endian hosts only (x86-64, aarch64, armhf): see FORMAT.md.
template <class T>
std::uint8_t* put_raw(std::uint8_t* w, T v) {
  std::memcpy(w, &v, sizeof(T));
  return w + sizeof(T);
}
std::uint8_t* put_bytes(std::uint8_t* w, const void* p, std::size_t n) {
  if (n != 0) std::memcpy(w, p, n);
  return w + n;
}

template <class T>
bool get_raw(const std::uint8_t*& p, const std::uint8_t* end, T& v) {
  if (static_cast<std::size_t>(end - p) < sizeof(T)) return false;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  return true;
}

// A decoded entry, or nullopt for a value of an unknown version or a short one (skipped).
std::optional<DeadLetter> decode(std::uint64_t id, const MDB_val& v) {
  const auto* p = static_cast<const std::uint8_t*>(v.mv_data);
  const auto* end = p + v.mv_size;
  std::uint8_t version = 0, reason = 0;
  DeadLetter d;
  d.id = id;
  std::uint16_t topic_len = 0;
  if (!get_raw(p, end, version) || (version != 1 && version != kFormatVersion) || !get_raw(p, end, reason) ||
      !get_raw(p, end, d.received_ms) || !get_raw(p, end, d.size) || !get_raw(p, end, topic_len) ||
      static_cast<std::size_t>(end - p) < topic_len) {
    return std::nullopt;
  }
  d.reason = static_cast<errc>(reason);
  d.topic.assign(reinterpret_cast<const char*>(p), topic_len);
  p += topic_len;
  if (version >= 2) {
    std::uint16_t detail_len = 0;
    if (!get_raw(p, end, detail_len) || static_cast<std::size_t>(end - p) < detail_len) return std::nullopt;
    d.detail.assign(reinterpret_cast<const char*>(p), detail_len);
    p += detail_len;
  }
  d.raw.assign(p, end);
  return d;
}

class LmdbDeadLetters final : public DeadLetters {
 public:
  explicit LmdbDeadLetters(DeadLetterOptions options) : options_(std::move(options)) {}
  ~LmdbDeadLetters() override {
    if (env_ != nullptr) mdb_env_close(env_);
  }

  std::error_code open() {
    std::error_code ec;
    std::filesystem::create_directories(options_.path, ec);
    if (ec) return ec;
    int rc = mdb_env_create(&env_);
    if (rc == 0) rc = mdb_env_set_maxdbs(env_, 4);
    if (rc == 0) rc = mdb_env_set_mapsize(env_, options_.map_bytes);
    if (rc == 0) rc = mdb_env_open(env_, options_.path.c_str(), MDB_NOTLS, 0640);
    if (rc != 0) {
      spdlog::error("dead letters: cannot open {}: {}", options_.path, mdb_strerror(rc));
      return lmdb_error(rc);
    }
    MDB_txn* txn = nullptr;
    rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc == 0) rc = mdb_dbi_open(txn, "letters", MDB_CREATE, &letters_);
    if (rc == 0) rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta_);
    if (rc == 0) rc = mdb_txn_commit(txn);
    else if (txn != nullptr) mdb_txn_abort(txn);
    if (rc != 0) return lmdb_error(rc);
    return {};
  }

  std::expected<void, std::error_code> add(std::string_view topic, errc reason, std::span<const std::uint8_t> payload,
                                           std::int64_t received_ms, std::string_view detail) override {
    const std::size_t keep = std::min(payload.size(), options_.max_raw_bytes);
    const std::size_t topic_len = std::min<std::size_t>(topic.size(), 65535);
    const std::size_t detail_len = std::min<std::size_t>(detail.size(), 1024);
    std::vector<std::uint8_t> value(1 + 1 + 8 + 4 + 2 + topic_len + 2 + detail_len + keep);
    std::uint8_t* w = value.data();
    w = put_raw(w, kFormatVersion);
    w = put_raw(w, static_cast<std::uint8_t>(reason));
    w = put_raw(w, received_ms);
    w = put_raw(w, static_cast<std::uint32_t>(std::min<std::size_t>(payload.size(), UINT32_MAX)));
    w = put_raw(w, static_cast<std::uint16_t>(topic_len));
    w = put_bytes(w, topic.data(), topic_len);
    w = put_raw(w, static_cast<std::uint16_t>(detail_len));
    w = put_bytes(w, detail.data(), detail_len);
    put_bytes(w, payload.data(), keep);

    std::lock_guard lock(write_mutex_);
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc != 0) return std::unexpected(lmdb_error(rc));
    auto fail = [&](int code) {
      mdb_txn_abort(txn);
      spdlog::error("dead letters: cannot store a rejected message: {}", mdb_strerror(code));
      return std::unexpected(lmdb_error(code));
    };
    const std::uint64_t id = counter(txn, "next_id") + 1;
    auto key = big_endian(id);
    MDB_val k{key.size(), key.data()}, v{value.size(), value.data()};
    if ((rc = mdb_put(txn, letters_, &k, &v, MDB_APPEND)) != 0) return fail(rc);
    if ((rc = set_counter(txn, "next_id", id)) != 0) return fail(rc);
    if ((rc = set_counter(txn, "stored_total", counter(txn, "stored_total") + 1)) != 0) return fail(rc);
    const std::string reason_key = "reason." + std::string(reason_name(reason));
    if ((rc = set_counter(txn, reason_key.c_str(), counter(txn, reason_key.c_str()) + 1)) != 0) return fail(rc);

    MDB_stat st{};
    mdb_stat(txn, letters_, &st);
    if (st.ms_entries > options_.max_entries) {
      MDB_cursor* cur = nullptr;
      if ((rc = mdb_cursor_open(txn, letters_, &cur)) != 0) return fail(rc);
      std::size_t excess = st.ms_entries - options_.max_entries;
      MDB_val ck, cv;
      while (excess > 0 && mdb_cursor_get(cur, &ck, &cv, MDB_FIRST) == 0) {
        if ((rc = mdb_cursor_del(cur, 0)) != 0) break;
        --excess;
      }
      mdb_cursor_close(cur);
      if (rc != 0) return fail(rc);
      const std::uint64_t evicted = st.ms_entries - options_.max_entries - excess;
      if ((rc = set_counter(txn, "evicted_total", counter(txn, "evicted_total") + evicted)) != 0) return fail(rc);
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
      spdlog::error("dead letters: commit failed: {}", mdb_strerror(rc));
      return std::unexpected(lmdb_error(rc));
    }
    return {};
  }

  std::vector<DeadLetter> list(std::optional<errc> reason, std::size_t limit) const override {
    std::vector<DeadLetter> out;
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn) != 0) return out;
    MDB_cursor* cur = nullptr;
    if (mdb_cursor_open(txn, letters_, &cur) == 0) {
      MDB_val k, v;
      for (int rc = mdb_cursor_get(cur, &k, &v, MDB_LAST); rc == 0 && out.size() < limit;
           rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        auto d = decode(from_big_endian(k), v);
        if (d && (!reason || d->reason == *reason)) out.push_back(std::move(*d));
      }
      mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return out;
  }

  DeadLetterStats stats() const override {
    DeadLetterStats s;
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn) != 0) return s;
    MDB_stat st{};
    if (mdb_stat(txn, letters_, &st) == 0) s.entries = st.ms_entries;
    s.stored_total = counter(txn, "stored_total");
    s.evicted_total = counter(txn, "evicted_total");
    for (errc r : kDeadLetterReasons) {
      const std::string key = "reason." + std::string(reason_name(r));
      if (auto n = counter(txn, key.c_str()); n > 0) s.by_reason[r] = n;
    }
    mdb_txn_abort(txn);
    return s;
  }

 private:
  // meta values: u8 version, u64 little-endian.
  std::uint64_t counter(MDB_txn* txn, const char* name) const {
    MDB_val k{std::strlen(name), const_cast<char*>(name)}, v;
    if (mdb_get(txn, meta_, &k, &v) != 0 || v.mv_size != 9) return 0;
    std::uint64_t out = 0;
    std::memcpy(&out, static_cast<const std::uint8_t*>(v.mv_data) + 1, 8);
    return out;
  }
  int set_counter(MDB_txn* txn, const char* name, std::uint64_t value) {
    std::uint8_t buf[9] = {kFormatVersion};
    std::memcpy(buf + 1, &value, 8);
    MDB_val k{std::strlen(name), const_cast<char*>(name)}, v{sizeof buf, buf};
    return mdb_put(txn, meta_, &k, &v, 0);
  }

  DeadLetterOptions options_;
  MDB_env* env_ = nullptr;
  MDB_dbi letters_ = 0, meta_ = 0;
  std::mutex write_mutex_;
};

}  // namespace

std::expected<std::unique_ptr<DeadLetters>, std::error_code> DeadLetters::open(const DeadLetterOptions& options) {
  if (options.path.empty() || options.max_entries == 0) {
    return std::unexpected(std::make_error_code(std::errc::invalid_argument));
  }
  auto store = std::make_unique<LmdbDeadLetters>(options);
  if (auto ec = store->open()) return std::unexpected(ec);
  return store;
}

std::string_view reason_name(errc reason) noexcept {
  switch (reason) {
    case errc::malformed: return "malformed";
    case errc::unsupported_version: return "unsupported_version";
    case errc::missing_field: return "missing_field";
    case errc::bad_value: return "bad_value";
    case errc::oversize: return "oversize";
    case errc::bad_timestamp: return "bad_timestamp";
    case errc::conflicting_duplicate: return "conflicting_duplicate";
    case errc::stale_sequence: return "stale_sequence";
    case errc::mapping: return "mapping";
  }
  return "unknown";
}

std::optional<errc> reason_from_name(std::string_view name) noexcept {
  for (errc r : kDeadLetterReasons) {
    if (reason_name(r) == name) return r;
  }
  return std::nullopt;
}

}  // namespace gw::ingest
