// The Paho MQTT C++ adapter behind MqttSource (see mqtt_source.h). Paho types stay in this file.
//
// Threads: the caller of start()/stop(); one supervisor thread of ours that (re)connects with
// backoff; Paho's receive thread, which runs on_message / on_connected / on_connection_lost one at
// a time; a short-lived helper thread for the disconnect in stop(). mu_ guards state and stats.
//
// What Paho does with the acknowledgement (read in paho.mqtt.cpp src/async_client.cpp and
// paho.mqtt.c src/MQTTProtocolClient.c, MQTTAsync.c, MQTTAsyncUtils.c; installed: Paho C++ 1.2.0,
// Paho C 1.3.11; the behaviour below is exercised by tests/ingest):
// - Paho C's receive thread handles an incoming QoS 1 PUBLISH in MQTTProtocol_handlePublishes():
//   Protocol_processPublication() calls the messageArrived callback synchronously (when the
//   client's pending-message queue is empty and it is connected) and only then is the PUBACK
//   sent. So the PUBACK follows the callback's return: this is the property we build on.
// - MQTTAsync_deliverMessage() calls the callback WITH Paho's global mqttasync_mutex held, and one
//   receive thread serves every async client of the process. While our callback runs, every Paho
//   call from any thread (is_connected, disconnect, publish, ...) blocks, and every other Paho
//   client in the process stalls, keep-alive pings included.
// - In Paho C, messageArrived returning 0 means "not processed": but that does NOT withhold the
//   PUBACK. The message goes to the client's in-memory queue for another try, the PUBACK is sent
//   right away, and messages arriving behind it are queued and acked on arrival too. So a 0 would
//   be wrong for us even if we could return it; and we cannot: Paho C++'s on_message_arrived
//   always returns true ("TODO: Should the user code determine the return value?").
// - If the C++ handler throws, the exception unwinds through Paho C's frames (with its mutex held)
//   and escapes the receive thread: std::terminate. Nothing is acked, but it costs the process;
//   so on_message never lets an exception escape.
// The honest mechanism, then, is to not return while the message is unstored:
// - While the append fails we retry with backoff inside the callback (the "block" overflow
//   behaviour: no later message is read or acked, the broker queues them).
// - On stop() during such an episode no Paho call can close the connection (the mutex), and
//   returning would ack the message. So the callback parks (stops touching the ring and waits
//   forever) and stop() returns; the Core and its Paho client are leaked on purpose. When the
//   process exits the kernel closes the socket with no PUBACK sent, and the broker redelivers the
//   message to the next session with this client id (tests/ingest: park_helper.cc). Until then all
//   MQTT clients of the process are stalled, so the gateway should exit after such a stop().
// - A long episode also starves keep-alive, so the broker may drop the connection; the message is
//   then redelivered after reconnect and can be stored twice (dedup is the [ingest] issue's job).
#include "ingest/mqtt_source.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <vector>

#include "ingest/admit.h"
#include "ingest/tls_probe.h"

