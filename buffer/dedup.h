// Per-source duplicate detection for append(): the window of recently stored sequence numbers of
// one source (a device), kept by the ring in LMDB in the same transaction as the records, so that a
// record and its "seen" mark are committed together and survive restarts together.
//
// A source numbers its records (seq) within an epoch (a boot id). Each epoch ("generation") keeps a
// window of the last `window` sequence numbers with a fingerprint of the record's own time, so a
// duplicate is the same (epoch, seq) carrying the same time; and the ranges of every seq seen in
// the generation (a few ranges even with heavy reordering), so a redelivery older than the window
// is still recognised. Two generations are kept (the current
// one and the previous), so late redeliveries from before a reboot are still recognised.
//
// Sources without an epoch (0) that reboot start their sequence again: the ring recognises that as
// a reset when a sequence number goes backwards while the record's time goes forwards (or the slot
// holds another record), so a real reading after a reboot is never taken for a duplicate.
//
// The encoding is stored (buffer/FORMAT.md, "dedup"); it carries a version.
//
// Thread-safety: a DedupWindow is a value; the ring uses it under its write lock.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace gw::buffer {

enum class DedupVerdict {
  fresh,      // not seen: store it
  duplicate,  // the same (epoch, seq, time) was stored before: drop it
  reset,      // not seen, and it starts a new generation (new epoch, or a recognised reboot): store it
  unknown,    // older than the window of its generation and not known as seen: stored (at-least-once)
};

class DedupWindow {
 public:
  // An empty window of `window` slots per generation (at least 8).
  explicit DedupWindow(std::uint32_t window);

  // Decides about (epoch, seq, time_ms) and records it unless it is a duplicate.
  DedupVerdict admit(std::uint64_t epoch, std::uint64_t seq, std::int64_t time_ms);

  // Stored form (FORMAT.md). decode() returns nullopt for bytes of an unknown version or shape.
  std::vector<std::uint8_t> encode() const;
  static std::optional<DedupWindow> decode(std::span<const std::uint8_t> bytes);

  std::uint32_t window() const { return window_; }

 private:
  struct Generation {
    bool used = false;
    std::uint64_t epoch = 0;
    std::uint64_t high = 0;       // highest seq seen in this generation
    std::int64_t last_time = 0;   // latest record time seen in this generation
    // Every seq seen in this generation, as sorted disjoint ranges [first, last]; at most
    // kMaxRanges (the oldest range is forgotten beyond: its seqs then count as unknown).
    std::vector<std::pair<std::uint64_t, std::uint64_t>> seen;
    std::vector<std::uint32_t> slots;  // fingerprint of seq s at s % window; 0 = empty
  };
  bool contains(const Generation& g, std::uint64_t seq, std::uint32_t fp) const;
  bool slot_taken(const Generation& g, std::uint64_t seq) const;
  static bool covered(const Generation& g, std::uint64_t seq);
  static void note_seen(Generation& g, std::uint64_t seq);
  void mark(Generation& g, std::uint64_t seq, std::int64_t time_ms, std::uint32_t fp);
  void start(Generation& g, std::uint64_t epoch, std::uint64_t seq, std::int64_t time_ms, std::uint32_t fp);
  DedupVerdict admit_in(Generation& g, std::uint64_t seq, std::int64_t time_ms, std::uint32_t fp);

  std::uint32_t window_;
  Generation cur_, prev_;
};

}  // namespace gw::buffer
