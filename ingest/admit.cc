#include "ingest/admit.h"

#include <algorithm>

namespace gw::ingest {

std::optional<std::string> device_from_topic(std::string_view pattern, std::string_view topic) {
  if (pattern.empty()) return std::nullopt;
  std::size_t p = 0, t = 0;
  std::optional<std::string> device;
  while (p <= pattern.size() && t <= topic.size()) {
    const std::size_t pe = std::min(pattern.find('/', p), pattern.size());
    const std::size_t te = std::min(topic.find('/', t), topic.size());
    const std::string_view plevel = pattern.substr(p, pe - p), tlevel = topic.substr(t, te - t);
    if (plevel == "{device}") {
      if (tlevel.empty()) return std::nullopt;
      device.emplace(tlevel);
    } else if (plevel != tlevel) {
      return std::nullopt;
    }
    if ((pe == pattern.size()) != (te == topic.size())) return std::nullopt;  // different depths
    if (pe == pattern.size()) return device;
    p = pe + 1;
    t = te + 1;
  }
  return std::nullopt;
}

std::expected<Admitted, std::error_code> admit(std::string_view topic, std::span<const std::uint8_t> payload,
                                               std::int64_t now_ms, const AdmitOptions& options) {
  if (payload.size() > options.limits.max_payload_bytes) return std::unexpected(make_error_code(errc::oversize));
  auto event = decode_payload(payload);
  if (!event) return std::unexpected(event.error());
  if (auto bad = validate(*event, payload.size(), now_ms, options.limits)) return std::unexpected(bad);
  Admitted a{std::move(*event), payload, {}, false};
  // The buffer keeps the canonical form, a Telemetry FlatBuffer: the payload itself when it is one
  // (already verified) and names the topic's device, else a re-encoding.
  bool canonical = payload_format(payload) == PayloadFormat::flatbuffers;
  if (auto device = device_from_topic(options.device_pattern, topic); device && *device != a.event.device.value) {
    a.device_mismatch = true;
    a.event.device.value = std::move(*device);
    canonical = false;
  }
  if (!canonical) a.encoded = encode_telemetry(a.event);
  return a;
}

std::optional<errc> rejection_of(buffer::Seq stored) {
  if (stored == buffer::kDroppedConflicting) return errc::conflicting_duplicate;
  if (stored == buffer::kDroppedStale) return errc::stale_sequence;
  return std::nullopt;
}

}  // namespace gw::ingest
