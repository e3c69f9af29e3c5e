// Private to uplink's .cc files (never included by a public header): small helpers around the
// librdkafka C API shared by the sink, the reader and the mock cluster.
//
// Thread-safety: the helpers are stateless; the log callback is called from librdkafka's threads
// and only logs through spdlog (thread-safe).
#pragma once

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace gw::uplink::detail {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const noexcept { rd_kafka_conf_destroy(c); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

// Routes librdkafka's log lines to spdlog (librdkafka levels are syslog levels). Its errors are
// mostly connection failures that it retries by itself, hence warnings.
inline void log_to_spdlog(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  const char* name = rk != nullptr ? rd_kafka_name(rk) : "rdkafka";
  if (level <= 4) {
    spdlog::warn("{} {}: {}", name, fac, buf);
  } else if (level <= 6) {
    spdlog::info("{} {}: {}", name, fac, buf);
  } else {
    spdlog::debug("{} {}: {}", name, fac, buf);
  }
}

// A configuration with the given properties set and logging routed to spdlog; on a refused
// property, logs librdkafka's reason and returns null.
inline ConfPtr make_conf(std::initializer_list<std::pair<const char*, std::string>> props) {
  ConfPtr conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), log_to_spdlog);
  char err[512];
  for (const auto& [key, value] : props) {
    if (rd_kafka_conf_set(conf.get(), key, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      spdlog::error("kafka: config {}={}: {}", key, value, err);
      return nullptr;
    }
  }
  return conf;
}

// Sets extra properties on a configuration; logs and returns false on a refused one.
inline bool set_props(rd_kafka_conf_t* conf, const std::vector<std::pair<std::string, std::string>>& props) {
  char err[512];
  for (const auto& [key, value] : props) {
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      spdlog::error("kafka: config {}: {}", key, err);
      return false;
    }
  }
  return true;
}

}  // namespace gw::uplink::detail
