// A sink's two send budgets, shared by the Kafka and Pulsar sinks: `max_bytes_per_s` caps the
// compressed bytes sent per second (metered links; bursts of one second's budget, a batch may
// leave a debt that the next waits out), and `drain_max_records_per_s` caps the records read per
// second only while a backlog waits (more than two full batches behind the buffer's head), so that
// draining after an outage leaves CPU and disk to ingest; live traffic below it is never held back.
// 0 turns either off.
//
// Thread-safety: one sink thread.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace gw::uplink {

class SendPacing {
 public:
  using Clock = std::chrono::steady_clock;

  SendPacing(std::uint64_t max_bytes_per_s, std::uint64_t drain_max_records_per_s)
      : bytes_rate_(static_cast<double>(max_bytes_per_s)),
        drain_rate_(static_cast<double>(drain_max_records_per_s)),
        bytes_(bytes_rate_),
        drain_(drain_rate_) {}

  // Refills the byte budget; true when a batch may be sent.
  bool bytes_ok() {
    if (bytes_rate_ == 0) return true;
    refill(bytes_, bytes_rate_, bytes_refilled_);
    return bytes_ >= 0;
  }

  // Refills the drain budget; true when a batch may be read (always, without a backlog).
  bool drain_ok(bool backlog) {
    if (drain_rate_ == 0) return true;
    refill(drain_, drain_rate_, drain_refilled_);
    return drain_ >= 0 || !backlog;
  }

  // A batch of `bytes` compressed bytes covering `records` buffer records was sent; the drain
  // budget is spent only while a backlog waits.
  void spend(std::uint64_t bytes, std::uint64_t records, bool backlog) {
    bytes_ -= static_cast<double>(bytes);
    if (backlog) drain_ -= static_cast<double>(records);
  }

 private:
  static void refill(double& tokens, double rate, Clock::time_point& refilled) {
    const auto now = Clock::now();
    tokens = std::min(rate, tokens + rate * std::chrono::duration<double>(now - refilled).count());
    refilled = now;
  }

  double bytes_rate_, drain_rate_;
  double bytes_, drain_;  // may go negative: the debt of the last batch
  Clock::time_point bytes_refilled_ = Clock::now(), drain_refilled_ = Clock::now();
};

}  // namespace gw::uplink
