// An embedded Kafka cluster for tests and the demo: librdkafka's mock cluster, a real Kafka-protocol
// server on 127.0.0.1 (ephemeral ports) that can inject faults (brokers down, latency).
// Limits of librdkafka 2.0.2's mock: each partition keeps only about 5 MB (the oldest data is
// dropped beyond that), it does not deduplicate idempotent retries, nor emulate read_committed.
//
// Thread-safety: every member function may be called from any thread. The cluster runs on
// librdkafka's threads until the object is destroyed.
#pragma once

#include <chrono>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "uplink/error.h"

namespace gw::uplink {

class MockCluster {
 public:
  // Starts `brokers` mock brokers (ids 1..brokers). Errors: invalid_argument (brokers < 1), kafka.
  [[nodiscard]] static std::expected<std::unique_ptr<MockCluster>, std::error_code> create(int brokers = 1);
  ~MockCluster();
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  // "127.0.0.1:PORT[,127.0.0.1:PORT]": the bootstrap.servers value for clients.
  std::string bootstrap() const;
  int brokers() const;

  // Creates a topic (replication factor 1). An existing topic is left as it is and is no error.
  [[nodiscard]] std::expected<void, std::error_code> create_topic(std::string_view name, int partitions = 1);
  // Takes every broker down (connections closed, new ones refused) or brings them back.
  [[nodiscard]] std::expected<void, std::error_code> set_down(bool down);
  // The next `count` produce requests fail with `kafka_error`, a Kafka protocol error code (e.g. 19
  // NOT_ENOUGH_REPLICAS and 7 REQUEST_TIMED_OUT are retriable; -195 (librdkafka's __TRANSPORT)
  // makes the broker close the connection instead of answering). Errors: invalid_argument.
  [[nodiscard]] std::expected<void, std::error_code> push_produce_errors(int count, int kafka_error);
  // Adds this round-trip time to every broker's responses (0 removes it).
  [[nodiscard]] std::expected<void, std::error_code> set_rtt(std::chrono::milliseconds rtt);

  struct Impl;

 private:
  explicit MockCluster(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace gw::uplink
