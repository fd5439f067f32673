// The front door end to end: the real `stratus up` binary, real sandboxes and runtimes, driven
// over HTTP and the CLI. Tenants and isolation, limits with their status and header, the
// circuit breaker against a crash-looping function, async retries to a destination, and kill -9
// during async processing (docs/reliability.md names what each test proves).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>

#include "common/json.h"
#include "tests/e2e_util.h"

namespace stratus::e2e {
namespace {

using namespace std::chrono_literals;

const char* kCode = R"PY(
import os, time

def handler(event, context):
    return {"ok": event}

def slow(event, context):
    time.sleep(float(event.get("sleep", 0.2)))
    return {"slept": event.get("n")}

def crash(event, context):
    os._exit(3)

def fail(event, context):
    raise RuntimeError("always fails")

def record(event, context):
    return {"got": event}
)PY";

std::string zip() { return makeZip({{"index.py", kCode, 0644, ""}}); }

json::object obj(const HttpResponse& r) {
  auto v = parseJson(r.body);
  if (!v.isOk() || !v->is_object()) return {};
  return v->as_object();
}

std::string str(const json::object& o, std::string_view k) {
  const json::value* v = o.if_contains(k);
  if (!v) return "";
  return v->is_string() ? std::string(v->as_string()) : json::serialize(*v);
}

std::string header(const HttpResponse& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

HttpHeaders bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

template <typename Pred>
bool waitFor(Pred pred, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return pred();
}

class FrontDoorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Server::start(dir_.path() / "data");
    ASSERT_TRUE(s.isOk()) << s.status().toString();
    server_ = std::move(s).value();
  }

  HttpResponse call(const std::string& method, const std::string& target,
                    const std::string& body = {}, HttpHeaders headers = {}) {
    auto r = server_->call(method, target, body, std::move(headers));
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    return r.isOk() ? *r : HttpResponse{0, {}, {}};
  }
  void deploy(const std::string& name, const std::string& handler, const std::string& extra = {},
              HttpHeaders headers = {}) {
    auto r = call("POST", "/2023-03-30/functions",
                  functionSpec(name, "python3", handler, zip(), extra), std::move(headers));
    ASSERT_EQ(r.status, 200) << r.body;
  }
  std::pair<int, std::string> cli(std::vector<std::string> args) {
    args.insert(args.begin(), STRATUS_BINARY);
    return runCommand(args, {{"STRATUS_ENDPOINT", server_->endpoint()},
                             {"STRATUS_KEY", server_->key()},
                             {"STRATUS_CONFIG", (dir_.path() / "none.json").string()}});
  }
  std::string createTenant(const std::string& name, std::vector<std::string> flags = {}) {
    std::vector<std::string> args = {"tenant", "create", name, "--json"};
    for (auto& f : flags) args.push_back(f);
    auto [rc, out] = cli(args);
    EXPECT_EQ(rc, 0) << out;
    auto v = parseJson(out);
    if (!v.isOk() || !v->is_object()) return "";
    return str(v->as_object(), "apiKey");
  }

  // Sends bytes on a fresh connection and returns everything the server answers until it closes.
  std::string rawExchange(const std::string& bytes) {
    auto ep = parseEndpoint(server_->endpoint());
    EXPECT_TRUE(ep.isOk());
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(ep->port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;  // the server may answer and stop reading early
      off += static_cast<size_t>(n);
    }
    std::string out;
    char buf[4096];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5000) <= 0) break;
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  }

  TempDir dir_;
  std::unique_ptr<Server> server_;
};

