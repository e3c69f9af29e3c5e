// Sparkplug B decoding and node sessions (ingest/sparkplug.h), with the protobuf lite runtime.
// Saved BIRTHs: <state_dir>/<hex of "group/node">/NBIRTH and DBIRTH-<hex of device>, the payload
// as received, written to a temporary file, synced and renamed; a node's directory goes with its
// NDEATH. Thread-safety: one mutex around the sessions.
#include "ingest/sparkplug.h"

#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "ingest/sparkplug.pb.h"

namespace gw::ingest {
namespace {

namespace fs = std::filesystem;
using PbPayload = gw::sparkplug::Payload;
using Aliases = std::unordered_map<std::uint64_t, std::string>;

std::string hex(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) out += {kHex[c >> 4], kHex[c & 15]};
  return out;
}

std::string unhex(std::string_view s) {
  std::string out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) out += static_cast<char>(nibble(s[i]) << 4 | nibble(s[i + 1]));
  return out;
}

MapResult fail(std::string path, std::string_view what) {
  return std::unexpected(MappingFailure{errc::mapping, path + ": " + std::string(what)});
}

// The numeric value of a metric, or nullopt (text, bytes, null, no value).
std::optional<double> value_of(const PbPayload::Metric& m) {
  if (m.is_null()) return std::nullopt;
  switch (m.value_case()) {
    case PbPayload::Metric::kIntValue:
      switch (m.datatype()) {
        case gw::sparkplug::Int8: return static_cast<std::int8_t>(m.int_value());
        case gw::sparkplug::Int16: return static_cast<std::int16_t>(m.int_value());
        case gw::sparkplug::Int32: return static_cast<std::int32_t>(m.int_value());
        default: return m.int_value();
      }
    case PbPayload::Metric::kLongValue:
      if (m.datatype() == gw::sparkplug::Int64) return static_cast<double>(static_cast<std::int64_t>(m.long_value()));
      return static_cast<double>(m.long_value());
    case PbPayload::Metric::kFloatValue: return m.float_value();
    case PbPayload::Metric::kDoubleValue: return m.double_value();
    case PbPayload::Metric::kBooleanValue: return m.boolean_value() ? 1.0 : 0.0;
    default: return std::nullopt;
  }
}

std::optional<std::uint64_t> bdseq_of(const PbPayload& p) {
  for (const auto& m : p.metrics()) {
    if (m.name() != "bdSeq") continue;
    if (m.has_long_value()) return m.long_value();
    if (m.has_int_value()) return m.int_value();
  }
  return std::nullopt;
}

Aliases aliases_of(const PbPayload& p) {
  Aliases out;
  for (const auto& m : p.metrics()) {
    if (m.has_alias() && !m.name().empty()) out[m.alias()] = m.name();
  }
  return out;
}

}  // namespace

struct SparkplugSessions::State {
  struct Node {
    std::uint64_t bdseq = 0;
    Aliases aliases;
    std::unordered_map<std::string, Aliases> devices;
  };
  std::string dir;
  mutable std::mutex mu;
  std::unordered_map<std::string, Node> nodes;  // by "group/node"
  std::map<std::string, std::uint64_t> deaths;

  fs::path node_dir(const std::string& node) const { return fs::path(dir) / hex(node); }

