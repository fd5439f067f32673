// Api tests against the real SqliteStore (temp file) and the real CodeCache (temp dir); only the
// Invoker (the scheduler/worker seam) is a recording fake.
#include "api/api.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "codepack/zip_writer.h"
#include "common/base64.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/json.h"
#include "store/sqlite_store.h"

namespace stratus {
namespace {

constexpr int64_t kZipLimit = 64 * 1024;

// Counts store reads and delegates to the real store: proves the warm path reads nothing.
class CountingStore final : public MetadataStore {
 public:
  explicit CountingStore(MetadataStore& inner) : inner_(inner) {}
  Status createFunction(const FunctionSpec& f) override { return inner_.createFunction(f); }
  Result<FunctionSpec> getFunction(const std::string& t, const std::string& n) override {
    ++reads;
    return inner_.getFunction(t, n);
  }
  Result<std::vector<FunctionSpec>> listFunctions(const std::string& t) override {
    ++reads;
    return inner_.listFunctions(t);
  }
  Result<std::vector<FunctionSpec>> listAllFunctions() override {
    ++reads;
    return inner_.listAllFunctions();
  }
  Status updateFunction(const FunctionSpec& f) override { return inner_.updateFunction(f); }
  Status deleteFunction(const std::string& t, const std::string& n) override {
    return inner_.deleteFunction(t, n);
  }
  Status putApiKey(const ApiKey& k) override { return inner_.putApiKey(k); }
  Result<ApiKey> findApiKey(const std::string& h) override {
    ++reads;
    return inner_.findApiKey(h);
  }
  Status createTenant(const Tenant& t) override { return inner_.createTenant(t); }
  Result<Tenant> getTenant(const std::string& n) override {
    ++reads;
    return inner_.getTenant(n);
  }
  Result<std::vector<Tenant>> listTenants() override { return inner_.listTenants(); }
  Status updateTenant(const Tenant& t) override { return inner_.updateTenant(t); }
  Result<std::vector<FunctionSpec>> deleteTenant(const std::string& n) override {
    return inner_.deleteTenant(n);
  }
  Result<std::string> getAsyncConfig(const std::string& t, const std::string& f) override {
    return inner_.getAsyncConfig(t, f);
  }
  Status putAsyncConfig(const std::string& t, const std::string& f, const std::string& c) override {
    return inner_.putAsyncConfig(t, f, c);
  }
  Status deleteAsyncConfig(const std::string& t, const std::string& f) override {
    return inner_.deleteAsyncConfig(t, f);
  }
  Status enqueueAsyncTask(const AsyncTask& t) override { return inner_.enqueueAsyncTask(t); }
  Result<AsyncTask> getAsyncTask(const std::string& t, const std::string& f,
                                 const std::string& id) override {
    return inner_.getAsyncTask(t, f, id);
  }
  Result<std::vector<AsyncTask>> listAsyncTasks(const std::string& t, const std::string& f,
                                                std::optional<AsyncTaskStatus> s,
                                                int limit) override {
    return inner_.listAsyncTasks(t, f, s, limit);
  }
  Result<std::vector<AsyncTask>> claimDueAsyncTasks(int64_t now, int limit) override {
    return inner_.claimDueAsyncTasks(now, limit);
  }
  Status updateAsyncTask(const AsyncTask& t) override { return inner_.updateAsyncTask(t); }
  Result<int64_t> requeueRunningAsyncTasks(int64_t now) override {
    return inner_.requeueRunningAsyncTasks(now);
  }
  Result<std::optional<int64_t>> nextAsyncTaskDueMs() override {
    return inner_.nextAsyncTaskDueMs();
  }
  Result<int64_t> countPendingAsyncTasks(const std::string& t, const std::string& f) override {
    return inner_.countPendingAsyncTasks(t, f);
  }
  std::atomic<int> reads{0};

 private:
  MetadataStore& inner_;
};

class RecordingInvoker final : public Invoker {
 public:
  struct Call {
    FunctionSpec fn;
    InvokeRequest req;
  };
  void invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) override {
    std::unique_lock lock(mu_);
    calls.push_back({fn, req});
    if (deferred) {
      pending.push_back(std::move(done));
      cv_.notify_all();
      return;
    }
    InvokeResult r = result;
    lock.unlock();
    done(std::move(r));
  }
  void functionChanged(const FunctionSpec& fn) override {
    std::lock_guard lock(mu_);
    changed.push_back(fn);
  }
  void functionDeleted(const FunctionSpec& fn) override {
    std::lock_guard lock(mu_);
    deleted.push_back(fn);
  }
  void shutdown() override {}

  InvokeCallback waitPending() {
    std::unique_lock lock(mu_);
    bool ok = cv_.wait_for(lock, std::chrono::seconds(10), [&] { return !pending.empty(); });
    EXPECT_TRUE(ok);
    if (!ok) return nullptr;
    auto cb = std::move(pending.front());
    pending.erase(pending.begin());
    return cb;
  }