TEST_F(FrontDoorTest, TenantCliAndIsolationAcrossEveryEndpoint) {
  std::string a = createTenant("alpha");
  std::string b = createTenant("beta", {"--rps", "100"});
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  auto [rc, ls] = cli({"tenant", "ls"});
  EXPECT_EQ(rc, 0) << ls;
  EXPECT_NE(ls.find("alpha"), std::string::npos) << ls;
  EXPECT_NE(ls.find("requestsPerSecond=100"), std::string::npos) << ls;
  auto [rc2, set] = cli({"tenant", "set", "alpha", "--max-functions", "5"});
  EXPECT_EQ(rc2, 0) << set;
  EXPECT_NE(set.find("maxFunctions=5"), std::string::npos) << set;

  deploy("mine", "index.handler", {}, bearer(a));
  ASSERT_EQ(call("POST", "/2023-03-30/functions/mine/invocations", R"({"x":1})", bearer(a)).status,
            200);
  ASSERT_EQ(call("PUT", "/2023-03-30/functions/mine/async-invoke-config",
                 R"({"maxAsyncRetryAttempts":0})", bearer(a))
                .status,
            200);
  HttpHeaders asyncA = bearer(a);
  asyncA["x-fc-invocation-type"] = "Async";
  asyncA["x-fc-request-id"] = "alpha-task";
  ASSERT_EQ(call("POST", "/2023-03-30/functions/mine/invocations", "{}", asyncA).status, 202);

  const std::string base = "/2023-03-30/functions/mine";
  HttpHeaders asyncB = bearer(b);
  asyncB["x-fc-invocation-type"] = "Async";
  struct Probe {
    std::string method, target, body;
    HttpHeaders headers;
  };
  for (const Probe& p : std::vector<Probe>{
           {"GET", base, "", bearer(b)},
           {"PUT", base, R"({"timeout":9})", bearer(b)},
           {"DELETE", base, "", bearer(b)},
           {"POST", base + "/invocations", "{}", bearer(b)},
           {"POST", base + "/invocations", "{}", asyncB},
           {"GET", base + "/async-invoke-config", "", bearer(b)},
           {"PUT", base + "/async-invoke-config", "{}", bearer(b)},
           {"DELETE", base + "/async-invoke-config", "", bearer(b)},
           {"GET", base + "/async-tasks", "", bearer(b)},
           {"GET", base + "/async-tasks/alpha-task", "", bearer(b)},
       }) {
    auto r = call(p.method, p.target, p.body, p.headers);
    EXPECT_EQ(r.status, 404) << p.method << " " << p.target << " -> " << r.body;
  }
  EXPECT_EQ(
      obj(call("GET", "/2023-03-30/functions", "", bearer(b))).at("functions").as_array().size(),
      0u);
  // Tenant keys stay out of the admin API.
  EXPECT_EQ(call("GET", "/admin/tenants", "", bearer(a)).status, 403);
  EXPECT_EQ(call("POST", "/admin/tenants", R"({"name":"x"})", bearer(b)).status, 403);
  // alpha's function is intact.
  EXPECT_EQ(call("GET", base, "", bearer(a)).status, 200);

  auto [rc3, rm] = cli({"tenant", "rm", "alpha"});
  EXPECT_EQ(rc3, 0) << rm;
  EXPECT_EQ(call("GET", base, "", bearer(a)).status, 401);
}

