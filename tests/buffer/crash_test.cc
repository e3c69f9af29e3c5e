// The crash test of the ring (issue: crash-safe buffer): a child process (buffer_crash_child)
// appends and acks in a loop and reports every call that returned; we SIGKILL it at random moments
// and after each kill reopen the ring and check that
// - every record whose append was reported is present and intact, unless every cursor acked it
//   (then it may have been trimmed);
// - stored sequence numbers are contiguous, and no sequence number is ever handed out twice;
// - nothing was trimmed beyond what every cursor acknowledged;
// - cursors never move backwards (and are at least where a reported ack put them).
// Default: 200 kills per durability mode (CI, well under a minute); GW_BUFFER_CRASH_KILLS=N for a
// longer run.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/catch.h"
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "buffer/ring.h"
#include "tests/buffer/crash_protocol.h"

namespace {

using namespace gw::buffer;
using Clock = std::chrono::steady_clock;

int kills_per_mode() {
  if (const char* env = std::getenv("GW_BUFFER_CRASH_KILLS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return 200;
}

struct Model {
  std::map<std::uint64_t, crash::RecordReport> reported;  // seq -> what the child appended
  std::uint64_t max_reported = 0;
  std::uint64_t last_seen = 0;            // the ring's last_seq at the previous check
  std::uint64_t acked_reported[2] = {0, 0};
  std::uint64_t acked_seen[2] = {0, 0};
  std::uint64_t records_checked = 0;
};

// Runs the child, lets it work for `run_for`, kills it, and feeds its reports into the model.
void run_and_kill(const std::string& dir, const char* mode, std::uint64_t seed, std::chrono::microseconds run_for,
                  Model& m) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  const std::string seed_s = std::to_string(seed);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 3);  // dup2 clears FD_CLOEXEC on the copy
    ::execl(GW_BUFFER_CRASH_CHILD, "buffer_crash_child", dir.c_str(), mode, seed_s.c_str(), nullptr);
    ::_exit(127);
  }
  ::close(fds[1]);
  std::vector<std::uint8_t> stream;
  auto drain = [&](int timeout_ms) {
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    std::uint8_t buf[65536];
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) return false;
    stream.insert(stream.end(), buf, buf + n);
    return true;
  };
  const auto deadline = Clock::now() + run_for;
  while (Clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    drain(static_cast<int>(std::max<std::int64_t>(left, 0)));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  const auto end = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < end && drain(1000)) {
  }
  ::close(fds[0]);
  INFO("the child must die by our SIGKILL, not exit by itself (status " << status << ")");
  REQUIRE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));

  std::size_t at = 0;
  while (at + sizeof(crash::Header) <= stream.size()) {
    crash::Header h;
    std::memcpy(&h, stream.data() + at, sizeof h);
    at += sizeof h;
    if (h.kind == crash::kAppended) {
      REQUIRE(at + h.count * sizeof(crash::RecordReport) <= stream.size());
      for (std::uint32_t i = 0; i < h.count; ++i) {
        crash::RecordReport r;
        std::memcpy(&r, stream.data() + at, sizeof r);
        at += sizeof r;
        CAPTURE(r.seq, m.last_seen);
        // No reuse: a new append gets a sequence above everything the ring had before this run.
        REQUIRE(r.seq > m.last_seen);
        REQUIRE(m.reported.count(r.seq) == 0);
        m.reported[r.seq] = r;
        m.max_reported = std::max(m.max_reported, r.seq);
      }
    } else {
      REQUIRE(h.kind == crash::kAcked);
      REQUIRE(at + sizeof(crash::AckReport) <= stream.size());
      crash::AckReport a;
      std::memcpy(&a, stream.data() + at, sizeof a);
      at += sizeof a;
      REQUIRE(a.cursor < 2);
      m.acked_reported[a.cursor] = std::max(m.acked_reported[a.cursor], a.upto);
    }
  }
  REQUIRE(at == stream.size());
}

