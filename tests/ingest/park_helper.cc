// Test helper for mqtt_source_test.cc: runs an MqttSource whose ring never accepts an append, stops
// it while a message is unstored, and exits. Exit 0 if the source reported exactly one message
// left unstored (parked) at stop(); the broker must then still hold it.
//   ingest_park_helper URL CLIENT_ID RING_DIR
#include <chrono>
#include <cstdio>
#include <thread>

#include "ingest/mqtt_source.h"
#include "tests/support/faulty_ring.h"

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  gw::buffer::Options ro;
  ro.path = argv[3];
  ro.durability = gw::buffer::Durability::os;
  auto real = gw::buffer::Ring::open(ro);
  if (!real) return 2;
  gw::test::FaultyRing ring(**real);
  ring.failures = -1;
  gw::ingest::MqttOptions o;
  o.url = argv[1];
  o.client_id = argv[2];
  o.clock = [] { return std::int64_t{1'700'000'000'000}; };  // the parent's events are around this
  auto source = gw::ingest::MqttSource::create(o, ring);
  if (!source) return 2;
  (*source)->start();
  for (int i = 0; i < 1000 && (*source)->stats().store_retries < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if ((*source)->stats().store_retries < 2) return 3;
  (*source)->stop();
  const auto stats = (*source)->stats();
  std::printf("unstored_at_stop=%llu events_stored=%llu\n", static_cast<unsigned long long>(stats.unstored_at_stop),
              static_cast<unsigned long long>(stats.events_stored));
  source->reset();
  return stats.unstored_at_stop == 1 && stats.events_stored == 0 ? 0 : 4;
}