  InvokeResult result;
  bool deferred = false;
  std::vector<Call> calls;
  std::vector<FunctionSpec> changed, deleted;
  std::vector<InvokeCallback> pending;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
};

std::string makeZip(std::initializer_list<std::pair<std::string, std::string>> files) {
  ZipWriter w;
  for (const auto& [path, data] : files) EXPECT_TRUE(w.addFile(path, data).isOk());
  auto z = w.finish();
  EXPECT_TRUE(z.isOk()) << z.status().toString();
  return z.isOk() ? *z : std::string();
}

std::string helloZip() {
  return makeZip({{"index.py", "def handler(event, context):\n    return event\n"}});
}

json::object parseObject(const std::string& text) {
  auto v = parseJson(text);
  EXPECT_TRUE(v.isOk()) << text;
  if (!v.isOk() || !v->is_object()) return {};
  return v->as_object();
}

std::string str(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string("<absent>");
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stratus-api-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = SqliteStore::open(dir_ / "meta.db");
    ASSERT_TRUE(s.isOk()) << s.status().toString();
    sqlite_ = std::move(s).value();
    store_ = std::make_unique<CountingStore>(*sqlite_);
    code_ = std::make_unique<CodeCache>(dir_ / "code");
    ApiOptions opts;
    opts.zipLimits.maxZippedBytes = kZipLimit;
    opts.zipLimits.maxUnpackedBytes = 1 << 20;
    opts.startAsyncDispatcher = false;
    api_ = std::make_unique<Api>(*store_, *code_, invoker_, opts);
    ASSERT_TRUE(store_->putApiKey({sha256Hex("key-a"), "tenant-a", false, ""}).isOk());
    ASSERT_TRUE(store_->putApiKey({sha256Hex("key-b"), "tenant-b", false, ""}).isOk());
  }
  void TearDown() override {
    api_.reset();
    std::filesystem::remove_all(dir_);
  }

  HttpResponse call(const std::string& tenant, std::string method, std::string path,
                    std::string body = {}, HttpHeaders headers = {},
                    std::map<std::string, std::string> query = {}) {
    HttpRequest req;
    req.method = std::move(method);
    req.path = std::move(path);
    req.body = std::move(body);
    req.headers = std::move(headers);
    req.query = std::move(query);
    std::promise<HttpResponse> p;
    auto f = p.get_future();
    std::atomic<int> calls{0};
    api_->handle(tenant, std::move(req), [&](HttpResponse r) {
      if (calls++ == 0) p.set_value(std::move(r));
    });
    EXPECT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    HttpResponse r = f.get();
    EXPECT_EQ(calls.load(), 1);
    EXPECT_FALSE(r.headers["x-fc-request-id"].empty()) << "every response has a request id";
    return r;
  }

  static std::string createBody(const std::string& name, const std::string& zip,
                                std::string extra = {}) {
    std::string b =
        R"({"functionName":")" + name + R"(","runtime":"python3","handler":"index.handler")";
    if (!extra.empty()) b += "," + extra;
    b += R"(,"code":{"zipFile":")" + base64Encode(zip) + R"("}})";
    return b;
  }

  HttpResponse create(const std::string& tenant, const std::string& name, std::string extra = {}) {
    return call(tenant, "POST", "/2023-03-30/functions", createBody(name, helloZip(), extra));
  }

  // Asserts status and the JSON error code.
  void expectError(const HttpResponse& r, int status, std::string_view code) {
    EXPECT_EQ(r.status, status) << r.body;
    auto o = parseObject(r.body);
    EXPECT_EQ(str(o, "code"), code) << r.body;
    EXPECT_NE(str(o, "message"), "<absent>");
    EXPECT_EQ(str(o, "requestId"), r.headers.at("x-fc-request-id"));
    EXPECT_EQ(r.headers.at("Content-Type"), "application/json");
  }

  std::filesystem::path dir_;
  std::unique_ptr<SqliteStore> sqlite_;
  std::unique_ptr<CountingStore> store_;
  std::unique_ptr<CodeCache> code_;
  RecordingInvoker invoker_;
  std::unique_ptr<Api> api_;
};

// ---- CRUD ----

