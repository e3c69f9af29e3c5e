// The mapping engine: a SourceMapping compiled once (paths split, references parsed), then applied
// to each JSON payload of its topics. Payloads are parsed with RapidJSON (an in-situ DOM, UTF-8
// validated): a LoRaWAN network server's uplink is two to three times the size of our native JSON,
// and nlohmann-json's parser made a mapped message cost 1.8 to 2.4 times a native one
// (bench-ingest). Immutable after compile(); thread-safe.
#include "ingest/mapping.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <rapidjson/document.h>

#include "ingest/sparkplug.h"

namespace gw::ingest {
namespace {

using json = rapidjson::Value;

constexpr std::size_t kMaxMetrics = 1024;  // per message; more is a mapping failure

// The parts of `text` between `sep`s (one empty part for an empty text).
template <class Part>
std::vector<Part> split(std::string_view text, char sep) {
  std::vector<Part> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = text.find(sep, start);
    out.emplace_back(text.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

// A dotted payload path's levels; "" (the root) has none.
std::vector<std::string> split_path(std::string_view path) {
  return path.empty() ? std::vector<std::string>{} : split<std::string>(path, '.');
}

std::vector<std::string_view> topic_levels(std::string_view topic) { return split<std::string_view>(topic, '/'); }

// A field reference ("topic:N", "payload:PATH", "client_id") or, where allowed, fixed text.
struct Ref {
  enum class Kind { none, topic, payload, client_id, text } kind = Kind::none;
  std::size_t level = 0;
  std::string path;  // as written, for failures
  std::vector<std::string> segments;
  std::string text;
};

std::optional<Ref> parse_ref(std::string_view s, bool text_allowed) {
  Ref r;
  if (s.empty()) return r;
  if (s.starts_with("topic:")) {
    const std::string_view n = s.substr(6);
    auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), r.level);
    if (ec != std::errc{} || p != n.data() + n.size() || r.level > 64) return std::nullopt;
    r.kind = Ref::Kind::topic;
    r.path = std::string(s);
    return r;
  }
  if (s.starts_with("payload:")) {
    r.kind = Ref::Kind::payload;
    r.path = std::string(s.substr(8));
    r.segments = split_path(r.path);
    if (std::ranges::any_of(r.segments, [](const std::string& seg) { return seg.empty(); })) return std::nullopt;
    return r;
  }
  if (s == "client_id") {
    r.kind = Ref::Kind::client_id;
    r.path = "client_id";
    return r;
  }
  if (!text_allowed) return std::nullopt;
  r.kind = Ref::Kind::text;
  r.text = std::string(s);
  return r;
}

// The node at `segments` under `root`, or nullptr. (RapidJSON finds a repeated key's first value.)
const json* find(const json& root, const std::vector<std::string>& segments) {
  const json* at = &root;
  for (const std::string& seg : segments) {
    if (at->IsObject()) {
      auto it = at->FindMember(rapidjson::StringRef(seg.data(), static_cast<rapidjson::SizeType>(seg.size())));
      if (it == at->MemberEnd()) return nullptr;
      at = &it->value;
    } else if (at->IsArray()) {
      std::size_t i = 0;
      auto [p, ec] = std::from_chars(seg.data(), seg.data() + seg.size(), i);
      if (ec != std::errc{} || p != seg.data() + seg.size() || i >= at->Size()) return nullptr;
      at = &(*at)[static_cast<rapidjson::SizeType>(i)];
    } else {
      return nullptr;
    }
  }
  return at;
}

std::string_view text_of(const json& v) { return {v.GetString(), v.GetStringLength()}; }

bool pattern_matches(const std::string& pattern, std::string_view name) {
  if (!pattern.empty() && pattern.back() == '*') return name.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1));
  return pattern == name;
}

// A Sparkplug source: protocol decoding, not paths.
std::optional<MappingError> check_sparkplug(std::size_t i, const SourceMapping& s) {
  if (!sparkplug_supported()) return MappingError{i, "preset", "this build has no Sparkplug B (GW_SPARKPLUG=OFF)"};
  if (s.topic.empty()) return MappingError{i, "topic", "is required (an MQTT topic filter)"};
  return std::nullopt;
}

}  // namespace

std::uint32_t text_boot_id(std::string_view text) {
  std::uint32_t h = 2166136261u;
  for (unsigned char c : text) h = (h ^ c) * 16777619u;
  return h == 0 ? 1 : h;
}

struct Mapper::Compiled {
  SourceMapping source;
  Ref device, time, seq, boot, when;
  std::optional<LocalZone> zone;
  std::vector<std::vector<std::string>> metric_paths;
  std::vector<std::pair<std::string, Ref>> tags;
};

