// libFuzzer target: the TOML config parser and its key table (gateway/config.h parse_config).
// Invariants: no crash, UB or leak on any text; a refused config says why, in a message that
// starts with the file name, and points at a line of the text (or at none); an accepted config has
// a sink (Kafka brokers or a Pulsar service URL), the one cross-key requirement.
#include <algorithm>
#include <cstdint>
#include <string_view>

#include "gateway/config.h"
#include "tests/fuzz/check.h"

using gw::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto config = gw::gateway::parse_config(text, "fuzz.toml");
  if (config) {
    require(!config->kafka.brokers.empty() || !config->pulsar.service_url.empty(), "an accepted config without a sink");
    return 0;
  }
  const auto& error = config.error();
  require(!error.message.empty(), "an error without a message");
  require(error.file == "fuzz.toml", "an error that names another file");
  require(error.to_string().starts_with("fuzz.toml:"), "an error line that does not start with the file");
  const auto lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  require(error.line >= 0 && error.line <= lines, "an error on a line the text does not have");
  require(error.column >= 0, "an error at a negative column");
  return 0;
}