TEST_F(ApiTest, CreateGetListDelete) {
  std::string zip = helloZip();
  auto r = call("tenant-a", "POST", "/2023-03-30/functions",
                createBody("hello", zip, R"("memorySize":256,"description":"d")"));
  ASSERT_EQ(r.status, 200) << r.body;
  auto o = parseObject(r.body);
  EXPECT_EQ(str(o, "functionName"), "hello");
  EXPECT_EQ(str(o, "runtime"), "python3");
  EXPECT_EQ(o.at("memorySize").as_int64(), 256);
  EXPECT_EQ(o.at("timeout").as_int64(), 3);
  EXPECT_EQ(o.at("revision").as_int64(), 1);
  EXPECT_EQ(str(o, "codeSha256"), sha256Hex(zip));
  EXPECT_EQ(o.at("codeSize").as_int64(), static_cast<int64_t>(zip.size()));
  EXPECT_NE(str(o, "functionId"), "");
  EXPECT_EQ(str(o, "createdTime").size(), 20u);
  EXPECT_EQ(o.if_contains("tenant"), nullptr);
  // The code is extracted in the cache.
  EXPECT_TRUE(std::filesystem::exists(code_->pathFor(sha256Hex(zip)) / "index.py"));

  auto g = call("tenant-a", "GET", "/2023-03-30/functions/hello");
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(parseObject(g.body), o);

  ASSERT_EQ(create("tenant-a", "alpha").status, 200);
  auto l = call("tenant-a", "GET", "/2023-03-30/functions");
  ASSERT_EQ(l.status, 200);
  auto fns = parseObject(l.body).at("functions").as_array();
  ASSERT_EQ(fns.size(), 2u);
  EXPECT_EQ(fns[0].as_object().at("functionName").as_string(), "alpha");
  EXPECT_EQ(fns[1].as_object().at("functionName").as_string(), "hello");

  auto d = call("tenant-a", "DELETE", "/2023-03-30/functions/hello");
  EXPECT_EQ(d.status, 204);
  EXPECT_TRUE(d.body.empty());
  ASSERT_EQ(invoker_.deleted.size(), 1u);
  EXPECT_EQ(invoker_.deleted[0].name, "hello");
  EXPECT_EQ(invoker_.deleted[0].tenant, "tenant-a");
  expectError(call("tenant-a", "GET", "/2023-03-30/functions/hello"), 404, "FunctionNotFound");
  expectError(call("tenant-a", "DELETE", "/2023-03-30/functions/hello"), 404, "FunctionNotFound");
  // Gone from the store too, not just the cache.
  EXPECT_EQ(sqlite_->getFunction("tenant-a", "hello").status().code(), Code::kNotFound);
}

TEST_F(ApiTest, CreatedFunctionSurvivesAnewApi) {
  ASSERT_EQ(create("tenant-a", "kept").status, 200);
  api_ = std::make_unique<Api>(*store_, *code_, invoker_);
  EXPECT_EQ(call("tenant-a", "GET", "/2023-03-30/functions/kept").status, 200);
}

TEST_F(ApiTest, ListPaging) {
  for (const char* n : {"a1", "a2", "a3", "b1"}) ASSERT_EQ(create("tenant-a", n).status, 200);
  auto names = [&](const HttpResponse& r) {
    std::vector<std::string> out;
    json::object o = parseObject(r.body);
    for (auto& f : o.at("functions").as_array()) {
      out.emplace_back(f.as_object().at("functionName").as_string());
    }
    return out;
  };
  auto p1 = call("tenant-a", "GET", "/2023-03-30/functions", "", {}, {{"limit", "2"}});
  ASSERT_EQ(p1.status, 200);
  EXPECT_EQ(names(p1), (std::vector<std::string>{"a1", "a2"}));
  std::string token = str(parseObject(p1.body), "nextToken");
  EXPECT_EQ(token, "a2");
  auto p2 = call("tenant-a", "GET", "/2023-03-30/functions", "", {},
                 {{"limit", "2"}, {"nextToken", token}});
  EXPECT_EQ(names(p2), (std::vector<std::string>{"a3", "b1"}));
  EXPECT_EQ(parseObject(p2.body).if_contains("nextToken"), nullptr);
  auto pre = call("tenant-a", "GET", "/2023-03-30/functions", "", {}, {{"prefix", "a"}});
  EXPECT_EQ(names(pre), (std::vector<std::string>{"a1", "a2", "a3"}));
  expectError(call("tenant-a", "GET", "/2023-03-30/functions", "", {}, {{"limit", "0"}}), 400,
              "InvalidArgument");
  expectError(call("tenant-a", "GET", "/2023-03-30/functions", "", {}, {{"limit", "x"}}), 400,
              "InvalidArgument");
}

// ---- bad input ----

TEST_F(ApiTest, CreateRejectsBadInput) {
  struct Case {
    std::string body;
    int status;
    std::string code;
  };
  std::string zip = helloZip();
  std::string z = base64Encode(zip);
  auto with = [&](std::string fields) {
    return "{" + fields + R"(,"code":{"zipFile":")" + z + R"("}})";
  };
  const std::string base = R"("runtime":"python3","handler":"index.handler")";
  std::vector<Case> cases = {
      {with(R"("functionName":"1bad",)" + base), 400, "InvalidArgument"},
      {with(R"("functionName":"a.b",)" + base), 400, "InvalidArgument"},
      {with(R"("functionName":"f","runtime":"cobol","handler":"index.handler")"), 400,
       "InvalidArgument"},
      {with(R"("functionName":"f","runtime":"python3")"), 400, "InvalidArgument"},
      {with(R"("functionName":"f","memorySize":100,)" + base), 400, "InvalidArgument"},
      {with(R"("functionName":"f","memorySize":129,)" + base), 400, "InvalidArgument"},
      {with(R"("functionName":"f","memorySize":3200,)" + base), 400, "InvalidArgument"},
      {with(R"("functionName":"f","timeout":0,)" + base), 400, "InvalidArgument"},
      {with(R"("functionName":"f","timeout":901,)" + base), 400, "InvalidArgument"},
      {with(R"("functionName":"f","instanceConcurrency":0,)" + base), 400, "InvalidArgument"},
      {with(R"("functionName":"f","instanceConcurrency":201,)" + base), 400, "InvalidArgument"},
      {with(R"("functionName":"f","environmentVariables":{"FC_X":"1"},)" + base), 400,
       "InvalidArgument"},
      {"{not json", 400, "MalformedJSON"},
      {"[1]", 400, "MalformedJSON"},
      {R"({"functionName":"f",)" + base + "}", 400, "InvalidArgument"},  // no code
      {R"({"functionName":"f",)" + base + R"(,"code":{"zipFile":"@@@"}})", 400, "InvalidArgument"},
      {R"({"functionName":"f",)" + base + R"(,"code":{"zipFile":")" +
           base64Encode("this is not a zip file") + R"("}})",
       400, "InvalidCode"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body.substr(0, 120));
    expectError(call("tenant-a", "POST", "/2023-03-30/functions", c.body), c.status, c.code);
  }
  // Nothing was created, and the runtime error lists what is known.
  auto l = call("tenant-a", "GET", "/2023-03-30/functions");
  EXPECT_TRUE(parseObject(l.body).at("functions").as_array().empty());
  auto rt = call("tenant-a", "POST", "/2023-03-30/functions",
                 with(R"("functionName":"f","runtime":"cobol","handler":"index.handler")"));
  EXPECT_NE(str(parseObject(rt.body), "message").find("python3"), std::string::npos) << rt.body;
}