Mapper::~Mapper() = default;
std::size_t Mapper::size() const { return sources_.size(); }

bool metric_kept(const SourceMapping& s, std::string_view name) {
  if (!s.include.empty() && std::ranges::none_of(s.include, [&](const std::string& p) { return pattern_matches(p, name); })) {
    return false;
  }
  return std::ranges::none_of(s.exclude, [&](const std::string& p) { return pattern_matches(p, name); });
}

std::map<std::string, std::uint64_t> Mapper::sparkplug_deaths() const {
  return sparkplug_ ? sparkplug_->deaths() : std::map<std::string, std::uint64_t>{};
}

std::expected<std::shared_ptr<const Mapper>, MappingError> Mapper::compile(const std::vector<SourceMapping>& sources,
                                                                           const std::string& state_dir) {
  std::shared_ptr<Mapper> mapper(new Mapper());
  for (std::size_t i = 0; i < sources.size(); ++i) {
    const SourceMapping& s = sources[i];
    auto fail = [i](std::string key, std::string message) {
      return std::unexpected(MappingError{i, std::move(key), std::move(message)});
    };
    auto c = std::make_unique<Compiled>();
    c->source = s;
    if (s.decoder == SourceMapping::Decoder::sparkplug) {
      if (auto e = check_sparkplug(i, s)) return std::unexpected(*e);
      if (!mapper->sparkplug_) mapper->sparkplug_ = std::make_unique<SparkplugSessions>(state_dir);
      mapper->sources_.push_back(std::move(c));
      continue;
    }
    if (s.topic.empty()) return fail("topic", "is required (an MQTT topic filter)");
    for (std::size_t p = s.topic.find('#'); p != std::string::npos; p = std::string::npos) {
      if (p + 1 != s.topic.size() || (p > 0 && s.topic[p - 1] != '/')) return fail("topic", "'#' only as the last level");
    }
    auto device = parse_ref(s.device, false);
    if (!device || device->kind == Ref::Kind::none) {
      return fail("device", "expected \"topic:N\", \"payload:PATH\" or \"client_id\"");
    }
    c->device = *device;
    auto payload_ref = [&](const std::string& text, const char* key, Ref& out) -> std::optional<MappingError> {
      auto r = parse_ref(text, false);
      if (!r || (r->kind != Ref::Kind::none && r->kind != Ref::Kind::payload)) {
        return MappingError{i, key, "expected \"payload:PATH\" (or nothing)"};
      }
      out = *r;
      return std::nullopt;
    };
    if (auto e = payload_ref(s.time, "time", c->time)) return std::unexpected(*e);
    if (auto e = payload_ref(s.seq, "seq", c->seq)) return std::unexpected(*e);
    if (auto e = payload_ref(s.boot, "boot", c->boot)) return std::unexpected(*e);
    if (auto e = payload_ref(s.when, "when", c->when)) return std::unexpected(*e);
    if (c->when.kind != Ref::Kind::none && s.when_values.empty()) return fail("when_values", "must not be empty with when");
    if (s.time_format == TimeForm::local) {
      c->zone = parse_zone(s.time_zone);
      if (!c->zone) return fail("time_zone", "expected \"UTC\", an offset such as \"+01:00\", or \"gateway\"");
    }
    if (s.seq_bits != 8 && s.seq_bits != 16 && s.seq_bits != 32 && s.seq_bits != 64) {
      return fail("seq_bits", "must be 8, 16, 32 or 64");
    }
    if (s.metrics.empty()) return fail("metrics", "must not be empty (\"\" is the whole payload)");
    for (const std::string& m : s.metrics) {
      c->metric_paths.push_back(split_path(m));
      if (std::ranges::any_of(c->metric_paths.back(), [](const std::string& seg) { return seg.empty(); })) {
        return fail("metrics", "empty level in path \"" + m + "\"");
      }
    }
    if (s.separator.empty()) return fail("separator", "must not be empty");
    for (const auto& [key, value] : s.tags) {
      auto r = parse_ref(value, true);
      if (key.empty() || !r || r->kind == Ref::Kind::none) return fail("tags", "bad tag \"" + key + "\"");
      c->tags.emplace_back(key, std::move(*r));
    }
    mapper->sources_.push_back(std::move(c));
  }
  return mapper;
}

const Mapper::Compiled* Mapper::match(std::string_view topic) const {
  for (const auto& c : sources_) {
    if (topic_matches(c->source.topic, topic)) return c.get();
  }
  return nullptr;
}

