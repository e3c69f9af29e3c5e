// The Pulsar sink (uplink/pulsar_sink.h) over the WebSocket client of pulsar_ws.h.
//
// Threads: everything but stats() runs on the sink's thread, so the in-flight FIFO needs no lock;
// only the stats snapshot is shared, under a mutex.
//
// The cycle: connect (retrying with backoff) -> read the topic's end back (uplink/pulsar_tail.h)
// and ack what it already holds from this gateway -> read batches after the cursor, while fewer
// than max_in_flight wait -> on an "ok", ack the longest answered prefix; on a send error, send
// that batch again after a backoff; on a lost connection or an answer overdue, close and start over
// (the in-flight batches are forgotten: the next read-back tells which of them arrived).
//
// Why connect first: the producer has a fixed name, and the broker accepts a producer of that name
// only once the previous one (the same gateway before a crash or a lost connection) is closed,
// which the broker does only after that producer's pending messages are stored or failed. So
// nothing sent before can land after the read-back, and the read-back sees all of it.
#include "uplink/pulsar_sink.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "uplink/batch.h"
#include "uplink/batch_source.h"
#include "uplink/pacing.h"
#include "uplink/pulsar_tail.h"
#include "uplink/resume.h"

namespace gw::uplink {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A batch read from the buffer, waiting for its answer. Batches whose records were all skipped are
// never sent: they enter the FIFO answered, so that acks stay in order.
struct InFlight {
  std::uint64_t id = 0;  // the message's context
  buffer::Seq first, last;
  std::size_t records = 0;
  std::string message;   // the JSON text sent (again, after a failure)
  std::size_t bytes = 0, raw = 0;
  bool ok = false;       // answered "ok"
  bool due = true;       // to be sent (first time, or again)
  bool sent_once = false;
  Clock::time_point sent_at{};
  std::vector<std::int64_t> event_times{};
};

// The producer name when none is configured: fixed per gateway and record type, so that the broker
// fences a previous producer of this gateway (see the top of this file).
std::string default_producer_name(const std::string& gateway_id, buffer::RecordType records) {
  return "edge-gateway." + gateway_id + "." + std::string(record_type_name(records));
}

}  // namespace

struct PulsarUplink::Impl {
  PulsarOptions opt;
  std::string gateway_id;
  buffer::Ring& ring;
  WsClient::Options ws_options;

  std::thread thread;
  std::atomic<bool> stopping{false};
  bool started = false;

  // Sink-thread state.
  std::unique_ptr<WsClient> ws;
  std::deque<InFlight> fifo;
  std::deque<HeldRange> held_ahead;  // batches the topic holds beyond a gap (resume()): not resent
  bool need_resume = true;           // read the topic's end back before sending
  std::uint64_t next_id = 1;
  buffer::Seq next_after;  // the last seq read into a batch
  buffer::Seq acked;       // the cursor position
  Clock::time_point retry_at{};
  RetryBackoff backoff;
  SendPacing pacing;
  bool paced = false;  // this round, a budget held a batch back
  std::optional<Clock::time_point> linger_since;

  mutable std::mutex mu;
  SinkStats st;

  Impl(PulsarOptions o, std::string id, buffer::Ring& r, ServiceUrl service)
      : opt(std::move(o)),
        gateway_id(std::move(id)),
        ring(r),
        backoff(opt.retry_backoff, opt.retry_backoff_max),
        pacing(opt.max_bytes_per_s, opt.drain_max_records_per_s) {
    ws_options.service = std::move(service);
    ws_options.target = ws_options.service.prefix + pulsar_topic_path("producer", opt.tenant, opt.ns, opt.topic) +
                        "?sendTimeoutMillis=" + std::to_string(opt.send_timeout.count()) +
                        "&batchingEnabled=false";
    if (opt.producer_name.empty()) opt.producer_name = default_producer_name(gateway_id, opt.records);
    ws_options.target += "&producerName=" + url_encode(opt.producer_name);
    ws_options.token = opt.token;
    ws_options.tls = opt.tls;
    ws_options.connect_timeout = opt.connect_timeout;
  }

  void set_error(SinkState s, std::string why) {
    std::lock_guard lock(mu);
    st.state = s;
    st.last_error = std::move(why);
  }

  // The next wait of the retry loop: doubling, capped, with up to 50% random jitter.
  void schedule_retry() {
    retry_at = backoff.next();
  }

  bool connect() {
    auto c = WsClient::connect(ws_options);
    if (!c) {
      const WsFailure& f = c.error();
      spdlog::warn("{}: {}{}: {}", opt.cursor, opt.service_url, ws_options.target, f.message);
      set_error(SinkState::down, f.message);
      return false;
    }
    ws = std::move(*c);
    need_resume = true;
    spdlog::info("{}: connected to {}{}", opt.cursor, opt.service_url, ws_options.target);
    std::lock_guard lock(mu);
    ++st.connects;
    if (st.state != SinkState::up) st.state = SinkState::connecting;
    return true;
  }

