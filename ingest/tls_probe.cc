#include "ingest/tls_probe.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <optional>

namespace gw::ingest {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

// HOST and PORT of scheme://HOST:PORT[/...]; nullopt if it has no port.
std::optional<std::pair<std::string, std::string>> host_port(const std::string& url) {
  std::string rest = url;
  if (const auto scheme = rest.find("://"); scheme != std::string::npos) rest = rest.substr(scheme + 3);
  if (const auto slash = rest.find('/'); slash != std::string::npos) rest = rest.substr(0, slash);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon + 1 >= rest.size()) return std::nullopt;
  std::string host = rest.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::pair{host, rest.substr(colon + 1)};
}

}  // namespace

std::string tls_failure_reason(const TlsProbe& probe) {
  const auto hp = host_port(probe.url);
  if (!hp) return "no port in " + probe.url;
  try {
    ssl::context ctx(ssl::context::tls_client);
    boost::system::error_code ec;
    if (probe.ca_file.empty()) {
      ctx.set_default_verify_paths(ec);
    } else {
      ctx.load_verify_file(probe.ca_file, ec);
    }
    if (ec) return "CA file " + probe.ca_file + ": " + ec.message();
    if (!probe.cert_file.empty() && (ctx.use_certificate_chain_file(probe.cert_file, ec), ec)) {
      return "client certificate " + probe.cert_file + ": " + ec.message();
    }
    if (!probe.key_file.empty() && (ctx.use_private_key_file(probe.key_file, ssl::context::pem, ec), ec)) {
      return "client key " + probe.key_file + ": " + ec.message();
    }
    ctx.set_verify_mode(ssl::verify_peer);

    asio::io_context io;
    ssl::stream<tcp::socket> stream(io, ctx);
    // The broker's name for SNI (a name, not an address).
    if (hp->first.find_first_not_of("0123456789.:") != std::string::npos) {
      SSL_set_tlsext_host_name(stream.native_handle(), hp->first.c_str());
    }
    std::string reason;
    bool finished = false;
    tcp::resolver resolver(io);
    resolver.async_resolve(hp->first, hp->second, [&](const boost::system::error_code& rec, tcp::resolver::results_type r) {
      if (rec) {
        reason = "resolving " + hp->first + ": " + rec.message();
        finished = true;
        return;
      }
      asio::async_connect(stream.next_layer(), r, [&](const boost::system::error_code& cec, const tcp::endpoint&) {
        if (cec) {
          reason = "TCP connect: " + cec.message();
          finished = true;
          return;
        }
        stream.async_handshake(ssl::stream_base::client, [&](const boost::system::error_code& hec) {
          finished = true;
          if (!hec) return;
          reason = "TLS handshake: " + hec.message();
          const long verify = SSL_get_verify_result(stream.native_handle());
          if (verify != X509_V_OK) {
            reason += " (" + std::string(X509_verify_cert_error_string(verify)) + "; is " +
                      (probe.ca_file.empty() ? std::string("the system's trust store")
                                             : "the CA file " + probe.ca_file) +
                      " the one that signed the broker's certificate?)";
          }
        });
      });
    });
    io.run_for(probe.timeout);
    if (!finished) {
      // Cancel what is pending and let its handlers run (aborted) before anything goes out of scope.
      resolver.cancel();
      stream.next_layer().close(ec);
      io.restart();
      io.run_for(std::chrono::milliseconds(500));
      return "no answer within " + std::to_string(probe.timeout.count()) + " ms";
    }
    return reason;
  } catch (const std::exception& e) {
    return std::string("TLS probe: ") + e.what();
  }
}

}  // namespace gw::ingest
