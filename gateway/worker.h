// The ingest worker process (edge-gateway --ingest-worker N): one MQTT session on the gateway's
// shared subscription, storing through the gateway over IPC (gateway/ingest_workers.h).
#pragma once

#include "gateway/config.h"

namespace gw::gateway {

// Runs until SIGTERM/SIGINT or until the gateway closes the IPC connection; returns the exit code.
// `ipc_fd` is the worker's end of the socketpair made by the gateway.
int run_ingest_worker(const Config& config, int index, int ipc_fd);

}  // namespace gw::gateway
