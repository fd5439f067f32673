// The front door's API policy end to end inside one process: tenants and keys through
// Api::identify, isolation on every endpoint, quotas, rate limits (ManualClock), async endpoints
// and the mapping of refusals to HTTP. Real SqliteStore and CodeCache in a temp dir; the Invoker
// (scheduler/worker seam) is a scripted stand-in.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <future>
#include <mutex>

#include "api/api.h"
#include "codepack/zip_writer.h"
#include "common/base64.h"
#include "common/ids.h"
#include "common/json.h"
#include "store/sqlite_store.h"

namespace stratus {
namespace {

class EchoInvoker final : public Invoker {
 public:
  void invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) override {
    InvokeResult r;
    {
      std::lock_guard lock(mu);
      ++calls;
      tenants.push_back(fn.tenant);
      r = result;
    }
    if (r.status.isOk() && r.functionError == FunctionErrorKind::kNone) r.body = req.payload;
    done(std::move(r));
  }
  void functionChanged(const FunctionSpec&) override {}
  void functionDeleted(const FunctionSpec& fn) override {
    std::lock_guard lock(mu);
    deleted.push_back(fn.tenant + "/" + fn.name);
  }
  void shutdown() override {}

  std::mutex mu;
  int calls = 0;
  InvokeResult result;
  std::vector<std::string> tenants, deleted;
};

std::string helloZip() {
  ZipWriter w;
  EXPECT_TRUE(w.addFile("index.py", "def handler(event, context):\n    return event\n").isOk());
  auto z = w.finish();
  return z.isOk() ? *z : std::string();
}

json::object obj(const HttpResponse& r) {
  auto v = parseJson(r.body);
  if (!v.isOk() || !v->is_object()) return {};
  return v->as_object();
}

std::string code(const HttpResponse& r) {
  auto o = obj(r);
  auto* c = o.if_contains("code");
  return c && c->is_string() ? std::string(c->as_string()) : "";
}

std::string header(const HttpResponse& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

class TenantApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stratus-tenant-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = SqliteStore::open(dir_ / "meta.db");
    ASSERT_TRUE(s.isOk()) << s.status().toString();
    store_ = std::move(s).value();
    code_ = std::make_unique<CodeCache>(dir_ / "code");
    auto admin = Api::ensureAdminKey(*store_, dir_ / "admin-key");
    ASSERT_TRUE(admin.isOk()) << admin.status().toString();
    adminKey_ = *admin;
    ApiOptions o;
    o.clock = &clock_;
    o.startAsyncDispatcher = false;
    o.maxPendingAsyncTasksPerFunction = 3;
    o.maxAsyncPayloadBytes = 1024;
    api_ = std::make_unique<Api>(*store_, *code_, invoker_, o);
  }
  void TearDown() override {
    api_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  HttpResponse call(const std::string& key, std::string method, std::string path,
                    std::string body = {}, HttpHeaders headers = {},
                    std::map<std::string, std::string> query = {}) {
    HttpRequest req;
    req.method = std::move(method);
    req.path = std::move(path);
    req.body = std::move(body);
    req.headers = std::move(headers);
    req.query = std::move(query);
    if (!key.empty()) req.headers["Authorization"] = "Bearer " + key;
    auto caller = api_->identify(req);
    if (!caller.isOk()) return errorResponse(caller.status(), "rid");
    std::promise<HttpResponse> p;
    auto f = p.get_future();
    api_->handle(*caller, std::move(req), [&](HttpResponse r) { p.set_value(std::move(r)); });
    EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return f.get();
  }

  std::string createTenant(const std::string& name, const std::string& extra = {}) {
    auto r = call(adminKey_, "POST", "/admin/tenants",
                  R"({"name":")" + name + "\"" + (extra.empty() ? "" : "," + extra) + "}");
    EXPECT_EQ(r.status, 201) << r.body;
    auto o = obj(r);
    auto* k = o.if_contains("apiKey");
    return k && k->is_string() ? std::string(k->as_string()) : "";
  }

