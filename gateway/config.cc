// The key table and the TOML reader (toml++). Every accepted key is one row of kKeys: its type,
// its default (read back from a default Config, so the docs cannot drift) and its description.
#include "gateway/config.h"
#include "gateway/config_sources.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <toml++/toml.h>

namespace gw::gateway {
namespace {

using Setter = std::function<std::optional<std::string>(Config&, const toml::node&)>;
using Shower = std::function<std::string(Config)>;

struct Key {
  std::string key;
  std::string type;
  std::string description;
  Setter set;
  Shower show;
};

std::optional<std::uint64_t> parse_bytes(std::string_view text) {
  std::uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr == text.data()) return std::nullopt;
  std::string_view unit(ptr, text.data() + text.size() - ptr);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  static const std::map<std::string_view, std::uint64_t> units = {
      {"", 1},          {"B", 1},           {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
      {"KB", 1000},     {"MB", 1000000},    {"GB", 1000000000}};
  auto it = units.find(unit);
  if (it == units.end()) return std::nullopt;
  if (value > std::numeric_limits<std::uint64_t>::max() / it->second) return std::nullopt;  // would wrap
  return value * it->second;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || ptr == text.data() || value < 0) return std::nullopt;
  std::string_view unit(ptr, text.data() + text.size() - ptr);
  static const std::map<std::string_view, std::int64_t> units = {
      {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  auto it = units.find(unit);
  if (it == units.end()) return std::nullopt;
  // fuzz_config: "6148914691236517203s" overflowed the multiplication (undefined behaviour).
  if (value > std::numeric_limits<std::int64_t>::max() / it->second) return std::nullopt;
  return std::chrono::milliseconds(value * it->second);
}

std::string show_bytes(std::uint64_t v) {
  if (v != 0 && v % (1ull << 30) == 0) return std::to_string(v >> 30) + "GiB";
  if (v != 0 && v % (1ull << 20) == 0) return std::to_string(v >> 20) + "MiB";
  if (v != 0 && v % (1ull << 10) == 0) return std::to_string(v >> 10) + "KiB";
  return std::to_string(v);
}

std::string show_duration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms != 0 && ms % 86400000 == 0) return std::to_string(ms / 86400000) + "d";
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// Binders: `get` is a lambda returning a reference to the field inside a Config.
template <class Get>
Key string_key(std::string key, Get get, std::string description, bool allow_empty = false) {
  return {key, "string", std::move(description),
          [get, allow_empty](Config& c, const toml::node& n) -> std::optional<std::string> {
            auto v = n.value<std::string>();
            if (!n.is_string() || !v) return "expected a string";
            if (!allow_empty && v->empty()) return "must not be empty";
            get(c) = *v;
            return std::nullopt;
          },
          [get](Config c) { return "\"" + std::string(get(c)) + "\""; }};
}

template <class Get>
Key int_key(std::string key, Get get, std::int64_t min, std::int64_t max, std::string description) {
  return {key, "integer " + std::to_string(min) + ".." + std::to_string(max), std::move(description),
          [get, min, max](Config& c, const toml::node& n) -> std::optional<std::string> {
            auto v = n.value<std::int64_t>();
            if (!n.is_integer() || !v) return "expected an integer";
            if (*v < min || *v > max) return "must be between " + std::to_string(min) + " and " + std::to_string(max);
            get(c) = static_cast<std::remove_reference_t<decltype(get(c))>>(*v);
            return std::nullopt;
          },
          [get](Config c) { return std::to_string(get(c)); }};
}

// An integer that must be one of a few counter widths (8, 16, 32, 64).
template <class Get>
Key bits_key(std::string key, Get get, std::string description) {
  return {key, "integer 8|16|32|64", std::move(description),
          [get](Config& c, const toml::node& n) -> std::optional<std::string> {
            auto v = n.value<std::int64_t>();
            if (!n.is_integer() || !v) return "expected an integer";
            if (*v != 8 && *v != 16 && *v != 32 && *v != 64) return "must be 8, 16, 32 or 64";
            get(c) = static_cast<std::remove_reference_t<decltype(get(c))>>(*v);
            return std::nullopt;
          },
          [get](Config c) { return std::to_string(get(c)); }};
}

template <class Get>
Key bytes_key(std::string key, Get get, std::uint64_t min, std::string description) {
  return {key, "bytes", std::move(description),
          [get, min](Config& c, const toml::node& n) -> std::optional<std::string> {
            std::optional<std::uint64_t> v;
            if (n.is_integer() && *n.value<std::int64_t>() >= 0) v = static_cast<std::uint64_t>(*n.value<std::int64_t>());
            if (n.is_string()) v = parse_bytes(*n.value<std::string>());
            if (!v) return "expected bytes: an integer or a string such as \"64MiB\" (B, KiB, MiB, GiB, KB, MB, GB)";
            if (*v < min) return "must be at least " + show_bytes(min);
            get(c) = static_cast<std::remove_reference_t<decltype(get(c))>>(*v);
            return std::nullopt;
          },
          [get](Config c) { return "\"" + show_bytes(get(c)) + "\""; }};
}

template <class Get>
Key duration_key(std::string key, Get get, std::chrono::milliseconds min, std::string description) {
  return {key, "duration", std::move(description),
          [get, min](Config& c, const toml::node& n) -> std::optional<std::string> {
            std::optional<std::chrono::milliseconds> v;
            if (n.is_string()) v = parse_duration(*n.value<std::string>());
            if (!v) return "expected a duration string such as \"500ms\", \"10s\", \"5m\", \"1h\", \"7d\"";
            if (*v < min) return "must be at least " + show_duration(min);
            get(c) = std::chrono::duration_cast<std::remove_reference_t<decltype(get(c))>>(*v);
            return std::nullopt;
          },
          [get](Config c) { return "\"" + show_duration(std::chrono::duration_cast<std::chrono::milliseconds>(get(c))) + "\""; }};
}

template <class Get, class E>
Key enum_key(std::string key, Get get, std::vector<std::pair<std::string, E>> names, std::string description) {
  std::string type;
  for (const auto& [name, value] : names) type += (type.empty() ? "" : "|") + name;
  return {key, type, std::move(description),
          [get, names, type](Config& c, const toml::node& n) -> std::optional<std::string> {
            if (auto v = n.value<std::string>(); n.is_string() && v) {
              for (const auto& [name, value] : names) {
                if (*v == name) {
                  get(c) = value;
                  return std::nullopt;
                }
              }
            }
            return "expected one of " + type;
          },
          [get, names](Config c) {
            for (const auto& [name, value] : names) {
              if (get(c) == value) return "\"" + name + "\"";
            }
            return std::string("?");
          }};
}

template <class Get>
Key bool_key(std::string key, Get get, std::string description) {
  return {key, "boolean", std::move(description),
          [get](Config& c, const toml::node& n) -> std::optional<std::string> {
            auto v = n.value<bool>();
            if (!n.is_boolean() || !v) return "expected true or false";
            get(c) = *v;
            return std::nullopt;
          },
          [get](Config c) { return std::string(get(c) ? "true" : "false"); }};
}

template <class Get>
Key string_list_key(std::string key, Get get, std::string description) {
  return {key, "array of strings", std::move(description),
          [get](Config& c, const toml::node& n) -> std::optional<std::string> {
            const toml::array* a = n.as_array();
            if (a == nullptr || a->empty()) return "expected a non-empty array of strings";
            std::vector<std::string> out;
            for (const toml::node& e : *a) {
              auto v = e.value<std::string>();
              if (!e.is_string() || !v || v->empty()) return "expected a non-empty array of non-empty strings";
              out.push_back(*v);
            }
            get(c) = std::move(out);
            return std::nullopt;
          },
          [get](Config c) {
            std::string out = "[";
            for (const auto& s : get(c)) out += (out.size() > 1 ? ", \"" : "\"") + s + "\"";
            return out + "]";
          }};
}

const std::vector<Key>& keys() {
  using std::chrono::milliseconds;
  static const std::vector<Key> table = {
      string_key("gateway_id", [](Config& c) -> auto& { return c.gateway_id; },
                 "This gateway's id: the Kafka message key and header, and the dedup scope of its sequence numbers. "
                 "Unique per gateway; never change it for a given buffer."),
      enum_key("log_level", [](Config& c) -> auto& { return c.log_level; },
               std::vector<std::pair<std::string, std::string>>{{"trace", "trace"}, {"debug", "debug"}, {"info", "info"},
                                                                {"warn", "warn"}, {"error", "error"}},
               "Logging threshold (stderr)."),

      string_key("mqtt.url", [](Config& c) -> auto& { return c.mqtt.url; },
                 "Broker URL: tcp://HOST:PORT or ssl://HOST:PORT."),
      string_list_key("mqtt.topics", [](Config& c) -> auto& { return c.mqtt.topics; },
                      "Topic filters subscribed at QoS 1."),
      string_key("mqtt.client_id", [](Config& c) -> auto& { return c.mqtt.client_id; },
                 "MQTT client id. Fixed, because the broker keeps the persistent session (and queues messages "
                 "while the gateway is down) under this id."),
      int_key("mqtt.sessions", [](Config& c) -> auto& { return c.mqtt_sessions; }, 1, 64,
              "MQTT sessions, each in its own ingest worker process on a shared subscription "
              "($share/<client_id>/<topic>) with client id <client_id>-<n>, all storing through this "
              "process's one buffer writer (their commits are shared). 1: one session in this process, "
              "plain subscription (best with durability = \"os\"). With durability = \"fsync\" each sync "
              "holds at most one message per session: 32 gave the most here (2 cores). Start and stop them "
              "together; see README \"Ingest\" before lowering it."),
      enum_key("mqtt.version", [](Config& c) -> auto& { return c.mqtt.mqtt_version; },
               std::vector<std::pair<std::string, int>>{{"3.1.1", 4}, {"5", 5}}, "MQTT protocol version."),
      duration_key("mqtt.keep_alive", [](Config& c) -> auto& { return c.mqtt.keep_alive; }, milliseconds(1000),
                   "MQTT keep-alive interval."),
      string_key("mqtt.username", [](Config& c) -> auto& { return c.mqtt.username; }, "User name (empty: none).", true),
      string_key("mqtt.password", [](Config& c) -> auto& { return c.mqtt.password; }, "Password (empty: none).", true),
      string_key("mqtt.ca_file", [](Config& c) -> auto& { return c.mqtt.ca_file; },
                 "PEM file of the CA that signed the broker's certificate (ssl:// URLs).", true),
      string_key("mqtt.cert_file", [](Config& c) -> auto& { return c.mqtt.cert_file; },
                 "PEM client certificate for TLS client authentication (empty: none).", true),
      string_key("mqtt.key_file", [](Config& c) -> auto& { return c.mqtt.key_file; },
                 "PEM private key of cert_file (empty: none).", true),

      string_key("mqtt.device_pattern", [](Config& c) -> auto& { return c.mqtt.device_pattern; },
                 "Topic pattern with one {device} level: a matching topic names the device (it wins over the "
                 "payload's device id, a mismatch is counted). Empty: the payload's device id.",
                 true),

      enum_key("ingest.mode", [](Config& c) -> auto& { return c.ingest_mode; },
               std::vector<std::pair<std::string, IngestMode>>{{"subscribe", IngestMode::subscribe},
                                                                {"plugin", IngestMode::plugin}},
               "How device messages arrive. plugin: mosquitto runs the gateway's plugin, which hands each message "
               "on the mqtt.topics to the gateway and lets mosquitto acknowledge the device only once it is stored "
               "(`edge-gateway --mosquitto-config` prints the broker's lines). subscribe: the gateway subscribes "
               "to the broker, which acknowledges devices itself and holds what it has not handed over yet."),
      string_key("ingest.plugin_socket", [](Config& c) -> auto& { return c.plugin_socket; },
                 "Mode plugin: the Unix socket the plugin connects to. Empty: ingest.sock in buffer.path.", true),
      string_key("ingest.plugin_socket_group", [](Config& c) -> auto& { return c.plugin_socket_group; },
                 "Mode plugin: the group given the socket (mode 0660), so that the broker, which runs as its "
                 "own user, can connect (the package: \"mosquitto\"). Empty: the gateway's group.",
                 true),
      bytes_key("ingest.max_payload_bytes", [](Config& c) -> auto& { return c.mqtt.limits.max_payload_bytes; }, 64,
                "Larger payloads are rejected (dead letter, reason oversize)."),
      duration_key("ingest.max_skew", [](Config& c) -> auto& { return c.mqtt.limits.max_skew; }, milliseconds(1000),
                   "Events whose time is further than this from the gateway clock are rejected (dead letter, "
                   "reason bad_timestamp)."),
      string_key("ingest.dead_letters_path", [](Config& c) -> auto& { return c.dead_letters.path; },
                 "Directory of the dead-letter store (LMDB). Empty: <buffer.path>/dead-letters.", true),
      int_key("ingest.dead_letters_max", [](Config& c) -> auto& { return c.dead_letters.max_entries; }, 1, 10000000,
              "Rejected messages kept; beyond it the oldest are evicted (counted)."),

      int_key("ingest.dedup_window", [](Config& c) -> auto& { return c.buffer.dedup.window; }, 8, 65536,
              "Readings remembered per device (and per boot), with a digest of their values, to drop copies "
              "(retransmissions, redeliveries) and to catch a device reusing a number for other values "
              "(conflicting_duplicate); a device costs about 8 x this many bytes in the buffer. It must cover a "
              "device's readings over its longest retransmission delay; a seq further behind is, without a boot "
              "id, a reboot only when newer than the last accepted event (see reboot_time_bound). At most "
              "2^(seq_bits - 2)."),
      bits_key("ingest.seq_bits", [](Config& c) -> auto& { return c.buffer.dedup.seq_bits; },
               "Width of the devices' sequence counters: after 2^seq_bits - 1 comes 0, the next number (not a "
               "reboot). 16 for LoRaWAN FCnt and many MCUs, 8 for Sparkplug B."),
      duration_key("ingest.reboot_time_bound", [](Config& c) -> auto& { return c.buffer.dedup.reboot_time_bound; },
                   milliseconds(0),
                   "A device without a boot id whose seq goes back by dedup_window or more has rebooted when the "
                   "event is newer than its last accepted one; if it is not newer and that seq was never seen, it is "
                   "a late event, stored when not older than the last accepted one by more than this, else a dead "
                   "letter (stale_sequence)."),

      string_key("buffer.path", [](Config& c) -> auto& { return c.buffer.path; },
                 "Directory of the LMDB ring buffer (created if missing)."),
      bytes_key("buffer.max_bytes", [](Config& c) -> auto& { return c.buffer.max_bytes; }, 1ull << 20,
                "Upper bound of the buffer's size on disk."),
      enum_key("buffer.durability", [](Config& c) -> auto& { return c.buffer.durability; },
               std::vector<std::pair<std::string, buffer::Durability>>{{"fsync", buffer::Durability::fsync},
                                                                       {"os", buffer::Durability::os}},
               "fsync: an acknowledged event survives power loss (every commit is synced). os: it survives a crash "
               "of the gateway process; a power loss can take what arrived since the last background sync."),
      duration_key("buffer.sync_interval", [](Config& c) -> auto& { return c.buffer.sync_interval; }, milliseconds(10),
                   "With durability = \"os\": how often the buffer is synced to disk."),
      enum_key("buffer.overflow", [](Config& c) -> auto& { return c.buffer.overflow; },
               std::vector<std::pair<std::string, buffer::Overflow>>{{"block", buffer::Overflow::block},
                                                                     {"drop-oldest", buffer::Overflow::drop_oldest},
                                                                     {"summarize", buffer::Overflow::summarize}},
               "When the buffer is full (max_bytes). block: stop acknowledging MQTT (the broker queues) until "
               "the consumers catch up; nothing is lost. drop-oldest: evict the oldest records, counted per "
               "consumer in /status. summarize: evict only records the windowing stage has counted (their "
               "aggregates still go upstream; aggregates are never evicted), else wait as with block."),
      duration_key("buffer.group_commit_wait", [](Config& c) -> auto& { return c.buffer.group_commit_wait; },
                   milliseconds(0),
                   "With durability = \"fsync\": how long a commit may wait for the other appenders of recent "
                   "groups to join it (one sync for all); with [mqtt] sessions > 1, how long the gateway waits "
                   "for as many workers' records as recent commits held. A lone appender never waits. "
                   "\"0ms\": off."),

      enum_key("windowing.kind", [](Config& c) -> auto& { return c.windowing.kind; },
               std::vector<std::pair<std::string, windowing::WindowKind>>{{"tumbling", windowing::WindowKind::tumbling},
                                                                          {"hopping", windowing::WindowKind::hopping},
                                                                          {"session", windowing::WindowKind::session}},
               "Window kind (event time). tumbling: back-to-back windows of `size`; hopping: windows of `size` "
               "starting every `slide`; session: a window per burst, ended by `gap` without events."),
      duration_key("windowing.size", [](Config& c) -> auto& { return c.windowing.size; }, milliseconds(1),
                   "Tumbling and hopping window length (event time)."),
      duration_key("windowing.slide", [](Config& c) -> auto& { return c.windowing.slide; }, milliseconds(1),
                   "Hopping: a window starts every slide (at most size)."),
      duration_key("windowing.gap", [](Config& c) -> auto& { return c.windowing.gap; }, milliseconds(1),
                   "Session: the silence (event time) that ends a session."),
      string_key("windowing.group_by_tag", [](Config& c) -> auto& { return c.windowing.group_by_tag; },
                 "Also aggregate each metric across the devices sharing this tag's value (e.g. \"site\"); "
                 "empty: per device only.", true),
      duration_key("windowing.allowed_lateness", [](Config& c) -> auto& { return c.windowing.allowed_lateness; },
                   milliseconds(0), "How long past its end (event time) a window still takes late events."),
      duration_key("windowing.idle_timeout", [](Config& c) -> auto& { return c.windowing.idle_timeout; },
                   milliseconds(1), "A device silent this long (gateway clock) no longer holds group windows "
                                    "open, and its own windows close."),
      duration_key("windowing.max_skew", [](Config& c) -> auto& { return c.windowing.max_skew; }, milliseconds(0),
                   "A device watermark never passes the gateway clock plus this (a clock running ahead "
                   "cannot close windows early)."),
      enum_key("windowing.quantiles", [](Config& c) -> auto& { return c.windowing.quantile_accuracy; },
               std::vector<std::pair<std::string, std::optional<double>>>{{"off", std::nullopt},
                                                                          {"0.5%", 0.005},
                                                                          {"1%", 0.01},
                                                                          {"2%", 0.02},
                                                                          {"5%", 0.05}},
               "p50/p90/p99 per window from a sketch with this relative accuracy (memory grows as it "
               "shrinks), or off."),
      duration_key("windowing.retention", [](Config& c) -> auto& { return c.windowing.retention; },
                   milliseconds(60000), "Closed aggregates are kept this long in the results table (gateway clock)."),
      int_key("windowing.max_results", [](Config& c) -> auto& { return c.windowing.max_results; }, 1, 100000000,
              "And at most this many; the oldest go first. They live in the buffer's LMDB file (about 512 bytes "
              "each) and, with the late events and the devices' window state, must fit in half of "
              "buffer.max_bytes (less its headroom): left out, it is lowered to what fits; given, it is "
              "refused if it does not."),
      int_key("windowing.max_late", [](Config& c) -> auto& { return c.windowing.max_late; }, 1, 10000000,
              "Late events kept for /late (all are counted); the oldest go first. About 512 bytes each in the "
              "buffer; fitted to buffer.max_bytes like max_results."),
      int_key("windowing.max_devices", [](Config& c) -> auto& { return c.windowing.max_devices; }, 1, 100000000,
              "Devices windowed; the events of devices beyond it are stored and forwarded but not folded "
              "into windows (counted: unwindowed_events). About 2 KiB each in the buffer (a few metrics); "
              "fitted to buffer.max_bytes like max_results."),
      duration_key("windowing.commit_interval", [](Config& c) -> auto& { return c.windowing.commit_interval; },
                   milliseconds(10), "How often window state, results and cursor are committed while events flow."),
      int_key("windowing.commit_events", [](Config& c) -> auto& { return c.windowing.commit_events; }, 1, 10000000,
              "Also commit after this many records."),

      string_key("uplink.kafka.brokers", [](Config& c) -> auto& { return c.kafka.brokers; },
                 "Kafka bootstrap servers HOST:PORT[,...] (leave the key out for a Pulsar-only gateway), or \"embedded\" to start librdkafka's mock cluster "
                 "inside the gateway (demo only: it keeps data in memory); its address is logged and shown in /status."),
      string_key("uplink.kafka.topic", [](Config& c) -> auto& { return c.kafka.topic; }, "Topic of the raw batches."),
      string_key("uplink.kafka.aggregates_topic", [](Config& c) -> auto& { return c.kafka_aggregates_topic; },
                 "Topic of the aggregate batches (closed windows, same batch format, gw-record-type aggregate), "
                 "sent by a second sink with its own cursor, partition and read-back; empty: aggregates are not "
                 "forwarded.",
                 true),
      int_key("uplink.kafka.zstd_level", [](Config& c) -> auto& { return c.kafka.zstd_level; }, 1, 19,
              "zstd compression level of each batch."),
      int_key("uplink.kafka.batch_max_records", [](Config& c) -> auto& { return c.kafka.batch_max_records; }, 1,
              1000000, "Most records in one batch."),
      bytes_key("uplink.kafka.batch_max_bytes", [](Config& c) -> auto& { return c.kafka.batch_max_bytes; }, 1024,
                "Most payload bytes read into one batch (before compression)."),
      duration_key("uplink.kafka.linger", [](Config& c) -> auto& { return c.kafka.linger; }, milliseconds(0),
                   "How long a batch may wait to fill before it is sent: fuller batches at low rates cost fewer "
                   "bytes per record on the link (README, bench-uplink --rates), for about half of it in added "
                   "delay on average."),
      int_key("uplink.kafka.partition", [](Config& c) -> auto& { return c.kafka.partition; }, -1, 1000000,
              "The partition this gateway writes; -1: the partition of its key (the gateway id). One gateway writes "
              "one partition, and reads its tail back on start to resume without duplicates."),
      bool_key("uplink.kafka.exactly_once", [](Config& c) -> auto& { return c.kafka.exactly_once; },
               "Exactly once for read_committed consumers: batches go in Kafka transactions (transactional.id "
               "edge-gateway.<gateway_id>.<telemetry|aggregate>; the principal needs WRITE and DESCRIBE on it), "
               "the buffer is acked only for committed ones, and a restart aborts what a killed predecessor left "
               "open before reading the tail back. A second process with the same gateway_id fences the first, "
               "which then stops sending and says so in /status. Consumers must read with "
               "isolation.level=read_committed. false: idempotent producer, at least once."),
      duration_key("uplink.kafka.commit_interval", [](Config& c) -> auto& { return c.kafka.commit_interval; },
                   milliseconds(1),
                   "exactly_once: a transaction is committed this long after it began (sooner once it holds "
                   "16 batches): the delay it adds to delivery, against one commit round trip and one marker "
                   "record in the partition per transaction."),
      duration_key("uplink.kafka.message_timeout", [](Config& c) -> auto& { return c.kafka.message_timeout; },
                   milliseconds(100),
                   "A batch not confirmed in this time makes the uplink report itself down, with why "
                   "(/status uplink.kafka.last_delivery_error); the batch is not given up: the producer "
                   "retries it (same producer id and sequence numbers, so the broker keeps one copy)."),
      duration_key("uplink.kafka.read_back_timeout", [](Config& c) -> auto& { return c.kafka.read_back_timeout; },
                   milliseconds(100), "One read-back of the partition's tail gives up after this (then retried)."),
      duration_key("uplink.kafka.retry_backoff", [](Config& c) -> auto& { return c.kafka.retry_backoff; },
                   milliseconds(1), "First wait after a failure; doubles up to retry_backoff_max, with jitter."),
      duration_key("uplink.kafka.retry_backoff_max", [](Config& c) -> auto& { return c.kafka.retry_backoff_max; },
                   milliseconds(1), "Longest wait between retries (at least retry_backoff)."),
      string_key("uplink.kafka.security.protocol", [](Config& c) -> auto& { return c.kafka.security_protocol; },
                 "librdkafka security.protocol: plaintext, ssl, sasl_plaintext or sasl_ssl (empty: plaintext).", true),
      string_key("uplink.kafka.sasl.mechanism", [](Config& c) -> auto& { return c.kafka.sasl_mechanism; },
                 "librdkafka sasl.mechanisms: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, ... (empty: not set).", true),
      string_key("uplink.kafka.sasl.username", [](Config& c) -> auto& { return c.kafka.sasl_username; },
                 "SASL user name (empty: not set).", true),
      string_key("uplink.kafka.sasl.password", [](Config& c) -> auto& { return c.kafka.sasl_password; },
                 "SASL password (empty: not set).", true),
      string_key("uplink.kafka.ssl.ca.location", [](Config& c) -> auto& { return c.kafka.ssl_ca_location; },
                 "PEM file of the CA that signed the brokers' certificates (empty: the system's).", true),
      string_key("uplink.kafka.ssl.certificate.location",
                 [](Config& c) -> auto& { return c.kafka.ssl_certificate_location; },
                 "PEM client certificate for TLS client authentication (empty: none).", true),
      string_key("uplink.kafka.ssl.key.location", [](Config& c) -> auto& { return c.kafka.ssl_key_location; },
                 "PEM private key of the client certificate (empty: none).", true),
      string_key("uplink.kafka.ssl.key.password", [](Config& c) -> auto& { return c.kafka.ssl_key_password; },
                 "Password of the private key (empty: none).", true),
      string_key("uplink.pulsar.service_url", [](Config& c) -> auto& { return c.pulsar.service_url; },
                 "Pulsar WebSocket service ws://HOST:PORT or wss://HOST:PORT[/PREFIX] (a broker with "
                 "webSocketServiceEnabled, or a WebSocket proxy): telemetry batches go to its producer endpoint; after "
                 "each connect the topic's end is read back (admin API on the same port, reader API) so that no "
                 "batch is sent twice (a separate proxy has no admin API: then at least once). Empty: no Pulsar "
                 "sink.",
                 true),
      string_key("uplink.pulsar.tenant", [](Config& c) -> auto& { return c.pulsar.tenant; }, "Pulsar tenant."),
      string_key("uplink.pulsar.namespace", [](Config& c) -> auto& { return c.pulsar.ns; }, "Pulsar namespace."),
      string_key("uplink.pulsar.topic", [](Config& c) -> auto& { return c.pulsar.topic; },
                 "Persistent topic of the raw batches: persistent://TENANT/NAMESPACE/TOPIC."),
      string_key("uplink.pulsar.aggregates_topic", [](Config& c) -> auto& { return c.pulsar_aggregates_topic; },
                 "Persistent topic of the aggregate batches (closed windows, gw-record-type aggregate), sent by a "
                 "second Pulsar sink with its own cursor (uplink.pulsar.aggregates) and producer name; \"\": no "
                 "aggregates to Pulsar."),
      string_key("uplink.pulsar.producer_name", [](Config& c) -> auto& { return c.pulsar.producer_name; },
                 "producerName of the WebSocket producer (unique per topic and fixed: the broker then fences a previous producer of this gateway before the read-back); empty: edge-gateway.GATEWAY_ID.telemetry.", true),
      string_key("uplink.pulsar.token", [](Config& c) -> auto& { return c.pulsar.token; },
                 "Token sent as \"Authorization: Bearer TOKEN\" on the WebSocket upgrade (empty: none). A secret: "
                 "never logged nor shown in /status.",
                 true),
      string_key("uplink.pulsar.tls_ca_file", [](Config& c) -> auto& { return c.pulsar.tls.ca_file; },
                 "wss://: PEM file of the CA that signed the service's certificate (empty: the system's).", true),
      string_key("uplink.pulsar.tls_cert_file", [](Config& c) -> auto& { return c.pulsar.tls.cert_file; },
                 "wss://: PEM client certificate for TLS client authentication (empty: none).", true),
      string_key("uplink.pulsar.tls_key_file", [](Config& c) -> auto& { return c.pulsar.tls.key_file; },
                 "wss://: PEM private key of tls_cert_file (empty: none).", true),
      bool_key("uplink.pulsar.tls_verify", [](Config& c) -> auto& { return c.pulsar.tls.verify; },
               "wss://: verify the service's certificate and host name (false: for testing only)."),
      int_key("uplink.pulsar.zstd_level", [](Config& c) -> auto& { return c.pulsar.zstd_level; }, 1, 19,
              "zstd compression level of each batch."),
      int_key("uplink.pulsar.batch_max_records", [](Config& c) -> auto& { return c.pulsar.batch_max_records; }, 1,
              1000000, "Most records in one message (batch)."),
      bytes_key("uplink.pulsar.batch_max_bytes", [](Config& c) -> auto& { return c.pulsar.batch_max_bytes; }, 1024,
                "Most payload bytes read into one batch (before compression; the message carries it in base64)."),
      duration_key("uplink.pulsar.linger", [](Config& c) -> auto& { return c.pulsar.linger; }, milliseconds(0),
                   "How long a batch may wait to fill before it is sent."),
      int_key("uplink.pulsar.max_in_flight", [](Config& c) -> auto& { return c.pulsar.max_in_flight; }, 1, 1024,
              "Messages sent and not yet answered, at most (keyed by their context); each is kept for a resend."),
      duration_key("uplink.pulsar.send_timeout", [](Config& c) -> auto& { return c.pulsar.send_timeout; },
                   milliseconds(100),
                   "The producer's sendTimeoutMillis; an answer that has not come after this closes the connection, "
                   "and every unanswered message is sent again after reconnecting."),
      duration_key("uplink.pulsar.connect_timeout", [](Config& c) -> auto& { return c.pulsar.connect_timeout; },
                   milliseconds(100), "Connect, TLS and WebSocket upgrade must be done within this."),
      duration_key("uplink.pulsar.retry_backoff", [](Config& c) -> auto& { return c.pulsar.retry_backoff; },
                   milliseconds(1),
                   "First wait after a send error, a lost connection or a refused upgrade; doubles up to "
                   "retry_backoff_max, with jitter."),
      duration_key("uplink.pulsar.retry_backoff_max", [](Config& c) -> auto& { return c.pulsar.retry_backoff_max; },
                   milliseconds(1), "Longest wait between retries (at least retry_backoff)."),
      bytes_key("uplink.max_bytes_per_s", [](Config& c) -> auto& { return c.kafka.max_bytes_per_s; }, 0,
                "Cap on the compressed bytes per second sent upstream by each sink, backlog drains included "
                "(metered links); 0: no cap."),
      int_key("uplink.drain_max_records_per_s", [](Config& c) -> auto& { return c.kafka.drain_max_records_per_s; }, 0,
              100000000,
              "While a backlog drains (after an outage), each sink sends at most this many records per second, so "
              "that the drain leaves CPU and disk to ingest; live traffic below it is never held back. 0: no "
              "limit."),

      string_key("http.listen", [](Config& c) -> auto& { return c.http.listen; },
                 "HOST:PORT of the HTTP status server (port 0: a free port, logged)."),
      int_key("http.max_connections", [](Config& c) -> auto& { return c.http.max_connections; }, 1, 10000,
              "Concurrent HTTP connections; more are closed at once."),
      duration_key("http.request_timeout", [](Config& c) -> auto& { return c.http.request_timeout; },
                   milliseconds(100),
                   "Time allowed to read a whole request (a client that stalls or trickles is cut off) or to "
                   "write a response; idle keep-alive connections close after it too."),
      bytes_key("http.max_header_bytes", [](Config& c) -> auto& { return c.http.max_header_bytes; }, 1024,
                "Largest request line and headers; larger get 431."),
      bytes_key("http.max_body_bytes", [](Config& c) -> auto& { return c.http.max_body_bytes; }, 0,
                "Largest request body; larger get 413 (the API has no use for bodies)."),
      string_key("http.token", [](Config& c) -> auto& { return c.http.token; },
                 "Bearer token required (header \"Authorization: Bearer TOKEN\") on every path but /healthz "
                 "and the status page's static / (whose script sends the token given as /#token=TOKEN). "
                 "Empty: no token. A secret: never logged nor shown in /status.",
                 true),
      duration_key("http.ready_uplink_down", [](Config& c) -> auto& { return c.readiness.uplink_down_max; },
                   milliseconds(0),
                   "/readyz answers 503 once the uplink has been down this long (the gateway keeps buffering "
                   "meanwhile). \"0ms\": the uplink never makes it unready."),
  };
  return table;
}

ConfigError error_at(const std::string& file, const toml::source_region& where, std::string key, std::string message) {
  return ConfigError{file, static_cast<int>(where.begin.line), static_cast<int>(where.begin.column), std::move(key),
                     std::move(message)};
}

// Walks the parsed table; every value must be a known key, every table a prefix of one.
std::optional<ConfigError> check_known(const toml::table& table, const std::string& prefix, const std::string& file,
                                       const std::set<std::string>& known, const std::set<std::string>& tables) {
  for (const auto& [k, node] : table) {
    std::string path = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = node.as_table(); sub != nullptr && !known.contains(path)) {
      if (!tables.contains(path)) return error_at(file, node.source(), path, "unknown table");
      if (auto e = check_known(*sub, path, file, known, tables)) return e;
    } else if (!known.contains(path)) {
      return error_at(file, node.source(), path, "unknown key");
    }
  }
  return std::nullopt;
}

// The windowing stage's results, late events and device state leave the buffer only by retention
// and their caps, never because a sink acknowledged them: kept beyond the store's size, they fill a
// store under `block` for good (appends wait, and nothing is left to trim). So they must fit in
// buffer::side_tables_budget() (half of the store, less the headroom), and the buffer keeps room for
// them to grow to that (buffer::Options::consumer_tables_bytes, set by the gateway). The caps the
// file leaves out share what the ones it gives leave, in proportion to their defaults (at least 1
// each); caps the file gives that do not fit are refused.
std::optional<ConfigError> fit_windowing_retention(Config& config, const toml::table& root, const std::string& file) {
  windowing::Options& w = config.windowing;
  struct Cap {
    const char* key;
    std::uint64_t* value;
    std::uint64_t each;
    const toml::node* node;
  };
  std::array<Cap, 3> caps{{{"windowing.max_results", &w.max_results, windowing::kResultBytes, nullptr},
                           {"windowing.max_late", &w.max_late, windowing::kLateEventBytes, nullptr},
                           {"windowing.max_devices", &w.max_devices, windowing::kDeviceBytes, nullptr}}};
  const std::uint64_t budget = buffer::side_tables_budget(config.buffer.max_bytes);
  std::uint64_t given = 0, wanted = 0;
  for (Cap& c : caps) {
    c.node = root.at_path(c.key).node();
    (c.node != nullptr ? given : wanted) += *c.value * c.each;
  }
  if (given + wanted > budget) {
    const long double share =
        static_cast<long double>(budget - std::min(budget, given)) / static_cast<long double>(std::max<std::uint64_t>(1, wanted));
    for (Cap& c : caps) {
      if (c.node == nullptr) *c.value = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(static_cast<long double>(*c.value) * share));
    }
  }
  const std::uint64_t need = windowing::retained_bytes(w.max_results, w.max_late, w.max_devices);
  if (need <= budget) {
    config.buffer.consumer_tables_bytes = need;
    return std::nullopt;
  }
  const Cap* at = nullptr;
  for (const Cap& c : caps) {
    if (c.node != nullptr && (at == nullptr || *c.value * c.each > *at->value * at->each)) at = &c;
  }
  return error_at(file, at->node->source(), at->key,
                  "windowing.max_results = " + std::to_string(w.max_results) + ", max_late = " +
                      std::to_string(w.max_late) + " and max_devices = " + std::to_string(w.max_devices) +
                      " keep up to about " + std::to_string(need >> 10) + " KiB in the buffer (" +
                      std::to_string(windowing::kResultBytes) + " B per result, " +
                      std::to_string(windowing::kLateEventBytes) + " B per late event, " +
                      std::to_string(windowing::kDeviceBytes) + " B per device), more than the " +
                      std::to_string(budget >> 10) + " KiB buffer.max_bytes (" +
                      show_bytes(config.buffer.max_bytes) + ") leaves them (half, less the headroom), so that " +
                      "a full buffer under overflow = \"block\" could wait for good; lower them or raise "
                      "buffer.max_bytes");
}

}  // namespace

