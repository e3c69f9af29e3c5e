// The Kafka sink (uplink/kafka_sink.h) over librdkafka's C API.
//
// Threads: everything below except stats() runs on the sink's own thread: it reads the ring,
// produces, reads the partition's tail back, and serves delivery reports through rd_kafka_poll
// (librdkafka calls dr_msg_cb and error_cb only from rd_kafka_poll/flush, hence on this thread). So
// the in-flight FIFO needs no lock; only the stats snapshot is shared, under a mutex.
//
// The cycle: resume (read back the tail, ack up to it) -> send batches after the cursor -> on any
// failed delivery, wait until every in-flight batch has its report, drop the producer (no request
// of it can still land after the read-back), back off with jitter, resume again.
#include "uplink/kafka_sink.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string_view>
#include <thread>

#include "uplink/batch.h"
#include "uplink/batch_source.h"
#include "uplink/kafka_client.h"
#include "uplink/kafka_reader.h"
#include "uplink/pacing.h"

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

// The smallest message.max.bytes librdkafka accepts: the floor of a learned size cap.
constexpr std::size_t kMinSizeCap = 1000;
// What a message adds to its value in a record batch on the broker: the batch header, the key and
// the gw-* headers (uplink/FORMAT.md), rounded up.
constexpr std::size_t kFraming = 256;

// exactly_once: librdkafka's transaction.timeout.ms and message.timeout.ms.
constexpr std::chrono::milliseconds kTransactionTimeout{60000};

// After a stall whose explanation could not be read from the partition, how soon to try again.
constexpr std::chrono::milliseconds kStallRecheck{5000};
constexpr int kStallRechecks = 3;  // in a row; then every message_timeout again
// What a read of the partition that works while a batch waits for its acknowledgement says
// (watch_stall(), the sink's last_delivery_error).
constexpr std::string_view kNotAcked =
    ": the partition's leader answers reads but did not acknowledge the writes in time; with acks=all "
    "it waits for min.insync.replicas in-sync replicas, so too few of the topic's replicas may be up";

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
  std::vector<std::int64_t> event_times{};  // telemetry: each record's event time (ms), for the latency histogram
  Clock::time_point sent = Clock::now();    // when it was produced (watch_stall())
  std::size_t bytes = 0;                    // the compressed value produced
};

int to_int_ms(milliseconds ms) { return static_cast<int>(std::clamp<std::int64_t>(ms.count(), 0, 1 << 30)); }

ClientProperties security_properties(const KafkaOptions& o) {
  ClientProperties p;
  auto add = [&p](const char* key, const std::string& value) {
    if (!value.empty()) p.emplace_back(key, value);
  };
  add("security.protocol", o.security_protocol);
  add("sasl.mechanisms", o.sasl_mechanism);
  add("sasl.username", o.sasl_username);
  add("sasl.password", o.sasl_password);
  add("ssl.ca.location", o.ssl_ca_location);
  add("ssl.certificate.location", o.ssl_certificate_location);
  add("ssl.key.location", o.ssl_key_location);
  add("ssl.key.password", o.ssl_key_password);
  return p;
}

}  // namespace

struct KafkaUplink::Impl {
  KafkaOptions opt;
  std::string gateway_id;
  buffer::Ring& ring;
  ClientProperties security;

  std::thread thread;
  std::atomic<bool> stopping{false};
  bool started = false;

  // Sink-thread state.
  rd_kafka_t* rk = nullptr;
  std::deque<InFlight> fifo;
  std::uint64_t next_id = 1;
  buffer::Seq next_after;  // the last seq produced (or skipped)
  std::deque<HeldRange> held_ahead;  // batches the broker holds beyond a gap (resume()): not resent
  buffer::Seq acked;       // the cursor position
  bool rewind = false;     // a delivery failed: read back and resend once every report is in
  Clock::time_point next_stall_check{};  // watch_stall(): not before this
  int stall_reads_failed = 0;            // watch_stall(): reads of the partition that failed in a row
  std::size_t size_cap = 0;  // bytes a message may have: the topic's max.message.bytes, or learned
                             // from MSG_SIZE_TOO_LARGE; 0: none
  std::size_t too_large = 0; // the largest message refused as too large since the last rewind
  bool limit_checked = false;  // fit_topic_limit() ran (once per sink life, after the first read-back)
  // The latest error librdkafka reported about a broker connection (TLS, SASL, refused, ...):
  // failures seen through the metadata or the read-back name it as their cause, since librdkafka's
  // own error for them is only "Broker transport failure". Sink thread (error_cb runs in poll).
  std::string broker_error;
  bool need_resume = true; // read the tail back before sending
  // exactly_once: transactions of this producer are initialised (init_transactions, which also
  // aborts what a predecessor with the same transactional.id left open); a transaction is open
  // (since txn_began); this sink was fenced by another producer and sends nothing more.
  bool txn_ready = false;
  bool in_txn = false;
  Clock::time_point txn_began{};
  bool fenced = false;
  std::int32_t partition = -1;
  std::size_t max_records = 0;
  Clock::time_point next_probe{};
  Clock::time_point retry_at{};  // no resume attempt before this
  RetryBackoff backoff;
  SendPacing pacing;  // max_bytes_per_s and drain_max_records_per_s

