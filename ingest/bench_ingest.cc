// bench-ingest: how fast the gateway takes MQTT messages into its buffer, against a Paho
// subscriber that does nothing with them, on the same broker in the same run.
//
// Method (the same for every subscriber): "live": the subscriber is connected and subscribed,
// then firmware-sim publishes N messages at QoS 1 (publisher, broker and subscriber share the
// cores); "drain": the broker first queues the N messages for the subscriber's offline persistent
// session, then the subscriber comes back. Either way the rate is from its first stored (or
// received) message to the last. The gateway's progress is read from its buffer's own counter
// (LMDB meta next_seq, buffer/FORMAT.md), polled every 2 ms, so the HTTP snapshot interval does
// not blur it. Variants: durability os / fsync, [mqtt] sessions (worker processes on a shared
// subscription). The gateway forwards to an embedded Kafka meanwhile, as it would in production.
// Rounds (--repeat) run the baseline and every variant in turn; the summary compares medians.
//
//   bench-ingest [--messages N] [--sessions 1,16,32] [--durability os,fsync] [--method live,drain]
//                [--repeat R] [--quick] [--decode-only]
// First, in process: the decode rate of each mapped source's preset against native JSON
// (ingest/bench_decode.h).
//   bench-ingest --floor-subscriber URL
// Only the do-nothing Paho subscriber, as a process of its own (the same client, session and
// subscription as the baseline), until SIGTERM or SIGINT: the floor tests/bench/box.sh measures the
// gateway's process against.
// Needs mosquitto (toolchains/setup.sh) and the edge-gateway and firmware-sim binaries of this build.
#include <lmdb.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <map>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "ingest/bench_decode.h"
#include "tests/support/support.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr auto kTimeout = std::chrono::seconds(300);
int g_inflight = 10;  // --publisher-inflight

// GET http://127.0.0.1:port/status as JSON (null on any failure).
nlohmann::json get_status(int port) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  try {
    boost::asio::io_context io;
    boost::asio::ip::tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.connect(resolver.resolve("127.0.0.1", std::to_string(port)));
    http::request<http::empty_body> req{http::verb::get, "/status", 11};
    req.set(http::field::host, "127.0.0.1");
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(stream, buffer, res);
    return nlohmann::json::parse(res.body());
  } catch (const std::exception&) {
    return nullptr;
  }
}

// The buffer's next sequence minus one (records ever stored), read from LMDB directly.
std::uint64_t stored_in(const fs::path& buffer_dir) {
  if (!fs::exists(buffer_dir / "data.mdb")) return 0;
  MDB_env* env = nullptr;
  if (mdb_env_create(&env) != 0) return 0;
  std::uint64_t out = 0;
  mdb_env_set_maxdbs(env, 32);
  if (mdb_env_open(env, buffer_dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0640) == 0) {
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) == 0) {
      MDB_dbi meta;
      if (mdb_dbi_open(txn, "meta", 0, &meta) == 0) {
        MDB_val key{8, const_cast<char*>("next_seq")}, val;
        if (mdb_get(txn, meta, &key, &val) == 0 && val.mv_size >= 9) {
          const auto* p = static_cast<const std::uint8_t*>(val.mv_data);
          std::uint64_t v = 0;
          for (int i = 8; i >= 1; --i) v = (v << 8) | p[i];
          out = v > 0 ? v - 1 : 0;
        }
      }
      mdb_txn_abort(txn);
    }
  }
  mdb_env_close(env);
  return out;
}

struct Result {
  double rate = 0;        // messages/s from the first to the last
  std::uint64_t got = 0;  // messages counted
  double cpu_us_per_msg = 0;  // CPU time (user + system) of the subscriber's processes per message
  double worker_cpu_us_per_msg = 0;  // the part of it spent in ingest worker processes
  double records_per_commit = 0;     // gateway: appended records per append transaction (0: not known)
  std::uint64_t other_commits = 0;   // gateway: its other write transactions (acks, trims, windowing)
};

struct Cpu {
  double total = 0, children = 0;  // seconds (user + system)
};

