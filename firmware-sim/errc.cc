// The firmware_sim error category. Thread-safe.
#include <string>

#include "firmware-sim/errc.h"

namespace gw::firmware_sim {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "firmware_sim"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::connect_failed: return "could not connect to the broker";
      case errc::bad_data: return "no usable mote data";
      case errc::bad_manifest: return "malformed manifest line";
      case errc::bad_record: return "malformed record line";
      case errc::io_error: return "file i/o error";
      case errc::invalid_argument: return "invalid argument";
    }
    return "unknown firmware_sim error";
  }
};

}  // namespace

const std::error_category& firmware_sim_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), firmware_sim_category()}; }

}  // namespace gw::firmware_sim
