// Window assigners: which event-time windows an event belongs to.
//
// - tumbling(size): [k*size, (k+1)*size), aligned to the Unix epoch; one window per event.
// - hopping(size, slide): [k*slide, k*slide + size) for every k with k*slide <= t < k*slide + size;
//   ceil(size / slide) windows per event (size and slide need not divide each other).
// - session(gap): an event at t opens [t, t + gap); windows of one key that overlap merge, so a
//   session is [first event, last event + gap) and ends after `gap` of silence in event time.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <limits>

#include "windowing/aggregates.h"

namespace gw::windowing {

struct WindowSpec {
  WindowKind kind = WindowKind::tumbling;
  std::int64_t size_ms = 10000;   // tumbling, hopping; > 0
  std::int64_t slide_ms = 10000;  // hopping; 0 < slide <= size
  std::int64_t gap_ms = 30000;    // session; > 0
};

inline std::int64_t sat_add(std::int64_t a, std::int64_t b) {
  std::int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return b > 0 ? std::numeric_limits<std::int64_t>::max()
                                                     : std::numeric_limits<std::int64_t>::min();
  return r;
}

// Floor division (b > 0), so times before the epoch land in the window before it.
inline std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  std::int64_t q = a / b;
  if (a % b != 0 && a < 0) --q;
  return q;
}

// Calls f(start, end) for every tumbling or hopping window that contains t, oldest first.
template <class F>
void for_each_window(const WindowSpec& spec, std::int64_t t, F&& f) {
  if (spec.kind == WindowKind::tumbling) {
    const std::int64_t start = floor_div(t, spec.size_ms) * spec.size_ms;
    f(start, sat_add(start, spec.size_ms));
    return;
  }
  const std::int64_t last = floor_div(t, spec.slide_ms);
  const std::int64_t first = floor_div(t - spec.size_ms, spec.slide_ms) + 1;
  for (std::int64_t k = first; k <= last; ++k) {
    const std::int64_t start = k * spec.slide_ms;
    f(start, sat_add(start, spec.size_ms));
  }
}

// The latest end of a window that holds an event at t: once the watermark passes it, every window
// that holds events up to t can close (used when a device goes idle).
inline std::int64_t last_end_containing(const WindowSpec& spec, std::int64_t t) {
  switch (spec.kind) {
    case WindowKind::tumbling: return sat_add(floor_div(t, spec.size_ms) * spec.size_ms, spec.size_ms);
    case WindowKind::hopping: return sat_add(floor_div(t, spec.slide_ms) * spec.slide_ms, spec.size_ms);
    case WindowKind::session: return sat_add(t, spec.gap_ms);
  }
  return t;
}

}  // namespace gw::windowing
