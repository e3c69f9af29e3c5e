// Per-source duplicate detection for append(): what one source (a device) has sent recently, kept
// by the ring in LMDB in the same transaction as the records, so that a record and its "seen" mark
// are committed together and survive restarts together.
//
// The identity of a reading is (source, epoch, seq): the epoch is the device's boot id (0 = it has
// none), seq its own counter, `seq_bits` wide (it wraps: 2^B - 1 is followed by 0). The cases real
// devices produce and what happens to each are in device-sequences.md (the product's design
// documents); each rule below names its row there.
//
// Each epoch ("generation") keeps
// - its highest seq L (the counter's value, and its position on an unwrapped line, so that wraps and
//   gaps are plain arithmetic), the event time of L (tL) and of the generation's first reading (tR);
// - a window of W slots: slot (position % W) holds a 32-bit digest of the values (metrics, tags;
//   not the time) of the reading at that position, for the W positions up to L. A second copy of a
//   seen identity is a duplicate when its digest is equal, a conflict when it is not. The digest is
//   the caller's (ingest computes it from the decoded values); comparing 4 bytes keeps the check
//   cheap and the stored window small (about 8 x W bytes per source). Two different readings with
//   equal digests (probability 2^-32 per pair) would be taken for a duplicate;
// - the ranges of every position seen in the generation (at most 32 ranges; the oldest forgotten):
//   with a boot id, a copy behind the window is still recognised (a duplicate; its values are no
//   longer known, so it is never a conflict).
// Two generations are kept (the current and the previous), so late copies from before a reboot are
// judged against the generation they belong to (rows 8, 11).
//
// Decisions where device-sequences.md says "decide":
// - Rows 9 and 10 (no boot id; seq behind L by W or more), in this order:
//   1. a reading this generation saw (its ranges know it) with a time not newer than tL is a late
//      copy: a duplicate;
//   2. a time newer than tL is a reboot: the counter went back while the clock went on (a rebooted
//      device's first reading is newer than everything it sent before);
//   3. a reading never seen, with a time in [tL - T, tL], is a late reading the window no longer
//      judges: stored in the current generation, counted as `unknown` (at-least-once);
//   4. older than that: `stale`, kept by the caller as a dead letter (`stale_sequence`) instead of
//      being stored twice or dropped silently.
//   Why not "behind by W and time >= tL - T is a reboot", as the table has it: late readings behind
//   the window are what the gateway's own ingest produces (with several sessions, a worker that
//   dies leaves its unacknowledged messages to be redelivered after its sibling stored newer
//   readings of the same device, often more than W of them), and so do store-and-forward radio
//   gateways. Taken for a reboot, such a reading starts a generation at an old seq, and every later
//   copy of a reading of the old generation is then judged against the wrong one and stored twice:
//   e2e.ingest_kill (20 kills, 2 sessions) stored 9-15 readings twice that way. T is therefore how
//   far back a late reading behind the window may be and still be stored. The price: a device whose
//   clock steps back at a reboot has that reboot recognised only once its time passes tL; until
//   then its readings are stored as late ones (never seen) or dropped as copies (a number the old
//   generation saw with an earlier time). Such a device needs a boot id.
// - Row 12 (no boot id; seq 0 while 0 is behind L within the window and was never seen): taken as a
//   late first message, stored in the current generation, and counted (`ambiguous_zero`). A reboot
//   would be the other reading; but a device whose first messages are reordered sends exactly this
//   (1, 2, then 0), and taking it for a reboot would then store every later copy of 1 and 2 again.
//   If it really was a reboot, its next numbers that the generation saw arrive with other values:
//   conflicts, kept as dead letters, so an operator sees them.
// - The window is at most 2^(B-2) wide (64 for 8-bit counters): a seq is either ahead of L (forward
//   distance below 2^(B-1)) or behind it, and a reboot without a boot id must be recognisable as
//   "behind by W or more".
// - A counter that restarts near 0 while L is near 2^B looks like a wrap (it is ahead of L): stored,
//   counted as a wrap, not as a reboot.
//
// The encoding is stored (buffer/FORMAT.md, "dedup"); it carries a version.
//
// Thread-safety: a DedupWindow is a value; the ring uses it under its write lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace gw::buffer {

