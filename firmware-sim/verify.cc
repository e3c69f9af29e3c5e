// The manifest/records verifier (see verify.h). Not thread-safe.
#include "firmware-sim/verify.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "uplink/batch.h"
#include "uplink/kafka_reader.h"
#include "uplink/pulsar_reader.h"

namespace gw::firmware_sim {

std::string VerifyResult::summary() const {
  return fmt::format("verify: expected={} received={} lost={} duplicates={} unexpected={} resent={}", expected,
                     received, lost, duplicates, unexpected, resent);
}

void Verifier::expect(std::string_view device, std::uint32_t boot_id, std::uint64_t seq) {
  ++devices_[std::string(device)][boot_id][seq].expected;
}

void Verifier::receive(std::string_view device, std::uint32_t boot_id, std::uint64_t seq) {
  ++devices_[std::string(device)][boot_id][seq].received;
  ++received_lines_;
}

void Verifier::mark_resent(std::string_view device, std::uint32_t boot_id, std::uint64_t seq) {
  devices_[std::string(device)][boot_id][seq].resent = true;
}

VerifyResult Verifier::result() const {
  VerifyResult r;
  r.received = received_lines_;
  for (const auto& [device, boots] : devices_) {
    for (const auto& [boot_id, seqs] : boots) {
      for (const auto& [seq, e] : seqs) {
        r.expected += e.expected;
        if (e.resent) ++r.resent;
        if (e.received < e.expected) r.lost += e.expected - e.received;
        if (e.expected == 0 && e.received > 0) ++r.unexpected;
        // Copies of a reading that was never acknowledged are duplicates too (beyond the first).
        const std::uint64_t allowed = std::max<std::uint64_t>(e.expected, 1);
        if (e.received > allowed) r.duplicates += e.received - allowed;
      }
    }
  }
  return r;
}

namespace {

// `text` as a whole is an unsigned number that fits T.
template <typename T>
bool parse_unsigned(const std::string& text, T& out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

}  // namespace

std::expected<std::uint64_t, std::error_code> read_manifest(std::istream& in, Verifier& verifier) {
  std::string line;
  std::uint64_t line_no = 0;
  std::uint64_t count = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream fields(line);
    std::string device, seq_text, boot_text, mark, extra;
    std::uint64_t seq = 0;
    std::uint32_t boot_id = 0;
    bool ok = static_cast<bool>(fields >> device >> seq_text) && parse_unsigned(seq_text, seq);
    if (ok && fields >> boot_text) ok = parse_unsigned(boot_text, boot_id);
    const bool resent = ok && fields >> mark;
    if (resent) ok = mark == "resent" && !(fields >> extra);
    if (!ok) {
      spdlog::error("manifest line {}: expected \"DEVICE SEQ BOOT\" (or \"DEVICE SEQ\", or \"DEVICE SEQ BOOT resent\"), got \"{}\"",
                    line_no, line);
      return std::unexpected(make_error_code(errc::bad_manifest));
    }
    if (resent) {
      verifier.mark_resent(device, boot_id, seq);
      continue;
    }
    verifier.expect(device, boot_id, seq);
    ++count;
  }
  if (in.bad()) return std::unexpected(make_error_code(errc::io_error));
  return count;
}

std::expected<std::uint64_t, std::error_code> read_records(std::istream& in, Verifier& verifier) {
  std::string line;
  std::uint64_t line_no = 0;
  std::uint64_t count = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const auto device = j.is_object() ? j.find("device") : j.end();
    const auto seq = j.is_object() ? j.find("device_seq") : j.end();
    const auto boot = j.is_object() ? j.find("boot_id") : j.end();
    const bool boot_ok = boot == j.end() || (boot->is_number_unsigned() &&
                                             boot->get<std::uint64_t>() <= std::numeric_limits<std::uint32_t>::max());
    if (device == j.end() || seq == j.end() || !device->is_string() || !seq->is_number_unsigned() || !boot_ok) {
      spdlog::error("records line {}: expected a JSON object with \"device\", \"device_seq\" (and \"boot_id\")",
                    line_no);
      return std::unexpected(make_error_code(errc::bad_record));
    }
    verifier.receive(device->get<std::string>(), boot == j.end() ? 0 : boot->get<std::uint32_t>(),
                     seq->get<std::uint64_t>());
    ++count;
  }
  if (in.bad()) return std::unexpected(make_error_code(errc::io_error));
  return count;
}

std::string KafkaVerifyStats::summary(const VerifyResult& result) const {
  const std::uint64_t redelivered = result.duplicates >= duplicates ? result.duplicates - duplicates : 0;
  std::string s = fmt::format("delivered={} lost={} duplicates={} redelivered={} order_violations={} bad_messages={}",
                               delivered, result.lost, duplicates, redelivered, order_violations, bad_messages);
  if (skipped_offsets != 0) s += fmt::format(" skipped_offsets={}", skipped_offsets);
  return s;
}

namespace {

// Counts the records of decoded batches: distinct (gateway id, seq), copies, device order. With
// `dedup`, copies never reach the verifier (Pulsar); without, they do and count as duplicates.
class BatchTally {
 public:
  BatchTally(KafkaVerifyStats& stats, Verifier& verifier, bool dedup)
      : stats_(stats), verifier_(verifier), dedup_(dedup) {}

