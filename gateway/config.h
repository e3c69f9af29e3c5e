// The gateway's configuration: one TOML file, read through one declarative key table
// (gateway/config.cc) that also produces --help-config and the README's config reference.
// Unknown or malformed keys stop start-up with the file, line and key.
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "buffer/ring.h"
#include "gateway/http_server.h"
#include "gateway/status.h"
#include "ingest/mqtt_source.h"
#include "uplink/kafka_sink.h"
#include "uplink/pulsar_sink.h"
#include "windowing/stage.h"

namespace gw::gateway {

// How device messages reach the gateway (ingest/README.md "Ingest modes").
enum class IngestMode {
  subscribe,  // the gateway subscribes to the broker (Paho); what the broker acknowledged and holds is the broker's
  plugin,     // the gateway's mosquitto plugin hands each message over before mosquitto acknowledges it
};

struct Config {
  std::string gateway_id = "edge-1";
  IngestMode ingest_mode = IngestMode::subscribe;
  std::string plugin_socket;  // mode plugin: the socket the plugin connects to; empty: <buffer.path>/ingest.sock
  std::string plugin_socket_group;  // mode plugin: the socket's group (the broker's); empty: the gateway's
  std::string log_level = "info";
  ingest::MqttOptions mqtt;
  int mqtt_sessions = 1;          // > 1: that many ingest worker processes on a shared subscription
  std::string config_path;        // the file it was loaded from (workers load it too); set by load_config
  ingest::DeadLetterOptions dead_letters;  // path empty: <buffer.path>/dead-letters
  buffer::Options buffer;
  windowing::Options windowing;
  uplink::KafkaOptions kafka;  // the raw (telemetry) sink; brokers empty: no Kafka sink (Pulsar only)
  // The Pulsar sink of telemetry (cursor "uplink.pulsar"); service_url empty: none. Either sink, or
  // both, each with its own cursor.
  uplink::PulsarOptions pulsar;
  // Topic of the windowing stage's aggregate records (a second Kafka sink, cursor
  // "uplink.kafka.aggregates"); empty: aggregates are not forwarded (no second sink).
  std::string kafka_aggregates_topic = "telemetry-aggregates";
  // The Pulsar sink of aggregates (cursor "uplink.pulsar.aggregates"), when the Pulsar sink is on;
  // empty: none.
  std::string pulsar_aggregates_topic = "telemetry-aggregates";
  HttpOptions http;
  ReadinessOptions readiness;
};

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error is not tied to a line
  int column = 0;
  std::string key; // dotted key, e.g. "buffer.max_bytes"; empty for syntax errors
  std::string message;
  // "FILE:LINE:COLUMN: key 'KEY': MESSAGE"
  std::string to_string() const;
};

// The socket of ingest mode plugin: ingest.plugin_socket, or ingest.sock in buffer.path.
std::string plugin_socket(const Config& config);
// The mosquitto.conf lines ingest mode plugin needs (edge-gateway --mosquitto-config): the plugin
// (`plugin_path`) for every listener, its socket and topic filters.
std::string mosquitto_config(const Config& config, const std::string& plugin_path);

// Reads and validates a config file.
[[nodiscard]] std::expected<Config, ConfigError> load_config(const std::string& path);
// Same for text already in memory; `file` is used in error messages only.
[[nodiscard]] std::expected<Config, ConfigError> parse_config(std::string_view text, const std::string& file);

struct KeyInfo {
  std::string key;          // dotted, e.g. "uplink.kafka.brokers"
  std::string type;         // "string", "integer", "bytes", "duration", one of "a|b", ...
  std::string default_value;
  std::string description;
};
// Every key the config file accepts, in file order.
std::vector<KeyInfo> config_keys();
// The key table as a Markdown table (README's config reference, `edge-gateway --help-config`).
std::string config_reference_markdown();

}  // namespace gw::gateway