namespace {

MappingFailure failure(std::string path, std::string_view what) { return {errc::mapping, path + ": " + std::string(what)}; }

// A reference's text: a topic level, a payload string (or number), the client id, or fixed text.
std::expected<std::string, MappingFailure> ref_text(const Ref& r, const std::vector<std::string_view>& levels,
                                                    std::string_view client_id, const json& doc) {
  switch (r.kind) {
    case Ref::Kind::topic:
      if (r.level >= levels.size() || levels[r.level].empty()) return std::unexpected(failure(r.path, "no such topic level"));
      return std::string(levels[r.level]);
    case Ref::Kind::client_id:
      if (client_id.empty()) return std::unexpected(failure("client_id", "not known in this ingest mode"));
      return std::string(client_id);
    case Ref::Kind::text: return r.text;
    case Ref::Kind::payload: {
      const json* v = find(doc, r.segments);
      if (v == nullptr) return std::unexpected(failure(r.path, "missing"));
      if (v->IsString()) return std::string(text_of(*v));
      if (v->IsUint64()) return std::to_string(v->GetUint64());
      if (v->IsInt64()) return std::to_string(v->GetInt64());
      return std::unexpected(failure(r.path, "expected a string"));
    }
    case Ref::Kind::none: break;
  }
  return std::unexpected(failure(r.path, "no value"));
}

std::expected<std::int64_t, MappingFailure> time_of(const json& v, const Mapper::Compiled& c) {
  const std::string& path = c.time.path;
  TimeForm form = c.source.time_format;
  if (form == TimeForm::automatic) form = v.IsString() ? TimeForm::rfc3339 : TimeForm::epoch_ms;
  if (form == TimeForm::rfc3339 || form == TimeForm::local) {
    if (!v.IsString()) return std::unexpected(failure(path, "expected a date-time text"));
    auto ms = parse_iso8601(text_of(v), form == TimeForm::local ? c.zone : std::nullopt);
    if (!ms) return std::unexpected(failure(path, form == TimeForm::local ? "not an ISO 8601 date-time" : "not an RFC 3339 date-time"));
    return *ms;
  }
  if (!v.IsNumber()) return std::unexpected(failure(path, "expected a number"));
  const double scale = form == TimeForm::epoch_s ? 1000.0 : form == TimeForm::epoch_us ? 0.001 : 1.0;
  if (v.IsInt64() && form == TimeForm::epoch_ms) return v.GetInt64();
  const double ms = v.GetDouble() * scale;
  if (!std::isfinite(ms) || std::fabs(ms) > 9.0e15) return std::unexpected(failure(path, "out of range"));
  return static_cast<std::int64_t>(std::llround(ms));
}

// Adds the numeric (and boolean) leaves under `v` as metrics named `prefix`.
std::optional<MappingFailure> flatten(const json& v, std::string& name, const Mapper::Compiled& c,
                                      std::vector<Metric>& out) {
  if (v.IsNumber() || v.IsBool()) {
    if (name.empty() || !metric_kept(c.source, name)) return std::nullopt;
    if (out.size() >= kMaxMetrics) return failure(name, "more than 1024 metrics");
    const double value = v.IsBool() ? (v.GetBool() ? 1.0 : 0.0) : v.GetDouble();
    if (!std::isfinite(value)) return failure(name, "not a finite number");
    out.push_back(Metric{name, value});
    return std::nullopt;
  }
  const std::size_t base = name.size();
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      if (base != 0) name += c.source.separator;
      name += text_of(it->name);
      if (auto f = flatten(it->value, name, c, out)) return f;
      name.resize(base);
    }
  } else if (v.IsArray()) {
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
      if (base != 0) name += c.source.separator;
      name += std::to_string(i);
      if (auto f = flatten(v[i], name, c, out)) return f;
      name.resize(base);
    }
  }
  return std::nullopt;  // text and null are not readings
}

}  // namespace