TEST_F(FrontDoorTest, EachLimitAnswersItsStatusAndHeader) {
  std::string key = createTenant("limited", {"--rps", "3", "--burst", "3"});
  deploy("f", "index.handler", {}, bearer(key));  // 1 token
  int ok = 0, limited = 0;
  std::string retryAfter, code;
  for (int i = 0; i < 6; ++i) {
    auto r = call("POST", "/2023-03-30/functions/f/invocations", "{}", bearer(key));
    if (r.status == 200) ++ok;
    if (r.status == 429) {
      ++limited;
      retryAfter = header(r, "Retry-After");
      code = str(obj(r), "code");
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(limited, 3);
  EXPECT_EQ(code, "TooManyRequests");
  EXPECT_EQ(retryAfter, "1");

  // Per-function bucket.
  std::string fk = createTenant("perfn", {"--function-rps", "1"});
  deploy("g", "index.handler", {}, bearer(fk));
  EXPECT_EQ(call("POST", "/2023-03-30/functions/g/invocations", "{}", bearer(fk)).status, 200);
  auto r = call("POST", "/2023-03-30/functions/g/invocations", "{}", bearer(fk));
  EXPECT_EQ(r.status, 429);
  EXPECT_FALSE(header(r, "Retry-After").empty());

  // Function count quota.
  std::string qk = createTenant("onefn", {"--max-functions", "1"});
  deploy("only", "index.handler", {}, bearer(qk));
  r = call("POST", "/2023-03-30/functions",
           functionSpec("second", "python3", "index.handler", zip()), bearer(qk));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(str(obj(r), "code"), "QuotaExceeded");

  // Body limit for async events (413) and the header limit of the server (431).
  HttpHeaders async = bearer(qk);
  async["x-fc-invocation-type"] = "Async";
  r = call("POST", "/2023-03-30/functions/only/invocations", std::string(300 << 10, 'x'), async);
  EXPECT_EQ(r.status, 413);
  std::string reply = rawExchange("GET /2023-03-30/functions HTTP/1.1\r\nHost: x\r\nx-huge: " +
                                  std::string(70 << 10, 'h') + "\r\n\r\n");
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 431")) << reply.substr(0, 200);
}

TEST_F(FrontDoorTest, CrashLoopingFunctionOpensTheBreakerAndBoundsInstanceStarts) {
  deploy("crashy", "index.crash");
  int reached = 0, refused = 0;
  std::set<std::string> instances;
  std::string retryAfter;
  for (int i = 0; i < 40; ++i) {
    auto r = call("POST", "/2023-03-30/functions/crashy/invocations", "{}");
    if (r.status == 200) {
      EXPECT_EQ(header(r, "x-fc-error-type"), "UnhandledInvocationError") << r.body;
      ++reached;
      if (!header(r, "x-fc-instance-id").empty()) instances.insert(header(r, "x-fc-instance-id"));
    } else {
      EXPECT_EQ(r.status, 503) << r.body;
      EXPECT_EQ(str(obj(r), "code"), "CircuitBreakerOpen") << r.body;
      retryAfter = header(r, "Retry-After");
      ++refused;
    }
  }
  // Five crashes open the breaker; the other 35 calls never reach the scheduler.
  EXPECT_EQ(reached, 5);
  EXPECT_EQ(refused, 35);
  EXPECT_LE(instances.size(), 5u);
  EXPECT_FALSE(retryAfter.empty());
  // After the open period one probe goes through, crashes, and the breaker reopens for longer.
  int wait = std::stoi(retryAfter);
  ASSERT_LE(wait, 5);
  std::this_thread::sleep_for(std::chrono::seconds(wait) + 200ms);
  auto probe = call("POST", "/2023-03-30/functions/crashy/invocations", "{}");
  EXPECT_EQ(probe.status, 200);
  auto after = call("POST", "/2023-03-30/functions/crashy/invocations", "{}");
  EXPECT_EQ(after.status, 503);
  EXPECT_GE(std::stoi(header(after, "Retry-After")), 9);
  auto metrics = httpRequest(server_->endpoint(), "GET", "/metrics");
  ASSERT_TRUE(metrics.isOk());
  EXPECT_NE(metrics->body.find("stratus_breaker_opens_total 2"), std::string::npos)
      << metrics->body;
  // Fixing the function (a new revision) closes the breaker at once.
  auto fix = call("PUT", "/2023-03-30/functions/crashy", R"({"handler":"index.handler"})");
  ASSERT_EQ(fix.status, 200) << fix.body;
  auto fixed = call("POST", "/2023-03-30/functions/crashy/invocations", R"({"a":1})");
  EXPECT_EQ(fixed.status, 200);
  EXPECT_EQ(header(fixed, "x-fc-error-type"), "");
}

TEST_F(FrontDoorTest, AsyncRetriesThenFailsToTheOnFailureDestination) {
  deploy("flaky", "index.fail");
  deploy("dlq", "index.record");
  auto cfg = call("PUT", "/2023-03-30/functions/flaky/async-invoke-config",
                  R"({"maxAsyncRetryAttempts":1,
                      "destinationConfig":{"onFailure":{"destination":"dlq"}}})");
  ASSERT_EQ(cfg.status, 200) << cfg.body;
  auto r = call("POST", "/2023-03-30/functions/flaky/invocations", R"({"order":7})",
                {{"x-fc-invocation-type", "Async"}, {"x-fc-request-id", "job-7"}});
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(header(r, "x-fc-request-id"), "job-7");
  json::object task;
  ASSERT_TRUE(waitFor(
      [&] {
        task = obj(call("GET", "/2023-03-30/functions/flaky/async-tasks/job-7"));
        return str(task, "status") == "Failed";
      },
      30s))
      << json::serialize(task);
  EXPECT_EQ(str(task, "attempts"), "2");
  EXPECT_NE(str(task, "error").find("always fails"), std::string::npos) << json::serialize(task);
  json::object dest;
  ASSERT_TRUE(waitFor(
      [&] {
        dest = obj(call("GET", "/2023-03-30/functions/dlq/async-tasks/job-7-onFailure"));
        return str(dest, "status") == "Succeeded";
      },
      30s))
      << json::serialize(dest);
  EXPECT_NE(str(dest, "result").find("RetriesExhausted"), std::string::npos) << str(dest, "result");
  EXPECT_NE(str(dest, "result").find("\"order\": 7"), std::string::npos) << str(dest, "result");
}

TEST_F(FrontDoorTest, KillMinusNineDuringAsyncProcessingLosesNothing) {
  deploy("slow", "index.slow", R"("maxInstances":2)");
  constexpr int kTasks = 40;
  std::vector<std::string> ids;
  for (int i = 0; i < kTasks; ++i) {
    std::string id = "task-" + std::to_string(i);
    auto r = call("POST", "/2023-03-30/functions/slow/invocations",
                  R"({"sleep":0.2,"n":)" + std::to_string(i) + "}",
                  {{"x-fc-invocation-type", "Async"}, {"x-fc-request-id", id}});
    ASSERT_EQ(r.status, 202) << r.body;
    ids.push_back(id);
  }
  auto status = [&](const std::string& id) {
    return str(obj(call("GET", "/2023-03-30/functions/slow/async-tasks/" + id)), "status");
  };
  // Let processing start (some done, most not), then kill -9 in the middle of it.
  ASSERT_TRUE(waitFor([&] { return status(ids[0]) == "Succeeded"; }, 60s));
  auto killed = server_->stop(SIGKILL);
  ASSERT_TRUE(killed.isOk());
  auto again = Server::start(dir_.path() / "data");
  ASSERT_TRUE(again.isOk()) << again.status().toString();
  server_ = std::move(again).value();
  int pendingAtRestart = 0;
  for (const auto& id : ids) pendingAtRestart += status(id) != "Succeeded" ? 1 : 0;
  EXPECT_GT(pendingAtRestart, 0) << "the kill came too late to test anything";
  for (const auto& id : ids) {
    std::string s;
    ASSERT_TRUE(waitFor(
        [&] {
          s = status(id);
          return s == "Succeeded" || s == "Failed";
        },
        90s))
        << id << " is " << s;
    EXPECT_EQ(s, "Succeeded") << id;
  }
}

}  // namespace
}  // namespace stratus::e2e
