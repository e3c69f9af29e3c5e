// The Kafka sink: reads the buffer through its cursor, sends zstd FlatBuffer batches
// (uplink/FORMAT.md) to one Kafka topic with an idempotent librdkafka producer, and acknowledges
// the cursor only from successful delivery reports, in order (at-least-once).
//
// Every message's key is the gateway id, so one gateway's batches land in one partition in order.
// A failed delivery rewinds sending to the last acknowledged seq: batches after it may be sent
// twice (dedup across resends and restarts is a later issue, see uplink/README.md).
//
// Thread-safety: start()/stop() from the owner thread; stats() from any thread. The sink runs one
// thread of its own (reading, producing and serving delivery reports) plus librdkafka's threads.
// The Ring must outlive the sink (stop() or destroy the sink first).
#pragma once

#include <chrono>
#include <cstddef>
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
  int zstd_level = 3;                      // 1..19: higher is smaller and slower
  std::size_t batch_max_records = 1000;    // records per message at most
  std::size_t batch_max_bytes = 1 << 20;   // stored payload bytes per message, about (at least one record)
  std::chrono::milliseconds linger{100};   // wait this long for a batch to fill before sending it
  std::size_t max_in_flight_batches = 16;  // unconfirmed batches at most; bounds memory and resends
  std::string cursor = "uplink.kafka";     // the buffer cursor this sink acknowledges
  std::chrono::milliseconds stop_timeout{5000};  // stop() waits this long for confirmations at most
};

class KafkaUplink final : public Sink {
 public:
  // Checks the options (errc::invalid_argument); connects nothing until start().
  [[nodiscard]] static std::expected<std::unique_ptr<KafkaUplink>, std::error_code> create(
      KafkaOptions options, std::string gateway_id, buffer::Ring& ring);
  ~KafkaUplink() override;  // stop()s
  KafkaUplink(const KafkaUplink&) = delete;
  KafkaUplink& operator=(const KafkaUplink&) = delete;

  // Registers the cursor, creates the producer and starts the sending thread, which resumes after
  // the cursor's acknowledged seq. Errors: already_started, kafka (bad client configuration), or
  // the buffer's error.
  [[nodiscard]] std::expected<void, std::error_code> start() override;
  void stop() override;
  SinkStats stats() const override;

  struct Impl;

 private:
  explicit KafkaUplink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw::uplink
