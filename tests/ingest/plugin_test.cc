// Ingest mode plugin against a real mosquitto running the gateway's plugin: a device's PUBACK comes
// only once the message is in the buffer (or kept as a dead letter); other topics pass untouched;
// with the gateway unreachable a QoS 1 message gets no PUBACK (the device keeps it and sends it
// again) and a QoS 0 message passes without a disconnect.
#ifdef GW_MOSQUITTO_PLUGIN
#include <mqtt/async_client.h>

#include "tests/support/catch.h"
#include <chrono>
#include <string>
#include <thread>

#include "buffer/ring.h"
#include "ingest/admit.h"
#include "ingest/dead_letters.h"
#include "ingest/plugin_server.h"
#include "ingest/store.h"
#include "tests/support/support.h"

using namespace std::chrono_literals;
using gw::test::Mosquitto;
using gw::test::TempDir;

namespace {

std::string plugin_lines(const std::string& socket) {
  return std::string("plugin ") + GW_MOSQUITTO_PLUGIN + "\nplugin_opt_socket " + socket +
         "\nplugin_opt_topics devices/+/telemetry\nplugin_opt_timeout_ms 1000\n";
}

std::string reading(const std::string& device, int seq) {
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  return R"({"device":")" + device + R"(","seq":)" + std::to_string(seq) + R"(,"time_ms":)" + std::to_string(now) +
         R"(,"metrics":{"t":21.5}})";
}

// Publishes and waits up to `wait` for the broker's acknowledgement (QoS 1: the PUBACK).
bool published(mqtt::async_client& client, const std::string& topic, const std::string& payload, int qos,
               std::chrono::milliseconds wait = 5s) {
  try {
    return client.publish(topic, payload, qos, false)->wait_for(wait);
  } catch (const mqtt::exception&) {
    return false;  // the connection was closed before an acknowledgement
  }
}

// What the gateway holds in plugin mode: a ring, dead letters and the store over both.
struct Box {
  Box() {
    auto r = gw::buffer::Ring::open({.path = (dir.path() / "ring").string(), .durability = gw::buffer::Durability::os});
    REQUIRE(r.has_value());
    ring = std::move(*r);
    auto d = gw::ingest::DeadLetters::open({.path = (dir.path() / "dlq").string()});
    REQUIRE(d.has_value());
    dlq = std::move(*d);
    store = gw::ingest::make_local_store(*ring, dlq.get());
  }
  TempDir dir;
  std::unique_ptr<gw::buffer::Ring> ring;
  std::unique_ptr<gw::ingest::DeadLetters> dlq;
  std::unique_ptr<gw::ingest::EventStore> store;
  const std::string socket = (dir.path() / "ingest.sock").string();
};

}  // namespace

