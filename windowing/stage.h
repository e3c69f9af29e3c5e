// The windowing stage: reads telemetry from the ring buffer through its own cursor, folds it into
// the engine (windowing/engine.h) and commits, in ONE ring transaction (Ring::commit), the changed
// window state, the closed aggregates (results table + RecordType::aggregate records for the
// uplink), the late events and the cursor position. After a crash it restores the state from the
// ring's side tables and resumes after the committed position, so every event is counted exactly
// once (DESIGN.md invariant 5). Tables and encodings: windowing/FORMAT.md.
//
// Thread-safety: start() and stop() from one controlling thread; query(), late(), devices() and
// stats() from any thread at any time (they read the ring's tables or a mutex-protected copy). The
// stage owns one worker thread between start() and stop().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "buffer/ring.h"
#include "ingest/event.h"
#include "windowing/aggregates.h"
#include "windowing/engine.h"

namespace gw::windowing {

struct Options {
  WindowKind kind = WindowKind::tumbling;
  std::chrono::milliseconds size{10000};   // tumbling and hopping window length; > 0
  std::chrono::milliseconds slide{2500};   // hopping: a new window every slide; 0 < slide <= size
  std::chrono::milliseconds gap{30000};    // session: silence (event time) that ends a session
  std::string group_by_tag;                // also window each metric across the devices with the same value of this tag; empty: off
  std::chrono::milliseconds allowed_lateness{0};  // windows stay open this long past their end
  std::chrono::milliseconds idle_timeout{60000};  // a device silent this long (gateway time) no longer holds group windows
  std::chrono::milliseconds max_skew{60000};      // a device watermark never passes gateway time + this
  std::optional<double> quantile_accuracy = 0.01;  // p50/p90/p99 sketch relative accuracy; nullopt: no quantiles
  std::chrono::milliseconds retention{std::chrono::hours(24)};  // closed results kept this long (gateway time)
  std::uint64_t max_results = 200000;      // and at most this many (the oldest go first; kResultBytes each)
  std::uint64_t max_late = 10000;          // late events kept (the oldest go first; all are counted)
  std::uint64_t max_devices = 10000;       // devices windowed (kDeviceBytes each); the events of more are counted, not folded
  std::chrono::milliseconds commit_interval{1000};  // commit at least this often while events flow
  std::uint64_t commit_events = 100000;    // and after this many records
  bool forward = true;                     // append closed aggregates to the ring for the uplink
  std::string cursor = "windowing";        // the stage's consumer cursor in the ring buffer
  // The gateway clock (Unix ms) that advances idle devices when no record arrives; injectable for
  // tests. Default: the system clock.
  std::function<std::int64_t()> clock{};
};

// What one kept result and one kept late event take in the buffer's LMDB file, for budgeting
// (`retained_bytes`). Measured with mdb_stat at the end of a chaos run at 1 MiB: 491 B per result
// (its record and its index entry) and 341 B per late event of two metrics; the pages of these
// tables are about half full, since new entries go in at one end and the oldest leave at the other.
inline constexpr std::uint64_t kResultBytes = 512;
inline constexpr std::uint64_t kLateEventBytes = 512;
// And one device's window state: measured 582 B for a device of two metrics with one open window
// each (its entry and its series); 2 KiB leaves room for about six metrics, or for a hopping window
// or allowed lateness that keeps several windows open. A device of many more metrics takes more.
inline constexpr std::uint64_t kDeviceBytes = 2048;
// The most the stage keeps in the buffer's side tables (max_results, max_late and max_devices at
// their estimated sizes). None of it leaves because a sink acknowledged it, so the gateway fits it
// in buffer::side_tables_budget() of buffer.max_bytes (gateway/config.cc) and the buffer keeps room
// for it to grow to this (buffer::Options::consumer_tables_bytes): beyond, a store under `block`
// could fill for good.
inline std::uint64_t retained_bytes(std::uint64_t max_results, std::uint64_t max_late, std::uint64_t max_devices) {
  return max_results * kResultBytes + max_late * kLateEventBytes + max_devices * kDeviceBytes;
}

// Translates the stage options into the engine's.
EngineOptions engine_options(const Options& o);

// A filter over the stored results. Unset fields match everything.
struct Query {
  std::optional<ingest::DeviceId> device{};  // device windows of this device
  std::optional<std::string> group{};        // group windows of this tag value
  std::optional<std::string> metric{};
  std::optional<WindowKind> kind{};
  std::optional<ingest::EventTime> from{};  // keeps windows with window_start >= from
  std::optional<ingest::EventTime> to{};    // keeps windows with window_start < to
  std::size_t limit = 100;                  // at most this many, newest (last closed) first
};

struct Stats {
  std::uint64_t events = 0;            // events folded (persistent: survives restarts)
  std::uint64_t windows_closed = 0;    // aggregates produced (persistent)
  std::uint64_t late_events = 0;       // events that missed a closed window (persistent; see late())
  std::uint64_t untagged_events = 0;   // grouping on, event without the tag (persistent)
  std::uint64_t idle_transitions = 0;  // devices that went idle (persistent)
  std::uint64_t open_windows = 0;
  std::uint64_t devices = 0;
  std::uint64_t groups = 0;
  std::uint64_t unwindowed_events = 0; // events of devices beyond max_devices, not folded (persistent)
  std::uint64_t decode_errors = 0;     // stored telemetry that did not decode (skipped), since start
  std::uint64_t commits = 0;           // ring commits since start
  std::uint64_t commit_errors = 0;     // failed commits (the stage reloads its state and retries)
  std::uint64_t aggregates_forwarded = 0;  // aggregate records appended, since start
  std::uint64_t results_pruned = 0;    // results removed by retention or max_results, since start
  std::uint64_t results_stored = 0;    // results in the table now
  std::uint64_t late_stored = 0;       // late events in the table now
  bool state_restored = false;         // start() found saved state
  bool state_discarded = false;        // saved state of another window configuration was dropped
  std::int64_t gateway_time_ms = 0;    // the gateway time the engine has reached
  buffer::Seq acked;                   // the stage's committed cursor position
};

class Stage {
 public:
  // The ring must outlive the stage. Invalid options abort (the gateway's config check rejects
  // them first). Does not touch the ring until start().
  Stage(Options options, buffer::Ring& ring);
  ~Stage();  // stops the worker if it runs
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // Registers the cursor, restores the saved state and starts the worker, which resumes after the
  // committed position. Fails if the ring cannot be read. Calling start() while running aborts.
  [[nodiscard]] std::expected<void, std::error_code> start();
  // Commits what is pending, then stops and joins the worker (within about 200 ms plus one
  // commit). Idempotent.
  void stop();