std::string ConfigError::to_string() const {
  std::ostringstream out;
  out << file;
  if (line > 0) out << ":" << line << ":" << column;
  out << ": ";
  if (!key.empty()) out << "key '" << key << "': ";
  out << message;
  return out.str();
}

std::expected<Config, ConfigError> parse_config(std::string_view text, const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    return std::unexpected(error_at(file, e.source(), "", std::string(e.description())));
  }
  std::set<std::string> known{"ingest.source"}, tables;  // [[ingest.source]]: config_sources.cc
  for (const Key& k : keys()) {
    known.insert(k.key);
    for (auto dot = k.key.find('.'); dot != std::string::npos; dot = k.key.find('.', dot + 1)) {
      tables.insert(k.key.substr(0, dot));
    }
  }
  if (auto e = check_known(root, "", file, known, tables)) return std::unexpected(*e);

  Config config;
  for (const Key& k : keys()) {
    const toml::node* node = root.at_path(k.key).node();
    if (node == nullptr) continue;
    if (auto message = k.set(config, *node)) return std::unexpected(error_at(file, node->source(), k.key, *message));
  }
  if (config.windowing.kind == windowing::WindowKind::hopping && config.windowing.slide > config.windowing.size) {
    const toml::node* node = root.at_path("windowing.slide").node();
    return std::unexpected(error_at(file, node ? node->source() : toml::source_region{}, "windowing.slide",
                                    "must not be longer than windowing.size"));
  }
  if (auto e = fit_windowing_retention(config, root, file)) return std::unexpected(*e);
  if (auto e = read_sources(config, root, file)) return std::unexpected(*e);
  // Keys without a usable default.
  if (root.at_path("buffer.path").node() == nullptr) {
    return std::unexpected(ConfigError{file, 0, 0, "buffer.path", "is required"});
  }
  if (config.kafka.brokers.empty() && config.pulsar.service_url.empty()) {
    return std::unexpected(ConfigError{file, 0, 0, "uplink.kafka.brokers",
                                       "is required (or uplink.pulsar.service_url, or both)"});
  }
  if (!config.pulsar.service_url.empty()) {
    const toml::node* node = root.at_path("uplink.pulsar.service_url").node();
    if (!uplink::parse_service_url(config.pulsar.service_url)) {
      return std::unexpected(error_at(file, node->source(), "uplink.pulsar.service_url",
                                      "expected ws://HOST[:PORT][/PREFIX] or wss://HOST[:PORT][/PREFIX]"));
    }
  }
  // The [uplink] budgets hold for every sink.
  config.pulsar.max_bytes_per_s = config.kafka.max_bytes_per_s;
  config.pulsar.drain_max_records_per_s = config.kafka.drain_max_records_per_s;
  if (config.pulsar.retry_backoff_max < config.pulsar.retry_backoff) {
    const toml::node* node = root.at_path("uplink.pulsar.retry_backoff_max").node();
    return std::unexpected(error_at(file, node ? node->source() : toml::source_region{},
                                    "uplink.pulsar.retry_backoff_max", "must not be shorter than retry_backoff"));
  }
  return config;
}

