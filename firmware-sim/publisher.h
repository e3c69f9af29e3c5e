// The device simulator's publisher: N simulated devices publish Telemetry FlatBuffers
// (ingest::encode_telemetry) or JSON over MQTT at a paced rate, and every reading the broker
// acknowledged (any copy of it) is written to a manifest ("DEVICE SEQ BOOT" per line) for the
// verifier; with an outbox (PublishOptions::outbox), every reading handed to the client, which the
// outbox resends until it is acknowledged.
//
// Thread-safety: publish() runs on the calling thread; `stop` may be set from any thread or a
// signal handler.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>

#include "firmware-sim/device.h"
#include "firmware-sim/errc.h"
#include "firmware-sim/source_formats.h"

namespace gw::firmware_sim {

enum class PayloadFormat { flatbuffers, json, mixed };

inline constexpr std::uint32_t kMaxGateways = 64;

struct PublishOptions {
  std::string broker = "tcp://127.0.0.1:1883";
  std::uint32_t devices = 10;
  // Events per second per device; 0 = as fast as the in-flight window allows.
  double rate = 1.0;
  // When to end (the first one reached); neither = until `stop`.
  std::optional<std::chrono::duration<double>> duration;
  std::optional<std::uint64_t> count;  // messages per device
  int qos = 1;                         // 0, 1 or 2; with 0 "acked" only means "sent"
  std::uint64_t seed = 1;              // synthetic values
  std::filesystem::path manifest;      // empty = no manifest
  std::string topic_pattern = "devices/{device}/telemetry";  // "{device}" is replaced
  std::string device_prefix = "dev-";  // device i (1-based) is "<prefix><i>"
  std::filesystem::path data_dir;      // empty = synthetic values; else replay Intel Lab mote files
  std::string client_id = "firmware-sim";
  // Gateways that hear every device (LoRaWAN): each reading is published once through each one's
  // own MQTT connection, client id "<client_id>-gw<i>" (just client_id when there is one), with the
  // same bytes. --duplicates copies and retransmissions go through the first only.
  std::uint32_t gateways = 1;
  std::uint32_t max_inflight = 100;    // publishes awaiting their acknowledgement
  std::chrono::seconds connect_timeout{10};

  // Fleet behaviours (all off by default; randomness is drawn from `seed`, so a run repeats):
  PayloadFormat format = PayloadFormat::flatbuffers;
  double json_fraction = 0.5;          // with format = mixed: share of devices that speak JSON
  // Not native: every device publishes in that source's form on that source's topic
  // (source_formats.h; topic_pattern and format are then not used). A source without a counter
  // takes no retransmissions (re-stamped, they are new readings to it), and a Tasmota device no
  // more than one reading a second (its time has whole seconds); Sparkplug needs seq_bits 8,
  // seq_start 0 and no reordering (source_formats.h).
  SourceFormat source = SourceFormat::native;
  std::chrono::milliseconds jitter{0};  // each send is delayed by up to this (uniform)
  std::uint32_t reorder_window = 0;    // a device sends its pending events shuffled within this many
  double duplicate_rate = 0;           // probability that a message is published twice (same bytes)
  // Probability that a device reuses a reading's identity (seq, boot id) right after it for other
  // values (its first metric + 1): the gateway keeps that copy as a conflicting_duplicate dead letter.
  double conflict_rate = 0;
  double offline_rate = 0;             // per event: probability that its device goes offline ...
  std::chrono::milliseconds offline_for{5000};  // ... for this long, buffering, then catches up in a burst
  std::chrono::milliseconds clock_skew{0};      // each device's clock is off by a constant in +-this
  double malformed_rate = 0;           // probability of sending a malformed payload (never in the manifest)
  // How devices number their readings: seq start, counter width, reboots, boot ids, and which
  // readings they retransmit (device.h). At a reboot a device first sends what it had queued (its
  // reorder window, an offline backlog) and loses its pending retransmissions. A retransmission
  // does not hold its device up: it goes out when due, between the device's later readings.
  SequenceOptions sequence;
  // Empty = none; else one JSON line per reading when it is first sent (not per copy):
  // ingest::encode_json's fields with "boot_id" always present and the original time_ms.
  std::filesystem::path record;
  std::filesystem::path injected;      // empty = none; else Injected::json() is written there at the end
  std::chrono::seconds drain_timeout{30};  // at the end, how long to wait for outstanding acks (and resend)