struct DedupOptions {
  std::uint32_t window = 64;  // W: slots per generation (8..65536; at most 2^(seq_bits-2))
  std::uint8_t seq_bits = 64;  // B: the devices' counter width, 8, 16, 32 or 64
  // T: a reading without boot id that is behind the window, never seen and not newer than tL is
  // stored if its time is not older than tL by more than this; older, it is `stale`.
  std::chrono::milliseconds reboot_time_bound{10'000};
};

// One reading's identity and what the window needs to judge it.
struct Reading {
  std::uint64_t epoch = 0;    // boot id; 0 = none
  std::uint64_t seq = 0;      // the device's counter (only its low seq_bits bits count)
  std::int64_t time_ms = 0;   // event time
  std::uint32_t digest = 0;   // of the values; 0 or 1 = not known (any seen copy is then a duplicate)
};

enum class DedupVerdict {
  store,        // not seen: store it
  duplicate,    // the same identity with the same values was stored before: drop it
  conflicting,  // the same identity with other values was stored before: drop it, keep it as a dead letter
  stale,        // no boot id, behind the window and older than a reboot could be: a dead letter
};

struct DedupDecision {
  DedupVerdict verdict = DedupVerdict::store;
  bool reboot = false;          // it starts a new generation (new boot id, or a recognised reboot)
  bool wrapped = false;         // it moved L across 2^B - 1 -> 0
  std::uint64_t gap = 0;        // numbers it skipped ahead of L (lost, or still to come late)
  bool late = false;            // stored behind L (reordered or late)
  bool unknown = false;         // stored behind the window, not known as seen (at-least-once)
  bool ambiguous_zero = false;  // row 12: seq 0 taken as a late first message
};

class DedupWindow {
 public:
  // An empty window (options.window clamped to 8..65536 and to 2^(seq_bits-2)).
  explicit DedupWindow(const DedupOptions& options);

  // Decides about the reading and records it unless it is dropped.
  DedupDecision admit(const Reading& r);

  // Stored form (FORMAT.md). decode() returns nullopt for bytes of an unknown version or shape; the
  // window size is the stored one, the counter width options' (the stored one if the window is
  // wider than options' width allows), the time bound options'.
  std::vector<std::uint8_t> encode() const;
  static std::optional<DedupWindow> decode(std::span<const std::uint8_t> bytes, const DedupOptions& options);

  std::uint32_t window() const { return window_; }
  std::uint8_t seq_bits() const { return bits_; }

 private:
  struct Generation {
    bool used = false;
    std::uint64_t epoch = 0;
    std::uint64_t high = 0;      // L, the counter's value
    std::uint64_t high_pos = 0;  // L's position on the unwrapped line
    std::int64_t high_time = 0;  // tL
    std::int64_t start_time = 0; // tR, the event time of the generation's first reading
    // Every position seen in this generation, as sorted disjoint ranges [first, last]; at most
    // kMaxRanges (the oldest range is forgotten beyond).
    std::vector<std::pair<std::uint64_t, std::uint64_t>> seen;
    std::vector<std::uint32_t> slots;  // digest of the reading at position p at p % window; 0 = empty
  };
  struct Place {  // where a seq lies relative to a generation's L
    bool ahead = false;
    std::uint64_t distance = 0;  // ahead: forward distance (>= 1); behind: backward distance (>= 0)
  };
  Place place(const Generation& g, std::uint64_t seq) const;
  std::uint32_t slot(const Generation& g, std::uint64_t behind) const;
  void start(Generation& g, const Reading& r);
  DedupDecision judge(Generation& g, const Reading& r, Place p);
  void advance(Generation& g, const Reading& r, std::uint64_t distance, DedupDecision& d);
  void mark(Generation& g, std::uint64_t pos, std::uint32_t digest);

  std::uint32_t window_;
  std::uint8_t bits_;
  std::int64_t reboot_bound_ms_;
  Generation cur_, prev_;
};

}  // namespace gw::buffer
