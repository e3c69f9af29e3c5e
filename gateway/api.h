// The HTTP API of the gateway: routing and query parameters of every path (README, "HTTP API").
// It reads only what its sources give it: the latest published snapshot, aggregate queries on the
// windowing stage's store (short lock), dead-letter reads (LMDB read transactions). So a request
// never waits for ingest, and ingest never waits for a request. The bearer token and the transport
// limits are the server's (gateway/http_server.h); the API sees only authorised requests.
//
// Thread-safety: handle() is called on the HTTP server's thread; the sources must be callable from
// it while the gateway runs.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gateway/http_server.h"
#include "gateway/status.h"
#include "ingest/dead_letters.h"
#include "windowing/stage.h"

namespace gw::gateway {

// One published status: the snapshot and its renderings, made once by the publisher and shared by
// every request until the next one.
struct PublishedStatus {
  Snapshot snapshot;
  std::string status_json;
  std::string metrics_text;
};

struct ApiSources {
  // The latest published status; never null once the API serves.
  std::function<std::shared_ptr<const PublishedStatus>()> status;
  // Closed aggregates matching the query, newest first.
  std::function<std::vector<windowing::Aggregate>(const windowing::Query&)> aggregates;
  // Late events, newest first (at most limit, with an id below `before` if given); unset: /late
  // answers 503.
  std::function<std::vector<windowing::LateEvent>(std::size_t limit, std::optional<std::uint64_t> before)> late;
  // Dead letters, newest first; unset: /dlq answers 503 (the store is not open).
  std::function<std::vector<ingest::DeadLetter>(std::optional<ingest::errc>, std::size_t)> dead_letters;
};

// Answers GET (and HEAD) on: / (status page), /healthz, /readyz, /metrics, /status, /aggregates,
// /devices, /dlq, /late. Unknown paths 404, other methods 405, unknown or malformed query parameters 400
// with a message that names the parameter.
HttpResponse handle_api(const ApiSources& sources, const HttpRequest& request);

// The paths served without the bearer token: /healthz (liveness probes), and / (the status page:
// static HTML and script, no data; its script fetches the data with the token).
std::vector<std::string> api_open_paths();

}  // namespace gw::gateway
