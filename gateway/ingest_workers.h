// Multi-process ingest ([mqtt] sessions > 1): the gateway runs that many ingest worker processes
// (this same executable with --ingest-worker), each with its own Paho runtime and MQTT session on a
// shared subscription ($share/<client_id>/<filter>), and serves their records over local IPC
// (ingest/ipc.h) against the one buffer writer of this process. See README "Ingest".
//
// Supervision: a worker that exits or dies is restarted with the same index (so the same client id
// and broker session) after a backoff; what it had not acknowledged the broker redelivers. Workers
// get SIGKILL if the gateway dies (PR_SET_PDEATHSIG), so no orphan holds a session.
//
// Thread-safety: start()/stop() from the owning thread; stats() and workers() from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "ingest/mqtt_source.h"
#include "ingest/store.h"

namespace gw::gateway {

struct IngestWorkersOptions {
  int sessions = 2;              // worker processes (>= 1)
  std::string executable;        // the edge-gateway binary (default: /proc/self/exe)
  std::string config_path;       // passed to each worker (--config)
  std::chrono::milliseconds restart_min{200};   // first restart delay after a worker died
  std::chrono::milliseconds restart_max{10000}; // doubles up to this while workers keep dying quickly
  std::chrono::milliseconds stop_timeout{15000};  // SIGTERM, then SIGKILL after this
  std::chrono::microseconds gather_wait{0};       // ingest::IpcHub: group commit of the workers' records
};

struct IngestWorkerState {
  int index = 0;              // 1..sessions (client id suffix)
  pid_t pid = 0;              // 0 while not running
  std::uint64_t starts = 0;   // times started
  std::string last_exit;      // e.g. "killed by signal 9", empty if it never exited
  ingest::MqttStats stats;    // as last reported by the worker (counts since its last start)
};

class IngestWorkers {
 public:
  // Spawns the workers. `store` (the gateway's local store) must outlive stop().
  [[nodiscard]] static std::expected<std::unique_ptr<IngestWorkers>, std::string> start(IngestWorkersOptions options,
                                                                                      ingest::EventStore& store);
  virtual ~IngestWorkers() = default;
  // SIGTERM to every worker (they disconnect cleanly), waits up to stop_timeout, then SIGKILL.
  virtual void stop() = 0;
  // Totals over all workers, including what earlier runs of restarted workers reported.
  virtual ingest::MqttStats stats() const = 0;
  virtual std::vector<IngestWorkerState> workers() const = 0;
};

// The options a worker runs its MQTT source with: client id "<client_id>-<index>" and every topic
// filter as a shared subscription of the group named after the gateway's client id.
ingest::MqttOptions worker_mqtt_options(const ingest::MqttOptions& gateway, int index);

}  // namespace gw::gateway