  // Saves a BIRTH as received (synced, then renamed into place). A failure is logged: the session
  // still works until a restart.
  void save(const std::string& node, const std::string& name, std::span<const std::uint8_t> payload) const {
    if (dir.empty()) return;
    std::error_code ec;
    fs::create_directories(node_dir(node), ec);
    const fs::path to = node_dir(node) / name, tmp = node_dir(node) / (name + ".tmp");
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    bool ok = fd >= 0 && ::write(fd, payload.data(), payload.size()) == static_cast<ssize_t>(payload.size()) &&
              ::fsync(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (ok) fs::rename(tmp, to, ec);
    if (!ok || ec) spdlog::error("ingest: cannot save the Sparkplug BIRTH of {} in {}", node, dir);
  }

  void load() {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const std::string node = unhex(entry.path().filename().string());
      auto read = [](const fs::path& p) {
        std::ifstream in(p, std::ios::binary);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
      };
      PbPayload birth;
      if (!birth.ParseFromString(read(entry.path() / "NBIRTH")) || !bdseq_of(birth)) continue;
      Node& n = nodes[node];
      n.bdseq = *bdseq_of(birth);
      n.aliases = aliases_of(birth);
      for (const auto& f : fs::directory_iterator(entry.path(), ec)) {
        const std::string name = f.path().filename().string();
        PbPayload d;
        if (name.starts_with("DBIRTH-") && !name.ends_with(".tmp") && d.ParseFromString(read(f.path()))) {
          n.devices[unhex(name.substr(7))] = aliases_of(d);
        }
      }
    }
    if (!nodes.empty()) spdlog::info("ingest: {} Sparkplug node sessions read back from {}", nodes.size(), dir);
  }
};

SparkplugSessions::SparkplugSessions(std::string state_dir) : state_(std::make_unique<State>()) {
  state_->dir = std::move(state_dir);
  if (!state_->dir.empty()) state_->load();
}
SparkplugSessions::~SparkplugSessions() = default;

std::map<std::string, std::uint64_t> SparkplugSessions::deaths() const {
  std::lock_guard lock(state_->mu);
  return state_->deaths;
}

