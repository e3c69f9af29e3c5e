// Tests of the dedup window (buffer/dedup.h): each row of device-sequences.md on its own, the stored
// form (also the one written by the build before values were compared), and a property test that
// compares every decision with a brute-force reference (dedup_reference.h) over random mixes of what
// real devices send.
#include "tests/support/catch.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <random>
#include <vector>

#include "buffer/dedup.h"
#include "tests/buffer/dedup_reference.h"

namespace {

using gw::buffer::DedupDecision;
using gw::buffer::DedupOptions;
using gw::buffer::DedupVerdict;
using gw::buffer::DedupWindow;
using gw::buffer::Reading;
using std::chrono::milliseconds;

constexpr std::uint32_t kA = 0x1000, kB = 0x2000;  // two digests: "these values", "other values"

DedupVerdict verdict(DedupWindow& w, std::uint64_t epoch, std::uint64_t seq, std::int64_t t, std::uint32_t digest = kA) {
  return w.admit(Reading{epoch, seq, t, digest}).verdict;
}

}  // namespace

TEST_CASE("dedup rows 1-5: seq 0, ahead, gaps, late, re-stamped copies") {
  DedupWindow w(DedupOptions{.window = 64});
  CHECK(w.admit({0, 0, 1000, kA}).verdict == DedupVerdict::store);  // row 1: seq 0 is a number
  CHECK(verdict(w, 0, 1, 1001) == DedupVerdict::store);              // row 2
  const DedupDecision gap = w.admit({0, 5, 1005, kA});                // row 3
  CHECK(gap.verdict == DedupVerdict::store);
  CHECK(gap.gap == 3);
  const DedupDecision late = w.admit({0, 3, 1003, kA});               // row 4
  CHECK(late.verdict == DedupVerdict::store);
  CHECK(late.late);
  // Row 5: the same reading re-stamped by a base station (another time_ms) is a duplicate.
  CHECK(verdict(w, 0, 3, 4000) == DedupVerdict::duplicate);
  CHECK(verdict(w, 0, 0, 9000) == DedupVerdict::duplicate);
  CHECK(verdict(w, 0, 5, 1005) == DedupVerdict::duplicate);
  // A retransmission inside the window is never a reboot, whatever its time.
  for (std::uint64_t s = 6; s < 60; ++s) REQUIRE(verdict(w, 0, s, 1000 + static_cast<std::int64_t>(s)) == DedupVerdict::store);
  const DedupDecision copy = w.admit({0, 6, 50'000, kA});
  CHECK(copy.verdict == DedupVerdict::duplicate);
  CHECK_FALSE(copy.reboot);
}

TEST_CASE("dedup row 6: the same identity with other values is a conflict, and stays one") {
  DedupWindow w(DedupOptions{.window = 16});
  CHECK(verdict(w, 7, 10, 1000, kA) == DedupVerdict::store);
  CHECK(verdict(w, 7, 11, 1001, kA) == DedupVerdict::store);
  CHECK(verdict(w, 7, 10, 1000, kB) == DedupVerdict::conflicting);
  CHECK(verdict(w, 7, 10, 1000, kA) == DedupVerdict::duplicate);  // the stored copy's values are kept
  // Behind the window the values are gone; a seen seq is then a duplicate (with a boot id).
  for (std::uint64_t s = 12; s < 40; ++s) REQUIRE(verdict(w, 7, s, 1000 + static_cast<std::int64_t>(s)) == DedupVerdict::store);
  CHECK(verdict(w, 7, 10, 1000, kB) == DedupVerdict::duplicate);
  // A digest that is not known (0) matches anything.
  CHECK(verdict(w, 7, 39, 1039, 0) == DedupVerdict::duplicate);
}

TEST_CASE("dedup row 7: a 16-bit counter wraps - 65535 then 0 is the next number") {
  DedupWindow w(DedupOptions{.window = 64, .seq_bits = 16});
  CHECK(verdict(w, 0, 65534, 1000) == DedupVerdict::store);
  CHECK(verdict(w, 0, 65535, 1001) == DedupVerdict::store);
  const DedupDecision next = w.admit({0, 0, 1002, kA});
  CHECK(next.verdict == DedupVerdict::store);
  CHECK(next.wrapped);
  CHECK_FALSE(next.reboot);
  CHECK(next.gap == 0);
  CHECK(verdict(w, 0, 65535, 5000) == DedupVerdict::duplicate);  // behind 0 across the wrap
  CHECK(verdict(w, 0, 1, 1003) == DedupVerdict::store);
  // Only the low 16 bits count.
  CHECK(verdict(w, 0, 65536 + 1, 1003) == DedupVerdict::duplicate);
  // 8 bits: the window is at most 2^6 = 64 wide.
  DedupWindow narrow(DedupOptions{.window = 1024, .seq_bits = 8});
  CHECK(narrow.window() == 64);
  for (std::uint64_t i = 0; i < 600; ++i) {
    const DedupDecision d = narrow.admit({0, i & 0xff, 1000 + static_cast<std::int64_t>(i), static_cast<std::uint32_t>(i + 2)});
    REQUIRE(d.verdict == DedupVerdict::store);
    REQUIRE(d.wrapped == (i > 0 && (i & 0xff) == 0));
  }
}

TEST_CASE("dedup row 8: a new boot id starts a generation, the old one still judges late copies") {
  DedupWindow w(DedupOptions{.window = 64});
  CHECK(verdict(w, 111, 0, 1000) == DedupVerdict::store);
  CHECK(verdict(w, 111, 1, 1001) == DedupVerdict::store);
  const DedupDecision boot = w.admit({222, 0, 900, kB});  // even with a clock that went backwards
  CHECK(boot.verdict == DedupVerdict::store);
  CHECK(boot.reboot);
  CHECK(verdict(w, 222, 0, 900, kB) == DedupVerdict::duplicate);
  CHECK(verdict(w, 111, 1, 1001) == DedupVerdict::duplicate);  // late, from the previous boot
  CHECK(verdict(w, 111, 2, 1002) == DedupVerdict::store);      // a late one never seen
  CHECK(verdict(w, 222, 1, 901) == DedupVerdict::store);
}

TEST_CASE("dedup rows 9-11: a reboot without boot id by the counter, late and stale readings, late copies of the old generation") {
  const DedupOptions o{.window = 16, .reboot_time_bound = milliseconds(5000)};
  DedupWindow w(o);
  for (std::uint64_t s = 0; s < 100; ++s) {
    if (s == 20 || s == 30) continue;  // lost before the gateway
    REQUIRE(verdict(w, 0, s, 100'000 + 100 * static_cast<std::int64_t>(s), static_cast<std::uint32_t>(s + 2)) == DedupVerdict::store);
  }
  // tL = 109'900. Row 10: far behind, never seen, older than tL - T: neither a reboot nor judgeable.
  const DedupDecision stale = w.admit({0, 20, 102'000, 22});
  CHECK(stale.verdict == DedupVerdict::stale);
  CHECK_FALSE(stale.reboot);
  // Far behind, seen, not newer than tL: a late copy (a redelivery), not a reboot (dedup.h, row 9).
  CHECK(verdict(w, 0, 5, 100'500, 7) == DedupVerdict::duplicate);
  // Far behind, never seen, within T of tL: a late reading, stored, not a reboot (dedup.h, row 9).
  DedupWindow stepped = w;
  const DedupDecision back = stepped.admit({0, 30, 107'900, kB});
  CHECK(back.verdict == DedupVerdict::store);
  CHECK(back.unknown);
  CHECK_FALSE(back.reboot);
  // A device whose clock stepped back at a reboot is taken for copies at numbers the generation saw,
  // until its time passes tL (the documented price; such devices need a boot id).
  DedupWindow seen = w;
  CHECK(verdict(seen, 0, 0, 107'900, kB) == DedupVerdict::duplicate);
  CHECK(seen.admit({0, 1, 110'000, kB}).reboot);
  // Row 9: far behind and newer than tL: the counter restarted.
  const DedupDecision reboot = w.admit({0, 0, 110'500, kB});
  CHECK(reboot.verdict == DedupVerdict::store);
  CHECK(reboot.reboot);
  CHECK(verdict(w, 0, 1, 110'600, kB) == DedupVerdict::store);
  // Row 11: a late copy from before the reboot (time < tR) is judged against the old generation.
  CHECK(verdict(w, 0, 99, 109'900, 101) == DedupVerdict::duplicate);
  CHECK(verdict(w, 0, 98, 109'800, 7) == DedupVerdict::conflicting);
  CHECK(verdict(w, 0, 100, 110'000, kA) == DedupVerdict::store);  // its last reading, late: stored there
  CHECK(verdict(w, 0, 100, 110'000, kA) == DedupVerdict::duplicate);
  // The new generation's copies are judged in it, re-stamped or not.
  CHECK(verdict(w, 0, 1, 111'000, kB) == DedupVerdict::duplicate);
  CHECK(verdict(w, 0, 0, 110'500, kB) == DedupVerdict::duplicate);
}

TEST_CASE("dedup row 12: an unseen seq 0 within the window is a late first message, counted") {
  DedupWindow w(DedupOptions{.window = 64});
  CHECK(verdict(w, 0, 1, 1001) == DedupVerdict::store);
  CHECK(verdict(w, 0, 2, 1002) == DedupVerdict::store);
  const DedupDecision zero = w.admit({0, 0, 1000, kA});
  CHECK(zero.verdict == DedupVerdict::store);
  CHECK(zero.ambiguous_zero);
  CHECK_FALSE(zero.reboot);
  CHECK(verdict(w, 0, 0, 1000) == DedupVerdict::duplicate);
}

TEST_CASE("dedup window: the stored form round-trips and rejects other bytes") {
  DedupWindow w(DedupOptions{.window = 32, .seq_bits = 16});
  for (std::uint64_t s = 1; s < 50; s += 2) w.admit({7, s, static_cast<std::int64_t>(s) * 10, static_cast<std::uint32_t>(s + 2)});
  w.admit({8, 1, 5, kA});
  auto bytes = w.encode();
  auto back = DedupWindow::decode(bytes, DedupOptions{.seq_bits = 16});
  REQUIRE(back.has_value());
  CHECK(back->encode() == bytes);
  CHECK(back->seq_bits() == 16);
  // A changed seq_bits applies to stored windows ...
  CHECK(DedupWindow::decode(bytes, DedupOptions{})->seq_bits() == 64);
  // ... unless the stored window is wider than the new width allows (64 slots at most for 8 bits).
  DedupWindow wide(DedupOptions{.window = 256, .seq_bits = 16});
  CHECK(DedupWindow::decode(wide.encode(), DedupOptions{.seq_bits = 8})->seq_bits() == 16);
  CHECK(verdict(*back, 8, 1, 5, kA) == DedupVerdict::duplicate);
  CHECK(verdict(*back, 7, 49, 490, 51) == DedupVerdict::duplicate);
  CHECK(verdict(*back, 7, 47, 470, 1) == DedupVerdict::duplicate);  // digest not known
  CHECK(verdict(*back, 7, 48, 480) == DedupVerdict::store);
  bytes[0] = 99;
  CHECK_FALSE(DedupWindow::decode(bytes, DedupOptions{}).has_value());
  CHECK_FALSE(DedupWindow::decode(std::span<const std::uint8_t>(bytes.data(), 10), DedupOptions{}).has_value());
}

TEST_CASE("dedup window: a window stored by the build before (version 2) still recognises what it saw") {
  // Version 2 as buffer/FORMAT.md describes it: window 8; current generation used, epoch 0,
  // high 10, last time 1010, one range [1, 10], slots holding fingerprints of (seq, time);
  // previous generation empty.
  std::vector<std::uint8_t> v2{2, 8, 0, 0, 0};
  auto u64 = [&](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) v2.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  auto u32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) v2.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  v2.push_back(1);
  u64(0), u64(10), u64(1010);
  v2.push_back(1), v2.push_back(0);
  u64(1), u64(10);
  for (std::uint32_t s = 0; s < 8; ++s) u32(s == 2 ? 0 : 0xabc0 + s);  // seq 3..10 at seq % 8; seq 2 slid out
  v2.push_back(0);
  u64(0), u64(0), u64(0);
  v2.push_back(0), v2.push_back(0);
  for (int s = 0; s < 8; ++s) u32(0);
  auto w = DedupWindow::decode(v2, DedupOptions{});
  REQUIRE(w.has_value());
  CHECK(w->window() == 8);
  CHECK(verdict(*w, 0, 9, 5555, kA) == DedupVerdict::duplicate);  // values unknown then: a duplicate, not a conflict
  CHECK(verdict(*w, 0, 4, 1004, kB) == DedupVerdict::duplicate);
  CHECK(verdict(*w, 0, 11, 1011, kA) == DedupVerdict::store);
  CHECK(verdict(*w, 0, 11, 1011, kB) == DedupVerdict::conflicting);  // new readings carry digests
  // And it is written back as the current version.
  CHECK(w->encode()[0] == 3);
}

// Random mixes of what real devices send: seq from 0 or 1 or just below the wrap, gaps, reordering
// within a few places, re-stamped retransmissions, copies heard by several gateways, conflicting
// reuse, stale old copies, reboots with and without boot id, 8/16/32/64-bit counters; every
// decision of the window (restored from its stored form now and then, as after a restart) must
// equal the reference's.
TEST_CASE("dedup property: the window decides like the brute-force reference") {
  std::mt19937_64 rng(20261206);
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto pick = [&](std::uint64_t lo, std::uint64_t hi) { return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng); };
  constexpr int kStreams = 3000;
  std::uint64_t deliveries = 0, stored = 0, duplicates = 0, conflicts = 0, stale = 0, reboots = 0, wraps = 0, gaps = 0,
                late = 0, unknown = 0, zeros = 0, restarts = 0;
  for (int stream = 0; stream < kStreams; ++stream) {
    const unsigned bits = std::array{8u, 16u, 32u, 64u}[pick(0, 3)];
    const DedupOptions o{.window = static_cast<std::uint32_t>(std::array{8, 16, 64, 256}[pick(0, 3)]),
                         .seq_bits = static_cast<std::uint8_t>(bits),
                         .reboot_time_bound = milliseconds(std::array{0, 1000, 10'000}[pick(0, 2)])};
    DedupWindow w(o);
    gw::test::DedupReference ref(o);
    const std::uint64_t mask = bits == 64 ? ~0ull : (1ull << bits) - 1;
    const bool boot_ids = chance(0.5);
    const std::uint64_t window = w.window();
    auto first_seq = [&] {
      const auto kind = pick(0, 2);
      return kind == 0 ? 0 : kind == 1 ? 1 : (mask - pick(0, 40));
    };
    std::uint64_t epoch = boot_ids ? pick(1, 1000) : 0, counter = first_seq(), since_boot = 0;
    std::int64_t t = 1'700'000'000'000;
    std::deque<Reading> pending;      // sent soon, shuffled within a few places
    std::vector<Reading> history;     // every reading of this stream (for stale copies)
    std::vector<std::pair<std::size_t, Reading>> later;  // (deliver after this many, copy)
    const int readings = static_cast<int>(pick(100, 500));
    const std::uint64_t reorder = pick(0, std::min<std::uint64_t>(4, window / 4));
    std::vector<Reading> arrivals;
    auto flush = [&](std::size_t keep) {
      while (pending.size() > keep) {
        const std::size_t i = reorder == 0 ? 0 : pick(0, std::min<std::uint64_t>(reorder, pending.size() - 1));
        arrivals.push_back(pending[i]);
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i));
        for (auto it = later.begin(); it != later.end();) {
          if (it->first-- == 0) {
            arrivals.push_back(it->second);
            it = later.erase(it);
          } else {
            ++it;
          }
        }
      }
    };
    for (int i = 0; i < readings; ++i) {
      t += static_cast<std::int64_t>(pick(100, 1000));
      if (chance(0.01) && (boot_ids || since_boot >= 2 * window)) {  // a reboot: RAM (queued copies) is lost
        flush(0);
        later.clear();
        counter = first_seq();
        since_boot = 0;
        if (boot_ids) epoch = epoch % 100000 + pick(1, 5);
      }
      if (chance(0.02)) counter += pick(1, 5);  // numbers lost before the gateway
      const Reading r{epoch, counter & mask, t, static_cast<std::uint32_t>(pick(2, 0xffffffffu))};
      ++counter;
      ++since_boot;
      history.push_back(r);
      pending.push_back(r);
      if (chance(0.1)) {  // retransmitted, re-stamped
        Reading copy = r;
        copy.time_ms += static_cast<std::int64_t>(pick(100, 3000));
        later.emplace_back(pick(0, window / 2), copy);
      }
      if (chance(0.1)) {  // heard by more gateways
        for (std::uint64_t n = pick(1, 2); n > 0; --n) pending.push_back(r);
      }
      if (chance(0.01)) {  // a device reusing a number for other values
        Reading other = r;
        other.digest ^= 0x5a5a;
        later.emplace_back(pick(0, 3), other);
      }
      if (chance(0.005) && history.size() > window + 10) {  // a stale copy of an old reading
        arrivals.push_back(history[history.size() - window - pick(2, 9)]);
      }
      flush(reorder);
    }
    flush(0);
    for (const auto& [n, copy] : later) arrivals.push_back(copy);

    for (std::size_t i = 0; i < arrivals.size(); ++i) {
      if (i % 97 == 96) {  // restart: the window comes back from its stored form
        auto back = DedupWindow::decode(w.encode(), o);
        REQUIRE(back.has_value());
        w = std::move(*back);
        ++restarts;
      }
      const Reading& r = arrivals[i];
      const DedupDecision got = w.admit(r), want = ref.admit(r);
      if (got.verdict != want.verdict || got.reboot != want.reboot || got.wrapped != want.wrapped ||
          got.gap != want.gap || got.late != want.late || got.unknown != want.unknown ||
          got.ambiguous_zero != want.ambiguous_zero) {
        CAPTURE(stream, i, bits, o.window, boot_ids, r.epoch, r.seq, r.time_ms, r.digest);
        CAPTURE(static_cast<int>(got.verdict), static_cast<int>(want.verdict), got.reboot, want.reboot, got.wrapped,
                want.wrapped, got.gap, want.gap, got.late, want.late, got.unknown, want.unknown);
        FAIL("the window and the reference decided differently");
      }
      ++deliveries;
      stored += got.verdict == DedupVerdict::store;
      duplicates += got.verdict == DedupVerdict::duplicate;
      conflicts += got.verdict == DedupVerdict::conflicting;
      stale += got.verdict == DedupVerdict::stale;
      reboots += got.reboot;
      wraps += got.wrapped;
      gaps += got.gap > 0;
      late += got.late;
      unknown += got.unknown;
      zeros += got.ambiguous_zero;
    }
  }
  std::printf(
      "dedup property: streams=%d deliveries=%llu stored=%llu duplicates=%llu conflicts=%llu stale=%llu reboots=%llu "
      "wraps=%llu gaps=%llu late=%llu unknown=%llu ambiguous_zero=%llu restarts=%llu\n",
      kStreams, static_cast<unsigned long long>(deliveries), static_cast<unsigned long long>(stored),
      static_cast<unsigned long long>(duplicates), static_cast<unsigned long long>(conflicts),
      static_cast<unsigned long long>(stale), static_cast<unsigned long long>(reboots),
      static_cast<unsigned long long>(wraps), static_cast<unsigned long long>(gaps), static_cast<unsigned long long>(late),
      static_cast<unsigned long long>(unknown), static_cast<unsigned long long>(zeros),
      static_cast<unsigned long long>(restarts));
  // Every kind of case occurred (the mix is not vacuous).
  CHECK(duplicates > 1000);
  CHECK(conflicts > 100);
  CHECK(stale > 10);
  CHECK(reboots > 100);
  CHECK(wraps > 100);
  CHECK(gaps > 1000);
  CHECK(late > 1000);
  CHECK(zeros > 10);
}
