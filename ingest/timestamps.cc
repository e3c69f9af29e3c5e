// Date-time texts of mapped sources (ingest/mapping.h): ISO 8601 / RFC 3339 with or without an
// offset, and the zones a local time may be given in. Pure functions; thread-safe (the gateway's
// zone goes through mktime, which glibc serialises).
#include <chrono>
#include <ctime>

#include "ingest/mapping.h"

namespace gw::ingest {
namespace {

// Reads exactly `n` digits at `pos`.
std::optional<int> digits(std::string_view s, std::size_t& pos, std::size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  int v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[pos + i];
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  pos += n;
  return v;
}

// "+hh:mm", "+hhmm", "+hh", "Z" at `pos`, to the end of the text.
std::optional<std::int64_t> offset_at(std::string_view s, std::size_t pos) {
  if (pos >= s.size()) return std::nullopt;
  if (s[pos] == 'Z' || s[pos] == 'z') return pos + 1 == s.size() ? std::optional<std::int64_t>(0) : std::nullopt;
  if (s[pos] != '+' && s[pos] != '-') return std::nullopt;
  const int sign = s[pos] == '-' ? -1 : 1;
  ++pos;
  auto h = digits(s, pos, 2);
  if (!h) return std::nullopt;
  int m = 0;
  if (pos < s.size()) {
    if (s[pos] == ':') ++pos;
    auto mm = digits(s, pos, 2);
    if (!mm) return std::nullopt;
    m = *mm;
  }
  if (pos != s.size() || *h > 23 || m > 59) return std::nullopt;
  return sign * (std::int64_t{*h} * 3600000 + std::int64_t{m} * 60000);
}

}  // namespace

std::optional<LocalZone> parse_zone(std::string_view text) {
  if (text == "UTC" || text == "Z") return LocalZone{};
  if (text == "gateway") return LocalZone{0, true};
  auto off = offset_at(text, 0);
  if (!off || text == "z") return std::nullopt;
  return LocalZone{*off, false};
}

std::optional<std::int64_t> parse_iso8601(std::string_view s, std::optional<LocalZone> zone) {
  std::size_t pos = 0;
  auto year = digits(s, pos, 4);
  if (!year || pos >= s.size() || s[pos++] != '-') return std::nullopt;
  auto month = digits(s, pos, 2);
  if (!month || pos >= s.size() || s[pos++] != '-') return std::nullopt;
  auto day = digits(s, pos, 2);
  if (!day || pos >= s.size() || (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ')) return std::nullopt;
  ++pos;
  auto hour = digits(s, pos, 2);
  if (!hour || pos >= s.size() || s[pos++] != ':') return std::nullopt;
  auto minute = digits(s, pos, 2);
  if (!minute || pos >= s.size() || s[pos++] != ':') return std::nullopt;
  auto second = digits(s, pos, 2);
  if (!second) return std::nullopt;
  std::int64_t frac_ms = 0;
  if (pos < s.size() && (s[pos] == '.' || s[pos] == ',')) {
    ++pos;
    std::size_t n = 0;
    std::int64_t scale = 100;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (n < 3) frac_ms += (s[pos] - '0') * scale, scale /= 10;
      ++pos;
      ++n;
    }
    if (n == 0 || n > 9) return std::nullopt;
  }
  const std::chrono::year_month_day ymd{std::chrono::year(*year), std::chrono::month(static_cast<unsigned>(*month)),
                                        std::chrono::day(static_cast<unsigned>(*day))};
  if (!ymd.ok() || *hour > 23 || *minute > 59 || *second > 60) return std::nullopt;  // 60: a leap second
  const std::int64_t days = std::chrono::sys_days(ymd).time_since_epoch().count();
  const std::int64_t wall = ((days * 24 + *hour) * 60 + *minute) * 60000 + std::int64_t{*second} * 1000 + frac_ms;
  if (pos < s.size()) {
    auto off = offset_at(s, pos);
    if (!off) return std::nullopt;
    return wall - *off;
  }
  if (!zone) return std::nullopt;
  if (!zone->gateway) return wall - zone->offset_ms;
  std::tm tm{};
  tm.tm_year = *year - 1900;
  tm.tm_mon = *month - 1;
  tm.tm_mday = *day;
  tm.tm_hour = *hour;
  tm.tm_min = *minute;
  tm.tm_sec = *second;
  tm.tm_isdst = -1;
  const std::time_t t = std::mktime(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return static_cast<std::int64_t>(t) * 1000 + frac_ms;
}

}  // namespace gw::ingest
