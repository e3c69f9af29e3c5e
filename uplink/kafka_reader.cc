// The topic reader (uplink/kafka_reader.h) over librdkafka's consumer C API, with assign() and no
// group. Single-threaded use; librdkafka's own threads fetch in the background.
#include "uplink/kafka_reader.h"

#include <algorithm>
#include <charconv>

#include "uplink/kafka_client.h"

namespace gw::uplink {

namespace {

// A partition's offset by ListOffsets: `which` -1 is its end (high watermark), -2 its start. Not
// rd_kafka_query_watermark_offsets: in librdkafka 2.0.2 it can wait forever for a broker that went
// down, past its timeout (librdkafka #2588, fixed in 2.3.0); offsets_for_times keeps its timeout.
rd_kafka_resp_err_t list_offset(rd_kafka_t* rk, const std::string& topic, std::int32_t partition, std::int64_t which,
                                int timeout_ms, std::int64_t& offset) {
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = which;
  rd_kafka_resp_err_t e = rd_kafka_offsets_for_times(rk, list, timeout_ms);
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) e = list->elems[0].err;
  offset = list->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(list);
  return e;
}

}  // namespace

std::optional<std::string_view> KafkaMessage::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

struct KafkaReader::Impl {
  rd_kafka_t* rk = nullptr;
  std::string topic;
  std::vector<bool> eof;  // per partition: reached the end, nothing newer since
  std::vector<std::int64_t> next_offset;  // per partition: the offset after the last message; -1 before
  std::uint64_t skipped = 0;

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
  if (!conf || !detail::set_props(conf.get(), options.properties)) {
    return std::unexpected(make_error_code(errc::kafka));
  }
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
  impl->next_offset.assign(static_cast<std::size_t>(partitions), -1);
  impl->topic = options.topic;
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
    if (part < impl_->eof.size()) {
      impl_->eof[part] = true;
      // The end's offset: past a final transaction marker, which is no message (caught_up()).
      impl_->next_offset[part] = std::max(impl_->next_offset[part], m->offset);
    }
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
  if (part < impl_->eof.size()) {
    impl_->eof[part] = false;
    std::int64_t& expected = impl_->next_offset[part];
    if (expected >= 0 && m->offset > expected) {
      // Offsets without a message for us: transaction markers and aborted transactions (an
      // exactly_once producer's), which a read_committed consumer never receives, or records
      // retention dropped while this reader lagged: only those below the partition's start (the
      // low watermark the last fetch reported) were lost to it.
      std::int64_t low = -1, high = -1;
      rd_kafka_get_watermark_offsets(impl_->rk, rd_kafka_topic_name(m->rkt), m->partition, &low, &high);
      const std::int64_t gone_end = std::min(m->offset, low);
      if (gone_end > expected) {
        impl_->skipped += static_cast<std::uint64_t>(gone_end - expected);
        spdlog::warn("uplink.reader: {} [{}]: offsets {}..{} were gone before they were read",
                     rd_kafka_topic_name(m->rkt), m->partition, expected, gone_end - 1);
      }
    }
    expected = std::max(expected, m->offset + 1);
  }
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

bool KafkaReader::caught_up(std::chrono::milliseconds timeout) {
  const int ms = static_cast<int>(std::clamp<std::int64_t>(timeout.count(), 1, 1 << 30));
  for (std::size_t p = 0; p < impl_->next_offset.size(); ++p) {
    std::int64_t end = 0;
    if (list_offset(impl_->rk, impl_->topic, static_cast<std::int32_t>(p), -1, ms, end) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return false;
    }
    // A partition that has read nothing yet is caught up only if it is empty.
    if (end > 0 && impl_->next_offset[p] < end) return false;
  }
  return true;
}

std::uint64_t KafkaReader::skipped() const { return impl_->skipped; }

int KafkaReader::partitions() const { return static_cast<int>(impl_->eof.size()); }

namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<std::int64_t>(left, 1, 1 << 30));
}

std::error_code classify(rd_kafka_resp_err_t e) {
  switch (e) {
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
      return make_error_code(errc::unreachable);
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
      return make_error_code(errc::unknown_topic);
    default:
      return make_error_code(errc::kafka);
  }
}

std::optional<std::string_view> header_of(rd_kafka_message_t* m, const char* name) {
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  const void* value = nullptr;
  std::size_t size = 0;
  if (rd_kafka_header_get_last(hdrs, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || value == nullptr) {
    return std::nullopt;
  }
  return std::string_view(static_cast<const char*>(value), size);
}

}  // namespace

