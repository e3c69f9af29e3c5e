// The Telemetry FlatBuffer codec (ingest/telemetry.fbs). Pure functions; thread-safe.
#include <cmath>
#include <string>

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

std::vector<std::uint8_t> encode_telemetry(const Event& event) {
  flatbuffers::FlatBufferBuilder fbb(128 + 32 * event.metrics.size());
  std::vector<flatbuffers::Offset<fb::Metric>> metrics;
  metrics.reserve(event.metrics.size());
  for (const auto& m : event.metrics) {
    metrics.push_back(fb::CreateMetric(fbb, fbb.CreateString(m.name), m.value));
  }
  auto root = fb::CreateTelemetry(fbb, kTelemetrySchemaVersion, fbb.CreateString(event.device.value),
                                  event.seq.value, event.time.ms, fbb.CreateVector(metrics));
  fb::FinishTelemetryBuffer(fbb, root);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

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
  if (t->device_id()->size() == 0 || t->seq() == 0 || t->time_ms() <= 0) {
    return std::unexpected(make_error_code(errc::missing_field));
  }
  Event event{DeviceId{t->device_id()->str()}, DeviceSeq{t->seq()}, EventTime{t->time_ms()}, {}};
  if (t->metrics() != nullptr) {
    event.metrics.reserve(t->metrics()->size());
    for (const fb::Metric* m : *t->metrics()) {
      if (m->name()->size() == 0 || !std::isfinite(m->value())) {
        return std::unexpected(make_error_code(errc::bad_value));
      }
      event.metrics.push_back(Metric{m->name()->str(), m->value()});
    }
  }
  return event;
}

}  // namespace gw::ingest
