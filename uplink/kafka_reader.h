// Reads a whole Kafka topic from the beginning, every partition, without a consumer group
// (partitions assigned, no offsets committed): the consumer side for uplink-cat, firmware-sim
// verify and tests. And read_tail(): the read-back of a partition's tail with which the sink
// resumes after a restart or resolves a batch whose delivery is unknown.
//
// Thread-safety: one thread at a time per reader.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "buffer/ring.h"
#include "uplink/error.h"
#include "uplink/resume.h"

namespace gw::uplink {

// librdkafka client properties passed through unchanged (security.protocol, sasl.*, ssl.*, ...).
using ClientProperties = std::vector<std::pair<std::string, std::string>>;

struct KafkaMessage {
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // in message order
  std::vector<std::uint8_t> key;
  std::vector<std::uint8_t> value;

  // The first header of that name, if any.
  std::optional<std::string_view> header(std::string_view name) const;
};

struct ReaderOptions {
  std::string brokers;  // bootstrap list; required
  std::string topic = "telemetry";
  std::chrono::milliseconds connect_timeout{5000};  // open() gives up finding the topic after this
  ClientProperties properties;                      // extra librdkafka properties (TLS, SASL)
};

class KafkaReader {
 public:
  // Connects, looks the topic's partitions up and starts each at its beginning.
  // Errors: invalid_argument, kafka, unreachable (no broker answered), unknown_topic.
  [[nodiscard]] static std::expected<std::unique_ptr<KafkaReader>, std::error_code> open(
      const ReaderOptions& options);
  ~KafkaReader();
  KafkaReader(const KafkaReader&) = delete;
  KafkaReader& operator=(const KafkaReader&) = delete;

  // The next message, waiting up to `timeout`; nullopt if none came (or a partition reached its
  // end). Errors: unreachable (every broker down), kafka (a consumer error that will not pass).
  [[nodiscard]] std::expected<std::optional<KafkaMessage>, std::error_code> next(
      std::chrono::milliseconds timeout);

  // True when every partition has reached its end and nothing newer has arrived since. This is
  // what the consumer last heard: while the brokers are down (or the consumer waits to reconnect)
  // it stays true although newer messages may have arrived; caught_up() asks the brokers.
  bool at_end() const;
  // Asks the partition leaders for their high watermarks: true if this reader has read up to each
  // (nothing on the topic is unread now). False if a broker did not answer within `timeout`.
  bool caught_up(std::chrono::milliseconds timeout);
  // Offsets jumped over between consecutive messages of a partition that lie below the partition's
  // start: data the topic no longer had when this reader came to it (retention dropped it while
  // the reader lagged, and the consumer reset to the earliest offset left). Other jumps are
  // transaction markers and aborted transactions (uplink.kafka exactly_once), not counted.
  std::uint64_t skipped() const;
  int partitions() const;

  struct Impl;

 private:
  explicit KafkaReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct TailQuery {
  std::string brokers;  // bootstrap list; required
  std::string topic;
  std::int32_t partition = 0;
  std::string gateway_id;  // whose batches to look for (gw-gateway-id header, or the key)
  ClientProperties properties;
  std::chrono::milliseconds timeout{10000};  // the whole read-back gives up after this
  const std::atomic<bool>* cancel = nullptr;  // if set and true, gives up early (errc::unreachable)
  // Only batches of this record type count (gw-record-type header; absent = "telemetry"), so that
  // the telemetry and aggregate sinks resume independently even if they share a topic.
  std::string record_type = "telemetry";
};

// The batches of `gateway_id` (and `record_type`) in the partition's tail that end after `after`,
// in partition order, found by reading back from the partition's end (8 messages, then 64, 512, ...)
// until a batch of this gateway ending at or before `after` appears, or the partition's beginning.
// The last one's `last` is the newest sequence number the broker holds from this gateway; the
// ranges tell whether it holds everything after `after` up to there: a batch that failed while a
// later one was delivered leaves a gap. Empty: nothing of this gateway after `after`.
// Errors: invalid_argument, unreachable (no answer within the timeout), unknown_topic, kafka.
[[nodiscard]] std::expected<std::vector<HeldRange>, std::error_code> read_tail(const TailQuery& query,
                                                                             buffer::Seq after);

}  // namespace gw::uplink
