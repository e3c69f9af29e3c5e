// /metrics: the status snapshot in the Prometheus text exposition format (version 0.0.4), names
// prefixed gw_. Counters end in _total and restart with the process, except the dead-letter
// counters, which are persistent. A value that does not exist (the drain ETA when nothing drains,
// ingest before MQTT started) is left out rather than shown as 0.
//
// Thread-safety: a pure function.
#pragma once

#include <string>

#include "gateway/status.h"

namespace gw::gateway {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

std::string metrics_text(const Snapshot& s);

}  // namespace gw::gateway
