// HttpClient and runLoad() against the real HttpServer and a raw socket server on loopback.
#include "http/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "common/unique_fd.h"
#include "gateway/http_server.h"

namespace stratus {
namespace {

using namespace std::chrono_literals;

HttpResponse textResponse(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers["Content-Type"] = "text/plain";
  r.body = std::move(body);
  return r;
}

struct Server {
  explicit Server(HttpHandler handler) {
    HttpServerOptions options;
    options.port = 0;
    server = std::make_unique<HttpServer>(options, std::move(handler));
    Status st = server->start();
    EXPECT_TRUE(st.isOk()) << st.toString();
    endpoint = "http://127.0.0.1:" + std::to_string(server->boundPort());
  }
  std::unique_ptr<HttpServer> server;
  std::string endpoint;
};

// Listens on a free loopback port; returns the fd and the port.
std::pair<UniqueFd, uint16_t> listenLoopback() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(fd.get(), 16), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return {std::move(fd), ntohs(addr.sin_port)};
}

// Reads one request head (these tests send no bodies).
std::string readHead(int fd) {
  std::string in;
  char buf[1024];
  while (in.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
  }
  return in;
}

void writeAll(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

TEST(ParseEndpointTest, Forms) {
  auto a = parseEndpoint("http://127.0.0.1:9000");
  ASSERT_TRUE(a.isOk());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9000);
  auto b = parseEndpoint("localhost:81/");
  ASSERT_TRUE(b.isOk());
  EXPECT_EQ(b->host, "localhost");
  EXPECT_EQ(b->port, 81);
  auto c = parseEndpoint("http://[::1]:9000");
  ASSERT_TRUE(c.isOk());
  EXPECT_EQ(c->host, "::1");
  auto d = parseEndpoint("http://example");
  ASSERT_TRUE(d.isOk());
  EXPECT_EQ(d->port, 80);
  EXPECT_FALSE(parseEndpoint("https://x:1").isOk());
  EXPECT_FALSE(parseEndpoint("http://x:99999").isOk());
  EXPECT_FALSE(parseEndpoint("http://x:1/path").isOk());
  EXPECT_FALSE(parseEndpoint("http://:1").isOk());
}

TEST(HttpClientTest, ConnectRefusedIsUnavailable) {
  auto [fd, port] = listenLoopback();
  fd.reset();  // nothing listens there any more
  auto c = HttpClient::connect("http://127.0.0.1:" + std::to_string(port));
  ASSERT_FALSE(c.isOk());
  EXPECT_EQ(c.status().code(), Code::kUnavailable);
  EXPECT_NE(c.status().message().find("connect to 127.0.0.1"), std::string::npos);
}

TEST(HttpClientTest, ReconnectsOnceWhenServerClosedIdleConnection) {
  auto [lfd, port] = listenLoopback();
  int listenFd = lfd.get();
  std::thread server([listenFd] {
    // Answers one request per connection, then closes it though it said keep-alive: what a
    // server that times out idle connections looks like to the client.
    for (const char* body : {"first", "second"}) {
      UniqueFd c(::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC));
      readHead(c.get());
      writeAll(c.get(), std::string("HTTP/1.1 200 OK\r\nContent-Length: ") +
                            std::to_string(strlen(body)) + "\r\n\r\n" + body);
      ::shutdown(c.get(), SHUT_RDWR);
    }
  });
  auto client = HttpClient::connect("127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(client.isOk());
  auto r1 = (*client)->request("GET", "/");
  ASSERT_TRUE(r1.isOk()) << r1.status().toString();
  EXPECT_EQ(r1->body, "first");
  auto r2 = (*client)->request("GET", "/");
  ASSERT_TRUE(r2.isOk()) << r2.status().toString();
  EXPECT_EQ(r2->body, "second");
  server.join();
}

TEST(HttpClientTest, TimeoutIsDeadlineExceeded) {
  HttpRespond parked;
  std::mutex mu;
  Server s([&](HttpRequest, HttpRespond respond) {
    std::lock_guard lock(mu);
    parked = std::move(respond);
  });
  auto start = std::chrono::steady_clock::now();
  auto r = httpRequest(s.endpoint, "GET", "/", {}, {}, 200ms);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), Code::kDeadlineExceeded) << r.status().toString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  std::lock_guard lock(mu);
  if (parked) parked(textResponse(200, "late"));
}

TEST(HttpClientTest, HeadResponseHasNoBody) {
  Server s([](HttpRequest req, HttpRespond respond) { respond(textResponse(200, "abcdef")); });
  auto client = HttpClient::connect(s.endpoint);
  ASSERT_TRUE(client.isOk());
  auto h = (*client)->request("HEAD", "/");
  ASSERT_TRUE(h.isOk()) << h.status().toString();
  EXPECT_EQ(h->body, "");
  EXPECT_EQ(h->headers["content-length"], "6");
  auto g = (*client)->request("GET", "/");  // the connection is still in sync
  ASSERT_TRUE(g.isOk()) << g.status().toString();
  EXPECT_EQ(g->body, "abcdef");
}

TEST(RunLoadTest, CountsCompletedErrorsAndLatencies) {
  std::atomic<int> n{0};
  Server s([&](HttpRequest req, HttpRespond respond) {
    int i = ++n;
    HttpResponse r = textResponse(200, req.body);
    if (i % 10 == 0) r.status = 503;
    if (i % 10 == 5) r.headers["x-fc-error-type"] = "UnhandledInvocationError";
    if (req.header("authorization") != "Bearer k") r.status = 401;
    respond(std::move(r));
  });
  LoadOptions o;
  o.endpoint = s.endpoint;
  o.target = "/2023-03-30/functions/f/invocations";
  o.headers["Authorization"] = "Bearer k";
  o.body = "{}";
  o.requests = 2000;
  o.concurrency = 8;
  auto r = runLoad(o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->completed, 2000);
  EXPECT_EQ(r->failures, 0);
  EXPECT_EQ(r->errors, 400);  // every 10th is a 503, every 10th (offset 5) a function error
  EXPECT_EQ(r->statusCounts[200], 1800);
  EXPECT_EQ(r->statusCounts[503], 200);
  EXPECT_EQ(r->latencyNs.size(), 2000u);
  EXPECT_TRUE(std::is_sorted(r->latencyNs.begin(), r->latencyNs.end()));
  EXPECT_GT(r->percentileNs(50), 0);
  EXPECT_LE(r->percentileNs(50), r->percentileNs(99));
  EXPECT_EQ(r->percentileNs(100), r->latencyNs.back());
  EXPECT_GT(r->requestsPerSecond(), 0);
  EXPECT_EQ(n.load(), 2000);
}

TEST(RunLoadTest, RefusedConnectionsAreFailures) {
  auto [fd, port] = listenLoopback();
  fd.reset();
  auto r = runLoad("http://127.0.0.1:" + std::to_string(port), "GET", "/", {}, {}, 50, 4);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->completed, 0);
  EXPECT_EQ(r->failures, 50);
  EXPECT_NE(r->firstError.find("connect"), std::string::npos) << r->firstError;
}

}  // namespace
}  // namespace stratus
