// kafka-mock: runs an embedded Kafka mock cluster (uplink/kafka_mock.h) on 127.0.0.1 for tests and
// the demo, and takes fault-injection commands on stdin.
//
//   kafka-mock [--brokers N] [--topic NAME[:PARTITIONS]]...
//
// Prints `bootstrap=HOST:PORT[,...]` as its first stdout line, then answers each stdin command
// (`down`, `up`, `rtt MS`, `produce-errors COUNT CODE`, `quit`) with `ok` or `error: ...`. On stdin EOF it keeps running until
// SIGTERM or SIGINT, then exits 0. Logs go to stderr. Single-threaded (plus librdkafka's threads).
#include <poll.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "uplink/kafka_mock.h"

namespace {

// Runs one command line; returns the answer, and sets quit.
std::string run_command(gw::uplink::MockCluster& cluster, std::string_view line, bool& quit) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  auto done = [](const std::expected<void, std::error_code>& r) {
    return r ? std::string("ok") : "error: " + r.error().message();
  };
  if (line == "down") return done(cluster.set_down(true));
  if (line == "up") return done(cluster.set_down(false));
  if (line == "quit") {
    quit = true;
    return "ok";
  }
  if (line.starts_with("rtt ")) {
    std::string_view arg = line.substr(4);
    int ms = -1;
    auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), ms);
    if (ec != std::errc() || end != arg.data() + arg.size() || ms < 0)
      return "error: rtt needs milliseconds >= 0";
    return done(cluster.set_rtt(std::chrono::milliseconds(ms)));
  }
  if (line.starts_with("produce-errors ")) {
    // produce-errors COUNT CODE
    std::string_view args = line.substr(15);
    const auto space = args.find(' ');
    int count = 0, code = 0;
    const std::string_view a = args.substr(0, space);
    const std::string_view b = space == std::string_view::npos ? std::string_view() : args.substr(space + 1);
    auto [e1, c1] = std::from_chars(a.data(), a.data() + a.size(), count);
    auto [e2, c2] = std::from_chars(b.data(), b.data() + b.size(), code);
    if (c1 != std::errc() || e1 != a.data() + a.size() || c2 != std::errc() || e2 != b.data() + b.size() || b.empty())
      return "error: produce-errors needs COUNT CODE (a Kafka error code, e.g. 19)";
    return done(cluster.push_produce_errors(count, code));
  }
  return "error: unknown command (down, up, rtt MS, produce-errors COUNT CODE, quit)";
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("kafka-mock"));

  CLI::App app{
      "kafka-mock: an embedded librdkafka mock Kafka cluster on 127.0.0.1.\n"
      "Prints bootstrap=HOST:PORT[,...] first, then reads commands on stdin: down, up, rtt MS,\n"
      "produce-errors COUNT CODE (the next COUNT produce requests fail with Kafka error CODE), quit.\n"
      "Runs until quit, SIGTERM or SIGINT (stdin EOF does not stop it)."};
  int brokers = 1;
  std::vector<std::string> topics;
  app.add_option("--brokers", brokers, "number of mock brokers")->check(CLI::Range(1, 32));
  app.add_option("--topic", topics,
                 "NAME[:PARTITIONS]: create this topic (repeatable; 1 partition by default)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  // Block the stop signals before librdkafka starts threads, so they inherit the mask and the
  // signals are read from the signalfd below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  const int sfd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (sfd < 0) {
    std::perror("kafka-mock: signalfd");
    return 1;
  }

  auto cluster = gw::uplink::MockCluster::create(brokers);
  if (!cluster) {
    std::cerr << "kafka-mock: " << cluster.error().message() << '\n';
    return 1;
  }
  for (const std::string& spec : topics) {
    std::string name = spec;
    int partitions = 1;
    if (auto colon = spec.rfind(':'); colon != std::string::npos) {
      name = spec.substr(0, colon);
      const std::string count = spec.substr(colon + 1);
      auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), partitions);
      if (ec != std::errc() || end != count.data() + count.size() || partitions < 1) {
        std::cerr << "kafka-mock: --topic " << spec << ": partitions must be a positive number\n";
        return 2;
      }
    }
    if (auto r = (*cluster)->create_topic(name, partitions); !r) {
      std::cerr << "kafka-mock: --topic " << spec << ": " << r.error().message() << '\n';
      return 1;
    }
  }
  std::cout << "bootstrap=" << (*cluster)->bootstrap() << std::endl;

  bool stdin_open = true;
  bool quit = false;
  std::string pending;
  while (!quit) {
    pollfd fds[2] = {{sfd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    if (::poll(fds, stdin_open ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("kafka-mock: poll");
      return 1;
    }
    if (fds[0].revents != 0) {
      signalfd_siginfo info{};
      if (::read(sfd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        spdlog::info("kafka-mock: signal {}, stopping", info.ssi_signo);
      }
      break;
    }
    if (stdin_open && fds[1].revents != 0) {
      char buf[4096];
      const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        stdin_open = false;  // keep serving until a signal
        continue;
      }
      pending.append(buf, static_cast<std::size_t>(n));
      for (auto eol = pending.find('\n'); eol != std::string::npos && !quit; eol = pending.find('\n')) {
        const std::string line = pending.substr(0, eol);
        pending.erase(0, eol + 1);
        if (line.find_first_not_of(" \r") == std::string::npos) continue;
        std::cout << run_command(**cluster, line, quit) << std::endl;
      }
    }
  }
  cluster->reset();
  ::close(sfd);
  return 0;
}
