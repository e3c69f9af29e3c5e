// The floor of ingest mode plugin's design for bench-box (tests/bench/box.sh, variant `echo`): a
// server on the plugin's socket that answers every request "acknowledged" at once, without
// decoding or storing anything. mosquitto with the gateway's plugin talking to it costs what the
// hand-over itself costs (the socket round trip and its wake-ups on both sides); what the gateway
// adds above it is its own work. Built only for the benchmark (not in the default build).
//   bench-plugin-echo SOCKET_PATH     (serves one connection at a time until killed)
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "ingest/plugin_protocol.h"

namespace proto = gw::ingest::plugin;

namespace {

bool fill(int fd, std::vector<std::uint8_t>& in, std::size_t& have, std::size_t need) {
  if (in.size() < need) in.resize(need);
  while (have < need) {
    const ssize_t r = read(fd, in.data() + have, in.size() - have);
    if (r <= 0) return false;
    have += static_cast<std::size_t>(r);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::strlen(argv[1]) >= sizeof(sockaddr_un::sun_path)) {
    std::fprintf(stderr, "usage: bench-plugin-echo SOCKET_PATH\n");
    return 2;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strcpy(address.sun_path, argv[1]);
  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ::unlink(argv[1]);
  if (listener < 0 || bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listener, 4) != 0) {
    std::perror("bench-plugin-echo");
    return 1;
  }
  std::printf("listening\n");
  std::fflush(stdout);
  std::vector<std::uint8_t> in(64 * 1024);
  for (;;) {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    for (;;) {
      std::size_t have = 0;
      if (!fill(fd, in, have, proto::kHeaderBytes)) break;
      const std::uint32_t rest = proto::rest_length(in.data());
      if (rest > proto::kMaxRequestBytes || !fill(fd, in, have, 4 + std::size_t{rest})) break;
      const auto reply = static_cast<std::uint8_t>(proto::Reply::acknowledged);
      if (send(fd, &reply, 1, MSG_NOSIGNAL) != 1) break;
    }
    close(fd);
  }
}
