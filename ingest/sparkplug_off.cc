// A build without Sparkplug B (CMake GW_SPARKPLUG=OFF, no protobuf): the config refuses the preset
// (sparkplug_supported() is false), so no SparkplugSessions is ever made.
#include <cstdio>
#include <cstdlib>

#include "ingest/sparkplug.h"

namespace gw::ingest {

struct SparkplugSessions::State {};

SparkplugSessions::SparkplugSessions(std::string) {
  std::fprintf(stderr, "ingest: Sparkplug B is not in this build\n");
  std::abort();
}
SparkplugSessions::~SparkplugSessions() = default;
MapResult SparkplugSessions::decode(const SourceMapping&, std::string_view, std::span<const std::uint8_t>, std::int64_t) {
  std::abort();
}
std::map<std::string, std::uint64_t> SparkplugSessions::deaths() const { return {}; }
std::string encode_sparkplug(const SparkplugPayload&) { return {}; }
bool sparkplug_supported() { return false; }

}  // namespace gw::ingest