namespace gw::ingest {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kDisconnectTimeout = std::chrono::seconds(10);
constexpr auto kCallbackDrainTimeout = std::chrono::seconds(30);
constexpr auto kDecodeLogInterval = std::chrono::seconds(10);

bool is_tls(const MqttOptions& o) {
  return o.url.starts_with("ssl://") || o.url.starts_with("mqtts://") || !o.ca_file.empty() ||
         !o.cert_file.empty() || !o.key_file.empty();
}

// Everything but the public face. Shared with the disconnect helper thread, and deliberately
// leaked when a callback is parked (see stop()).
class Core final : public std::enable_shared_from_this<Core> {
 public:
  Core(MqttOptions options, EventStore& store, std::unique_ptr<EventStore> owned_store)
      : options_(std::move(options)), owned_store_(std::move(owned_store)), store_(store) {
    if (!options_.clock) {
      options_.clock = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
      };
    }
  }
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // Creates the Paho client and its options; throws mqtt::exception on bad input.
  void init() {
    const int version = options_.mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
    // No Paho persistence: the broker's session is what keeps unacknowledged messages.
    client_ = std::make_unique<mqtt::async_client>(options_.url, options_.client_id, mqtt::create_options(version));

    auto builder = mqtt::connect_options_builder();
    builder.mqtt_version(version)
        .keep_alive_interval(options_.keep_alive)
        .connect_timeout(std::chrono::seconds(5))
        .automatic_reconnect(false);  // the supervisor reconnects, with millisecond backoff
    if (version == MQTTVERSION_5) {
      builder.clean_start(false);
    } else {
      builder.clean_session(false);
    }
    if (!options_.username.empty()) builder.user_name(options_.username);
    if (!options_.password.empty()) builder.password(options_.password);
    if (is_tls(options_)) {
      auto ssl = mqtt::ssl_options_builder();
      if (!options_.ca_file.empty()) ssl.trust_store(options_.ca_file);
      if (!options_.cert_file.empty()) ssl.key_store(options_.cert_file);
      if (!options_.key_file.empty()) ssl.private_key(options_.key_file);
      builder.ssl(ssl.finalize());
    }
    connect_options_ = builder.finalize();
    if (version == MQTTVERSION_5) {
      // Set on the member itself: Paho C++ 1.2's connect_options keeps a raw pointer to its own
      // properties, and copying/assigning a connect_options does not re-point it (the session
      // expiry silently went missing when it was set on the builder's temporary).
      connect_options_.set_properties(mqtt::properties{
          {mqtt::property::SESSION_EXPIRY_INTERVAL, static_cast<std::int32_t>(options_.session_expiry_s)}});
    }

    client_->set_message_callback([this](mqtt::const_message_ptr msg) { on_message(msg); });
    client_->set_connected_handler([this](const std::string&) { on_connected(); });
    client_->set_connection_lost_handler([this](const std::string& cause) { on_connection_lost(cause); });
  }

  void start() {
    std::lock_guard lock(mu_);
    if (started_ || stopping_) return;
    started_ = true;
    supervisor_ = std::thread([this] { supervise(); });
  }

  // See mqtt_source.h and the top of this file. Returns true if a callback is parked, i.e. Paho's
  // receive thread is held forever by an unstored message: the Core must then never be destroyed.
  bool stop() {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return parked_;
      stopping_ = true;
    }
    cv_.notify_all();
    store_stop_.request_stop();  // ends an append() waiting in the ring for room (overflow = block)
    if (supervisor_.joinable()) supervisor_.join();

