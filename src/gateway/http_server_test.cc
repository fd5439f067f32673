// HttpServer against the real HttpClient and raw sockets on loopback (port 0).
#include "gateway/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "common/unique_fd.h"
#include "http/http_client.h"

namespace stratus {
namespace {

using namespace std::chrono_literals;

template <typename Pred>
bool waitFor(Pred pred, Duration timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

HttpResponse textResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers["Content-Type"] = "text/plain";
  r.body = std::move(body);
  return r;
}

// Echoes what the server parsed, so tests can check the conversion to HttpRequest.
void echoHandler(HttpRequest req, HttpRespond respond) {
  HttpResponse r = textResponse(200, req.body);
  r.headers["x-method"] = req.method;
  r.headers["x-path"] = req.path;
  r.headers["x-remote"] = req.remoteAddress;
  for (auto& [k, v] : req.query) r.headers["x-q-" + k] = v;
  if (auto h = req.header("x-test")) r.headers["x-test-echo"] = std::string(*h);
  respond(std::move(r));
}

struct Server {
  explicit Server(HttpHandler handler, HttpServerOptions options = {}) {
    options.port = 0;
    server = std::make_unique<HttpServer>(options, std::move(handler));
    Status st = server->start();
    EXPECT_TRUE(st.isOk()) << st.toString();
    endpoint = "http://127.0.0.1:" + std::to_string(server->boundPort());
  }
  std::unique_ptr<HttpServer> server;
  std::string endpoint;
};

// A raw TCP connection, for bytes HttpClient would never send.
UniqueFd rawConnect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << strerror(errno);
  return UniqueFd(fd);
}

// Reads until EOF (or error, or the deadline); returns what arrived.
std::string readToEof(int fd, Duration timeout = 5s) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST(HttpServerTest, KeepAliveGetAndPostOnOneConnection) {
  Server s(echoHandler);
  auto client = HttpClient::connect(s.endpoint);
  ASSERT_TRUE(client.isOk()) << client.status().toString();

  auto r1 = (*client)->request("GET", "/hello", {{"X-Test", "one"}});
  ASSERT_TRUE(r1.isOk()) << r1.status().toString();
  EXPECT_EQ(r1->status, 200);
  EXPECT_EQ(r1->headers["x-method"], "GET");
  EXPECT_EQ(r1->headers["x-path"], "/hello");
  EXPECT_EQ(r1->headers["x-test-echo"], "one");
  EXPECT_EQ(r1->headers["content-type"], "text/plain");

  auto r2 = (*client)->request("POST", "/things", {}, "payload-bytes");
  ASSERT_TRUE(r2.isOk()) << r2.status().toString();
  EXPECT_EQ(r2->status, 200);
  EXPECT_EQ(r2->headers["x-method"], "POST");
  EXPECT_EQ(r2->body, "payload-bytes");
  EXPECT_EQ(r2->headers["content-length"], "13");
  // Same client port both times: the second request reused the connection.
  EXPECT_FALSE(r1->headers["x-remote"].empty());
  EXPECT_EQ(r1->headers["x-remote"], r2->headers["x-remote"]);
}

TEST(HttpServerTest, DecodesPathAndQuery) {
  Server s(echoHandler);
  auto r = httpRequest(s.endpoint, "GET", "/a%20b/c%2Fd?x=1&y=hello%20world&z=a+b&empty=");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->headers["x-path"], "/a b/c/d");
  EXPECT_EQ(r->headers["x-q-x"], "1");
  EXPECT_EQ(r->headers["x-q-y"], "hello world");
  EXPECT_EQ(r->headers["x-q-z"], "a b");
  EXPECT_EQ(r->headers.count("x-q-empty"), 1u);

  auto bad = httpRequest(s.endpoint, "GET", "/bad%zzescape");
  ASSERT_TRUE(bad.isOk()) << bad.status().toString();
  EXPECT_EQ(bad->status, 400);
}

// The handler parks respond callbacks; the test answers them from its own thread.
struct ParkingHandler {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<HttpRequest, HttpRespond>> parked;

