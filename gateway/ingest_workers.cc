// IngestWorkers (gateway/ingest_workers.h): spawning, supervising and stopping the ingest worker
// processes. One supervisor thread polls the children (waitpid WNOHANG) every 100 ms.
#include "gateway/ingest_workers.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "ingest/ipc.h"

namespace gw::gateway {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPoll = std::chrono::milliseconds(100);
constexpr auto kHealthyRun = std::chrono::seconds(30);  // a worker that ran this long resets the backoff

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended (status " + std::to_string(status) + ")";
}

void add(ingest::MqttStats& total, const ingest::MqttStats& s) {
  total.messages_received += s.messages_received;
  total.events_stored += s.events_stored;
  total.duplicates += s.duplicates;
  for (const auto& [reason, n] : s.decode_errors) total.decode_errors[reason] += n;
  total.decode_errors_total += s.decode_errors_total;
  total.store_retries += s.store_retries;
  total.unstored_at_stop += s.unstored_at_stop;
  total.device_mismatches += s.device_mismatches;
  total.not_events += s.not_events;
  total.arrival_times += s.arrival_times;
  total.dead_letter_failures += s.dead_letter_failures;
  total.reconnects += s.reconnects;
}

class Workers final : public IngestWorkers {
 public:
  Workers(IngestWorkersOptions options, ingest::EventStore& store) : options_(std::move(options)), hub_(store, options_.gather_wait) {
    for (int i = 1; i <= options_.sessions; ++i) {
      slots_.push_back(std::make_unique<Slot>());
      slots_.back()->index = i;
    }
  }
  ~Workers() override { stop(); }

  std::expected<void, std::string> run() {
    std::lock_guard lock(mu_);
    for (auto& slot : slots_) {
      if (auto r = spawn(*slot); !r) return r;
    }
    supervisor_ = std::thread([this] { supervise(); });
    return {};
  }

  void stop() override {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (supervisor_.joinable()) supervisor_.join();
    std::unique_lock lock(mu_);
    for (auto& slot : slots_) {
      if (slot->pid > 0) ::kill(slot->pid, SIGTERM);
    }
    const auto deadline = Clock::now() + options_.stop_timeout;
    for (;;) {
      bool running = false;
      for (auto& slot : slots_) {
        if (slot->pid > 0 && reap(*slot, WNOHANG)) continue;
        running = running || slot->pid > 0;
      }
      if (!running) break;
      if (Clock::now() >= deadline) {
        for (auto& slot : slots_) {
          if (slot->pid <= 0) continue;
          spdlog::warn("ingest: worker {} did not stop within {} ms; killing it", slot->index,
                       options_.stop_timeout.count());
          ::kill(slot->pid, SIGKILL);
          reap(*slot, 0);
        }
        break;
      }
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      lock.lock();
    }
    hub_.stop();
  }

  ingest::MqttStats stats() const override {
    std::lock_guard lock(mu_);
    ingest::MqttStats total;
    total.connected = !slots_.empty();
    total.subscribed = !slots_.empty();
    for (const auto& slot : slots_) {
      add(total, slot->retired);
      const ingest::MqttStats now = slot->conn ? hub_.last_stats(slot->conn) : ingest::MqttStats{};
      add(total, now);
      total.connected = total.connected && slot->pid > 0 && now.connected;
      total.subscribed = total.subscribed && slot->pid > 0 && now.subscribed;
      if (!now.last_error.empty()) total.last_error = "worker " + std::to_string(slot->index) + ": " + now.last_error;
    }
    return total;
  }

  std::vector<IngestWorkerState> workers() const override {
    std::lock_guard lock(mu_);
    std::vector<IngestWorkerState> out;
    for (const auto& slot : slots_) {
      out.push_back({slot->index, slot->pid, slot->starts, slot->last_exit,
                     slot->conn ? hub_.last_stats(slot->conn) : ingest::MqttStats{}});
    }
    return out;
  }

 private:
  struct Slot {
    int index = 0;
    pid_t pid = 0;
    std::uint64_t starts = 0;
    std::string last_exit;
    ingest::IpcHub::Id conn = 0;  // its connection in hub_ (0: none yet)
    ingest::MqttStats retired;  // summed stats of earlier runs
    Clock::time_point started{};
    Clock::time_point restart_at{};
    std::chrono::milliseconds backoff{0};
  };