  mutable std::mutex mu;
  SinkStats st;

  Impl(KafkaOptions o, std::string id, buffer::Ring& r)
      : opt(std::move(o)),
        gateway_id(std::move(id)),
        ring(r),
        security(security_properties(opt)),
        max_records(opt.batch_max_records),
        backoff(opt.retry_backoff, opt.retry_backoff_max),
        pacing(opt.max_bytes_per_s, opt.drain_max_records_per_s) {}

  bool aggregates() const { return opt.records == buffer::RecordType::aggregate; }

  void set_state(SinkState s) {
    std::lock_guard lock(mu);
    st.state = s;
  }

  void set_error(SinkState s, std::string why) {
    std::lock_guard lock(mu);
    st.state = s;
    st.last_error = std::move(why);
  }

  // --- librdkafka callbacks (sink thread) -----------------------------------------------------

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    static_cast<Impl*>(opaque)->delivered(reinterpret_cast<std::uintptr_t>(m->_private), m->err);
  }

  static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    auto* self = static_cast<Impl*>(opaque);
    const auto e = static_cast<rd_kafka_resp_err_t>(err);
    const std::string what = std::string(rd_kafka_err2name(e)) + ": " + reason;
    if (e != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) self->broker_error = what;
    if (e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
      spdlog::warn("{}: all brokers down: {}", self->opt.cursor, reason);
      self->set_error(SinkState::down, what);
    } else if (e == RD_KAFKA_RESP_ERR__FATAL) {
      if (self->fenced_by_fatal_error()) return;
      char why[512];
      const rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
      std::string what_fatal = std::string("fatal ") + rd_kafka_err2name(orig) + ": " + why;
      if (orig == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED || orig == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        // What a real Kafka with an authorizer answers the idempotent producer that may not write.
        what_fatal += " (the credentials may not write: an idempotent producer needs the WRITE ACL on the topic, "
                      "or IDEMPOTENT_WRITE on the cluster)";
      }
      spdlog::error("{}: {}", self->opt.cursor, what_fatal);
      self->set_error(SinkState::down, what_fatal);
      self->rewind = true;  // the producer is restarted once every report is in
    } else if (e == RD_KAFKA_RESP_ERR__TRANSPORT) {
      spdlog::debug("{}: {}", self->opt.cursor, reason);  // librdkafka logged it and reconnects by itself
      std::lock_guard lock(self->mu);
      self->st.last_error = what;
    } else {
      // __RESOLVE (bad broker address), __AUTHENTICATION (bad credentials), __SSL, ...
      spdlog::error("{}: {}", self->opt.cursor, what);
      std::lock_guard lock(self->mu);
      self->st.last_error = what;
      if (e == RD_KAFKA_RESP_ERR__AUTHENTICATION || e == RD_KAFKA_RESP_ERR__RESOLVE || e == RD_KAFKA_RESP_ERR__SSL) {
        self->st.state = SinkState::down;
      }
    }
  }

  void delivered(std::uint64_t id, rd_kafka_resp_err_t err) {
    auto it = std::find_if(fifo.begin(), fifo.end(), [id](const InFlight& f) { return f.id == id; });
    if (it == fifo.end()) return;  // a report from before a producer restart
    it->reported = true;
    it->ok = err == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (fenced) {
      it->ok = false;  // fence() said why; nothing of a fenced producer is committed
      return;
    }
    if (!it->ok) {
      if (stopping.load() &&
          (err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)) {
        return;  // stop() gave up on it; the read-back after a restart settles it
      }
      spdlog::warn("{}: delivery of seq {}..{} failed: {}; reading the partition back", opt.cursor, it->first.value,
                   it->last.value, rd_kafka_err2str(err));
      if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        // The topic takes smaller messages (max.message.bytes) than the batches were: cap what the
        // producer sends, in one message and in one record batch of several (librdkafka's
        // message.max.bytes and batch.size, set when do_rewind() makes the producer again), at
        // half the largest message that failed in this round (the smaller ones may have failed only
        // for sharing a record batch with it), until what is sent fits. A lower cap is never
        // raised again in this sink's life; batches then grow back only up to it (produce()).
        too_large = std::max(too_large, it->bytes);
        max_records = std::max<std::size_t>(1, it->records / 2);
      }
      rewind = true;
      std::lock_guard lock(mu);
      ++st.delivery_errors;
      st.state = SinkState::down;
      st.last_error = std::string("delivery failed: ") + rd_kafka_err2name(err) + ": " + rd_kafka_err2str(err);
      st.last_delivery_error = st.last_error;
      return;
    }
    {
      std::lock_guard lock(mu);
      st.state = SinkState::up;
      st.last_error.clear();
      st.last_delivery_error.clear();
    }
    backoff.reset();
    broker_error.clear();
    // exactly_once: delivered is not yet visible to a read_committed consumer; the commit acks it.
    if (opt.exactly_once) {
      it->ok = false;
      return;
    }
    ack_prefix();
  }

  // Acks the cursor up to `upto` (never backwards) and trims the ring.
  bool ack_to(buffer::Seq upto) {
    if (upto <= acked) return true;
    if (auto r = ring.ack(opt.cursor, upto); !r) {
      // The batches are delivered; a lagging cursor only means a read-back after a restart.
      spdlog::error("{}: ack to seq {} failed: {}", opt.cursor, upto.value,
                    r.error().message());
      return false;
    }
    acked = upto;
    if (auto t = ring.trim(); !t) spdlog::warn("{}: trim failed: {}", opt.cursor, t.error().message());
    return true;
  }

  // Acks the longest prefix of delivered batches, then trims the ring.
  void ack_prefix() {
    buffer::Seq upto = acked;
    std::uint64_t batches = 0;
    std::uint64_t records = 0;
    const std::int64_t now_ms = std::chrono::duration_cast<milliseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count();
    std::vector<std::int64_t> times;
    while (!fifo.empty() && fifo.front().reported && fifo.front().ok) {
      upto = fifo.front().last;
      records += fifo.front().records;
      batches += fifo.front().records > 0 ? 1 : 0;
      times.insert(times.end(), fifo.front().event_times.begin(), fifo.front().event_times.end());
      fifo.pop_front();
    }
    ack_to(upto);
    std::lock_guard lock(mu);
    for (std::int64_t t : times) st.latency.observe(static_cast<double>(now_ms - t) / 1000.0);
    st.batches_acked += batches;
    st.records_acked += records;
    st.last_acked = acked;
    st.in_flight = fifo.size();
  }

  // --- producer ---------------------------------------------------------------------------------

  std::expected<void, std::error_code> create_producer() {
    detail::ConfPtr conf = detail::make_conf({
        {"bootstrap.servers", opt.brokers},
        {"client.id", "gw-uplink-" + gateway_id + (aggregates() ? "-aggregates" : "")},
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"compression.codec", "none"},  // batches are zstd frames already
        // Infinite: an unconfirmed batch is retried by the idempotent producer with the same
        // producer id and sequence numbers, so the broker drops a copy it has already appended.
        // Giving up and sending it again as a new message duplicates it in a real Kafka whenever
        // the leader had appended it beyond the high watermark (acks=all with too few in-sync
        // replicas): a read-back sees only up to the high watermark, and the uncommitted copies
        // become committed once the replicas return (found with a 3-node cluster,
        // tests/e2e/kafka_cluster.sh). message_timeout only reports the stall (watch_stall()).
        {"message.timeout.ms", "0"},
        {"retry.backoff.ms", std::to_string(std::clamp<std::int64_t>(opt.retry_backoff.count(), 1, 300000))},
    });
    if (conf && opt.exactly_once) {
      // librdkafka wants message.timeout.ms within transaction.timeout.ms: a batch unconfirmed for
      // that long fails, its transaction is left to be aborted and resent (commit()).
      const std::string timeout = std::to_string(to_int_ms(kTransactionTimeout));
      if (!detail::set_props(conf.get(), {{"transactional.id", transactional_id()},
                                          {"transaction.timeout.ms", timeout},
                                          {"message.timeout.ms", timeout}})) {
        return std::unexpected(make_error_code(errc::kafka));
      }
    }
    if (conf && size_cap != 0) {
      // Room for the record batch's framing, the key and the gw-* headers (about 200 bytes).
      const std::string fit = std::to_string(std::max(kMinSizeCap, size_cap - std::min(size_cap, kFraming)));
      if (!detail::set_props(conf.get(), {{"message.max.bytes", fit}, {"batch.size", fit}})) {
        return std::unexpected(make_error_code(errc::kafka));
      }
    }
    if (!conf || !detail::set_props(conf.get(), security)) return std::unexpected(make_error_code(errc::kafka));
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &Impl::on_delivery);
    rd_kafka_conf_set_error_cb(conf.get(), &Impl::on_error);
    char err[512];
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf.get(), err, sizeof err);
    if (rk == nullptr) {
      spdlog::error("{}: cannot create producer: {}", opt.cursor, err);
      set_error(SinkState::down, std::string("cannot create producer: ") + err);
      return std::unexpected(make_error_code(errc::kafka));
    }
    (void)conf.release();  // rd_kafka_new owns it now
    return {};
  }

  // Gives up on whatever is queued, serves the resulting reports, and destroys the producer. An
  // open transaction stays open on the broker until the next producer's init_transactions aborts it.
  void destroy_producer() {
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    rd_kafka_destroy(rk);
    rk = nullptr;
    if (in_txn) {
      std::lock_guard lock(mu);
      ++st.transactions_aborted;
    }
    txn_ready = in_txn = false;
  }

  // --- exactly_once: transactions ---------------------------------------------------------------

  std::string transactional_id() const {
    return "edge-gateway." + gateway_id + "." + std::string(record_type_name(opt.records));
  }

  static bool is_fenced(rd_kafka_resp_err_t e) {
    return e == RD_KAFKA_RESP_ERR__FENCED || e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
  }

  // Another producer took this sink's transactional.id: sending again (a new producer, a new
  // init_transactions) would fence that one in turn, so the sink stops sending for good and says
  // why. What this process delivered but did not commit is aborted by the broker; the buffer keeps it.
  void fence(const std::string& why) {
    if (fenced) return;
    fenced = true;
    const std::string what = why + " (another producer took transactional.id " + transactional_id() +
                             ": a second edge-gateway with gateway_id " + gateway_id +
                             "?); this one sends nothing more until it is restarted";
    spdlog::error("{}: {}", opt.cursor, what);
    std::lock_guard lock(mu);
    st.fenced = true;
    st.state = SinkState::down;
    st.last_error = what;
    st.last_delivery_error = what;
  }

  // exactly_once: whether the producer's fatal error is a fencing; then fence() with it.
  bool fenced_by_fatal_error() {
    if (!opt.exactly_once || rk == nullptr) return false;
    char why[512];
    const rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof why);
    if (!is_fenced(orig)) return false;
    fence(std::string("fatal ") + rd_kafka_err2name(orig) + ": " + why);
    return true;
  }

  // Handles a failed transactional call: true if it may simply be tried again.
  bool txn_failed(const char* call, rd_kafka_error_t* error) {
    const std::string what = std::string(call) + ": " + rd_kafka_error_name(error) + ": " + rd_kafka_error_string(error);
    const bool retriable = rd_kafka_error_is_retriable(error);
    const bool fatal = rd_kafka_error_is_fatal(error);
    const rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    rd_kafka_error_destroy(error);
    if (fatal && fenced_by_fatal_error()) return false;
    if (is_fenced(code)) {
      fence(what);
      return false;
    }
    spdlog::warn("{}: {}", opt.cursor, what);
    set_error(SinkState::down, with_cause(what));
    if (retriable) return true;
    // Abortable or fatal: the producer is made again (its open transaction is aborted by the next
    // init_transactions) and everything uncommitted is read back and resent.
    for (InFlight& f : fifo) f.reported = true;
    rewind = true;
    return false;
  }

  // init_transactions once per producer, before the read-back: it aborts a transaction a killed
  // predecessor left open, so that the read-back (read_committed) and the partition's last stable
  // offset are final. False: not yet (retried after the backoff) or fenced.
  bool init_transactions() {
    if (!opt.exactly_once || txn_ready) return true;
    const milliseconds timeout = std::min(opt.read_back_timeout, milliseconds(5000));  // retriable: again later
    if (rd_kafka_error_t* e = rd_kafka_init_transactions(rk, to_int_ms(timeout))) {
      txn_failed("init_transactions", e);
      return false;
    }
    txn_ready = true;
    return true;
  }

  bool begin_transaction() {
    if (!opt.exactly_once || in_txn) return true;
    if (rd_kafka_error_t* e = rd_kafka_begin_transaction(rk)) {
      txn_failed("begin_transaction", e);
      return false;
    }
    in_txn = true;
    txn_began = Clock::now();
    return true;
  }

  // Not when the sink has caught up, as a batch's linger would: a commit costs a round trip to the
  // transaction coordinator and a marker record in the partition, so at a few batches a second a
  // commit per batch would double the records the topic takes. commit_interval bounds the latency.
  bool commit_due() const {
    return in_txn && (fifo.size() >= opt.max_in_flight_batches ||
                      Clock::now() - txn_began >= opt.commit_interval || stopping.load());
  }

  // Commits the open transaction (waiting for every delivery of it) and acks what it held.
  void commit(milliseconds timeout) {
    if (rd_kafka_error_t* e = rd_kafka_commit_transaction(rk, to_int_ms(timeout))) {
      txn_failed("commit_transaction", e);  // retriable: the next loop commits again
      return;
    }
    in_txn = false;
    for (InFlight& f : fifo) {
      if (f.reported) f.ok = true;  // the commit flushed first: every batch of it was delivered
    }
    {
      std::lock_guard lock(mu);
      ++st.transactions_committed;
    }
    ack_prefix();
  }

  // --- resume: the partition and its tail ----------------------------------------------------

  // The topic's max.message.bytes (DescribeConfigs), or 0 when it cannot be learned (no
  // DESCRIBE_CONFIGS ACL, an error): then only a refusal teaches it (delivered()).
  std::size_t topic_max_message_bytes() {
    rd_kafka_ConfigResource_t* res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, opt.topic.c_str());
    rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    // Short: a broker that does not answer (librdkafka's mock has no DescribeConfigs) only delays
    // the first batch by this much.
    const int timeout = to_int_ms(std::min(opt.read_back_timeout, milliseconds(1000)));
    char err[256];
    (void)rd_kafka_AdminOptions_set_request_timeout(options, timeout, err, sizeof err);
    rd_kafka_DescribeConfigs(rk, &res, 1, options, queue);
    rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, timeout + 500);
    std::size_t out = 0;
    if (ev != nullptr && rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::size_t n = 0;
      const rd_kafka_ConfigResource_t** rs =
          rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
      if (n == 1 && rd_kafka_ConfigResource_error(rs[0]) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        std::size_t m = 0;
        const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(rs[0], &m);
        for (std::size_t i = 0; i < m; ++i) {
          const char* value = rd_kafka_ConfigEntry_value(entries[i]);
          if (value != nullptr && std::string_view(rd_kafka_ConfigEntry_name(entries[i])) == "max.message.bytes") {
            out = static_cast<std::size_t>(std::strtoull(value, nullptr, 10));
          }
        }
      } else if (n == 1) {
        spdlog::info("{}: cannot read the config of {} ({}): message sizes are learned from refusals", opt.cursor,
                     opt.topic, rd_kafka_err2str(rd_kafka_ConfigResource_error(rs[0])));
      }
    }
    if (ev != nullptr) rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_queue_destroy(queue);
    rd_kafka_ConfigResource_destroy(res);
    return out;
  }

  // A topic that takes smaller messages than librdkafka sends by default (message.max.bytes,
  // batch.size: 1,000,000) gets a producer capped at its max.message.bytes before anything is
  // sent: a message the broker refused as too large, with later ones of the same moment accepted,
  // left the partition out of order (the refused records were sent again after them).
  void fit_topic_limit() {
    const std::size_t limit = topic_max_message_bytes();
    if (limit == 0 || limit >= 1000000 || (size_cap != 0 && size_cap <= limit)) return;
    size_cap = std::max(kMinSizeCap, limit);
    spdlog::info("{}: {} takes messages of at most {} bytes (max.message.bytes): batches capped to fit", opt.cursor,
                 opt.topic, limit);
    destroy_producer();  // nothing is in flight before the first read-back
    if (!create_producer()) stopping = true;
  }

  // The read of this sink's partition tail (kafka_reader.h): the read-back, and watch_stall()'s probe.
  TailQuery tail_query() {
    return TailQuery{opt.brokers, opt.topic, partition, gateway_id, security, opt.read_back_timeout, &stopping,
                     std::string(record_type_name(opt.records))};
  }

  // `what`, and the latest broker connection error as its likely cause.
  std::string with_cause(std::string what) const {
    return broker_error.empty() ? what : what + " (last broker error: " + broker_error + ")";
  }

  // The partition this gateway writes, from the topic's metadata; nullopt (state down) if unknown.
  std::optional<std::int32_t> find_partition() {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, opt.topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, to_int_ms(std::min(opt.read_back_timeout, milliseconds(2000))));
    std::optional<std::int32_t> out;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      set_error(SinkState::down, with_cause(std::string("metadata of topic ") + opt.topic + ": " + rd_kafka_err2str(e)));
    } else if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
               md->topics[0].partition_cnt < 1) {
      const auto te = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
      std::string why = "topic " + opt.topic + ": " + rd_kafka_err2name(te) + ": " + rd_kafka_err2str(te);
      if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || te == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
        why += " (the topic does not exist, and the brokers do not create topics when asked; create it)";
      } else if (te == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
        why += " (the credentials may not describe the topic: an ACL is missing)";
      }
      set_error(SinkState::down, why);
    } else {
      const std::int32_t count = md->topics[0].partition_cnt;
      if (opt.partition >= count) {
        set_error(SinkState::down, "partition " + std::to_string(opt.partition) + " does not exist: topic " +
                                       opt.topic + " has " + std::to_string(count));
      } else if (opt.partition >= 0) {
        out = opt.partition;
      } else {
        out = rd_kafka_msg_partitioner_consistent(rkt, gateway_id.data(), gateway_id.size(), count, nullptr, nullptr);
      }
    }
    if (md != nullptr) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return out;
  }

  // Reads the tail back and acks up to it; true when sending may (re)start after `acked`.
  bool resume() {
    if (!init_transactions()) return false;
    if (partition < 0) {
      auto p = find_partition();
      if (!p) return false;
      partition = *p;
      std::lock_guard lock(mu);
      st.partition = partition;
    }
    auto tail = read_tail(tail_query(), acked);
    if (!tail) {
      set_error(SinkState::down, with_cause("read-back of " + opt.topic + " [" + std::to_string(partition) +
                                            "]: " + tail.error().message()));
      return false;
    }
    held_ahead.clear();
    std::uint64_t found = 0;
    ResumePlan plan = plan_resume(ring, acked, *tail);
    log_resume_plan(plan, opt.cursor, opt.topic + " [" + std::to_string(partition) + "]", gateway_id, ring.last_seq());
    if (!plan.foreign && plan.newest) {
      const buffer::Seq before = acked;
      if (plan.upto > acked) {
        if (!ack_to(plan.upto)) return false;
        found = acked.value - before.value;
        spdlog::info("{}: the broker already holds seq {}..{}; acked without resending", opt.cursor,
                     before.value + 1, acked.value);
      }
      held_ahead = std::move(plan.held_ahead);
    }
    const std::optional<buffer::Seq> newest = plan.newest;
    spdlog::info("{}: {} [{}]: resuming after seq {}", opt.cursor, opt.topic, partition, acked.value);
    next_after = acked;
    if (!limit_checked) {
      limit_checked = true;
      fit_topic_limit();  // nothing is in flight yet
    }
    std::lock_guard lock(mu);
    ++st.read_backs;
    if (newest) st.upstream_tail = *newest;
    st.records_found_upstream += found;  // an upper bound: seqs of skipped records count too
    st.last_acked = acked;
    if (st.state != SinkState::up) st.state = SinkState::connecting;
    return true;
  }

  // The next wait of the retry loop: doubling, capped, with up to 50% random jitter.
  void schedule_retry() {
    retry_at = backoff.next();
  }

  // --- sending ---------------------------------------------------------------------------------

  // Produces [first..last] (already read) or accounts for it as skipped. Returns false if the
  // batch could not be handed to librdkafka (the caller retries later from next_after).
  bool produce(const Batch& batch, std::size_t skipped) {
    {
      std::lock_guard lock(mu);
      st.records_skipped += skipped;
    }
    const std::size_t count = batch.records.size() + batch.aggregates.size();
    if (count == 0) {
      fifo.push_back({next_id++, batch.first, batch.last, 0, true, true});
      next_after = batch.last;
      ack_prefix();
      return true;
    }
    const std::vector<std::uint8_t> raw = encode_batch_flatbuffer(batch);
    const std::vector<std::uint8_t> value = compress_frame(raw, opt.zstd_level);
    const auto properties = batch_properties(batch);
    const std::string& first = properties[1].second;
    const std::string& last = properties[2].second;
    const std::uint64_t id = next_id;
    if (!begin_transaction()) return false;
    for (;;) {
      rd_kafka_headers_t* hdrs = rd_kafka_headers_new(properties.size());
      for (const auto& [name, v] : properties) {
        rd_kafka_header_add(hdrs, name.data(), static_cast<ssize_t>(name.size()), v.data(),
                            static_cast<ssize_t>(v.size()));
      }
      const rd_kafka_resp_err_t err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(opt.topic.c_str()), RD_KAFKA_V_PARTITION(partition),
          RD_KAFKA_V_KEY(gateway_id.data(), gateway_id.size()),
          RD_KAFKA_V_VALUE(const_cast<std::uint8_t*>(value.data()), value.size()),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
          RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::uintptr_t>(id))), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;  // librdkafka owns the headers now
      rd_kafka_headers_destroy(hdrs);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !stopping.load()) {
        rd_kafka_poll(rk, 100);
        continue;
      }
      if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && count > 1) {
        max_records = std::max<std::size_t>(1, count / 2);
        spdlog::log(size_cap == 0 ? spdlog::level::info : spdlog::level::debug,
                    "{}: batch of {} records too large ({} bytes), halving", opt.cursor, count, value.size());
        return false;
      }
      if (err == RD_KAFKA_RESP_ERR__FATAL && fenced_by_fatal_error()) return false;  // before on_error() tells it
      spdlog::error("{}: produce of seq {}..{} failed: {}", opt.cursor, first, last, rd_kafka_err2str(err));
      std::lock_guard lock(mu);
      ++st.delivery_errors;
      st.state = SinkState::down;
      st.last_error = std::string("produce failed: ") + rd_kafka_err2str(err);
      if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        // One record alone is larger than the topic takes: it cannot be split. The sink keeps it
        // and retries after the backoff, and says why (raise the topic's max.message.bytes).
        st.last_error += " (the record of seq " + first + " alone is " + std::to_string(value.size()) +
                         " bytes compressed: more than the topic's max.message.bytes takes)";
      }
      rewind = true;
      return false;
    }
    ++next_id;
    pacing.spend(value.size(), count + skipped, backlog());
    fifo.push_back({id, batch.first, batch.last, count, false, false, event_times(batch), Clock::now(), value.size()});
    next_after = batch.last;
    // After a halving: back to full batches, or, under a learned size cap, a quarter more each
    // time (a batch over the cap is refused by the producer at once and halved, with no round trip).
    max_records = size_cap == 0 ? opt.batch_max_records
                                : std::min(opt.batch_max_records, max_records + max_records / 4 + 1);
    std::lock_guard lock(mu);
    ++st.batches_sent;
    st.bytes_sent += value.size();
    st.bytes_raw += raw.size();
    st.in_flight = fifo.size();
    return true;
  }

  // Reads the next batch after next_after (uplink/batch_source.h) and produces it.
  void send_next() {
    // A batch the broker already holds (beyond a gap, see resume()) is not sent again: it enters
    // the FIFO as delivered once everything before it has been sent.
    if (!held_ahead.empty() && adjoins(ring, next_after, held_ahead.front().first)) {
      const HeldRange r = held_ahead.front();
      held_ahead.pop_front();
      if (r.last > next_after) {
        fifo.push_back({next_id++, next_after.next(), r.last, 0, true, true});
        next_after = r.last;
        ack_prefix();
      }
      return;
    }
    BatchLimits limits{opt.records, max_records, opt.batch_max_bytes, opt.cursor};
    if (!held_ahead.empty()) limits.before = held_ahead.front().first;
    auto read = read_batch(ring, next_after, gateway_id, limits);
    if (!read) {
      rd_kafka_poll(rk, 500);
      return;
    }
    if (read->empty()) return;  // nothing stored after next_after
    if (!produce(read->batch, read->skipped)) rd_kafka_poll(rk, 200);
  }

  // Once every in-flight batch has its report: ack what was delivered, drop the producer (so no
  // request of it can land after the read-back), and make the next loop read the tail back.
  void do_rewind() {
    const bool fatal = rd_kafka_fatal_error(rk, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!fatal && !std::all_of(fifo.begin(), fifo.end(), [](const InFlight& f) { return f.reported; })) return;
    ack_prefix();
    if (too_large != 0) {
      const std::size_t cap = std::max<std::size_t>(kMinSizeCap, too_large / 2);
      if (size_cap == 0 || cap < size_cap) {
        size_cap = cap;
        spdlog::warn("{}: {} refused a message of {} bytes as too large (max.message.bytes): messages now capped "
                     "at {} bytes", opt.cursor, opt.topic, too_large, size_cap);
      }
      too_large = 0;
    }
    destroy_producer();  // purge reports of a fatal producer are for batches the read-back settles
    fifo.clear();
    {
      std::lock_guard lock(mu);
      st.in_flight = 0;
    }
    rewind = false;
    need_resume = true;
    schedule_retry();
    if (!create_producer()) {
      spdlog::error("{}: cannot restart the producer; the sink stops", opt.cursor);
      stopping = true;
    }
  }

  // The oldest batch in flight has waited message_timeout for its acknowledgement: the sink reports
  // itself down, and why, without giving the batch up (the producer keeps retrying it). A read of
  // the partition's tail tells a leader that answers (and waits for in-sync replicas) from none.
  void watch_stall() {
    const auto now = Clock::now();
    if (now < next_stall_check) return;
    auto oldest = std::find_if(fifo.begin(), fifo.end(), [](const InFlight& f) { return !f.reported; });
    if (oldest == fifo.end() || now - oldest->sent < opt.message_timeout) return;
    next_stall_check = now + opt.message_timeout;
    const auto waited = std::chrono::duration_cast<std::chrono::seconds>(now - oldest->sent).count();
    std::string why = "no acknowledgement of seq " + std::to_string(oldest->first.value) + ".." +
                      std::to_string(oldest->last.value) + " for " + std::to_string(waited) +
                      " s (kept in flight and retried)";
    if (auto tail = read_tail(tail_query(), acked)) {
      why += kNotAcked;
      stall_reads_failed = 0;
    } else {
      why += "; reading the partition failed too (" + tail.error().message() + "): no leader reachable";
      // Look again soon rather than a whole message_timeout later, a few times: a read that failed
      // once (a broker restarting, dead bootstrap brokers tried first) may work seconds later, and
      // /status should then say what holds the batch. Not forever: in an outage each read blocks
      // this thread for up to read_back_timeout.
      if (++stall_reads_failed <= kStallRechecks) {
        next_stall_check = now + std::min<std::chrono::milliseconds>(opt.message_timeout, kStallRecheck);
      }
    }
    spdlog::warn("{}: {} [{}]: {}", opt.cursor, opt.topic, partition, why);
    std::lock_guard lock(mu);
    st.state = SinkState::down;
    st.last_delivery_error = why;
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

  // More than two full batches wait behind what was sent: the sink is draining a backlog.
  bool backlog() const { return ring.last_seq().value - next_after.value > 2 * opt.batch_max_records; }

  void run() {
    const milliseconds tick{50};
    while (!stopping.load()) {
      rd_kafka_poll(rk, 0);
      if (fenced) {
        rd_kafka_poll(rk, to_int_ms(tick));
        continue;
      }
      if (rewind) {
        // Not before the backoff: a producer that fails at once (a fatal error such as a missing
        // ACL) was otherwise restarted in a tight loop, ~150 times a second (e2e.kafka_secure).
        if (Clock::now() < retry_at) {
          rd_kafka_poll(rk, to_int_ms(tick));
          continue;
        }
        do_rewind();
        if (rewind) rd_kafka_poll(rk, to_int_ms(tick));
        continue;
      }
      if (need_resume) {
        if (Clock::now() < retry_at) {
          rd_kafka_poll(rk, to_int_ms(tick));
          continue;
        }
        if (resume()) {
          need_resume = false;
        } else if (!fenced && !rewind) {
          schedule_retry();
          spdlog::warn("{}: cannot read the partition back yet; retrying in about {} ms", opt.cursor,
                       backoff.current().count());
        }
        continue;
      }
      watch_stall();
      if (opt.exactly_once && commit_due()) {
        commit(std::min(opt.message_timeout, milliseconds(1000)));  // in slices: stop() stays prompt
        continue;
      }
      if (fifo.size() >= opt.max_in_flight_batches) {
        rd_kafka_poll(rk, to_int_ms(tick));
        continue;
      }
      if (!pacing.bytes_ok()) {
        rd_kafka_poll(rk, to_int_ms(tick));
        std::lock_guard lock(mu);
        st.rate_limited_ms += static_cast<std::uint64_t>(tick.count());
        continue;
      }
      if (!pacing.drain_ok(backlog())) {
        rd_kafka_poll(rk, 10);
        std::lock_guard lock(mu);
        st.drain_paced_ms += 10;
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
    // Stopping: give in-flight batches a bounded time, then give up on them (settled by the
    // read-back after a restart).
    if (rk == nullptr) return;  // a failed producer restart stopped the sink
    if (in_txn && !fenced && !rewind) commit(opt.stop_timeout);
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
      options.batch_max_records == 0 || options.batch_max_bytes == 0 || options.max_in_flight_batches == 0 ||
      options.partition < -1 || options.message_timeout.count() <= 0 || options.read_back_timeout.count() <= 0 ||
      options.retry_backoff.count() <= 0 || options.retry_backoff_max < options.retry_backoff) {
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  return std::unique_ptr<KafkaUplink>(
      new KafkaUplink(std::make_unique<Impl>(std::move(options), std::move(gateway_id), ring)));
}

std::expected<void, std::error_code> KafkaUplink::start() {
  Impl& s = *impl_;
  if (s.started) return std::unexpected(make_error_code(errc::already_started));
  auto acked = open_cursor(s.ring, s.opt.cursor);
  if (!acked) return std::unexpected(acked.error());
  s.acked = s.next_after = *acked;
  {
    std::lock_guard lock(s.mu);
    s.st.last_acked = *acked;
  }
  if (auto r = s.create_producer(); !r) return r;
  s.started = true;
  spdlog::info("{}: sending to {} topic {}; cursor at seq {}, reading the partition back first", s.opt.cursor,
               s.opt.brokers, s.opt.topic, acked->value);
  s.thread = std::thread([&s] { s.run(); });
  return {};
}

void KafkaUplink::stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  s.stopping = true;
  s.thread.join();
  spdlog::info("{}: stopped at seq {}", s.opt.cursor, s.acked.value);
}

SinkStats KafkaUplink::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->st;
}

std::string librdkafka_version() { return rd_kafka_version_str(); }

}  // namespace gw::uplink
