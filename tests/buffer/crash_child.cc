// buffer_crash_child DIR os|fsync SEED: the victim of the crash test (tests/buffer/crash_test.cc).
// Opens the ring at DIR, then appends (three threads, random batch sizes and payloads), acks two
// cursors and trims (one thread) until it is killed, reporting every append() and ack() that
// returned on fd 3 (tests/buffer/crash_protocol.h). Never exits by itself.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "buffer/ring.h"
#include "tests/buffer/crash_protocol.h"

namespace {

using namespace gw::buffer;

constexpr int kReportFd = 3;
std::atomic<std::uint64_t> max_reported{0};

void write_all(const void* data, std::size_t size) {
  // One write(): atomic for a pipe up to PIPE_BUF bytes.
  if (::write(kReportFd, data, size) != static_cast<ssize_t>(size)) std::_Exit(3);
}

void appender(Ring& ring, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (;;) {
    const std::uint32_t n = 1 + static_cast<std::uint32_t>(rng() % crash::kMaxBatch);
    std::vector<std::vector<std::uint8_t>> payloads(n);
    std::vector<RecordIn> in(n);
    for (std::uint32_t i = 0; i < n; ++i) {
      const std::size_t size = rng() % 50 == 0 ? 3000 + rng() % 6000 : rng() % 200;
      payloads[i].resize(size);
      for (auto& b : payloads[i]) b = static_cast<std::uint8_t>(rng());
      in[i] = {RecordType::telemetry, payloads[i]};
    }
    auto seqs = ring.append(in);
    if (!seqs) {
      std::fprintf(stderr, "crash child: append failed: %s\n", seqs.error().message().c_str());
      std::_Exit(2);
    }
    std::vector<std::uint8_t> msg(sizeof(crash::Header) + n * sizeof(crash::RecordReport));
    crash::Header h{crash::kAppended, n};
    std::memcpy(msg.data(), &h, sizeof h);
    for (std::uint32_t i = 0; i < n; ++i) {
      crash::RecordReport r{(*seqs)[i].value, crash::fnv1a(payloads[i]), static_cast<std::uint32_t>(payloads[i].size()),
                            0};
      std::memcpy(msg.data() + sizeof h + i * sizeof r, &r, sizeof r);
    }
    write_all(msg.data(), msg.size());
    std::uint64_t last = seqs->back().value;
    std::uint64_t cur = max_reported.load();
    while (cur < last && !max_reported.compare_exchange_weak(cur, last)) {
    }
  }
}

void acker(Ring& ring, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uint64_t acked[2] = {ring.acked(crash::kCursors[0]).value_or(Seq{}).value,
                            ring.acked(crash::kCursors[1]).value_or(Seq{}).value};
  for (std::uint64_t round = 0;; ++round) {
    const std::uint32_t c = static_cast<std::uint32_t>(rng() % 2);
    const std::uint64_t top = max_reported.load();
    if (top > acked[c]) {
      const std::uint64_t upto = acked[c] + 1 + rng() % (top - acked[c]);
      if (auto ok = ring.ack(crash::kCursors[c], Seq{upto}); !ok) {
        std::fprintf(stderr, "crash child: ack failed: %s\n", ok.error().message().c_str());
        std::_Exit(2);
      }
      acked[c] = upto;
      struct {
        crash::Header h;
        crash::AckReport a;
      } msg{{crash::kAcked, 1}, {c, 0, upto}};
      write_all(&msg, sizeof msg);
    }
    if (round % 4 == 0) {
      if (auto t = ring.trim(); !t) {
        std::fprintf(stderr, "crash child: trim failed: %s\n", t.error().message().c_str());
        std::_Exit(2);
      }
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: buffer_crash_child DIR os|fsync SEED\n");
    return 64;
  }
  spdlog::set_level(spdlog::level::warn);
  Options options;
  options.path = argv[1];
  options.durability = std::string(argv[2]) == "os" ? Durability::os : Durability::fsync;
  options.sync_interval = std::chrono::milliseconds(20);
  options.max_bytes = 64ull << 20;
  options.initial_map_bytes = 1ull << 20;  // small, so that the map grows under the test too
  const std::uint64_t seed = std::strtoull(argv[3], nullptr, 10);
  auto ring = Ring::open(options);
  if (!ring) {
    std::fprintf(stderr, "crash child: open failed: %s\n", ring.error().message().c_str());
    return 2;
  }
  for (const char* c : crash::kCursors) {
    if (!(*ring)->register_cursor(c)) return 2;
  }
  std::vector<std::thread> threads;
  for (std::uint64_t i = 0; i < 3; ++i) threads.emplace_back(appender, std::ref(**ring), seed * 10 + i);
  threads.emplace_back(acker, std::ref(**ring), seed * 10 + 9);
  for (auto& t : threads) t.join();  // never: the threads loop until the process is killed
  return 0;
}