// CPU seconds of process `pid` and its direct children (ingest workers).
Cpu cpu_seconds_of_tree(pid_t pid) {
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  auto stat_of = [&](const fs::path& p, pid_t& ppid) -> double {
    std::ifstream in(p / "stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream rest(text.substr(close + 2));
    std::string field;
    std::vector<std::string> f;
    while (rest >> field) f.push_back(field);
    if (f.size() < 13) return 0;
    ppid = static_cast<pid_t>(std::stol(f[1]));
    return (std::stod(f[11]) + std::stod(f[12])) / tick;  // utime, stime (fields 14, 15)
  };
  Cpu total;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t ppid = 0;
    const double cpu = stat_of(entry.path(), ppid);
    if (std::stol(name) == pid || ppid == pid) total.total += cpu;
    if (ppid == pid) total.children += cpu;
  }
  return total;
}

Cpu self_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return {static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
              static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6,
          0};
}

// firmware-sim publishing n messages (1000 devices x n/1000) at QoS 1, unpaced.
std::unique_ptr<gw::test::ChildProcess> start_publisher(const fs::path& sim, const std::string& url, std::uint64_t n,
                                                        const fs::path& dir) {
  const std::uint64_t devices = 1000;
  return std::make_unique<gw::test::ChildProcess>(
      std::vector<std::string>{sim.string(), "publish", "--broker", url, "--devices", std::to_string(devices),
                               "--count", std::to_string(n / devices), "--rate", "0", "--qos", "1", "--max-inflight", std::to_string(g_inflight), "--client-id",
                               "bench-publisher"},
      dir / "publish.out");
}

void wait_publisher(gw::test::ChildProcess& p) {
  if (p.wait(kTimeout).value_or(-1) != 0) throw std::runtime_error("firmware-sim publish failed");
}

void publish(const fs::path& sim, const std::string& url, std::uint64_t n, const fs::path& dir) {
  wait_publisher(*start_publisher(sim, url, n, dir));
}

