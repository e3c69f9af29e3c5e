// The HTTP server over real loopback sockets: routing to the handler, query decoding, and what it
// does with bad input (malformed requests, oversized headers and bodies, missing or wrong tokens,
// stalled and trickling clients, too many connections): each gets its 4xx or is cut off, and the
// server keeps serving. Every read is bounded by a socket receive timeout, so a server that failed
// to cut a client off fails the test instead of hanging it.
#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include "tests/support/catch.h"
#include <thread>

#include "gateway/http_server.h"

namespace beast = boost::beast;
namespace http = beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using gw::gateway::HttpOptions;
using gw::gateway::HttpRequest;
using gw::gateway::HttpResponse;
using gw::gateway::HttpServer;

namespace {

// A blocking client socket whose reads give up after `read_timeout` (SO_RCVTIMEO).
struct Client {
  asio::io_context io;
  tcp::socket socket{io};

  explicit Client(const std::string& address, std::chrono::milliseconds read_timeout = std::chrono::seconds(10)) {
    std::string host;
    std::uint16_t port = 0;
    REQUIRE(gw::gateway::split_host_port(address, host, port));
    socket.connect(tcp::endpoint(asio::ip::make_address(host), port));
    timeval tv{static_cast<time_t>(read_timeout.count() / 1000),
               static_cast<suseconds_t>((read_timeout.count() % 1000) * 1000)};
    REQUIRE(setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
  }

  void send(std::string_view bytes) { asio::write(socket, asio::buffer(bytes.data(), bytes.size())); }

  // Everything the server sends until it closes the connection. `how` tells how the reading ended:
  // "eof" (closed), "reset" (closed with RST) or "timeout" (still open after the read timeout).
  std::string read_all(std::string* how = nullptr) {
    std::string out;
    char chunk[4096];
    for (int i = 0; i < 100000; ++i) {
      boost::system::error_code ec;
      std::size_t n = socket.read_some(asio::buffer(chunk), ec);
      out.append(chunk, n);
      if (!ec) continue;
      if (how != nullptr) {
        *how = ec == asio::error::eof ? "eof"
               : ec == asio::error::connection_reset ? "reset"
               : (ec == asio::error::would_block || ec == asio::error::try_again) ? "timeout"
                                                                                  : ec.message();
      }
      break;
    }
    return out;
  }

  // One request/response with Beast on this (keep-alive) connection.
  http::response<http::string_body> get(const std::string& target, const std::string& authorization = "",
                                        http::verb verb = http::verb::get) {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!authorization.empty()) req.set(http::field::authorization, authorization);
    http::write(socket, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    if (verb == http::verb::head) parser.skip(true);
    http::read(socket, buffer, parser);
    return parser.release();
  }
};

// The status code of a raw response ("HTTP/1.1 400 Bad Request\r\n..."), 0 if there is none.
int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
  return std::stoi(response.substr(9, 3));
}

HttpOptions loopback() {
  HttpOptions options;
  options.listen = "127.0.0.1:0";
  return options;
}

HttpResponse echo(const HttpRequest& r) { return HttpResponse{r.path == "/nope" ? 404 : 200, "text/plain", "hello " + r.path}; }

}  // namespace

TEST_CASE("requests reach the handler with path and decoded query") {
  HttpRequest seen;
  auto server = HttpServer::start(loopback(), [&](const HttpRequest& r) {
    seen = r;
    return echo(r);
  });
  REQUIRE(server.has_value());
  Client client((*server)->address());
  auto res = client.get("/ok?device=dev%2D1&limit=5&flag");
  CHECK(res.result_int() == 200);
  CHECK(res.body() == "hello /ok");
  CHECK(seen.query.at("device") == "dev-1");
  CHECK(seen.query.at("limit") == "5");
  CHECK(seen.query.at("flag").empty());
  CHECK(client.get("/nope").result_int() == 404);  // same connection: keep-alive
  auto head = client.get("/ok", "", http::verb::head);
  CHECK(head.result_int() == 200);
  CHECK(head[http::field::content_length] == "9");  // the GET's length, and no body follows
  CHECK(client.get("/after-head").body() == "hello /after-head");
  CHECK((*server)->stats().requests_total == 4);
  (*server)->stop();
}

