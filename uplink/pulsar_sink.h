// The Pulsar sink: reads the buffer through its own cursor and sends the same zstd FlatBuffer
// batches as the Kafka sink (uplink/FORMAT.md) through Pulsar's documented WebSocket producer API
// (ws[s]://HOST:PORT/ws/v2/producer/persistent/{tenant}/{namespace}/{topic}), over Boost.Beast:
// Debian 12 packages no Pulsar client library.
//
// Each batch is one message: {"payload": base64 of the zstd frame, "properties": the gw-* headers of
// the Kafka sink (gw-gateway-id, gw-first-seq, gw-last-seq, gw-schema-version, gw-codec,
// gw-dict-id, gw-record-type), "context": a per-batch id, "key": the gateway id}. At most
// max_in_flight messages wait for their answer, keyed by context. The cursor advances only over the
// longest prefix of batches answered {"result":"ok"}. A send error ({"result":"send-error:..."})
// makes that batch go again after a backoff; a dropped connection, a failed upgrade or an answer
// that does not come within send_timeout closes the connection, and after a backoff (doubling,
// with jitter) the sink reconnects.
//
// No duplicates across restarts and lost connections: after each (re)connect, before sending, the
// sink reads the topic's end back (uplink/pulsar_tail.h: the admin API's position, the WebSocket
// reader API's messages) and acknowledges what the topic already holds from this gateway
// (uplink/resume.h, the Kafka sink's rule), so a batch stored before a kill -9, or whose "ok" was
// lost with the connection, is not sent again. The producer's name is fixed (producer_name, by
// default edge-gateway.GATEWAY_ID.RECORD_TYPE): the broker accepts it only once the previous
// producer of that name is closed, after its pending messages, so the read-back sees all of them.
// The token's role needs produce and consume permission on the topic (the reader), and the WebSocket
// service must run inside a broker (its admin API on the same host and port). Broker-side
// deduplication cannot help: the WebSocket API lets the proxy choose the sequence ids.
//
// Thread-safety: start()/stop() from the owner thread; stats() from any thread. One thread of its
// own runs everything else (reading the ring, the WebSocket I/O). The Ring must outlive the sink.
#pragma once

#include <chrono>
#include <cstddef>
#include <expected>
#include <memory>
#include <string>
#include <system_error>

#include "buffer/ring.h"
#include "uplink/pulsar_ws.h"
#include "uplink/sink.h"

namespace gw::uplink {

struct PulsarOptions {
  std::string service_url;                 // ws://HOST:PORT or wss://HOST:PORT[/PREFIX]; required
  std::string tenant = "public";
  std::string ns = "default";              // the Pulsar namespace
  std::string topic = "telemetry";         // a persistent topic: persistent://tenant/ns/topic
  std::string producer_name;               // producerName; empty: edge-gateway.GATEWAY_ID.RECORD_TYPE
  std::string token;                       // "Authorization: Bearer TOKEN" on the upgrade; empty: none
  PulsarTls tls;                           // wss:// only
  int zstd_level = 3;                      // 1..19
  std::size_t batch_max_records = 1000;    // records per message at most
  std::size_t batch_max_bytes = 1 << 20;   // stored payload bytes per message, about
  std::chrono::milliseconds linger{100};   // wait this long for a batch to fill before sending it
  std::size_t max_in_flight = 16;          // messages sent and not yet answered, at most
  std::string cursor = "uplink.pulsar";    // the buffer cursor this sink acknowledges; its log name
  buffer::RecordType records = buffer::RecordType::telemetry;  // the record type it forwards
  // sendTimeoutMillis of the producer, and how long the sink waits for an answer before it treats
  // the connection as broken (then it reconnects and resends).
  std::chrono::milliseconds send_timeout{30000};
  std::chrono::milliseconds connect_timeout{10000};  // resolve + connect + TLS + upgrade
  // After a failure, retries wait retry_backoff, doubling up to retry_backoff_max, each with a
  // random jitter of up to half the wait.
  std::chrono::milliseconds retry_backoff{500};
  std::chrono::milliseconds retry_backoff_max{30000};
  std::chrono::milliseconds stop_timeout{5000};  // stop() waits this long for answers at most
  // The send budgets of the Kafka sink (uplink/pacing.h): compressed bytes per second (0: no cap),
  // and records per second while a backlog drains (0: no limit).
  std::uint64_t max_bytes_per_s = 0;
  std::uint64_t drain_max_records_per_s = 50000;
};

class PulsarUplink final : public Sink {
 public:
  // Checks the options (errc::invalid_argument: no or bad service URL, empty names, zero limits);
  // connects nothing until start().
  [[nodiscard]] static std::expected<std::unique_ptr<PulsarUplink>, std::error_code> create(
      PulsarOptions options, std::string gateway_id, buffer::Ring& ring);
  ~PulsarUplink() override;  // stop()s
  PulsarUplink(const PulsarUplink&) = delete;
  PulsarUplink& operator=(const PulsarUplink&) = delete;

  // Registers the cursor and starts the thread, which connects in the background (a service that is
  // down or refuses the token is retried with backoff; stats().state is down and last_error says
  // why). Errors: already_started, the buffer's.
  [[nodiscard]] std::expected<void, std::error_code> start() override;
  void stop() override;
  SinkStats stats() const override;

  struct Impl;

 private:
  explicit PulsarUplink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw::uplink
