// run_ingest_worker (gateway/worker.h). SIGTERM/SIGINT are blocked and taken by sigtimedwait() on
// the main thread, which also reports the source's stats to the gateway every 500 ms.
#include "gateway/worker.h"

#include <signal.h>

#include <spdlog/spdlog.h>

#include "gateway/ingest_workers.h"
#include "ingest/ipc.h"

namespace gw::gateway {

int run_ingest_worker(const Config& config, int index, int ipc_fd) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts

  ingest::IpcStore store(ipc_fd);
  auto options = worker_mqtt_options(config.mqtt, index);
  auto source = ingest::MqttSource::create(options, store);
  if (!source) {
    spdlog::error("ingest worker {}: {}", index, source.error().message());
    return 1;
  }
  spdlog::info("ingest worker {}: client id {}, topics {}", index, options.client_id, fmt::join(options.topics, ", "));
  (*source)->start();
  const timespec tick{0, 500'000'000};
  int exit_code = 0;
  for (;;) {
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGINT || sig == SIGTERM) break;
    if (!store.send_stats((*source)->stats())) {
      spdlog::error("ingest worker {}: the gateway closed the connection; exiting", index);
      exit_code = 1;
      break;
    }
  }
  (*source)->stop();
  (void)store.send_stats((*source)->stats());
  return exit_code;
}

}  // namespace gw::gateway
