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
// Thread-safety: IpcStore may be called from any thread (requests are serialised per store);
// IpcServer serves one connection on a thread of its own.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stop_token>
#include <thread>

#include "ingest/mqtt_source.h"
#include "ingest/store.h"

namespace gw::ingest {

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
                                              std::int64_t received_ms) override;
  // Sends the worker's MQTT stats (no reply). False once the connection is gone.
  bool send_stats(const MqttStats& stats);
  // False once the gateway closed its end (or a send failed).
  bool connected() const { return connected_.load(); }

 private:
  std::expected<std::vector<std::uint8_t>, std::error_code> call(const std::vector<std::uint8_t>& frame,
                                                                 std::uint64_t id, std::stop_token stop);
  int fd_;
  std::mutex call_mutex_;  // one request at a time (replies are read by the caller)
  std::mutex send_mutex_;  // whole frames
  std::uint64_t next_id_ = 1;
  std::atomic<bool> connected_{true};
};

// Gateway side: serves one worker's connection against the gateway's own store.
class IpcServer {
 public:
  // Takes ownership of `fd` and starts serving on a thread. `store` must outlive the server.
  IpcServer(int fd, EventStore& store);
  ~IpcServer();  // stop()
  IpcServer(const IpcServer&) = delete;
  IpcServer& operator=(const IpcServer&) = delete;

  // Ends a store() waiting for room, closes the connection and joins the thread. Idempotent.
  void stop();
  // True once the worker closed its end (it exited or died).
  bool finished() const { return finished_.load(); }
  // The stats the worker sent last (zeroes before the first report).
  MqttStats last_stats() const;

 private:
  void serve();
  int fd_;
  EventStore& store_;
  std::stop_source stop_;
  std::atomic<bool> finished_{false};
  mutable std::mutex mu_;
  MqttStats stats_;
  std::thread thread_;
};

}  // namespace gw::ingest
