// Why a TLS connection to the MQTT broker fails. Paho reports every failed TLS handshake as
// "TCP/TLS connect failure" (return code -1); OpenSSL's reason (an untrusted certificate, a name
// mismatch, a protocol or cipher refusal) reaches only an SSL error callback, whose Paho C++ 1.2
// wrapper keeps a pointer into a connect_options copy that is gone when the handshake fails. So
// after such a failure the source repeats the handshake once itself, with the same files, and
// reports what OpenSSL says.
#pragma once

#include <chrono>
#include <string>

namespace gw::ingest {

struct TlsProbe {
  std::string url;        // ssl://HOST:PORT or mqtts://HOST:PORT (tcp:// is probed too when files are set)
  std::string ca_file;    // empty: the system's trust store
  std::string cert_file;  // client certificate (PEM), optional
  std::string key_file;   // its key (PEM), optional
  std::chrono::milliseconds timeout{3000};
};

// A TCP connection and a TLS handshake that verifies the broker's certificate, as Paho does.
// Returns the reason it fails ("TLS handshake: certificate verify failed (self-signed certificate
// in certificate chain; ...)", "TCP connect: Connection refused", ...), or an empty string if the
// handshake succeeds.
std::string tls_failure_reason(const TlsProbe& probe);

}  // namespace gw::ingest