    std::unique_lock lock(mu_);
    // A callback in a store-retry episode sees stopping_ and parks within one retry delay.
    cv_.wait_for(lock, options_.store_retry_max + kCallbackDrainTimeout, [&] { return !storing_ || parked_; });
    if (!parked_) {
      // Disconnect on a helper thread: if a callback starts and parks meanwhile, Paho's mutex is
      // held forever and the call would never return.
      disconnect_running_ = true;
      lock.unlock();
      std::thread([self = shared_from_this()] { self->disconnect(); }).detach();
      lock.lock();
      cv_.wait_for(lock, kDisconnectTimeout + std::chrono::seconds(1), [&] { return !disconnect_running_ || parked_; });
      cv_.wait_for(lock, kCallbackDrainTimeout, [&] { return !in_callback_ || parked_; });
    }
    stats_.connected = false;
    stats_.subscribed = false;
    if (parked_) {
      spdlog::critical("ingest: stopped with an unstored message: Paho's receive thread stays parked in the message "
                       "callback so that it is never acknowledged; the broker redelivers it after a restart. "
                       "All MQTT clients of this process are stalled until it exits.");
    }
    return parked_;
  }

  MqttStats stats() const {
    std::lock_guard lock(mu_);
    MqttStats s = stats_;
    if (admit_options_.mapper) s.sparkplug_deaths = admit_options_.mapper->sparkplug_deaths();
    return s;
  }

 private:
  void disconnect() {
    try {
      if (client_ && client_->is_connected()) {
        auto opts = mqtt::disconnect_options_builder().timeout(std::chrono::milliseconds(0)).finalize();
        if (!client_->disconnect(opts)->wait_for(kDisconnectTimeout)) spdlog::warn("ingest: mqtt disconnect timed out");
      }
    } catch (const mqtt::exception& e) {
      spdlog::debug("ingest: mqtt disconnect: {}", e.what());  // not connected any more
    }
    {
      std::lock_guard lock(mu_);
      disconnect_running_ = false;
    }
    cv_.notify_all();
  }

  void set_error(std::string what) {  // mu_ held
    stats_.last_error = std::move(what);
  }

  void supervise() {
    auto backoff = options_.reconnect_min;
    std::unique_lock lock(mu_);
    while (!stopping_) {
      if (connected_) {
        cv_.wait(lock, [&] { return stopping_ || !connected_; });
        continue;
      }
      lock.unlock();
      bool ok = false;
      std::string error;
      try {
        auto token = client_->connect(connect_options_);
        // Paho's connect_timeout bounds this; we do not give up on a pending connect, so that no
        // connect completes behind stop()'s back.
        const auto deadline = Clock::now() + kConnectTimeout;
        while (!token->wait_for(std::chrono::milliseconds(100)) && Clock::now() < deadline) {
        }
        token->wait();  // throws if it failed
        ok = true;
      } catch (const mqtt::exception& e) {
        error = e.what();
      }
      lock.lock();
      if (ok) {
        connected_ = true;
        stats_.connected = true;
        backoff = options_.reconnect_min;
        tls_reason_.reset();
        continue;
      }
      if (is_tls(options_) && error.find("TCP/TLS connect failure") != std::string::npos) {
        // Paho does not say why a TLS connect failed (ingest/tls_probe.h): ask once per streak of
        // failures, with the lock released (bounded by the probe's timeout).
        if (!tls_reason_) {
          lock.unlock();
          std::string reason = tls_failure_reason({options_.url, options_.ca_file, options_.cert_file, options_.key_file});
          lock.lock();
          tls_reason_ = std::move(reason);
        }
        if (!tls_reason_->empty()) error += " (" + *tls_reason_ + ")";
      }
      set_error("connect " + options_.url + ": " + error);
      if (!logged_connect_failure_) {
        spdlog::warn("ingest: cannot connect to {}: {} (retrying with backoff up to {} ms)", options_.url, error,
                     options_.reconnect_max.count());
        logged_connect_failure_ = true;
      }
      cv_.wait_for(lock, backoff, [&] { return stopping_; });
      backoff = std::min(backoff * 2, options_.reconnect_max);
    }
  }

  // Paho thread. Resubscribes on every connect (the persistent session keeps subscriptions, but
  // the topic list may have changed since it was created).
  void on_connected() {
    {
      std::lock_guard lock(mu_);
      connected_ = true;
      stats_.connected = true;
      if (++connects_ > 1) ++stats_.reconnects;
      stats_.subscribed = false;
      logged_connect_failure_ = false;
    }
    spdlog::info("ingest: connected to {} as {}", options_.url, options_.client_id);
    try {
      // Asynchronous: waiting here would block Paho's receive thread, which must read the SUBACK.
      auto topics = mqtt::string_collection::create(options_.topics);
      mqtt::iasync_client::qos_collection qos(options_.topics.size(), options_.qos);
      (void)client_->subscribe(topics, qos, nullptr, subscribe_listener_);
    } catch (const mqtt::exception& e) {
      std::lock_guard lock(mu_);
      set_error(std::string("subscribe: ") + e.what());
      spdlog::error("ingest: subscribe failed: {}", e.what());
    }
  }

  // Paho thread: the broker answered the SUBSCRIBE of on_connected.
  void on_subscribed(bool ok, const std::string& what) {
    std::lock_guard lock(mu_);
    stats_.subscribed = ok && connected_;
    if (!ok) {
      set_error("subscribe: " + what);
      spdlog::error("ingest: subscribe to {} topics failed: {}", options_.topics.size(), what);
    }
  }

  class SubscribeListener final : public mqtt::iaction_listener {
   public:
    explicit SubscribeListener(Core& owner) : owner_(owner) {}
    void on_success(const mqtt::token&) override { owner_.on_subscribed(true, {}); }
    void on_failure(const mqtt::token& t) override {
      owner_.on_subscribed(false, "reason code " + std::to_string(t.get_return_code()));
    }

   private:
    Core& owner_;
  };

  // Paho thread.
  void on_connection_lost(const std::string& cause) {
    {
      std::lock_guard lock(mu_);
      connected_ = false;
      stats_.connected = false;
      stats_.subscribed = false;
      set_error("connection lost: " + cause);
    }
    spdlog::warn("ingest: connection to {} lost: {}", options_.url, cause);
    cv_.notify_all();
  }

  // Paho's receive thread. Returning = Paho sends the PUBACK (see the top of this file).
  void on_message(const mqtt::const_message_ptr& msg) noexcept {
    {
      std::lock_guard lock(mu_);
      in_callback_ = true;
      ++stats_.messages_received;
    }
    try {
      handle(*msg);
    } catch (const std::exception& e) {
      // Only allocation failures can get here (the ring and decoder return errors). Keep the
      // process; the message counts as a store failure of this one record.
      std::lock_guard lock(mu_);
      set_error(std::string("message callback: ") + e.what());
      spdlog::error("ingest: message callback failed: {}", e.what());
    } catch (...) {
      std::lock_guard lock(mu_);
      set_error("message callback: unknown exception");
    }
    bool stopping = false;
    {
      std::lock_guard lock(mu_);
      in_callback_ = false;
      storing_ = false;
      stopping = stopping_;
    }
    // Only stop() waits for a callback to end, and only once it has set stopping_ (under mu_, so a
    // callback that ends before sees no waiter to wake). Waking cv_ on every message woke the
    // supervisor thread each time: two context switches and four futex calls per message.
    if (stopping) cv_.notify_all();
  }

  // Rejects a message for good: counted, logged (rate-limited), kept in the dead-letter store.
  // Returning afterwards acknowledges it, which is right: redelivery would be rejected again.
  void reject(const mqtt::message& msg, std::span<const std::uint8_t> bytes, std::error_code why,
              const std::string& detail = {}) {
    const auto reason = static_cast<errc>(why.value());
    const bool kept = store_.reject(msg.get_topic(), reason, bytes, options_.clock(), detail).has_value();
    std::lock_guard lock(mu_);
    ++stats_.decode_errors[reason];
    ++stats_.decode_errors_total;
    if (!kept) ++stats_.dead_letter_failures;
    const std::string what = detail.empty() ? why.message() : why.message() + " (" + detail + ")";
    set_error("rejected (" + msg.get_topic() + "): " + what);
    const auto now = Clock::now();
    if (now - last_decode_log_ >= kDecodeLogInterval) {
      spdlog::warn("ingest: rejected a payload on {}: {} ({} rejected in total)", msg.get_topic(), what,
                   stats_.decode_errors_total);
      last_decode_log_ = now;
    }
  }

  void handle(const mqtt::message& msg) {
    const auto& payload = msg.get_payload();
    const std::span<const std::uint8_t> received(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size());
    auto admitted = admit(msg.get_topic(), received, options_.clock(), admit_options_);
    if (!admitted && !admitted.error().reason) {
      std::lock_guard lock(mu_);
      ++stats_.not_events;
      return;
    }
    if (!admitted) return reject(msg, received, admitted.error().reason, admitted.error().detail);
    if (admitted->device_mismatch || admitted->time_from_arrival) {
      std::lock_guard lock(mu_);
      stats_.device_mismatches += admitted->device_mismatch;
      stats_.arrival_times += admitted->time_from_arrival;
    }
    // The buffer drops a copy of a stored reading in the same transaction that would store it, and
    // refuses one it cannot judge or that reuses a reading's identity for other values.
    const buffer::RecordIn record = admitted->record();
    const Event* event = &admitted->event;
    auto delay = options_.store_retry_min;
    bool episode = false;
    for (;;) {
      // With overflow = block the ring itself waits for room; stop() ends that wait (errc::stopped).
      auto stored = store_.store(record, store_stop_.get_token());
      if (stored) {
        if (auto reason = rejection_of(*stored)) {
          if (episode) spdlog::info("ingest: storing works again");
          return reject(msg, received, make_error_code(*reason));  // as the device sent it
        }
      }
      std::unique_lock lock(mu_);
      if (stored) {
        ++(*stored == buffer::kDroppedDuplicate ? stats_.duplicates : stats_.events_stored);
        if (episode) spdlog::info("ingest: storing works again after {} retries", stats_.store_retries);
        return;
      }
      ++stats_.store_retries;
      storing_ = true;
      set_error("store: " + stored.error().message());
      if (!episode) {
        spdlog::warn("ingest: cannot store an event ({}); holding the acknowledgement and retrying",
                     stored.error().message());
        episode = true;
      }
      if (cv_.wait_for(lock, delay, [&] { return stopping_; })) {
        // Returning would acknowledge an unstored message, and no Paho call can close the
        // connection while we hold its receive thread (it holds Paho's mutex). So park here until
        // the process exits: the kernel closes the socket without a PUBACK. The ring is not
        // touched any more (its owner may destroy it after stop()).
        ++stats_.unstored_at_stop;
        parked_ = true;
        spdlog::warn("ingest: stopping with an unstored message ({} seq {}); it stays unacknowledged",
                     event->device.value, event->seq.value);
        cv_.notify_all();
        cv_.wait(lock, [] { return false; });
      }
      delay = std::min(delay * 2, options_.store_retry_max);
    }
  }

  MqttOptions options_;  // const after construction (the clock is filled in there)
  AdmitOptions admit_options_{options_.device_pattern, options_.limits,
                              compile_sources(options_.sources, options_.sparkplug_state_dir)};
  std::unique_ptr<EventStore> owned_store_;  // set when created over a ring
  EventStore& store_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  MqttStats stats_;
  bool started_ = false;
  bool stopping_ = false;
  bool connected_ = false;
  bool parked_ = false;  // a callback holds an unstored message until the process exits
  bool disconnect_running_ = false;
  bool in_callback_ = false;
  bool storing_ = false;  // a callback is in a store-retry episode
  std::stop_source store_stop_;  // requested by stop()
  bool logged_connect_failure_ = false;
  std::optional<std::string> tls_reason_;  // the TLS probe's answer for this streak of failed connects
  std::uint64_t connects_ = 0;
  Clock::time_point last_decode_log_{};

  std::thread supervisor_;
  mqtt::connect_options connect_options_;
  SubscribeListener subscribe_listener_{*this};
  // Last: destroyed first, so that no Paho callback can run into destroyed members.
  std::unique_ptr<mqtt::async_client> client_;
};