TEST_CASE("plugin mode: the PUBACK follows the store, other topics pass, an unreachable gateway withholds it") {
  Box box;
  auto* ring = &box.ring;
  auto* dlq = &box.dlq;
  auto& store = box.store;
  const std::string& socket = box.socket;
  gw::ingest::PluginServerOptions options;
  options.socket_path = socket;
  auto server = gw::ingest::PluginServer::start(options, *store);
  REQUIRE(server.has_value());
  Mosquitto broker(0, "/usr/sbin/mosquitto", plugin_lines(socket));

  mqtt::async_client client(broker.url(), "plugin-test-device", mqtt::create_options(MQTTVERSION_3_1_1));
  auto connect = mqtt::connect_options_builder().clean_session(false).automatic_reconnect(false).finalize();
  REQUIRE(client.connect(connect)->wait_for(5s));

  // Acknowledged only once stored: the buffer holds it when the PUBACK arrives.
  REQUIRE(published(client, "devices/d1/telemetry", reading("d1", 0), 1));
  CHECK((*ring)->last_seq().value == 1);
  // A copy of a stored reading: acknowledged, not stored twice.
  REQUIRE(published(client, "devices/d1/telemetry", reading("d1", 0), 1));
  CHECK((*ring)->last_seq().value == 1);
  // What will never store is acknowledged and kept as a dead letter (else it would be a poison message).
  REQUIRE(published(client, "devices/d1/telemetry", "{not json", 1));
  CHECK((*dlq)->list(gw::ingest::errc::malformed, 10).size() == 1);
  // Another topic does not reach the gateway.
  REQUIRE(published(client, "other/topic", "anything", 1));
  auto s = (*server)->stats();
  CHECK(s.messages_received == 3);
  CHECK(s.events_stored == 1);
  CHECK(s.duplicates == 1);
  CHECK(s.decode_errors_total == 1);
  CHECK(s.connected);

  // QoS 2: the PUBREC follows the store too, and a resent copy is the buffer's to drop.
  REQUIRE(published(client, "devices/d2/telemetry", reading("d2", 0), 2));
  CHECK((*ring)->last_seq().value == 2);

  // An MQTT 5 device: acknowledged once stored. (Its PUBACK carries reason 0x10 "no matching
  // subscribers", a success code, since nothing subscribes in mode plugin; `mosquitto_pub -V mqttv5
  // -d` shows it, Paho C++ 1.2's token does not expose it.)
  {
    mqtt::async_client v5(broker.url(), "plugin-test-v5", mqtt::create_options(MQTTVERSION_5));
    REQUIRE(v5.connect(mqtt::connect_options_builder().mqtt_version(MQTTVERSION_5).finalize())->wait_for(5s));
    REQUIRE(v5.publish("devices/d3/telemetry", reading("d3", 0), 1, false)->wait_for(5s));
    CHECK((*ring)->last_seq().value == 3);
    v5.disconnect()->wait_for(2s);
  }

  // The gateway goes away: QoS 0 passes (counted by the plugin, no disconnect) ...
  (*server)->stop();
  REQUIRE(published(client, "devices/d1/telemetry", reading("d1", 1), 0));
  std::this_thread::sleep_for(200ms);
  CHECK(client.is_connected());
  // ... a QoS 1 message gets no PUBACK, and mosquitto closes the connection.
  CHECK_FALSE(published(client, "devices/d1/telemetry", reading("d1", 2), 1, 3s));
  CHECK((*ring)->last_seq().value == 3);

  // Back: the device reconnects (persistent session) and its client sends the message again.
  auto again = gw::ingest::PluginServer::start(options, *store);
  REQUIRE(again.has_value());
  for (int i = 0; i < 50 && !client.is_connected(); ++i) {
    try {
      client.connect(connect)->wait_for(2s);
    } catch (const mqtt::exception&) {
      std::this_thread::sleep_for(100ms);
    }
  }
  REQUIRE(client.is_connected());
  bool stored = false;
  for (int i = 0; i < 100 && !stored; ++i) {
    stored = (*ring)->last_seq().value == 4;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(stored);
  client.disconnect()->wait_for(2s);
}

TEST_CASE("plugin mode: a mapped source's device is the publisher's client id and a misfit is a mapping dead letter") {
  Box box;
  auto* ring = &box.ring;
  auto* dlq = &box.dlq;
  auto& store = box.store;
  const std::string& socket = box.socket;
  gw::ingest::SourceMapping source;
  source.topic = "sensors/+/state";
  source.device = "client_id";
  source.time = "payload:ts";
  source.seq = "payload:n";
  source.tags = {{"room", "topic:1"}};
  gw::ingest::PluginServerOptions options;
  options.socket_path = socket;
  options.admit.mapper = gw::ingest::compile_sources({source});
  auto server = gw::ingest::PluginServer::start(options, *store);
  REQUIRE(server.has_value());
  Mosquitto broker(0, "/usr/sbin/mosquitto",
                   std::string("plugin ") + GW_MOSQUITTO_PLUGIN + "\nplugin_opt_socket " + socket +
                       "\nplugin_opt_topics sensors/+/state\nplugin_opt_timeout_ms 1000\n");
  mqtt::async_client client(broker.url(), "kitchen-th-1", mqtt::create_options(MQTTVERSION_3_1_1));
  REQUIRE(client.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait_for(5s));
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch()).count();
  REQUIRE(published(client, "sensors/kitchen/state", R"({"ts":)" + std::to_string(now) + R"(,"n":1,"t":21.5})", 1));
  auto records = (*ring)->read(gw::buffer::Seq{0}, 10, 1 << 20);
  REQUIRE(records.has_value());
  REQUIRE(records->size() == 1);
  auto event = gw::ingest::decode_telemetry(records->front().payload);
  REQUIRE(event.has_value());
  CHECK(event->device.value == "kitchen-th-1");
  CHECK(event->tags == std::vector<gw::ingest::Tag>{{"room", "kitchen"}});
  // Without its counter: acknowledged, kept as a dead letter naming the path.
  REQUIRE(published(client, "sensors/kitchen/state", R"({"ts":)" + std::to_string(now) + R"(,"t":21.5})", 1));
  const auto letters = (*dlq)->list(gw::ingest::errc::mapping, 10);
  REQUIRE(letters.size() == 1);
  CHECK(letters[0].detail == "n: missing");
  CHECK((*ring)->last_seq().value == 1);
  client.disconnect()->wait_for(2s);
}

#endif  // GW_MOSQUITTO_PLUGIN (not in a cross build: the machine's mosquitto cannot load its plugin)