TEST_F(ApiTest, OversizeCodeIs413) {
  // Incompressible bytes so that the zip itself is over the zipped limit.
  std::string noise;
  std::mt19937_64 rng(42);
  while (noise.size() < static_cast<size_t>(kZipLimit) + 1024) {
    noise += static_cast<char>(rng() & 0xff);
  }
  std::string big = makeZip({{"index.py", noise}});
  ASSERT_GT(static_cast<int64_t>(big.size()), kZipLimit);
  expectError(call("tenant-a", "POST", "/2023-03-30/functions", createBody("big", big)), 413,
              "PayloadTooLarge");
  // Unpacked over the limit (1 MB here) is the CodeCache's 413, passed through.
  std::string zeros(2 << 20, '\0');
  std::string bomb = makeZip({{"index.py", zeros}});
  ASSERT_LT(static_cast<int64_t>(bomb.size()), kZipLimit);
  expectError(call("tenant-a", "POST", "/2023-03-30/functions", createBody("bomb", bomb)), 413,
              "PayloadTooLarge");
  EXPECT_EQ(sqlite_->getFunction("tenant-a", "big").status().code(), Code::kNotFound);
}

TEST_F(ApiTest, ZipSlipIsRejectedByTheCodeCache) {
  std::string evil = makeZip({{"index.py", "x"}, {"../escape.py", "boom"}});
  auto r = call("tenant-a", "POST", "/2023-03-30/functions", createBody("evil", evil));
  expectError(r, 400, "InvalidCode");
  EXPECT_NE(str(parseObject(r.body), "message").find("escape.py"), std::string::npos) << r.body;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "escape.py"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "code" / ".." / "escape.py"));
}

TEST_F(ApiTest, DuplicateIs409) {
  ASSERT_EQ(create("tenant-a", "dup").status, 200);
  expectError(create("tenant-a", "dup"), 409, "FunctionAlreadyExists");
}

TEST_F(ApiTest, UnknownFunctionIs404Everywhere) {
  expectError(call("tenant-a", "GET", "/2023-03-30/functions/nope"), 404, "FunctionNotFound");
  expectError(call("tenant-a", "PUT", "/2023-03-30/functions/nope", "{}"), 404, "FunctionNotFound");
  expectError(call("tenant-a", "DELETE", "/2023-03-30/functions/nope"), 404, "FunctionNotFound");
  expectError(call("tenant-a", "POST", "/2023-03-30/functions/nope/invocations", "{}"), 404,
              "FunctionNotFound");
  EXPECT_TRUE(invoker_.calls.empty());
}

TEST_F(ApiTest, Routing) {
  auto r = call("tenant-a", "PATCH", "/2023-03-30/functions");
  expectError(r, 405, "MethodNotAllowed");
  EXPECT_EQ(r.headers["Allow"], "GET, POST");
  expectError(call("tenant-a", "POST", "/2023-03-30/functions/x"), 405, "MethodNotAllowed");
  expectError(call("tenant-a", "GET", "/2023-03-30/functions/x/invocations"), 405,
              "MethodNotAllowed");
  expectError(call("tenant-a", "GET", "/nothing/here"), 404, "NotFound");
  expectError(call("tenant-a", "GET", "/2016-08-15/functions"), 404, "NotFound");
  expectError(call("tenant-a", "GET", "/2023-03-30/functions/x/y/z"), 404, "NotFound");
  // The caller's request id is echoed.
  auto withId = call("tenant-a", "GET", "/nothing", "", {{"X-Fc-Request-Id", "rid-123"}});
  EXPECT_EQ(withId.headers["x-fc-request-id"], "rid-123");
  EXPECT_EQ(str(parseObject(withId.body), "requestId"), "rid-123");
}

// ---- auth and tenancy ----

