// edge-gateway: the daemon. Parses the command line (CLI11), loads the config, runs the App until
// SIGINT or SIGTERM, then stops it gracefully. SIGINT/SIGTERM are blocked in every thread and
// taken with sigwait() here, so no stage is interrupted in the middle of a callback.
#include <malloc.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "gateway/app.h"
#include "gateway/config.h"
#include "gateway/worker.h"
#include "uplink/kafka_sink.h"

namespace {

std::string key_table_for_help() {
  std::string out = "\nConfig keys (TOML; see --help-config for descriptions):\n";
  for (const auto& k : gw::gateway::config_keys()) {
    out += "  " + k.key + " (" + k.type + ", default " + k.default_value + ")\n";
  }
  return out;
}

// The mosquitto plugin beside this binary: in the build tree (build/gateway/edge-gateway,
// build/ingest/edge_gateway_mosquitto.so), else where the package installs it.
std::string plugin_path() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  const auto dir = exe.parent_path();
  for (const auto& candidate : {dir / "../ingest/edge_gateway_mosquitto.so", dir / "../lib/edge-gateway/edge_gateway_mosquitto.so"}) {
    if (!ec && std::filesystem::exists(candidate)) return std::filesystem::weakly_canonical(candidate).string();
  }
  return "/usr/lib/edge-gateway/edge_gateway_mosquitto.so";
}

}  // namespace

int main(int argc, char** argv) {
  // glibc gives each thread that allocates an arena of its own, up to 8 per core; the gateway has
  // about 16 threads (Paho, librdkafka, the stages), each arena keeping its own free memory. Two
  // arenas: bench-box at 10,000 msg/s measured about 1 MB less anonymous RSS (6.2-6.6 -> 5.2-5.5
  // MB) at the same CPU per message (34.3-34.5 us, within the run-to-run noise).
  mallopt(M_ARENA_MAX, 2);
  CLI::App cli{"edge-gateway: MQTT -> crash-safe LMDB buffer -> windowed aggregates + zstd batches -> Kafka"};
  std::string config_path, check_path, mosquitto_path;
  bool version = false, help_config = false;
  int worker_index = 0, ipc_fd = -1;
  cli.add_option("--config", config_path, "Run with this TOML config file");
  cli.add_option("--check-config", check_path, "Validate this config file and exit (non-zero on error)");
  cli.add_flag("--version", version, "Print the version and exit");
  cli.add_flag("--help-config", help_config, "Print the config reference (Markdown) and exit");
  cli.add_option("--mosquitto-config", mosquitto_path,
                 "Print the mosquitto.conf lines this config file's ingest mode needs, and exit");
  // Internal: the gateway starts its ingest workers ([mqtt] sessions > 1) with these.
  cli.add_option("--ingest-worker", worker_index)->group("");
  cli.add_option("--ipc-fd", ipc_fd)->group("");
  cli.footer(key_table_for_help());
  CLI11_PARSE(cli, argc, argv);

  if (version) {
    std::cout << "edge-gateway " << gw::gateway::kVersion << " (librdkafka " << gw::uplink::librdkafka_version() << ")\n";
    return 0;
  }
  if (help_config) {
    std::cout << gw::gateway::config_reference_markdown();
    return 0;
  }
  if (!mosquitto_path.empty()) {
    auto config = gw::gateway::load_config(mosquitto_path);
    if (!config) {
      std::cerr << config.error().to_string() << "\n";
      return 1;
    }
    if (config->ingest_mode != gw::gateway::IngestMode::plugin) {
      std::cout << "# edge-gateway: ingest mode subscribe: mosquitto needs no line of the gateway's\n";
      return 0;
    }
    std::cout << gw::gateway::mosquitto_config(*config, plugin_path());
    return 0;
  }
  if (!check_path.empty()) {
    auto config = gw::gateway::load_config(check_path);
    if (!config) {
      std::cerr << config.error().to_string() << "\n";
      return 1;
    }
    std::cout << check_path << ": ok\n";
    return 0;
  }
  if (config_path.empty()) {
    std::cerr << "edge-gateway: --config FILE is required (see --help)\n";
    return 2;
  }
  auto config = gw::gateway::load_config(config_path);
  if (!config) {
    std::cerr << config.error().to_string() << "\n";
    return 1;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("edge-gateway"));  // stdout stays free for data
  spdlog::set_pattern(worker_index > 0 ? "%Y-%m-%dT%H:%M:%S.%e %^%l%$ [ingest-" + std::to_string(worker_index) + "] %v"
                                       : "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(config->log_level));
  if (worker_index > 0) return gw::gateway::run_ingest_worker(*config, worker_index, ipc_fd);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // inherited by every thread started below
  std::signal(SIGPIPE, SIG_IGN);

  spdlog::info("edge-gateway {} starting, gateway_id {}", gw::gateway::kVersion, config->gateway_id);
  auto app = gw::gateway::App::start(*config);
  if (!app) {
    spdlog::error("start-up failed: {}", app.error());
    return 1;
  }
  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("received {}, stopping", signal == SIGINT ? "SIGINT" : "SIGTERM");
  (*app)->stop();
  spdlog::info("stopped");
  return 0;
}
