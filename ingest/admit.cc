#include "ingest/admit.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

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

namespace {

std::unexpected<Rejection> rejected(errc reason, std::string detail = {}) {
  return std::unexpected(Rejection{make_error_code(reason), std::move(detail)});
}

// A mapped source's message: the mapping makes the event; the buffer keeps its canonical form.
std::expected<Admitted, Rejection> admit_mapped(const Mapper& mapper, const Mapper::Compiled& source,
                                                std::string_view topic, std::span<const std::uint8_t> payload,
                                                std::int64_t now_ms, const AdmitOptions& options,
                                                std::string_view client_id) {
  auto mapped = mapper.decode(source, topic, client_id, payload, now_ms);
  if (!mapped) return rejected(mapped.error().reason, std::move(mapped.error().path));
  if (!*mapped) return std::unexpected(Rejection{});  // not an event of this source
  Mapped& m = **mapped;
  if (auto bad = validate(m.event, payload.size(), now_ms, options.limits)) return std::unexpected(Rejection{bad, {}});
  Admitted a{std::move(m.event), payload, {}, false, m.seq_bits, m.counter, m.time_from_arrival,
             std::move(m.dedup_source)};
  a.encoded = encode_telemetry(a.event);
  return a;
}

}  // namespace

std::expected<Admitted, Rejection> admit(std::string_view topic, std::span<const std::uint8_t> payload,
                                         std::int64_t now_ms, const AdmitOptions& options,
                                         std::string_view client_id) {
  if (payload.size() > options.limits.max_payload_bytes) return rejected(errc::oversize);
  if (options.mapper) {
    if (const auto* source = options.mapper->match(topic)) {
      return admit_mapped(*options.mapper, *source, topic, payload, now_ms, options, client_id);
    }
  }
  auto event = decode_payload(payload);
  if (!event) return std::unexpected(Rejection{event.error(), {}});
  if (auto bad = validate(*event, payload.size(), now_ms, options.limits)) return std::unexpected(Rejection{bad, {}});
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

std::shared_ptr<const Mapper> compile_sources(const std::vector<SourceMapping>& sources, const std::string& state_dir) {
  if (sources.empty()) return nullptr;
  auto mapper = Mapper::compile(sources, state_dir);
  if (!mapper) {
    std::fprintf(stderr, "ingest: source %zu, key %s: %s (the config should have refused it)\n", mapper.error().index,
                 mapper.error().key.c_str(), mapper.error().message.c_str());
    std::abort();
  }
  return *mapper;
}

std::optional<errc> rejection_of(buffer::Seq stored) {
  if (stored == buffer::kDroppedConflicting) return errc::conflicting_duplicate;
  if (stored == buffer::kDroppedStale) return errc::stale_sequence;
  return std::nullopt;
}

}  // namespace gw::ingest