  void add(const uplink::Batch& batch) {
    auto& seqs = seen_[batch.gateway_id];
    for (const uplink::BatchRecord& r : batch.records) {
      const bool first_copy = seqs.insert(r.seq.value).second;
      if (!first_copy && dedup_) {
        ++stats_.duplicates_removed;
        continue;
      }
      verifier_.receive(r.event.device.value, r.event.boot_id, r.event.seq.value);
      if (!first_copy) {
        ++stats_.duplicates;
        continue;
      }
      ++stats_.delivered;
      auto [it, first] = last_device_seq_.try_emplace({r.event.device.value, r.event.boot_id}, r.event.seq.value);
      if (!first) {
        if (r.event.seq.value < it->second) {
          ++stats_.order_violations;
        } else {
          it->second = r.event.seq.value;
        }
      }
    }
  }

 private:
  KafkaVerifyStats& stats_;
  Verifier& verifier_;
  bool dedup_;
  std::map<std::string, std::set<std::uint64_t>> seen_;    // gateway -> seqs
  // (device, boot id) -> highest device seq so far
  std::map<std::pair<std::string, std::uint32_t>, std::uint64_t> last_device_seq_;
};

}  // namespace

std::expected<KafkaVerifyStats, std::error_code> consume_kafka(const KafkaVerifyOptions& options, Verifier& verifier) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto reader = uplink::KafkaReader::open({options.brokers, options.topic, std::chrono::seconds(10), {}});
  // Brokers down when the run starts (an outage test): with a done file, keep trying until max_wait.
  while (!reader && !options.done_file.empty() && reader.error() == uplink::errc::unreachable &&
         Clock::now() - start < options.max_wait) {
    spdlog::warn("verify: {}; trying again", reader.error().message());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    reader = uplink::KafkaReader::open({options.brokers, options.topic, std::chrono::seconds(10), {}});
  }
  if (!reader) return std::unexpected(reader.error());
  KafkaVerifyStats stats;
  BatchTally tally(stats, verifier, false);
  auto last_message = start;
  for (;;) {
    const auto now = Clock::now();
    if (now - start > options.max_wait) {
      spdlog::warn("verify: stopped consuming after {} s", options.max_wait.count());
      break;
    }
    auto next = (*reader)->next(std::chrono::milliseconds(100));
    if (!next) {
      // Brokers down for a while (an outage test): keep trying until max_wait.
      spdlog::warn("verify: {}", next.error().message());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    if (!next->has_value()) {
      const bool done = options.done_file.empty() || std::filesystem::exists(options.done_file);
      // at_end() is what the consumer last heard (stale while it reconnects): the brokers confirm.
      if (done && (*reader)->at_end() && now - last_message >= options.idle_exit &&
          (*reader)->caught_up(std::chrono::seconds(2))) {
        break;
      }
      continue;
    }
    last_message = Clock::now();
    ++stats.messages;
    const uplink::KafkaMessage& msg = **next;
    auto batch = uplink::decode_batch(msg.value);
    if (!batch) {
      ++stats.bad_messages;
      spdlog::error("verify: partition {} offset {}: {}", msg.partition, msg.offset, batch.error().message());
      continue;
    }
    tally.add(*batch);
  }
  stats.skipped_offsets = (*reader)->skipped();
  return stats;
}

std::string pulsar_summary(const KafkaVerifyStats& stats, const VerifyResult& result) {
  return fmt::format("delivered={} lost={} duplicates={} duplicates_removed={} order_violations={} bad_messages={}",
                     stats.delivered, result.lost, result.duplicates, stats.duplicates_removed, stats.order_violations,
                     stats.bad_messages);
}

std::expected<KafkaVerifyStats, std::error_code> consume_pulsar(const PulsarVerifyOptions& options,
                                                                Verifier& verifier) {
  using Clock = std::chrono::steady_clock;
  uplink::PulsarReaderOptions ro;
  ro.service_url = options.service_url;
  ro.tenant = options.tenant;
  ro.ns = options.ns;
  ro.topic = options.topic;
  ro.token = options.token;
  auto reader = uplink::PulsarReader::open(ro);
  if (!reader) return std::unexpected(reader.error());
  ro.subscription = (*reader)->subscription();  // a reconnect resumes after the last ack
  KafkaVerifyStats stats;
  BatchTally tally(stats, verifier, true);
  const auto start = Clock::now();
  auto last_message = start;
  for (;;) {
    const auto now = Clock::now();
    if (now - start > options.max_wait) {
      spdlog::warn("verify: stopped consuming after {} s", options.max_wait.count());
      break;
    }
    auto next = (*reader)->next(std::chrono::milliseconds(100));
    if (!next) {
      spdlog::warn("verify: {}; reconnecting", next.error().message());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (auto r = uplink::PulsarReader::open(ro)) reader = std::move(r);
      continue;
    }
    if (!next->has_value()) {
      const bool done = options.done_file.empty() || std::filesystem::exists(options.done_file);
      if (done && now - last_message >= options.idle_exit) break;
      continue;
    }
    last_message = Clock::now();
    ++stats.messages;
    auto batch = uplink::decode_batch((*next)->payload);
    if (!batch) {
      ++stats.bad_messages;
      spdlog::error("verify: message {}: {}", (*next)->message_id, batch.error().message());
      continue;
    }
    tally.add(*batch);
  }
  return stats;
}

}  // namespace gw::firmware_sim
