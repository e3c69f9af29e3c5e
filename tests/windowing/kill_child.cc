// windowing_kill_child: the windowing stage over an existing ring, for the kill -9 test
// (tests/windowing/kill_test.cc).
//   windowing_kill_child DIR run LAST_SEQ  runs the stage until it has committed LAST_SEQ, then stops
//   windowing_kill_child DIR dump          prints the stage's stored output (results, late events,
//                                          forwarded aggregate records, state) as hex lines (not the cursor:
//                                          where a run stopped among its own records differs)
// The options are fixed here, the gateway clock is a constant (the kill test compares bit for bit,
// so only the ring's own ingest times may drive gateway time), and commits are frequent so that a
// kill lands between many of them.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "buffer/ring.h"
#include "windowing/stage.h"

namespace {

gw::windowing::Options options() {
  gw::windowing::Options o;
  o.kind = gw::windowing::WindowKind::hopping;
  o.size = std::chrono::milliseconds(1000);
  o.slide = std::chrono::milliseconds(250);
  o.group_by_tag = "site";
  o.allowed_lateness = std::chrono::milliseconds(200);
  o.idle_timeout = std::chrono::milliseconds(20);
  o.max_skew = std::chrono::milliseconds(3'000'000'000'000);
  o.max_late = 500;
  o.max_results = 1'000'000;
  o.commit_events = 700;
  o.commit_interval = std::chrono::milliseconds(2);
  o.clock = [] { return std::int64_t{0}; };
  return o;
}

std::string hex(std::span<const std::uint8_t> b) {
  static constexpr char k[] = "0123456789abcdef";
  std::string s;
  for (std::uint8_t x : b) {
    s += k[x >> 4];
    s += k[x & 15];
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  spdlog::set_level(spdlog::level::warn);
  auto ring = gw::buffer::Ring::open({.path = argv[1], .durability = gw::buffer::Durability::os});
  if (!ring) {
    std::fprintf(stderr, "kill_child: open: %s\n", ring.error().message().c_str());
    return 1;
  }
  const std::string mode = argv[2];
  if (mode == "run" && argc == 4) {
    const gw::buffer::Seq target{std::strtoull(argv[3], nullptr, 10)};
    gw::windowing::Stage stage(options(), **ring);
    if (!stage.start()) return 1;
    for (int i = 0; i < 60000 && stage.stats().acked < target; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stage.stop();
    return stage.stats().acked >= target ? 0 : 1;
  }
  if (mode == "dump") {
    for (const char* table : {"win.res", "win.idx", "win.late", "win.meta", "win.dev", "win.grp", "win.ser"}) {
      std::vector<std::uint8_t> from;
      for (int page = 0; page < 100000; ++page) {
        auto entries = (*ring)->table_scan(table, from, 1000);
        if (!entries || entries->empty()) break;
        for (const auto& e : *entries) std::printf("%s %s %s\n", table, hex(e.key).c_str(), hex(e.value).c_str());
        from = entries->back().key;
        from.push_back(0);
      }
    }
    gw::buffer::Seq after;
    for (int page = 0; page < 100000; ++page) {
      auto records = (*ring)->read(after, 1000, 1 << 20);
      if (!records || records->empty()) break;
      for (const auto& r : *records) {
        if (r.type == gw::buffer::RecordType::aggregate) std::printf("aggregate %s\n", hex(r.payload).c_str());
        after = r.seq;
      }
    }
    return 0;
  }
  return 2;
}