std::expected<Config, ConfigError> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::unexpected(ConfigError{path, 0, 0, "", "cannot read the file"});
  std::stringstream text;
  text << in.rdbuf();
  auto config = parse_config(text.str(), path);
  if (config) config->config_path = std::filesystem::absolute(path).string();
  return config;
}

std::string plugin_socket(const Config& config) {
  return config.plugin_socket.empty() ? config.buffer.path + "/ingest.sock" : config.plugin_socket;
}

std::string mosquitto_config(const Config& config, const std::string& plugin_path) {
  std::string topics;
  for (const std::string& t : config.mqtt.topics) topics += (topics.empty() ? "" : ",") + t;
  // A global plugin runs for every listener; with per_listener_settings true a listener without the
  // plugin would acknowledge devices from memory, so it stays false.
  return "# edge-gateway: ingest mode plugin. mosquitto acknowledges a message on these topics only\n"
         "# once edge-gateway has stored it (or kept it as a dead letter).\n"
         "per_listener_settings false\n"
         "plugin " + plugin_path + "\n"
         "plugin_opt_socket " + plugin_socket(config) + "\n"
         "plugin_opt_topics " + topics + "\n"
         "plugin_opt_timeout_ms 5000\n";
}

std::vector<KeyInfo> config_keys() {
  std::vector<KeyInfo> out;
  for (const Key& k : keys()) out.push_back({k.key, k.type, k.show(Config{}), k.description});
  for (KeyInfo& k : source_key_infos()) out.push_back(std::move(k));
  return out;
}

std::string config_reference_markdown() {
  std::string out = "| key | type | default | description |\n|---|---|---|---|\n";
  for (const KeyInfo& k : config_keys()) {
    std::string def = k.default_value == "\"\"" ? "(none)"
                      : k.default_value.starts_with("(") ? k.default_value
                                                          : "`" + k.default_value + "`";
    std::string type;
    for (char c : k.type) type += c == '|' ? std::string("\\|") : std::string(1, c);  // Markdown cell
    out += "| `" + k.key + "` | " + type + " | " + def + " | " + k.description + " |\n";
  }
  return out;
}

}  // namespace gw::gateway
