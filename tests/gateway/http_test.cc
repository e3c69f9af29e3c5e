// The HTTP server over a real loopback socket: routing to the handler, query decoding, limits.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>

#include "gateway/http_server.h"

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

http::response<http::string_body> get(const std::string& address, const std::string& target,
                                      std::size_t extra_header_bytes = 0) {
  std::string host;
  std::uint16_t port = 0;
  REQUIRE(gw::gateway::split_host_port(address, host, port));
  boost::asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(boost::asio::ip::make_address(host), port));
  http::request<http::string_body> req{http::verb::get, target, 11};
  req.set(http::field::host, host);
  if (extra_header_bytes > 0) req.set("X-Padding", std::string(extra_header_bytes, 'x'));
  http::write(socket, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(socket, buffer, res);
  return res;
}

}  // namespace

TEST_CASE("requests reach the handler with path and decoded query") {
  gw::gateway::HttpRequest seen;
  gw::gateway::HttpOptions options;
  options.listen = "127.0.0.1:0";
  auto server = gw::gateway::HttpServer::start(options, [&](const gw::gateway::HttpRequest& r) {
    seen = r;
    return gw::gateway::HttpResponse{r.path == "/ok" ? 200 : 404, "text/plain", "hello " + r.path};
  });
  REQUIRE(server.has_value());
  auto res = get((*server)->address(), "/ok?device=dev%2D1&limit=5&flag");
  CHECK(res.result_int() == 200);
  CHECK(res.body() == "hello /ok");
  CHECK(seen.query.at("device") == "dev-1");
  CHECK(seen.query.at("limit") == "5");
  CHECK(seen.query.at("flag").empty());
  CHECK(get((*server)->address(), "/nope").result_int() == 404);
  (*server)->stop();
}

TEST_CASE("oversized headers are refused with 431, and the server keeps serving") {
  gw::gateway::HttpOptions options;
  options.listen = "127.0.0.1:0";
  options.max_header_bytes = 1024;
  auto server = gw::gateway::HttpServer::start(
      options, [](const gw::gateway::HttpRequest&) { return gw::gateway::HttpResponse{200, "text/plain", "ok"}; });
  REQUIRE(server.has_value());
  CHECK(get((*server)->address(), "/", 4096).result_int() == 431);
  CHECK(get((*server)->address(), "/").result_int() == 200);
}

TEST_CASE("a bad listen address is an error, not a crash") {
  gw::gateway::HttpOptions options;
  options.listen = "not-an-address";
  CHECK_FALSE(gw::gateway::HttpServer::start(options, {}).has_value());
  options.listen = "256.1.1.1:80";
  CHECK_FALSE(gw::gateway::HttpServer::start(options, {}).has_value());
}