TEST_F(ApiTest, Authentication) {
  HttpRequest req;
  auto st = api_->authenticate(req);
  ASSERT_FALSE(st.isOk());
  EXPECT_EQ(st.status().code(), Code::kUnauthenticated);
  EXPECT_NE(st.status().message().find("missing"), std::string::npos);

  req.headers["Authorization"] = "Bearer wrong";
  st = api_->authenticate(req);
  EXPECT_EQ(st.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(st.status().message(), "invalid API key");
  EXPECT_EQ(httpStatusFor(st.status().code()), 401);

  req.headers["Authorization"] = "Basic a2V5LWE=";
  EXPECT_EQ(api_->authenticate(req).status().code(), Code::kUnauthenticated);
  req.headers["Authorization"] = "Bearer ";
  EXPECT_EQ(api_->authenticate(req).status().code(), Code::kUnauthenticated);

  req.headers["authorization"] = "bearer key-a";
  st = api_->authenticate(req);
  ASSERT_TRUE(st.isOk()) << st.status().toString();
  EXPECT_EQ(*st, "tenant-a");

  HttpRequest x;
  x.headers["x-api-key"] = "key-b";
  st = api_->authenticate(x);
  ASSERT_TRUE(st.isOk());
  EXPECT_EQ(*st, "tenant-b");
}

TEST_F(ApiTest, WarmAuthAndInvokeReadNoStore) {
  ASSERT_EQ(create("tenant-a", "hot").status, 200);
  HttpRequest req;
  req.headers["Authorization"] = "Bearer key-a";
  ASSERT_TRUE(api_->authenticate(req).isOk());
  ASSERT_EQ(call("tenant-a", "POST", "/2023-03-30/functions/hot/invocations", "{}").status, 200);
  int before = store_->reads.load();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(api_->authenticate(req).isOk());
    ASSERT_EQ(call("tenant-a", "POST", "/2023-03-30/functions/hot/invocations", "{}").status, 200);
  }
  EXPECT_EQ(store_->reads.load(), before);
}

TEST_F(ApiTest, TenantIsolation) {
  ASSERT_EQ(create("tenant-a", "mine", R"("memorySize":256)").status, 200);
  expectError(call("tenant-b", "GET", "/2023-03-30/functions/mine"), 404, "FunctionNotFound");
  expectError(call("tenant-b", "POST", "/2023-03-30/functions/mine/invocations", "{}"), 404,
              "FunctionNotFound");
  expectError(call("tenant-b", "PUT", "/2023-03-30/functions/mine", R"({"timeout":9})"), 404,
              "FunctionNotFound");
  expectError(call("tenant-b", "DELETE", "/2023-03-30/functions/mine"), 404, "FunctionNotFound");
  auto l = call("tenant-b", "GET", "/2023-03-30/functions");
  EXPECT_TRUE(parseObject(l.body).at("functions").as_array().empty());
  EXPECT_TRUE(invoker_.calls.empty());
  // B may use the same name for its own function; A's is untouched.
  ASSERT_EQ(create("tenant-b", "mine").status, 200);
  auto a = call("tenant-a", "GET", "/2023-03-30/functions/mine");
  EXPECT_EQ(parseObject(a.body).at("memorySize").as_int64(), 256);
  auto b = call("tenant-b", "GET", "/2023-03-30/functions/mine");
  EXPECT_EQ(parseObject(b.body).at("memorySize").as_int64(), 128);
  ASSERT_EQ(call("tenant-a", "POST", "/2023-03-30/functions/mine/invocations", "{}").status, 200);
  ASSERT_EQ(invoker_.calls.size(), 1u);
  EXPECT_EQ(invoker_.calls[0].fn.tenant, "tenant-a");
}

