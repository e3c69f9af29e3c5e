// Reads a whole Kafka topic from the beginning, every partition, without a consumer group
// (partitions assigned, no offsets committed): the consumer side for uplink-cat, tests and later
// tools (verifier, resume-from-tail).
//
// Thread-safety: one thread at a time per reader.
#pragma once

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

#include "uplink/error.h"

namespace gw::uplink {

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

  // True when every partition has reached its end and nothing newer has arrived since.
  bool at_end() const;
  int partitions() const;

  struct Impl;

 private:
  explicit KafkaReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw::uplink