  // Closes the connection after a failure; every unanswered batch goes again after the backoff.
  void drop(const std::string& why) {
    spdlog::warn("{}: {}; reconnecting", opt.cursor, why);
    if (ws) ws->close();
    ws.reset();
    schedule_retry();
    set_error(SinkState::down, why);
  }

  // Reads the topic's end back and acks what it holds after the cursor; true when sending may
  // start after `acked`. Whatever was in flight is forgotten first: the topic says what arrived.
  bool resume() {
    fifo.clear();
    held_ahead.clear();
    linger_since.reset();
    next_after = acked;
    PulsarTailQuery q{ws_options.service, opt.tenant, opt.ns, opt.topic, opt.token, opt.tls, gateway_id,
                      std::string(record_type_name(opt.records)), opt.connect_timeout};
    auto tail = read_pulsar_tail(q, acked);
    if (!tail) {
      spdlog::warn("{}: reading back persistent://{}/{}/{} failed: {}", opt.cursor, opt.tenant, opt.ns, opt.topic,
                   tail.error().message);
      set_error(SinkState::down, "read-back: " + tail.error().message);
      return false;
    }
    ResumePlan plan = plan_resume(ring, acked, *tail);
    log_resume_plan(plan, opt.cursor, "persistent://" + opt.tenant + "/" + opt.ns + "/" + opt.topic, gateway_id,
                    ring.last_seq());
    std::uint64_t found = 0;
    if (!plan.foreign && plan.newest) {
      if (plan.upto > acked) {
        if (auto r = ring.ack(opt.cursor, plan.upto); !r) {
          spdlog::error("{}: ack to seq {} failed: {}", opt.cursor, plan.upto.value, r.error().message());
          set_error(SinkState::down, "ack: " + r.error().message());
          return false;
        }
        found = plan.upto.value - acked.value;
        spdlog::info("{}: the topic already holds seq {}..{}; acked without resending", opt.cursor, acked.value + 1,
                     plan.upto.value);
        acked = next_after = plan.upto;
        if (auto t = ring.trim(); !t) spdlog::warn("{}: trim failed: {}", opt.cursor, t.error().message());
      }
      held_ahead = std::move(plan.held_ahead);
    }
    spdlog::info("{}: resuming after seq {}", opt.cursor, acked.value);
    std::lock_guard lock(mu);
    ++st.read_backs;
    if (plan.newest) st.upstream_tail = *plan.newest;
    st.records_found_upstream += found;  // an upper bound: seqs of skipped records count too
    st.last_acked = acked;
    st.in_flight = 0;
    return true;
  }

  // Acks the longest prefix of answered batches, then trims the ring.
  void ack_prefix() {
    buffer::Seq upto = acked;
    std::uint64_t batches = 0, records = 0;
    const std::int64_t now_ms =
        std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::vector<std::int64_t> times;
    while (!fifo.empty() && fifo.front().ok) {
      upto = fifo.front().last;
      records += fifo.front().records;
      batches += fifo.front().records > 0 ? 1 : 0;
      times.insert(times.end(), fifo.front().event_times.begin(), fifo.front().event_times.end());
      fifo.pop_front();
    }
    if (upto > acked) {
      if (auto r = ring.ack(opt.cursor, upto); !r) {
        spdlog::error("{}: ack to seq {} failed: {}", opt.cursor, upto.value, r.error().message());
      } else {
        acked = upto;
        if (auto t = ring.trim(); !t) spdlog::warn("{}: trim failed: {}", opt.cursor, t.error().message());
      }
    }
    std::lock_guard lock(mu);
    for (std::int64_t t : times) st.latency.observe(static_cast<double>(now_ms - t) / 1000.0);
    st.batches_acked += batches;
    st.records_acked += records;
    st.last_acked = acked;
    st.in_flight = fifo.size();
  }

  // One answer of the producer endpoint: {"result":"ok"|"send-error:N","context":...,...}.
  void on_answer(const std::string& text) {
    const auto j = nlohmann::json::parse(text, nullptr, false);
    const auto result = j.is_object() ? j.find("result") : j.end();
    const auto context = j.is_object() ? j.find("context") : j.end();
    if (result == j.end() || !result->is_string() || context == j.end() || !context->is_string()) {
      spdlog::warn("{}: unexpected message from the service: {}", opt.cursor, text.substr(0, 200));
      return;
    }
    const std::string ctx = context->get<std::string>();
    auto it = std::find_if(fifo.begin(), fifo.end(), [&](const InFlight& f) { return std::to_string(f.id) == ctx; });
    if (it == fifo.end() || it->ok || it->due) return;  // an answer to a send made before a reconnect
    if (result->get<std::string>() == "ok") {
      it->ok = true;
      backoff.reset();
      {
        std::lock_guard lock(mu);
        st.state = SinkState::up;
        st.last_error.clear();
      }
      ack_prefix();
      return;
    }
    const std::string msg = j.value("errorMsg", std::string());
    spdlog::warn("{}: seq {}..{}: {} {}; sending it again", opt.cursor, it->first.value, it->last.value,
                 result->get<std::string>(), msg);
    it->due = true;
    schedule_retry();
    std::lock_guard lock(mu);
    ++st.delivery_errors;
    st.state = SinkState::down;
    st.last_error = result->get<std::string>() + (msg.empty() ? "" : ": " + msg);
  }

