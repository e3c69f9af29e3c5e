// The MQTT source: subscribes to the device telemetry topics on the local broker with a persistent
// session and stores every valid event in the ring buffer BEFORE the message is acknowledged.
//
// The ack invariant (DESIGN.md, "No ack before durable"): Paho sends the QoS 1 PUBACK when the
// message callback returns, so the ring append happens inside the callback. While an append fails
// (e.g. the ring is full) the callback keeps retrying with backoff and the message stays
// unacknowledged; the broker queues what follows (the "block" overflow behaviour). Paho runs that
// callback on the one receive thread it shares among all clients of the process, holding its
// global mutex, so during such an episode every Paho client of the process stalls.
// If stop() comes during an episode, the message is left "parked": the callback never returns
// (so no PUBACK is ever sent) and stop() returns; the process should then exit, which closes the
// connection, and the broker redelivers the message to the next source with the same client id.
// See mqtt_source.cc for what was verified in Paho's sources.
//
// Thread-safety: start(), stop() and stats() may be called from any thread, but start()/stop()
// not concurrently with each other. Paho's callbacks run on Paho's threads. The Ring must outlive
// the MqttSource's stop() (after stop() returns the source never touches the ring again).
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "buffer/ring.h"
#include "ingest/dead_letters.h"
#include "ingest/event.h"
#include "ingest/mapping.h"
#include "ingest/store.h"

namespace gw::ingest {

struct MqttOptions {
  std::string url = "tcp://127.0.0.1:1883";  // tcp://, ssl:// (or mqtts://)
  // Fixed: the broker keeps the persistent session (subscriptions, queued messages) under this id.
  std::string client_id = "edge-gateway";
  std::vector<std::string> topics{"devices/+/telemetry"};
  int qos = 1;                          // subscription QoS; 1 is what the ack invariant is about
  int mqtt_version = 4;                 // 4 = MQTT 3.1.1, 5 = MQTT 5
  std::chrono::seconds keep_alive{30};  // note: a long store-retry episode blocks keep-alive handling
  std::string username, password;       // empty = anonymous
  std::string ca_file, cert_file, key_file;  // TLS (any set, or an ssl:// url, enables TLS)
  std::chrono::milliseconds reconnect_min{500};    // first retry delay after a failed/lost connection
  std::chrono::milliseconds reconnect_max{30000};  // the delay doubles up to this
  // MQTT 5 only: how long the broker keeps the session while we are away (0xFFFFFFFF = forever).
  std::uint32_t session_expiry_s = 0xFFFFFFFF;
  std::chrono::milliseconds store_retry_min{10};    // first delay between failed append attempts
  std::chrono::milliseconds store_retry_max{1000};  // the delay doubles up to this
  // Where the device id comes from: a topic pattern with one "{device}" level, e.g.
  // "devices/{device}/telemetry". When a message's topic matches, its device id is the topic's
  // (the broker's ACLs are per topic), and a payload naming another device is counted in
  // device_mismatches. Empty, or a topic that does not match: the payload's device id.
  std::string device_pattern = "devices/{device}/telemetry";
  Limits limits;  // payload size and event-time skew (ingest/event.h)
  // Mapped sources ([[ingest.source]], ingest/mapping.h): messages on their topics are decoded by
  // their mapping. Checked by the gateway's config (Mapper::compile).
  std::vector<SourceMapping> sources;
  std::string sparkplug_state_dir;  // where Sparkplug sessions are saved (empty: not saved)
  // The gateway clock, in Unix ms (injected so that tests are deterministic).
  std::function<std::int64_t()> clock;
};

struct MqttStats {
  bool connected = false;
  bool subscribed = false;              // the broker confirmed every subscription of this connection
  std::uint64_t messages_received = 0;  // callbacks entered (redeliveries included)
  std::uint64_t events_stored = 0;      // records appended to the ring
  std::uint64_t duplicates = 0;         // redeliveries the buffer dropped (already stored)
  std::map<errc, std::uint64_t> decode_errors;  // by reason; such messages are rejected for good
  std::uint64_t decode_errors_total = 0;
  std::uint64_t store_retries = 0;    // failed append attempts that were retried
  std::uint64_t unstored_at_stop = 0; // 1 if stop() parked an unstored message (see above)
  std::uint64_t device_mismatches = 0;   // payload device id differed from the topic's (topic won)
  std::uint64_t not_events = 0;          // mapped sources' messages that are not events (`when`): acknowledged
  std::uint64_t arrival_times = 0;       // mapped events without a time in the payload: stamped on arrival
  std::map<std::string, std::uint64_t> sparkplug_deaths;  // Sparkplug NDEATH/DDEATH per device
  std::uint64_t dead_letter_failures = 0;  // rejected messages the dead-letter store could not keep
  std::uint64_t reconnects = 0;       // successful connects after the first
  std::string last_error;             // empty if none yet
};

class MqttSource {
 public:
  // Validates the options and creates the MQTT client; does not connect yet. Fails with
  // std::errc::invalid_argument for a bad url, qos, version or empty topic list.
  // dead_letters (optional, must outlive the source): where rejected messages are kept.
  [[nodiscard]] static std::expected<std::unique_ptr<MqttSource>, std::error_code> create(
      MqttOptions options, buffer::Ring& ring, DeadLetters* dead_letters = nullptr);
  // The same over any EventStore (e.g. the IPC store of an ingest worker); it must outlive the source.
  [[nodiscard]] static std::expected<std::unique_ptr<MqttSource>, std::error_code> create(MqttOptions options,
                                                                                        EventStore& store);
  virtual ~MqttSource() = default;  // implementations stop() first

  // Starts connecting in the background and returns at once. A broker that is down is not an
  // error: the source keeps retrying with backoff, and resubscribes on every (re)connect.
  virtual void start() = 0;
  // Disconnects cleanly and waits (bounded) until no callback is running. A message whose append
  // is still failing is parked unacknowledged (stats().unstored_at_stop; see above), and then the
  // process should exit. Idempotent; a stopped source cannot be restarted (create a new one with
  // the same client id). Takes up to about store_retry_max plus a few seconds.
  virtual void stop() = 0;

  virtual MqttStats stats() const = 0;

 private:
  static std::expected<std::unique_ptr<MqttSource>, std::error_code> create(MqttOptions options, EventStore& store,
                                                                          std::unique_ptr<EventStore> owned);
};

}  // namespace gw::ingest
