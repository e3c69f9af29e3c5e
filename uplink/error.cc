// The "uplink" error category. Thread-safe (immutable).
#include "uplink/error.h"

#include <string>

namespace gw::uplink {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "uplink"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::invalid_argument:
        return "invalid argument";
      case errc::kafka:
        return "kafka client error";
      case errc::unreachable:
        return "no kafka broker reachable";
      case errc::unknown_topic:
        return "unknown topic";
      case errc::bad_compression:
        return "not a single zstd frame with content size";
      case errc::too_large:
        return "batch too large";
      case errc::malformed:
        return "malformed batch";
      case errc::unsupported_version:
        return "unsupported batch format version";
      case errc::already_started:
        return "already started";
      case errc::unauthorized:
        return "credentials refused by the upstream system";
      case errc::protocol:
        return "protocol error with the upstream system";
      case errc::header_mismatch:
        return "a message header disagrees with the batch";
      case errc::unsupported_codec:
        return "unsupported codec or dictionary";
    }
    return "unknown uplink error";
  }
};

}  // namespace

const std::error_category& uplink_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), uplink_category()}; }

}  // namespace gw::uplink
