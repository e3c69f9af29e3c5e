// The Kafka sink (uplink/kafka_sink.h) over librdkafka's C API.
//
// Threads: everything below except stats() runs on the sink's own thread: it reads the ring,
// produces, and serves delivery reports through rd_kafka_poll (librdkafka calls dr_msg_cb and
// error_cb only from rd_kafka_poll/flush, hence on this thread). So the in-flight FIFO needs no
// lock; only the stats snapshot is shared, under a mutex.
#include "uplink/kafka_sink.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "uplink/batch.h"
#include "uplink/kafka_client.h"

namespace gw::uplink {

std::string_view to_string(SinkState state) noexcept {
  switch (state) {
    case SinkState::connecting:
      return "connecting";
    case SinkState::up:
      return "up";
    case SinkState::down:
      return "down";
  }
  return "unknown";
}

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A produced batch waiting for its delivery report. Batches whose records were all skipped never
// reach Kafka: they enter the FIFO already delivered, so that acks stay in order.
struct InFlight {
  std::uint64_t id = 0;
  buffer::Seq first, last;
  std::size_t records = 0;
  bool reported = false;
  bool ok = false;
};

int to_int_ms(milliseconds ms) { return static_cast<int>(std::clamp<std::int64_t>(ms.count(), 0, 1 << 30)); }

}  // namespace

struct KafkaUplink::Impl {
  KafkaOptions opt;
  std::string gateway_id;
  buffer::Ring& ring;

  std::thread thread;
  std::atomic<bool> stopping{false};
  bool started = false;

  // Sink-thread state.
  rd_kafka_t* rk = nullptr;
  std::deque<InFlight> fifo;
  std::uint64_t next_id = 1;
  buffer::Seq next_after;  // the last seq produced (or skipped)
  buffer::Seq acked;       // the cursor position
  bool rewind = false;     // a delivery failed: resend from `acked` once every report is in
  std::size_t max_records = 0;
  Clock::time_point next_probe{};

  mutable std::mutex mu;
  SinkStats st;

  Impl(KafkaOptions o, std::string id, buffer::Ring& r)
      : opt(std::move(o)), gateway_id(std::move(id)), ring(r), max_records(opt.batch_max_records) {}

  void set_state(SinkState s) {
    std::lock_guard lock(mu);
    st.state = s;
  }

