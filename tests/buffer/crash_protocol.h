// The report stream from buffer_crash_child to the crash test (tests/buffer/crash_test.cc): each
// message is one write() of at most PIPE_BUF bytes, so a SIGKILL never leaves half a message.
// Both ends run on the same machine: host byte order.
#pragma once

#include <cstdint>
#include <span>

namespace gw::buffer::crash {

enum Kind : std::uint32_t {
  kAppended = 1,  // `count` RecordReport entries follow: an append() returned them
  kAcked = 2,     // one AckReport follows: ack() returned
};

struct Header {
  std::uint32_t kind;
  std::uint32_t count;
};

struct RecordReport {
  std::uint64_t seq;
  std::uint64_t hash;  // fnv1a(payload)
  std::uint32_t size;
  std::uint32_t pad;
};

struct AckReport {
  std::uint32_t cursor;  // index into kCursors
  std::uint32_t pad;
  std::uint64_t upto;
};

inline constexpr const char* kCursors[] = {"a", "b"};
inline constexpr std::uint32_t kMaxBatch = 40;  // 8 + 40 * 24 bytes < PIPE_BUF

inline std::uint64_t fnv1a(std::span<const std::uint8_t> bytes) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::uint8_t b : bytes) {
    h ^= b;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace gw::buffer::crash