class PahoMqttSource final : public MqttSource {
 public:
  explicit PahoMqttSource(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  ~PahoMqttSource() override {
    if (core_->stop()) {
      // Paho's receive thread is parked inside the Core: it must live until the process exits.
      // Kept reachable from a static that is never destroyed (no exit-time destructor runs into
      // the parked thread, and LeakSanitizer sees it as deliberately kept, not leaked).
      static auto* const parked = new std::vector<std::shared_ptr<Core>>();
      static std::mutex parked_mutex;
      std::lock_guard lock(parked_mutex);
      parked->push_back(std::move(core_));
    }
  }
  void start() override { core_->start(); }
  void stop() override { (void)core_->stop(); }
  MqttStats stats() const override { return core_->stats(); }

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace

std::expected<std::unique_ptr<MqttSource>, std::error_code> MqttSource::create(MqttOptions options,
                                                                               buffer::Ring& ring,
                                                                               DeadLetters* dead_letters) {
  auto store = make_local_store(ring, dead_letters);
  EventStore& ref = *store;
  return create(std::move(options), ref, std::move(store));
}

std::expected<std::unique_ptr<MqttSource>, std::error_code> MqttSource::create(MqttOptions options, EventStore& store) {
  return create(std::move(options), store, nullptr);
}

std::expected<std::unique_ptr<MqttSource>, std::error_code> MqttSource::create(MqttOptions options, EventStore& store,
                                                                               std::unique_ptr<EventStore> owned) {
  if (options.topics.empty() || options.client_id.empty() || options.qos < 0 || options.qos > 2 ||
      (options.mqtt_version != 4 && options.mqtt_version != 5) || options.reconnect_min.count() <= 0 ||
      options.reconnect_max < options.reconnect_min || options.store_retry_min.count() <= 0 ||
      options.store_retry_max < options.store_retry_min) {
    return std::unexpected(std::make_error_code(std::errc::invalid_argument));
  }
  auto core = std::make_shared<Core>(std::move(options), store, std::move(owned));
  try {
    core->init();
  } catch (const mqtt::exception& e) {
    spdlog::error("ingest: cannot create the MQTT client: {}", e.what());
    return std::unexpected(std::make_error_code(std::errc::invalid_argument));
  }
  return std::make_unique<PahoMqttSource>(std::move(core));
}

}  // namespace gw::ingest
