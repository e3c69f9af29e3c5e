// Metric sources for the simulator (see metrics.h). Not thread-safe (one publisher thread).
#include "firmware-sim/metrics.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>

namespace gw::firmware_sim {
namespace {

constexpr std::array<const char*, 4> kNames{"temperature", "humidity", "light", "voltage"};

// A reading: the four metrics, each present or not (mote 28's file has an empty light column).
using Row = std::array<std::optional<double>, 4>;

std::vector<ingest::Metric> to_metrics(const Row& row) {
  std::vector<ingest::Metric> out;
  out.reserve(row.size());
  for (std::size_t i = 0; i < row.size(); ++i) {
    if (row[i]) out.push_back({kNames[i], *row[i]});
  }
  return out;
}

bool parse_double(std::string_view text, double& out) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return !text.empty() && ec == std::errc() && ptr == end && std::isfinite(out);
}

// One row of a mote file: "date time epoch moteid temperature humidity light voltage", fields
// separated by single spaces (an empty field = two spaces). Metrics that are empty or unparsable
// are left out; nullopt if the row has none or not all eight columns.
std::optional<Row> parse_row(std::string_view line) {
  std::vector<std::string_view> fields;
  while (true) {
    const auto sp = line.find(' ');
    fields.push_back(line.substr(0, sp));
    if (sp == std::string_view::npos) break;
    line.remove_prefix(sp + 1);
  }
  if (fields.size() != 8) return std::nullopt;
  Row row{};
  bool any = false;
  for (std::size_t i = 0; i < row.size(); ++i) {
    double v = 0;
    if (parse_double(fields[4 + i], v)) {
      row[i] = v;
      any = true;
    }
  }
  if (!any) return std::nullopt;
  return row;
}

std::vector<Row> load_rows(const std::filesystem::path& file) {
  std::vector<Row> rows;
  std::ifstream in(file);
  std::string line;
  std::uint64_t skipped = 0;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (auto row = parse_row(line)) {
      rows.push_back(*row);
    } else {
      ++skipped;
    }
  }
  spdlog::debug("firmware-sim: {}: {} rows, {} skipped", file.string(), rows.size(), skipped);
  return rows;
}

class IntelLabSource final : public MetricSource {
 public:
  explicit IntelLabSource(std::vector<std::vector<Row>> files) : files_(std::move(files)) {}

  std::vector<ingest::Metric> next(std::size_t device) override {
    const auto& rows = files_[device % files_.size()];
    auto [it, inserted] = position_.try_emplace(device, 0);
    if (inserted) {
      // Devices that share a file start at different rows so that they do not report in lockstep.
      it->second = (device / files_.size()) * 997 % rows.size();
    }
    const Row& row = rows[it->second];
    it->second = (it->second + 1) % rows.size();
    return to_metrics(row);
  }

 private:
  std::vector<std::vector<Row>> files_;
  std::unordered_map<std::size_t, std::size_t> position_;
};

class SyntheticSource final : public MetricSource {
 public:
  explicit SyntheticSource(std::uint64_t seed) : seed_(seed) {}

  std::vector<ingest::Metric> next(std::size_t device) override {
    auto [it, inserted] = state_.try_emplace(device);
    State& s = it->second;
    if (inserted) {
      s.rng.seed(seed_ * 1000003u + device);
      std::uniform_real_distribution<double> start(-1.0, 1.0);
      s.row = {20.0 + 3 * start(s.rng), 40.0 + 10 * start(s.rng), 200.0 + 100 * start(s.rng),
               2.7 + 0.05 * start(s.rng)};
    }
    std::normal_distribution<double> step(0.0, 1.0);
    s.row[0] += 0.05 * step(s.rng);
    s.row[1] = std::clamp(s.row[1] + 0.2 * step(s.rng), 0.0, 100.0);
    s.row[2] = std::max(0.0, s.row[2] + 5.0 * step(s.rng));
    s.row[3] = std::clamp(s.row[3] - 0.0001 + 0.001 * step(s.rng), 2.0, 3.0);
    return to_metrics(Row{s.row[0], s.row[1], s.row[2], s.row[3]});
  }

 private:
  struct State {
    std::mt19937_64 rng;
    std::array<double, 4> row{};
  };
  std::uint64_t seed_;
  std::unordered_map<std::size_t, State> state_;
};

// "<digits>.txt" -> the mote id.
std::optional<unsigned> mote_id(const std::filesystem::path& p) {
  if (p.extension() != ".txt") return std::nullopt;
  const std::string stem = p.stem().string();
  unsigned id = 0;
  auto [ptr, ec] = std::from_chars(stem.data(), stem.data() + stem.size(), id);
  if (stem.empty() || ec != std::errc() || ptr != stem.data() + stem.size()) return std::nullopt;
  return id;
}

}  // namespace

std::expected<std::unique_ptr<MetricSource>, std::error_code> intel_lab_source(const std::filesystem::path& dir) {
  std::vector<std::pair<unsigned, std::filesystem::path>> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (auto id = mote_id(entry.path()); id && entry.is_regular_file()) found.emplace_back(*id, entry.path());
  }
  if (ec) {
    spdlog::error("firmware-sim: cannot list {}: {}", dir.string(), ec.message());
    return std::unexpected(make_error_code(errc::bad_data));
  }
  std::sort(found.begin(), found.end());
  std::vector<std::vector<Row>> files;
  for (const auto& [id, path] : found) {
    auto rows = load_rows(path);
    if (!rows.empty()) files.push_back(std::move(rows));
  }
  if (files.empty()) {
    spdlog::error("firmware-sim: no usable <mote>.txt file in {}", dir.string());
    return std::unexpected(make_error_code(errc::bad_data));
  }
  spdlog::info("firmware-sim: replaying {} mote files from {}", files.size(), dir.string());
  return std::make_unique<IntelLabSource>(std::move(files));
}

std::unique_ptr<MetricSource> synthetic_source(std::uint64_t seed) { return std::make_unique<SyntheticSource>(seed); }

}  // namespace gw::firmware_sim