TEST_CASE("malformed requests get 400 and the server keeps serving") {
  auto server = HttpServer::start(loopback(), echo);
  REQUIRE(server.has_value());
  const std::string address = (*server)->address();
  for (std::string bad : {std::string("GARBAGE\r\n\r\n"), std::string("GET /x HTTP/9.9\r\nHost: a\r\n\r\n"),
                          std::string("GET\r\n\r\n"), std::string("GET / HTTP/1.1\r\nNo colon here\r\n\r\n"),
                          std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15)}) {
    INFO(bad);
    Client client(address);
    client.send(bad);
    std::string how;
    std::string response = client.read_all(&how);
    CHECK(status_of(response) == 400);
    CHECK(response.find(R"({"error":"malformed request)") != std::string::npos);
    CHECK(how == "eof");
  }
  CHECK((*server)->stats().rejected_total == 5);
  CHECK(Client(address).get("/still-here").result_int() == 200);
}

TEST_CASE("oversized headers get 431 and oversized bodies 413, and the server keeps serving") {
  auto options = loopback();
  options.max_header_bytes = 1024;
  options.max_body_bytes = 100;
  auto server = HttpServer::start(options, echo);
  REQUIRE(server.has_value());
  const std::string address = (*server)->address();
  {
    Client client(address);
    client.send("GET / HTTP/1.1\r\nHost: a\r\nX-Padding: " + std::string(4096, 'x') + "\r\n\r\n");
    CHECK(status_of(client.read_all()) == 431);
  }
  {
    Client client(address);  // a huge request line counts as header
    client.send("GET /" + std::string(4096, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n");
    CHECK(status_of(client.read_all()) == 431);
  }
  {
    Client client(address);  // refused from the Content-Length alone; the body never comes
    client.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n");
    CHECK(status_of(client.read_all()) == 413);
  }
  CHECK(Client(address).get("/").result_int() == 200);
}

TEST_CASE("with a token, every path but the open ones needs Authorization: Bearer") {
  auto options = loopback();
  options.token = "correct-horse";
  options.open_paths = {"/healthz"};
  int handled = 0;
  auto server = HttpServer::start(options, [&](const HttpRequest& r) {
    ++handled;
    return echo(r);
  });
  REQUIRE(server.has_value());
  Client client((*server)->address());
  auto missing = client.get("/status");
  CHECK(missing.result_int() == 401);
  CHECK(missing[http::field::www_authenticate] == R"(Bearer realm="edge-gateway")");
  CHECK(client.get("/status", "Bearer wrong-horse!").result_int() == 401);
  CHECK(client.get("/status", "Bearer correct-hors").result_int() == 401);   // a prefix
  CHECK(client.get("/status", "Bearer correct-horse2").result_int() == 401); // longer
  CHECK(client.get("/status", "Basic correct-horse").result_int() == 401);
  CHECK(client.get("/nope", "").result_int() == 401);  // unknown paths too: nothing leaks without the token
  CHECK(handled == 0);
  CHECK(client.get("/status", "Bearer correct-horse").result_int() == 200);
  CHECK(client.get("/status", "bearer correct-horse").result_int() == 200);  // the scheme is case-insensitive
  CHECK(client.get("/healthz").result_int() == 200);
  CHECK(client.get("/healthz?x=1").result_int() == 200);
  CHECK(handled == 4);
  CHECK((*server)->stats().unauthorized_total == 6);
}

TEST_CASE("a stalled or trickling client is cut off after request_timeout while others are served") {
  auto options = loopback();
  options.request_timeout = std::chrono::milliseconds(300);
  auto server = HttpServer::start(options, echo);
  REQUIRE(server.has_value());
  const std::string address = (*server)->address();

  Client stalled(address, std::chrono::seconds(5));
  stalled.send("GET /slow HTTP/1.1\r\nHost: a\r\n");  // half a request, then nothing

  // Meanwhile other clients are served, several times over the stall.
  for (int i = 0; i < 5; ++i) {
    Client other(address);
    CHECK(other.get("/other").result_int() == 200);
  }
  std::string how;
  CHECK(stalled.read_all(&how).empty());  // no response: the connection is just closed
  CHECK(how == "eof");

  // A client that keeps sending, a byte every 50 ms, never completes a request within the timeout:
  // the timeout covers the whole request, not each read.
  Client trickle(address, std::chrono::seconds(5));
  const std::string request = "GET /trickle HTTP/1.1\r\nHost: a\r\nX-Slow: " + std::string(100, 'z') + "\r\n\r\n";
  bool cut = false;
  for (std::size_t i = 0; i < 20 && !cut; ++i) {  // 1 s of trickling at most
    boost::system::error_code ec;
    asio::write(trickle.socket, asio::buffer(&request[i], 1), ec);
    cut = static_cast<bool>(ec);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string trickle_how;
  std::string answer = trickle.read_all(&trickle_how);
  CHECK(answer.empty());
  CHECK((trickle_how == "eof" || trickle_how == "reset"));
  CHECK((*server)->stats().timeouts_total == 2);
  CHECK(Client(address).get("/after").result_int() == 200);
}

TEST_CASE("connections beyond max_connections are closed at once - a freed slot serves again") {
  auto options = loopback();
  options.max_connections = 2;
  auto server = HttpServer::start(options, echo);
  REQUIRE(server.has_value());
  const std::string address = (*server)->address();
  auto first = std::make_unique<Client>(address);
  Client second(address);
  REQUIRE(first->get("/1").result_int() == 200);  // both accepted and held open (keep-alive)
  REQUIRE(second.get("/2").result_int() == 200);

  {
    Client third(address);
    boost::system::error_code ec;
    asio::write(third.socket, asio::buffer(std::string_view("GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")), ec);
    std::string how;
    CHECK(third.read_all(&how).empty());
    CHECK((how == "eof" || how == "reset"));
  }
  CHECK((*server)->stats().connections_refused >= 1);

  first.reset();  // frees a slot once the server sees the close
  int status = 0;
  for (int i = 0; i < 50 && status != 200; ++i) {
    Client again(address);
    boost::system::error_code ec;
    asio::write(again.socket, asio::buffer(std::string_view("GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")), ec);
    status = status_of(again.read_all());
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(status == 200);
  CHECK(second.get("/2-again").result_int() == 200);
}

TEST_CASE("a handler that throws gives 500, and the server keeps serving") {
  auto server = HttpServer::start(loopback(), [](const HttpRequest& r) -> HttpResponse {
    if (r.path == "/throw") throw std::runtime_error("boom");
    return echo(r);
  });
  REQUIRE(server.has_value());
  Client client((*server)->address());
  CHECK(client.get("/throw").result_int() == 500);
  CHECK(client.get("/fine").result_int() == 200);
  CHECK((*server)->stats().responses_5xx == 1);
}

TEST_CASE("a bad listen address is an error, not a crash") {
  HttpOptions options;
  options.listen = "not-an-address";
  CHECK_FALSE(HttpServer::start(options, {}).has_value());
  options.listen = "256.1.1.1:80";
  CHECK_FALSE(HttpServer::start(options, {}).has_value());
}

TEST_CASE("answer_raw_requests answers bytes as a connection of the server does") {
  HttpOptions options = loopback();
  options.token = "t0ken";
  options.max_header_bytes = 512;
  auto server = HttpServer::start(options, echo);
  REQUIRE(server.has_value());
  const std::string big(600, 'x');
  const std::vector<std::string> inputs = {
      "GET /healthz HTTP/1.1\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\nGET /a?x=%41 HTTP/1.1\r\n\r\n",
      "HEAD /s HTTP/1.1\r\nAuthorization: bearer t0ken\r\n\r\nGET /nope HTTP/1.1\r\nAuthorization: Bearer t0ken\r\n\r\nGET /p",
      "GET /s HTTP/1.1\r\nX-Big: " + big + "\r\n\r\n",
      "NOT HTTP\r\n\r\n",
      "GET /s HTTP/1.1\r\nAuthorization: Bearer t0ken\r\nConnection: close\r\n\r\nGET /after HTTP/1.1\r\n\r\n",
  };
  for (const auto& input : inputs) {
    CAPTURE(input);
    Client client((*server)->address());
    client.send(input);
    client.socket.shutdown(tcp::socket::shutdown_send);
    std::string how;
    const std::string over_socket = client.read_all(&how);
    CHECK(how == "eof");
    CHECK(!over_socket.empty());
    CHECK(gw::gateway::answer_raw_requests(input, options, echo) == over_socket);
  }
  CHECK(gw::gateway::answer_raw_requests("", options, echo).empty());
  const std::string two = gw::gateway::answer_raw_requests(inputs[1], options, echo);
  CHECK(status_of(two) == 200);
  CHECK(two.find("HTTP/1.1 401 Unauthorized") != std::string::npos);  // the second request has no token
}
