// Where the simulated devices' metric values come from: a replay of the Intel Berkeley Lab mote
// files (temperature, humidity, light, voltage), or a seeded random walk of the same four metrics.
//
// Thread-safety: a MetricSource is used by one thread at a time.
#pragma once

#include <cstdint>
#include <expected>
#include <filesystem>
#include <memory>
#include <system_error>
#include <vector>

#include "firmware-sim/errc.h"
#include "ingest/event.h"

namespace gw::firmware_sim {

class MetricSource {
 public:
  virtual ~MetricSource() = default;
  // The next reading of device `device` (0-based): the metrics it has (a replayed row may lack
  // some, never all). Values are always finite.
  virtual std::vector<ingest::Metric> next(std::size_t device) = 0;
};

// Replays the files "<mote>.txt" in `dir` (lines "date time epoch moteid temperature humidity light
// voltage", single spaces; an empty or unparsable metric is left out of that reading, a row with
// no usable metric or not eight columns is skipped). Device i replays file
// i mod (number of files), ordered by mote id, cycling at the end. Fails with errc::bad_data if
// the directory has no such file with at least one usable row.
[[nodiscard]] std::expected<std::unique_ptr<MetricSource>, std::error_code> intel_lab_source(
    const std::filesystem::path& dir);

// A random walk per device, deterministic for a given seed.
std::unique_ptr<MetricSource> synthetic_source(std::uint64_t seed);

}  // namespace gw::firmware_sim
