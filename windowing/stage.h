// The windowing stage: consumes telemetry from the ring buffer through its own cursor, folds it
// into per-device tumbling windows (windowing/tumbling.h) and keeps the closed aggregates in a
// bounded in-memory store that the HTTP server queries.
//
// Thread-safety: start() and stop() from one controlling thread; query(), devices() and stats()
// from any thread at any time (they read a mutex-protected store). The stage owns one worker
// thread between start() and stop().
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <expected>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "buffer/ring.h"
#include "ingest/event.h"
#include "windowing/tumbling.h"

namespace gw::windowing {

struct Options {
  std::chrono::milliseconds size{10000};  // tumbling window length (default 10 s); must be > 0
  std::string cursor = "windowing";       // the stage's consumer cursor in the ring buffer
  std::size_t max_results = 20000;        // closed aggregates kept in memory (~110 B each); the oldest are dropped beyond
};

// A filter over the closed aggregates. Unset fields match everything.
struct Query {
  std::optional<ingest::DeviceId> device{};
  std::optional<std::string> metric{};
  std::optional<ingest::EventTime> from{};  // keeps windows with window_start >= from
  std::optional<ingest::EventTime> to{};    // keeps windows with window_start < to
  std::size_t limit = 100;                  // at most this many, newest (last closed) first
};

struct Stats {
  std::uint64_t events = 0;           // events folded into windows
  std::uint64_t windows_closed = 0;   // aggregates produced
  std::uint64_t late_events = 0;      // events whose window had already closed (not counted)
  std::uint64_t decode_errors = 0;    // stored telemetry records whose payload did not decode (skipped)
  std::uint64_t results_dropped = 0;  // closed aggregates dropped from the store beyond max_results
  std::size_t open_windows = 0;       // (device, metric, window) still accumulating
  buffer::Seq acked;                  // the stage's cursor position in the ring
};

class Stage {
 public:
  // The ring must outlive the stage. Does not touch the ring until start().
  Stage(Options options, buffer::Ring& ring);
  ~Stage();  // stops the worker if it runs
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // Registers the cursor (a new cursor starts at the oldest stored record) and starts the worker,
  // which resumes after the cursor's acknowledged position. Fails if the cursor cannot be
  // registered or read. Calling start() while the stage runs is a bug and aborts.
  [[nodiscard]] std::expected<void, std::error_code> start();
  // Stops and joins the worker (returns within about 200 ms). Idempotent. Open windows stay in
  // memory and are lost when the stage is destroyed (see windowing/README.md).
  void stop();

  std::vector<Aggregate> query(const Query& query) const;
  // The devices that have at least one closed aggregate in the store, sorted.
  std::vector<std::string> devices() const;
  Stats stats() const;

 private:
  void run(buffer::Seq position);
  void publish(std::vector<Aggregate> closed, buffer::Seq acked, std::uint64_t decode_errors);

  Options options_;
  buffer::Ring& ring_;
  TumblingWindows windows_;  // owned by the worker thread while it runs

  mutable std::mutex mutex_;  // guards results_ and stats_
  std::deque<Aggregate> results_;
  Stats stats_;

  std::mutex stop_mutex_;
  std::condition_variable stop_cv_;
  std::atomic<bool> stopping_{false};
  std::thread worker_;
};

}  // namespace gw::windowing
