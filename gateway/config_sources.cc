// The [[ingest.source]] tables of the config file: mapped sources (ingest/mapping.h). One row per key
// (type, default, description) drives both the reader and the reference (--help-config), like the
// main key table in config.cc. A source that names a preset starts from it; its other keys override.
#include <algorithm>
#include <functional>

#include <toml++/toml.h>

#include "gateway/config_sources.h"

namespace gw::gateway {
namespace {

using ingest::SourceMapping;
using Setter = std::function<std::optional<std::string>(SourceMapping&, const toml::node&)>;

struct SourceKey {
  std::string key, type, default_value, description;
  Setter set;
};

Setter text(std::string SourceMapping::*field, bool allow_empty = true) {
  return [field, allow_empty](SourceMapping& m, const toml::node& n) -> std::optional<std::string> {
    auto v = n.value<std::string>();
    if (!n.is_string() || !v) return "expected a string";
    if (!allow_empty && v->empty()) return "must not be empty";
    m.*field = *v;
    return std::nullopt;
  };
}

Setter flag(bool SourceMapping::*field) {
  return [field](SourceMapping& m, const toml::node& n) -> std::optional<std::string> {
    if (!n.is_boolean()) return "expected true or false";
    m.*field = *n.value<bool>();
    return std::nullopt;
  };
}

Setter texts(std::vector<std::string> SourceMapping::*field) {
  return [field](SourceMapping& m, const toml::node& n) -> std::optional<std::string> {
    const toml::array* a = n.as_array();
    if (a == nullptr) return "expected an array of strings";
    std::vector<std::string> out;
    for (const toml::node& e : *a) {
      if (!e.is_string()) return "expected an array of strings";
      out.push_back(*e.value<std::string>());
    }
    m.*field = std::move(out);
    return std::nullopt;
  };
}

const std::vector<std::pair<std::string, ingest::TimeForm>>& time_forms() {
  static const std::vector<std::pair<std::string, ingest::TimeForm>> forms = {
      {"epoch_s", ingest::TimeForm::epoch_s}, {"epoch_ms", ingest::TimeForm::epoch_ms},
      {"epoch_us", ingest::TimeForm::epoch_us}, {"rfc3339", ingest::TimeForm::rfc3339},
      {"local", ingest::TimeForm::local}, {"auto", ingest::TimeForm::automatic}};
  return forms;
}

const std::vector<SourceKey>& source_keys() {
  static const std::vector<SourceKey> table = {
      {"preset", "zigbee2mqtt|tasmota|shelly|chirpstack|tts|sparkplug", "(none)",
       "Start from a preset (README \"Mapped sources\"); the keys below override its values.", nullptr},
      {"topic", "string", "(the preset's)",
       "MQTT topic filter (+, #) of this source; subscribed (mode plugin: handed over) with mqtt.topics. The first "
       "source whose filter matches a topic maps it; topics no source matches are native payloads.",
       text(&SourceMapping::topic, false)},
      {"device", "string", "(the preset's)",
       "Where the device id comes from: \"topic:N\" (topic level N, 0-based), \"payload:PATH\" (dotted path, array "
       "elements by index) or \"client_id\" (the publisher's MQTT client id; ingest.mode = \"plugin\" only).",
       text(&SourceMapping::device, false)},
      {"time", "string", "\"\"",
       "\"payload:PATH\" of the event time; empty, or absent from a payload: the arrival time (counted in "
       "arrival_times).",
       text(&SourceMapping::time)},
      {"time_format", "epoch_s|epoch_ms|epoch_us|rfc3339|local|auto", "\"epoch_ms\"",
       "How the time is written: epoch seconds (fractions kept to the ms), ms or us; RFC 3339 (with an offset); local "
       "ISO 8601 without an offset, in time_zone; auto: a number is epoch ms, a text RFC 3339.",
       [](SourceMapping& m, const toml::node& n) -> std::optional<std::string> {
         auto v = n.value<std::string>();
         for (const auto& [name, form] : time_forms()) {
           if (n.is_string() && v == name) {
             m.time_format = form;
             return std::nullopt;
           }
         }
         return "expected one of epoch_s, epoch_ms, epoch_us, rfc3339, local, auto";
       }},
      {"time_zone", "string", "\"UTC\"",
       "time_format = \"local\": \"UTC\", a fixed offset (\"+01:00\"), or \"gateway\" (the gateway's TZ with its "
       "daylight-saving rules; the repeated autumn hour is read as its first pass).",
       text(&SourceMapping::time_zone, false)},
      {"time_required", "boolean", "false", "true: a payload without its time is a dead letter (mapping), not stamped on arrival.",
       flag(&SourceMapping::time_required)},
      {"seq", "string", "\"\"",
       "\"payload:PATH\" of the message counter; empty: the source has none, and a message is identified by its "
       "device, event time and values (README \"Mapped sources\").",
       text(&SourceMapping::seq)},
      {"seq_bits", "integer 8|16|32|64", "32", "Width of this source's counter (after 2^seq_bits - 1 comes 0).",
       [](SourceMapping& m, const toml::node& n) -> std::optional<std::string> {
         auto v = n.value<std::int64_t>();
         if (!n.is_integer() || (*v != 8 && *v != 16 && *v != 32 && *v != 64)) return "must be 8, 16, 32 or 64";
         m.seq_bits = static_cast<std::uint8_t>(*v);
         return std::nullopt;
       }},
      {"seq_missing_is_zero", "boolean", "false",
       "A payload without its counter has counter 0 (proto3 JSON writers leave zeros out); false: a dead letter.",
       flag(&SourceMapping::seq_missing_is_zero)},
      {"boot", "string", "\"\"",
       "\"payload:PATH\" of a boot or session id (an integer, or a text whose hash is used); empty: none.",
       text(&SourceMapping::boot)},
      {"metrics", "array of strings", "[\"\"]",
       "Payload paths whose numeric leaves are metrics (\"\" is the whole payload); booleans count as 0/1, texts "
       "and nulls are skipped. A path missing from a payload makes it a dead letter (mapping).",
       texts(&SourceMapping::metrics)},
      {"separator", "string", "\".\"", "Joins the levels of a nested metric's name (\"AM2301.Temperature\").",
       text(&SourceMapping::separator, false)},
      {"include", "array of strings", "[]", "Metric names kept (empty: all); \"prefix*\" matches a prefix.",
       texts(&SourceMapping::include)},
      {"exclude", "array of strings", "[]", "Metric names dropped; \"prefix*\" matches a prefix.",
       texts(&SourceMapping::exclude)},
      {"tags", "table of strings", "{}",
       "Tags: each value is \"topic:N\", \"payload:PATH\" (left out when absent) or fixed text.",
       [](SourceMapping& m, const toml::node& n) -> std::optional<std::string> {
         const toml::table* t = n.as_table();
         if (t == nullptr) return "expected a table of strings";
         m.tags.clear();
         for (const auto& [k, v] : *t) {
           if (!v.is_string()) return "tag " + std::string(k.str()) + ": expected a string";
           m.tags.emplace_back(std::string(k.str()), *v.value<std::string>());
         }
         return std::nullopt;
       }},
      {"when", "string", "\"\"",
       "\"payload:PATH\" of a text that says whether a message is an event; with when_values, other messages are "
       "acknowledged and not stored (counted in not_events).",
       text(&SourceMapping::when)},
      {"when_values", "array of strings", "[]", "The texts at `when` that make a message an event.",
       texts(&SourceMapping::when_values)},
  };
  return table;
}

ConfigError error_at(const std::string& file, const toml::node& node, std::string key, std::string message) {
  const auto& where = node.source();
  return ConfigError{file, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column), std::move(key),
                     std::move(message)};
}

}  // namespace

