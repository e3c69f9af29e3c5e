// Exactly-once across kill -9: the windowing stage (run by windowing_kill_child) over a fixed ring
// content is SIGKILLed at random moments and restarted; its final results, late events, forwarded
// aggregate records and state must equal, byte for byte, those of an uninterrupted run over a copy
// of the same ring.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support/catch.h"
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "buffer/ring.h"
#include "ingest/event.h"
#include "tests/support/support.h"

namespace {

namespace fs = std::filesystem;

pid_t spawn(const std::vector<std::string>& args, const fs::path& out = "/dev/null") {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) ::dup2(fd, 1);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(GW_WINDOWING_KILL_CHILD, argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits (bounded) for the child; its exit code, or -signal.
int reap(pid_t pid, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1000;
}

std::string dump(const fs::path& dir, const fs::path& out) {
  const pid_t pid = spawn({"windowing_kill_child", dir.string(), "dump"}, out);
  REQUIRE(reap(pid, std::chrono::seconds(60)) == 0);
  std::ifstream in(out);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("after 20+ kill -9 and restarts the stage's output equals an uninterrupted run, byte for byte") {
  gw::test::TempDir tmp;
  const fs::path a = tmp.path() / "straight", b = tmp.path() / "killed";
  std::uint64_t last = 0;
  {
    auto ring = gw::buffer::Ring::open({.path = a.string(), .durability = gw::buffer::Durability::os});
    REQUIRE(ring.has_value());
    REQUIRE((*ring)->register_cursor("windowing").has_value());
    std::mt19937_64 rng(2024);
    std::vector<std::uint64_t> seq(40, 0);
    std::int64_t t = 1'700'000'000'000;
    // 120,000 events of 40 devices in 2 sites: out of order, late and duplicated, appended in
    // batches a little apart so that the ingest times (the gateway clock) move and devices go idle.
    for (int batch = 0; batch < 120; ++batch) {
      std::vector<std::vector<std::uint8_t>> payloads;
      for (int i = 0; i < 1000; ++i) {
        const int d = static_cast<int>(rng() % (batch % 10 == 0 ? 20 : 40));
        t += static_cast<std::int64_t>(rng() % 3);
        std::int64_t et = t + d * 7;
        if (rng() % 10 == 0) et -= static_cast<std::int64_t>(rng() % 2000);
        gw::ingest::Event e{gw::ingest::DeviceId{"dev-" + std::to_string(d)}, gw::ingest::DeviceSeq{++seq[d]},
                            gw::ingest::EventTime{et},
                            {{"temp", 20.0 + static_cast<double>(rng() % 1000) / 100.0}, {"hum", static_cast<double>(rng() % 100)}},
                            {{"site", d % 2 == 0 ? "north" : "south"}}};
        payloads.push_back(gw::ingest::encode_telemetry(e));
        if (rng() % 50 == 0) payloads.push_back(payloads.back());  // a duplicate the stage must count again
      }
      std::vector<gw::buffer::RecordIn> in;
      for (const auto& p : payloads) in.push_back({gw::buffer::RecordType::telemetry, p});
      auto seqs = (*ring)->append(in);
      REQUIRE(seqs.has_value());
      last = seqs->back().value;
      if (batch % 8 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
  }
  fs::copy(a, b);

  const auto started = std::chrono::steady_clock::now();
  const pid_t straight = spawn({"windowing_kill_child", a.string(), "run", std::to_string(last)});
  REQUIRE(reap(straight, std::chrono::seconds(120)) == 0);
  const auto whole = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  // What a run costs before it can make progress (start, open, restore): a run with nothing left
  // to do, on a copy. Under qemu this is much longer than natively.
  const fs::path c = tmp.path() / "done";
  fs::copy(a, c);
  const auto idle_start = std::chrono::steady_clock::now();
  REQUIRE(reap(spawn({"windowing_kill_child", c.string(), "run", std::to_string(last)}), std::chrono::seconds(120)) == 0);
  const auto startup =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - idle_start);
  // Kills land 2-32 ms after the start natively (where the whole run takes about 300 ms); where
  // the stage runs slower (under qemu: about ten times), the delays stretch by the same factor.
  const std::int64_t scale = std::max<std::int64_t>(1, whole.count() / 300);

  std::mt19937_64 rng(7);
  int kills = 0, finished_early = 0, mid_stream = 0;
  std::uint64_t position = 0;
  for (int i = 0; i < 80 && kills < 25; ++i) {
    const pid_t child = spawn({"windowing_kill_child", b.string(), "run", std::to_string(last)});
    std::this_thread::sleep_for(std::chrono::milliseconds((2 + static_cast<std::int64_t>(rng() % 30)) * scale));
    if (::kill(child, SIGKILL) == 0) {
      const int rc = reap(child, std::chrono::seconds(30));
      if (rc == -SIGKILL) ++kills;
      if (rc == 0) ++finished_early;
    }
    // Where the killed run had committed to: kills between commits, mid-stream, are the point.
    auto ring = gw::buffer::Ring::open({.path = b.string(), .durability = gw::buffer::Durability::os});
    REQUIRE(ring.has_value());
    const std::uint64_t at = (*ring)->acked("windowing").value_or(gw::buffer::Seq{}).value;
    if (at > position && at < last) ++mid_stream;
    position = at;
  }
  const pid_t final_run = spawn({"windowing_kill_child", b.string(), "run", std::to_string(last)});
  REQUIRE(reap(final_run, std::chrono::seconds(120)) == 0);
  INFO("straight run " << whole.count() << " ms, idle run " << startup.count() << " ms; kills " << kills
                        << ", runs that finished before their kill " << finished_early
                 << ", kills after progress short of the end " << mid_stream);
  CHECK(kills >= 20);
  CHECK(mid_stream >= 5);

  const std::string want = dump(a, tmp.path() / "straight.txt");
  const std::string got = dump(b, tmp.path() / "killed.txt");
  CHECK(want.find("win.res ") != std::string::npos);
  CHECK(want.find("win.late ") != std::string::npos);
  CHECK(want.find("aggregate ") != std::string::npos);
  if (want != got && std::getenv("GW_WINDOWING_KEEP")) fs::copy(tmp.path(), std::getenv("GW_WINDOWING_KEEP"), fs::copy_options::recursive);
  REQUIRE(want.size() == got.size());
  CHECK(want == got);
}
