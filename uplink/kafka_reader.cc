// The topic reader (uplink/kafka_reader.h) over librdkafka's consumer C API, with assign() and no
// group. Single-threaded use; librdkafka's own threads fetch in the background.
#include "uplink/kafka_reader.h"

#include <algorithm>

#include "uplink/kafka_client.h"

namespace gw::uplink {

std::optional<std::string_view> KafkaMessage::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

struct KafkaReader::Impl {
  rd_kafka_t* rk = nullptr;
  std::vector<bool> eof;  // per partition: reached the end, nothing newer since

  ~Impl() {
    if (rk != nullptr) {
      rd_kafka_consumer_close(rk);
      rd_kafka_destroy(rk);
    }
  }
};

KafkaReader::KafkaReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
KafkaReader::~KafkaReader() = default;

std::expected<std::unique_ptr<KafkaReader>, std::error_code> KafkaReader::open(const ReaderOptions& options) {
  if (options.brokers.empty() || options.topic.empty()) {
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  detail::ConfPtr conf = detail::make_conf({
      {"bootstrap.servers", options.brokers},
      {"client.id", "gw-uplink-reader"},
      {"group.id", "gw-uplink-reader"},  // required by the consumer API; no group is joined (assign)
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},
      {"auto.offset.reset", "earliest"},  // the oldest data may have been dropped by retention
  });
  if (!conf) return std::unexpected(make_error_code(errc::kafka));
  auto impl = std::make_unique<Impl>();
  char err[512];
  impl->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err);
  if (impl->rk == nullptr) {
    spdlog::error("uplink.reader: cannot create consumer: {}", err);
    return std::unexpected(make_error_code(errc::kafka));
  }
  (void)conf.release();
  rd_kafka_poll_set_consumer(impl->rk);

  // Find the partitions; a topic just created may take a metadata round to appear.
  const auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(impl->rk, options.topic.c_str(), nullptr);
  int partitions = -1;
  std::error_code failure = make_error_code(errc::unreachable);
  while (partitions < 0 && std::chrono::steady_clock::now() < deadline) {
    const rd_kafka_metadata_t* md = nullptr;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const rd_kafka_resp_err_t e = rd_kafka_metadata(
        impl->rk, 0, rkt, &md, static_cast<int>(std::clamp<std::int64_t>(left.count(), 1, 1000)));
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) continue;  // timed out or transport error: try again
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topics[0].partition_cnt > 0) {
      partitions = md->topics[0].partition_cnt;
    } else {
      failure = make_error_code(errc::unknown_topic);
    }
    rd_kafka_metadata_destroy(md);
    if (partitions < 0) rd_kafka_poll(impl->rk, 100);
  }
  rd_kafka_topic_destroy(rkt);
  if (partitions < 0) {
    spdlog::error("uplink.reader: topic {} on {}: {}", options.topic, options.brokers, failure.message());
    return std::unexpected(failure);
  }

  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) {
    rd_kafka_topic_partition_list_add(list, options.topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  const rd_kafka_resp_err_t e = rd_kafka_assign(impl->rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::error("uplink.reader: assign failed: {}", rd_kafka_err2str(e));
    return std::unexpected(make_error_code(errc::kafka));
  }
  impl->eof.assign(static_cast<std::size_t>(partitions), false);
  return std::unique_ptr<KafkaReader>(new KafkaReader(std::move(impl)));
}

std::expected<std::optional<KafkaMessage>, std::error_code> KafkaReader::next(
    std::chrono::milliseconds timeout) {
  rd_kafka_message_t* m = rd_kafka_consumer_poll(
      impl_->rk, static_cast<int>(std::clamp<std::int64_t>(timeout.count(), 0, 1 << 30)));
  if (m == nullptr) return std::nullopt;
  struct Destroy {
    rd_kafka_message_t* m;
    ~Destroy() { rd_kafka_message_destroy(m); }
  } guard{m};
  const auto part = static_cast<std::size_t>(m->partition);
  if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    if (part < impl_->eof.size()) impl_->eof[part] = true;
    return std::nullopt;
  }
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    const std::string why = rd_kafka_message_errstr(m);
    if (m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
      spdlog::error("uplink.reader: {}", why);
      return std::unexpected(make_error_code(errc::unreachable));
    }
    if (m->err == RD_KAFKA_RESP_ERR__FATAL || m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
      spdlog::error("uplink.reader: {}", why);
      return std::unexpected(make_error_code(errc::kafka));
    }
    spdlog::warn("uplink.reader: {} (retrying)", why);
    return std::nullopt;
  }
  KafkaMessage msg;
  msg.partition = m->partition;
  msg.offset = m->offset;
  if (part < impl_->eof.size()) impl_->eof[part] = false;
  const auto* key = static_cast<const std::uint8_t*>(m->key);
  if (key != nullptr) msg.key.assign(key, key + m->key_len);
  const auto* payload = static_cast<const std::uint8_t*>(m->payload);
  if (payload != nullptr) msg.value.assign(payload, payload + m->len);
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    for (std::size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      msg.headers.emplace_back(
          name, value != nullptr ? std::string(static_cast<const char*>(value), size) : std::string());
    }
  }
  return msg;
}

bool KafkaReader::at_end() const {
  return std::all_of(impl_->eof.begin(), impl_->eof.end(), [](bool b) { return b; });
}

int KafkaReader::partitions() const { return static_cast<int>(impl_->eof.size()); }

}  // namespace gw::uplink