  // Starts the worker of `slot`. mu_ held.
  std::expected<void, std::string> spawn(Slot& slot) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      return std::unexpected(std::string("socketpair: ") + std::strerror(errno));
    }
    // The same binary as the gateway (/proc/self/exe), named as the gateway's own path in `ps`.
    const std::string exe = options_.executable.empty() ? "/proc/self/exe" : options_.executable;
    std::error_code ec;
    const std::string name = options_.executable.empty() ? std::filesystem::read_symlink(exe, ec).string() : exe;
    const std::vector<std::string> args{name.empty() ? exe : name, "--config", options_.config_path, "--ingest-worker",
                                        std::to_string(slot.index), "--ipc-fd", std::to_string(fds[1])};
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      return std::unexpected(std::string("fork: ") + std::strerror(errno));
    }
    if (pid == 0) {  // child: async-signal-safe calls only
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the gateway died before the line above
      ::fcntl(fds[1], F_SETFD, 0);              // keep the worker's end across exec
      sigset_t none;
      sigemptyset(&none);
      ::pthread_sigmask(SIG_SETMASK, &none, nullptr);  // the gateway blocks SIGTERM in its threads
      ::execv(exe.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    if (slot.conn) add(slot.retired, hub_.remove(slot.conn));
    slot.conn = hub_.add(fds[0]);
    slot.pid = pid;
    ++slot.starts;
    slot.started = Clock::now();
    spdlog::info("ingest: worker {} started (pid {})", slot.index, pid);
    return {};
  }

  // Collects an exited worker. mu_ held. True if it had exited.
  bool reap(Slot& slot, int flags) {
    int status = 0;
    const pid_t r = ::waitpid(slot.pid, &status, flags);
    if (r != slot.pid) return false;
    slot.last_exit = describe_exit(status);
    slot.pid = 0;
    return true;
  }

  void supervise() {
    std::unique_lock lock(mu_);
    while (!stopping_) {
      cv_.wait_for(lock, kPoll, [&] { return stopping_; });
      if (stopping_) break;
      const auto now = Clock::now();
      for (auto& slot : slots_) {
        if (slot->pid > 0 && reap(*slot, WNOHANG)) {
          const bool healthy = now - slot->started >= kHealthyRun;
          slot->backoff = healthy ? options_.restart_min
                                  : std::clamp(slot->backoff * 2, options_.restart_min, options_.restart_max);
          slot->restart_at = now + slot->backoff;
          spdlog::error("ingest: worker {} {}; restarting it in {} ms (the broker redelivers what it had not "
                        "acknowledged)",
                        slot->index, slot->last_exit, slot->backoff.count());
        }
        if (slot->pid == 0 && now >= slot->restart_at) {
          if (auto r = spawn(*slot); !r) {
            spdlog::error("ingest: cannot restart worker {}: {}", slot->index, r.error());
            slot->restart_at = now + options_.restart_max;
          }
        }
      }
    }
  }

  IngestWorkersOptions options_;
  ingest::IpcHub hub_;  // serves every worker's connection on one thread
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::thread supervisor_;
};

}  // namespace

ingest::MqttOptions worker_mqtt_options(const ingest::MqttOptions& gateway, int index) {
  ingest::MqttOptions o = gateway;
  o.client_id = gateway.client_id + "-" + std::to_string(index);
  // The share name may not contain '/', '+' or '#'.
  std::string group = gateway.client_id;
  std::replace_if(group.begin(), group.end(), [](char c) { return c == '/' || c == '+' || c == '#'; }, '_');
  for (auto& topic : o.topics) topic = "$share/" + group + "/" + topic;
  return o;
}

std::expected<std::unique_ptr<IngestWorkers>, std::string> IngestWorkers::start(IngestWorkersOptions options,
                                                                                ingest::EventStore& store) {
  if (options.sessions < 1) return std::unexpected("sessions must be >= 1");
  auto workers = std::make_unique<Workers>(std::move(options), store);
  if (auto r = workers->run(); !r) {
    workers->stop();
    return std::unexpected(r.error());
  }
  return workers;
}

}  // namespace gw::gateway