// Reopens the ring after a kill and checks every invariant against the model.
void check(const std::string& dir, Durability durability, Model& m) {
  Options options;
  options.path = dir;
  options.durability = durability;
  options.max_bytes = 64ull << 20;
  auto opened = Ring::open(options);
  REQUIRE(opened.has_value());
  Ring& ring = **opened;

  const std::uint64_t last = ring.last_seq().value;
  CAPTURE(last, m.max_reported, m.last_seen);
  REQUIRE(last >= m.max_reported);
  REQUIRE(last >= m.last_seen);

  std::uint64_t min_acked = UINT64_MAX;
  for (std::uint32_t c = 0; c < 2; ++c) {
    auto acked = ring.acked(crash::kCursors[c]);
    if (!acked) {
      // Only before the child's first register_cursor committed.
      REQUIRE(acked.error() == errc::unknown_cursor);
      REQUIRE(m.acked_reported[c] == 0);
      REQUIRE(m.acked_seen[c] == 0);
      min_acked = 0;
      continue;
    }
    CAPTURE(c, acked->value, m.acked_reported[c], m.acked_seen[c]);
    REQUIRE(acked->value >= m.acked_reported[c]);  // a returned ack is durable
    REQUIRE(acked->value >= m.acked_seen[c]);      // cursors never move backwards
    REQUIRE(acked->value <= last);
    m.acked_seen[c] = acked->value;
    min_acked = std::min(min_acked, acked->value);
  }

  auto all = ring.read(Seq{0}, SIZE_MAX, SIZE_MAX);
  REQUIRE(all.has_value());
  // Nothing trimmed beyond what every cursor acknowledged: the first stored record follows it.
  const std::uint64_t first = all->empty() ? last + 1 : all->front().seq.value;
  CAPTURE(first, min_acked);
  REQUIRE(first - 1 <= min_acked);
  // Contiguous up to the last sequence handed out.
  for (std::size_t i = 0; i < all->size(); ++i) REQUIRE((*all)[i].seq.value == first + i);
  if (!all->empty()) REQUIRE(all->back().seq.value == last);

  // Every reported record above the all-acked line is present and intact.
  for (auto it = m.reported.begin(); it != m.reported.end();) {
    const crash::RecordReport& r = it->second;
    if (r.seq >= first) {
      const StoredRecord& s = (*all)[r.seq - first];
      CAPTURE(r.seq);
      REQUIRE(s.payload.size() == r.size);
      REQUIRE(crash::fnv1a(s.payload) == r.hash);
      ++m.records_checked;
      ++it;
    } else {
      REQUIRE(r.seq <= min_acked);
      it = m.reported.erase(it);  // trimmed after every cursor acked it: done with
    }
  }
  m.last_seen = last;
}

void crash_loop(Durability durability) {
  const char* mode = durability == Durability::os ? "os" : "fsync";
  std::random_device rd;
  const std::uint64_t seed0 = rd();
  INFO("mode " << mode << ", seed " << seed0);
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gw-ring-crash-" + std::to_string(::getpid()) + "-" + mode + "-" + std::to_string(seed0));
  std::mt19937_64 rng(seed0);
  Model m;
  const int kills = kills_per_mode();
  const auto started = Clock::now();
  spdlog::set_level(spdlog::level::warn);
  for (int k = 0; k < kills; ++k) {
    CAPTURE(k);
    // Mostly mid-run; sometimes very early (during open and recovery).
    const auto run_for = std::chrono::microseconds(rng() % 8 == 0 ? rng() % 3000 : 2000 + rng() % 40000);
    run_and_kill(dir.string(), mode, seed0 + static_cast<std::uint64_t>(k), run_for, m);
    check(dir.string(), durability, m);
  }
  spdlog::set_level(spdlog::level::info);
  const auto secs = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count() / 1000.0;
  WARN("crash test (" << mode << "): " << kills << " SIGKILLs, last seq " << m.last_seen << ", "
                      << m.records_checked << " record checks, " << secs << " s: all invariants held");
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace

TEST_CASE("crash: SIGKILL at random moments loses nothing acknowledged (durability os)", "[crash]") {
  crash_loop(Durability::os);
}

TEST_CASE("crash: SIGKILL at random moments loses nothing acknowledged (durability fsync)", "[crash]") {
  crash_loop(Durability::fsync);
}
