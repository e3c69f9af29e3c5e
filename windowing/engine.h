// The windowing engine: folds events into event-time windows (windowing/windows.h) per
// (device, metric) and, when Options::group_by_tag is set, per (tag value, metric) across devices;
// applies the watermark rules of windowing/watermark.h; produces closed-window aggregates and
// late-event records.
//
// Pure: no threads, no I/O, no clock. The gateway time comes with each call (the stage passes the
// ring's ingest time of the record, so a replay of the same records gives the same results). The
// output is a deterministic function of the sequence of calls: every add() or advance() call
// emits its closed windows sorted by (scope, key, metric, window start) and numbers them, so a
// state saved with collect_state() and restored with restore() continues exactly as if the
// process had never stopped.
//
// Thread-safety: none; one owner at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ingest/event.h"
#include "windowing/aggregates.h"
#include "windowing/windows.h"

namespace gw::windowing {

struct EngineOptions {
  WindowSpec window{};
  std::string group_by_tag;                   // tag key for windows across devices (e.g. "site"); empty: off
  std::int64_t allowed_lateness_ms = 0;       // a window stays open this long past its end (event time)
  std::int64_t idle_timeout_ms = 60000;       // gateway time after which a silent device is idle
  std::int64_t max_skew_ms = 60000;           // a device watermark is at most gateway time + this
  std::optional<double> quantile_accuracy = 0.01;  // sketch relative accuracy; nullopt: no quantiles
  std::uint64_t max_devices = 0;              // devices windowed at most; the events of others are not; 0: no cap
};

// An event that arrived after at least one of its windows had closed. Kept, never silently dropped.
struct LateEvent {
  std::uint64_t id = 0;             // 1, 2, ... in arrival order
  ingest::DeviceId device;
  ingest::DeviceSeq seq;
  ingest::EventTime time;
  std::int64_t seen_at_ms = 0;      // gateway time when it arrived
  std::int64_t watermark_ms = 0;    // the device watermark then
  std::uint32_t windows_missed = 0; // (scope, window) pairs it was too late for
  std::uint32_t windows_folded = 0; // (scope, window) pairs that were still open and took it
  std::vector<ingest::Metric> metrics;
  bool operator==(const LateEvent&) const = default;
};
std::vector<std::uint8_t> encode_late(const LateEvent& e);
[[nodiscard]] std::optional<LateEvent> decode_late(std::span<const std::uint8_t> bytes);

struct EngineStats {
  std::uint64_t events = 0;          // events added
  std::uint64_t late_events = 0;     // events that missed at least one closed window
  std::uint64_t windows_closed = 0;  // aggregates produced
  std::uint64_t untagged_events = 0; // grouping on, event without the tag: in device windows only
  std::uint64_t idle_transitions = 0;  // devices that went idle
  std::uint64_t open_windows = 0;    // (scope, key, metric, window) open now
  std::uint64_t devices = 0;
  std::uint64_t groups = 0;
  std::uint64_t unwindowed_events = 0;  // events of devices beyond max_devices, not folded (persistent)
  std::int64_t now_ms = 0;           // the gateway time the engine has reached
};

// One key/value of the engine's saved state (table: one of the kState* names below; value:
// nullopt deletes the key). Encodings in windowing/FORMAT.md.
struct StateWrite {
  const char* table;
  std::vector<std::uint8_t> key;
  std::optional<std::vector<std::uint8_t>> value;
};
inline constexpr const char* kStateMeta = "win.meta";
inline constexpr const char* kStateDevices = "win.dev";
inline constexpr const char* kStateGroups = "win.grp";
inline constexpr const char* kStateSeries = "win.ser";

class Engine {
 public:
  // Invalid options (size <= 0, slide outside (0, size], gap <= 0, negative durations, accuracy
  // outside (0, 0.5]) are a configuration bug: the gateway rejects them first; this aborts.
  explicit Engine(EngineOptions options);
  ~Engine();
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;

  // Folds the event, seen at gateway time now_ms (earlier than a previous now_ms counts as that).
  void add(const ingest::Event& event, std::int64_t now_ms);
  // Advances the gateway time without an event: idle devices and capped watermarks move on.
  void advance(std::int64_t now_ms);
  // Closes every open window now (end of a finite stream; tests and tools).
  void flush();

  // The windows closed and the late events recorded since the last call, in id order.
  std::vector<Aggregate> take_closed();
  std::vector<LateEvent> take_late();
  EngineStats stats() const;
  std::vector<std::string> devices() const;  // sorted

  // The state changed since the last call (or everything with `all`), as table writes. Deterministic.
  void collect_state(std::vector<StateWrite>& out, bool all = false);
  // Loads one saved entry (any order, before any add()); false if it does not decode or belongs to
  // different options (window kind or sizes).
  [[nodiscard]] bool restore(std::string_view table, std::span<const std::uint8_t> value);
  // Finishes a restore: rebuilds the indexes. Call once after the last restore().
  void finish_restore();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw::windowing
