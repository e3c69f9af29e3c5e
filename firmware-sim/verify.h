// The verifier: compares the simulator's manifest (every reading the broker acknowledged) with
// the records that came out of the gateway, and counts what was lost, duplicated or unexpected.
// A reading is identified by (device, boot id, seq). That identity is not unique over a run (a
// device without a boot id that reboots, or a counter that wraps past all its values, numbers a
// new reading as an old one), so both sides are multisets: per identity, the records upstream
// must be as many as the manifest lines.
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

// Counts over identities (device, boot id, seq); per identity, e = its manifest lines, r = its
// records received.
struct VerifyResult {
  std::uint64_t expected = 0;    // manifest entries (readings), sum of e
  std::uint64_t received = 0;    // records read, copies included, sum of r
  std::uint64_t lost = 0;        // sum of e - r where r < e
  std::uint64_t duplicates = 0;  // sum of r - e where r > e > 0, and r - 1 for identities not in the manifest
  std::uint64_t unexpected = 0;  // identities received but not in the manifest (allowed)
  std::uint64_t resent = 0;      // readings the device had to publish again (manifest "resent" marks)

  bool ok() const { return lost == 0 && duplicates == 0; }
  // "verify: expected=N received=M lost=L duplicates=D unexpected=U resent=R"
  std::string summary() const;
};

class Verifier {
 public:
  // One reading acknowledged to the device (a manifest line); may be called again for the same
  // identity, which then expects one more record.
  void expect(std::string_view device, std::uint32_t boot_id, std::uint64_t seq);
  // One record that came out of the gateway.
  void receive(std::string_view device, std::uint32_t boot_id, std::uint64_t seq);
  // The device published that reading again (it got no acknowledgement the first time): counted
  // once per identity, expects nothing more.
  void mark_resent(std::string_view device, std::uint32_t boot_id, std::uint64_t seq);
  VerifyResult result() const;

 private:
  struct Entry {
    std::uint64_t expected = 0;
    std::uint64_t received = 0;
    bool resent = false;
  };
  using Seqs = std::unordered_map<std::uint64_t, Entry>;
  std::unordered_map<std::string, std::unordered_map<std::uint32_t, Seqs>> devices_;  // device -> boot id -> seq
  std::uint64_t received_lines_ = 0;
};

// Reads manifest lines "DEVICE SEQ BOOT" (BOOT: the boot id, 0 = none) into verifier.expect();
// lines "DEVICE SEQ" (written before boot ids) read as boot 0; a line "DEVICE SEQ BOOT resent"
// marks a reading that was published again (verifier.mark_resent()); blank lines are ignored.
// Returns the number of entries read (marks not counted), or errc::bad_manifest (the line number is logged).
[[nodiscard]] std::expected<std::uint64_t, std::error_code> read_manifest(std::istream& in, Verifier& verifier);

// Reads JSON lines as printed by uplink-cat ({"device":"dev-1","device_seq":N,"boot_id":B,...};
// no "boot_id" = 0) into verifier.receive(); blank lines are ignored. Returns the number of
// records read, or errc::bad_record (the line number is logged).
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
  std::uint64_t order_violations = 0;   // a record (first copy) with a lower device seq than an earlier one of its
                                        // device and boot id (a wrap or a reboot without boot id counts too)
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
