// Errors of the firmware simulator and verifier. Thread-safety: plain values.
#pragma once

#include <system_error>

namespace gw::firmware_sim {

enum class errc {
  connect_failed = 1,  // the broker did not accept the connection
  bad_data,            // --data directory has no usable mote file
  bad_manifest,        // a manifest line is not "DEVICE SEQ BOOT" (or "DEVICE SEQ")
  bad_record,          // a records line is not the JSON uplink-cat prints
  io_error,            // a file could not be opened or written
  invalid_argument,    // an option out of range
};
const std::error_category& firmware_sim_category() noexcept;
std::error_code make_error_code(errc e) noexcept;

}  // namespace gw::firmware_sim

template <>
struct std::is_error_code_enum<gw::firmware_sim::errc> : std::true_type {};