MapResult Mapper::decode(const Compiled& c, std::string_view topic, std::string_view client_id,
                         std::span<const std::uint8_t> payload, std::int64_t now_ms) const {
  if (c.source.decoder == SourceMapping::Decoder::sparkplug) return sparkplug_->decode(c.source, topic, payload, now_ms);
  rapidjson::Document doc;
  // UTF-8 validated; no NaN or Infinity (not JSON). Not kParseFullPrecisionFlag: its path through
  // internal::DiyFp calls clz(0) on some inputs in RapidJSON 1.1.0 (UBSan, fuzz_mapping); the default
  // path is within 3 ULP of the nearest double.
  doc.Parse<rapidjson::kParseValidateEncodingFlag>(
      reinterpret_cast<const char*>(payload.data()), payload.size());
  if (doc.HasParseError()) return std::unexpected(MappingFailure{errc::malformed, "payload: not JSON"});
  if (c.when.kind == Ref::Kind::payload) {
    const json* w = find(doc, c.when.segments);
    if (w == nullptr || !w->IsString() ||
        std::ranges::find(c.source.when_values, text_of(*w)) == c.source.when_values.end()) {
      return std::optional<Mapped>();
    }
  }
  const auto levels = topic_levels(topic);
  Mapped m;
  m.seq_bits = c.source.seq_bits;
  auto device = ref_text(c.device, levels, client_id, doc);
  if (!device) return std::unexpected(device.error());
  if (device->empty() || device->size() > 255 || !valid_utf8(*device)) return std::unexpected(failure(c.device.path, "not a usable device id"));
  m.event.device.value = std::move(*device);

  const json* t = c.time.kind == Ref::Kind::payload ? find(doc, c.time.segments) : nullptr;
  if (t == nullptr && c.source.time_required) return std::unexpected(failure(c.time.path, "missing"));
  if (t != nullptr) {
    auto ms = time_of(*t, c);
    if (!ms) return std::unexpected(ms.error());
    m.event.time.ms = *ms;
  } else {
    m.event.time.ms = now_ms;
    m.time_from_arrival = true;
  }
  if (m.event.time.ms <= 0) return std::unexpected(failure(c.time.kind == Ref::Kind::none ? "arrival" : c.time.path, "not after 1970"));

  if (c.seq.kind == Ref::Kind::payload) {
    const json* s = find(doc, c.seq.segments);
    if (s == nullptr && !c.source.seq_missing_is_zero) return std::unexpected(failure(c.seq.path, "missing"));
    if (s != nullptr && !s->IsUint64()) return std::unexpected(failure(c.seq.path, "expected an unsigned integer"));
    const std::uint64_t seq = s == nullptr ? 0 : s->GetUint64();
    if (c.source.seq_bits < 64 && seq >> c.source.seq_bits != 0) {
      return std::unexpected(failure(c.seq.path, "wider than seq_bits"));
    }
    m.event.seq.value = seq;
  } else {
    m.event.seq.value = static_cast<std::uint64_t>(m.event.time.ms);  // identity by event time
    m.seq_bits = 64;
    m.counter = false;
  }
  if (c.boot.kind == Ref::Kind::payload) {
    if (const json* b = find(doc, c.boot.segments); b != nullptr) {
      if (b->IsUint64()) {
        const std::uint64_t v = b->GetUint64();
        m.event.boot_id = static_cast<std::uint32_t>(v <= UINT32_MAX ? v : v % UINT32_MAX + 1);
      } else if (b->IsString()) {
        m.event.boot_id = text_boot_id(text_of(*b));
      } else {
        return std::unexpected(failure(c.boot.path, "expected an integer or a text"));
      }
    }
  }
  std::string name;
  for (std::size_t i = 0; i < c.metric_paths.size(); ++i) {
    const json* root = find(doc, c.metric_paths[i]);
    if (root == nullptr) return std::unexpected(failure(c.source.metrics[i].empty() ? "payload" : c.source.metrics[i], "missing"));
    name.clear();
    if (auto f = flatten(*root, name, c, m.event.metrics)) return std::unexpected(*f);
  }
  // Excludes on the time and seq fields are the user's; a root mapping would otherwise read an
  // epoch time or a counter as a metric. Names must be unique (two metric paths may overlap).
  std::vector<std::string_view> names;
  names.reserve(m.event.metrics.size());
  for (const Metric& x : m.event.metrics) names.emplace_back(x.name);
  std::ranges::sort(names);
  if (auto dup = std::ranges::adjacent_find(names); dup != names.end()) {
    return std::unexpected(failure(std::string(*dup), "metric named twice"));
  }
  for (const auto& [key, ref] : c.tags) {
    auto v = ref_text(ref, levels, client_id, doc);
    if (v && valid_utf8(*v)) m.event.tags.push_back(Tag{key, std::move(*v)});  // an absent tag is left out
  }
  return std::optional<Mapped>(std::move(m));
}

bool topic_matches(std::string_view filter, std::string_view topic) {
  const auto f = topic_levels(filter), t = topic_levels(topic);
  if (!topic.empty() && topic.front() == '$' && !filter.empty() && (filter.front() == '+' || filter.front() == '#')) {
    return false;  // MQTT: wildcards at the first level do not match $SYS and the like
  }
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i] == "#") return true;
    if (i >= t.size()) return false;
    if (f[i] != "+" && f[i] != t[i]) return false;
  }
  return f.size() == t.size();
}

}  // namespace gw::ingest
