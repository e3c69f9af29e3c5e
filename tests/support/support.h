// Helpers for the C++ tests: a free loopback port, a temporary directory, a child process and a
// throw-away mosquitto broker on 127.0.0.1, each cleaned up by its destructor.
//
// Thread-safety: none of these objects may be used from two threads at once; distinct objects are
// independent. Failures that make a test meaningless (no free port, fork failed, broker never came
// up) throw std::runtime_error, which Catch2 reports as a test failure.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace gw::test {

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close).
int free_port();

// Waits (bounded) until a TCP connect to 127.0.0.1:port succeeds; true if it did.
bool wait_for_port(int port, std::chrono::milliseconds timeout);

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A child process started with fork/exec. The destructor sends SIGTERM, waits up to
// `grace`, then SIGKILL, and reaps the child.
class ChildProcess {
 public:
  // argv[0] is the program path (no PATH lookup). stdout_file: if set, the child's stdout goes
  // there (truncated); stderr is inherited.
  explicit ChildProcess(std::vector<std::string> argv,
                        std::optional<std::filesystem::path> stdout_file = std::nullopt,
                        std::chrono::milliseconds grace = std::chrono::seconds(5));
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Waits up to `timeout` for the child to exit; its exit status (128+signal if killed), or
  // nullopt if it is still running.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // Sends a signal (no-op once the child has been reaped).
  void signal(int sig);

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::chrono::milliseconds grace_;
};

// A mosquitto broker on 127.0.0.1:<free port> with a config and a persistence directory in its
// own TempDir: anonymous access, persistent sessions, max_queued_messages 100000, unlimited
// in-flight. The constructor returns once the port accepts connections (or throws).
class Mosquitto {
 public:
  // port 0 = pick a free one (pass a port to bring a broker up where a client already waits).
  // `extra` is appended to its config (e.g. the plugin lines of ingest mode plugin).
  explicit Mosquitto(int port = 0, std::filesystem::path binary = "/usr/sbin/mosquitto", const std::string& extra = "");
  ~Mosquitto();
  Mosquitto(const Mosquitto&) = delete;
  Mosquitto& operator=(const Mosquitto&) = delete;

  int port() const { return port_; }
  std::string url() const;  // "tcp://127.0.0.1:PORT"
  const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  TempDir dir_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> process_;  // (not optional: GCC 14 warns of its pid as uninitialised)
};

}  // namespace gw::test
