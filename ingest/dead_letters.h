// The dead-letter store: every message ingest rejects (malformed, unsupported version, missing
// fields, bad values, oversize, bad timestamp) is kept here with its reason, topic, receive time and
// the first bytes of its payload, so an operator can see what was refused and why. Bounded by
// entry count (the oldest are evicted and counted); counters per reason survive restarts.
// Bytes on disk: ingest/FORMAT.md.
//
// Thread-safety: every member may be called from any thread (writes are serialised).
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "ingest/event.h"

namespace gw::ingest {

struct DeadLetterOptions {
  std::string path;                   // directory of its LMDB environment (created if missing)
  std::size_t max_entries = 10000;    // beyond this the oldest entry is evicted (counted)
  std::size_t max_raw_bytes = 1024;   // payload bytes kept per entry (the original size is kept too)
  std::uint64_t map_bytes = 64u << 20;  // LMDB map size; max_entries * (max_raw_bytes + ~300) must fit
};

struct DeadLetter {
  std::uint64_t id = 0;             // increasing, never reused
  std::int64_t received_ms = 0;     // gateway clock
  std::string topic;
  errc reason = errc::malformed;
  std::uint32_t size = 0;           // the payload's original size
  std::vector<std::uint8_t> raw;    // its first max_raw_bytes bytes
  std::string detail;               // what failed, when known (a mapping's path); empty otherwise
};

struct DeadLetterStats {
  std::uint64_t entries = 0;        // stored now
  std::uint64_t stored_total = 0;   // ever stored (persistent)
  std::uint64_t evicted_total = 0;  // evicted to respect max_entries (persistent)
  std::map<errc, std::uint64_t> by_reason;  // ever stored, per reason (persistent)
};

class DeadLetters {
 public:
  [[nodiscard]] static std::expected<std::unique_ptr<DeadLetters>, std::error_code> open(const DeadLetterOptions& options);
  virtual ~DeadLetters() = default;

  // Stores one rejected message durably (synced) before returning; `detail` says what failed (at
  // most 1024 bytes kept).
  [[nodiscard]] virtual std::expected<void, std::error_code> add(std::string_view topic, errc reason,
                                                                 std::span<const std::uint8_t> payload,
                                                                 std::int64_t received_ms,
                                                                 std::string_view detail = {}) = 0;
  // Newest first; only `reason` if given; at most `limit`.
  virtual std::vector<DeadLetter> list(std::optional<errc> reason, std::size_t limit) const = 0;
  virtual DeadLetterStats stats() const = 0;
};

// Every reason a dead letter can have.
inline constexpr std::array kDeadLetterReasons = {errc::malformed,    errc::unsupported_version,   errc::missing_field,
                                                  errc::bad_value,    errc::oversize,              errc::bad_timestamp,
                                                  errc::conflicting_duplicate, errc::stale_sequence,
                                                  errc::mapping};

// Stable names of the reasons ("malformed", "unsupported_version", "missing_field", "bad_value",
// "oversize", "bad_timestamp", "conflicting_duplicate", "stale_sequence", "mapping"), used in the HTTP API and
// metrics.
std::string_view reason_name(errc reason) noexcept;
std::optional<errc> reason_from_name(std::string_view name) noexcept;

}  // namespace gw::ingest
