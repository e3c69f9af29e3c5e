// The payload codecs: Telemetry FlatBuffers (ingest/telemetry.fbs) and the same fields as JSON
// (nlohmann-json), plus validation against limits. Pure functions; thread-safe.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <flatbuffers/util.h>
#include <nlohmann/json.hpp>

#include "ingest/event.h"
#include "ingest/telemetry_generated.h"

namespace gw::ingest {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "ingest"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::malformed: return "malformed payload";
      case errc::unsupported_version: return "unsupported schema version";
      case errc::missing_field: return "missing field";
      case errc::bad_value: return "bad value";
      case errc::oversize: return "payload too large";
      case errc::bad_timestamp: return "event time out of range";
      case errc::conflicting_duplicate: return "a stored reading's identity with other values";
      case errc::stale_sequence: return "sequence number too old to judge";
      case errc::mapping: return "payload does not fit its source mapping";
    }
    return "unknown ingest error";
  }
};

}  // namespace

const std::error_category& ingest_category() noexcept {
  static const Category category;
  return category;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), ingest_category()}; }

namespace {

std::uint64_t fnv1a(std::string_view text, std::uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

// Each metric and tag hashes on its own and the hashes are added, so the order of a payload's
// fields does not matter (JSON objects and re-encodings may reorder them). Names are unique within
// an event (decode refuses repeats), so no two items cancel out.
std::uint32_t value_digest(const Event& event) {
  std::uint64_t sum = 0;
  for (const auto& m : event.metrics) {
    sum += mix(fnv1a(m.name) ^ std::bit_cast<std::uint64_t>(m.value == 0 ? 0.0 : m.value));
  }
  for (const auto& t : event.tags) sum += mix(fnv1a(t.value, fnv1a(t.key) ^ 0x7461677300000000ull));
  const auto d = static_cast<std::uint32_t>(mix(sum + event.metrics.size() * 0x9e3779b97f4a7c15ull) >> 32);
  return d < 2 ? d + 2 : d;  // 0 and 1 mean "not known" to the buffer
}

std::vector<std::uint8_t> encode_telemetry(const Event& event) {
  flatbuffers::FlatBufferBuilder fbb(128 + 32 * event.metrics.size());
  std::vector<flatbuffers::Offset<fb::Metric>> metrics;
  metrics.reserve(event.metrics.size());
  for (const auto& m : event.metrics) {
    metrics.push_back(fb::CreateMetric(fbb, fbb.CreateString(m.name), m.value));
  }
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<fb::Tag>>> tags;
  if (!event.tags.empty()) {
    std::vector<flatbuffers::Offset<fb::Tag>> offsets;
    offsets.reserve(event.tags.size());
    for (const auto& t : event.tags) {
      offsets.push_back(fb::CreateTag(fbb, fbb.CreateString(t.key), fbb.CreateString(t.value)));
    }
    tags = fbb.CreateVector(offsets);
  }
  auto root = fb::CreateTelemetry(fbb, kTelemetrySchemaVersion, fbb.CreateString(event.device.value),
                                  event.seq.value, event.time.ms, fbb.CreateVector(metrics), tags, event.boot_id);
  fb::FinishTelemetryBuffer(fbb, root);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

namespace {

// Whether a verified FlatBuffers string is valid UTF-8 (as the FlatBuffers format requires, but the
// verifier does not check). Every text of an event ends up in JSON (/devices, /aggregates, /late,
// uplink-cat), whose writer throws on invalid UTF-8. FromUTF8 may read up to the terminating NUL,
// which the verifier guarantees, and never past it.
// `p[size]` must be a NUL (FlatBuffers strings and std::string guarantee it).
bool valid_utf8(const char* p, std::size_t size) noexcept {
  const char* end = p + size;
  while (p < end) {
    if (flatbuffers::FromUTF8(&p) < 0) return false;
  }
  return true;
}
bool valid_utf8(const flatbuffers::String* s) noexcept { return valid_utf8(s->c_str(), s->size()); }

// Whether no two entries share a name.
template <class T>
bool unique_names(const std::vector<T>& entries, std::string T::*name) {
  std::vector<std::string_view> names;
  names.reserve(entries.size());
  for (const auto& e : entries) names.emplace_back(e.*name);
  std::sort(names.begin(), names.end());
  return std::adjacent_find(names.begin(), names.end()) == names.end();
}

}  // namespace

bool valid_utf8(const std::string& s) noexcept { return valid_utf8(s.c_str(), s.size()); }

std::expected<Event, std::error_code> decode_telemetry(std::span<const std::uint8_t> bytes) {
  // VerifyTelemetryBuffer checks the file identifier too, within bounds (a short input is safe).
  flatbuffers::Verifier verifier(bytes.data(), bytes.size());
  if (!fb::VerifyTelemetryBuffer(verifier)) {
    return std::unexpected(make_error_code(errc::malformed));
  }
  const fb::Telemetry* t = fb::GetTelemetry(bytes.data());
  if (t->schema_version() > kTelemetrySchemaVersion) {
    return std::unexpected(make_error_code(errc::unsupported_version));
  }
  if (t->device_id()->size() == 0 || !t->seq().has_value() || t->time_ms() <= 0) {
    return std::unexpected(make_error_code(errc::missing_field));
  }
  if (!valid_utf8(t->device_id())) return std::unexpected(make_error_code(errc::bad_value));
  Event event{DeviceId{t->device_id()->str()}, DeviceSeq{*t->seq()}, EventTime{t->time_ms()}, {}, {}, t->boot_id()};
  if (t->metrics() != nullptr) {
    event.metrics.reserve(t->metrics()->size());
    for (const fb::Metric* m : *t->metrics()) {
      if (m->name()->size() == 0 || !valid_utf8(m->name()) || !std::isfinite(m->value())) {
        return std::unexpected(make_error_code(errc::bad_value));
      }
      event.metrics.push_back(Metric{m->name()->str(), m->value()});
    }
  }
  if (t->tags() != nullptr) {
    event.tags.reserve(t->tags()->size());
    for (const fb::Tag* tag : *t->tags()) {
      if (tag->key()->size() == 0 || !valid_utf8(tag->key()) || (tag->value() != nullptr && !valid_utf8(tag->value()))) {
        return std::unexpected(make_error_code(errc::bad_value));
      }
      event.tags.push_back(Tag{tag->key()->str(), tag->value() != nullptr ? tag->value()->str() : std::string()});
    }
  }
  // A name may appear once: the JSON form cannot carry two values of one metric or tag (its
  // objects keep one value per key), and windowing would fold both values into one window.
  if (!unique_names(event.metrics, &Metric::name) || !unique_names(event.tags, &Tag::key)) {
    return std::unexpected(make_error_code(errc::bad_value));
  }
  return event;
}

std::expected<Event, std::error_code> decode_json(std::span<const std::uint8_t> bytes) {
  // ordered_json keeps the document's order of metrics and tags (as the FlatBuffers vectors do).
  using json = nlohmann::ordered_json;
  const json doc = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::unexpected(make_error_code(errc::malformed));
  if (auto v = doc.find("schema_version"); v != doc.end()) {
    if (!v->is_number_unsigned()) return std::unexpected(make_error_code(errc::malformed));
    if (v->get<std::uint64_t>() > kTelemetrySchemaVersion) return std::unexpected(make_error_code(errc::unsupported_version));
  }
  auto device = doc.find("device");
  auto seq = doc.find("seq");
  auto time = doc.find("time_ms");
  if (device == doc.end() || seq == doc.end() || time == doc.end()) {
    return std::unexpected(make_error_code(errc::missing_field));
  }
  if (!device->is_string() || !seq->is_number_unsigned() || !time->is_number_integer()) {
    return std::unexpected(make_error_code(errc::malformed));
  }
  Event event{DeviceId{device->get<std::string>()}, DeviceSeq{seq->get<std::uint64_t>()},
              EventTime{time->get<std::int64_t>()}, {}, {}, 0};
  if (event.device.value.empty() || event.time.ms <= 0) {
    return std::unexpected(make_error_code(errc::missing_field));
  }
  if (auto m = doc.find("metrics"); m != doc.end()) {
    if (!m->is_object()) return std::unexpected(make_error_code(errc::malformed));
    for (const auto& [name, value] : m->items()) {
      if (!value.is_number()) return std::unexpected(make_error_code(errc::malformed));
      const double v = value.get<double>();
      if (name.empty() || !std::isfinite(v)) return std::unexpected(make_error_code(errc::bad_value));
      event.metrics.push_back(Metric{name, v});
    }
  }
  if (auto t = doc.find("tags"); t != doc.end()) {
    if (!t->is_object()) return std::unexpected(make_error_code(errc::malformed));
    for (const auto& [key, value] : t->items()) {
      if (!value.is_string()) return std::unexpected(make_error_code(errc::malformed));
      if (key.empty()) return std::unexpected(make_error_code(errc::bad_value));
      event.tags.push_back(Tag{key, value.get<std::string>()});
    }
  }
  if (auto b = doc.find("boot_id"); b != doc.end()) {
    if (!b->is_number_unsigned() || b->get<std::uint64_t>() > UINT32_MAX) {
      return std::unexpected(make_error_code(errc::malformed));
    }
    event.boot_id = static_cast<std::uint32_t>(b->get<std::uint64_t>());
  }
  return event;
}

std::string encode_json(const Event& event) {
  nlohmann::ordered_json doc;
  doc["device"] = event.device.value;
  doc["seq"] = event.seq.value;
  doc["time_ms"] = event.time.ms;
  doc["metrics"] = nlohmann::ordered_json::object();
  for (const auto& m : event.metrics) doc["metrics"][m.name] = m.value;
  if (!event.tags.empty()) {
    for (const auto& t : event.tags) doc["tags"][t.key] = t.value;
  }
  if (event.boot_id != 0) doc["boot_id"] = event.boot_id;
  doc["schema_version"] = kTelemetrySchemaVersion;
  return doc.dump();
}

std::optional<PayloadFormat> payload_format(std::span<const std::uint8_t> bytes) noexcept {
  if (bytes.size() >= 8 && std::memcmp(bytes.data() + 4, fb::TelemetryIdentifier(), 4) == 0) {
    return PayloadFormat::flatbuffers;
  }
  for (std::uint8_t c : bytes) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == '{') return PayloadFormat::json;
    break;
  }
  return std::nullopt;
}

std::expected<Event, std::error_code> decode_payload(std::span<const std::uint8_t> bytes) {
  const auto format = payload_format(bytes);
  if (!format) return std::unexpected(make_error_code(errc::malformed));
  return *format == PayloadFormat::flatbuffers ? decode_telemetry(bytes) : decode_json(bytes);
}

std::error_code validate(const Event& event, std::size_t payload_bytes, std::int64_t now_ms, const Limits& limits) {
  if (payload_bytes > limits.max_payload_bytes) return make_error_code(errc::oversize);
  const std::int64_t skew = event.time.ms - now_ms;
  const std::int64_t max_skew = limits.max_skew.count();
  if (skew > max_skew || skew < -max_skew) return make_error_code(errc::bad_timestamp);
  return {};
}

}  // namespace gw::ingest
