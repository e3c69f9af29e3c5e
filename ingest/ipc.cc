// IpcStore and IpcServer (ingest/ipc.h). Frame bodies (all integers little-endian):
//   1 STORE   u64 id | u8 record type | u8 has_dedup [u64 epoch | u64 seq | i64 time_ms | u16 n | source]
//             | u32 n | payload
//   2 REJECT  u64 id | u8 reason (ingest::errc) | i64 received_ms | u16 n | topic | u32 n | payload
//   3 STATS   JSON object of MqttStats (no reply)
//   4 REPLY   u64 id | u8 kind (0 ok, 1 buffer::errc, 2 errno) | u32 code | u64 seq (0: a dropped duplicate)
// The protocol is private to one gateway binary (workers are the same executable), but versioned
// so that a mismatch is an error rather than garbage.
#include "ingest/ipc.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace gw::ingest {
namespace {

constexpr std::uint8_t kVersion = 1;
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

// Reads exactly out.size() bytes. nullopt-like results: 1 = EOF/error, 2 = stopped.
int recv_all(int fd, std::span<std::uint8_t> out, const std::stop_token& stop) {
  while (!out.empty()) {
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, kPollMs);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return 1;
    if (r == 0) {
      if (stop.stop_requested()) return 2;
      continue;
    }
    const ssize_t n = ::recv(fd, out.data(), out.size(), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return 1;
    out = out.subspan(static_cast<std::size_t>(n));
  }
  return 0;
}

// One frame: type and body. error 1 = closed or bad frame, 2 = stopped.
struct Frame {
  std::uint8_t type = 0;
  std::vector<std::uint8_t> body;
};
std::expected<Frame, int> read_frame(int fd, const std::stop_token& stop) {
  std::uint8_t head[4];
  if (int r = recv_all(fd, head, stop); r != 0) return std::unexpected(r);
  const std::uint32_t n = head[0] | (head[1] << 8) | (head[2] << 16) | (static_cast<std::uint32_t>(head[3]) << 24);
  if (n < 2 || n > kMaxFrame) return std::unexpected(1);
  std::vector<std::uint8_t> all(n);
  // Once a frame has started, read it whole (a stop in the middle would desynchronise the stream).
  if (int r = recv_all(fd, all, std::stop_token{}); r != 0) return std::unexpected(1);
  if (all[0] != kVersion) {
    spdlog::error("ingest ipc: frame of version {} (this build speaks {})", all[0], kVersion);
    return std::unexpected(1);
  }
  Frame f;
  f.type = all[1];
  f.body.assign(all.begin() + 2, all.end());
  return f;
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
  s.dead_letter_failures = j.value("dead_letter_failures", std::uint64_t{0});
  s.reconnects = j.value("reconnects", std::uint64_t{0});
  s.last_error = j.value("last_error", std::string{});
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Worker side

IpcStore::IpcStore(int fd) : fd_(fd) {}
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
    auto f = read_frame(fd_, stop);
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
    w.u16(static_cast<std::uint16_t>(source.size())).text(source);
  }
  w.u32(static_cast<std::uint32_t>(record.payload.size())).bytes(record.payload);
  auto body = call(w.finish(), id, std::move(stop));
  if (!body) return std::unexpected(body.error());
  return parse_reply(*body);
}

std::expected<void, std::error_code> IpcStore::reject(std::string_view topic, errc reason,
                                                      std::span<const std::uint8_t> payload, std::int64_t received_ms) {
  std::lock_guard lock(call_mutex_);
  const std::uint64_t id = next_id_++;
  const auto t = topic.substr(0, 0xffff);
  Writer w(kReject);
  w.u64(id).u8(static_cast<std::uint8_t>(reason)).u64(static_cast<std::uint64_t>(received_ms));
  w.u16(static_cast<std::uint16_t>(t.size())).text(t);
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

IpcServer::IpcServer(int fd, EventStore& store) : fd_(fd), store_(store) {
  thread_ = std::thread([this] { serve(); });
}

IpcServer::~IpcServer() { stop(); }

void IpcServer::stop() {
  stop_.request_stop();
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

MqttStats IpcServer::last_stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void IpcServer::serve() {
  const auto stop = stop_.get_token();
  auto reply = [&](std::uint64_t id, const std::expected<buffer::Seq, std::error_code>& result) {
    Writer w(kReply);
    w.u64(id);
    if (result) {
      w.u8(0).u32(0).u64(result->value);
    } else if (result.error().category() == buffer::buffer_category()) {
      w.u8(1).u32(static_cast<std::uint32_t>(result.error().value())).u64(0);
    } else {
      w.u8(2).u32(static_cast<std::uint32_t>(result.error().value())).u64(0);
    }
    return send_all(fd_, w.finish());
  };
  while (!stop.stop_requested()) {
    auto f = read_frame(fd_, stop);
    if (!f) break;
    Reader r(f->body);
    if (f->type == kStats) {
      try {
        auto j = nlohmann::json::parse(f->body.begin(), f->body.end());
        std::lock_guard lock(mu_);
        stats_ = stats_from_json(j);
      } catch (const nlohmann::json::exception& e) {
        spdlog::warn("ingest ipc: unreadable stats from a worker: {}", e.what());
      }
      continue;
    }
    if (f->type == kStore) {
      const std::uint64_t id = r.uint(8);
      buffer::RecordIn in;
      in.type = static_cast<buffer::RecordType>(r.uint(1));
      if (r.uint(1) != 0) {
        buffer::DedupKey k;
        k.epoch = r.uint(8);
        k.seq = r.uint(8);
        k.time_ms = static_cast<std::int64_t>(r.uint(8));
        k.source = r.text(static_cast<std::size_t>(r.uint(2)));
        in.dedup = k;
      }
      in.payload = r.bytes(static_cast<std::size_t>(r.uint(4)));
      if (!r.ok()) break;
      auto result = store_.store(in, stop);
      if (!result && result.error() == buffer::errc::stopped) break;  // no reply: the worker must not ack
      if (!reply(id, result)) break;
      continue;
    }
    if (f->type == kReject) {
      const std::uint64_t id = r.uint(8);
      const auto reason = static_cast<errc>(r.uint(1));
      const auto received = static_cast<std::int64_t>(r.uint(8));
      const auto topic = r.text(static_cast<std::size_t>(r.uint(2)));
      const auto payload = r.bytes(static_cast<std::size_t>(r.uint(4)));
      if (!r.ok()) break;
      auto kept = store_.reject(topic, reason, payload, received);
      if (!reply(id, kept ? std::expected<buffer::Seq, std::error_code>(buffer::Seq{0})
                          : std::expected<buffer::Seq, std::error_code>(std::unexpected(kept.error())))) {
        break;
      }
      continue;
    }
    spdlog::error("ingest ipc: unknown frame type {} from a worker; closing its connection", f->type);
    break;
  }
  ::shutdown(fd_, SHUT_RDWR);  // the worker sees EOF at once; fd_ is closed by stop()
  finished_ = true;
}

}  // namespace gw::ingest
