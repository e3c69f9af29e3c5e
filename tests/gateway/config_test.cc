// The config reader: valid files, and every kind of error naming file, line and key.
#include "tests/support/catch.h"
#include <fstream>
#include <sstream>

#include "gateway/config.h"

using gw::gateway::parse_config;

namespace {
const std::string kMinimal = R"(
gateway_id = "g1"
[buffer]
path = "/tmp/x"
[uplink.kafka]
brokers = "127.0.0.1:9092"
)";
}

TEST_CASE("a minimal config takes defaults for everything else") {
  auto c = parse_config(kMinimal, "t.toml");
  REQUIRE(c.has_value());
  CHECK(c->gateway_id == "g1");
  CHECK(c->buffer.path == "/tmp/x");
  CHECK(c->buffer.durability == gw::buffer::Durability::fsync);
  CHECK(c->kafka.brokers == "127.0.0.1:9092");
  CHECK(c->http.listen == "127.0.0.1:8080");
  CHECK(c->mqtt.topics == std::vector<std::string>{"devices/+/telemetry"});
}

// Found by fuzz_config: the unit multiplication overflowed (signed: undefined behaviour).
TEST_CASE("sizes and durations too large for their unit are refused, not wrapped") {
  auto d = parse_config(kMinimal + "[windowing]\nsize = \"6148914691236517203s\"\n", "t.toml");
  REQUIRE(!d.has_value());
  CHECK(d.error().key == "windowing.size");
  auto b = parse_config(R"(
gateway_id = "g1"
[buffer]
path = "/tmp/x"
max_bytes = "17592186044417MiB"  # (2^44 + 1) MiB: wrapped to 1 MiB before
[uplink.kafka]
brokers = "127.0.0.1:9092"
)", "t.toml");
  REQUIRE(!b.has_value());
  CHECK(b.error().key == "buffer.max_bytes");
}

TEST_CASE("sizes, durations and enums are parsed") {
  auto c = parse_config(kMinimal + R"(
[http]
listen = "127.0.0.1:0"
)" + "", "t.toml");
  REQUIRE(c.has_value());
  auto d = parse_config(R"(
[buffer]
path = "/b"
max_bytes = "64MiB"
durability = "os"
sync_interval = "250ms"
[windowing]
size = "1m"
[uplink.kafka]
brokers = "embedded"
linger = "2s"
batch_max_bytes = 4096
)", "t.toml");
  REQUIRE(d.has_value());
  CHECK(d->buffer.max_bytes == 64ull << 20);
  CHECK(d->buffer.durability == gw::buffer::Durability::os);
  CHECK(d->buffer.sync_interval == std::chrono::milliseconds(250));
  CHECK(d->windowing.size == std::chrono::milliseconds(60000));
  CHECK(d->kafka.linger == std::chrono::milliseconds(2000));
  CHECK(d->kafka.batch_max_bytes == 4096);
}

// The windowing stage's results, late events and device state stay in the buffer until retention
// or their caps remove them, so they must fit in half of buffer.max_bytes less its headroom (else a
// full store under block could wait for good: the 1 MiB chaos run kept 1392 late events, 116 of
// its 256 pages), and the buffer keeps room for them to grow to their caps.
TEST_CASE("the windowing results, late events and devices kept must fit in half of the buffer") {
  auto with = [](const std::string& buffer, const std::string& windowing) {
    return parse_config("[buffer]\npath = \"/b\"\n" + buffer + "[windowing]\n" + windowing +
                            "[uplink.kafka]\nbrokers = \"embedded\"\n",
                        "gw.toml");
  };
  auto retained = [](const gw::gateway::Config& c) {
    return gw::windowing::retained_bytes(c.windowing.max_results, c.windowing.max_late, c.windowing.max_devices);
  };
  const std::uint64_t one_mib_budget = (1024 - 128) / 2 * 1024;  // 32 pages of headroom
  CHECK(gw::buffer::side_tables_budget(1ull << 20) == one_mib_budget);
  SECTION("the defaults are kept where they fit (1 GiB), and the buffer keeps room for them") {
    auto c = with("", "");
    REQUIRE(c.has_value());
    CHECK(c->windowing.max_results == 200000);
    CHECK(c->windowing.max_late == 10000);
    CHECK(c->windowing.max_devices == 10000);
    CHECK(c->buffer.consumer_tables_bytes == 128'000'000);  // 200000 x 512 + 10000 x 512 + 10000 x 2048
  }
  SECTION("caps left out are lowered together to what fits") {
    auto c = with("max_bytes = \"1MiB\"\n", "");
    REQUIRE(c.has_value());
    CHECK(retained(*c) <= one_mib_budget);
    CHECK(c->buffer.consumer_tables_bytes == retained(*c));
    CHECK(c->windowing.max_results == 716);  // each scaled by 458752 / 128000000
    CHECK(c->windowing.max_late == 35);
    CHECK(c->windowing.max_devices == 35);
  }
  SECTION("caps left out share what the ones given leave") {
    auto c = with("max_bytes = \"1MiB\"\n", "max_results = 400\n");
    REQUIRE(c.has_value());
    CHECK(c->windowing.max_results == 400);
    CHECK(c->windowing.max_late == 99);
    CHECK(c->windowing.max_devices == 99);
    CHECK(retained(*c) <= one_mib_budget);
    auto d = with("max_bytes = \"1MiB\"\n", "max_late = 800\nmax_devices = 20\n");
    REQUIRE(d.has_value());
    CHECK(d->windowing.max_late == 800);
    CHECK(d->windowing.max_devices == 20);
    CHECK(d->windowing.max_results >= 1);
    CHECK(retained(*d) <= one_mib_budget);
  }
  SECTION("caps given that do not fit are refused, naming the largest and the sizes") {
    auto c = with("max_bytes = \"1MiB\"\n", "max_results = 400\nmax_late = 10000000\n");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().key == "windowing.max_late");
    CHECK(c.error().line == 6);
    CHECK(c.error().message.find("buffer.max_bytes (1MiB)") != std::string::npos);
    auto d = with("max_bytes = \"1MiB\"\n", "max_devices = 224\n");  // leaves no room for one result
    REQUIRE_FALSE(d.has_value());
    CHECK(d.error().key == "windowing.max_devices");
    CHECK(with("max_bytes = \"1MiB\"\n", "max_results = 600\nmax_late = 24\nmax_devices = 50\n").has_value());
  }
}