  // --- librdkafka callbacks (sink thread) -----------------------------------------------------

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    static_cast<Impl*>(opaque)->delivered(reinterpret_cast<std::uintptr_t>(m->_private), m->err);
  }

  static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    const auto e = static_cast<rd_kafka_resp_err_t>(err);
    if (e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
      self->set_state(SinkState::down);
      spdlog::warn("uplink.kafka: all brokers down: {}", reason);
    } else if (e == RD_KAFKA_RESP_ERR__FATAL) {
      char why[512];
      const rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
      spdlog::error("uplink.kafka: fatal producer error {}: {}", rd_kafka_err2name(orig), why);
      self->set_state(SinkState::down);
    } else if (e == RD_KAFKA_RESP_ERR__TRANSPORT) {
      spdlog::debug("uplink.kafka: {}", reason);  // librdkafka logged it and reconnects by itself
    } else {
      spdlog::warn("uplink.kafka: {}: {}", rd_kafka_err2name(e), reason);
    }
  }

  void delivered(std::uint64_t id, rd_kafka_resp_err_t err) {
    auto it = std::find_if(fifo.begin(), fifo.end(), [id](const InFlight& f) { return f.id == id; });
    if (it == fifo.end()) return;  // a report from before a rewind's producer restart
    it->reported = true;
    it->ok = err == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!it->ok) {
      if (stopping.load() &&
          (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)) {
        return;  // stop() gave up on it; it is sent again after a restart
      }
      spdlog::warn("uplink.kafka: delivery of seq {}..{} failed: {}; resending from seq {}", it->first.value,
                   it->last.value, rd_kafka_err2str(err), acked.value + 1);
      if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        max_records = std::max<std::size_t>(1, it->records / 2);
      rewind = true;
      std::lock_guard lock(mu);
      ++st.delivery_errors;
      st.state = SinkState::down;
      return;
    }
    {
      std::lock_guard lock(mu);
      st.state = SinkState::up;
    }
    ack_prefix();
  }

  // Acks the longest prefix of delivered batches, then trims the ring.
  void ack_prefix() {
    buffer::Seq upto = acked;
    std::uint64_t batches = 0;
    std::uint64_t records = 0;
    while (!fifo.empty() && fifo.front().reported && fifo.front().ok) {
      upto = fifo.front().last;
      records += fifo.front().records;
      batches += fifo.front().records > 0 ? 1 : 0;
      fifo.pop_front();
    }
    if (upto > acked) {
      if (auto r = ring.ack(opt.cursor, upto); !r) {
        // The batches are delivered; a lagging cursor only means resends after a restart.
        spdlog::error("uplink.kafka: ack of cursor {} to seq {} failed: {}", opt.cursor, upto.value,
                      r.error().message());
      } else {
        acked = upto;
        if (auto t = ring.trim(); !t) spdlog::warn("uplink.kafka: trim failed: {}", t.error().message());
      }
    }
    std::lock_guard lock(mu);
    st.batches_acked += batches;
    st.records_acked += records;
    st.last_acked = acked;
    st.in_flight = fifo.size();
  }

  // --- producer ---------------------------------------------------------------------------------

  std::expected<void, std::error_code> create_producer() {
    detail::ConfPtr conf = detail::make_conf({
        {"bootstrap.servers", opt.brokers},
        {"client.id", "gw-uplink-" + gateway_id},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"compression.codec", "none"},  // batches are zstd frames already
        {"message.timeout.ms", "0"},    // never give up on a message: the buffer waits for it
    });
    if (!conf) return std::unexpected(make_error_code(errc::kafka));
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::on_delivery);
    rd_kafka_conf_set_error_cb(conf.get(), &Impl::on_error);
    char err[512];
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err);
    if (rk == nullptr) {
      spdlog::error("uplink.kafka: cannot create producer: {}", err);
      return std::unexpected(make_error_code(errc::kafka));
    }
    (void)conf.release();  // rd_kafka_new owns it now
    return {};
  }

  // Gives up on whatever is queued, serves the resulting reports, and destroys the producer.
  void destroy_producer() {
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    rd_kafka_destroy(rk);
    rk = nullptr;
  }

  // Produces [first..last] (already read) or accounts for it as skipped. Returns false if the
  // batch could not be handed to librdkafka (the caller retries later from next_after).
  bool produce(const Batch& batch, std::size_t skipped) {
    {
      std::lock_guard lock(mu);
      st.records_skipped += skipped;
    }
    if (batch.records.empty()) {
      fifo.push_back({next_id++, batch.first, batch.last, 0, true, true});
      next_after = batch.last;
      ack_prefix();
      return true;
    }
    const std::vector<std::uint8_t> raw = encode_batch_flatbuffer(batch);
    const std::vector<std::uint8_t> value = compress_frame(raw, opt.zstd_level);
    const std::string first = std::to_string(batch.first.value);
    const std::string last = std::to_string(batch.last.value);
    const std::string version = std::to_string(kBatchFormatVersion);
    const std::uint64_t id = next_id;
    for (;;) {
      rd_kafka_headers_t* hdrs = rd_kafka_headers_new(6);
      auto add = [hdrs](std::string_view name, std::string_view v) {
        rd_kafka_header_add(hdrs, name.data(), static_cast<ssize_t>(name.size()), v.data(),
                            static_cast<ssize_t>(v.size()));
      };
      add(kHeaderGatewayId, gateway_id);
      add(kHeaderFirstSeq, first);
      add(kHeaderLastSeq, last);
      add(kHeaderSchemaVersion, version);
      add(kHeaderCodec, kCodecZstd);
      add(kHeaderDictId, kNoDictionary);
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(opt.topic.c_str()), RD_KAFKA_V_KEY(gateway_id.data(), gateway_id.size()),
          RD_KAFKA_V_VALUE(const_cast<std::uint8_t*>(value.data()), value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(id))), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;  // librdkafka owns the headers now
      rd_kafka_headers_destroy(hdrs);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stopping.load()) {
        rd_kafka_poll(rk, 100);
        continue;
      }
      if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && batch.records.size() > 1) {
        max_records = std::max<std::size_t>(1, batch.records.size() / 2);
        spdlog::info("uplink.kafka: batch of {} records too large ({} bytes), halving", batch.records.size(),
                     value.size());
        return false;
      }
      spdlog::error("uplink.kafka: produce of seq {}..{} failed: {}", first, last, rd_kafka_err2str(err));
      std::lock_guard lock(mu);
      ++st.delivery_errors;
      st.state = SinkState::down;
      rewind = true;
      return false;
    }
    ++next_id;
    fifo.push_back({id, batch.first, batch.last, batch.records.size(), false, false});
    next_after = batch.last;
    max_records = opt.batch_max_records;
    std::lock_guard lock(mu);
    ++st.batches_sent;
    st.bytes_sent += value.size();
    st.bytes_raw += raw.size();
    st.in_flight = fifo.size();
    return true;
  }

  // Reads the next batch after next_after and produces it.
  void send_next() {
    auto stored = ring.read(next_after, max_records, opt.batch_max_bytes);
    if (!stored) {
      spdlog::error("uplink.kafka: reading the buffer after seq {} failed: {}", next_after.value,
                    stored.error().message());
      rd_kafka_poll(rk, 500);
      return;
    }
    if (stored->empty()) return;
    Batch batch{gateway_id, stored->front().seq, stored->back().seq, {}};
    batch.records.reserve(stored->size());
    std::size_t skipped = 0;
    for (const buffer::StoredRecord& r : *stored) {
      if (r.type != buffer::RecordType::telemetry) {
        ++skipped;
        continue;
      }
      auto event = ingest::decode_telemetry(r.payload);
      if (!event) {
        spdlog::warn("uplink.kafka: buffer record seq {} does not decode ({}); not forwarded", r.seq.value,
                     event.error().message());
        ++skipped;
        continue;
      }
      batch.records.push_back({r.seq, std::move(*event)});
    }
    if (!produce(batch, skipped)) rd_kafka_poll(rk, 200);
  }

  // Once every in-flight batch has its report: drop the unacknowledged ones, restart the producer
  // if it is in a fatal state, and resend from the last ack.
  void do_rewind() {
    if (rd_kafka_fatal_error(rk, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::warn("uplink.kafka: restarting the producer after a fatal error");
      destroy_producer();  // its purge reports are for batches about to be resent
      for (InFlight& f : fifo) f.reported = true;
      if (!create_producer()) {
        spdlog::error("uplink.kafka: cannot restart the producer; the sink stops");
        stopping = true;
        return;
      }
    }
    if (!std::all_of(fifo.begin(), fifo.end(), [](const InFlight& f) { return f.reported; })) return;
    ack_prefix();
    fifo.clear();
    next_after = acked;
    rewind = false;
    std::lock_guard lock(mu);
    st.in_flight = 0;
  }

  // While nothing is in flight and the state is not known good, asks a broker for metadata now
  // and then so that the state reflects the brokers even without traffic.
  void maybe_probe() {
    if (!fifo.empty() || Clock::now() < next_probe) return;
    {
      std::lock_guard lock(mu);
      if (st.state == SinkState::up) return;
    }
    next_probe = Clock::now() + std::chrono::seconds(2);
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 0, nullptr, &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy(md);
      set_state(SinkState::up);
    }
  }

  void run() {
    const milliseconds tick{50};
    while (!stopping.load()) {
      rd_kafka_poll(rk, 0);
      if (rewind) {
        do_rewind();
        if (rewind) rd_kafka_poll(rk, to_int_ms(tick));
        continue;
      }
      if (fifo.size() >= opt.max_in_flight_batches) {
        rd_kafka_poll(rk, to_int_ms(tick));
        continue;
      }
      if (!ring.wait_for(next_after, tick)) {
        maybe_probe();
        continue;
      }
      // Linger for a fuller batch unless a full one is waiting already.
      const auto deadline = Clock::now() + opt.linger;
      while (!stopping.load() && ring.last_seq().value - next_after.value < max_records &&
             Clock::now() < deadline) {
        rd_kafka_poll(rk, 10);
      }
      if (!rewind) send_next();
    }
    // Stopping: give in-flight batches a bounded time, then give up on them (resent after restart).
    if (rk == nullptr) return;  // a failed producer restart stopped the sink
    rd_kafka_flush(rk, to_int_ms(opt.stop_timeout));
    destroy_producer();
    std::lock_guard lock(mu);
    st.in_flight = fifo.size();
  }
};