std::optional<ConfigError> read_sources(Config& config, const toml::table& root, const std::string& file) {
  const toml::node* node = root.at_path("ingest.source").node();
  if (node == nullptr) return std::nullopt;
  const toml::array* sources = node->as_array();
  if (sources == nullptr || !sources->is_array_of_tables()) {
    return error_at(file, *node, "ingest.source", "expected [[ingest.source]] tables");
  }
  std::vector<SourceMapping> out;
  std::vector<const toml::table*> tables;
  for (std::size_t i = 0; i < sources->size(); ++i) {
    const toml::table& t = *(*sources)[i].as_table();
    const std::string prefix = "ingest.source[" + std::to_string(i) + "].";
    SourceMapping m;
    if (const toml::node* p = t.get("preset")) {
      auto name = p->value<std::string>();
      auto preset = name ? ingest::preset_mapping(*name) : std::nullopt;
      if (!p->is_string() || !preset) {
        return error_at(file, *p, prefix + "preset",
                        "expected one of zigbee2mqtt, tasmota, shelly, chirpstack, tts, sparkplug");
      }
      m = *preset;
    }
    for (const auto& [k, v] : t) {
      const auto key = std::ranges::find(source_keys(), std::string_view(k.str()), &SourceKey::key);
      if (key == source_keys().end()) return error_at(file, v, prefix + std::string(k.str()), "unknown key");
      if (!key->set) continue;  // preset, read first
      if (auto message = key->set(m, v)) return error_at(file, v, prefix + key->key, *message);
    }
    if (m.decoder == SourceMapping::Decoder::sparkplug && config.mqtt_sessions > 1 &&
        config.ingest_mode == IngestMode::subscribe) {
      return error_at(file, t, prefix + "preset",
                      "sparkplug needs one session (mqtt.sessions = 1, or ingest.mode = \"plugin\"): a node's BIRTH "
                      "and DATA must reach the same aliases");
    }
    if (m.device == "client_id" && config.ingest_mode != IngestMode::plugin) {
      const toml::node* d = t.get("device");
      return error_at(file, d ? *d : static_cast<const toml::node&>(t), prefix + "device",
                      "\"client_id\" is known in ingest.mode = \"plugin\" only");
    }
    out.push_back(std::move(m));
    tables.push_back(&t);
  }
  if (auto mapper = ingest::Mapper::compile(out); !mapper) {
    const auto& e = mapper.error();
    const toml::table& t = *tables[e.index];
    const toml::node* at = t.get(e.key);
    return error_at(file, at ? *at : static_cast<const toml::node&>(t),
                    "ingest.source[" + std::to_string(e.index) + "]." + e.key, e.message);
  }
  for (const SourceMapping& m : out) {  // every source's topics reach the gateway
    if (std::ranges::find(config.mqtt.topics, m.topic) == config.mqtt.topics.end()) config.mqtt.topics.push_back(m.topic);
  }
  config.mqtt.sources = std::move(out);
  config.mqtt.sparkplug_state_dir = config.buffer.path + "/sparkplug";
  return std::nullopt;
}

std::vector<KeyInfo> source_key_infos() {
  std::vector<KeyInfo> out;
  for (const SourceKey& k : source_keys()) {
    out.push_back({"ingest.source[].", k.type, k.default_value, k.description});
    out.back().key += k.key;
  }
  return out;
}

}  // namespace gw::gateway
