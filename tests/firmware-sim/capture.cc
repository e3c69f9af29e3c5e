// Helpers of the simulator's tests (see capture.h).
#include "tests/firmware-sim/capture.h"

#include <flatbuffers/flatbuffers.h>
#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "ingest/telemetry_generated.h"

namespace gw::firmware_sim::test {
namespace {

std::optional<Sent> parse_json(const std::string& payload) {
  const auto doc = nlohmann::ordered_json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("device") || !doc["device"].is_string() || !doc.contains("time_ms") ||
      !doc["time_ms"].is_number_integer()) {
    return std::nullopt;
  }
  Sent s;
  s.json = true;
  s.has_seq = doc.contains("seq");
  ingest::Event& e = s.event;
  e.device.value = doc["device"].get<std::string>();
  e.seq.value = doc.value("seq", std::uint64_t{0});
  e.time.ms = doc["time_ms"].get<std::int64_t>();
  e.boot_id = doc.value("boot_id", std::uint32_t{0});
  if (auto m = doc.find("metrics"); m != doc.end() && m->is_object()) {
    for (const auto& [name, value] : m->items()) e.metrics.push_back({name, value.get<double>()});
  }
  return s;
}

std::optional<Sent> parse_flatbuffer(const std::string& payload) {
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(payload.data());
  flatbuffers::Verifier verifier(bytes, payload.size());
  if (!ingest::fb::VerifyTelemetryBuffer(verifier)) return std::nullopt;
  const auto* t = ingest::fb::GetTelemetry(bytes);
  Sent s;
  s.has_seq = t->seq().has_value();  // stored also when 0 (ingest/FORMAT.md)
  ingest::Event& e = s.event;
  e.device.value = t->device_id()->str();
  e.seq.value = t->seq().value_or(0);
  e.time.ms = t->time_ms();
  e.boot_id = t->boot_id();
  if (t->metrics() != nullptr) {
    for (const auto* m : *t->metrics()) e.metrics.push_back({m->name()->str(), m->value()});
  }
  return s;
}

}  // namespace

std::optional<Sent> parse_sent(const std::string& payload) {
  auto s = !payload.empty() && payload[0] == '{' ? parse_json(payload) : parse_flatbuffer(payload);
  if (s) s->payload = payload;
  return s;
}

Capture::Capture(const std::string& broker_url, const std::string& client_id)
    : client_(std::make_unique<mqtt::async_client>(broker_url, client_id)) {
  client_->start_consuming();  // a plain test subscriber; acking on enqueue is fine here
  const auto connect = mqtt::connect_options_builder().clean_session(true).finalize();
  if (!client_->connect(connect)->wait_for(std::chrono::seconds(10)) ||
      !client_->subscribe("devices/+/telemetry", 1)->wait_for(std::chrono::seconds(10))) {
    throw std::runtime_error("test subscriber could not connect and subscribe to " + broker_url);
  }
}

Capture::~Capture() {
  try {
    client_->disconnect()->wait_for(std::chrono::seconds(5));
  } catch (const mqtt::exception&) {
    // the broker may be gone already
  }
}

std::vector<Sent> Capture::take(std::size_t count, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<Sent> out;
  std::size_t undecodable = 0;
  while (out.size() + undecodable < count && std::chrono::steady_clock::now() < deadline) {
    mqtt::const_message_ptr msg;
    if (!client_->try_consume_message_for(&msg, std::chrono::milliseconds(100)) || !msg) continue;
    if (auto s = parse_sent(msg->get_payload_str())) {
      s->topic = msg->get_topic();
      out.push_back(std::move(*s));
    } else {
      ++undecodable;
    }
  }
  undecodable_ += undecodable;
  return out;
}

std::vector<ManifestLine> read_manifest_lines(const std::filesystem::path& path, std::size_t* resent_marks) {
  std::vector<ManifestLine> lines;
  std::ifstream in(path);
  for (std::string text; std::getline(in, text);) {
    std::istringstream fields(text);
    ManifestLine line;
    std::string mark, extra;
    if (!(fields >> line.device >> line.seq >> line.boot_id) || (fields >> mark && (mark != "resent" || fields >> extra))) {
      throw std::runtime_error("manifest line is not DEVICE SEQ BOOT [resent]: " + text);
    }
    if (!mark.empty()) {
      if (resent_marks != nullptr) ++*resent_marks;
      continue;
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

std::set<Key> read_manifest_keys(const std::filesystem::path& path, std::size_t& lines, std::size_t* resent_marks) {
  std::set<Key> keys;
  const auto manifest = read_manifest_lines(path, resent_marks);
  for (const auto& line : manifest) {
    if (line.boot_id != 0) throw std::runtime_error("manifest line with a boot id in a run without: " + line.device);
    keys.emplace(line.device, line.seq);
  }
  lines = manifest.size();
  return keys;
}

std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace gw::firmware_sim::test
