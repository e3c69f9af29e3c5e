// Watermark rules (event time; see windowing/README.md, "Watermarks").
//
// - Device watermark W_d: the largest event time seen from the device, but never beyond the
//   gateway clock + max_skew (a device whose clock runs ahead cannot close windows early). It is
//   re-evaluated when the device sends, when it goes idle and when the stage advances the gateway
//   clock; it never moves backwards.
// - A device is idle once the gateway clock is idle_timeout past the last time it sent. Going idle
//   moves W_d to the end of the last window holding its events (capped the same way), so its own
//   windows close.
// - Group watermark W_g (windows across the devices that share a tag value): the minimum of W_d
//   over the group's active (not idle) devices; when all are idle, the maximum of their W_d. Never
//   moves backwards.
// - A window [start, end) closes once its watermark W satisfies W >= end + allowed_lateness. An
//   event is too late for a window that has closed; it is folded into its windows that are still
//   open and recorded in the late-events store if it missed any.
//
// Thread-safety: pure functions.
#pragma once

#include <algorithm>
#include <cstdint>

#include "windowing/windows.h"

namespace gw::windowing {

// The device watermark that a largest event time `max_event` allows at gateway time `now`.
inline std::int64_t capped_watermark(std::int64_t max_event, std::int64_t now, std::int64_t max_skew) {
  return std::min(max_event, sat_add(now, max_skew));
}

inline bool window_closed(std::int64_t end, std::int64_t watermark, std::int64_t allowed_lateness) {
  return watermark >= sat_add(end, allowed_lateness);
}

}  // namespace gw::windowing
