// IpcStore and IpcHub (ingest/ipc.h). Frame bodies (all integers little-endian):
//   1 STORE   u64 id | u8 record type | u8 has_dedup [u64 epoch | u64 seq | i64 time_ms | u32 digest
//             | u8 seq_bits | u8 counter | u16 n | source]
//             | u32 n | payload
//   2 REJECT  u64 id | u8 reason (ingest::errc) | i64 received_ms | u16 n | topic | u16 n | detail | u32 n | payload
//   3 STATS   JSON object of MqttStats (no reply)
//   4 REPLY   u64 id | u8 kind (0 ok, 1 buffer::errc, 2 errno) | u32 code | u64 seq (or buffer::kDropped*)
// The protocol is private to one gateway binary (workers are the same executable), but versioned
// so that a mismatch is an error rather than garbage.
#include "ingest/ipc.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <system_error>
#include <thread>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace gw::ingest {
namespace {

constexpr std::uint8_t kVersion = 3;  // 2: STORE carries the values' digest; 3: and the counter's width, REJECT a detail
constexpr std::uint8_t kStore = 1, kReject = 2, kStats = 3, kReply = 4;
constexpr std::uint32_t kMaxFrame = 64u << 20;
constexpr int kPollMs = 100;

class Writer {
 public:
  explicit Writer(std::uint8_t type) {
    out_.resize(4);
    out_.push_back(kVersion);
    out_.push_back(type);
  }
  Writer& u8(std::uint8_t v) {
    out_.push_back(v);
    return *this;
  }
  Writer& u16(std::uint16_t v) { return uint(v, 2); }
  Writer& u32(std::uint32_t v) { return uint(v, 4); }
  Writer& u64(std::uint64_t v) { return uint(v, 8); }
  Writer& bytes(std::span<const std::uint8_t> b) {
    out_.insert(out_.end(), b.begin(), b.end());
    return *this;
  }
  Writer& text(std::string_view s) {
    out_.insert(out_.end(), s.begin(), s.end());
    return *this;
  }
  std::vector<std::uint8_t> finish() {
    const auto n = static_cast<std::uint32_t>(out_.size() - 4);
    for (int i = 0; i < 4; ++i) out_[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
    return std::move(out_);
  }

 private:
  Writer& uint(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
  }
  std::vector<std::uint8_t> out_;
};

// Reads a frame body field by field; any overrun sets ok() to false.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}
  std::uint64_t uint(int n) {
    if (!need(static_cast<std::size_t>(n))) return 0;
    std::uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | in_[pos_ + static_cast<std::size_t>(i)];
    pos_ += static_cast<std::size_t>(n);
    return v;
  }
  std::span<const std::uint8_t> bytes(std::size_t n) {
    if (!need(n)) return {};
    auto s = in_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view text(std::size_t n) {
    auto b = bytes(n);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  bool ok() const { return ok_; }

 private:
  bool need(std::size_t n) {
    if (!ok_ || in_.size() - pos_ < n) ok_ = false;
    return ok_;
  }
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

bool send_all(int fd, std::span<const std::uint8_t> data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

// One frame: type and body.
struct Frame {
  std::uint8_t type = 0;
  std::vector<std::uint8_t> body;
};

}  // namespace

// Bytes received on a connection and not yet consumed as frames: one recv() usually brings a
// whole frame (or several), so a frame costs one system call rather than one per field.
class IpcFrames {
 public:
  // Appends what one recv() returns (up to 64 KiB). 0: got bytes; 1: EOF or error; EAGAIN: none.
  int fill(int fd, int flags) {
    constexpr std::size_t kChunk = 64 << 10;
    if (start_ > 0 && start_ == buf_.size()) {
      buf_.clear();
      start_ = 0;
    }
    const std::size_t old = buf_.size();
    buf_.resize(old + kChunk);
    ssize_t n;
    do {
      n = ::recv(fd, buf_.data() + old, kChunk, flags);
    } while (n < 0 && errno == EINTR);
    buf_.resize(old + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    if (n > 0) return 0;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return EAGAIN;
    return 1;
  }
  // The next complete frame, if one is buffered; error 1 = a malformed frame.
  std::expected<std::optional<Frame>, int> next() {
    const std::size_t have = buf_.size() - start_;
    if (have < 4) return std::nullopt;
    const std::uint8_t* h = buf_.data() + start_;
    const std::uint32_t n = h[0] | (h[1] << 8) | (h[2] << 16) | (static_cast<std::uint32_t>(h[3]) << 24);
    if (n < 2 || n > kMaxFrame) return std::unexpected(1);
    if (have < 4 + static_cast<std::size_t>(n)) return std::nullopt;
    if (h[4] != kVersion) {
      spdlog::error("ingest ipc: frame of version {} (this build speaks {})", h[4], kVersion);
      return std::unexpected(1);
    }
    Frame f;
    f.type = h[5];
    f.body.assign(h + 6, h + 4 + n);
    start_ += 4 + static_cast<std::size_t>(n);
    if (start_ > (1u << 20)) {  // compact now and then
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(start_));
      start_ = 0;
    }
    return f;
  }

 private:
  std::vector<std::uint8_t> buf_;
  std::size_t start_ = 0;
};

namespace {

// Blocking read of the next frame (the socket has a receive timeout of kPollMs, so `stop` is
// checked that often while nothing arrives). error 1 = closed or bad frame, 2 = stopped.
std::expected<Frame, int> read_frame(int fd, IpcFrames& in, const std::stop_token& stop) {
  for (;;) {
    auto f = in.next();
    if (!f) return std::unexpected(1);
    if (*f) return std::move(**f);
    const int r = in.fill(fd, 0);
    if (r == EAGAIN) {
      if (stop.stop_requested()) return std::unexpected(2);
      continue;
    }
    if (r != 0) return std::unexpected(1);
  }
}

nlohmann::json stats_json(const MqttStats& s) {
  nlohmann::json reasons = nlohmann::json::object();
  for (const auto& [reason, n] : s.decode_errors) reasons[std::to_string(static_cast<int>(reason))] = n;
  return {{"connected", s.connected},
          {"subscribed", s.subscribed},
          {"messages_received", s.messages_received},
          {"events_stored", s.events_stored},
          {"duplicates", s.duplicates},
          {"decode_errors", reasons},
          {"decode_errors_total", s.decode_errors_total},
          {"store_retries", s.store_retries},
          {"unstored_at_stop", s.unstored_at_stop},
          {"device_mismatches", s.device_mismatches},
          {"not_events", s.not_events},
          {"arrival_times", s.arrival_times},
          {"dead_letter_failures", s.dead_letter_failures},
          {"reconnects", s.reconnects},
          {"last_error", s.last_error}};
}

MqttStats stats_from_json(const nlohmann::json& j) {
  MqttStats s;
  s.connected = j.value("connected", false);
  s.subscribed = j.value("subscribed", false);
  s.messages_received = j.value("messages_received", std::uint64_t{0});
  s.events_stored = j.value("events_stored", std::uint64_t{0});
  s.duplicates = j.value("duplicates", std::uint64_t{0});
  if (auto it = j.find("decode_errors"); it != j.end() && it->is_object()) {
    for (const auto& [k, v] : it->items()) s.decode_errors[static_cast<errc>(std::stoi(k))] = v.get<std::uint64_t>();
  }
  s.decode_errors_total = j.value("decode_errors_total", std::uint64_t{0});
  s.store_retries = j.value("store_retries", std::uint64_t{0});
  s.unstored_at_stop = j.value("unstored_at_stop", std::uint64_t{0});
  s.device_mismatches = j.value("device_mismatches", std::uint64_t{0});
  s.not_events = j.value("not_events", std::uint64_t{0});
  s.arrival_times = j.value("arrival_times", std::uint64_t{0});
  s.dead_letter_failures = j.value("dead_letter_failures", std::uint64_t{0});
  s.reconnects = j.value("reconnects", std::uint64_t{0});
  s.last_error = j.value("last_error", std::string{});
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Worker side

IpcStore::IpcStore(int fd) : fd_(fd), in_(std::make_unique<IpcFrames>()) {
  timeval tv{0, kPollMs * 1000};
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}
IpcStore::~IpcStore() { ::close(fd_); }

std::expected<std::vector<std::uint8_t>, std::error_code> IpcStore::call(const std::vector<std::uint8_t>& frame,
                                                                         std::uint64_t id, std::stop_token stop) {
  const auto closed = std::make_error_code(std::errc::connection_reset);
  {
    std::lock_guard lock(send_mutex_);
    if (!connected_ || !send_all(fd_, frame)) {
      connected_ = false;
      return std::unexpected(closed);
    }
  }
  for (;;) {  // replies to requests abandoned on stop may arrive first: skip them by id
    auto f = read_frame(fd_, *in_, stop);
    if (!f) {
      if (f.error() == 2) return std::unexpected(make_error_code(buffer::errc::stopped));
      connected_ = false;
      return std::unexpected(closed);
    }
    if (f->type != kReply) continue;
    Reader r(f->body);
    if (r.uint(8) == id && r.ok()) return std::move(f->body);
  }
}

namespace {
// Decodes a REPLY body into a sequence or the error it carries.
std::expected<buffer::Seq, std::error_code> parse_reply(std::span<const std::uint8_t> body) {
  Reader r(body);
  (void)r.uint(8);
  const auto kind = static_cast<std::uint8_t>(r.uint(1));
  const auto code = static_cast<int>(r.uint(4));
  const buffer::Seq seq{r.uint(8)};
  if (!r.ok()) return std::unexpected(std::make_error_code(std::errc::protocol_error));
  if (kind == 1) return std::unexpected(buffer::make_error_code(static_cast<buffer::errc>(code)));
  if (kind == 2) return std::unexpected(std::error_code(code, std::generic_category()));
  return seq;
}
}  // namespace

std::expected<buffer::Seq, std::error_code> IpcStore::store(const buffer::RecordIn& record, std::stop_token stop) {
  std::lock_guard lock(call_mutex_);
  const std::uint64_t id = next_id_++;
  Writer w(kStore);
  w.u64(id).u8(static_cast<std::uint8_t>(record.type)).u8(record.dedup ? 1 : 0);
  if (record.dedup) {
    const auto source = record.dedup->source.substr(0, 0xffff);
    w.u64(record.dedup->epoch).u64(record.dedup->seq).u64(static_cast<std::uint64_t>(record.dedup->time_ms));
    w.u32(record.dedup->digest).u8(record.dedup->seq_bits).u8(record.dedup->counter ? 1 : 0);
    w.u16(static_cast<std::uint16_t>(source.size())).text(source);
  }
  w.u32(static_cast<std::uint32_t>(record.payload.size())).bytes(record.payload);
  auto body = call(w.finish(), id, std::move(stop));
  if (!body) return std::unexpected(body.error());
  return parse_reply(*body);
}

std::expected<void, std::error_code> IpcStore::reject(std::string_view topic, errc reason,
                                                      std::span<const std::uint8_t> payload, std::int64_t received_ms,
                                                      std::string_view detail) {
  std::lock_guard lock(call_mutex_);
  const std::uint64_t id = next_id_++;
  const auto t = topic.substr(0, 0xffff);
  Writer w(kReject);
  w.u64(id).u8(static_cast<std::uint8_t>(reason)).u64(static_cast<std::uint64_t>(received_ms));
  w.u16(static_cast<std::uint16_t>(t.size())).text(t);
  const auto d = detail.substr(0, 0xffff);
  w.u16(static_cast<std::uint16_t>(d.size())).text(d);
  w.u32(static_cast<std::uint32_t>(payload.size())).bytes(payload);
  auto body = call(w.finish(), id, std::stop_token{});
  if (!body) return std::unexpected(body.error());
  auto r = parse_reply(*body);
  if (!r) return std::unexpected(r.error());
  return {};
}

bool IpcStore::send_stats(const MqttStats& stats) {
  Writer w(kStats);
  w.text(stats_json(stats).dump());
  std::lock_guard lock(send_mutex_);
  if (!connected_ || !send_all(fd_, w.finish())) connected_ = false;
  return connected_;
}

// ---------------------------------------------------------------------------------------------
// Gateway side

namespace {
std::vector<std::uint8_t> reply_frame(std::uint64_t id, const std::expected<buffer::Seq, std::error_code>& result) {
  Writer w(kReply);
  w.u64(id);
  if (result) {
    w.u8(0).u32(0).u64(result->value);
  } else if (result.error().category() == buffer::buffer_category()) {
    w.u8(1).u32(static_cast<std::uint32_t>(result.error().value())).u64(0);
  } else {
    w.u8(2).u32(static_cast<std::uint32_t>(result.error().value())).u64(0);
  }
  return w.finish();
}
}  // namespace

struct IpcHub::Conn {
  int fd = -1;
  IpcFrames in;
  std::atomic<bool> finished{false};  // EOF, an error or a bad frame: no more requests are read
  std::atomic<bool> removed{false};   // remove() asked for it: not read from again; the thread closes it
  MqttStats stats;                    // mu_
};

// A STORE request read and not yet answered. `body` owns the bytes `record` points into.
struct IpcHub::Pending {
  std::shared_ptr<Conn> conn;
  std::uint64_t id = 0;
  std::vector<std::uint8_t> body;
  buffer::RecordIn record;
};

IpcHub::IpcHub(EventStore& store, std::chrono::microseconds gather) : store_(store), gather_(gather) {
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  thread_ = std::thread([this] { serve(); });
}

IpcHub::~IpcHub() {
  stop();
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void IpcHub::wake() {
  const char b = 1;
  [[maybe_unused]] const auto n = ::write(wake_[1], &b, 1);  // a full pipe already wakes the thread
}

IpcHub::Id IpcHub::add(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  auto c = std::make_shared<Conn>();
  c->fd = fd;
  Id id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    conns_[id] = std::move(c);
  }
  wake();
  return id;
}

MqttStats IpcHub::remove(Id id) {
  MqttStats last;
  {
    std::lock_guard lock(mu_);
    auto it = conns_.find(id);
    if (it == conns_.end()) return last;
    last = it->second->stats;
    it->second->removed = true;
  }
  wake();
  return last;
}

bool IpcHub::finished(Id id) const {
  std::lock_guard lock(mu_);
  auto it = conns_.find(id);
  return it == conns_.end() || it->second->removed || it->second->finished.load();
}

MqttStats IpcHub::last_stats(Id id) const {
  std::lock_guard lock(mu_);
  auto it = conns_.find(id);
  return it == conns_.end() ? MqttStats{} : it->second->stats;
}

void IpcHub::stop() {
  stop_.request_stop();
  wake();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  for (auto& [id, c] : conns_) {
    if (c->fd >= 0) ::close(c->fd);
    c->fd = -1;
  }
  conns_.clear();
}

// Reads what the connection has (one recv) and takes its frames: STATS are kept, REJECTs answered
// at once (rare, and they go to another store), STOREs queued in `batch`. False: drop the connection.
bool IpcHub::read_from(Conn& c, std::vector<Pending>& batch) {
  if (int r = c.in.fill(c.fd, MSG_DONTWAIT); r != 0) return r == EAGAIN;
  for (;;) {
    auto f = c.in.next();
    if (!f) return false;
    if (!*f) return true;
    Frame& frame = **f;
    Reader r(frame.body);
    if (frame.type == kStats) {
      try {
        auto j = nlohmann::json::parse(frame.body.begin(), frame.body.end());
        std::lock_guard lock(mu_);
        c.stats = stats_from_json(j);
      } catch (const nlohmann::json::exception& e) {
        spdlog::warn("ingest ipc: unreadable stats from a worker: {}", e.what());
      }
    } else if (frame.type == kStore) {
      Pending p;
      p.id = r.uint(8);
      p.record.type = static_cast<buffer::RecordType>(r.uint(1));
      if (r.uint(1) != 0) {
        buffer::DedupKey k;
        k.epoch = r.uint(8);
        k.seq = r.uint(8);
        k.time_ms = static_cast<std::int64_t>(r.uint(8));
        k.digest = static_cast<std::uint32_t>(r.uint(4));
        k.seq_bits = static_cast<std::uint8_t>(r.uint(1));
        k.counter = r.uint(1) != 0;
        k.source = r.text(static_cast<std::size_t>(r.uint(2)));
        p.record.dedup = k;
      }
      p.record.payload = r.bytes(static_cast<std::size_t>(r.uint(4)));
      if (!r.ok()) return false;
      p.body = std::move(frame.body);  // the vector's buffer moves: the views stay valid
      batch.push_back(std::move(p));
    } else if (frame.type == kReject) {
      const std::uint64_t id = r.uint(8);
      const auto reason = static_cast<errc>(r.uint(1));
      const auto received = static_cast<std::int64_t>(r.uint(8));
      const auto topic = r.text(static_cast<std::size_t>(r.uint(2)));
      const auto detail = r.text(static_cast<std::size_t>(r.uint(2)));
      const auto payload = r.bytes(static_cast<std::size_t>(r.uint(4)));
      if (!r.ok()) return false;
      auto kept = store_.reject(topic, reason, payload, received, detail);
      const auto frame_out = reply_frame(id, kept ? std::expected<buffer::Seq, std::error_code>(buffer::Seq{0})
                                                  : std::expected<buffer::Seq, std::error_code>(std::unexpected(kept.error())));
      if (!send_all(c.fd, frame_out)) return false;
    } else {
      spdlog::error("ingest ipc: unknown frame type {} from a worker; closing its connection", frame.type);
      return false;
    }
  }
}

// Stores the queued requests together and answers each. If the batch as a whole fails, its
// records are stored one by one, so that one record's error is not every worker's.
void IpcHub::store_batch(std::vector<Pending>& batch) {
  const auto stop = stop_.get_token();
  std::vector<buffer::RecordIn> records;
  records.reserve(batch.size());
  for (const auto& p : batch) records.push_back(p.record);
  std::vector<std::expected<buffer::Seq, std::error_code>> results;
  auto all = store_.store_batch(records, stop);
  if (all && all->size() == batch.size()) {
    for (const auto& seq : *all) results.emplace_back(seq);
  } else {
    for (const auto& rec : records) {
      if (stop.stop_requested()) return;
      results.push_back(batch.size() == 1 && !all ? std::expected<buffer::Seq, std::error_code>(std::unexpected(all.error()))
                                                  : store_.store(rec, stop));
    }
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    // Stopped: no reply, so the worker does not acknowledge (the record may or may not be stored).
    if (!results[i] && results[i].error() == buffer::errc::stopped) continue;
    Conn& c = *batch[i].conn;
    if (c.finished.load() || c.removed.load()) continue;
    if (!send_all(c.fd, reply_frame(batch[i].id, results[i]))) {
      ::shutdown(c.fd, SHUT_RDWR);
      c.finished = true;
    }
  }
}

void IpcHub::serve() {
  const auto stop = stop_.get_token();
  std::vector<std::shared_ptr<Conn>> live;
  std::vector<pollfd> fds;
  std::vector<Pending> batch;
  while (!stop.stop_requested()) {
    live.clear();
    {
      std::lock_guard lock(mu_);
      for (auto it = conns_.begin(); it != conns_.end();) {
        if (it->second->removed) {  // closed here, so no fd is reused while this thread reads it
          ::close(it->second->fd);
          it = conns_.erase(it);
          continue;
        }
        if (!it->second->finished.load()) live.push_back(it->second);
        ++it;
      }
    }
    fds.assign(1, pollfd{wake_[0], POLLIN, 0});
    for (const auto& c : live) fds.push_back(pollfd{c->fd, POLLIN, 0});
    const int n = ::poll(fds.data(), fds.size(), kPollMs);
    if (n < 0 && errno != EINTR) {
      spdlog::error("ingest ipc: poll failed: {}", std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
      continue;
    }
    if (n <= 0) continue;
    if (fds[0].revents != 0) {
      char drain[64];
      while (::read(wake_[0], drain, sizeof drain) > 0) {
      }
    }
    batch.clear();
    auto read_ready = [&] {
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        fds[i].revents = 0;
        Conn& c = *live[i - 1];
        if (c.removed.load()) {
          fds[i].fd = -1;  // poll skips it from now on
          continue;
        }
        const std::size_t before = batch.size();
        const bool ok = read_from(c, batch);
        for (std::size_t k = before; k < batch.size(); ++k) batch[k].conn = live[i - 1];
        if (!ok) {
          ::shutdown(c.fd, SHUT_RDWR);  // the worker sees EOF at once; the fd is closed by remove()/stop()
          c.finished = true;
          fds[i].fd = -1;
        }
      }
    };
    read_ready();
    // Group commit: wait (at most gather_) for as many requests as recent rounds held, so that
    // one sync serves them all. Each worker has at most one request outstanding.
    if (!batch.empty() && gather_.count() > 0) {
      const std::size_t want = std::min(recent_batch_, live.size());
      const auto deadline = std::chrono::steady_clock::now() + gather_;
      fds[0].fd = -1;  // add/remove/stop wait for this round
      while (batch.size() < want && !stop.stop_requested()) {
        const auto left = deadline - std::chrono::steady_clock::now();
        if (left <= std::chrono::steady_clock::duration::zero()) break;
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
        const timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
        if (::ppoll(fds.data(), fds.size(), &ts, nullptr) <= 0) break;
        read_ready();
      }
    }
    // Decays by one per round, so that workers that went away cost at most a few short waits.
    recent_batch_ = std::max(batch.size(), recent_batch_ > 1 ? recent_batch_ - 1 : std::size_t{1});
    if (!batch.empty()) store_batch(batch);
  }
}

}  // namespace gw::ingest
