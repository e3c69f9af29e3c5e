// MqttSource against a real mosquitto on loopback and a real Ring in a temp dir: what is published
// at QoS 1 ends up in the ring exactly as sent; bad payloads are counted, not stored; the persistent
// session carries messages across a restart of the source; a failing append holds the
// acknowledgement, and a message still unstored at stop() is redelivered to the next source.
#include "tests/support/catch.h"
#include <mqtt/async_client.h>

#include <atomic>
#include <set>
#include <thread>

#include "buffer/ring.h"
#include "ingest/event.h"
#include "ingest/mqtt_source.h"
#include "tests/support/faulty_ring.h"
#include "tests/support/support.h"

using namespace gw;
using namespace std::chrono_literals;
using gw::test::Mosquitto;
using gw::test::TempDir;
using gw::test::FaultyRing;

namespace {

using Key = std::pair<std::string, std::uint64_t>;

std::unique_ptr<buffer::Ring> open_ring(const TempDir& dir) {
  buffer::Options o;
  o.path = (dir.path() / "ring").string();
  o.durability = buffer::Durability::os;  // the tests are about acking, not power loss
  auto ring = buffer::Ring::open(o);
  REQUIRE(ring.has_value());
  return std::move(*ring);
}

// Polls `done` every 20 ms for at most `timeout`; true once it holds.
template <class F>
bool eventually(F done, std::chrono::milliseconds timeout = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

// A plain Paho publisher (the devices' side).
class Publisher {
 public:
  explicit Publisher(const std::string& url) : client_(url, "test-publisher") {
    REQUIRE(client_.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait_for(10s));
  }
  ~Publisher() {
    try {
      client_.disconnect()->wait_for(5s);
    } catch (const mqtt::exception&) {
    }
  }
  void send(const std::vector<std::uint8_t>& payload, const std::string& topic = "devices/x/telemetry") {
    REQUIRE(client_.publish(topic, payload.data(), payload.size(), 1, false)->wait_for(10s));
  }
  void send_events(const std::string& device, std::uint64_t first, std::uint64_t count) {
    std::vector<mqtt::delivery_token_ptr> tokens;
    for (std::uint64_t s = first; s < first + count; ++s) {
      if (tokens.size() == 10) {  // Paho's default in-flight window
        for (auto& t : tokens) REQUIRE(t->wait_for(10s));
        tokens.clear();
      }
      ingest::Event e{ingest::DeviceId{device}, ingest::DeviceSeq{s}, ingest::EventTime{1'700'000'000'000 + int64_t(s)},
                      {{"temperature", 20.0 + double(s) / 100}}};
      auto bytes = ingest::encode_telemetry(e);
      tokens.push_back(client_.publish("devices/" + device + "/telemetry", bytes.data(), bytes.size(), 1, false));
    }
    for (auto& t : tokens) REQUIRE(t->wait_for(10s));
  }

 private:
  mqtt::async_client client_;
};

std::set<Key> keys(std::uint64_t first, std::uint64_t count, const std::string& device) {
  std::set<Key> out;
  for (std::uint64_t s = first; s < first + count; ++s) out.emplace(device, s);
  return out;
}

// Decodes every record of the ring; each must be a valid telemetry record.
std::vector<Key> ring_keys(const buffer::Ring& ring) {
  std::vector<Key> out;
  auto records = ring.read(buffer::Seq{0}, 1'000'000, 1u << 30);
  REQUIRE(records.has_value());
  for (const auto& r : *records) {
    REQUIRE(r.type == buffer::RecordType::telemetry);
    auto e = ingest::decode_telemetry(r.payload);
    REQUIRE(e.has_value());
    out.emplace_back(e->device.value, e->seq.value);
  }
  return out;
}

// The injected gateway clock: the test events' times are around it (see send_events).
constexpr std::int64_t kNowMs = 1'700'000'000'000;

ingest::MqttOptions options_for(const Mosquitto& broker, const std::string& client_id) {
  ingest::MqttOptions o;
  o.url = broker.url();
  o.client_id = client_id;
  o.reconnect_min = 50ms;
  o.reconnect_max = 500ms;
  o.clock = [] { return kNowMs; };  // the test events' times are around this
  return o;
}

std::unique_ptr<ingest::DeadLetters> open_dead_letters(const TempDir& dir) {
  auto dlq = ingest::DeadLetters::open({.path = (dir.path() / "dlq").string()});
  REQUIRE(dlq.has_value());
  return std::move(*dlq);
}

std::unique_ptr<ingest::MqttSource> started(ingest::MqttOptions o, buffer::Ring& ring,
                                            ingest::DeadLetters* dead_letters = nullptr) {
  auto source = ingest::MqttSource::create(std::move(o), ring, dead_letters);
  REQUIRE(source.has_value());
  (*source)->start();
  REQUIRE(eventually([&] { return (*source)->stats().subscribed; }));
  return std::move(*source);
}

}  // namespace

TEST_CASE("create rejects bad options") {
  TempDir dir;
  auto ring = open_ring(dir);
  ingest::MqttOptions o;
  o.topics.clear();
  CHECK_FALSE(ingest::MqttSource::create(o, *ring).has_value());
  o = {};
  o.mqtt_version = 3;
  CHECK_FALSE(ingest::MqttSource::create(o, *ring).has_value());
  o = {};
  o.qos = 3;
  CHECK_FALSE(ingest::MqttSource::create(o, *ring).has_value());
  o = {};
  o.url = "bogus://x";
  CHECK_FALSE(ingest::MqttSource::create(o, *ring).has_value());
}

TEST_CASE("500 QoS 1 messages end up in the ring, each once, as sent") {
  Mosquitto broker;
  TempDir dir;
  auto ring = open_ring(dir);
  auto source = started(options_for(broker, "gw-500"), *ring);

  Publisher pub(broker.url());
  pub.send_events("dev-a", 1, 250);
  pub.send_events("dev-b", 1, 250);
  REQUIRE(eventually([&] { return ring->last_seq().value >= 500; }));

  auto got = ring_keys(*ring);
  CHECK(got.size() == 500);
  std::set<Key> want = keys(1, 250, "dev-a");
  want.merge(keys(1, 250, "dev-b"));
  CHECK(std::set<Key>(got.begin(), got.end()) == want);

  source->stop();
  auto s = source->stats();
  CHECK(s.messages_received == 500);
  CHECK(s.events_stored == 500);
  CHECK(s.decode_errors_total == 0);
  CHECK(s.store_retries == 0);
  CHECK_FALSE(s.connected);
}

TEST_CASE("a malformed payload is counted by reason and not stored") {
  Mosquitto broker;
  TempDir dir;
  auto ring = open_ring(dir);
  auto source = started(options_for(broker, "gw-bad"), *ring);

  Publisher pub(broker.url());
  pub.send({'n', 'o', 't', ' ', 'a', ' ', 'f', 'l', 'a', 't', 'b', 'u', 'f'});
  pub.send({});         // empty
  pub.send({1, 2, 3});  // shorter than a FlatBuffers header
  pub.send(ingest::encode_telemetry({ingest::DeviceId{""}, ingest::DeviceSeq{1}, ingest::EventTime{1}, {}}));
  pub.send_events("dev-ok", 1, 1);
  REQUIRE(eventually([&] { return source->stats().messages_received >= 5; }));
  REQUIRE(eventually([&] { return ring->last_seq().value >= 1; }));

  auto s = source->stats();
  CHECK(s.decode_errors_total == 4);
  CHECK(s.decode_errors[ingest::errc::malformed] == 3);
  CHECK(s.decode_errors[ingest::errc::missing_field] == 1);
  CHECK(s.events_stored == 1);
  CHECK_FALSE(s.last_error.empty());
  CHECK(ring_keys(*ring) == std::vector<Key>{{"dev-ok", 1}});
}

TEST_CASE("JSON payloads, the topic's device id, limits and dead letters") {
  Mosquitto broker;
  TempDir dir;
  auto ring = open_ring(dir);
  auto dlq = open_dead_letters(dir);
  auto opts = options_for(broker, "gw-formats");
  opts.limits.max_payload_bytes = 512;
  opts.limits.max_skew = std::chrono::hours(1);
  auto source = started(opts, *ring, dlq.get());

  auto text = [](const std::string& s) { return std::vector<std::uint8_t>(s.begin(), s.end()); };
  Publisher pub(broker.url());
  // JSON, stored in the canonical FlatBuffers form.
  pub.send(text(R"({"device":"dev-j","seq":1,"time_ms":1700000000000,"metrics":{"t":1.5},"tags":{"site":"a"}})"),
           "devices/dev-j/telemetry");
  // The payload names another device than the topic: the topic wins, counted.
  pub.send(ingest::encode_telemetry({ingest::DeviceId{"liar"}, ingest::DeviceSeq{1}, ingest::EventTime{kNowMs}, {}}),
           "devices/dev-t/telemetry");
  // Rejected: too large, event time too far off, wrong JSON type.
  pub.send(std::vector<std::uint8_t>(600, '{'), "devices/dev-big/telemetry");
  pub.send(ingest::encode_telemetry({ingest::DeviceId{"dev-old"}, ingest::DeviceSeq{1}, ingest::EventTime{1000}, {}}),
           "devices/dev-old/telemetry");
  pub.send(text(R"({"device":"dev-x","seq":"one","time_ms":1700000000000})"), "devices/dev-x/telemetry");
  REQUIRE(eventually([&] { return source->stats().messages_received >= 5; }));
  REQUIRE(eventually([&] { return ring->last_seq().value >= 2 && dlq->stats().entries >= 3; }));

  CHECK(ring_keys(*ring) == std::vector<Key>{{"dev-j", 1}, {"dev-t", 1}});
  auto stored = ring->read(gw::buffer::Seq{0}, 10, 1 << 20);
  REQUIRE(stored.has_value());
  REQUIRE(stored->size() == 2);
  auto first = ingest::decode_telemetry(stored->at(0).payload);  // JSON came in, FlatBuffers stored
  REQUIRE(first.has_value());
  CHECK(first->tags == std::vector<ingest::Tag>{{"site", "a"}});
  auto st = source->stats();
  CHECK(st.device_mismatches == 1);
  CHECK(st.decode_errors[ingest::errc::oversize] == 1);
  CHECK(st.decode_errors[ingest::errc::bad_timestamp] == 1);
  CHECK(st.decode_errors[ingest::errc::malformed] == 1);
  auto letters = dlq->list(std::nullopt, 10);
  REQUIRE(letters.size() == 3);
  CHECK(letters[0].topic == "devices/dev-x/telemetry");
  CHECK(letters[1].reason == ingest::errc::bad_timestamp);
  CHECK(letters[2].reason == ingest::errc::oversize);
  CHECK(letters[2].size == 600);
  CHECK(letters[2].received_ms == kNowMs);
  source->stop();
}

TEST_CASE("the persistent session delivers what was published while the source was down") {
  const int version = GENERATE(4, 5);
  INFO("MQTT version " << version);
  Mosquitto broker;
  TempDir dir;
  auto ring = open_ring(dir);
  auto opts = options_for(broker, "gw-restart");
  opts.mqtt_version = version;
  {
    auto source = started(opts, *ring);
    Publisher pub(broker.url());
    pub.send_events("dev-r", 1, 50);
    REQUIRE(eventually([&] { return ring->last_seq().value >= 50; }));
    source->stop();
  }
  {
    Publisher pub(broker.url());
    pub.send_events("dev-r", 51, 100);  // nobody is connected: the broker queues them for the session
  }
  auto source = started(opts, *ring);
  REQUIRE(eventually([&] { return ring->last_seq().value >= 150; }));
  auto got = ring_keys(*ring);
  CHECK(std::set<Key>(got.begin(), got.end()) == keys(1, 150, "dev-r"));
  CHECK(got.size() == 150);
}

TEST_CASE("a broker that is down at start is retried until it comes up") {
  TempDir dir;
  auto ring = open_ring(dir);
  const int port = gw::test::free_port();
  ingest::MqttOptions o;
  o.url = "tcp://127.0.0.1:" + std::to_string(port);
  o.client_id = "gw-late";
  o.clock = [] { return kNowMs; };
  o.reconnect_min = 50ms;
  o.reconnect_max = 200ms;
  auto source = ingest::MqttSource::create(o, *ring);
  REQUIRE(source.has_value());
  (*source)->start();
  REQUIRE(eventually([&] { return !(*source)->stats().last_error.empty(); }));
  CHECK_FALSE((*source)->stats().connected);

  Mosquitto broker(port);
  REQUIRE(eventually([&] { return (*source)->stats().subscribed; }));
  Publisher pub(broker.url());
  pub.send_events("dev-l", 1, 10);
  REQUIRE(eventually([&] { return ring->last_seq().value >= 10; }));
  CHECK((*source)->stats().connected);
}

TEST_CASE("a failing append is retried inside the callback until it succeeds") {
  Mosquitto broker;
  TempDir dir;
  auto real = open_ring(dir);
  FaultyRing ring(*real);
  ring.failures = 3;
  auto source = started(options_for(broker, "gw-retry"), ring);

  Publisher pub(broker.url());
  pub.send_events("dev-f", 1, 5);
  REQUIRE(eventually([&] { return real->last_seq().value >= 5; }));
  auto s = source->stats();
  CHECK(s.store_retries == 3);
  CHECK(s.events_stored == 5);
  CHECK(ring_keys(*real).size() == 5);
}

TEST_CASE("a message still unstored at stop() is not acknowledged and is redelivered") {
  Mosquitto broker;
  TempDir dir;
  auto opts = options_for(broker, "gw-unstored");
  {
    auto real = open_ring(dir);
    started(opts, *real)->stop();  // creates the session
  }
  {
    Publisher pub(broker.url());
    pub.send_events("dev-u", 1, 3);  // queued by the broker for the session
  }
  // The parked source runs in its own process: it holds Paho's receive thread (and mutex), which
  // all Paho clients of a process share, until that process exits.
  gw::test::ChildProcess helper({GW_INGEST_PARK_HELPER, broker.url(), "gw-unstored", (dir.path() / "ring").string()});
  auto rc = helper.wait(60s);
  REQUIRE(rc.has_value());
  REQUIRE(*rc == 0);

  auto real = open_ring(dir);
  CHECK(real->last_seq().value == 0);
  auto source = started(opts, *real);
  REQUIRE(eventually([&] { return real->last_seq().value >= 3; }));
  auto got = ring_keys(*real);
  CHECK(std::set<Key>(got.begin(), got.end()) == keys(1, 3, "dev-u"));
}

TEST_CASE("what real devices send: seq 0, re-stamped copies dropped, a reused number with other values a dead letter") {
  Mosquitto broker;
  TempDir dir;
  auto ring = open_ring(dir);
  auto dlq = open_dead_letters(dir);
  auto source = started(options_for(broker, "gw-devices"), *ring, dlq.get());

  auto text = [](const std::string& s) { return std::vector<std::uint8_t>(s.begin(), s.end()); };
  Publisher pub(broker.url());
  const std::string topic = "devices/mote/telemetry";
  pub.send(text(R"({"device":"mote","seq":0,"time_ms":1700000000000,"metrics":{"t":20.5,"h":40}})"), topic);
  pub.send(text(R"({"device":"mote","seq":1,"time_ms":1700000001000,"metrics":{"t":20.6,"h":40}})"), topic);
  // The base station retransmits seq 0, stamped with its arrival time; the metrics in another order.
  pub.send(text(R"({"device":"mote","seq":0,"time_ms":1700000003500,"metrics":{"h":40,"t":20.5}})"), topic);
  // Heard by a second gateway, as a FlatBuffer.
  pub.send(ingest::encode_telemetry({ingest::DeviceId{"mote"}, ingest::DeviceSeq{1}, ingest::EventTime{1'700'000'001'000},
                                     {{"t", 20.6}, {"h", 40}}}),
           topic);
  // The same identity with other values: a device reusing numbers.
  pub.send(text(R"({"device":"mote","seq":1,"time_ms":1700000001000,"metrics":{"t":99.0,"h":40}})"), topic);
  pub.send(text(R"({"device":"mote","seq":2,"time_ms":1700000002000,"metrics":{"t":20.7,"h":41}})"), topic);
  REQUIRE(eventually([&] { return source->stats().messages_received >= 6 && ring->last_seq().value >= 3; }));
  REQUIRE(eventually([&] { return dlq->stats().entries >= 1; }));

  CHECK(ring_keys(*ring) == std::vector<Key>{{"mote", 0}, {"mote", 1}, {"mote", 2}});
  auto st = source->stats();
  CHECK(st.duplicates == 2);
  CHECK(st.events_stored == 3);
  CHECK(st.decode_errors[ingest::errc::conflicting_duplicate] == 1);
  const auto b = ring->stats();
  CHECK(b.duplicates_total == 2);
  CHECK(b.duplicates_conflicting_total == 1);
  CHECK(b.reboots_total == 0);
  const auto letters = dlq->list(ingest::errc::conflicting_duplicate, 10);
  REQUIRE(letters.size() == 1);
  CHECK(std::string(letters[0].raw.begin(), letters[0].raw.end()).find("99.0") != std::string::npos);
  source->stop();
}