  HttpHandler handler() {
    return [this](HttpRequest req, HttpRespond respond) {
      std::lock_guard lock(mu);
      parked.emplace_back(std::move(req), std::move(respond));
      cv.notify_all();
    };
  }
  std::pair<HttpRequest, HttpRespond> take(Duration timeout = 5s) {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, timeout, [&] { return !parked.empty(); })) return {};
    auto p = std::move(parked.front());
    parked.pop_front();
    return p;
  }
};

TEST(HttpServerTest, RespondLaterFromAnotherThread) {
  ParkingHandler parking;
  Server s(parking.handler());
  auto pending = std::async(std::launch::async,
                            [&] { return httpRequest(s.endpoint, "POST", "/slow", {}, "in"); });
  auto [req, respond] = parking.take();
  ASSERT_TRUE(respond);
  EXPECT_EQ(req.body, "in");
  std::thread responder([respond = respond] { respond(textResponse(201, "later")); });
  responder.join();
  auto r = pending.get();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "later");
}

TEST(HttpServerTest, DroppedOrThrowingHandlerAnswers500) {
  Server drop([](HttpRequest, HttpRespond) { /* never responds, drops the callback */ });
  auto r = httpRequest(drop.endpoint, "GET", "/");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 500);

  Server thrower([](HttpRequest, HttpRespond) { throw std::runtime_error("boom"); });
  auto t = httpRequest(thrower.endpoint, "GET", "/");
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  EXPECT_EQ(t->status, 500);
  EXPECT_NE(t->body.find("InternalError"), std::string::npos);
}

TEST(HttpServerTest, SecondRespondIsIgnored) {
  Server s([](HttpRequest, HttpRespond respond) {
    respond(textResponse(200, "first"));
    respond(textResponse(500, "second"));
  });
  auto client = HttpClient::connect(s.endpoint);
  ASSERT_TRUE(client.isOk());
  for (int i = 0; i < 3; ++i) {
    auto r = (*client)->request("GET", "/");
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "first");
  }
}

TEST(HttpServerTest, NoContentResponseDropsBodyAndKeepsConnection) {
  Server s([](HttpRequest req, HttpRespond respond) {
    respond(textResponse(req.path == "/empty" ? 204 : 200, "body"));
  });
  auto client = HttpClient::connect(s.endpoint);
  ASSERT_TRUE(client.isOk());
  auto r = (*client)->request("DELETE", "/empty");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(r->body, "");
  auto next = (*client)->request("GET", "/other");
  ASSERT_TRUE(next.isOk()) << next.status().toString();
  EXPECT_EQ(next->body, "body");
}

TEST(HttpServerTest, OversizedBodyGets413) {
  HttpServerOptions options;
  options.maxBodyBytes = 1024;
  std::atomic<int> handled{0};
  Server s(
      [&](HttpRequest req, HttpRespond respond) {
        ++handled;
        respond(textResponse(200, "ok"));
      },
      options);
  auto ok = httpRequest(s.endpoint, "POST", "/", {}, std::string(1024, 'a'));
  ASSERT_TRUE(ok.isOk()) << ok.status().toString();
  EXPECT_EQ(ok->status, 200);

  // Larger than the socket buffers: the client is still sending when the server answers.
  auto r = httpRequest(s.endpoint, "POST", "/", {}, std::string(8 << 20, 'a'));
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(r->headers["content-type"], "application/json");
  EXPECT_EQ(r->body, R"({"code":"PayloadTooLarge","message":"request body exceeds 1024 bytes"})");
  EXPECT_EQ(handled.load(), 1);
}

TEST(HttpServerTest, OversizedHeaderGets431) {
  HttpServerOptions options;
  options.maxHeaderBytes = 1024;
  Server s(echoHandler, options);
  auto r = httpRequest(s.endpoint, "GET", "/", {{"x-big", std::string(4096, 'h')}});
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 431);
}

TEST(HttpServerTest, GarbageGets400AndClose) {
  Server s(echoHandler);
  UniqueFd fd = rawConnect(s.server->boundPort());
  std::string garbage = "\x01\x02 this is not HTTP at all\r\n\r\n";
  ASSERT_EQ(::write(fd.get(), garbage.data(), garbage.size()), (ssize_t)garbage.size());
  std::string reply = readToEof(fd.get());
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 400")) << reply;
  EXPECT_NE(reply.find(R"("code":"BadRequest")"), std::string::npos) << reply;
  EXPECT_NE(reply.find("Connection: close"), std::string::npos) << reply;
}

