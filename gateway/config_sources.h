// The [[ingest.source]] tables of the config file (mapped sources, ingest/mapping.h): read into
// Config::mqtt.sources and documented in the config reference. Used by config.cc only.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "gateway/config.h"

#include <toml++/toml.h>

namespace gw::gateway {

// Reads root's [[ingest.source]] tables (if any) into config.mqtt.sources, adds their topic filters
// to config.mqtt.topics, and checks each mapping (file:line:key on error). config.ingest_mode must be
// read already.
std::optional<ConfigError> read_sources(Config& config, const toml::table& root, const std::string& file);

// The rows of the config reference for the keys of an [[ingest.source]] table.
std::vector<KeyInfo> source_key_infos();

}  // namespace gw::gateway
