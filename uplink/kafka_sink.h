// The Kafka sink: reads the buffer through its cursor, sends zstd FlatBuffer batches
// (uplink/FORMAT.md) to one partition of one Kafka topic with an idempotent librdkafka producer
// (acks=all), and acknowledges the cursor only from successful delivery reports, in order.
//
// No duplicates across restarts: before it sends anything, and again after any failed or timed-out
// delivery, the sink reads back the tail of its partition (read_tail in kafka_reader.h): the
// batches of this gateway after its cursor. It acks its cursor over the run of them that follows
// the cursor without a gap, resends only what is missing, and skips the batches the broker holds
// beyond a gap (a batch that failed while a later one was delivered, e.g. after a message timeout:
// the later one proves nothing about the earlier). So the topic holds every record once, also
// across kill -9, unless the broker itself duplicates a retried request (a real broker's
// idempotence prevents that; librdkafka 2.0.2's mock cluster does not).
//
// One sink forwards one record type (KafkaOptions::records): the gateway runs one for telemetry
// (the raw topic) and one for the windowing stage's aggregate records (the aggregates topic), each
// with its own cursor, producer, partition, read-back and pacing. A sink acks past the records of
// the other type without sending them.
//
// Thread-safety: start()/stop() from the owner thread; stats() from any thread. The sink runs one
// thread of its own (reading, producing, serving delivery reports, reading back) plus librdkafka's
// threads. The Ring must outlive the sink (stop() or destroy the sink first).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <system_error>

#include "buffer/ring.h"
#include "uplink/sink.h"

namespace gw::uplink {

struct KafkaOptions {
  std::string brokers;                     // bootstrap list "host:port[,host:port]"; required
  std::string topic = "telemetry";         // must exist (or the cluster must auto-create it)
  // The partition this gateway writes; -1: the partition of its key (the gateway id) by librdkafka's
  // consistent (CRC32) partitioner. Either way one gateway = one partition, so order holds.
  std::int32_t partition = -1;
  int zstd_level = 3;                      // 1..19: higher is smaller and slower
  std::size_t batch_max_records = 1000;    // records per message at most
  std::size_t batch_max_bytes = 1 << 20;   // stored payload bytes per message, about (at least one record)
  // Wait this long for a batch to fill before sending it. 1 s: a small fleet's batches are what
  // costs bytes on the link (bench-uplink --rates: at 10 events/s, 163 bytes per record with
  // 100 ms, 48 with 1 s; at 100/s, 46 and 17), for about half a second of added delay on average.
  std::chrono::milliseconds linger{1000};
  std::size_t max_in_flight_batches = 16;  // unconfirmed batches at most; bounds memory and resends
  std::string cursor = "uplink.kafka";     // the buffer cursor this sink acknowledges; also its log name
  // The record type this sink forwards (telemetry: columnar batches; aggregate: aggregate batches,
  // uplink/FORMAT.md). Records of other types are acked without being sent (records_skipped).
  buffer::RecordType records = buffer::RecordType::telemetry;
  std::chrono::milliseconds stop_timeout{5000};  // stop() waits this long for confirmations at most
  // A batch not confirmed in this time makes the sink report itself down, and why (stats()
  // last_delivery_error); the batch is not given up: the idempotent producer retries it until the
  // broker confirms it (librdkafka's message.timeout.ms is infinite, see kafka_sink.cc).
  std::chrono::milliseconds message_timeout{30000};
  std::chrono::milliseconds read_back_timeout{10000};  // one read-back of the tail gives up after this
  // After a failure, retries wait retry_backoff, doubling up to retry_backoff_max, each with a
  // random jitter of up to half the wait (so that many gateways do not retry in step).
  std::chrono::milliseconds retry_backoff{500};
  std::chrono::milliseconds retry_backoff_max{30000};
  // Caps the compressed bytes per second sent upstream (metered links); 0 = no cap. Bursts of one
  // second's budget. A backlog drains at this rate too.
  std::uint64_t max_bytes_per_s = 0;
  // While a backlog waits (more than two full batches behind the buffer's head), records are sent
  // (read, for records of another type) at most this fast, so that draining after an outage leaves CPU and disk to ingest, which must
  // keep acknowledging live data. 0 = no limit. Live traffic below this rate is never held back.
  std::uint64_t drain_max_records_per_s = 50000;
  // Exactly once for read_committed consumers: batches are produced in transactions (transactional.id
  // "edge-gateway.<gateway id>.<record type>"), the cursor acks only committed ones, and a restarted
  // sink first aborts what its predecessor left open (init_transactions) and then reads back only
  // committed batches. A process whose transactional.id another one took over (a second gateway
  // with the same id) is fenced by the broker: it stops sending and says so until restarted.
  bool exactly_once = false;
  // exactly_once: a transaction is committed this long after it began (what it holds is acked
  // then: the latency this adds), or sooner once it holds max_in_flight_batches batches.
  std::chrono::milliseconds commit_interval{200};
  // Passed to librdkafka unchanged when not empty (see librdkafka's CONFIGURATION.md).
  std::string security_protocol;           // plaintext, ssl, sasl_plaintext, sasl_ssl
  std::string sasl_mechanism;              // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, ...
  std::string sasl_username;
  std::string sasl_password;
  std::string ssl_ca_location;             // PEM file of the CA that signed the brokers' certificates
  std::string ssl_certificate_location;    // client certificate (PEM) for TLS client authentication
  std::string ssl_key_location;            // its private key (PEM)
  std::string ssl_key_password;
};

class KafkaUplink final : public Sink {
 public:
  // Checks the options (errc::invalid_argument); connects nothing until start().
  [[nodiscard]] static std::expected<std::unique_ptr<KafkaUplink>, std::error_code> create(
      KafkaOptions options, std::string gateway_id, buffer::Ring& ring);
  ~KafkaUplink() override;  // stop()s
  KafkaUplink(const KafkaUplink&) = delete;
  KafkaUplink& operator=(const KafkaUplink&) = delete;

  // Registers the cursor, creates the producer (errc::kafka: librdkafka refused a property, logged
  // with its reason) and starts the sending thread. Returns without waiting for any broker: the
  // thread reads the partition's tail back first, retrying with backoff while no broker answers
  // (stats().state is down and last_error says why). Errors: already_started, kafka, the buffer's.
  [[nodiscard]] std::expected<void, std::error_code> start() override;
  void stop() override;
  SinkStats stats() const override;

  struct Impl;

 private:
  explicit KafkaUplink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The librdkafka the gateway runs with (rd_kafka_version_str()), for `edge-gateway --version`:
// what a broker accepts depends on it (SCRAM against Kafka 4.x needs 2.6.1 or later).
std::string librdkafka_version();

}  // namespace gw::uplink
