// Event-time tumbling windows per (device, metric): count, sum, min, max (and mean) of the metric
// values whose event time falls in [window_start, window_end).
//
// Pure logic: no threads, no I/O, no clock. Watermarks are per device, because device clocks and
// delivery delays are independent: a device's watermark is the largest event time seen from it, and
// a window of that device closes once its watermark reaches the window's end.
//
// Thread-safety: none; one owner (the windowing stage's worker thread) uses an instance at a time.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ingest/event.h"

namespace gw::windowing {

// The aggregate of one metric of one device over one window.
struct Aggregate {
  ingest::DeviceId device;
  std::string metric;
  ingest::EventTime window_start;  // inclusive
  ingest::EventTime window_end;    // exclusive
  std::uint64_t count = 0;
  double sum = 0;
  double min = 0;
  double max = 0;

  double mean() const { return count == 0 ? 0.0 : sum / static_cast<double>(count); }
  bool operator==(const Aggregate&) const = default;
};

class TumblingWindows {
 public:
  // Windows are aligned to the Unix epoch: [k*size, (k+1)*size). size must be positive (aborts
  // otherwise: a zero size is a configuration bug the gateway rejects before it gets here).
  explicit TumblingWindows(std::chrono::milliseconds size);

  // Folds every metric of the event into its device's window, then advances the device's
  // watermark and closes the windows it passed. An event whose window already closed for its
  // device is not folded in; it is counted in late().
  void add(const ingest::Event& event);

  // The windows closed since the last call, ordered by device, then window start, then metric.
  std::vector<Aggregate> take_closed();

  std::chrono::milliseconds size() const { return std::chrono::milliseconds(size_ms_); }
  std::uint64_t events() const { return events_; }  // events folded in
  std::uint64_t late() const { return late_; }      // events dropped as late
  std::size_t open_windows() const;                 // (device, metric, window) still open

 private:
  struct DeviceState {
    std::int64_t watermark = 0;
    bool has_watermark = false;
    // (window start, metric) -> aggregate; ordered by start, so closing takes a prefix.
    std::map<std::pair<std::int64_t, std::string>, Aggregate> open;
  };

  std::int64_t size_ms_;
  std::map<std::string, DeviceState> devices_;
  std::vector<Aggregate> closed_;
  std::uint64_t events_ = 0;
  std::uint64_t late_ = 0;
};

}  // namespace gw::windowing