TEST(HttpServerTest, IdleConnectionIsClosedAfterIdleTimeout) {
  HttpServerOptions options;
  options.idleTimeout = 100ms;
  Server s(echoHandler, options);
  UniqueFd fd = rawConnect(s.server->boundPort());
  auto start = std::chrono::steady_clock::now();
  std::string got = readToEof(fd.get(), 5s);
  EXPECT_EQ(got, "");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

// A keep-alive client whose connection sat idle past the server's idleTimeout: its next request
// must be answered (the client sees the close and retries on a new connection), not left
// hanging. Seen in `stratus bench density`: the first call after a fill longer than 60 s timed
// out after the client's 120 s.
TEST(HttpServerTest, ClientReusingAConnectionClosedForIdlenessGetsAnAnswer) {
  HttpServerOptions options;
  options.idleTimeout = 200ms;
  Server s(echoHandler, options);
  auto client = HttpClient::connect(s.endpoint, 5s);
  ASSERT_TRUE(client.isOk()) << client.status().toString();
  auto r1 = (*client)->request("POST", "/one", {}, "first");
  ASSERT_TRUE(r1.isOk()) << r1.status().toString();
  std::this_thread::sleep_for(600ms);  // the idle timeout must pass: that is the scenario
  auto start = std::chrono::steady_clock::now();
  auto r2 = (*client)->request("POST", "/two", {}, "second");
  ASSERT_TRUE(r2.isOk()) << r2.status().toString();
  EXPECT_EQ(r2->status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

// ---- limits against slow and greedy clients (docs/reliability.md) ----

TEST(HttpServerTest, SlowlorisHeaderGets408AfterHeaderTimeout) {
  HttpServerOptions options;
  options.headerTimeout = 300ms;
  options.idleTimeout = 30s;  // the idle wait before the first byte is not what cuts it
  Server s(echoHandler, options);
  UniqueFd fd = rawConnect(s.server->boundPort());
  auto start = std::chrono::steady_clock::now();
  // Trickle a header that never ends, one line every 100 ms, as slowloris does.
  std::string first = "GET / HTTP/1.1\r\nHost: a\r\n";
  ASSERT_EQ(::write(fd.get(), first.data(), first.size()), (ssize_t)first.size());
  std::string reply;
  for (int i = 0; i < 50 && reply.empty(); ++i) {
    std::string line = "x-slow-" + std::to_string(i) + ": 1\r\n";
    (void)!::write(fd.get(), line.data(), line.size());
    reply = readToEof(fd.get(), 100ms);
  }
  reply += readToEof(fd.get(), 2s);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 408")) << reply;
  EXPECT_NE(reply.find(R"("code":"RequestTimeout")"), std::string::npos) << reply;
  EXPECT_NE(reply.find("Connection: close"), std::string::npos) << reply;
  EXPECT_LT(took, 3s);
}

TEST(HttpServerTest, SlowBodyIsCutAfterBodyTimeout) {
  HttpServerOptions options;
  options.bodyTimeout = 300ms;
  Server s(echoHandler, options);
  UniqueFd fd = rawConnect(s.server->boundPort());
  std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc";
  ASSERT_EQ(::write(fd.get(), head.data(), head.size()), (ssize_t)head.size());
  auto start = std::chrono::steady_clock::now();
  std::string reply = readToEof(fd.get(), 5s);
  EXPECT_EQ(reply, "");  // closed without a response: the body never completed
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST(HttpServerTest, ConnectionsPerAddressAreCappedWith429) {
  HttpServerOptions options;
  options.maxConnectionsPerAddress = 3;
  Server s(echoHandler, options);
  std::vector<UniqueFd> held;
  for (int i = 0; i < 3; ++i) held.push_back(rawConnect(s.server->boundPort()));
  // Make sure the server has accepted those three.
  for (auto& fd : held) {
    std::string req = "GET /held HTTP/1.1\r\nHost: a\r\n\r\n";
    ASSERT_EQ(::write(fd.get(), req.data(), req.size()), (ssize_t)req.size());
    ASSERT_NE(readToEof(fd.get(), 300ms).find("HTTP/1.1 200"), std::string::npos);
  }
  UniqueFd extra = rawConnect(s.server->boundPort());
  std::string reply = readToEof(extra.get(), 5s);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 429")) << reply;
  EXPECT_NE(reply.find("Retry-After: 1"), std::string::npos) << reply;
  EXPECT_NE(reply.find(R"("code":"TooManyConnections")"), std::string::npos) << reply;
  // Closing one frees its slot.
  held.pop_back();
  EXPECT_TRUE(waitFor([&] {
    auto r = httpRequest(s.endpoint, "GET", "/again");
    return r.isOk() && r->status == 200;
  }));
}

TEST(HttpServerTest, TotalConnectionsAreCappedWith503) {
  HttpServerOptions options;
  options.maxConnections = 2;
  Server s(echoHandler, options);
  UniqueFd a = rawConnect(s.server->boundPort());
  UniqueFd b = rawConnect(s.server->boundPort());
  UniqueFd c = rawConnect(s.server->boundPort());
  std::string reply = readToEof(c.get(), 5s);
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 503")) << reply;
  EXPECT_NE(reply.find("Retry-After: 1"), std::string::npos) << reply;
}

TEST(HttpServerTest, RequestsPerConnectionAreBounded) {
  HttpServerOptions options;
  options.maxRequestsPerConnection = 2;
  Server s(echoHandler, options);
  UniqueFd fd = rawConnect(s.server->boundPort());
  std::string req =
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
  ASSERT_EQ(::write(fd.get(), req.data(), req.size()), (ssize_t)req.size());
  std::string reply = readToEof(fd.get());
  EXPECT_NE(reply.find("x-path: /1"), std::string::npos) << reply;
  EXPECT_NE(reply.find("x-path: /2"), std::string::npos) << reply;
  EXPECT_EQ(reply.find("x-path: /3"), std::string::npos) << reply;
  EXPECT_NE(reply.find("Connection: close"), std::string::npos) << reply;
}

TEST(ParseHttpRequestTest, ParsesLikeAConnection) {
  HttpServerOptions options;
  auto r = parseHttpRequest(
      "POST /a%20b/c?x=1&y=two+words HTTP/1.1\r\nHost: h\r\nX-Dup: 1\r\nX-Dup: 2\r\n"
      "Content-Length: 5\r\n\r\nhello",
      options);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->method, "POST");
  EXPECT_EQ(r->path, "/a b/c");
  EXPECT_EQ(r->query["y"], "two words");
  EXPECT_EQ(r->headers["x-dup"], "1, 2");
  EXPECT_EQ(r->body, "hello");
  auto chunked = parseHttpRequest(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      options);
  ASSERT_TRUE(chunked.isOk()) << chunked.status().toString();
  EXPECT_EQ(chunked->body, "abc");
  EXPECT_FALSE(parseHttpRequest("GET nope HTTP/1.1\r\nHost: h\r\n\r\n", options).isOk());
  EXPECT_FALSE(parseHttpRequest("GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n", options).isOk());
  EXPECT_FALSE(parseHttpRequest("\x01garbage\r\n\r\n", options).isOk());
  EXPECT_FALSE(
      parseHttpRequest("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", options).isOk());
  options.maxHeaderBytes = 64;
  auto big =
      parseHttpRequest("GET / HTTP/1.1\r\nx: " + std::string(200, 'a') + "\r\n\r\n", options);
  ASSERT_FALSE(big.isOk());
  EXPECT_NE(big.status().message().find("431"), std::string::npos) << big.status().message();
}

TEST(HttpServerTest, ConnectionCloseRequestIsHonoured) {
  Server s(echoHandler);
  UniqueFd fd = rawConnect(s.server->boundPort());
  std::string req = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::write(fd.get(), req.data(), req.size()), (ssize_t)req.size());
  std::string reply = readToEof(fd.get());
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
}

TEST(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Server s(echoHandler);
  UniqueFd fd = rawConnect(s.server->boundPort());
  std::string req =
      "GET /first HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  ASSERT_EQ(::write(fd.get(), req.data(), req.size()), (ssize_t)req.size());
  std::string reply = readToEof(fd.get());
  size_t first = reply.find("x-path: /first");
  size_t second = reply.find("x-path: /second");
  ASSERT_NE(first, std::string::npos) << reply;
  ASSERT_NE(second, std::string::npos) << reply;
  EXPECT_LT(first, second);
}

TEST(HttpServerTest, ManyConcurrentClientsAllAnswered) {
  std::atomic<int> handled{0};
  Server s([&](HttpRequest req, HttpRespond respond) {
    ++handled;
    respond(textResponse(200, req.path));
  });
  constexpr int kThreads = 8, kRequests = 200;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = HttpClient::connect(s.endpoint);
      if (!client.isOk()) return;
      for (int i = 0; i < kRequests; ++i) {
        std::string path = "/t" + std::to_string(t) + "/" + std::to_string(i);
        auto r = (*client)->request("GET", path);
        if (r.isOk() && r->status == 200 && r->body == path) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), kThreads * kRequests);
  EXPECT_EQ(handled.load(), kThreads * kRequests);
}

TEST(HttpServerTest, StopIsPromptWithIdleConnectionOpen) {
  Server s(echoHandler);
  auto client = HttpClient::connect(s.endpoint);
  ASSERT_TRUE(client.isOk());
  ASSERT_TRUE((*client)->request("GET", "/").isOk());
  UniqueFd raw = rawConnect(s.server->boundPort());  // connected, never sends a byte
  auto start = std::chrono::steady_clock::now();
  s.server->stop(10s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(readToEof(raw.get(), 2s), "");  // closed by the server
  auto after = (*client)->request("GET", "/");
  EXPECT_FALSE(after.isOk());
}

TEST(HttpServerTest, StopLetsInFlightRequestFinish) {
  ParkingHandler parking;
  Server s(parking.handler());
  auto pending =
      std::async(std::launch::async, [&] { return httpRequest(s.endpoint, "GET", "/in-flight"); });
  auto [req, respond] = parking.take();
  ASSERT_TRUE(respond);
  auto stopping = std::async(std::launch::async, [&] { s.server->stop(10s); });
  // New connections are refused once stop() has begun.
  ASSERT_TRUE(waitFor([&] { return !HttpClient::connect(s.endpoint, 1s).isOk(); }));
  respond(textResponse(200, "finished"));
  auto r = pending.get();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->body, "finished");
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_EQ(stopping.wait_for(5s), std::future_status::ready);
}

TEST(HttpServerTest, StopAfterGraceAbandonsStuckRequest) {
  ParkingHandler parking;
  Server s(parking.handler());
  auto pending =
      std::async(std::launch::async, [&] { return httpRequest(s.endpoint, "GET", "/"); });
  auto [req, respond] = parking.take();
  ASSERT_TRUE(respond);
  auto start = std::chrono::steady_clock::now();
  s.server->stop(100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_FALSE(pending.get().isOk());
  // Answering after the server stopped, and after it is destroyed, is harmless.
  s.server.reset();
  respond(textResponse(200, "too late"));
}

TEST(HttpServerTest, EveryRunsPeriodically) {
  std::atomic<int> ticks{0};
  HttpServerOptions options;
  options.port = 0;
  HttpServer server(options, echoHandler);
  server.every(5ms, [&] { ++ticks; });
  ASSERT_TRUE(server.start().isOk());
  EXPECT_TRUE(waitFor([&] { return ticks.load() >= 3; }));
  server.stop();
}

TEST(HttpServerTest, BindFailureIsAStatus) {
  Server first(echoHandler);
  HttpServerOptions options;
  options.port = first.server->boundPort();
  HttpServer second(options, echoHandler);
  Status st = second.start();
  EXPECT_FALSE(st.isOk());
  EXPECT_NE(st.message().find("bind"), std::string::npos) << st.toString();

  HttpServerOptions badAddr;
  badAddr.listenAddress = "not-an-address";
  HttpServer third(badAddr, echoHandler);
  EXPECT_EQ(third.start().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace stratus