  HttpResponse deploy(const std::string& key, const std::string& name) {
    return call(key, "POST", "/2023-03-30/functions",
                R"({"functionName":")" + name +
                    R"(","runtime":"python3","handler":"index.handler","code":{"zipFile":")" +
                    base64Encode(helloZip()) + R"("}})");
  }

  std::filesystem::path dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<CodeCache> code_;
  ManualClock clock_;
  EchoInvoker invoker_;
  std::string adminKey_;
  std::unique_ptr<Api> api_;
};

TEST_F(TenantApiTest, AdminManagesTenantsAndKeysAreStoredHashed) {
  std::string key = createTenant("acme", R"("requestsPerSecond":50)");
  ASSERT_EQ(key.substr(0, 3), "sk-");
  EXPECT_EQ(store_->findApiKey(sha256Hex(key))->tenant, "acme");
  EXPECT_FALSE(store_->findApiKey(sha256Hex(key))->admin);
  // The key authenticates as acme.
  HttpRequest req;
  req.headers["Authorization"] = "Bearer " + key;
  EXPECT_EQ(api_->identify(req)->tenant, "acme");
  EXPECT_FALSE(api_->identify(req)->admin);

  auto dup = call(adminKey_, "POST", "/admin/tenants", R"({"name":"acme"})");
  EXPECT_EQ(dup.status, 409);
  EXPECT_EQ(code(dup), "TenantAlreadyExists");
  EXPECT_EQ(call(adminKey_, "POST", "/admin/tenants", R"({"name":"../x"})").status, 400);
  EXPECT_EQ(call(adminKey_, "POST", "/admin/tenants", R"({"name":"b","maxFunctions":-1})").status,
            400);

  auto list = call(adminKey_, "GET", "/admin/tenants");
  ASSERT_EQ(list.status, 200);
  auto tenants = obj(list).at("tenants").as_array();
  ASSERT_EQ(tenants.size(), 2u);  // acme and default
  EXPECT_EQ(tenants[0].as_object().at("name").as_string(), "acme");
  EXPECT_EQ(tenants[0].as_object().at("quota").as_object().at("requestsPerSecond").as_int64(), 50);
  EXPECT_EQ(tenants[0].as_object().count("apiKey"), 0u);  // never shown again

  auto put = call(adminKey_, "PUT", "/admin/tenants/acme", R"({"maxFunctions":7})");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(obj(put).at("quota").as_object().at("maxFunctions").as_int64(), 7);
  EXPECT_EQ(obj(put).at("quota").as_object().at("requestsPerSecond").as_int64(), 50);
  EXPECT_EQ(call(adminKey_, "GET", "/admin/tenants/acme").status, 200);
  EXPECT_EQ(code(call(adminKey_, "GET", "/admin/tenants/nope")), "TenantNotFound");
  EXPECT_EQ(call(adminKey_, "PUT", "/admin/tenants/nope", "{}").status, 404);

  // A second key for rotation.
  auto k2 = call(adminKey_, "POST", "/admin/tenants/acme/keys");
  ASSERT_EQ(k2.status, 201);
  req.headers["Authorization"] = "Bearer " + std::string(obj(k2).at("apiKey").as_string());
  EXPECT_EQ(api_->identify(req)->tenant, "acme");

  EXPECT_EQ(call(adminKey_, "DELETE", "/admin/tenants/default").status, 400);
}

TEST_F(TenantApiTest, TenantKeysCannotUseTheAdminApi) {
  std::string key = createTenant("acme");
  for (const auto& [m, p] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/admin/tenants"},
                                                        {"POST", "/admin/tenants"},
                                                        {"GET", "/admin/tenants/acme"},
                                                        {"PUT", "/admin/tenants/acme"},
                                                        {"DELETE", "/admin/tenants/acme"},
                                                        {"POST", "/admin/tenants/acme/keys"}}) {
    auto r = call(key, m, p, R"({"name":"evil","maxFunctions":1000})");
    EXPECT_EQ(r.status, 403) << m << " " << p;
    EXPECT_EQ(code(r), "AccessDenied");
  }
  EXPECT_EQ(store_->getTenant("evil").status().code(), Code::kNotFound);
  EXPECT_EQ(call("", "GET", "/admin/tenants").status, 401);
  EXPECT_EQ(call("sk-wrong", "GET", "/admin/tenants").status, 401);
}