  // Reads the next batch after next_after and queues it (or accounts for it as skipped).
  void read_next() {
    // A batch the topic already holds (beyond a gap, see resume()) is not sent again: it enters the
    // FIFO answered once everything before it has been read.
    if (!held_ahead.empty() && adjoins(ring, next_after, held_ahead.front().first)) {
      const HeldRange r = held_ahead.front();
      held_ahead.pop_front();
      if (r.last > next_after) {
        InFlight f;
        f.id = next_id++;
        f.first = next_after.next();
        f.last = next_after = r.last;
        f.ok = true;
        f.due = false;
        fifo.push_back(std::move(f));
        ack_prefix();
      }
      return;
    }
    BatchLimits limits{opt.records, opt.batch_max_records, opt.batch_max_bytes, opt.cursor};
    if (!held_ahead.empty()) limits.before = held_ahead.front().first;
    auto read = read_batch(ring, next_after, gateway_id, limits);
    if (!read || read->empty()) return;
    const Batch& batch = read->batch;
    InFlight f;
    f.id = next_id++;
    f.first = batch.first;
    f.last = batch.last;
    f.records = read->sendable();
    next_after = batch.last;
    {
      std::lock_guard lock(mu);
      st.records_skipped += read->skipped;
    }
    if (f.records == 0) {
      f.ok = true;
      f.due = false;
      fifo.push_back(std::move(f));
      ack_prefix();
      return;
    }
    const std::vector<std::uint8_t> raw = encode_batch_flatbuffer(batch);
    const std::vector<std::uint8_t> value = compress_frame(raw, opt.zstd_level);
    nlohmann::json properties = nlohmann::json::object();
    for (const auto& [name, v] : batch_properties(batch)) properties[std::string(name)] = v;
    f.message = nlohmann::json{{"payload", base64_encode(value)},
                               {"properties", std::move(properties)},
                               {"context", std::to_string(f.id)},
                               {"key", gateway_id}}
                    .dump();
    f.bytes = value.size();
    f.raw = raw.size();
    pacing.spend(value.size(), f.records + read->skipped, backlog());
    f.event_times = event_times(batch);
    fifo.push_back(std::move(f));
  }

  // Sends every batch that is due, in FIFO order (after a failure, not before the backoff).
  void send_due() {
    if (!ws || Clock::now() < retry_at) return;
    for (InFlight& f : fifo) {
      if (!f.due) continue;
      f.due = false;
      f.sent_at = Clock::now();
      ws->send(f.message);
      std::lock_guard lock(mu);
      ++st.batches_sent;
      st.bytes_sent += f.bytes;
      st.bytes_raw += f.raw;
      if (f.sent_once) ++st.batches_resent;
      st.in_flight = fifo.size();
      f.sent_once = true;
    }
  }

  // More than two full batches wait behind what was read: the sink is draining a backlog.
  bool backlog() const { return ring.last_seq().value - next_after.value > 2 * opt.batch_max_records; }

  // True when a new batch should be read now: room in the window, no failure waiting, no budget
  // holding it back, and either a full batch waits in the buffer or the first record waiting has
  // lingered long enough.
  bool batch_ready() {
    if (fifo.size() >= opt.max_in_flight || Clock::now() < retry_at) return false;
    if (ring.last_seq() > next_after) {
      // The budgets hold a batch back (counted per call: the loop comes back within 5 ms).
      if (!pacing.bytes_ok()) {
        paced = true;
        std::lock_guard lock(mu);
        st.rate_limited_ms += 5;
        return false;
      }
      if (!pacing.drain_ok(backlog())) {
        paced = true;
        std::lock_guard lock(mu);
        st.drain_paced_ms += 5;
        return false;
      }
    }
    const std::uint64_t waiting = ring.last_seq().value - next_after.value;
    if (ring.last_seq() <= next_after) {
      linger_since.reset();
      return false;
    }
    if (!linger_since) linger_since = Clock::now();
    if (waiting >= opt.batch_max_records || Clock::now() - *linger_since >= opt.linger) {
      linger_since.reset();
      return true;
    }
    return false;
  }

