// HttpServer: the HTTP/1.1 front door on Boost.Asio/Beast (C++20 coroutines), keep-alive,
// header and body limits. The only component that includes Beast/Asio (they cost ~25 s per
// translation unit): everything behind it sees common/http.h values.
//
// Limits (docs/reliability.md): a request whose body exceeds maxBodyBytes gets 413
// {"code":"PayloadTooLarge",...}, a header over maxHeaderBytes 431; malformed HTTP gets 400 and
// the connection closed. A connection beyond maxConnectionsPerAddress (from one client IP) gets
// 429 TooManyConnections, beyond maxConnections 503 ServiceUnavailable, both with Retry-After and
// closed at once. Slowloris: a connection that sent the first byte of a request must complete
// the header within headerTimeout (else 408 RequestTimeout and close) and the body within
// bodyTimeout; an idle keep-alive connection is closed after idleTimeout; a connection serves at
// most maxRequestsPerConnection requests (then Connection: close), so one client cannot hold a
// connection's share of the server forever. The handler may respond from any thread; the server
// serialises the write back on the connection. Thread-safety: start()/stop() from one owner thread;
// the handler is called concurrently from the server's threads and must not block.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/http.h"
#include "common/status.h"

namespace stratus {

struct HttpServerOptions {
  std::string listenAddress = "127.0.0.1";
  uint16_t port = 9000;  // 0: pick a free port (see boundPort())
  int threads = 2;
  int64_t maxBodyBytes = 140LL << 20;  // base64 of a 100 MB zip plus JSON
  int64_t maxHeaderBytes = 64 << 10;
  Duration idleTimeout = std::chrono::seconds(60);
  Duration headerTimeout = std::chrono::seconds(10);
  Duration bodyTimeout = std::chrono::seconds(120);
  int maxConnections = 10000;
  int maxConnectionsPerAddress = 512;
  int maxRequestsPerConnection = 10000;
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();  // stop()
  // Binds and starts serving on background threads.
  Status start();
  uint16_t boundPort() const;
  // Stops accepting, lets in-flight responses finish up to `grace`, then closes everything.
  void stop(Duration grace = std::chrono::seconds(5));
  // Runs `fn` on the server's threads after `delay` repeatedly (periodic housekeeping such as
  // Scheduler::tick); for the owner, before start().
  void every(Duration period, std::function<void()> fn);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Parses one complete request from bytes exactly as a connection does (same parser, limits and
// conversion), for the fuzz target and tests. Malformed input is kInvalidArgument naming the
// HTTP status the server would answer.
Result<HttpRequest> parseHttpRequest(std::string_view bytes, const HttpServerOptions& options);

}  // namespace stratus
