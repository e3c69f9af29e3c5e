// Test helpers (see support.h). POSIX only.
#include "tests/support/support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace gw::test {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

sockaddr_in loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) fail("socket");
  sockaddr_in addr = loopback(0);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    fail("bind 127.0.0.1:0");
  }
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    fail("getsockname");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool wait_for_port(int port, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) fail("socket");
    sockaddr_in addr = loopback(port);
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/gw-test-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) fail("mkdtemp " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

ChildProcess::ChildProcess(std::vector<std::string> argv, std::optional<std::filesystem::path> stdout_file,
                           std::chrono::milliseconds grace)
    : grace_(grace) {
  if (argv.empty()) throw std::invalid_argument("ChildProcess: empty argv");
  int out_fd = -1;
  if (stdout_file) {
    out_fd = ::open(stdout_file->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0) fail("open " + stdout_file->string());
  }
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) {
    if (out_fd >= 0) ::close(out_fd);
    fail("fork");
  }
  if (pid_ == 0) {
    // Child: only async-signal-safe calls until exec.
    if (out_fd >= 0) ::dup2(out_fd, STDOUT_FILENO);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  if (out_fd >= 0) ::close(out_fd);
}

ChildProcess::~ChildProcess() {
  if (pid_ <= 0 || status_) return;
  signal(SIGTERM);
  if (!wait(grace_)) {
    signal(SIGKILL);
    (void)wait(std::chrono::seconds(10));
  }
}

bool ChildProcess::running() { return !wait(std::chrono::milliseconds(0)).has_value(); }

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      status_ = decode_status(status);
      return status_;
    }
    if (r < 0 && errno != EINTR) fail("waitpid");
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void ChildProcess::signal(int sig) {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

Mosquitto::Mosquitto(int port, std::filesystem::path binary, const std::string& extra) {
  port_ = port != 0 ? port : free_port();
  const auto conf = dir_.path() / "mosquitto.conf";
  {
    std::ofstream out(conf);
    out << "listener " << port_ << " 127.0.0.1\n"
        << "allow_anonymous true\n"
        << "persistence true\n"
        << "persistence_location " << dir_.path().string() << "/\n"
        << "max_queued_messages 100000\n"
        << "max_inflight_messages 0\n"
        << "log_dest file " << (dir_.path() / "mosquitto.log").string() << "\n";
    // Started as root, mosquitto drops to user "mosquitto", which cannot write our temp dir.
    // Staying as the current user (root included) is allowed and keeps the files ours.
    if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr) out << "user " << pw->pw_name << "\n";
    out << extra;
    if (!out) throw std::runtime_error("cannot write " + conf.string());
  }
  process_ = std::make_unique<ChildProcess>(std::vector<std::string>{binary.string(), "-c", conf.string()});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (wait_for_port(port_, std::chrono::milliseconds(200))) return;
    if (!process_->running()) break;
  }
  throw std::runtime_error("mosquitto did not start on port " + std::to_string(port_) + " (see " +
                           (dir_.path() / "mosquitto.log").string() + ")");
}

Mosquitto::~Mosquitto() { process_.reset(); }

std::string Mosquitto::url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

}  // namespace gw::test
