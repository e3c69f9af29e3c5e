// firmware-sim's devices in other people's formats
// (--format zigbee2mqtt|tasmota|shelly|chirpstack|tts|sparkplug):
// the topic and payload each source publishes (as its documentation shows them), and the event the
// gateway's preset of that source makes of it, which is what the manifest and the record list.
//
// What the simulated sources are set to (the e2e config matches): zigbee2mqtt with
// advanced.last_seen = "epoch" (without it the gateway stamps on arrival and nothing can name the
// reading in a manifest); Tasmota in zone +01:00 without SetOption52 (local time, whole seconds);
// Shelly's ts with two decimals (10 ms); ChirpStack and The Things Stack with their 32-bit frame
// counters (The Things Stack's session key id "sk-<boot id>"); Sparkplug B with each simulated
// device an edge node of group "sim" (its readings are the node's metrics): a reading with seq 0
// is an NBIRTH (bdSeq = the boot id, every metric named with an alias), the others NDATA by alias,
// so run it with --seq-bits 8 --seq-start 0 and without reordering (an NDATA before its NBIRTH has
// no aliases yet).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ingest/event.h"

namespace gw::firmware_sim {

enum class SourceFormat { native, zigbee2mqtt, tasmota, shelly, chirpstack, tts, sparkplug };

// The format of a --format name; nullopt for flatbuffers/json/mixed and unknown names.
std::optional<SourceFormat> source_format(std::string_view name);

// Whether the source numbers its messages (else the gateway identifies one by its time).
bool has_counter(SourceFormat format);
// The topic a device of this source publishes on (Sparkplug: its NDATA topic).
std::string source_topic(SourceFormat format, const std::string& device);
// The topic of one reading's message (Sparkplug: NBIRTH or NDATA by its seq; else source_topic).
std::string source_topic(SourceFormat format, const ingest::Event& event);
// `ms` at the resolution of the source's time field (Tasmota: seconds, Shelly: 10 ms).
std::int64_t source_time(SourceFormat format, std::int64_t ms);
// The payload of `event` (its time already at the source's resolution).
std::string encode_source(SourceFormat format, const ingest::Event& event);
// The event the gateway stores from encode_source(format, event): its seq (the time for sources
// without a counter), boot id and metric names as the preset maps them.
ingest::Event stored_event(SourceFormat format, const ingest::Event& event);

}  // namespace gw::firmware_sim
