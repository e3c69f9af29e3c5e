// The floor of bench-box (tests/bench/box.sh): a mosquitto plugin that registers for every message
// and does nothing, so that mosquitto with it costs what the broker's plugin call itself costs.
// Built only for the benchmark (target bench-noop-plugin, not in the default build).
extern "C" {
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
}

namespace {
mosquitto_plugin_id_t* plugin_id = nullptr;
int on_message(int /*event*/, void* /*event_data*/, void* /*user_data*/) { return MOSQ_ERR_SUCCESS; }
}  // namespace

extern "C" {

int mosquitto_plugin_version(int count, const int* versions) {
  for (int i = 0; i < count; ++i) {
    if (versions[i] == 5) return 5;
  }
  return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** /*user_data*/, struct mosquitto_opt* /*options*/,
                          int /*option_count*/) {
  plugin_id = identifier;
  return mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, on_message, nullptr, nullptr);
}

int mosquitto_plugin_cleanup(void* /*user_data*/, struct mosquitto_opt* /*options*/, int /*option_count*/) {
  return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, nullptr);
}

}  // extern "C"
