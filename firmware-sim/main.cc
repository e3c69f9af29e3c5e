// firmware-sim: simulated devices that publish telemetry over MQTT ("publish", the default), and
// the verifier that checks a gateway's output against the manifest ("verify").
//
//   firmware-sim [publish] --broker URL --devices N --rate R (--duration S | --count N) ...
//   firmware-sim verify --manifest FILE --records FILE|-
//   firmware-sim verify --manifest FILE --kafka BOOTSTRAP [--topic T] [--done-file F] [--idle-exit-ms N]
//                       [--check-order]
//   firmware-sim verify --manifest FILE --pulsar URL [--tenant T] [--namespace NS] [--topic T] [--token T]
//                       [--done-file F] [--idle-exit-ms N] [--check-order]
//
// SIGINT/SIGTERM end a publish run early; the manifest still lists every acknowledged reading
// (with --outbox: every reading handed over, and the end still resends for --drain-timeout).
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "firmware-sim/publisher.h"
#include "firmware-sim/verify.h"

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_signal(int) { g_stop.store(true); }

int run_verify(const std::string& manifest_path, const std::string& records_path,
               const gw::firmware_sim::KafkaVerifyOptions* kafka, const gw::firmware_sim::PulsarVerifyOptions* pulsar,
               bool check_order) {
  using namespace gw::firmware_sim;
  Verifier verifier;
  // Reads the manifest into the verifier; false (logged) if it cannot be read or parsed.
  auto load_manifest = [&] {
    std::ifstream manifest(manifest_path);
    if (!manifest) {
      spdlog::error("verify: cannot open manifest {}", manifest_path);
      return false;
    }
    if (auto r = read_manifest(manifest, verifier); !r) {
      spdlog::error("verify: {}: {}", manifest_path, r.error().message());
      return false;
    }
    return true;
  };
  if (kafka != nullptr) {
    // Consume first (while the run goes), then read the manifest, complete by then.
    auto stats = consume_kafka(*kafka, verifier);
    if (!stats) {
      spdlog::error("verify: {} topic {}: {}", kafka->brokers, kafka->topic, stats.error().message());
      return 2;
    }
    if (!load_manifest()) return 2;
    const VerifyResult result = verifier.result();
    std::cout << stats->summary(result) << '\n' << result.summary() << std::endl;
    if (stats->skipped_offsets != 0) {
      spdlog::error("verify: {} offsets of {} were gone (retention) before they were read: the count is incomplete",
                    stats->skipped_offsets, kafka->topic);
    }
    const bool ok = result.lost == 0 && stats->duplicates == 0 && stats->bad_messages == 0 &&
                    stats->skipped_offsets == 0 && (!check_order || stats->order_violations == 0);
    return ok ? 0 : 1;
  }
  if (pulsar != nullptr) {
    // At least once: copies of a (gateway, seq) are removed (and counted) before the comparison.
    auto stats = consume_pulsar(*pulsar, verifier);
    if (!stats) {
      spdlog::error("verify: {} topic {}: {}", pulsar->service_url, pulsar->topic, stats.error().message());
      return 2;
    }
    if (!load_manifest()) return 2;
    const VerifyResult result = verifier.result();
    std::cout << pulsar_summary(*stats, result) << '\n' << result.summary() << std::endl;
    const bool ok = result.lost == 0 && result.duplicates == 0 && stats->bad_messages == 0 &&
                    (!check_order || stats->order_violations == 0);
    return ok ? 0 : 1;
  }
  if (!load_manifest()) return 2;
  std::ifstream records_file;
  std::istream* records = &std::cin;
  if (records_path != "-") {
    records_file.open(records_path);
    if (!records_file) {
      spdlog::error("verify: cannot open records {}", records_path);
      return 2;
    }
    records = &records_file;
  }
  if (auto r = read_records(*records, verifier); !r) {
    spdlog::error("verify: {}: {}", records_path, r.error().message());
    return 2;
  }
  const VerifyResult result = verifier.result();
  std::cout << result.summary() << std::endl;
  return result.ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // "publish" is the default subcommand: insert it unless the first argument names one (or asks
  // for the top-level help).
  std::vector<std::string> args(argv, argv + argc);
  if (args.size() < 2 || (args[1] != "publish" && args[1] != "verify" && args[1] != "-h" && args[1] != "--help")) {
    args.insert(args.begin() + 1, "publish");
  }

  CLI::App app{"Simulated telemetry devices for edge-gateway, and the loss verifier"};
  app.require_subcommand(1);
  // A flag given twice takes the last value, so scripts can append overrides to a base command.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  gw::firmware_sim::PublishOptions opt;
  double duration_s = 0;
  std::uint64_t count = 0;
  std::string manifest, data_dir;
  auto* pub = app.add_subcommand("publish", "Publish telemetry from N simulated devices (default)");
  pub->add_option("--broker", opt.broker, "MQTT broker URL")->capture_default_str();
  pub->add_option("--devices", opt.devices, "Number of devices")->capture_default_str()->check(CLI::PositiveNumber);
  pub->add_option("--rate", opt.rate, "Events per second per device (0 = unpaced)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  auto* duration_opt = pub->add_option("--duration", duration_s, "Run for S seconds")->check(CLI::PositiveNumber);
  auto* count_opt = pub->add_option("--count", count, "Messages per device")->check(CLI::PositiveNumber);
  duration_opt->excludes(count_opt);
  pub->add_option("--qos", opt.qos, "MQTT QoS")->capture_default_str()->check(CLI::Range(0, 2));
  pub->add_option("--seed", opt.seed, "Seed of the synthetic values")->capture_default_str();
  pub->add_option("--manifest", manifest, "Write 'DEVICE SEQ BOOT' per acknowledged reading (with --outbox: per reading handed over) to FILE");
  pub->add_option("--topic-pattern", opt.topic_pattern, "Topic; {device} is replaced")->capture_default_str();
  pub->add_option("--device-prefix", opt.device_prefix, "Device id prefix")->capture_default_str();
  pub->add_option("--data", data_dir, "Replay the Intel Lab <mote>.txt files in DIR")->check(CLI::ExistingDirectory);
  pub->add_option("--client-id", opt.client_id, "MQTT client id")->capture_default_str();
  pub->add_option("--max-inflight", opt.max_inflight, "Unacknowledged publishes at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  // Fleet behaviours (off by default).
  std::string record, injected, format = "flatbuffers";
  long jitter_ms = 0, offline_ms = 5000, skew_ms = 0, retransmit_delay_ms = 1000;
  pub->add_option("--format", format,
                  "Payloads: flatbuffers, json, or mixed (see --json-fraction); or a source's own form on its own "
                  "topic, as the gateway's preset of that name reads it: zigbee2mqtt, tasmota, shelly, chirpstack, tts, "
                  "sparkplug")
      ->capture_default_str()
      ->check(CLI::IsMember(
          {"flatbuffers", "json", "mixed", "zigbee2mqtt", "tasmota", "shelly", "chirpstack", "tts", "sparkplug"}));
  pub->add_option("--json-fraction", opt.json_fraction, "With --format mixed: share of devices that send JSON")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  pub->add_option("--jitter-ms", jitter_ms, "Delay each send by up to MS (uniform)")->check(CLI::NonNegativeNumber);
  pub->add_option("--reorder", opt.reorder_window, "Send each device's events shuffled within windows of N")
      ->check(CLI::NonNegativeNumber);
  pub->add_option("--conflicts", opt.conflict_rate,
                  "Probability that a reading is followed by one with its identity (seq, boot id) and other values")
      ->check(CLI::Range(0.0, 1.0));
  pub->add_option("--duplicates", opt.duplicate_rate, "Probability that a message is published twice")
      ->check(CLI::Range(0.0, 1.0));
  pub->add_option("--offline", opt.offline_rate, "Per event: probability that its device goes offline")
      ->check(CLI::Range(0.0, 1.0));
  pub->add_option("--offline-ms", offline_ms, "How long an offline device buffers before catching up in a burst")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  pub->add_option("--clock-skew-ms", skew_ms, "Each device's clock is off by a constant within +-MS")
      ->check(CLI::NonNegativeNumber);
  pub->add_option("--malformed", opt.malformed_rate, "Probability of an extra malformed payload per event")
      ->check(CLI::Range(0.0, 1.0));
  pub->add_option("--record", record,
                  "Write one JSON line per reading published (not per copy, boot_id always, original time_ms) to FILE");
  // How devices number their readings (firmware-sim/device.h).
  auto& seq = opt.sequence;
  pub->add_option("--seq-start", seq.seq_start, "The first seq after each boot")
      ->capture_default_str()
      ->check(CLI::IsMember({0, 1}));
  pub->add_option("--seq-bits", seq.seq_bits, "Counter width B: 2^B-1 is followed by 0")
      ->capture_default_str()
      ->check(CLI::IsMember({8, 16, 32, 64}));
  pub->add_option("--reboot", seq.reboot_rate, "Per event: probability that its device reboots before it")
      ->check(CLI::Range(0.0, 1.0));
  pub->add_flag("--boot-id,!--no-boot-id", seq.boot_id,
                "Each boot a new non-zero boot id (default: --no-boot-id, boot id 0, as devices without one)");
  pub->add_option("--reboot-min-events", seq.reboot_min_events,
                  "A device reboots only after this many events since its last boot (a reboot without boot id is "
                  "recognised only when its seq goes back by at least the gateway's dedup window)")
      ->capture_default_str();
  pub->add_option("--multi-gateway", opt.gateways,
                  "Each reading is published N times, through N MQTT clients <client-id>-gw1..N (heard by N gateways)")
      ->capture_default_str()
      ->check(CLI::Range(1u, gw::firmware_sim::kMaxGateways));
  pub->add_option("--retransmit", seq.retransmit_rate,
                  "Probability that a reading is sent again later: same seq, boot id and values, time_ms + the delay")
      ->check(CLI::Range(0.0, 1.0));
  pub->add_option("--retransmit-delay-ms", retransmit_delay_ms,
                  "A retransmission goes out 0.1..MS ms after the reading (uniform)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  long drain_timeout_s = 30, resend_backoff_ms = 200, resend_backoff_max_ms = 5000;
  pub->add_option("--drain-timeout", drain_timeout_s,
                  "At the end, wait at most S seconds for outstanding acknowledgements (with --outbox: and resend)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  pub->add_flag("--outbox", opt.outbox,
                "Device SDK outbox: a reading not acknowledged is published again (same bytes) after a reconnect; "
                "the manifest lists every reading handed over; exits 1 if some are still unacknowledged at the end");
  pub->add_option("--resend-backoff-ms", resend_backoff_ms,
                  "With --outbox: first reconnect delay, doubled per failed attempt (less up to half as jitter)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  pub->add_option("--resend-backoff-max-ms", resend_backoff_max_ms, "With --outbox: the reconnect delay at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  auto* per_device_opt = pub->add_flag("--client-per-device", opt.client_per_device,
                                       "One MQTT client per device, client id <client-id>-<device>");
  pub->add_option("--mqtt-version", opt.mqtt_version, "MQTT protocol version of the devices: 3 (3.1.1) or 5")
      ->capture_default_str()
      ->check(CLI::IsMember({3, 5}));
  pub->add_option("--injected", injected,
                  "Write what the run injected (duplicates, retransmits, multi-gateway copies, reboots, wraps; "
                  "acknowledged only) as JSON to FILE");

  std::string verify_manifest, verify_records, done_file;
  gw::firmware_sim::KafkaVerifyOptions kafka;
  long idle_exit_ms = 3000;
  long max_wait_s = 900;
  bool check_order = false;
  auto* ver = app.add_subcommand("verify",
                                 "Check gateway output (uplink-cat JSON lines, or the Kafka topic) against a manifest");
  ver->add_option("--manifest", verify_manifest, "Manifest written by publish")->required();
  auto* records_opt = ver->add_option("--records", verify_records, "Records file, '-' = stdin");
  auto* kafka_opt = ver->add_option("--kafka", kafka.brokers,
                                    "Consume the topic at these bootstrap servers instead (decoded with the uplink's "
                                    "decoder); prints delivered=N lost=N duplicates=N ...");
  records_opt->excludes(kafka_opt);
  gw::firmware_sim::PulsarVerifyOptions pulsar;
  auto* pulsar_opt = ver->add_option("--pulsar", pulsar.service_url,
                                     "Read the Pulsar topic through the WebSocket consumer API at this service URL "
                                     "(ws://HOST:PORT) instead; dedups by (gateway id, seq) and prints delivered=N "
                                     "lost=N duplicates=N duplicates_removed=N ...");
  pulsar_opt->excludes(records_opt)->excludes(kafka_opt);
  ver->add_option("--tenant", pulsar.tenant, "With --pulsar: the tenant")->capture_default_str();
  ver->add_option("--namespace", pulsar.ns, "With --pulsar: the namespace")->capture_default_str();
  ver->add_option("--token", pulsar.token, "With --pulsar: bearer token");
  ver->add_option("--topic", kafka.topic, "With --kafka or --pulsar: the topic")->capture_default_str();
  ver->add_option("--done-file", done_file, "With --kafka or --pulsar: keep consuming until this file exists");
  ver->add_option("--idle-exit-ms", idle_exit_ms, "With --kafka or --pulsar: then stop once nothing came for this long")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  ver->add_option("--max-wait-s", max_wait_s, "With --kafka or --pulsar: stop consuming after S seconds in any case")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  ver->add_flag("--check-order", check_order, "With --kafka: a device's records out of order also fail");

  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  try {
    app.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  if (*ver) {
    if (!*records_opt && !*kafka_opt && !*pulsar_opt) {
      std::cerr << "verify: --records, --kafka or --pulsar is required\n";
      return 2;
    }
    kafka.done_file = pulsar.done_file = done_file;
    kafka.idle_exit = pulsar.idle_exit = std::chrono::milliseconds(idle_exit_ms);
    kafka.max_wait = pulsar.max_wait = std::chrono::seconds(max_wait_s);
    pulsar.topic = kafka.topic;
    return run_verify(verify_manifest, verify_records, *kafka_opt ? &kafka : nullptr,
                      *pulsar_opt ? &pulsar : nullptr, check_order);
  }

  if (*duration_opt) opt.duration = std::chrono::duration<double>(duration_s);
  if (*count_opt) opt.count = count;
  opt.manifest = manifest;
  opt.data_dir = data_dir;
  opt.record = record;
  opt.injected = injected;
  if (auto source = gw::firmware_sim::source_format(format)) {
    opt.source = *source;
    format = "json";
  }
  opt.format = format == "json"    ? gw::firmware_sim::PayloadFormat::json
               : format == "mixed" ? gw::firmware_sim::PayloadFormat::mixed
                                   : gw::firmware_sim::PayloadFormat::flatbuffers;
  opt.jitter = std::chrono::milliseconds(jitter_ms);
  opt.offline_for = std::chrono::milliseconds(offline_ms);
  opt.clock_skew = std::chrono::milliseconds(skew_ms);
  opt.sequence.retransmit_delay = std::chrono::milliseconds(retransmit_delay_ms);
  opt.drain_timeout = std::chrono::seconds(drain_timeout_s);
  opt.resend_backoff = std::chrono::milliseconds(resend_backoff_ms);
  opt.resend_backoff_max = std::chrono::milliseconds(resend_backoff_max_ms);
  if (*per_device_opt && opt.gateways > 1) {
    std::cerr << "publish: --client-per-device and --multi-gateway exclude each other\n";
    return 2;
  }
  if (opt.resend_backoff_max < opt.resend_backoff) {
    std::cerr << "publish: --resend-backoff-max-ms is below --resend-backoff-ms\n";
    return 2;
  }

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  auto result = gw::firmware_sim::publish(opt, g_stop);
  if (!result) {
    spdlog::error("firmware-sim: {}", result.error().message());
    return 1;
  }
  std::cout << result->injected.summary() << '\n' << result->summary() << std::endl;
  // With an outbox every reading in the manifest must get upstream: one that did not is a failure.
  return result->unacked > 0 ? 1 : 0;
}
