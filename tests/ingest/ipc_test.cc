// The worker-to-gateway IPC (ingest/ipc.h) over real socketpairs against a real Ring: concurrent
// workers' records are stored together (fewer commits than records), each worker gets its own
// answer (sequence, or Seq{0} for a duplicate), rejects are answered, and a removed connection
// fails the worker's next store instead of answering it.
#include <sys/socket.h>

#include "tests/support/catch.h"

#include <set>
#include <thread>

#include "buffer/ring.h"
#include "ingest/ipc.h"
#include "ingest/store.h"
#include "tests/support/support.h"

using namespace gw;

namespace {

buffer::RecordIn record_of(const std::string& device, std::uint64_t seq, std::vector<std::uint8_t>& payload) {
  payload.assign(40, static_cast<std::uint8_t>(seq));
  buffer::RecordIn in;
  in.payload = payload;
  in.dedup = buffer::DedupKey{device, 1, seq, 1'700'000'000'000 + static_cast<std::int64_t>(seq)};
  return in;
}

struct Worker {
  ingest::IpcHub::Id id = 0;
  std::unique_ptr<ingest::IpcStore> store;
};

Worker connect(ingest::IpcHub& hub) {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  return {hub.add(fds[0]), std::make_unique<ingest::IpcStore>(fds[1])};
}

}  // namespace

TEST_CASE("the IPC hub stores what several workers send at once in shared commits and answers each") {
  gw::test::TempDir dir;
  buffer::Options o;
  o.path = (dir.path() / "ring").string();
  o.durability = buffer::Durability::fsync;  // a sync per commit: requests queue up behind it
  auto ring = buffer::Ring::open(o);
  REQUIRE(ring.has_value());
  auto local = ingest::make_local_store(**ring, nullptr);
  ingest::IpcHub hub(*local);

  constexpr int kWorkers = 8, kEach = 40;
  std::vector<Worker> workers;
  for (int w = 0; w < kWorkers; ++w) workers.push_back(connect(hub));
  std::vector<std::vector<std::uint64_t>> seqs(kWorkers);
  std::vector<std::uint64_t> redelivered(kWorkers, 99);
  {
    std::vector<std::jthread> threads;
    for (int w = 0; w < kWorkers; ++w) {
      threads.emplace_back([&, w] {
        std::vector<std::uint8_t> payload;
        const std::string device = "dev-" + std::to_string(w);
        for (std::uint64_t k = 1; k <= kEach; ++k) {
          auto r = workers[static_cast<std::size_t>(w)].store->store(record_of(device, k, payload), {});
          seqs[static_cast<std::size_t>(w)].push_back(r ? r->value : 0);
        }
        auto again = workers[static_cast<std::size_t>(w)].store->store(record_of(device, 7, payload), {});
        redelivered[static_cast<std::size_t>(w)] = again ? again->value : 99;
      });
    }
  }
  std::set<std::uint64_t> all;
  for (int w = 0; w < kWorkers; ++w) {
    for (std::uint64_t s : seqs[static_cast<std::size_t>(w)]) all.insert(s);
    CHECK(redelivered[static_cast<std::size_t>(w)] == 0);  // dropped as a duplicate
  }
  CHECK(all.size() == kWorkers * kEach);
  CHECK(all.count(0) == 0);
  CHECK(*all.rbegin() == kWorkers * kEach);
  const auto stats = (*ring)->stats();
  CHECK(stats.appended_total == kWorkers * kEach);
  CHECK(stats.duplicates_total == kWorkers);
  INFO("commits " << stats.commits_total);
  CHECK(stats.commits_total < stats.appended_total);  // some commits held several workers' records

  const std::uint8_t raw[] = {1, 2, 3};
  CHECK(workers[0].store->reject("devices/x/telemetry", ingest::errc::malformed, raw, 123).has_value());

  hub.remove(workers[1].id);
  std::vector<std::uint8_t> payload;
  auto after = workers[1].store->store(record_of("dev-1", 1000, payload), {});
  REQUIRE_FALSE(after.has_value());
  CHECK(after.error() == std::errc::connection_reset);
  CHECK(hub.finished(workers[1].id));
  CHECK_FALSE(hub.finished(workers[2].id));
  CHECK((*ring)->stats().appended_total == kWorkers * kEach);  // nothing from the removed worker
}
