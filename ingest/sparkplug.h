// Sparkplug B sources (preset "sparkplug"): protobuf payloads on spBv1.0/<group>/<type>/<node>[/<device>].
//
// An edge node's session starts with its NBIRTH (metric "bdSeq" names the session) and its devices'
// DBIRTHs, which give each metric's name and alias; NDATA and DDATA then name metrics by alias. The
// sessions are kept here, and each BIRTH as received is saved under the state directory, so that a
// restarted gateway reads the aliases again (a node does not send a BIRTH again unless asked). A
// DATA message whose alias (or device, or node session) is unknown is refused (errc::mapping, the
// detail names it), never guessed. NDEATH (of the current bdSeq) ends the session; NDEATH and DDEATH
// are counted per device (deaths()).
//
// Identity: seq is the node's 8-bit counter, shared by all its messages, so dedup is per node
// (Mapped::dedup_source = "<group>/<node>") with boot id bdSeq + 1; the event's device is
// "<group>/<node>" (N messages) or "<group>/<node>/<device>" (D messages).
//
// Thread-safety: every member may be called from any thread (one mutex).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ingest/mapping.h"

namespace gw::ingest {

class SparkplugSessions {
 public:
  // `state_dir` empty: nothing saved (a restart forgets the aliases).
  explicit SparkplugSessions(std::string state_dir);
  ~SparkplugSessions();

  // Decodes one message of a Sparkplug source; `source` gives the include/exclude lists. nullopt
  // (not an event): DEATH, NCMD, DCMD and STATE messages.
  [[nodiscard]] MapResult decode(const SourceMapping& source, std::string_view topic,
                                 std::span<const std::uint8_t> payload, std::int64_t now_ms);
  // NDEATH and DDEATH messages received, per device ("<group>/<node>[/<device>]").
  std::map<std::string, std::uint64_t> deaths() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A Sparkplug B payload, for the simulator, the tests and the benchmark (encode_sparkplug).
struct SparkplugMetric {
  std::string name;                  // empty: named by alias only
  std::optional<std::uint64_t> alias;
  std::uint32_t datatype = 10;       // Double
  std::variant<double, std::int64_t, bool, std::string> value = 0.0;
};
struct SparkplugPayload {
  std::optional<std::uint64_t> timestamp;
  std::optional<std::uint64_t> seq;
  std::vector<SparkplugMetric> metrics;
};
// The protobuf bytes of `payload` (int datatypes 1-3, 5-7 as int_value, 4, 8, 13 as long_value).
std::string encode_sparkplug(const SparkplugPayload& payload);

}  // namespace gw::ingest