  // Stored results matching the query, newest first.
  std::vector<Aggregate> query(const Query& query) const;
  // The newest late events, newest first; with `before`, those with a smaller id (the next page:
  // before = the last id of the previous page).
  std::vector<LateEvent> late(std::size_t limit, std::optional<std::uint64_t> before = std::nullopt) const;
  // The devices the engine knows, sorted (refreshed at each commit).
  std::vector<std::string> devices() const;
  Stats stats() const;

 private:
  struct Pending;
  std::expected<void, std::error_code> restore();
  bool commit(buffer::Seq upto);
  void run();
  // Copies the engine's figures into stats_, and applies `also` under the same lock.
  void publish(const std::function<void(Stats&)>& also = {});

  Options options_;
  buffer::Ring& ring_;
  std::optional<Engine> engine_;  // the worker's while it runs

  // Worker-owned between start() and stop():
  buffer::Seq position_;
  std::uint64_t oldest_result_ = 1, next_result_ = 1, oldest_late_ = 1, next_late_ = 1;
  std::vector<std::pair<std::string, std::vector<std::uint8_t>>> discard_;  // stale state to delete
  std::uint64_t uncommitted_ = 0;
  // Records per commit: options_.commit_events, halved after a commit the ring had no room for and
  // doubled back after each one that fits. A small buffer that appends keep full while this stage is
  // its slowest cursor (after a restart, it reads everything since its last commit) has room only
  // for a small commit, and nothing is trimmed until this stage commits.
  std::uint64_t commit_limit_ = 0;

  mutable std::mutex mutex_;  // guards stats_ and devices_
  Stats stats_;
  std::vector<std::string> devices_;

  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  std::atomic<bool> stopping_{false};
  std::thread worker_;
};

}  // namespace gw::windowing