TEST_CASE("errors name the file, the line and the key") {
  SECTION("unknown key") {
    auto c = parse_config(kMinimal + "[mqtt]\nurll = \"tcp://x:1\"\n", "gw.toml");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().key == "mqtt.urll");
    CHECK(c.error().line == 8);
    CHECK(c.error().to_string().find("gw.toml:8:") == 0);
  }
  SECTION("unknown table") {
    auto c = parse_config(kMinimal + "[uplink.pulsarr]\nx = 1\n", "gw.toml");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().key == "uplink.pulsarr");
  }
  SECTION("wrong type") {
    auto c = parse_config(kMinimal + "[http]\nmax_connections = \"many\"\n", "gw.toml");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().key == "http.max_connections");
    CHECK(c.error().line == 8);
  }
  SECTION("bad enum value") {
    auto c = parse_config(R"(
[buffer]
path = "/b"
durability = "sometimes"
[uplink.kafka]
brokers = "embedded"
)", "gw.toml");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().key == "buffer.durability");
    CHECK(c.error().line == 4);
    CHECK(c.error().message.find("fsync|os") != std::string::npos);
  }
  SECTION("bad size") {
    auto c = parse_config(R"(
[buffer]
path = "/b"
max_bytes = "12 parsecs"
[uplink.kafka]
brokers = "embedded"
)", "gw.toml");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().key == "buffer.max_bytes");
  }
  SECTION("missing required key") {
    auto c = parse_config("[buffer]\npath = \"/b\"\n", "gw.toml");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().key == "uplink.kafka.brokers");
  }
  SECTION("TOML syntax error") {
    auto c = parse_config("gateway_id = \n", "gw.toml");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().line == 1);
  }
}

TEST_CASE("the example config parses and documents every key of the table") {
  const std::string path = std::string(GW_SOURCE_DIR) + "/gateway/edge-gateway.example.toml";
  auto c = gw::gateway::load_config(path);
  INFO((c ? std::string() : c.error().to_string()));
  REQUIRE(c.has_value());
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  for (const auto& k : gw::gateway::config_keys()) {
    auto leaf = k.key.substr(k.key.rfind('.') == std::string::npos ? 0 : k.key.rfind('.') + 1);
    INFO(k.key);
    CHECK(text.str().find("\n" + leaf + " = ") != std::string::npos);
  }
}

TEST_CASE("the config reference lists every key with its default") {
  auto md = gw::gateway::config_reference_markdown();
  CHECK(md.find("| `buffer.durability` | fsync\\|os | `\"fsync\"` |") != std::string::npos);
  CHECK(md.find("| `buffer.max_bytes` | bytes | `\"1GiB\"` |") != std::string::npos);
}