  // A device SDK's outbox: a reading whose copy was not acknowledged (publish refused, token failed,
  // connection lost before the PUBACK) stays with its device and is published again, same bytes,
  // once its connection is back; the publisher reconnects itself (no Paho automatic reconnect),
  // waiting resend_backoff doubled per failed attempt up to resend_backoff_max, with jitter drawn
  // from `seed`. The manifest then lists every reading handed to the client (an SDK's outbox makes
  // each of them arrive), and the end of the run resends until the outbox is empty or
  // drain_timeout expires.
  bool outbox = false;
  std::chrono::milliseconds resend_backoff{200};
  std::chrono::milliseconds resend_backoff_max{5000};
  // One MQTT client per device, client id "<client_id>-<device id>", each with its own connection
  // (and outbox); not with gateways > 1.
  bool client_per_device = false;
  // MQTT protocol version of every client: 3 (3.1.1) or 5.
  int mqtt_version = 3;
};

// What the run injected that the gateway should count, from acknowledged copies only (what the
// gateway can have seen). The first acknowledged copy of a reading is the reading; each later one
// is an extra copy of its kind.
struct Injected {
  std::uint64_t duplicate_copies = 0;  // extra copies from duplicate_rate (same bytes)
  std::uint64_t retransmits = 0;       // extra copies from SequenceOptions::retransmit_rate (a later time_ms)
  std::uint64_t multi_gateway_copies = 0;  // extra copies through gateways 2..N (same bytes)
  std::uint64_t conflicts = 0;  // copies with the same identity and other values (conflict_rate), acknowledged
  std::uint64_t reboots = 0;  // per device: its boots with an acknowledged reading, less one
  std::uint64_t wraps = 0;    // per boot: counter wraps between its first and last acknowledged reading

  // Every extra acknowledged copy: what the gateway's duplicates_total should grow by.
  std::uint64_t duplicates() const { return duplicate_copies + retransmits + multi_gateway_copies; }
  // "injected: duplicates=D retransmits=R multi_gateway_copies=M conflicts=X reboots=B wraps=W"
  std::string summary() const;
  // {"duplicates":D,"duplicate_copies":C,"retransmits":R,"multi_gateway_copies":M,"conflicts":X,"reboots":B,
  //  "wraps":W}
  std::string json() const;
};

struct PublishResult {
  std::uint64_t published = 0;  // messages handed to the MQTT client (every copy)
  std::uint64_t acked = 0;      // readings acknowledged by the broker (= manifest lines)
  std::uint64_t failed = 0;     // copies rejected or not acknowledged in time
  std::uint64_t duplicates = 0; // extra copies published on purpose (duplicate_rate)
  std::uint64_t malformed = 0;  // malformed payloads published on purpose (malformed_rate)
  std::uint64_t offline_episodes = 0;
  std::uint64_t resent = 0;     // readings the outbox published again at least once
  std::uint64_t unacked = 0;    // with outbox: readings handed to the client and never acknowledged
  double elapsed_s = 0;
  // Publish to acknowledgement (PUBACK, PUBCOMP) of every acknowledged copy, in µs, as the
  // publisher notices it: exact with max_inflight 1, where it waits on each; with more in flight an
  // acknowledgement may be noticed later than it came. 0 when nothing was acknowledged.
  std::uint32_t ack_p50_us = 0, ack_p99_us = 0, ack_max_us = 0;
  Injected injected;
  // "published=N acked=M failed=K duplicates=D malformed=B offline_episodes=O resent=R unacked=U elapsed_s=X
  //  ack_p50_us=P ack_p99_us=Q ack_max_us=Z"
  std::string summary() const;
};

// Runs the simulation until the duration or count is reached or `stop` becomes true. Fails with
// errc::connect_failed if the first connection fails, errc::bad_data for an unusable data_dir,
// errc::io_error if the manifest, record or injected file cannot be written,
// errc::invalid_argument for bad options.
[[nodiscard]] std::expected<PublishResult, std::error_code> publish(const PublishOptions& options,
                                                                    const std::atomic<bool>& stop);

// The topic of one device: topic_pattern with every "{device}" replaced.
std::string device_topic(const std::string& pattern, const std::string& device);

}  // namespace gw::firmware_sim
