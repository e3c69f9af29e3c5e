// Tumbling window logic (windowing/tumbling.h). Single-threaded by contract.
#include "windowing/tumbling.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <tuple>

namespace gw::windowing {
namespace {

// Floor division, so that negative event times land in the window before the epoch.
std::int64_t window_start_of(std::int64_t t, std::int64_t size) {
  std::int64_t q = t / size;
  if (t % size != 0 && t < 0) --q;
  return q * size;
}

std::int64_t window_end_of(std::int64_t start, std::int64_t size) {
  // Saturate rather than overflow for event times at the end of the int64 range.
  if (start > std::numeric_limits<std::int64_t>::max() - size)
    return std::numeric_limits<std::int64_t>::max();
  return start + size;
}

}  // namespace

TumblingWindows::TumblingWindows(std::chrono::milliseconds size) : size_ms_(size.count()) {
  if (size_ms_ <= 0) {
    std::fprintf(stderr, "gw::windowing::TumblingWindows: window size must be positive\n");
    std::abort();
  }
}

void TumblingWindows::add(const ingest::Event& event) {
  DeviceState& dev = devices_[event.device.value];
  const std::int64_t t = event.time.ms;
  const std::int64_t start = window_start_of(t, size_ms_);
  const std::int64_t end = window_end_of(start, size_ms_);
  if (dev.has_watermark && end <= dev.watermark) {
    ++late_;
    return;
  }
  ++events_;
  for (const ingest::Metric& m : event.metrics) {
    auto [it, inserted] = dev.open.try_emplace({start, m.name});
    Aggregate& a = it->second;
    if (inserted) {
      a.device = event.device;
      a.metric = m.name;
      a.window_start = ingest::EventTime{start};
      a.window_end = ingest::EventTime{end};
      a.min = m.value;
      a.max = m.value;
    } else {
      a.min = std::min(a.min, m.value);
      a.max = std::max(a.max, m.value);
    }
    ++a.count;
    a.sum += m.value;
  }
  if (!dev.has_watermark || t > dev.watermark) {
    dev.watermark = t;
    dev.has_watermark = true;
  }
  while (!dev.open.empty()) {
    auto first = dev.open.begin();
    if (first->second.window_end.ms > dev.watermark) break;
    closed_.push_back(std::move(first->second));
    dev.open.erase(first);
  }
}

std::vector<Aggregate> TumblingWindows::take_closed() {
  std::vector<Aggregate> out;
  out.swap(closed_);
  std::stable_sort(out.begin(), out.end(), [](const Aggregate& a, const Aggregate& b) {
    return std::tie(a.device.value, a.window_start.ms, a.metric) <
           std::tie(b.device.value, b.window_start.ms, b.metric);
  });
  return out;
}

std::size_t TumblingWindows::open_windows() const {
  std::size_t n = 0;
  for (const auto& [id, dev] : devices_) n += dev.open.size();
  return n;
}

}  // namespace gw::windowing
