// Local IPC between ingest worker processes and the gateway's one buffer writer.
//
// Why: Paho MQTT C runs the message callbacks of every client in a process on one thread under
// one global mutex, so several MQTT sessions in one process never overlap and each synced commit
// holds one message. With [mqtt] sessions > 1 the gateway runs that many worker processes (each
// with its own Paho runtime and MQTT session on a shared subscription); a worker's callback sends
// the accepted record here and waits for the reply, which the gateway sends once the record is
// committed (concurrent requests of all workers share group commits). Only then does the callback
// return and Paho send the PUBACK. A worker that dies loses nothing: what it had not acknowledged
// the broker redelivers, and the buffer drops what was already stored (dedup).
//
// Transport: a connected AF_UNIX stream socket (socketpair before the worker is spawned). Frames:
// u32 little-endian length of the rest, u8 version (1), u8 type, body (ipc.cc documents bodies).
//
// Gateway side: one IpcHub thread serves every worker's connection. What arrives together (one
// request per worker at most, since a worker waits for its reply) is stored with one
// EventStore::store_batch call: one transaction and one sync for all of them, and no thread
// hand-off per message (measured: bench-ingest, README "Performance").
//
// Thread-safety: IpcStore may be called from any thread (requests are serialised per store);
// IpcHub's members may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>
#include <vector>

#include "ingest/mqtt_source.h"
#include "ingest/store.h"

namespace gw::ingest {

class IpcFrames;  // ipc.cc: received bytes not yet consumed as frames

// Worker side: an EventStore whose records go to the gateway process.
class IpcStore final : public EventStore {
 public:
  // Takes ownership of `fd`, a connected stream socket.
  explicit IpcStore(int fd);
  ~IpcStore() override;
  IpcStore(const IpcStore&) = delete;
  IpcStore& operator=(const IpcStore&) = delete;

  // Returns once the gateway committed the record (or dropped it as a duplicate). A closed
  // connection is std::errc::connection_reset (the worker should exit; nothing was acknowledged).
  std::expected<buffer::Seq, std::error_code> store(const buffer::RecordIn& record, std::stop_token stop) override;
  std::expected<void, std::error_code> reject(std::string_view topic, errc reason, std::span<const std::uint8_t> payload,
                                              std::int64_t received_ms, std::string_view detail = {}) override;
  // Sends the worker's MQTT stats (no reply). False once the connection is gone.
  bool send_stats(const MqttStats& stats);
  // False once the gateway closed its end (or a send failed).
  bool connected() const { return connected_.load(); }

 private:
  std::expected<std::vector<std::uint8_t>, std::error_code> call(const std::vector<std::uint8_t>& frame,
                                                                 std::uint64_t id, std::stop_token stop);
  int fd_;
  std::unique_ptr<IpcFrames> in_;  // read by the caller holding call_mutex_
  std::mutex call_mutex_;  // one request at a time (replies are read by the caller)
  std::mutex send_mutex_;  // whole frames
  std::uint64_t next_id_ = 1;
  std::atomic<bool> connected_{true};
};

// Gateway side: serves the connections of all workers against the gateway's own store.
class IpcHub {
 public:
  using Id = std::uint64_t;
  // Starts the serving thread. `store` must outlive the hub. `gather`: how long a round may wait,
  // once a request is in, for as many requests as recent rounds held (with durability fsync: one
  // sync for all of them; buffer.group_commit_wait). 0: store what is there at once.
  explicit IpcHub(EventStore& store, std::chrono::microseconds gather = {});
  ~IpcHub();  // stop()
  IpcHub(const IpcHub&) = delete;
  IpcHub& operator=(const IpcHub&) = delete;

  // Serves a connected stream socket (ownership taken) from now on.
  Id add(int fd);
  // Stops serving a connection and closes it (requests not yet stored get no reply, so their
  // worker never acknowledges them). Returns the stats its worker sent last.
  MqttStats remove(Id id);
  // True once the worker closed its end (it exited or died), or for an unknown id.
  bool finished(Id id) const;
  // The stats the worker sent last (zeroes before the first report).
  MqttStats last_stats(Id id) const;
  // Ends a store waiting for room, closes every connection and joins the thread. Idempotent.
  void stop();

 private:
  struct Conn;
  struct Pending;
  void serve();
  bool read_from(Conn& c, std::vector<Pending>& batch);
  void store_batch(std::vector<Pending>& batch);
  void wake();

  EventStore& store_;
  const std::chrono::microseconds gather_;
  std::size_t recent_batch_ = 1;  // the serving thread's: the largest recent round, decaying
  std::stop_source stop_;
  int wake_[2] = {-1, -1};  // a pipe: add/remove/stop interrupt the thread's poll
  mutable std::mutex mu_;
  std::map<Id, std::shared_ptr<Conn>> conns_;
  Id next_id_ = 1;
  std::thread thread_;
};

}  // namespace gw::ingest