TEST_F(ApiTest, EnsureAdminKey) {
  auto keyFile = dir_ / "state" / "admin-key";
  auto k1 = Api::ensureAdminKey(*store_, keyFile);
  ASSERT_TRUE(k1.isOk()) << k1.status().toString();
  EXPECT_EQ(k1->rfind("sk-", 0), 0u);
  EXPECT_EQ(k1->size(), 3u + 48u);
  struct stat st {};
  ASSERT_EQ(::stat(keyFile.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto text = readFile(keyFile);
  ASSERT_TRUE(text.isOk());
  EXPECT_EQ(*text, *k1 + "\n");

  HttpRequest req;
  req.headers["Authorization"] = "Bearer " + *k1;
  auto tenant = api_->authenticate(req);
  ASSERT_TRUE(tenant.isOk());
  EXPECT_EQ(*tenant, "default");
  auto stored = sqlite_->findApiKey(sha256Hex(*k1));
  ASSERT_TRUE(stored.isOk());
  EXPECT_TRUE(stored->admin);

  // Second start: same key.
  auto k2 = Api::ensureAdminKey(*store_, keyFile);
  ASSERT_TRUE(k2.isOk());
  EXPECT_EQ(*k2, *k1);

  // A fresh database with the old key file: the key is registered again.
  auto fresh = SqliteStore::open(dir_ / "fresh.db");
  ASSERT_TRUE(fresh.isOk());
  auto k3 = Api::ensureAdminKey(**fresh, keyFile);
  ASSERT_TRUE(k3.isOk());
  EXPECT_EQ(*k3, *k1);
  auto again = (*fresh)->findApiKey(sha256Hex(*k1));
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(again->tenant, "default");
}

// ---- update ----

TEST_F(ApiTest, UpdateBumpsRevisionAndNotifiesInvoker) {
  ASSERT_EQ(create("tenant-a", "up", R"("memorySize":256,"environmentVariables":{"A":"1"})").status,
            200);
  auto before = parseObject(call("tenant-a", "GET", "/2023-03-30/functions/up").body);
  auto r = call("tenant-a", "PUT", "/2023-03-30/functions/up", R"({"timeout":30})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto o = parseObject(r.body);
  EXPECT_EQ(o.at("revision").as_int64(), 2);
  EXPECT_EQ(o.at("timeout").as_int64(), 30);
  EXPECT_EQ(o.at("memorySize").as_int64(), 256);  // partial update keeps the rest
  EXPECT_EQ(o.at("environmentVariables").as_object().at("A").as_string(), "1");
  EXPECT_EQ(str(o, "codeSha256"), str(before, "codeSha256"));
  EXPECT_EQ(str(o, "functionId"), str(before, "functionId"));
  EXPECT_EQ(str(o, "createdTime"), str(before, "createdTime"));
  ASSERT_EQ(invoker_.changed.size(), 1u);
  EXPECT_EQ(invoker_.changed[0].revision, 2);
  EXPECT_EQ(invoker_.changed[0].timeoutSec, 30);
  EXPECT_EQ(invoker_.changed[0].tenant, "tenant-a");
  // Persisted.
  auto stored = sqlite_->getFunction("tenant-a", "up");
  ASSERT_TRUE(stored.isOk());
  EXPECT_EQ(stored->revision, 2);
  EXPECT_EQ(stored->timeoutSec, 30);

  // New code: new sha, revision 3, code extracted.
  std::string zip2 = makeZip({{"index.py", "def handler(e, c):\n    return 2\n"}});
  r = call("tenant-a", "PUT", "/2023-03-30/functions/up",
           R"({"code":{"zipFile":")" + base64Encode(zip2) + R"("}})");
  ASSERT_EQ(r.status, 200) << r.body;
  o = parseObject(r.body);
  EXPECT_EQ(o.at("revision").as_int64(), 3);
  EXPECT_EQ(str(o, "codeSha256"), sha256Hex(zip2));
  EXPECT_TRUE(std::filesystem::exists(code_->pathFor(sha256Hex(zip2)) / "index.py"));
  EXPECT_EQ(invoker_.changed.size(), 2u);

  // The invoker now gets the new spec.
  ASSERT_EQ(call("tenant-a", "POST", "/2023-03-30/functions/up/invocations", "{}").status, 200);
  EXPECT_EQ(invoker_.calls.back().fn.revision, 3);
}

TEST_F(ApiTest, BadUpdateChangesNothing) {
  ASSERT_EQ(create("tenant-a", "u").status, 200);
  expectError(call("tenant-a", "PUT", "/2023-03-30/functions/u", R"({"memorySize":129})"), 400,
              "InvalidArgument");
  expectError(call("tenant-a", "PUT", "/2023-03-30/functions/u", "nope"), 400, "MalformedJSON");
  expectError(call("tenant-a", "PUT", "/2023-03-30/functions/u", R"({"functionName":"v"})"), 400,
              "InvalidArgument");
  expectError(call("tenant-a", "PUT", "/2023-03-30/functions/u",
                   R"({"code":{"zipFile":")" + base64Encode("not a zip") + R"("}})"),
              400, "InvalidCode");
  expectError(call("tenant-a", "PUT", "/2023-03-30/functions/u", R"({"code":{}})"), 400,
              "InvalidArgument");
  EXPECT_TRUE(invoker_.changed.empty());
  auto stored = sqlite_->getFunction("tenant-a", "u");
  ASSERT_TRUE(stored.isOk());
  EXPECT_EQ(stored->revision, 1);
  EXPECT_EQ(stored->memoryMb, 128);
}

TEST_F(ApiTest, ConcurrentUpdatesLoseNothing) {
  ASSERT_EQ(create("tenant-a", "race").status, 200);
  constexpr int kThreads = 4, kEach = 5;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        if (call("tenant-a", "PUT", "/2023-03-30/functions/race", "{}").status != 200) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto g = parseObject(call("tenant-a", "GET", "/2023-03-30/functions/race").body);
  EXPECT_EQ(g.at("revision").as_int64(), 1 + kThreads * kEach);
}

// ---- invoke ----

TEST_F(ApiTest, InvokeSuccessMapsRequestAndHeaders) {
  ASSERT_EQ(create("tenant-a", "inv").status, 200);
  invoker_.result.body = R"({"ok":true})";
  invoker_.result.durationUs = 2400;
  invoker_.result.initDurationUs = 15000;
  invoker_.result.coldStart = true;
  invoker_.result.memoryPeakBytes = 3 * 1024 * 1024;
  invoker_.result.instanceId = "i-7";
  invoker_.result.logTail = "START\nhello from the handler\nEND\n";
  auto r = call("tenant-a", "POST", "/2023-03-30/functions/inv/invocations", R"({"x":1})",
                {{"x-fc-request-id", "req-42"},
                 {"Authorization", "Bearer key-a"},
                 {"x-fc-log-type", "tail"},
                 {"X-Custom", "v"},
                 {"Content-Length", "7"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"ok":true})");
  EXPECT_EQ(r.headers["Content-Type"], "application/json");
  EXPECT_EQ(r.headers["x-fc-request-id"], "req-42");
  EXPECT_EQ(r.headers.count("x-fc-error-type"), 0u);
  EXPECT_EQ(r.headers["x-fc-log-result"], base64Encode(invoker_.result.logTail));
  EXPECT_EQ(r.headers["x-fc-invocation-duration"], "2");
  EXPECT_EQ(r.headers["x-fc-init-duration"], "15");
  EXPECT_EQ(r.headers["x-fc-max-memory-usage"], "3.00");
  EXPECT_EQ(r.headers["x-fc-instance-id"], "i-7");
  EXPECT_EQ(r.headers["x-fc-cold-start"], "true");

  ASSERT_EQ(invoker_.calls.size(), 1u);
  const auto& c = invoker_.calls[0];
  EXPECT_EQ(c.fn.name, "inv");
  EXPECT_EQ(c.req.requestId, "req-42");
  EXPECT_EQ(c.req.payload, R"({"x":1})");
  EXPECT_TRUE(c.req.wantLogTail);
  EXPECT_EQ(c.req.headers.at("X-Custom"), "v");
  EXPECT_EQ(c.req.headers.at("x-fc-request-id"), "req-42");
  for (const auto& [k, v] : c.req.headers) {
    EXPECT_NE(k, "Authorization");
    EXPECT_NE(k, "Content-Length");
  }

  // Without Tail, no log result; warm calls say so and carry no init duration.
  invoker_.result.coldStart = false;
  r = call("tenant-a", "POST", "/2023-03-30/functions/inv/invocations", "{}");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers.count("x-fc-log-result"), 0u);
  EXPECT_EQ(r.headers.count("x-fc-init-duration"), 0u);
  EXPECT_EQ(r.headers["x-fc-cold-start"], "false");
  EXPECT_FALSE(invoker_.calls.back().req.wantLogTail);
  // A generated request id reaches the invoker and the response alike.
  EXPECT_EQ(invoker_.calls.back().req.requestId, r.headers["x-fc-request-id"]);
  // Explicit Sync is the same as the default.
  EXPECT_EQ(call("tenant-a", "POST", "/2023-03-30/functions/inv/invocations", "{}",
                 {{"x-fc-invocation-type", "Sync"}})
                .status,
            200);
}

TEST_F(ApiTest, InvokeFunctionErrorsAre200WithErrorType) {
  ASSERT_EQ(create("tenant-a", "err").status, 200);
  invoker_.result.functionError = FunctionErrorKind::kUnhandled;
  invoker_.result.body = R"({"errorType":"ValueError","errorMessage":"bad"})";
  auto r = call("tenant-a", "POST", "/2023-03-30/functions/err/invocations", "{}");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["x-fc-error-type"], "UnhandledInvocationError");
  EXPECT_EQ(r.body, invoker_.result.body);
  EXPECT_EQ(r.headers["Content-Type"], "application/json");

  invoker_.result.functionError = FunctionErrorKind::kHandled;
  r = call("tenant-a", "POST", "/2023-03-30/functions/err/invocations", "{}");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["x-fc-error-type"], "HandledInvocationError");
}

TEST_F(ApiTest, InvokePlatformErrors) {
  ASSERT_EQ(create("tenant-a", "p").status, 200);
  struct Case {
    Code code;
    int status;
    std::string name;
  };
  std::vector<Case> cases = {{Code::kResourceExhausted, 429, "TooManyRequests"},
                             {Code::kUnavailable, 503, "ServiceUnavailable"},
                             {Code::kAborted, 503, "ServiceUnavailable"},
                             {Code::kNotFound, 404, "FunctionNotFound"},
                             {Code::kDeadlineExceeded, 504, "DeadlineExceeded"},
                             {Code::kInternal, 500, "InternalError"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    invoker_.result.status = Status(c.code, "platform says no");
    auto r = call("tenant-a", "POST", "/2023-03-30/functions/p/invocations", "{}");
    expectError(r, c.status, c.name);
    EXPECT_EQ(str(parseObject(r.body), "message"), "platform says no");
    EXPECT_EQ(r.headers.count("x-fc-error-type"), 0u);
  }
}

TEST_F(ApiTest, InvokeAsyncIsStoredBeforeThe202AndBadTypeIs400) {
  ASSERT_EQ(create("tenant-a", "a").status, 200);
  auto r = call("tenant-a", "POST", "/2023-03-30/functions/a/invocations", R"({"x":1})",
                {{"x-fc-invocation-type", "Async"}, {"x-fc-request-id", "async-1"}});
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.headers.at("x-fc-request-id"), "async-1");
  // Durable before the answer: the store has it (the dispatcher is not started in this fixture
  // or may already be running it).
  auto t = sqlite_->getAsyncTask("tenant-a", "a", "async-1");
  ASSERT_TRUE(t.isOk()) << t.status().toString();
  EXPECT_EQ(t->payload, R"({"x":1})");
  expectError(call("tenant-a", "POST", "/2023-03-30/functions/a/invocations", "{}",
                   {{"x-fc-invocation-type", "Later"}}),
              400, "InvalidArgument");
  expectError(call("tenant-a", "POST", "/2023-03-30/functions/nope/invocations", "{}",
                   {{"x-fc-invocation-type", "Async"}}),
              404, "FunctionNotFound");
}

TEST_F(ApiTest, InvokeCustomRuntimeKeepsTheFunctionsResponse) {
  std::string zip = makeZip({{"bootstrap", "#!/bin/sh\n"}});
  auto c = call("tenant-a", "POST", "/2023-03-30/functions",
                R"({"functionName":"web","runtime":"custom","code":{"zipFile":")" +
                    base64Encode(zip) + R"("}})");
  ASSERT_EQ(c.status, 200) << c.body;
  invoker_.result.httpStatus = 201;
  invoker_.result.headers = {{"Content-Type", "text/plain"},
                             {"X-From-Function", "yes"},
                             {"Transfer-Encoding", "chunked"},
                             {"Connection", "close"}};
  invoker_.result.body = "created";
  auto r = call("tenant-a", "POST", "/2023-03-30/functions/web/invocations", "hi");
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.body, "created");
  EXPECT_EQ(r.headers["Content-Type"], "text/plain");
  EXPECT_EQ(r.headers["X-From-Function"], "yes");
  EXPECT_EQ(r.headers.count("Transfer-Encoding"), 0u);
  EXPECT_EQ(r.headers.count("Connection"), 0u);
  EXPECT_FALSE(r.headers["x-fc-request-id"].empty());

  // A custom function without a content type gets none invented.
  invoker_.result.headers.clear();
  invoker_.result.httpStatus = 200;
  r = call("tenant-a", "POST", "/2023-03-30/functions/web/invocations", "hi");
  EXPECT_EQ(r.headers.count("Content-Type"), 0u);
}

