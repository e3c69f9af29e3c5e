// The interface every uplink sink implements (Kafka now, Pulsar later), and the counters it keeps.
// A sink reads the buffer through its own named cursor, sends batches upstream, and acknowledges
// the cursor only for what the upstream system has durably accepted (at-least-once).
//
// Thread-safety: start() and stop() are called by one owner thread; stats() from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>

#include "buffer/ring.h"

namespace gw::uplink {

enum class SinkState {
  connecting,  // started, nothing confirmed yet
  up,          // the upstream system accepted a batch or answered recently
  down,        // every broker unreachable, or the last delivery failed
};
std::string_view to_string(SinkState state) noexcept;

// End-to-end latency of delivered telemetry: from the device's event time to the upstream
// system's acknowledgement (gateway wall clock), per record. Cumulative counts per upper bound.
struct LatencyHistogram {
  // Upper bounds in seconds; the last bucket (+Inf) is `count`.
  static constexpr double kBounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400};
  std::uint64_t buckets[std::size(kBounds)] = {};  // records with latency <= kBounds[i] (cumulative)
  std::uint64_t count = 0;
  double sum_s = 0;
  std::uint64_t negative = 0;  // event time ahead of the gateway clock (device clock skew); counted as 0
  void observe(double seconds) {
    if (seconds < 0) {
      ++negative;
      seconds = 0;
    }
    for (std::size_t i = 0; i < std::size(kBounds); ++i) {
      if (seconds <= kBounds[i]) ++buckets[i];
    }
    ++count;
    sum_s += seconds;
  }
};

struct SinkStats {
  SinkState state = SinkState::connecting;
  std::uint64_t batches_sent = 0;     // produced (including resends after a failure)
  std::uint64_t batches_acked = 0;    // confirmed by the upstream system
  std::uint64_t records_acked = 0;    // records in confirmed batches
  std::uint64_t records_skipped = 0;  // buffer records not forwarded (another record type, or undecodable)
  std::uint64_t bytes_sent = 0;       // compressed message values produced
  std::uint64_t bytes_raw = 0;        // the same batches before compression (FlatBuffer bytes)
  std::uint64_t delivery_errors = 0;  // failed deliveries; each one rewinds to the last ack
  buffer::Seq last_acked;             // the sink's cursor position
  std::size_t in_flight = 0;          // batches produced and not yet confirmed
  std::uint64_t read_backs = 0;       // reads of the upstream tail (start-up, and after each failure)
  buffer::Seq upstream_tail;          // the last seq the upstream system held at the last read-back
  std::uint64_t records_found_upstream = 0;  // records acked because the read-back found them upstream
  std::int32_t partition = -1;        // Kafka: the partition this gateway writes (-1: not known yet)
  std::uint64_t rate_limited_ms = 0;  // time spent waiting for the max_bytes_per_s budget
  std::uint64_t drain_paced_ms = 0;   // time a backlog drain waited for drain_max_records_per_s
  std::uint64_t batches_resent = 0;   // Pulsar: batches sent again (send error, dropped connection)
  std::uint64_t connects = 0;         // Pulsar: WebSocket connections made (the first included)
  std::string last_error;             // the latest connection/delivery problem; cleared by a delivery
  std::string last_delivery_error;    // Kafka: the latest failed delivery, or a batch unconfirmed for
                                      // message_timeout and what a read of the partition then says;
                                      // cleared by a delivery (connection errors keep it)
  std::uint64_t transactions_committed = 0;  // Kafka exactly_once: committed transactions
  std::uint64_t transactions_aborted = 0;    // Kafka exactly_once: left open for the next producer to
                                             // abort (a delivery or commit failed); their batches are resent
  bool fenced = false;                // Kafka exactly_once: another producer took this sink's
                                      // transactional.id; it sends nothing more until restarted
  LatencyHistogram latency;           // telemetry only: event time to delivery report
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Registers the cursor and starts the sink's thread. Errors: already_started, kafka, ...
  [[nodiscard]] virtual std::expected<void, std::error_code> start() = 0;
  // Stops reading, waits a bounded time for in-flight batches, and joins. Idempotent; never hangs
  // when the upstream system is down (unconfirmed batches are sent again after a restart).
  virtual void stop() = 0;
  virtual SinkStats stats() const = 0;
};

}  // namespace gw::uplink
