// The mosquitto plugin of ingest mode "plugin" (plugin API v5, mosquitto 2.0): for each PUBLISH on
// one of the gateway's topic filters, mosquitto calls on_message() before it stores the message and
// before it sends the QoS 1 PUBACK (QoS 2 PUBREC). The callback hands the message to edge-gateway
// over a local Unix socket (ingest/plugin_protocol.h) and waits for its answer, given only once the
// event is durable in the gateway's buffer (or kept as a dead letter). So a device is acknowledged
// only for what the gateway holds, whatever becomes of mosquitto afterwards.
//
// Answers: acknowledged -> MOSQ_ERR_SUCCESS (mosquitto acknowledges the device). Refused, no
// answer within plugin_opt_timeout_ms, or the gateway unreachable -> for QoS 1 and 2 an error, so
// that mosquitto sends no acknowledgement and closes the connection and the device sends the
// message again after it reconnects; a QoS 0 message is let through (mosquitto routes it as usual),
// counted as not stored (QoS 0 promised nothing; a disconnect would be worse).
// Not MOSQ_ERR_ACL_DENIED: mosquitto answers that with a PUBACK ("not authorized" in MQTT 5, a
// plain PUBACK in 3.1.1), which would lose the message.
//
// The broker runs this on its only thread, so the plugin keeps one connection and one request in
// flight. A crash here is a crash of the broker: no exception leaves this file (nothing in it
// throws: no allocation after init, C calls only), and every buffer is bounded.
//
// Options (mosquitto.conf, after `plugin PATH`; `edge-gateway --mosquitto-config` prints them):
//   plugin_opt_socket PATH        the gateway's plugin socket (required)
//   plugin_opt_topics F1,F2,...   topic filters handed to the gateway (default devices/+/telemetry)
//   plugin_opt_timeout_ms MS      the longest wait for one answer (default 5000)
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

extern "C" {
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
}

#include "ingest/plugin_protocol.h"

namespace {

namespace proto = gw::ingest::plugin;

constexpr int kMaxFilters = 16;
constexpr std::size_t kMaxFilterBytes = 256;

struct State {
  mosquitto_plugin_id_t* id = nullptr;
  sockaddr_un address{};
  int fd = -1;
  int timeout_ms = 5000;
  int filters = 0;
  char filter[kMaxFilters][kMaxFilterBytes]{};
  // Counters, logged at cleanup and with each failure episode.
  std::uint64_t handed = 0, refused = 0, unreachable = 0, qos0_unstored = 0;
  bool failing = false;  // in a failure episode (logged once, and when it ends)
};


long long now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void disconnect(State& s) {
  if (s.fd >= 0) close(s.fd);
  s.fd = -1;
}

bool set_timeout(int fd, int option, long long ms) {
  const timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
  return setsockopt(fd, SOL_SOCKET, option, &tv, sizeof(tv)) == 0;
}

bool connect_gateway(State& s) {
  if (s.fd >= 0) return true;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  // Blocking calls with timeouts: a gateway that stops reading or answering holds the broker's
  // thread at most timeout_ms per call.
  if (!set_timeout(fd, SO_RCVTIMEO, s.timeout_ms) || !set_timeout(fd, SO_SNDTIMEO, s.timeout_ms) ||
      connect(fd, reinterpret_cast<const sockaddr*>(&s.address), sizeof(s.address)) != 0) {
    close(fd);
    return false;
  }
  s.fd = fd;
  return true;
}

// Writes all of iov (advancing it) before the deadline.
bool write_all(int fd, iovec* iov, int n, long long deadline) {
  while (n > 0) {
    const ssize_t w = writev(fd, iov, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) return false;
      pollfd p{fd, POLLOUT, 0};
      const long long left = deadline - now_ms();
      if (left <= 0 || poll(&p, 1, static_cast<int>(left)) <= 0) return false;
      continue;
    }
    std::size_t done = static_cast<std::size_t>(w);
    while (n > 0 && done >= iov->iov_len) {
      done -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + done;
      iov->iov_len -= done;
    }
  }
  return true;
}

// One request and its answer; false when there is none (the connection is then closed).
bool exchange(State& s, const mosquitto_evt_message& m, const char* client_id, proto::Reply& reply) {
  if (!connect_gateway(s)) return false;
  const std::size_t topic_len = std::strlen(m.topic);
  const std::size_t client_len = client_id != nullptr ? std::strlen(client_id) : 0;
  std::uint8_t header[proto::kHeaderBytes];
  if (!proto::write_header(header, m.qos, topic_len, client_len, m.payloadlen)) return false;
  const long long deadline = now_ms() + s.timeout_ms;
  iovec iov[4] = {{header, sizeof(header)},
                  {const_cast<char*>(m.topic), topic_len},
                  {const_cast<char*>(client_id != nullptr ? client_id : ""), client_len},
                  {m.payload, m.payloadlen}};
  if (!write_all(s.fd, iov, 4, deadline)) {
    disconnect(s);
    return false;
  }
  // The read waits at most the socket's receive timeout (the whole wait, set at connect): one call
  // per answer, where poll-then-read took two. Only an interrupted read sets the time left again.
  for (;;) {
    std::uint8_t code = 0;
    const ssize_t r = read(s.fd, &code, 1);
    if (r < 0 && errno == EINTR) {
      const long long left = deadline - now_ms();
      if (left <= 0 || !set_timeout(s.fd, SO_RCVTIMEO, left)) break;
      continue;
    }
    // No answer in time (EAGAIN): the connection is dropped, so a late one cannot be taken for the next.
    if (r != 1 || code > static_cast<std::uint8_t>(proto::Reply::refused)) break;
    reply = static_cast<proto::Reply>(code);
    return true;
  }
  disconnect(s);
  return false;
}

