// The windowing stage (windowing/stage.h): one worker thread reads the ring, folds telemetry into
// the engine and commits state, results, late events and cursor in one Ring::commit().
#include "windowing/stage.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <utility>

#include "windowing/codec.h"

namespace gw::windowing {
namespace {

constexpr std::chrono::milliseconds kPoll{200};  // bounds how long stop() waits for the worker
constexpr std::size_t kReadRecords = 1000;
// After a batch smaller than kReadRecords the stage waits this long before reading again, so that
// records are taken in batches: waking on every append costs the ingest path a thread wake-up per
// message (measured with bench-ingest). Windows are not delayed in any way that matters: 20 ms.
constexpr std::chrono::milliseconds kBatchLinger{20};
constexpr std::size_t kReadBytes = 1 << 20;
constexpr std::size_t kScanPage = 512;
constexpr std::size_t kQueryExamineMax = 200000;  // a query looks at most this many stored results
constexpr std::size_t kPruneMaxPerCommit = 2000;
constexpr std::uint8_t kStageMetaVersion = 1;

constexpr const char* kResults = "win.res";
constexpr const char* kIndex = "win.idx";
constexpr const char* kLate = "win.late";

using Bytes = std::vector<std::uint8_t>;

Bytes bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

// Newest first: the key of id is the big-endian complement.
Bytes id_key(std::uint64_t id) {
  Writer w;
  w.be64(~id);
  return w.take();
}

// The index prefix of a device's (or group's) results; nullopt when too long to index.
std::optional<Bytes> index_prefix(Scope scope, std::string_view key) {
  if (key.size() > 480) return std::nullopt;
  Writer w;
  w.u8(static_cast<std::uint8_t>(scope));
  w.be64(key.size());
  w.raw(std::span(reinterpret_cast<const std::uint8_t*>(key.data()), key.size()));
  return w.take();
}

std::int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Every entry of a table, in key order.
std::expected<std::vector<buffer::TableEntry>, std::error_code> scan_all(const buffer::Ring& ring, std::string_view table) {
  std::vector<buffer::TableEntry> out;
  Bytes from;
  for (;;) {
    auto page = ring.table_scan(table, from, kScanPage);
    if (!page) return std::unexpected(page.error());
    if (page->empty()) return out;
    from = page->back().key;
    from.push_back(0);  // the next key after the last one
    const bool last = page->size() < kScanPage;
    for (auto& e : *page) out.push_back(std::move(e));
    if (last) return out;
  }
}

}  // namespace

EngineOptions engine_options(const Options& o) {
  EngineOptions e;
  e.window.kind = o.kind;
  e.window.size_ms = o.size.count();
  e.window.slide_ms = o.kind == WindowKind::hopping ? o.slide.count() : o.size.count();
  e.window.gap_ms = o.gap.count();
  e.group_by_tag = o.group_by_tag;
  e.allowed_lateness_ms = o.allowed_lateness.count();
  e.idle_timeout_ms = o.idle_timeout.count();
  e.max_skew_ms = o.max_skew.count();
  e.quantile_accuracy = o.quantile_accuracy;
  e.max_devices = o.max_devices;
  return e;
}

Stage::Stage(Options options, buffer::Ring& ring) : options_(std::move(options)), ring_(ring) {
  if (!options_.clock) options_.clock = system_now_ms;
  commit_limit_ = std::max<std::uint64_t>(1, options_.commit_events);
  Engine check(engine_options(options_));  // aborts on invalid options, before any thread exists
}

Stage::~Stage() { stop(); }

std::expected<void, std::error_code> Stage::restore() {
  engine_.emplace(engine_options(options_));
  discard_.clear();
  oldest_result_ = next_result_ = oldest_late_ = next_late_ = 1;
  bool restored = false, discarded = false;
  auto meta = scan_all(ring_, kStateMeta);
  if (!meta) return std::unexpected(meta.error());
  for (const auto& e : *meta) {
    if (e.key == bytes_of("stage")) {
      Reader r(e.value);
      if (r.u8() != kStageMetaVersion) continue;
      oldest_result_ = r.u64();
      next_result_ = r.u64();
      oldest_late_ = r.u64();
      next_late_ = r.u64();
      if (!r.ok()) oldest_result_ = next_result_ = oldest_late_ = next_late_ = 1;
    } else if (e.key == bytes_of("engine")) {
      restored = true;
      if (!engine_->restore(kStateMeta, e.value)) discarded = true;
    }
  }
  for (const char* table : {kStateDevices, kStateGroups, kStateSeries}) {
    auto entries = scan_all(ring_, table);
    if (!entries) return std::unexpected(entries.error());
    for (const auto& e : *entries) {
      if (discarded) {
        discard_.emplace_back(table, e.key);
      } else if (!engine_->restore(table, e.value)) {
        spdlog::error("windowing: saved state in {} does not decode; dropping all saved window state", table);
        discarded = true;
        discard_.emplace_back(table, e.key);
      }
    }
  }
  if (discarded) {
    // Another window configuration (or damage): start the windows afresh; stored results stay.
    engine_.emplace(engine_options(options_));
    discard_.emplace_back(kStateMeta, bytes_of("engine"));
    spdlog::warn("windowing: the saved window state belongs to another configuration; open windows dropped");
  }
  engine_->finish_restore();
  auto position = ring_.acked(options_.cursor);
  if (!position) return std::unexpected(position.error());
  position_ = *position;
  uncommitted_ = 0;
  std::lock_guard lock(mutex_);
  stats_.state_restored = restored && !discarded;
  stats_.state_discarded = stats_.state_discarded || discarded;
  stats_.acked = position_;
  return {};
}

std::expected<void, std::error_code> Stage::start() {
  if (worker_.joinable()) {
    std::fprintf(stderr, "gw::windowing::Stage::start: the stage already runs\n");
    std::abort();
  }
  if (auto r = ring_.register_cursor(options_.cursor); !r) {
    spdlog::error("windowing: cannot register cursor '{}': {}", options_.cursor, r.error().message());
    return std::unexpected(r.error());
  }
  if (auto r = restore(); !r) {
    spdlog::error("windowing: cannot restore the window state: {}", r.error().message());
    return r;
  }
  publish();
  stopping_ = false;
  // Logged before the worker starts: from then on position_ and the engine are the worker's alone
  // (reading them here after the start was a data race, found by TSan).
  spdlog::info("windowing: started ({} windows, cursor '{}' at seq {}, {} open windows restored)",
               to_string(options_.kind), options_.cursor, position_.value, engine_->stats().open_windows);
  worker_ = std::thread([this] { run(); });
  return {};
}

void Stage::stop() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard lock(stop_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  worker_.join();
  spdlog::info("windowing: stopped");
}

bool Stage::commit(buffer::Seq upto) {
  std::vector<StateWrite> state;
  engine_->collect_state(state);
  std::vector<Aggregate> closed = engine_->take_closed();
  std::vector<LateEvent> late = engine_->take_late();
  if (state.empty() && closed.empty() && late.empty() && discard_.empty() && upto == stats().acked) return true;

  // Everything the transaction references lives here until commit() returns.
  std::deque<Bytes> keep;
  std::vector<buffer::TableWrite> writes;
  auto put = [&](std::string_view table, Bytes key, std::optional<Bytes> value) {
    const Bytes& k = keep.emplace_back(std::move(key));
    std::optional<std::span<const std::uint8_t>> v;
    if (value) v = std::span<const std::uint8_t>(keep.emplace_back(std::move(*value)));
    writes.push_back({table, k, v});
  };
  for (const auto& [table, key] : discard_) put(table, key, std::nullopt);
  for (auto& w : state) put(w.table, std::move(w.key), std::move(w.value));

  const std::uint64_t first_pending = next_result_;
  std::vector<buffer::RecordIn> append;
  std::vector<std::size_t> payloads;  // indexes into keep of the aggregate payloads
  for (Aggregate& a : closed) {
    a.id = next_result_++;  // the engine numbers from 1 in its own life; the store never reuses ids
    Bytes value = encode_aggregate(a);
    if (auto prefix = index_prefix(a.scope, a.key)) {
      Bytes ik = std::move(*prefix);
      Writer w;
      w.be64(~a.id);
      ik.insert(ik.end(), w.bytes().begin(), w.bytes().end());
      put(kIndex, std::move(ik), Bytes{1});
    }
    if (options_.forward) {
      keep.push_back(value);
      append.push_back({buffer::RecordType::aggregate, keep.back()});
    }
    put(kResults, id_key(a.id), std::move(value));
  }
  for (LateEvent& e : late) {
    e.id = next_late_++;
    put(kLate, id_key(e.id), encode_late(e));
  }
  // Retention: the oldest results first, by gateway time, then by count; late events by count.
  const std::int64_t cutoff = engine_->stats().now_ms - options_.retention.count();
  std::uint64_t pruned = 0;
  while (oldest_result_ < first_pending && pruned < kPruneMaxPerCommit) {
    const bool over = next_result_ - oldest_result_ > options_.max_results;
    auto stored = ring_.table_get(kResults, id_key(oldest_result_));
    if (!stored) break;
    std::optional<Aggregate> a;
    if (*stored) a = decode_aggregate(**stored);
    if (a && !over && a->closed_at_ms >= cutoff) break;
    if (a) {
      if (auto prefix = index_prefix(a->scope, a->key)) {
        Writer w;
        w.be64(~a->id);
        prefix->insert(prefix->end(), w.bytes().begin(), w.bytes().end());
        put(kIndex, std::move(*prefix), std::nullopt);
      }
    }
    put(kResults, id_key(oldest_result_), std::nullopt);
    ++oldest_result_;
    ++pruned;
  }
  while (next_late_ - oldest_late_ > options_.max_late) put(kLate, id_key(oldest_late_++), std::nullopt);
  {
    Writer w;
    w.u8(kStageMetaVersion);
    w.u64(oldest_result_);
    w.u64(next_result_);
    w.u64(oldest_late_);
    w.u64(next_late_);
    put(kStateMeta, bytes_of("stage"), w.take());
  }

  auto done = ring_.commit(buffer::ConsumerCommit{options_.cursor, upto, writes, append});
  if (!done) {
    spdlog::error("windowing: commit up to seq {} failed: {}; reloading the saved state", upto.value,
                  done.error().message());
    if (done.error() == buffer::errc::map_full && uncommitted_ > 1) {
      commit_limit_ = std::max<std::uint64_t>(1, uncommitted_ / 2);
      spdlog::warn("windowing: no room in the buffer for a commit of {} records; commits take at most {} until "
                   "one fits",
                   uncommitted_, commit_limit_);
    }
    {
      std::lock_guard lock(mutex_);
      ++stats_.commit_errors;
    }
    if (auto r = restore(); !r) spdlog::error("windowing: reload failed: {}", r.error().message());
    return false;
  }
  discard_.clear();
  uncommitted_ = 0;
  commit_limit_ = std::min(std::max<std::uint64_t>(1, options_.commit_events), commit_limit_ * 2);
  // One critical section with the engine's figures: a reader that sees the new acked seq also
  // sees the events it covers (two sections let a test read acked = last with events short of it).
  publish([&](Stats& s) {
    ++s.commits;
    s.aggregates_forwarded += append.size();
    s.results_pruned += pruned;
    s.acked = std::max(s.acked, upto);
  });
  return true;
}

void Stage::publish(const std::function<void(Stats&)>& also) {
  const EngineStats e = engine_->stats();
  const bool devices_changed = [&] {
    std::lock_guard lock(mutex_);
    return e.devices != devices_.size();
  }();
  std::vector<std::string> devices;
  if (devices_changed) devices = engine_->devices();
  std::lock_guard lock(mutex_);
  stats_.events = e.events;
  stats_.windows_closed = e.windows_closed;
  stats_.late_events = e.late_events;
  stats_.untagged_events = e.untagged_events;
  stats_.idle_transitions = e.idle_transitions;
  stats_.open_windows = e.open_windows;
  stats_.devices = e.devices;
  stats_.groups = e.groups;
  stats_.unwindowed_events = e.unwindowed_events;
  stats_.gateway_time_ms = e.now_ms;
  stats_.results_stored = next_result_ - oldest_result_;
  stats_.late_stored = next_late_ - oldest_late_;
  if (devices_changed) devices_ = std::move(devices);
  if (also) also(stats_);
}

void Stage::run() {
  auto last_commit = std::chrono::steady_clock::now();
  std::uint64_t decode_errors = 0;
  bool short_batch = false;
  while (!stopping_) {
    bool idle = true;
    if (short_batch) {
      short_batch = false;
      std::unique_lock lock(stop_mutex_);
      if (stop_cv_.wait_for(lock, kBatchLinger, [this] { return stopping_.load(); })) break;
    }
    if (ring_.wait_for(position_, kPoll)) {
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(kReadRecords, commit_limit_ - std::min(uncommitted_, commit_limit_ - 1)));
      auto batch = ring_.read(position_, want, kReadBytes);
      if (!batch) {
        spdlog::error("windowing: reading the buffer failed: {}", batch.error().message());
        std::unique_lock lock(stop_mutex_);
        stop_cv_.wait_for(lock, kPoll, [this] { return stopping_.load(); });
        continue;
      }
      short_batch = batch->size() < want;
      for (const buffer::StoredRecord& record : *batch) {
        position_ = record.seq;
        ++uncommitted_;
        idle = false;
        // Aggregate records are this stage's own output, on their way to the uplink.
        if (record.type != buffer::RecordType::telemetry) continue;
        auto event = ingest::decode_telemetry(record.payload);
        if (!event) {
          // Ingest validated the payload before storing it, so this is a bug or damage: skip it.
          ++decode_errors;
          spdlog::warn("windowing: record {} does not decode: {}", record.seq.value, event.error().message());
          continue;
        }
        engine_->add(*event, record.ingest_time_ms);
      }
      std::lock_guard lock(mutex_);
      stats_.decode_errors = decode_errors;
    }
    if (idle) engine_->advance(options_.clock());
    const auto now = std::chrono::steady_clock::now();
    if (uncommitted_ >= commit_limit_ || now - last_commit >= options_.commit_interval) {
      commit(position_);
      last_commit = now;
    }
  }
  commit(position_);
}