TEST_F(TenantApiTest, AnotherTenantsFunctionIs404OnEveryEndpoint) {
  std::string a = createTenant("alpha");
  std::string b = createTenant("beta");
  ASSERT_EQ(deploy(a, "secret").status, 200);
  ASSERT_EQ(call(a, "PUT", "/2023-03-30/functions/secret/async-invoke-config",
                 R"({"maxAsyncRetryAttempts":1})")
                .status,
            200);
  ASSERT_EQ(call(a, "POST", "/2023-03-30/functions/secret/invocations", "{}",
                 {{"x-fc-invocation-type", "Async"}, {"x-fc-request-id", "task-1"}})
                .status,
            202);
  const std::string base = "/2023-03-30/functions/secret";
  struct Probe {
    std::string method, path, body;
    HttpHeaders headers;
  };
  std::vector<Probe> probes = {
      {"GET", base, "", {}},
      {"PUT", base, R"({"timeout":5})", {}},
      {"DELETE", base, "", {}},
      {"POST", base + "/invocations", "{}", {}},
      {"POST", base + "/invocations", "{}", {{"x-fc-invocation-type", "Async"}}},
      {"GET", base + "/async-invoke-config", "", {}},
      {"PUT", base + "/async-invoke-config", R"({"maxAsyncRetryAttempts":0})", {}},
      {"DELETE", base + "/async-invoke-config", "", {}},
      {"GET", base + "/async-tasks", "", {}},
      {"GET", base + "/async-tasks/task-1", "", {}},
  };
  for (const auto& p : probes) {
    auto r = call(b, p.method, p.path, p.body, p.headers);
    EXPECT_EQ(r.status, 404) << p.method << " " << p.path << ": " << r.body;
    EXPECT_TRUE(code(r) == "FunctionNotFound" || code(r) == "AsyncTaskNotFound") << r.body;
  }
  // Listing shows only one's own.
  auto listB = call(b, "GET", "/2023-03-30/functions");
  EXPECT_TRUE(obj(listB).at("functions").as_array().empty());
  // Nothing of alpha's changed, and beta never reached the invoker.
  EXPECT_EQ(invoker_.calls, 0);
  EXPECT_EQ(call(a, "GET", base).status, 200);
  EXPECT_EQ(
      obj(call(a, "GET", base + "/async-invoke-config")).at("maxAsyncRetryAttempts").as_int64(), 1);
  EXPECT_EQ(call(a, "GET", base + "/async-tasks/task-1").status, 200);
  // Same name in beta is beta's own function.
  ASSERT_EQ(deploy(b, "secret").status, 200);
  EXPECT_EQ(call(b, "POST", base + "/invocations", "{}").status, 200);
  ASSERT_EQ(invoker_.tenants.size(), 1u);
  EXPECT_EQ(invoker_.tenants[0], "beta");
}

TEST_F(TenantApiTest, DeletingATenantRevokesKeysAndDrainsFunctions) {
  std::string key = createTenant("gone");
  ASSERT_EQ(deploy(key, "f1").status, 200);
  EXPECT_EQ(call(key, "GET", "/2023-03-30/functions/f1").status, 200);  // caches warm
  auto del = call(adminKey_, "DELETE", "/admin/tenants/gone");
  EXPECT_EQ(del.status, 204) << del.body;
  EXPECT_EQ(call(key, "GET", "/2023-03-30/functions").status, 401);
  ASSERT_EQ(invoker_.deleted.size(), 1u);
  EXPECT_EQ(invoker_.deleted[0], "gone/f1");
  EXPECT_EQ(call(adminKey_, "DELETE", "/admin/tenants/gone").status, 404);
  // The name can be reused and starts empty.
  std::string again = createTenant("gone");
  EXPECT_EQ(call(again, "GET", "/2023-03-30/functions/f1").status, 404);
}

