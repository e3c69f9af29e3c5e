// A measuring prototype of the design ingest mode plugin did not take: the ring written from inside
// mosquitto ("design (a)" in ingest/README.md). Built only for ingest/bench_plugin.sh (target
// bench-inproc-plugin, not in the default build, never installed or packaged).
//
// For each PUBLISH on the filter it decodes and validates the message with the gateway's own
// admit() and appends it to a buffer::Ring opened in mosquitto's process, at the configured
// durability, before mosquitto acknowledges the device. It is what design (a) costs at best: one
// writer, no gateway process beside it (no consumer, no trim, no windowing), no dead letters (a
// message admit() rejects is refused). What a real design (a) would add (a second writer process
// for the ring, its trims stalling mosquitto's only thread) is written in ingest/README.md.
//
// Options: plugin_opt_path DIR (the ring's directory), plugin_opt_durability os|fsync,
// plugin_opt_topic FILTER (default devices/+/telemetry).
//
// Runs on mosquitto's only thread. No exception leaves the entry points.
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>

extern "C" {
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
}

#include "buffer/ring.h"
#include "ingest/admit.h"

namespace {

struct State {
  mosquitto_plugin_id_t* id = nullptr;
  std::string topic = "devices/+/telemetry";
  std::unique_ptr<gw::buffer::Ring> ring;
  gw::ingest::AdmitOptions admit;
  unsigned long long stored = 0, refused = 0;
};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int on_message(int /*event*/, void* event_data, void* user_data) noexcept {
  auto& s = *static_cast<State*>(user_data);
  const auto& m = *static_cast<const mosquitto_evt_message*>(event_data);
  bool match = false;
  if (m.topic == nullptr || mosquitto_topic_matches_sub(s.topic.c_str(), m.topic, &match) != MOSQ_ERR_SUCCESS ||
      !match) {
    return MOSQ_ERR_SUCCESS;
  }
  try {
    const std::span payload(static_cast<const std::uint8_t*>(m.payload), m.payloadlen);
    auto admitted = gw::ingest::admit(m.topic, payload, now_ms(), s.admit);
    if (admitted) {
      const gw::buffer::RecordIn record = admitted->record();
      if (s.ring->append(std::span(&record, 1))) {
        ++s.stored;
        return MOSQ_ERR_SUCCESS;
      }
    }
  } catch (const std::exception&) {
  }
  ++s.refused;
  return m.qos == 0 ? MOSQ_ERR_SUCCESS : MOSQ_ERR_UNKNOWN;
}

}  // namespace

extern "C" {

int mosquitto_plugin_version(int count, const int* versions) {
  for (int i = 0; i < count; ++i) {
    if (versions[i] == 5) return 5;
  }
  return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** user_data, struct mosquitto_opt* options,
                          int option_count) {
  try {
    auto s = std::make_unique<State>();
    s->id = identifier;
    gw::buffer::Options ring;
    for (int i = 0; i < option_count; ++i) {
      const std::string key = options[i].key != nullptr ? options[i].key : "";
      const std::string value = options[i].value != nullptr ? options[i].value : "";
      if (key == "path") ring.path = value;
      if (key == "topic") s->topic = value;
      if (key == "durability") ring.durability = value == "os" ? gw::buffer::Durability::os : gw::buffer::Durability::fsync;
    }
    if (ring.path.empty()) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "bench-inproc-plugin: plugin_opt_path is required");
      return MOSQ_ERR_INVAL;
    }
    auto opened = gw::buffer::Ring::open(ring);
    if (!opened) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "bench-inproc-plugin: %s: %s", ring.path.c_str(),
                           opened.error().message().c_str());
      return MOSQ_ERR_UNKNOWN;
    }
    s->ring = std::move(*opened);
    const int rc = mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, on_message, nullptr, s.get());
    if (rc != MOSQ_ERR_SUCCESS) return rc;
    *user_data = s.release();
    return MOSQ_ERR_SUCCESS;
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "bench-inproc-plugin: %s", e.what());
    return MOSQ_ERR_UNKNOWN;
  }
}

int mosquitto_plugin_cleanup(void* user_data, struct mosquitto_opt* /*options*/, int /*option_count*/) {
  std::unique_ptr<State> s(static_cast<State*>(user_data));
  if (!s) return MOSQ_ERR_SUCCESS;
  mosquitto_callback_unregister(s->id, MOSQ_EVT_MESSAGE, on_message, nullptr);
  mosquitto_log_printf(MOSQ_LOG_INFO, "bench-inproc-plugin: %llu stored, %llu refused", s->stored, s->refused);
  try {
    s->ring->close();
    s.reset();
  } catch (const std::exception&) {
  }
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
