// Helpers of the simulator's tests: a subscriber on a real mosquitto that keeps every message the
// simulator publishes, decoded without the gateway's checks (ingest's decoders refuse seq 0 today),
// and a reader of the simulator's manifest.
//
// Thread-safety: one thread at a time.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ingest/event.h"

namespace mqtt {
class async_client;
}

namespace gw::firmware_sim::test {

// One message as the simulator sent it.
struct Sent {
  std::string topic;
  std::string payload;
  bool json = false;
  bool has_seq = false;  // the "seq" field is there (FlatBuffers stores it also when 0: ingest/FORMAT.md)
  ingest::Event event;
};

// Decodes a payload as the simulator writes it (a Telemetry FlatBuffer or JSON); nullopt for
// anything else (the malformed ones).
std::optional<Sent> parse_sent(const std::string& payload);

// A QoS 1 subscriber to devices/+/telemetry, connected and subscribed when the constructor returns.
class Capture {
 public:
  explicit Capture(const std::string& broker_url, const std::string& client_id = "test-capture");
  ~Capture();
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;

  // Waits (at most `timeout`) until `count` more messages came; returns the ones of them that
  // decode, in the order they arrived. undecodable() counts the others, ever.
  std::vector<Sent> take(std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  std::size_t undecodable() const { return undecodable_; }

 private:
  std::unique_ptr<mqtt::async_client> client_;
  std::size_t undecodable_ = 0;
};

struct ManifestLine {
  std::string device;
  std::uint64_t seq = 0;
  std::uint32_t boot_id = 0;
  auto operator<=>(const ManifestLine&) const = default;
};

// The manifest's lines "DEVICE SEQ BOOT" in file order; marks "DEVICE SEQ BOOT resent" are left
// out and counted in *resent_marks when given; throws std::runtime_error on another line.
std::vector<ManifestLine> read_manifest_lines(const std::filesystem::path& path, std::size_t* resent_marks = nullptr);

// A reading's identity in a run without boot ids.
using Key = std::pair<std::string, std::uint64_t>;

// The manifest's distinct (device, seq) keys, of a run without boot ids; `lines` gets the number of
// lines. Throws std::runtime_error on a line with a boot id.
std::set<Key> read_manifest_keys(const std::filesystem::path& path, std::size_t& lines,
                                 std::size_t* resent_marks = nullptr);

// The whole file.
std::string slurp(const std::filesystem::path& path);

}  // namespace gw::firmware_sim::test