TEST_F(TenantApiTest, MaxFunctionsQuota) {
  std::string key = createTenant("small", R"("maxFunctions":2)");
  EXPECT_EQ(deploy(key, "a").status, 200);
  EXPECT_EQ(deploy(key, "b").status, 200);
  auto r = deploy(key, "c");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(code(r), "QuotaExceeded");
  EXPECT_EQ(call(key, "DELETE", "/2023-03-30/functions/a").status, 204);
  EXPECT_EQ(deploy(key, "c").status, 200);
}

TEST_F(TenantApiTest, TenantAndFunctionRateLimitsAnswer429WithRetryAfter) {
  std::string key = createTenant("rl", R"("requestsPerSecond":4,"burst":4,
                                          "functionRequestsPerSecond":2)");
  ASSERT_EQ(deploy(key, "f").status, 200);  // token 1
  ASSERT_EQ(deploy(key, "g").status, 200);  // token 2
  const std::string f = "/2023-03-30/functions/f/invocations";
  EXPECT_EQ(call(key, "POST", f, "{}").status, 200);  // tenant 3, function f 1
  EXPECT_EQ(call(key, "POST", f, "{}").status, 200);  // tenant 4, function f 2
  auto r = call(key, "POST", f, "{}");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(code(r), "TooManyRequests");
  EXPECT_EQ(header(r, "Retry-After"), "1");
  EXPECT_NE(obj(r).at("message").as_string().find("tenant rl"), std::string::npos) << r.body;
  // 1 s later the tenant has 4 tokens again but f only 2.
  clock_.advance(std::chrono::seconds(1));
  EXPECT_EQ(call(key, "POST", f, "{}").status, 200);
  EXPECT_EQ(call(key, "POST", f, "{}").status, 200);
  r = call(key, "POST", f, "{}");
  EXPECT_EQ(r.status, 429);
  EXPECT_NE(obj(r).at("message").as_string().find("function f"), std::string::npos) << r.body;
  EXPECT_EQ(header(r, "Retry-After"), "1");
  // g has its own bucket.
  EXPECT_EQ(call(key, "POST", "/2023-03-30/functions/g/invocations", "{}").status, 200);
  // Other tenants are not affected.
  EXPECT_EQ(call(adminKey_, "GET", "/2023-03-30/functions").status, 200);
  // Lifting the quota takes effect at once.
  ASSERT_EQ(call(adminKey_, "PUT", "/admin/tenants/rl",
                 R"({"requestsPerSecond":0,"functionRequestsPerSecond":0})")
                .status,
            200);
  for (int i = 0; i < 20; ++i) ASSERT_EQ(call(key, "POST", f, "{}").status, 200) << i;
}

