// Gateway with the real Api and SqliteStore; the Invoker seam is a test invoker that echoes the
// payload (answering from its own thread), since sandboxes are not what this test is about.
#include "gateway/gateway.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "common/fs.h"
#include "http/http_client.h"
#include "store/sqlite_store.h"

namespace stratus {
namespace {

using namespace std::chrono_literals;

class EchoInvoker final : public Invoker {
 public:
  ~EchoInvoker() override { shutdown(); }
  void invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) override {
    {
      std::lock_guard lock(mu_);
      lastRequestId_ = req.requestId;
    }
    InvokeResult res;
    res.body = req.payload;
    if (req.payload == "\"fail\"") {
      res.functionError = FunctionErrorKind::kUnhandled;
      res.body = R"({"errorType":"Error","errorMessage":"asked to fail"})";
    }
    if (req.payload == "\"thread\"") {
      std::lock_guard lock(mu_);
      threads_.emplace_back(
          [done = std::move(done), res = std::move(res)]() mutable { done(std::move(res)); });
      return;
    }
    done(std::move(res));
  }
  void functionChanged(const FunctionSpec&) override {}
  void functionDeleted(const FunctionSpec&) override {}
  void shutdown() override {
    std::lock_guard lock(mu_);
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  std::string lastRequestId() {
    std::lock_guard lock(mu_);
    return lastRequestId_;
  }

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
  std::string lastRequestId_;
};

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stratus-gateway-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = SqliteStore::open(dir_ / "meta.db");
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    store_ = std::move(*store);
    code_ = std::make_unique<CodeCache>(dir_ / "code");
    api_ = std::make_unique<Api>(*store_, *code_, invoker_);
    auto key = Api::ensureAdminKey(*store_, dir_ / "admin.key");
    ASSERT_TRUE(key.isOk()) << key.status().toString();
    key_ = *key;

    FunctionSpec fn;
    fn.tenant = "default";
    fn.name = "echo";
    fn.runtime = "python3";
    fn.handler = "index.handler";
    fn.functionId = "f-1";
    ASSERT_TRUE(store_->createFunction(fn).isOk());

    HttpServerOptions options;
    options.port = 0;
    gateway_ = std::make_unique<Gateway>(*api_, options);
    ASSERT_TRUE(gateway_->start().isOk());
    endpoint_ = "http://127.0.0.1:" + std::to_string(gateway_->port());
  }

  void TearDown() override {
    gateway_.reset();
    invoker_.shutdown();
    api_.reset();
    store_.reset();
    (void)removeTree(dir_);
  }

  HttpHeaders auth() const { return {{"Authorization", "Bearer " + key_}}; }

  std::filesystem::path dir_;
  EchoInvoker invoker_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<CodeCache> code_;
  std::unique_ptr<Api> api_;
  std::string key_;
  std::unique_ptr<Gateway> gateway_;
  std::string endpoint_;
};

TEST_F(GatewayTest, HealthzNeedsNoKey) {
  auto r = httpRequest(endpoint_, "GET", "/healthz");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"status":"ok"})");
  EXPECT_EQ(r->headers["content-type"], "application/json");
  EXPECT_EQ(r->headers["x-fc-request-id"].size(), 36u);
}

TEST_F(GatewayTest, MissingOrWrongKeyIs401WithRequestId) {
  auto none = httpRequest(endpoint_, "GET", "/2023-03-30/functions");
  ASSERT_TRUE(none.isOk()) << none.status().toString();
  EXPECT_EQ(none->status, 401);
  EXPECT_FALSE(none->headers["x-fc-request-id"].empty());
  EXPECT_NE(none->body.find("\"code\""), std::string::npos) << none->body;

  auto wrong =
      httpRequest(endpoint_, "GET", "/2023-03-30/functions", {{"Authorization", "Bearer nope"}});
  ASSERT_TRUE(wrong.isOk());
  EXPECT_EQ(wrong->status, 401);
}

TEST_F(GatewayTest, InvokeThroughApiKeepsRequestId) {
  HttpHeaders h = auth();
  h["x-fc-request-id"] = "client-chosen-id.1";
  auto r =
      httpRequest(endpoint_, "POST", "/2023-03-30/functions/echo/invocations", h, R"({"a":1})");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->body, R"({"a":1})");
  EXPECT_EQ(r->headers["x-fc-request-id"], "client-chosen-id.1");
  EXPECT_EQ(invoker_.lastRequestId(), "client-chosen-id.1");
  EXPECT_FALSE(r->headers["content-type"].empty());

  // An id that could pollute logs is replaced, and the Api sees the replacement.
  h["x-fc-request-id"] = "has spaces and $igns";
  auto g =
      httpRequest(endpoint_, "POST", "/2023-03-30/functions/echo/invocations", h, "\"thread\"");
  ASSERT_TRUE(g.isOk()) << g.status().toString();
  EXPECT_EQ(g->status, 200);
  EXPECT_EQ(g->body, "\"thread\"");  // answered from the invoker's thread
  EXPECT_NE(g->headers["x-fc-request-id"], "has spaces and $igns");
  EXPECT_EQ(g->headers["x-fc-request-id"].size(), 36u);
  EXPECT_EQ(g->headers["x-fc-request-id"], invoker_.lastRequestId());

  auto f =
      httpRequest(endpoint_, "POST", "/2023-03-30/functions/echo/invocations", auth(), "\"fail\"");
  ASSERT_TRUE(f.isOk());
  EXPECT_EQ(f->status, 200);
  EXPECT_FALSE(f->headers["x-fc-error-type"].empty());

  auto missing = httpRequest(endpoint_, "POST", "/2023-03-30/functions/nope/invocations", auth());
  ASSERT_TRUE(missing.isOk());
  EXPECT_EQ(missing->status, 404);
}

TEST_F(GatewayTest, MetricsCountRequests) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(httpRequest(endpoint_, "GET", "/healthz").isOk());
  ASSERT_TRUE(httpRequest(endpoint_, "GET", "/2023-03-30/functions").isOk());  // 401
  auto m = httpRequest(endpoint_, "GET", "/metrics");
  ASSERT_TRUE(m.isOk());
  EXPECT_EQ(m->status, 200);
  EXPECT_TRUE(m->headers["content-type"].starts_with("text/plain")) << m->headers["content-type"];
  EXPECT_NE(m->body.find("stratus_http_requests_total{code=\"2xx\"} 3\n"), std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find("stratus_http_requests_total{code=\"4xx\"} 1\n"), std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find("stratus_http_requests_in_flight 1\n"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("stratus_http_request_duration_seconds_count 4\n"), std::string::npos)
      << m->body;
  EXPECT_NE(m->body.find("stratus_http_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"),
            std::string::npos)
      << m->body;
}

TEST_F(GatewayTest, SustainsConcurrentInvocations) {
  LoadOptions o;
  o.endpoint = endpoint_;
  o.target = "/2023-03-30/functions/echo/invocations";
  o.headers = auth();
  o.body = "{}";
  o.requests = 3000;
  o.concurrency = 16;
  auto r = runLoad(o);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->completed, 3000);
  EXPECT_EQ(r->errors, 0) << r->firstError;
  EXPECT_EQ(r->failures, 0) << r->firstError;
  std::printf("gateway+api echo invoke: %.0f req/s, p50 %.0f us, p99 %.0f us\n",
              r->requestsPerSecond(), r->percentileNs(50) / 1e3, r->percentileNs(99) / 1e3);
}

}  // namespace
}  // namespace stratus
