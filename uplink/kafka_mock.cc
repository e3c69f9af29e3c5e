// The embedded mock cluster (uplink/kafka_mock.h) over rdkafka_mock.h. The mock cluster needs a
// client handle to live on: a producer that is never used. The rd_kafka_mock_* calls are
// thread-safe (they post to the mock cluster's own thread).
#include "uplink/kafka_mock.h"

#include <string>
#include <vector>

// rdkafka_mock.h needs rdkafka.h first.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "uplink/kafka_client.h"

namespace gw::uplink {

struct MockCluster::Impl {
  rd_kafka_t* rk = nullptr;
  rd_kafka_mock_cluster_t* mc = nullptr;
  int brokers = 0;

  ~Impl() {
    if (mc != nullptr) rd_kafka_mock_cluster_destroy(mc);
    if (rk != nullptr) rd_kafka_destroy(rk);
  }
};

MockCluster::MockCluster(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MockCluster::~MockCluster() = default;

std::expected<std::unique_ptr<MockCluster>, std::error_code> MockCluster::create(int brokers) {
  if (brokers < 1) return std::unexpected(make_error_code(errc::invalid_argument));
  // The host handle has no bootstrap servers of its own: keep its "no bootstrap.servers" notice out.
  detail::ConfPtr conf = detail::make_conf({{"client.id", "gw-kafka-mock"}, {"log_level", "4"}});
  if (!conf) return std::unexpected(make_error_code(errc::kafka));
  auto impl = std::make_unique<Impl>();
  char err[512];
  impl->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err);
  if (impl->rk == nullptr) {
    spdlog::error("kafka-mock: cannot create the host handle: {}", err);
    return std::unexpected(make_error_code(errc::kafka));
  }
  (void)conf.release();
  impl->mc = rd_kafka_mock_cluster_new(impl->rk, brokers);
  if (impl->mc == nullptr) {
    spdlog::error("kafka-mock: cannot create a mock cluster of {} brokers", brokers);
    return std::unexpected(make_error_code(errc::kafka));
  }
  impl->brokers = brokers;
  return std::unique_ptr<MockCluster>(new MockCluster(std::move(impl)));
}

std::string MockCluster::bootstrap() const { return rd_kafka_mock_cluster_bootstraps(impl_->mc); }

int MockCluster::brokers() const { return impl_->brokers; }

std::expected<void, std::error_code> MockCluster::create_topic(std::string_view name, int partitions) {
  if (name.empty() || partitions < 1) return std::unexpected(make_error_code(errc::invalid_argument));
  const std::string topic(name);
  const rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(impl_->mc, topic.c_str(), partitions, 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    spdlog::error("kafka-mock: cannot create topic {}: {}", topic, rd_kafka_err2str(err));
    return std::unexpected(make_error_code(errc::kafka));
  }
  return {};
}

std::expected<void, std::error_code> MockCluster::set_down(bool down) {
  for (int id = 1; id <= impl_->brokers; ++id) {
    const rd_kafka_resp_err_t err =
        down ? rd_kafka_mock_broker_set_down(impl_->mc, id) : rd_kafka_mock_broker_set_up(impl_->mc, id);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::error("kafka-mock: broker {} {}: {}", id, down ? "down" : "up", rd_kafka_err2str(err));
      return std::unexpected(make_error_code(errc::kafka));
    }
  }
  return {};
}

std::expected<void, std::error_code> MockCluster::push_produce_errors(int count, int kafka_error) {
  if (count < 1 || count > 100000) return std::unexpected(make_error_code(errc::invalid_argument));
  const std::vector<rd_kafka_resp_err_t> errors(static_cast<std::size_t>(count),
                                                static_cast<rd_kafka_resp_err_t>(kafka_error));
  rd_kafka_mock_push_request_errors_array(impl_->mc, 0 /* ProduceRequest */, errors.size(), errors.data());
  return {};
}

std::expected<void, std::error_code> MockCluster::set_rtt(std::chrono::milliseconds rtt) {
  if (rtt.count() < 0 || rtt.count() > 3'600'000)
    return std::unexpected(make_error_code(errc::invalid_argument));
  for (int id = 1; id <= impl_->brokers; ++id) {
    const rd_kafka_resp_err_t err =
        rd_kafka_mock_broker_set_rtt(impl_->mc, id, static_cast<int>(rtt.count()));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::error("kafka-mock: broker {} rtt: {}", id, rd_kafka_err2str(err));
      return std::unexpected(make_error_code(errc::kafka));
    }
  }
  return {};
}

}  // namespace gw::uplink