TEST_CASE("ingest sources: a preset with overrides and a custom mapping") {
  auto c = parse_config(kMinimal + R"(
[[ingest.source]]
preset = "tasmota"
time_zone = "+01:00"
[[ingest.source]]
topic = "site/+/sensors"
device = "payload:id"
seq = "payload:n"
seq_bits = 16
metrics = ["data", "extra"]
tags = { site = "topic:1" }
)", "t.toml");
  INFO((c ? std::string() : c.error().to_string()));
  REQUIRE(c.has_value());
  REQUIRE(c->mqtt.sources.size() == 2);
  CHECK(c->mqtt.sources[0].topic == "tele/+/SENSOR");
  CHECK(c->mqtt.sources[0].time_zone == "+01:00");
  CHECK(c->mqtt.sources[0].time_format == gw::ingest::TimeForm::local);
  CHECK(c->mqtt.sources[1].seq_bits == 16);
  CHECK(c->mqtt.sources[1].tags.size() == 1);
  CHECK(c->mqtt.topics == std::vector<std::string>{"devices/+/telemetry", "tele/+/SENSOR", "site/+/sensors"});
}

TEST_CASE("ingest sources: a bad mapping names file line and key") {
  auto error_of = [](const std::string& source) {
    auto c = parse_config(kMinimal + "[[ingest.source]]\n" + source, "t.toml");
    REQUIRE_FALSE(c.has_value());
    return c.error();
  };
  auto preset = error_of("preset = \"homie\"\n");
  CHECK(preset.key == "ingest.source[0].preset");
  CHECK(preset.line == 8);
  CHECK(error_of("preset = \"tts\"\nseq_bits = 12\n").key == "ingest.source[0].seq_bits");
  CHECK(error_of("preset = \"tts\"\ncolour = 1\n").key == "ingest.source[0].colour");
  CHECK(error_of("topic = \"a/+\"\n").key == "ingest.source[0].device");
  auto zone = error_of("preset = \"tasmota\"\ntime_zone = \"Europe/Paris\"\n");
  CHECK(zone.key == "ingest.source[0].time_zone");
  CHECK(zone.line == 9);
  CHECK(error_of("topic = \"a/+\"\ndevice = \"client_id\"\n").key == "ingest.source[0].device");  // mode subscribe
  CHECK(error_of("preset = \"chirpstack\"\ntime_format = \"julian\"\n").key == "ingest.source[0].time_format");
  auto sessions = parse_config(kMinimal + "[mqtt]\nsessions = 4\n[[ingest.source]]\npreset = \"sparkplug\"\n", "t.toml");
  REQUIRE_FALSE(sessions.has_value());
  CHECK(sessions.error().key == "ingest.source[0].preset");
  auto one = parse_config(kMinimal + "[[ingest.source]]\npreset = \"sparkplug\"\n", "t.toml");
  REQUIRE(one.has_value());
  CHECK(one->mqtt.sparkplug_state_dir == "/tmp/x/sparkplug");
}

TEST_CASE("config: [uplink.pulsar] alone, beside Kafka, or malformed") {
  using gw::gateway::parse_config;
  SECTION("Pulsar only: no Kafka brokers needed") {
    auto c = parse_config(R"([buffer]
path = "/b"
[uplink.pulsar]
service_url = "wss://pulsar.example:8443"
tenant = "acme"
namespace = "edge"
topic = "raw"
token = "t0k"
tls_verify = false
max_in_flight = 4
send_timeout = "5s"
)", "gw.toml");
    INFO((c ? std::string() : c.error().to_string()));
    REQUIRE(c.has_value());
    CHECK(c->kafka.brokers.empty());
    CHECK(c->pulsar.service_url == "wss://pulsar.example:8443");
    CHECK(c->pulsar.tenant == "acme");
    CHECK(c->pulsar.ns == "edge");
    CHECK(c->pulsar.topic == "raw");
    CHECK(c->pulsar.token == "t0k");
    CHECK_FALSE(c->pulsar.tls.verify);
    CHECK(c->pulsar.max_in_flight == 4);
    CHECK(c->pulsar.send_timeout == std::chrono::seconds(5));
    CHECK(c->pulsar.cursor == "uplink.pulsar");
  }
  SECTION("both sinks") {
    auto c = parse_config("[buffer]\npath = \"/b\"\n[uplink.kafka]\nbrokers = \"k:9092\"\n[uplink.pulsar]\n"
                          "service_url = \"ws://p:8080\"\n", "gw.toml");
    REQUIRE(c.has_value());
    CHECK(c->kafka.brokers == "k:9092");
    CHECK(c->pulsar.service_url == "ws://p:8080");
  }
  SECTION("a service URL that is not ws:// or wss://") {
    auto c = parse_config("[buffer]\npath = \"/b\"\n[uplink.pulsar]\nservice_url = \"pulsar://p:6650\"\n", "gw.toml");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().key == "uplink.pulsar.service_url");
    CHECK(c.error().line == 4);
  }
  SECTION("tls_verify must be a boolean") {
    auto c = parse_config("[buffer]\npath = \"/b\"\n[uplink.pulsar]\nservice_url = \"ws://p\"\ntls_verify = \"no\"\n",
                          "gw.toml");
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().key == "uplink.pulsar.tls_verify");
  }
}
