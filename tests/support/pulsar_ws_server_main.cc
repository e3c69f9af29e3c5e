// pulsar-ws-server: the tests' Pulsar WebSocket protocol server (pulsar_ws_server.h) in its own
// process, for the shell tests. Not a Pulsar broker.
//
//   pulsar-ws-server [--token TOKEN] [--port PORT]
//
// Prints "url=ws://127.0.0.1:PORT" as its first stdout line, then reads commands on stdin, one per
// line, answering "ok" (or the stats line, or "error: ..."):
//   fail-sends N     the next N producer messages get send-error:3 and are not stored
//   drop-after K     the producer connection that receives the next K messages stores them and is
//                    reset without answering any
//   reject-tokens on|off
//   stats            one JSON line: counters and messages per topic
//   quit
// Stdin EOF does not stop it; SIGTERM/SIGINT do (exit 0).
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "tests/support/pulsar_ws_server.h"

int main(int argc, char** argv) {
  std::string token;
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--token" && i + 1 < argc) {
      token = argv[++i];
    } else if (a == "--port" && i + 1 < argc) {
      port = std::stoi(argv[++i]);
    } else {
      std::cerr << "usage: pulsar-ws-server [--token TOKEN] [--port PORT]\n";
      return 2;
    }
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts: they inherit it

  auto server = gw::test::PulsarWsServer::start(token, port);
  std::cout << "url=" << server->url() << std::endl;
  std::thread([&server] {
    std::string line;
    while (std::getline(std::cin, line)) {
      std::istringstream in(line);
      std::string cmd, arg;
      in >> cmd >> arg;
      if (cmd == "fail-sends") {
        server->fail_next_sends(std::stoull(arg.empty() ? "0" : arg));
      } else if (cmd == "drop-after") {
        server->drop_after(std::stoull(arg.empty() ? "0" : arg));
      } else if (cmd == "reject-tokens") {
        server->reject_tokens(arg == "on");
      } else if (cmd == "stats") {
        std::cout << server->stats_json() << std::endl;
        continue;
      } else if (cmd == "quit") {
        kill(getpid(), SIGUSR1);
        return;
      } else if (cmd.empty()) {
        continue;
      } else {
        std::cout << "error: unknown command " << cmd << std::endl;
        continue;
      }
      std::cout << "ok" << std::endl;
    }
  }).detach();
  int sig = 0;
  sigwait(&signals, &sig);
  std::cerr << "pulsar-ws-server: " << server->stats_json() << '\n';
  server.reset();
  return 0;
}