  bool overdue() const {
    const auto now = Clock::now();
    return std::any_of(fifo.begin(), fifo.end(), [&](const InFlight& f) {
      return !f.ok && !f.due && f.sent_once && now - f.sent_at > opt.send_timeout;
    });
  }

  // One round of I/O: waits up to `wait` for answers, handles them.
  void pump(milliseconds wait) {
    std::vector<std::string> answers;
    auto r = ws->poll(wait, answers);
    for (const std::string& a : answers) on_answer(a);
    if (!r) {
      {
        std::lock_guard lock(mu);
        if (std::any_of(fifo.begin(), fifo.end(), [](const InFlight& f) { return !f.ok; })) ++st.delivery_errors;
      }
      drop("connection lost: " + r.error());
    }
  }

  void run() {
    const milliseconds tick{50};
    while (!stopping.load()) {
      if (!ws) {
        if (Clock::now() < retry_at) {
          std::this_thread::sleep_for(std::min(tick, std::chrono::duration_cast<milliseconds>(retry_at - Clock::now()) + milliseconds(1)));
          continue;
        }
        if (!connect()) {
          schedule_retry();
          continue;
        }
      }
      if (need_resume) {
        if (!resume()) {
          if (ws) ws->close();
          ws.reset();
          schedule_retry();
          continue;
        }
        need_resume = false;
      }
      paced = false;
      while (batch_ready()) read_next();
      send_due();
      const bool waiting = std::any_of(fifo.begin(), fifo.end(), [](const InFlight& f) { return !f.ok; });
      if (paced) {
        pump(milliseconds(5));  // a budget holds the next batch back
      } else if (!waiting && !linger_since) {
        // Nothing in flight: wait for the buffer, but keep reading the socket (a closed connection).
        ring.wait_for(next_after, tick);
        pump(milliseconds(0));
      } else {
        pump(linger_since ? milliseconds(5) : tick);
      }
      if (ws && overdue()) {
        {
          std::lock_guard lock(mu);
          ++st.delivery_errors;
        }
        drop("no answer within send_timeout (" + std::to_string(opt.send_timeout.count()) + " ms)");
      }
    }
    // Stopping: give unanswered batches a bounded time, then give up on them (sent again after a
    // restart, from the cursor).
    const auto deadline = Clock::now() + opt.stop_timeout;
    while (ws && Clock::now() < deadline &&
           std::any_of(fifo.begin(), fifo.end(), [](const InFlight& f) { return !f.ok; })) {
      send_due();
      std::vector<std::string> answers;
      auto r = ws->poll(milliseconds(50), answers);
      for (const std::string& a : answers) on_answer(a);
      if (!r) break;
    }
    if (ws) ws->close();
    ws.reset();
    std::lock_guard lock(mu);
    st.in_flight = fifo.size();
  }
};

PulsarUplink::PulsarUplink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

PulsarUplink::~PulsarUplink() { stop(); }

std::expected<std::unique_ptr<PulsarUplink>, std::error_code> PulsarUplink::create(PulsarOptions options,
                                                                                   std::string gateway_id,
                                                                                   buffer::Ring& ring) {
  auto service = parse_service_url(options.service_url);
  if (!service || options.tenant.empty() || options.ns.empty() || options.topic.empty() || options.cursor.empty() ||
      gateway_id.empty() || options.batch_max_records == 0 || options.batch_max_bytes == 0 ||
      options.max_in_flight == 0 || options.send_timeout.count() <= 0 || options.connect_timeout.count() <= 0 ||
      options.retry_backoff.count() <= 0 || options.retry_backoff_max < options.retry_backoff) {
    return std::unexpected(make_error_code(errc::invalid_argument));
  }
  return std::unique_ptr<PulsarUplink>(new PulsarUplink(
      std::make_unique<Impl>(std::move(options), std::move(gateway_id), ring, std::move(*service))));
}

std::expected<void, std::error_code> PulsarUplink::start() {
  Impl& s = *impl_;
  if (s.started) return std::unexpected(make_error_code(errc::already_started));
  auto acked = open_cursor(s.ring, s.opt.cursor);
  if (!acked) return std::unexpected(acked.error());
  s.acked = s.next_after = *acked;
  {
    std::lock_guard lock(s.mu);
    s.st.last_acked = *acked;
  }
  s.started = true;
  spdlog::info("{}: sending to {} persistent://{}/{}/{}; cursor at seq {}", s.opt.cursor, s.opt.service_url,
               s.opt.tenant, s.opt.ns, s.opt.topic, acked->value);
  s.thread = std::thread([&s] { s.run(); });
  return {};
}

void PulsarUplink::stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  s.stopping = true;
  s.thread.join();
  spdlog::info("{}: stopped at seq {}", s.opt.cursor, s.acked.value);
}

SinkStats PulsarUplink::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->st;
}

}  // namespace gw::uplink