bool handled(const State& s, const char* topic) {
  for (int i = 0; i < s.filters; ++i) {
    bool match = false;
    if (mosquitto_topic_matches_sub(s.filter[i], topic, &match) == MOSQ_ERR_SUCCESS && match) return true;
  }
  return false;
}

int on_message(int /*event*/, void* event_data, void* user_data) {
  State& s = *static_cast<State*>(user_data);
  const auto& m = *static_cast<const mosquitto_evt_message*>(event_data);
  if (m.topic == nullptr || !handled(s, m.topic)) return MOSQ_ERR_SUCCESS;
  proto::Reply reply = proto::Reply::refused;
  const bool answered = exchange(s, m, mosquitto_client_id(m.client), reply);
  if (answered && reply == proto::Reply::acknowledged) {
    ++s.handed;
    if (s.failing) {
      s.failing = false;
      mosquitto_log_printf(MOSQ_LOG_NOTICE, "edge-gateway plugin: the gateway stores again");
    }
    return MOSQ_ERR_SUCCESS;
  }
  ++(answered ? s.refused : s.unreachable);
  if (!s.failing) {
    s.failing = true;
    mosquitto_log_printf(MOSQ_LOG_WARNING,
                         "edge-gateway plugin: %s; messages on the gateway's topics are not acknowledged until it "
                         "stores again (refused %llu, unreachable %llu so far)",
                         answered ? "the gateway refused a message (buffer full, or stopping)"
                                  : "no answer from the gateway",
                         static_cast<unsigned long long>(s.refused), static_cast<unsigned long long>(s.unreachable));
  }
  if (m.qos == 0) {
    ++s.qos0_unstored;
    return MOSQ_ERR_SUCCESS;
  }
  return MOSQ_ERR_UNKNOWN;  // no PUBACK/PUBREC; mosquitto closes the connection, the device resends
}

}  // namespace

extern "C" {

int mosquitto_plugin_version(int supported_version_count, const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** user_data, struct mosquitto_opt* options,
                          int option_count) {
  auto* s = new (std::nothrow) State;
  if (s == nullptr) return MOSQ_ERR_NOMEM;
  s->id = identifier;
  s->address.sun_family = AF_UNIX;
  const char* topics = "devices/+/telemetry";
  bool have_socket = false;
  for (int i = 0; i < option_count; ++i) {
    const char* key = options[i].key;
    const char* value = options[i].value;
    if (key == nullptr || value == nullptr) continue;
    if (std::strcmp(key, "socket") == 0) {
      if (std::strlen(value) >= sizeof(s->address.sun_path)) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "edge-gateway plugin: plugin_opt_socket is too long: %s", value);
        delete s;
        return MOSQ_ERR_INVAL;
      }
      std::strcpy(s->address.sun_path, value);
      have_socket = true;
    } else if (std::strcmp(key, "topics") == 0) {
      topics = value;
    } else if (std::strcmp(key, "timeout_ms") == 0) {
      const long ms = std::strtol(value, nullptr, 10);
      if (ms < 1 || ms > 600000) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "edge-gateway plugin: plugin_opt_timeout_ms must be 1..600000: %s", value);
        delete s;
        return MOSQ_ERR_INVAL;
      }
      s->timeout_ms = static_cast<int>(ms);
    }
  }
  if (!have_socket) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "edge-gateway plugin: plugin_opt_socket is required");
    delete s;
    return MOSQ_ERR_INVAL;
  }
  for (const char* p = topics; *p != '\0';) {
    const char* end = std::strchr(p, ',');
    const std::size_t n = end != nullptr ? static_cast<std::size_t>(end - p) : std::strlen(p);
    if (n > 0) {
      if (s->filters == kMaxFilters || n >= kMaxFilterBytes) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "edge-gateway plugin: at most %d topic filters of %zu bytes", kMaxFilters,
                             kMaxFilterBytes - 1);
        delete s;
        return MOSQ_ERR_INVAL;
      }
      std::memcpy(s->filter[s->filters], p, n);
      s->filter[s->filters][n] = '\0';
      ++s->filters;
    }
    p += n + (end != nullptr ? 1 : 0);
  }
  const int rc = mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, on_message, nullptr, s);
  if (rc != MOSQ_ERR_SUCCESS) {
    delete s;
    return rc;
  }
  *user_data = s;
  mosquitto_log_printf(MOSQ_LOG_INFO, "edge-gateway plugin: messages on %s go to the gateway at %s before acknowledgement",
                       topics, s->address.sun_path);
  return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void* user_data, struct mosquitto_opt* /*options*/, int /*option_count*/) {
  auto* s = static_cast<State*>(user_data);
  if (s == nullptr) return MOSQ_ERR_SUCCESS;
  mosquitto_callback_unregister(s->id, MOSQ_EVT_MESSAGE, on_message, nullptr);
  mosquitto_log_printf(MOSQ_LOG_INFO,
                       "edge-gateway plugin: %llu messages stored by the gateway, %llu refused, %llu without answer, "
                       "%llu QoS 0 not stored",
                       static_cast<unsigned long long>(s->handed), static_cast<unsigned long long>(s->refused),
                       static_cast<unsigned long long>(s->unreachable),
                       static_cast<unsigned long long>(s->qos0_unstored));
  disconnect(*s);
  delete s;
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