KafkaUplink::KafkaUplink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

KafkaUplink::~KafkaUplink() { stop(); }

std::expected<std::unique_ptr<KafkaUplink>, std::error_code> KafkaUplink::create(KafkaOptions options,
                                                                                 std::string gateway_id,
                                                                                 buffer::Ring& ring) {
  if (options.brokers.empty() || options.topic.empty() || options.cursor.empty() || gateway_id.empty() ||
      options.batch_max_records == 0 || options.batch_max_bytes == 0 || options.max_in_flight_batches == 0) {
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  return std::unique_ptr<KafkaUplink>(
      new KafkaUplink(std::make_unique<Impl>(std::move(options), std::move(gateway_id), ring)));
}

std::expected<void, std::error_code> KafkaUplink::start() {
  Impl& s = *impl_;
  if (s.started) return std::unexpected(make_error_code(errc::already_started));
  if (auto r = s.ring.register_cursor(s.opt.cursor); !r) return std::unexpected(r.error());
  auto acked = s.ring.acked(s.opt.cursor);
  if (!acked) return std::unexpected(acked.error());
  s.acked = s.next_after = *acked;
  {
    std::lock_guard lock(s.mu);
    s.st.last_acked = *acked;
  }
  if (auto r = s.create_producer(); !r) return r;
  s.started = true;
  spdlog::info("uplink.kafka: sending to {} topic {} after seq {}", s.opt.brokers, s.opt.topic, acked->value);
  s.thread = std::thread([&s] { s.run(); });
  return {};
}

void KafkaUplink::stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  s.stopping = true;
  s.thread.join();
  spdlog::info("uplink.kafka: stopped at seq {}", s.acked.value);
}

SinkStats KafkaUplink::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->st;
}

}  // namespace gw::uplink