// Waits until `count()` reaches n; the rate from the first counted message to the last.
template <typename Count, typename CpuFn>
Result time_drain(std::uint64_t n, Count count, CpuFn cpu) {
  const auto deadline = Clock::now() + kTimeout;
  std::uint64_t c0 = 0;
  Clock::time_point t0{};
  Cpu cpu0;
  Result r;
  while (Clock::now() < deadline) {
    r.got = count();
    if (c0 == 0 && r.got > 0) {
      c0 = r.got;
      t0 = Clock::now();
      cpu0 = cpu();
    }
    if (r.got >= n) {
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      r.rate = s > 0 ? static_cast<double>(n - c0) / s : 0;
      if (n > c0) {
        const Cpu cpu1 = cpu();
        r.cpu_us_per_msg = (cpu1.total - cpu0.total) * 1e6 / static_cast<double>(n - c0);
        r.worker_cpu_us_per_msg = (cpu1.children - cpu0.children) * 1e6 / static_cast<double>(n - c0);
      }
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  throw std::runtime_error("timed out: " + std::to_string(r.got) + " of " + std::to_string(n));
}

// How the messages reach the subscriber: `live`, published while it is connected (publisher,
// broker and subscriber share the cores, as in production and in the orientation figures);
// `drain`, queued by the broker for its offline session first, then delivered as fast as it takes
// them (the publisher is idle meanwhile, so the ceiling is higher).
enum class Method { live, drain };

// The baseline: a Paho subscriber in callback mode that only counts.
Result baseline(Method method, const std::string& url, const fs::path& sim, std::uint64_t n, const fs::path& dir) {
  std::atomic<std::uint64_t> received{0};
  mqtt::async_client client(url, "bench-baseline", mqtt::create_options(MQTTVERSION_3_1_1));
  client.set_message_callback([&](mqtt::const_message_ptr) { received.fetch_add(1, std::memory_order_relaxed); });
  auto opts = mqtt::connect_options_builder().clean_session(false).finalize();
  client.connect(opts)->wait();
  client.subscribe("devices/+/telemetry", 1)->wait();
  std::unique_ptr<gw::test::ChildProcess> publisher;
  if (method == Method::drain) {
    client.disconnect()->wait();
    publish(sim, url, n, dir);
    received = 0;
    client.connect(opts)->wait();
  } else {
    publisher = start_publisher(sim, url, n, dir);
  }
  Result r = time_drain(n, [&] { return received.load(); }, [] { return self_cpu_seconds(); });
  if (publisher) wait_publisher(*publisher);
  client.disconnect()->wait();
  return r;
}

// The baseline as a process of its own: subscribed until SIGTERM or SIGINT, then prints the count.
int floor_subscriber(const std::string& url) {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before Paho starts its threads, which inherit it
  std::atomic<std::uint64_t> received{0};
  mqtt::async_client client(url, "bench-floor-subscriber", mqtt::create_options(MQTTVERSION_3_1_1));
  client.set_message_callback([&](mqtt::const_message_ptr) { received.fetch_add(1, std::memory_order_relaxed); });
  client.connect(mqtt::connect_options_builder().clean_session(false).finalize())->wait();
  client.subscribe("devices/+/telemetry", 1)->wait();
  std::printf("subscribed\n");
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop, &signal);
  client.disconnect()->wait();
  std::printf("received=%llu\n", static_cast<unsigned long long>(received.load()));
  return 0;
}

// The gateway with a durability and a number of sessions.
Result gateway(Method method, const std::string& url, const fs::path& exe, const fs::path& sim, std::uint64_t n,
               const std::string& durability, int sessions, const fs::path& dir) {
  const int http = gw::test::free_port();
  const fs::path conf = dir / "gateway.toml";
  {
    std::ofstream out(conf);
    out << "gateway_id = \"bench\"\nlog_level = \"warn\"\n[mqtt]\nurl = \"" << url
        << "\"\nclient_id = \"bench-gateway\"\nsessions = " << sessions << "\n[buffer]\npath = \""
        << (dir / "buffer").string() << "\"\ndurability = \"" << durability
        << "\"\n[uplink.kafka]\nbrokers = \"embedded\"\n[http]\nlisten = \"127.0.0.1:" << http << "\"\n";
  }
  auto start = [&] {
    auto gw = std::make_unique<gw::test::ChildProcess>(std::vector<std::string>{exe.string(), "--config", conf.string()},
                                                       std::nullopt, std::chrono::seconds(20));
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    for (;;) {
      auto s = get_status(http);
      if (s.is_object() && s.contains("ingest") && s["ingest"].value("subscribed", false)) break;
      if (Clock::now() > deadline) throw std::runtime_error("gateway never subscribed");
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return gw;
  };
  std::unique_ptr<gw::test::ChildProcess> publisher;
  if (method == Method::drain) {
    start();  // creates the sessions, then goes away (SIGTERM: a clean disconnect)
    publish(sim, url, n, dir);
  }
  auto gw = method == Method::drain
                ? std::make_unique<gw::test::ChildProcess>(
                      std::vector<std::string>{exe.string(), "--config", conf.string()}, std::nullopt,
                      std::chrono::seconds(20))
                : start();
  if (method == Method::live) publisher = start_publisher(sim, url, n, dir);
  Result r = time_drain(n, [&] { return stored_in(dir / "buffer"); }, [&] { return cpu_seconds_of_tree(gw->pid()); });
  if (publisher) wait_publisher(*publisher);
  if (auto s = get_status(http); s.is_object() && s.contains("buffer")) {
    const auto commits = s["buffer"].value("append_commits_total", std::uint64_t{0});
    if (commits > 0) r.records_per_commit = static_cast<double>(s["buffer"].value("appended_total", std::uint64_t{0})) / commits;
    r.other_commits = s["buffer"].value("commits_total", std::uint64_t{0}) - commits;
  }
  return r;
}

// The run with the median rate (its CPU and commit figures with it).
Result median(std::vector<Result> runs) {
  std::sort(runs.begin(), runs.end(), [](const Result& a, const Result& b) { return a.rate < b.rate; });
  return runs[runs.size() / 2];
}

void print_gateway(const std::string& method, const std::string& label, const std::string& mode, int sessions,
                   const Result& r, double base) {
  std::printf(
      "%-5s %-7s gateway durability %-5s sessions %2d              %9.0f msgs/s  RATIO %.2f  cpu %6.1f us/msg "
      "(workers %.1f)  %.1f records/commit, %llu other commits\n",
      method.c_str(), label.c_str(), mode.c_str(), sessions, r.rate, base > 0 ? r.rate / base : 0.0,
      r.cpu_us_per_msg, r.worker_cpu_us_per_msg, r.records_per_commit,
      static_cast<unsigned long long>(r.other_commits));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"bench-ingest: MQTT messages into the buffer per second, against a do-nothing Paho subscriber"};
  std::uint64_t messages = 60000;
  std::vector<int> sessions{1, 4, 16};
  std::vector<std::string> modes{"os", "fsync"};
  std::vector<std::string> methods{"live", "drain"};
  bool quick = false, decode_only = false;
  int repeat = 1;
  std::string floor_url;
  cli.add_option("--messages", messages, "Messages per run (at most 100000: the test broker's queue)");
  cli.add_option("--sessions", sessions, "Session counts to run (os and fsync)")->delimiter(',');
  cli.add_option("--durability", modes, "Durability modes to run (os, fsync)")->delimiter(',');
  cli.add_option("--method", methods, "live (published while the subscriber runs), drain (queued first)")
      ->delimiter(',')
      ->check(CLI::IsMember({"live", "drain"}));
  cli.add_option("--publisher-inflight", g_inflight, "firmware-sim's window of unacknowledged publishes");
  cli.add_option("--repeat", repeat, "Rounds (baseline and every variant each); medians are compared")
      ->check(CLI::Range(1, 15));
  cli.add_flag("--quick", quick, "10,000 messages, sessions 1 and 4");
  cli.add_flag("--decode-only", decode_only, "Only the in-process decode rates per source format");
  cli.add_option("--floor-subscriber", floor_url,
                 "Only run the do-nothing Paho subscriber against this broker until SIGTERM (bench-box's floor)");
  CLI11_PARSE(cli, argc, argv);
  if (!floor_url.empty()) {
    try {
      return floor_subscriber(floor_url);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench-ingest: %s\n", e.what());
      return 1;
    }
  }
  if (int rc = gw::ingest::bench_decode(quick ? 0.3 : 1.0, quick ? 2 : 3); rc != 0 || decode_only) return rc;
  if (quick) {
    messages = 10000;
    sessions = {1, 4};
  }
  messages = std::min<std::uint64_t>(messages / 1000 * 1000, 100000);
  const fs::path here = fs::read_symlink("/proc/self/exe").parent_path();
  const fs::path exe = here / ".." / "gateway" / "edge-gateway";
  const fs::path sim = here / ".." / "firmware-sim" / "firmware-sim";
  std::signal(SIGPIPE, SIG_IGN);

  try {
    std::printf("bench-ingest: %llu messages per run (1000 devices), QoS 1, mosquitto on loopback, 2 ms polling, "
                "%d round(s)\n",
                static_cast<unsigned long long>(messages), repeat);
    for (const auto& name : methods) {
      const Method method = name == "live" ? Method::live : Method::drain;
      // Rounds alternate the baseline and every gateway variant, so that a slow spell of this shared
      // machine touches all of them; the summary compares medians.
      std::vector<Result> base_runs;
      std::map<std::pair<std::string, int>, std::vector<Result>> runs;
      for (int round = 1; round <= repeat; ++round) {
        {
          gw::test::Mosquitto broker;
          gw::test::TempDir dir;
          const Result b = baseline(method, broker.url(), sim, messages, dir.path());
          base_runs.push_back(b);
          std::printf("%-5s round %d baseline do-nothing Paho subscriber (1 session)  %9.0f msgs/s              cpu "
                      "%6.1f us/msg\n",
                      name.c_str(), round, b.rate, b.cpu_us_per_msg);
          std::fflush(stdout);
        }
        for (const auto& mode : modes) {
          for (int s : sessions) {
            gw::test::Mosquitto broker;  // a fresh broker per run: no queue left over
            gw::test::TempDir dir;
            const Result r = gateway(method, broker.url(), exe, sim, messages, mode, s, dir.path());
            runs[{mode, s}].push_back(r);
            print_gateway(name, "round " + std::to_string(round), mode, s, r, base_runs.back().rate);
          }
        }
      }
      if (repeat > 1) {
        const Result b = median(base_runs);
        std::printf("%-5s MEDIAN  baseline do-nothing Paho subscriber (1 session)  %9.0f msgs/s              cpu "
                    "%6.1f us/msg\n",
                    name.c_str(), b.rate, b.cpu_us_per_msg);
        for (const auto& mode : modes) {
          for (int s : sessions) print_gateway(name, "MEDIAN ", mode, s, median(runs[{mode, s}]), b.rate);
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-ingest: %s\n", e.what());
    return 1;
  }
  return 0;
}
