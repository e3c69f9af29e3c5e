// A local server for the tests that implements Pulsar's documented WebSocket API, the part the
// gateway uses: the producer endpoint /ws/v2/producer/persistent/{tenant}/{namespace}/{topic}
// (messages {"payload":base64,"properties":{...},"context":...,"key":...} answered
// {"result":"ok","messageId":...,"context":...} or {"result":"send-error:N","errorMsg":...,
// "context":...}) and the consumer endpoint
// /ws/v2/consumer/persistent/{tenant}/{namespace}/{topic}/{subscription} (pushes
// {"messageId","payload","properties","publishTime","redeliveryCount","key"}, takes
// {"messageId":...} acks), with token authentication (Authorization: Bearer, else HTTP 401 on the
// upgrade). It is not a Pulsar broker: topics are in-memory logs, one per path; a subscription
// starts at the topic's first message and a new connection of it redelivers what it has not acked.
//
// Fault knobs for the tests: fail the next N sends with send-error, drop a producer connection after
// it received K more messages (stored, none of them answered), reject every token.
//
// Thread-safety: every method may be called from any thread; the server runs one I/O thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gw::test {

struct PulsarWsStats {
  std::uint64_t producer_connections = 0;
  std::uint64_t consumer_connections = 0;
  std::uint64_t upgrades_rejected = 0;  // 401 (token) or 404 (bad path)
  std::uint64_t messages_received = 0;  // producer messages read
  std::uint64_t messages_stored = 0;
  std::uint64_t send_errors = 0;        // answered send-error
  std::uint64_t drops = 0;              // producer connections dropped by drop_after
  std::uint64_t unanswered = 0;         // messages stored but never answered (dropped connections)
  std::uint64_t acks_received = 0;      // consumer acks
};

struct PulsarWsStoredMessage {
  std::string message_id;
  std::string payload;  // base64, as received
  std::map<std::string, std::string> properties;
  std::string key;
};

class PulsarWsServer {
 public:
  // Listens on 127.0.0.1 (port 0: a free one). token: required bearer token; empty: none.
  static std::unique_ptr<PulsarWsServer> start(std::string token = "", int port = 0);
  ~PulsarWsServer();
  PulsarWsServer(const PulsarWsServer&) = delete;
  PulsarWsServer& operator=(const PulsarWsServer&) = delete;

  std::string url() const;  // ws://127.0.0.1:PORT
  int port() const;
  // The next n producer messages are answered send-error:3 ("injected failure") and not stored.
  void fail_next_sends(std::uint64_t n);
  // The producer connection that receives the next k messages stores them and is closed (TCP
  // reset, no close frame) without answering any of them.
  void drop_after(std::uint64_t k);
  void reject_tokens(bool on);
  // The messages stored on a topic path "tenant/namespace/topic".
  std::vector<PulsarWsStoredMessage> topic(const std::string& path) const;
  PulsarWsStats stats() const;
  // One line of JSON: the stats and the message count per topic.
  std::string stats_json() const;

  struct Impl;

 private:
  explicit PulsarWsServer(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace gw::test
