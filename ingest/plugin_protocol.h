// The local protocol between the mosquitto plugin (ingest/mosquitto_plugin.cc, inside the broker)
// and edge-gateway (ingest/plugin_server.h), on a Unix stream socket. One request at a time per
// connection: the broker's callback waits for the reply before mosquitto acknowledges the device.
//
// request:  u32 length of the rest (big-endian), u8 version (1), u8 qos, u16 topic length,
//           u16 client id length, topic bytes, client id bytes, payload bytes (the rest)
// reply:    u8 code (PluginReply)
//
// Header-only and free of exceptions and allocation, so that the plugin can use it inside the
// broker's process.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace gw::ingest::plugin {

inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kHeaderBytes = 4 + 1 + 1 + 2 + 2;
inline constexpr std::uint32_t kMaxRequestBytes = 16u << 20;  // above any payload limit the gateway accepts

enum class Reply : std::uint8_t {
  acknowledged = 0,  // stored, a copy of a stored reading, or kept as a dead letter: the device gets its PUBACK
  refused = 1,       // not stored now (buffer full, closing, disk full): no PUBACK, the device sends it again
};

// Writes the request header for a message into out[kHeaderBytes]; false if it does not fit the protocol.
inline bool write_header(std::uint8_t* out, std::uint8_t qos, std::size_t topic_len, std::size_t client_len,
                         std::size_t payload_len) {
  if (topic_len > 0xFFFF || client_len > 0xFFFF) return false;
  const std::size_t rest = kHeaderBytes - 4 + topic_len + client_len + payload_len;
  if (rest > kMaxRequestBytes) return false;
  out[0] = static_cast<std::uint8_t>(rest >> 24);
  out[1] = static_cast<std::uint8_t>(rest >> 16);
  out[2] = static_cast<std::uint8_t>(rest >> 8);
  out[3] = static_cast<std::uint8_t>(rest);
  out[4] = kVersion;
  out[5] = qos;
  out[6] = static_cast<std::uint8_t>(topic_len >> 8);
  out[7] = static_cast<std::uint8_t>(topic_len);
  out[8] = static_cast<std::uint8_t>(client_len >> 8);
  out[9] = static_cast<std::uint8_t>(client_len);
  return true;
}

// The length of the rest from the first 4 bytes of a request.
inline std::uint32_t rest_length(const std::uint8_t* first4) {
  return (std::uint32_t{first4[0]} << 24) | (std::uint32_t{first4[1]} << 16) | (std::uint32_t{first4[2]} << 8) |
         std::uint32_t{first4[3]};
}

// The fixed part of the rest (version, qos, topic and client id lengths); false for another version.
struct Fixed {
  std::uint8_t qos = 0;
  std::size_t topic_len = 0;
  std::size_t client_len = 0;
};
inline constexpr std::size_t kFixedBytes = kHeaderBytes - 4;
inline bool parse_fixed(const std::uint8_t* fixed, Fixed& f) {
  if (fixed[0] != kVersion) return false;
  f.qos = fixed[1];
  f.topic_len = (std::size_t{fixed[2]} << 8) | fixed[3];
  f.client_len = (std::size_t{fixed[4]} << 8) | fixed[5];
  return true;
}

}  // namespace gw::ingest::plugin
