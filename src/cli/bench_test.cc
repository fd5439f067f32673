// `stratus bench invoke` end to end against a real HttpServer standing in for Stratus, with the
// real node baseline and wrk when they are installed.
#include "cli/bench.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/json.h"
#include "gateway/http_server.h"

namespace stratus {
namespace {

bool onPath(const char* name) {
  std::string cmd = std::string("command -v ") + name + " >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

constexpr const char* kTarget = "/2023-03-30/functions/hello/invocations";

struct FakeStratus {
  FakeStratus() {
    HttpServerOptions options;
    options.port = 0;
    server = std::make_unique<HttpServer>(options, [](HttpRequest req, HttpRespond respond) {
      HttpResponse r;
      r.headers["Content-Type"] = "application/json";
      if (req.header("authorization") != "Bearer sekrit") {
        r.status = 401;
        r.body = R"({"code":"Unauthenticated","message":"bad key"})";
      } else if (req.path != kTarget) {
        r.status = 404;
        r.body = R"({"code":"FunctionNotFound","message":"no such function"})";
      } else {
        r.body = "\"hello\"";
      }
      respond(std::move(r));
    });
    EXPECT_TRUE(server->start().isOk());
    endpoint = "http://127.0.0.1:" + std::to_string(server->boundPort());
  }
  std::unique_ptr<HttpServer> server;
  std::string endpoint;
};

TEST(ParseWrkOutputTest, ReadsThroughputLatencyAndErrors) {
  constexpr std::string_view kOut = R"(Running 4s test @ http://127.0.0.1:18181/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.32ms    1.87ms  18.45ms   86.03%
    Req/Sec    24.05k    10.06k   57.92k    63.75%
  Latency Distribution
     50%  387.00us
     75%    1.78ms
     90%    3.81ms
     99%    1.20s
  191877 requests in 4.02s, 14.09MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 7
Requests/sec:  47729.04
Transfer/sec:      3.50MB
)";
  auto r = parseWrkOutput(kOut);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_DOUBLE_EQ(r->requestsPerSecond, 47729.04);
  EXPECT_EQ(r->requests, 191877);
  EXPECT_EQ(r->p50Us, 387);
  EXPECT_EQ(r->p90Us, 3810);
  EXPECT_EQ(r->p99Us, 1200000);
  EXPECT_EQ(r->maxUs, 18450);
  EXPECT_EQ(r->non2xx, 7);
  EXPECT_EQ(r->socketErrors, 3);
  EXPECT_FALSE(parseWrkOutput("wrk: unknown option").isOk());
}

TEST(NodeHelloServerTest, AnswersHello) {
  if (!onPath("node")) GTEST_SKIP() << "node is not installed";
  auto node = NodeHelloServer::start();
  ASSERT_TRUE(node.isOk()) << node.status().toString();
  auto r = httpRequest((*node)->endpoint(), "POST", "/anything", {}, "{\"x\":1}");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "\"hello\"");
  std::string endpoint = (*node)->endpoint();
  node->reset();  // kills it
  EXPECT_FALSE(httpRequest(endpoint, "GET", "/").isOk());
}

TEST(RunInvokeBenchTest, JsonReportWithBaselines) {
  FakeStratus s;
  InvokeBenchOptions o;
  o.endpoint = s.endpoint;
  o.key = "sekrit";
  o.function = "hello";
  o.requests = 500;
  o.concurrency = 4;
  o.json = true;
  o.wrkSeconds = 1;
  testing::internal::CaptureStdout();
  int rc = runInvokeBench(o);
  std::fflush(stdout);
  std::string out = testing::internal::GetCapturedStdout();
  ASSERT_EQ(rc, 0) << out;
  auto parsed = parseJson(out);
  ASSERT_TRUE(parsed.isOk()) << out;
  const auto& report = parsed->as_object();
  EXPECT_EQ(report.at("requests").as_int64(), 500);
  std::map<std::string, json::object> rows;
  for (const auto& v : report.at("results").as_array()) {
    const auto& row = v.as_object();
    rows[std::string(row.at("target").as_string()) + "/" +
         std::string(row.at("tool").as_string())] = row;
  }
  ASSERT_TRUE(rows.count("stratus/generator")) << out;
  EXPECT_EQ(rows["stratus/generator"].at("requests").as_int64(), 500);
  EXPECT_EQ(rows["stratus/generator"].at("errors").as_int64(), 0);
  EXPECT_GT(rows["stratus/generator"].at("requestsPerSecond").as_double(), 0);
  EXPECT_GT(rows["stratus/generator"].at("p50Us").as_double(), 0);
  if (onPath("node")) {
    ASSERT_TRUE(rows.count("node/generator")) << out;
    EXPECT_EQ(rows["node/generator"].at("requests").as_int64(), 500);
    EXPECT_TRUE(report.at("ratios").as_object().contains("generator")) << out;
  }
  if (onPath("wrk")) {
    ASSERT_TRUE(rows.count("stratus/wrk")) << out;
    EXPECT_GT(rows["stratus/wrk"].at("requests").as_int64(), 0);
    EXPECT_EQ(rows["stratus/wrk"].at("errors").as_int64(), 0) << out;  // auth header carried
  }
}

TEST(RunInvokeBenchTest, MissingFunctionOrBadKeyFailsFast) {
  FakeStratus s;
  InvokeBenchOptions o;
  o.endpoint = s.endpoint;
  o.key = "sekrit";
  o.function = "nope";
  o.baseline = false;
  testing::internal::CaptureStderr();
  EXPECT_EQ(runInvokeBench(o), 1);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("HTTP 404"), std::string::npos) << err;

  o.function = "hello";
  o.key = "wrong";
  testing::internal::CaptureStderr();
  EXPECT_EQ(runInvokeBench(o), 1);
  err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("HTTP 401"), std::string::npos) << err;
}

TEST(BenchCommandTest, ParsesInvokeFlags) {
  FakeStratus s;
  CLI::App app;
  addBenchCommand(app);
  std::vector<std::string> args = {"stratus", "bench",  "invoke",     "--endpoint",   s.endpoint,
                                   "--key",   "sekrit", "--function", "hello",        "-n",
                                   "50",      "-c",     "2",          "--no-baseline"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStdout();
  EXPECT_NO_THROW(app.parse(static_cast<int>(argv.size()), argv.data()));
  std::string out = testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("50 requests over 2 keep-alive connections"), std::string::npos) << out;

  CLI::App app2;
  addBenchCommand(app2);
  args[8] = "nope";
  argv.clear();
  for (auto& a : args) argv.push_back(a.data());
  testing::internal::CaptureStderr();
  try {
    app2.parse(static_cast<int>(argv.size()), argv.data());
    ADD_FAILURE() << "expected CLI::RuntimeError";
  } catch (const CLI::RuntimeError& e) {
    EXPECT_EQ(e.get_exit_code(), 1);
  }
  testing::internal::GetCapturedStderr();
}

}  // namespace
}  // namespace stratus