TEST_F(TenantApiTest, RefusalsOfTheGuardMapTo503WithRetryAfter) {
  std::string key = createTenant("crashy");
  ASSERT_EQ(deploy(key, "f").status, 200);
  invoker_.result.functionError = FunctionErrorKind::kUnhandled;
  invoker_.result.instanceLost = true;
  invoker_.result.body = R"({"errorType":"RuntimeExited"})";
  const std::string f = "/2023-03-30/functions/f/invocations";
  for (int i = 0; i < 5; ++i) {
    auto r = call(key, "POST", f, "{}");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(header(r, "x-fc-error-type"), "UnhandledInvocationError");
  }
  auto r = call(key, "POST", f, "{}");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(code(r), "CircuitBreakerOpen");
  EXPECT_EQ(header(r, "Retry-After"), "5");
  EXPECT_EQ(invoker_.calls, 5);
  // A fixed deploy closes the breaker.
  invoker_.result = InvokeResult{};
  ASSERT_EQ(call(key, "PUT", "/2023-03-30/functions/f", R"({"timeout":9})").status, 200);
  EXPECT_EQ(call(key, "POST", f, "{}").status, 200);
  auto metrics = api_->metricsText();
  EXPECT_NE(metrics.find("stratus_breaker_opens_total 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("stratus_admission_refused_total{reason=\"breaker_open\"} 1"),
            std::string::npos);
}

TEST_F(TenantApiTest, AsyncEndpoints) {
  std::string key = createTenant("as");
  ASSERT_EQ(deploy(key, "f").status, 200);
  const std::string base = "/2023-03-30/functions/f";
  EXPECT_EQ(code(call(key, "GET", base + "/async-invoke-config")), "AsyncConfigNotFound");
  auto bad = call(key, "PUT", base + "/async-invoke-config", R"({"maxAsyncRetryAttempts":9})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("between 0 and 8"), std::string::npos) << bad.body;
  EXPECT_EQ(call(key, "PUT", base + "/async-invoke-config", "{nope").status, 400);
  auto put = call(key, "PUT", base + "/async-invoke-config",
                  R"({"maxAsyncRetryAttempts":2,"maxAsyncEventAgeInSeconds":600,
                      "destinationConfig":{"onFailure":{"destination":"dlq"}}})");
  ASSERT_EQ(put.status, 200) << put.body;
  auto get = call(key, "GET", base + "/async-invoke-config");
  EXPECT_EQ(obj(get).at("maxAsyncEventAgeInSeconds").as_int64(), 600);
  EXPECT_EQ(obj(get)
                .at("destinationConfig")
                .as_object()
                .at("onFailure")
                .as_object()
                .at("destination")
                .as_string(),
            "dlq");

  // Accepted: 202 and Enqueued; resending the same request id is idempotent.
  auto r = call(key, "POST", base + "/invocations", R"({"k":"v"})",
                {{"x-fc-invocation-type", "Async"}, {"x-fc-request-id", "job-1"}});
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(header(r, "x-fc-request-id"), "job-1");
  EXPECT_EQ(call(key, "POST", base + "/invocations", R"({"k":"v"})",
                 {{"x-fc-invocation-type", "async"}, {"x-fc-request-id", "job-1"}})
                .status,
            202);
  auto st = call(key, "GET", base + "/async-tasks/job-1");
  ASSERT_EQ(st.status, 200);
  EXPECT_EQ(obj(st).at("status").as_string(), "Enqueued");
  EXPECT_EQ(obj(st).at("attempts").as_int64(), 0);
  api_->asyncDispatcher().runDue();
  ASSERT_TRUE(api_->asyncDispatcher().waitIdle(std::chrono::seconds(10)));
  st = call(key, "GET", base + "/async-tasks/job-1");
  EXPECT_EQ(obj(st).at("status").as_string(), "Succeeded") << st.body;
  EXPECT_EQ(obj(st).at("attempts").as_int64(), 1);
  EXPECT_EQ(obj(st).at("result").as_string(), R"({"k":"v"})");
  EXPECT_EQ(invoker_.calls, 1);

  auto list = call(key, "GET", base + "/async-tasks", "", {}, {{"status", "Succeeded"}});
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(obj(list).at("tasks").as_array().size(), 1u);
  EXPECT_EQ(call(key, "GET", base + "/async-tasks", "", {}, {{"status", "Nope"}}).status, 400);
  EXPECT_EQ(code(call(key, "GET", base + "/async-tasks/none")), "AsyncTaskNotFound");

  // Limits of the async door: payload size and queue bound.
  auto big = call(key, "POST", base + "/invocations", std::string(2000, 'x'),
                  {{"x-fc-invocation-type", "Async"}});
  EXPECT_EQ(big.status, 413);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(
        call(key, "POST", base + "/invocations", "{}", {{"x-fc-invocation-type", "Async"}}).status,
        202);
  }
  auto full = call(key, "POST", base + "/invocations", "{}", {{"x-fc-invocation-type", "Async"}});
  EXPECT_EQ(full.status, 429);
  EXPECT_EQ(code(full), "AsyncQueueFull");
  EXPECT_FALSE(header(full, "Retry-After").empty());

  EXPECT_EQ(call(key, "DELETE", base + "/async-invoke-config").status, 204);
  EXPECT_EQ(call(key, "DELETE", base + "/async-invoke-config").status, 404);
}

}  // namespace
}  // namespace stratus