std::vector<Aggregate> Stage::query(const Query& q) const {
  std::vector<Aggregate> out;
  auto keep = [&](const Aggregate& a) {
    if (q.device && (a.scope != Scope::device || a.key != q.device->value)) return;
    if (q.group && (a.scope != Scope::group || a.key != *q.group)) return;
    if (q.metric && a.metric != *q.metric) return;
    if (q.kind && a.kind != *q.kind) return;
    if (q.from && a.window_start < *q.from) return;
    if (q.to && a.window_start >= *q.to) return;
    out.push_back(a);
  };
  std::optional<Bytes> prefix;
  if (q.device) prefix = index_prefix(Scope::device, q.device->value);
  if (q.group) prefix = index_prefix(Scope::group, *q.group);
  std::size_t examined = 0;
  if (prefix) {
    Bytes from = *prefix;
    while (out.size() < q.limit && examined < kQueryExamineMax) {
      auto page = ring_.table_scan(kIndex, from, kScanPage);
      if (!page || page->empty()) break;
      bool past = false;
      for (const auto& e : *page) {
        if (e.key.size() != prefix->size() + 8 || !std::equal(prefix->begin(), prefix->end(), e.key.begin())) {
          past = true;
          break;
        }
        ++examined;
        auto stored = ring_.table_get(kResults, Bytes(e.key.end() - 8, e.key.end()));
        if (stored && *stored) {
          if (auto a = decode_aggregate(**stored)) keep(*a);
        }
        if (out.size() >= q.limit) break;
      }
      if (past || page->size() < kScanPage) break;
      from = page->back().key;
      from.push_back(0);
    }
    return out;
  }
  Bytes from;
  while (out.size() < q.limit && examined < kQueryExamineMax) {
    auto page = ring_.table_scan(kResults, from, kScanPage);
    if (!page || page->empty()) break;
    for (const auto& e : *page) {
      ++examined;
      if (auto a = decode_aggregate(e.value)) keep(*a);
      if (out.size() >= q.limit) break;
    }
    if (page->size() < kScanPage) break;
    from = page->back().key;
    from.push_back(0);
  }
  return out;
}

std::vector<LateEvent> Stage::late(std::size_t limit, std::optional<std::uint64_t> before) const {
  std::vector<LateEvent> out;
  if (before && *before <= 1) return out;  // ids start at 1
  // Keys are be64(~id): ids below `before` start at the key of before - 1.
  const Bytes from = before ? id_key(*before - 1) : Bytes{};
  auto page = ring_.table_scan(kLate, from, limit);
  if (!page) return out;
  for (const auto& e : *page) {
    if (auto l = decode_late(e.value)) out.push_back(std::move(*l));
  }
  return out;
}

std::vector<std::string> Stage::devices() const {
  std::lock_guard lock(mutex_);
  return devices_;
}

Stats Stage::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace gw::windowing
