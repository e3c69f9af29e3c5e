// The windowing stage (windowing/stage.h): one worker thread reads the ring, folds telemetry into
// tumbling windows and publishes closed aggregates under mutex_.
#include "windowing/stage.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <utility>

namespace gw::windowing {
namespace {

constexpr std::chrono::milliseconds kPoll{200};  // bounds how long stop() waits for the worker
constexpr std::size_t kReadRecords = 1000;
constexpr std::size_t kReadBytes = 1 << 20;

}  // namespace

Stage::Stage(Options options, buffer::Ring& ring)
    : options_(std::move(options)), ring_(ring), windows_(options_.size) {}

Stage::~Stage() { stop(); }

std::expected<void, std::error_code> Stage::start() {
  if (worker_.joinable()) {
    std::fprintf(stderr, "gw::windowing::Stage::start: the stage already runs\n");
    std::abort();
  }
  if (auto r = ring_.register_cursor(options_.cursor); !r) {
    spdlog::error("windowing: cannot register cursor '{}': {}", options_.cursor, r.error().message());
    return std::unexpected(r.error());
  }
  auto position = ring_.acked(options_.cursor);
  if (!position) return std::unexpected(position.error());
  {
    std::lock_guard lock(mutex_);
    stats_.acked = *position;
  }
  stopping_ = false;
  worker_ = std::thread([this, p = *position] { run(p); });
  spdlog::info("windowing: started (window {} ms, cursor '{}' at seq {})", options_.size.count(),
               options_.cursor, position->value);
  return {};
}

void Stage::stop() {
  if (!worker_.joinable()) return;
  {
    std::lock_guard lock(stop_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  worker_.join();
  spdlog::info("windowing: stopped");
}

void Stage::run(buffer::Seq position) {
  std::uint64_t decode_errors = 0;
  buffer::Seq acked = position;
  while (!stopping_) {
    if (!ring_.wait_for(position, kPoll)) continue;
    auto batch = ring_.read(position, kReadRecords, kReadBytes);
    if (!batch || batch->empty()) {
      if (!batch) spdlog::error("windowing: reading the buffer failed: {}", batch.error().message());
      std::unique_lock lock(stop_mutex_);
      stop_cv_.wait_for(lock, kPoll, [this] { return stopping_.load(); });
      continue;
    }
    for (const buffer::StoredRecord& record : *batch) {
      if (record.type != buffer::RecordType::telemetry) continue;
      auto event = ingest::decode_telemetry(record.payload);
      if (!event) {
        // Ingest validated the payload before storing it, so this is a bug or damage: skip it.
        ++decode_errors;
        spdlog::warn("windowing: record {} does not decode: {}", record.seq.value, event.error().message());
        continue;
      }
      windows_.add(*event);
    }
    const buffer::Seq last = batch->back().seq;
    if (auto ok = ring_.ack(options_.cursor, last); ok) {
      acked = last;
    } else {
      // The position still advances: the next successful ack covers these records too.
      spdlog::warn("windowing: ack of seq {} failed: {}", last.value, ok.error().message());
    }
    // Published after the ack, so stats().acked is never ahead of the ring's cursor.
    publish(windows_.take_closed(), acked, decode_errors);
    position = last;
  }
}

void Stage::publish(std::vector<Aggregate> closed, buffer::Seq acked, std::uint64_t decode_errors) {
  std::lock_guard lock(mutex_);
  stats_.windows_closed += closed.size();
  for (Aggregate& a : closed) results_.push_back(std::move(a));
  while (results_.size() > options_.max_results) {
    results_.pop_front();
    ++stats_.results_dropped;
  }
  stats_.events = windows_.events();
  stats_.late_events = windows_.late();
  stats_.open_windows = windows_.open_windows();
  stats_.decode_errors = decode_errors;
  stats_.acked = acked;
}

std::vector<Aggregate> Stage::query(const Query& q) const {
  std::vector<Aggregate> out;
  std::lock_guard lock(mutex_);
  for (auto it = results_.rbegin(); it != results_.rend() && out.size() < q.limit; ++it) {
    if (q.device && it->device != *q.device) continue;
    if (q.metric && it->metric != *q.metric) continue;
    if (q.from && it->window_start < *q.from) continue;
    if (q.to && it->window_start >= *q.to) continue;
    out.push_back(*it);
  }
  return out;
}

std::vector<std::string> Stage::devices() const {
  std::set<std::string> ids;
  std::lock_guard lock(mutex_);
  for (const Aggregate& a : results_) ids.insert(a.device.value);
  return {ids.begin(), ids.end()};
}

Stats Stage::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace gw::windowing
