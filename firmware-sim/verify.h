// The verifier: compares the simulator's manifest (every message the broker acknowledged) with
// the records that came out of the gateway, and counts what was lost, duplicated or unexpected.
// The records come from uplink-cat JSON lines (read_records) or straight from the Kafka topic,
// decoded with the uplink's own reader and decoder (consume_kafka).
//
// Thread-safety: a Verifier is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <expected>
#include <istream>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>

#include "firmware-sim/errc.h"

namespace gw::firmware_sim {

struct VerifyResult {
  std::uint64_t expected = 0;    // distinct (device, seq) in the manifest
  std::uint64_t received = 0;    // record lines read, copies included
  std::uint64_t lost = 0;        // manifest entries never received
  std::uint64_t duplicates = 0;  // extra copies of a (device, seq), manifest or not
  std::uint64_t unexpected = 0;  // distinct (device, seq) received but not in the manifest (allowed)

  bool ok() const { return lost == 0 && duplicates == 0; }
  // "verify: expected=N received=M lost=L duplicates=D unexpected=U"
  std::string summary() const;
};

class Verifier {
 public:
  void expect(std::string_view device, std::uint64_t seq);
  void receive(std::string_view device, std::uint64_t seq);
  VerifyResult result() const;

 private:
  struct Entry {
    bool expected = false;
    std::uint64_t received = 0;
  };
  std::unordered_map<std::string, std::unordered_map<std::uint64_t, Entry>> devices_;
  std::uint64_t received_lines_ = 0;
};

// Reads manifest lines "DEVICE SEQ" into verifier.expect(); blank lines are ignored. Returns the
// number of entries read, or errc::bad_manifest (the line number is logged).
[[nodiscard]] std::expected<std::uint64_t, std::error_code> read_manifest(std::istream& in, Verifier& verifier);

// Reads JSON lines as printed by uplink-cat ({"device":"dev-1","device_seq":N,...}) into
// verifier.receive(); blank lines are ignored. Returns the number of records read, or
// errc::bad_record (the line number is logged).
[[nodiscard]] std::expected<std::uint64_t, std::error_code> read_records(std::istream& in, Verifier& verifier);

struct KafkaVerifyOptions {
  std::string brokers;  // bootstrap list; required
  std::string topic = "telemetry";
  // Consuming ends once `done_file` exists (if set), every partition is at its end and nothing came
  // for `idle_exit`; or after `max_wait` in any case. Consuming while a run goes matters: a mock
  // partition keeps only about 5 MB.
  std::filesystem::path done_file;
  std::chrono::milliseconds idle_exit{3000};
  std::chrono::seconds max_wait{900};
};

struct KafkaVerifyStats {
  std::uint64_t messages = 0;
  std::uint64_t bad_messages = 0;       // messages that did not decode
  std::uint64_t delivered = 0;          // distinct (gateway id, seq) records
  std::uint64_t duplicates = 0;         // extra copies of a (gateway id, seq): the uplink sent a record twice
  std::uint64_t order_violations = 0;   // a device's record (first copy) with a lower device seq than an earlier one
  std::uint64_t duplicates_removed = 0; // Pulsar: extra copies of a (gateway id, seq) dropped by the dedup
  std::uint64_t skipped_offsets = 0;    // Kafka: offsets the topic had dropped before they were read (lost= is then unproven)
  // "delivered=N lost=L duplicates=D redelivered=R order_violations=O bad_messages=B" (and
  // " skipped_offsets=S" when the reader found the topic had dropped records it had not read), where
  // redelivered = extra copies of a (device, device seq) stored under different gateway seqs (an
  // MQTT redelivery that ingest stored twice), from `result`.
  std::string summary(const VerifyResult& result) const;
};

struct PulsarVerifyOptions {
  std::string service_url;  // ws[s]://HOST:PORT; required
  std::string tenant = "public";
  std::string ns = "default";
  std::string topic = "telemetry";
  std::string token;  // Authorization: Bearer
  std::filesystem::path done_file;  // as in KafkaVerifyOptions
  std::chrono::milliseconds idle_exit{3000};
  std::chrono::seconds max_wait{900};
};

// "delivered=N lost=L duplicates=D duplicates_removed=R order_violations=O bad_messages=B": the
// Pulsar form, after dedup by (gateway id, seq). duplicates = extra copies of a (device, device seq)
// left after it (an MQTT redelivery that ingest stored twice), from `result`.
std::string pulsar_summary(const KafkaVerifyStats& stats, const VerifyResult& result);

// Consumes the topic from the beginning (every partition), decodes every batch with
// gw::uplink::decode_batch and feeds each record to verifier.receive(). Errors: the uplink's
// (unreachable, unknown_topic, ...), from opening the topic.
[[nodiscard]] std::expected<KafkaVerifyStats, std::error_code> consume_kafka(const KafkaVerifyOptions& options,
                                                                           Verifier& verifier);

// Reads the Pulsar topic through the WebSocket consumer API (a new subscription: from its first
// message; a lost connection is reopened on the same subscription until max_wait), decodes every
// batch and dedups by (gateway id, seq) before verifier.receive(): the Pulsar sink is at least once,
// so copies are expected after a lost connection; they are counted in duplicates_removed.
// Errors: the uplink's (unreachable, unauthorized, ...), from the first connection.
[[nodiscard]] std::expected<KafkaVerifyStats, std::error_code> consume_pulsar(const PulsarVerifyOptions& options,
                                                                            Verifier& verifier);

}  // namespace gw::firmware_sim