std::expected<std::vector<HeldRange>, std::error_code> read_tail(const TailQuery& q, buffer::Seq after) {
  if (q.brokers.empty() || q.topic.empty() || q.gateway_id.empty() || q.partition < 0) {
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  const auto deadline = Clock::now() + q.timeout;
  detail::ConfPtr conf = detail::make_conf({
      {"bootstrap.servers", q.brokers},
      {"client.id", "gw-uplink-tail-" + q.gateway_id},
      {"group.id", "gw-uplink-tail"},  // required by the consumer API; no group is joined (assign)
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},
      {"auto.offset.reset", "earliest"},
  });
  if (!conf || !detail::set_props(conf.get(), q.properties)) return std::unexpected(make_error_code(errc::kafka));
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf.get(), err, sizeof err);
  if (rk == nullptr) {
    spdlog::error("uplink.tail: cannot create consumer: {}", err);
    return std::unexpected(make_error_code(errc::kafka));
  }
  (void)conf.release();
  struct Close {
    rd_kafka_t* rk;
    ~Close() {
      rd_kafka_consumer_close(rk);
      rd_kafka_destroy(rk);
    }
  } closer{rk};
  rd_kafka_poll_set_consumer(rk);

  auto cancelled = [&q] { return q.cancel != nullptr && q.cancel->load(); };
  std::int64_t low = 0, high = 0;
  rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR__TIMED_OUT;
  // In slices, so that a cancel is noticed. Every error that may pass (classify(): unreachable) is
  // tried again until the deadline: librdkafka says "all brokers down" as soon as the first
  // bootstrap broker it tries refuses, before it has tried the others, so with one broker of three
  // up a read-back gave up after 0.5 s in two starts of three.
  while (Clock::now() < deadline && !cancelled()) {
    e = list_offset(rk, q.topic, q.partition, -2, std::min(ms_left(deadline), 500), low);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      e = list_offset(rk, q.topic, q.partition, -1, std::min(ms_left(deadline), 500), high);
    }
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR || classify(e) != errc::unreachable) break;
    if (e != RD_KAFKA_RESP_ERR__TIMED_OUT) rd_kafka_poll(rk, std::min(ms_left(deadline), 100));  // no spin
  }
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::debug("uplink.tail: watermarks of {} [{}]: {}", q.topic, q.partition, rd_kafka_err2str(e));
    return std::unexpected(classify(e));
  }
  std::vector<HeldRange> held;  // partition order
  std::int64_t end = high;
  std::int64_t window = 8;
  bool reached_after = false;  // a batch of ours ending at or before `after` was seen
  while (end > low && !reached_after) {
    const std::int64_t start = std::max(low, end - window);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, q.topic.c_str(), q.partition)->offset = start;
    const rd_kafka_resp_err_t ae = rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (ae != RD_KAFKA_RESP_ERR_NO_ERROR) return std::unexpected(make_error_code(errc::kafka));
    std::vector<HeldRange> found;  // in this window, partition order
    bool reached = false;
    while (!reached) {
      if (Clock::now() >= deadline || cancelled()) return std::unexpected(make_error_code(errc::unreachable));
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, std::min(ms_left(deadline), 200));
      if (m == nullptr) continue;
      struct Destroy {
        rd_kafka_message_t* m;
        ~Destroy() { rd_kafka_message_destroy(m); }
      } guard{m};
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        reached = true;
        continue;
      }
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const std::error_code ec = classify(m->err);
        if (ec == errc::unknown_topic || m->err == RD_KAFKA_RESP_ERR__FATAL) return std::unexpected(ec);
        continue;  // transient: librdkafka retries the fetch
      }
      if (m->offset >= end - 1) reached = true;
      if (m->offset >= end) continue;  // read by the previous (later) window
      const auto id = header_of(m, "gw-gateway-id");
      const bool ours = id ? *id == q.gateway_id
                           : m->key != nullptr && std::string_view(static_cast<const char*>(m->key), m->key_len) ==
                                                      q.gateway_id;
      const auto type = header_of(m, "gw-record-type");
      if (!ours || type.value_or("telemetry") != q.record_type) continue;
      const auto last = header_of(m, "gw-last-seq");
      const auto first = header_of(m, "gw-first-seq");
      std::uint64_t l = 0, f = 0;
      if (!last || std::from_chars(last->data(), last->data() + last->size(), l).ec != std::errc{}) {
        spdlog::warn("uplink.tail: {} [{}] offset {}: no readable gw-last-seq header; ignored", q.topic,
                     q.partition, m->offset);
        continue;
      }
      // Without a readable first seq the batch proves only its last record: a gap before it is
      // resent (a duplicate at worst, never a loss).
      if (!first || std::from_chars(first->data(), first->data() + first->size(), f).ec != std::errc{} || f > l) {
        f = l;
      }
      if (l <= after.value) {
        reached_after = true;
        continue;
      }
      found.push_back({buffer::Seq{f}, buffer::Seq{l}});
    }
    held.insert(held.begin(), found.begin(), found.end());
    end = start;
    window *= 8;
  }
  return held;
}

}  // namespace gw::uplink