TEST_F(ApiTest, InvokeRespondsFromTheInvokersThread) {
  ASSERT_EQ(create("tenant-a", "later").status, 200);
  invoker_.deferred = true;
  std::promise<HttpResponse> p;
  auto f = p.get_future();
  HttpRequest req;
  req.method = "POST";
  req.path = "/2023-03-30/functions/later/invocations";
  req.body = "{}";
  api_->handle("tenant-a", std::move(req), [&](HttpResponse r) { p.set_value(std::move(r)); });
  auto done = invoker_.waitPending();
  ASSERT_TRUE(done);
  // Deleting the function meanwhile must not invalidate what the pending call uses.
  ASSERT_EQ(call("tenant-a", "DELETE", "/2023-03-30/functions/later").status, 204);
  std::thread t([&] {
    InvokeResult res;
    res.body = "\"late\"";
    done(std::move(res));
  });
  ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  t.join();
  HttpResponse r = f.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "\"late\"");
}

// ---- error mapping ----

TEST(ErrorMappingTest, HttpStatusFor) {
  EXPECT_EQ(httpStatusFor(Code::kInvalidArgument), 400);
  EXPECT_EQ(httpStatusFor(Code::kUnauthenticated), 401);
  EXPECT_EQ(httpStatusFor(Code::kPermissionDenied), 403);
  EXPECT_EQ(httpStatusFor(Code::kNotFound), 404);
  EXPECT_EQ(httpStatusFor(Code::kAlreadyExists), 409);
  EXPECT_EQ(httpStatusFor(Code::kPayloadTooLarge), 413);
  EXPECT_EQ(httpStatusFor(Code::kResourceExhausted), 429);
  EXPECT_EQ(httpStatusFor(Code::kUnavailable), 503);
  EXPECT_EQ(httpStatusFor(Code::kAborted), 503);
  EXPECT_EQ(httpStatusFor(Code::kDeadlineExceeded), 504);
  EXPECT_EQ(httpStatusFor(Code::kInternal), 500);
  EXPECT_EQ(httpStatusFor(Code::kOutOfMemory), 500);
}

TEST(ErrorMappingTest, ErrorResponseShape) {
  HttpResponse r = errorResponse(Status(Code::kUnauthenticated, "invalid API key"), "rid-1");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.headers["x-fc-request-id"], "rid-1");
  auto o = parseObject(r.body);
  EXPECT_EQ(str(o, "code"), "Unauthenticated");
  EXPECT_EQ(str(o, "message"), "invalid API key");
  EXPECT_EQ(str(o, "requestId"), "rid-1");
  HttpResponse named = errorResponse(notFound("x"), "rid-2", "FunctionNotFound");
  EXPECT_EQ(named.status, 404);
  EXPECT_EQ(str(parseObject(named.body), "code"), "FunctionNotFound");
}

}  // namespace
}  // namespace stratus
