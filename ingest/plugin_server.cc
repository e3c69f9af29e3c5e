#include "ingest/plugin_server.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <list>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include "ingest/plugin_protocol.h"

namespace gw::ingest {
namespace {

namespace proto = plugin;

std::int64_t system_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class Server final : public PluginServer {
 public:
  Server(PluginServerOptions options, EventStore& store) : options_(std::move(options)), store_(store) {
    if (!options_.clock) options_.clock = system_now_ms;
  }
  ~Server() override { stop(); }

  std::error_code listen() {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (options_.socket_path.empty() || options_.socket_path.size() >= sizeof(address.sun_path)) {
      return std::make_error_code(std::errc::filename_too_long);
    }
    std::memcpy(address.sun_path, options_.socket_path.data(), options_.socket_path.size());
    wake_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (wake_ < 0 || listen_fd_ < 0) return {errno, std::system_category()};
    ::unlink(options_.socket_path.c_str());  // a socket left by a killed gateway
    if (bind(listen_fd_, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
        chmod(options_.socket_path.c_str(), 0660) != 0) {
      return {errno, std::system_category()};
    }
    if (!options_.socket_group.empty()) {
      const group* g = getgrnam(options_.socket_group.c_str());
      if (g == nullptr) return std::make_error_code(std::errc::invalid_argument);  // no such group
      if (chown(options_.socket_path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
        return {errno, std::system_category()};
      }
    }
    if (::listen(listen_fd_, 16) != 0) return {errno, std::system_category()};
    acceptor_ = std::thread([this] { accept_loop(); });
    spdlog::info("ingest: plugin mode: the mosquitto plugin hands messages over at {}", options_.socket_path);
    return {};
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    stop_.request_stop();  // ends stores waiting for room
    if (wake_ >= 0) {
      const std::uint64_t one = 1;
      [[maybe_unused]] auto n = write(wake_, &one, sizeof(one));
    }
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard lock(mu_);
      for (auto& c : connections_) shutdown(c.fd, SHUT_RDWR);
    }
    for (auto& c : connections_) {
      if (c.thread.joinable()) c.thread.join();
      close(c.fd);
    }
    connections_.clear();
    if (listen_fd_ >= 0) {
      close(listen_fd_);
      ::unlink(options_.socket_path.c_str());
    }
    if (wake_ >= 0) close(wake_);
  }

  MqttStats stats() const override {
    std::lock_guard lock(mu_);
    MqttStats s = stats_;
    s.connected = s.subscribed = open_ > 0;
    if (options_.admit.mapper) s.sparkplug_deaths = options_.admit.mapper->sparkplug_deaths();
    return s;
  }

 private:
  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  void accept_loop() {
    while (!stop_.stop_requested()) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_, POLLIN, 0}};
      if (poll(fds, 2, 1000) < 0 && errno != EINTR) break;
      reap();
      if (fds[1].revents != 0 || stop_.stop_requested()) break;
      if ((fds[0].revents & POLLIN) == 0) continue;
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lock(mu_);
      if (open_ >= options_.max_connections) {
        spdlog::warn("ingest: plugin connection refused: {} already open", open_);
        close(fd);
        continue;
      }
      ++open_;
      if (open_ == 1) spdlog::info("ingest: the mosquitto plugin connected");
      Connection& c = connections_.emplace_back();
      c.fd = fd;
      c.thread = std::thread([this, &c] {
        serve(c.fd);
        std::lock_guard lock(mu_);
        --open_;
        c.done = true;
      });
    }
  }