MapResult SparkplugSessions::decode(const SourceMapping& source, std::string_view topic,
                                    std::span<const std::uint8_t> payload, std::int64_t now_ms) {
  std::vector<std::string_view> levels;
  for (std::size_t start = 0;;) {
    const std::size_t slash = topic.find('/', start);
    levels.push_back(topic.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (levels.size() >= 2 && levels[1] == "STATE") return std::optional<Mapped>();  // a host application's
  if (levels.size() < 4 || levels[0] != "spBv1.0") return fail("topic", "not spBv1.0/<group>/<type>/<node>[/<device>]");
  const std::string_view type = levels[2];
  const bool device_msg = type.starts_with('D');
  if (type == "NCMD" || type == "DCMD") return std::optional<Mapped>();
  if (type != "NBIRTH" && type != "NDEATH" && type != "NDATA" && type != "DBIRTH" && type != "DDEATH" &&
      type != "DDATA") {
    return fail("topic", "not a Sparkplug B message type");
  }
  if (device_msg != (levels.size() == 5) || levels[1].empty() || levels[3].empty() || (device_msg && levels[4].empty())) {
    return fail("topic", "device messages have 5 levels, node messages 4");
  }
  PbPayload p;
  if (!p.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return std::unexpected(MappingFailure{errc::malformed, "payload: not a Sparkplug B payload"});
  }
  const std::string node = std::string(levels[1]) + "/" + std::string(levels[3]);
  const std::string device = device_msg ? std::string(levels[4]) : std::string();
  const std::string device_id = device_msg ? node + "/" + device : node;

  std::lock_guard lock(state_->mu);
  auto session = state_->nodes.find(node);
  if (type == "NDEATH" || type == "DDEATH") {
    ++state_->deaths[device_id];
    if (type == "DDEATH" && session != state_->nodes.end()) session->second.devices.erase(device);
    // An NDEATH of an older session (its will, delivered late) leaves the current one alone.
    if (type == "NDEATH" && session != state_->nodes.end() && bdseq_of(p) == session->second.bdseq) {
      state_->nodes.erase(session);
      std::error_code ec;
      if (!state_->dir.empty()) fs::remove_all(state_->node_dir(node), ec);
    }
    return std::optional<Mapped>();
  }
  if (type == "NBIRTH") {
    auto bdseq = bdseq_of(p);
    if (!bdseq) return fail("metrics.bdSeq", "missing from NBIRTH");
    std::error_code ec;
    if (!state_->dir.empty()) fs::remove_all(state_->node_dir(node), ec);  // a new session: old DBIRTHs go
    state_->save(node, "NBIRTH", payload);
    session = state_->nodes.insert_or_assign(node, State::Node{*bdseq, aliases_of(p), {}}).first;
  } else if (session == state_->nodes.end()) {
    return fail("node " + node, "no NBIRTH in this session (its aliases are unknown)");
  }
  State::Node& n = session->second;
  if (type == "DBIRTH") {
    state_->save(node, "DBIRTH-" + hex(device), payload);
    n.devices[device] = aliases_of(p);
  }
  const Aliases* aliases = &n.aliases;
  if (device_msg) {
    auto d = n.devices.find(device);
    if (d == n.devices.end()) return fail("device " + device, "no DBIRTH in this node session");
    aliases = &d->second;
  }
  if (!p.has_seq()) return fail("seq", "missing");
  if (p.seq() > 255) return fail("seq", "above 255");

  Mapped m;
  m.event.device.value = device_id;
  m.event.seq.value = p.seq();
  m.event.boot_id = static_cast<std::uint32_t>(n.bdseq % UINT32_MAX + 1);  // bdSeq 0 is a boot id too
  m.seq_bits = 8;
  m.dedup_source = node;
  if (p.has_timestamp() && p.timestamp() > 0 && p.timestamp() < (1ull << 62)) {
    m.event.time.ms = static_cast<std::int64_t>(p.timestamp());
  } else {
    m.event.time.ms = now_ms;
    m.time_from_arrival = true;
  }
  for (int i = 0; i < p.metrics_size(); ++i) {
    const auto& metric = p.metrics(i);
    std::string name = metric.name();
    if (name.empty()) {
      auto a = aliases->find(metric.alias());
      if (!metric.has_alias() || a == aliases->end()) {
        return fail("metrics." + std::to_string(i) + ".alias " + std::to_string(metric.alias()),
                    "unknown in this node session");
      }
      name = a->second;
    }
    if (metric.is_historical()) continue;  // a value of another time: not this event's
    const auto v = value_of(metric);
    if (!v || !std::isfinite(*v) || !metric_kept(source, name) || !valid_utf8(name)) continue;
    for (const Metric& seen : m.event.metrics) {
      if (seen.name == name) return fail(name, "metric named twice");
    }
    m.event.metrics.push_back(Metric{std::move(name), *v});
  }
  return std::optional<Mapped>(std::move(m));
}

std::string encode_sparkplug(const SparkplugPayload& in) {
  PbPayload p;
  if (in.timestamp) p.set_timestamp(*in.timestamp);
  if (in.seq) p.set_seq(*in.seq);
  for (const SparkplugMetric& m : in.metrics) {
    auto* out = p.add_metrics();
    if (!m.name.empty()) out->set_name(m.name);
    if (m.alias) out->set_alias(*m.alias);
    out->set_datatype(m.datatype);
    if (const double* d = std::get_if<double>(&m.value)) {
      if (m.datatype == gw::sparkplug::Float) out->set_float_value(static_cast<float>(*d));
      else out->set_double_value(*d);
    } else if (const std::int64_t* i = std::get_if<std::int64_t>(&m.value)) {
      const bool wide = m.datatype == gw::sparkplug::Int64 || m.datatype == gw::sparkplug::UInt64 ||
                        m.datatype == gw::sparkplug::DateTime;
      if (wide) out->set_long_value(static_cast<std::uint64_t>(*i));
      else out->set_int_value(static_cast<std::uint32_t>(*i));
    } else if (const bool* b = std::get_if<bool>(&m.value)) {
      out->set_boolean_value(*b);
    } else {
      out->set_string_value(std::get<std::string>(m.value));
    }
  }
  return p.SerializeAsString();
}

bool sparkplug_supported() { return true; }

}  // namespace gw::ingest