  // Joins the threads of closed connections (accept thread only).
  void reap() {
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (!it->done) {
        ++it;
        continue;
      }
      it->thread.join();
      close(it->fd);
      std::lock_guard lock(mu_);
      it = connections_.erase(it);
    }
  }

  // Reads from fd until in[0, have) holds at least `need` bytes, as much as the socket has at each
  // read: a whole request (the plugin writes it at once) usually takes one read call.
  static bool fill(int fd, std::vector<std::uint8_t>& in, std::size_t& have, std::size_t need) {
    if (in.size() < need) in.resize(need);
    while (have < need) {
      const ssize_t r = read(fd, in.data() + have, in.size() - have);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      have += static_cast<std::size_t>(r);
    }
    return true;
  }

  void serve(int fd) {
    // One request at a time (the plugin waits for each answer), so nothing follows a request in `in`.
    // The payload is copied into a buffer of its own: a FlatBuffer must start at an aligned address
    // (the verifier reads it in place), which an offset after the topic would not give.
    std::vector<std::uint8_t> in(64 * 1024), payload;
    while (!stop_.stop_requested()) {
      std::size_t have = 0;
      if (!fill(fd, in, have, proto::kHeaderBytes)) return;
      const std::uint32_t n = proto::rest_length(in.data());
      proto::Fixed f;
      if (n > proto::kMaxRequestBytes || n < proto::kFixedBytes || !proto::parse_fixed(in.data() + 4, f) ||
          n - proto::kFixedBytes < f.topic_len + f.client_len) {
        spdlog::error("ingest: a plugin request that is not the plugin's protocol (another version?); connection closed");
        return;
      }
      if (!fill(fd, in, have, 4 + std::size_t{n})) return;
      const char* names = reinterpret_cast<const char*>(in.data()) + proto::kHeaderBytes;
      const std::string_view topic(names, f.topic_len);
      const std::string_view client(names + f.topic_len, f.client_len);
      const std::uint8_t* body = in.data() + proto::kHeaderBytes + f.topic_len + f.client_len;
      payload.assign(body, static_cast<const std::uint8_t*>(in.data()) + 4 + n);
      const std::uint8_t reply = static_cast<std::uint8_t>(handle(topic, client, payload));
      if (send(fd, &reply, 1, MSG_NOSIGNAL) != 1) return;  // the plugin gave up waiting: it was not acknowledged
      if (in.size() > 1024 * 1024) {  // a rare large request does not keep its buffer
        in.resize(64 * 1024);
        in.shrink_to_fit();
      }
    }
  }

  proto::Reply handle(std::string_view topic, std::string_view client_id, std::span<const std::uint8_t> received) {
    {
      std::lock_guard lock(mu_);
      ++stats_.messages_received;
    }
    auto admitted = admit(topic, received, options_.clock(), options_.admit, client_id);
    if (!admitted && !admitted.error().reason) {
      std::lock_guard lock(mu_);
      ++stats_.not_events;
      return proto::Reply::acknowledged;
    }
    if (!admitted) {
      return reject(topic, received, static_cast<errc>(admitted.error().reason.value()), admitted.error().detail);
    }
    if (admitted->device_mismatch || admitted->time_from_arrival) {
      std::lock_guard lock(mu_);
      stats_.device_mismatches += admitted->device_mismatch;
      stats_.arrival_times += admitted->time_from_arrival;
    }
    auto stored = store_.store(admitted->record(), stop_.get_token());
    if (!stored) {
      std::lock_guard lock(mu_);
      ++stats_.store_retries;
      stats_.last_error = "store: " + stored.error().message();
      return proto::Reply::refused;
    }
    if (auto reason = rejection_of(*stored)) return reject(topic, received, *reason);  // as the device sent it
    std::lock_guard lock(mu_);
    ++(*stored == buffer::kDroppedDuplicate ? stats_.duplicates : stats_.events_stored);
    return proto::Reply::acknowledged;
  }

  // Kept as a dead letter, counted, and acknowledged: sent again, it would be rejected again.
  proto::Reply reject(std::string_view topic, std::span<const std::uint8_t> payload, errc reason,
                      const std::string& detail = {}) {
    const bool kept = store_.reject(topic, reason, payload, options_.clock(), detail).has_value();
    std::lock_guard lock(mu_);
    ++stats_.decode_errors[reason];
    ++stats_.decode_errors_total;
    if (!kept) ++stats_.dead_letter_failures;
    stats_.last_error = "rejected (" + std::string(topic) + "): " + make_error_code(reason).message() +
                        (detail.empty() ? "" : " (" + detail + ")");
    return proto::Reply::acknowledged;
  }

  PluginServerOptions options_;
  EventStore& store_;
  std::stop_source stop_;
  std::atomic<bool> stopped_{false};
  int listen_fd_ = -1;
  int wake_ = -1;
  std::thread acceptor_;
  std::list<Connection> connections_;  // accept thread (and stop() after it ended)
  mutable std::mutex mu_;
  std::size_t open_ = 0;
  MqttStats stats_;
};

}  // namespace

std::expected<std::unique_ptr<PluginServer>, std::error_code> PluginServer::start(PluginServerOptions options,
                                                                                 EventStore& store) {
  auto server = std::make_unique<Server>(std::move(options), store);
  if (auto e = server->listen()) return std::unexpected(e);
  return server;
}

}  // namespace gw::ingest
