// End-to-end: the real `stratus up` binary, real sandboxes, real runtimes, over HTTP and the CLI.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <set>
#include <thread>

#include "common/base64.h"
#include "common/ids.h"
#include "common/json.h"
#include "sandbox/process_sandbox.h"
#include "tests/e2e_util.h"

namespace stratus::e2e {
namespace {

const char* kPythonCode = R"PY(
import os, time

def handler(event, context):
    print("hello-log-line", context.aws_request_id)
    return {"message": "hello", "event": event, "requestId": context.aws_request_id,
            "functionName": context.function_name,
            "memory": context.memory_limit_in_mb,
            "remainingMs": context.get_remaining_time_in_millis(),
            "env": os.environ.get("GREETING")}

def sleepy(event, context):
    time.sleep(float(event.get("sleep", 0.8)))
    return {"pid": os.getpid()}

def boom(event, context):
    raise ValueError("bad input: " + str(event.get("x")))

def crash(event, context):
    os._exit(3)

def hog(event, context):
    chunks = []
    for _ in range(64):
        chunks.append(b"x" * (16 * 1024 * 1024))
    return len(chunks)
)PY";

const char* kNodeCode = R"JS(
exports.handler = async (event, context) => {
  console.log("node-log-line", context.awsRequestId);
  return { message: "hello from node", event, fn: context.functionName,
           remaining: context.getRemainingTimeInMillis() };
};
exports.cb = (event, context, callback) => { callback(null, { style: "callback" }); };
exports.fail = async () => { throw new TypeError("node failure"); };
)JS";

const char* kCustomBootstrap = R"PY(#!/usr/bin/python3
import http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        body = self.rfile.read(n)
        out = json.dumps({"custom": True, "path": self.path, "got": body.decode(),
                          "requestId": self.headers.get("x-fc-request-id")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
port = int(os.environ.get("FC_SERVER_PORT", "9000"))
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
)PY";

std::string pythonZip() { return makeZip({{"index.py", kPythonCode, 0644, ""}}); }

json::object bodyJson(const HttpResponse& r) {
  auto v = parseJson(r.body);
  if (!v.isOk() || !v->is_object()) return {};
  return v->as_object();
}

std::string str(const json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : json::serialize(v);
}

std::string header(const HttpResponse& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

class E2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto s = Server::start(dir_->path() / "data");
    ASSERT_TRUE(s.isOk()) << s.status().toString();
    server_ = std::move(s).value().release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
  }
  void SetUp() override { ASSERT_NE(server_, nullptr) << "server did not start"; }

  static void deploy(const std::string& name, const std::string& runtime,
                     const std::string& handler, const std::string& zip,
                     const std::string& extra = {}) {
    auto r = server_->createFunction(functionSpec(name, runtime, handler, zip, extra));
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    ASSERT_EQ(r->status, 200) << r->body;
  }

  static TempDir* dir_;
  static Server* server_;
};
TempDir* E2eTest::dir_ = nullptr;
Server* E2eTest::server_ = nullptr;

TEST_F(E2eTest, HealthzNeedsNoKey) {
  auto r = httpRequest(server_->endpoint(), "GET", "/healthz", {}, "");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 200);
}

TEST_F(E2eTest, PythonFunctionAnswersWithLambdaContextAndLogTail) {
  deploy("py-hello", "python3", "index.handler", pythonZip(),
         R"("memorySize":256,"environmentVariables":{"GREETING":"hi"})");
  auto r = server_->invoke("py-hello", R"({"name":"stratus"})", {{"x-fc-log-type", "Tail"}});
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(header(*r, "x-fc-error-type"), "");
  auto b = bodyJson(*r);
  EXPECT_EQ(str(b["message"]), "hello");
  EXPECT_EQ(str(b["event"].as_object()["name"]), "stratus");
  EXPECT_EQ(str(b["functionName"]), "py-hello");
  EXPECT_EQ(str(b["memory"]), "256");  // a string, as in AWS Lambda's Python runtime
  EXPECT_EQ(str(b["env"]), "hi");
  std::string requestId = header(*r, "x-fc-request-id");
  EXPECT_FALSE(requestId.empty());
  EXPECT_EQ(str(b["requestId"]), requestId);
  EXPECT_GT(b["remainingMs"].as_int64(), 0);
  EXPECT_LE(b["remainingMs"].as_int64(), 3000);
  auto tail = base64Decode(header(*r, "x-fc-log-result"));
  ASSERT_TRUE(tail.isOk());
  EXPECT_NE(tail->find("hello-log-line " + requestId), std::string::npos) << *tail;
  // Warm call: same instance, no cold start.
  auto r2 = server_->invoke("py-hello", "{}");
  ASSERT_TRUE(r2.isOk());
  EXPECT_EQ(header(*r2, "x-fc-instance-id"), header(*r, "x-fc-instance-id"));
}

TEST_F(E2eTest, NodeFunctionAsyncCallbackAndError) {
  std::string zip = makeZip({{"index.js", kNodeCode},
                             {"node_modules/greet/index.js", "module.exports = () => 'hi';"}});
  deploy("node-hello", "nodejs", "index.handler", zip);
  auto r = server_->invoke("node-hello", R"({"n":1})", {{"x-fc-log-type", "Tail"}});
  ASSERT_TRUE(r.isOk());
  ASSERT_EQ(r->status, 200) << r->body;
  auto b = bodyJson(*r);
  EXPECT_EQ(str(b["message"]), "hello from node");
  EXPECT_EQ(str(b["fn"]), "node-hello");
  auto tail = base64Decode(header(*r, "x-fc-log-result"));
  ASSERT_TRUE(tail.isOk());
  EXPECT_NE(tail->find("node-log-line"), std::string::npos) << *tail;

  deploy("node-cb", "nodejs", "index.cb", zip);
  auto c = server_->invoke("node-cb", "{}");
  ASSERT_TRUE(c.isOk());
  EXPECT_EQ(str(bodyJson(*c)["style"]), "callback") << c->body;

  deploy("node-fail", "nodejs", "index.fail", zip);
  auto f = server_->invoke("node-fail", "{}");
  ASSERT_TRUE(f.isOk());
  EXPECT_EQ(f->status, 200);
  EXPECT_EQ(header(*f, "x-fc-error-type"), "UnhandledInvocationError");
  auto fb = bodyJson(*f);
  EXPECT_EQ(str(fb["errorType"]), "TypeError") << f->body;
  EXPECT_EQ(str(fb["errorMessage"]), "node failure");
}

TEST_F(E2eTest, CustomRuntimeServesHttpInsideTheSandbox) {
  std::string zip = makeZip({{"bootstrap", kCustomBootstrap, 0755}});
  deploy("custom-hello", "custom", "", zip);
  auto r = server_->invoke("custom-hello", "ping");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_EQ(r->status, 200) << r->body;
  auto b = bodyJson(*r);
  EXPECT_EQ(str(b["custom"]), "true") << r->body;
  EXPECT_EQ(str(b["path"]), "/invoke");
  EXPECT_EQ(str(b["got"]), "ping");
  EXPECT_EQ(str(b["requestId"]), header(*r, "x-fc-request-id"));
}

TEST_F(E2eTest, HandlerExceptionIsAFunctionError) {
  deploy("py-boom", "python3", "index.boom", pythonZip());
  auto r = server_->invoke("py-boom", R"({"x":42})");
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(header(*r, "x-fc-error-type"), "UnhandledInvocationError");
  auto b = bodyJson(*r);
  EXPECT_EQ(str(b["errorType"]), "ValueError") << r->body;
  EXPECT_EQ(str(b["errorMessage"]), "bad input: 42");
  EXPECT_TRUE(b.contains("stackTrace"));
}

TEST_F(E2eTest, MissingHandlerIsAnInitError) {
  deploy("py-nohandler", "python3", "index.nope", pythonZip());
  auto r = server_->invoke("py-nohandler", "{}");
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(header(*r, "x-fc-error-type"), "UnhandledInvocationError");
  EXPECT_NE(r->body.find("Runtime.HandlerNotFound"), std::string::npos) << r->body;
}

// Fires n parallel calls, each on its own connection, and returns the instance ids that served.
std::multiset<std::string> parallelInstances(Server& server, const std::string& name, int n) {
  std::vector<std::thread> threads;
  std::mutex mu;
  std::multiset<std::string> ids;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&] {
      auto client = HttpClient::connect(server.endpoint());
      if (!client.isOk()) return;
      auto r = (*client)->request("POST", "/2023-03-30/functions/" + name + "/invocations",
                                  {{"Authorization", "Bearer " + server.key()}},
                                  R"({"sleep":1.0})");
      std::lock_guard lock(mu);
      if (r.isOk() && r->status == 200 && header(*r, "x-fc-error-type").empty()) {
        ids.insert(header(*r, "x-fc-instance-id"));
      } else {
        ids.insert("error:" + (r.isOk() ? r->body : r.status().toString()));
      }
    });
  }
  for (auto& t : threads) t.join();
  return ids;
}

TEST_F(E2eTest, ConcurrencyOneGivesOneInstancePerParallelCall) {
  deploy("py-c1", "python3", "index.sleepy", pythonZip(), R"("instanceConcurrency":1)");
  auto ids = parallelInstances(*server_, "py-c1", 4);
  ASSERT_EQ(ids.size(), 4u);
  for (const auto& id : ids) EXPECT_EQ(id.rfind("error:", 0), std::string::npos) << id;
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 4u);
}

TEST_F(E2eTest, ConcurrencyNSharesOneInstance) {
  deploy("py-c4", "python3", "index.sleepy", pythonZip(), R"("instanceConcurrency":4)");
  auto ids = parallelInstances(*server_, "py-c4", 4);
  ASSERT_EQ(ids.size(), 4u);
  for (const auto& id : ids) EXPECT_EQ(id.rfind("error:", 0), std::string::npos) << id;
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 1u);
}

TEST_F(E2eTest, TimeoutIsReportedAndTheInstanceIsRecycled) {
  deploy("py-timeout", "python3", "index.sleepy", pythonZip(), R"("timeout":1)");
  auto start = std::chrono::steady_clock::now();
  auto r = server_->invoke("py-timeout", R"({"sleep":20})");
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.isOk());
  EXPECT_LT(elapsed, std::chrono::seconds(8));
  EXPECT_EQ(header(*r, "x-fc-error-type"), "UnhandledInvocationError");
  auto b = bodyJson(*r);
  EXPECT_EQ(str(b["errorType"]), "FunctionTimeout") << r->body;
  // The next call gets a fresh instance and succeeds.
  auto ok = server_->invoke("py-timeout", R"({"sleep":0})");
  ASSERT_TRUE(ok.isOk());
  EXPECT_EQ(header(*ok, "x-fc-error-type"), "") << ok->body;
  EXPECT_NE(header(*ok, "x-fc-instance-id"), header(*r, "x-fc-instance-id"));
}

TEST_F(E2eTest, CrashNamesTheCauseAndIsReplaced) {
  deploy("py-crash", "python3", "index.crash", pythonZip());
  auto r = server_->invoke("py-crash", "{}");
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(header(*r, "x-fc-error-type"), "UnhandledInvocationError");
  auto b = bodyJson(*r);
  EXPECT_EQ(str(b["errorType"]), "RuntimeExited") << r->body;
  EXPECT_NE(r->body.find("3"), std::string::npos) << r->body;
  auto again = server_->invoke("py-crash", "{}");
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(str(bodyJson(*again)["errorType"]), "RuntimeExited") << again->body;
}

TEST_F(E2eTest, MemoryLimitExceededIsOutOfMemoryAndServerIsUnaffected) {
  deploy("py-hog", "python3", "index.hog", pythonZip(), R"("memorySize":128)");
  auto r = server_->invoke("py-hog", "{}");
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(header(*r, "x-fc-error-type"), "UnhandledInvocationError");
  auto b = bodyJson(*r);
  EXPECT_EQ(str(b["errorType"]), "OutOfMemory") << r->body;
  EXPECT_NE(b["errorMessage"].as_string().find("128"), std::string::npos) << r->body;
  // The server and other functions carry on.
  auto h = httpRequest(server_->endpoint(), "GET", "/healthz", {}, "");
  ASSERT_TRUE(h.isOk());
  EXPECT_EQ(h->status, 200);
  deploy("py-after-oom", "python3", "index.handler", pythonZip());
  auto ok = server_->invoke("py-after-oom", "{}");
  ASSERT_TRUE(ok.isOk());
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(header(*ok, "x-fc-error-type"), "") << ok->body;
}

TEST_F(E2eTest, UpdateDrainsOldRevision) {
  deploy("py-update", "python3", "index.handler", pythonZip());
  auto r1 = server_->invoke("py-update", "{}");
  ASSERT_TRUE(r1.isOk());
  auto u = server_->call("PUT", "/2023-03-30/functions/py-update",
                         R"({"environmentVariables":{"GREETING":"v2"}})");
  ASSERT_TRUE(u.isOk());
  ASSERT_EQ(u->status, 200) << u->body;
  auto r2 = server_->invoke("py-update", "{}");
  ASSERT_TRUE(r2.isOk());
  EXPECT_EQ(str(bodyJson(*r2)["env"]), "v2") << r2->body;
  EXPECT_NE(header(*r2, "x-fc-instance-id"), header(*r1, "x-fc-instance-id"));
}

TEST_F(E2eTest, CrudListGetDelete) {
  deploy("py-crud", "python3", "index.handler", pythonZip(), R"("description":"crud")");
  auto g = server_->call("GET", "/2023-03-30/functions/py-crud");
  ASSERT_TRUE(g.isOk());
  ASSERT_EQ(g->status, 200);
  auto gb = bodyJson(*g);
  EXPECT_EQ(str(gb["functionName"]), "py-crud");
  EXPECT_EQ(str(gb["runtime"]), "python3");
  EXPECT_EQ(gb["memorySize"].as_int64(), 128);
  auto l = server_->call("GET", "/2023-03-30/functions");
  ASSERT_TRUE(l.isOk());
  EXPECT_NE(l->body.find("\"py-crud\""), std::string::npos);
  auto d = server_->call("DELETE", "/2023-03-30/functions/py-crud");
  ASSERT_TRUE(d.isOk());
  EXPECT_LT(d->status, 300);
  auto g2 = server_->call("GET", "/2023-03-30/functions/py-crud");
  ASSERT_TRUE(g2.isOk());
  EXPECT_EQ(g2->status, 404);
  auto i2 = server_->invoke("py-crud", "{}");
  ASSERT_TRUE(i2.isOk());
  EXPECT_EQ(i2->status, 404);
}

// Issue 3: two tenants deploy the very same zip. Each function runs and reads its own /code,
// which inside its sandbox belongs to the uid it runs as (65534; on the host its tenant's own
// uid) with owner-only modes: directories 0500, files 0400, executables 0500.
TEST_F(E2eTest, IdenticalCodeOfTwoTenantsRunsForEachAsItsOwn) {
  const char* code = R"PY(import os, stat
def handler(event, context):
    def own(p):
        s = os.lstat(p)
        return [s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)]
    return {"uid": os.getuid(), "code": own("/code"), "index": own("/code/index.py"),
            "tool": own("/code/bin/tool.sh"), "lib": own("/code/bin"),
            "data": open("/code/data.txt").read()}
)PY";
  const std::string zip = makeZip({{"index.py", code, 0644, ""},
                                   {"bin/tool.sh", "#!/bin/sh\necho tool\n", 0755, ""},
                                   {"data.txt", "same code, two tenants", 0644, ""}});
  deploy("twin-code", "python3", "index.handler", zip);
  auto t = server_->call("POST", "/admin/tenants", R"({"name":"twintenant"})");
  ASSERT_TRUE(t.isOk() && t->status == 201) << (t.isOk() ? t->body : t.status().toString());
  const std::string keyB = str(bodyJson(*t)["apiKey"]);
  auto created =
      httpRequest(server_->endpoint(), "POST", "/2023-03-30/functions",
                  {{"authorization", "Bearer " + keyB}, {"content-type", "application/json"}},
                  functionSpec("twin-code", "python3", "index.handler", zip));
  ASSERT_TRUE(created.isOk() && created->status == 200)
      << (created.isOk() ? created->body : created.status().toString());
  for (const std::string& key : {server_->key(), keyB}) {
    auto r = httpRequest(server_->endpoint(), "POST", "/2023-03-30/functions/twin-code/invocations",
                         {{"authorization", "Bearer " + key}}, "{}", std::chrono::seconds(60));
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(header(*r, "x-fc-error-type"), "") << r->body;
    auto b = bodyJson(*r);
    EXPECT_EQ(str(b["data"]), "same code, two tenants");
    const int64_t uid = b["uid"].as_int64();
    auto expectOwned = [&](const char* what, int64_t mode) {
      const json::array& a = b[what].as_array();
      ASSERT_EQ(a.size(), 3u) << what;
      EXPECT_EQ(a[0].as_int64(), uid) << what << " is not the function's own";
      EXPECT_EQ(a[1].as_int64(), uid) << what;
      EXPECT_EQ(a[2].as_int64(), mode) << what;
    };
    expectOwned("code", 0500);
    expectOwned("lib", 0500);
    expectOwned("index", 0400);
    expectOwned("tool", 0500);
  }
}

struct BadCase {
  const char* what;
  std::string body;
  int status;
};

TEST_F(E2eTest, BadInputGetsNamedErrors) {
  std::string zip = pythonZip();
  std::vector<BadCase> cases = {
      {"bad name", functionSpec("1-bad name", "python3", "index.handler", zip), 400},
      {"unknown runtime", functionSpec("f1", "cobol", "index.handler", zip), 400},
      {"memory not multiple of 128",
       functionSpec("f2", "python3", "index.handler", zip, R"("memorySize":200)"), 400},
      {"memory too big",
       functionSpec("f3", "python3", "index.handler", zip, R"("memorySize":3200)"), 400},
      {"timeout zero", functionSpec("f4", "python3", "index.handler", zip, R"("timeout":0)"),
       400},
      {"timeout too long",
       functionSpec("f5", "python3", "index.handler", zip, R"("timeout":901)"), 400},
      {"concurrency zero",
       functionSpec("f6", "python3", "index.handler", zip, R"("instanceConcurrency":0)"), 400},
      {"concurrency too big",
       functionSpec("f7", "python3", "index.handler", zip, R"("instanceConcurrency":201)"), 400},
      {"malformed json", "{\"functionName\": ", 400},
      {"dotdot entry",
       functionSpec("f8", "python3", "index.handler", makeZip({{"../evil.py", "x"}})), 400},
      {"absolute entry",
       functionSpec("f9", "python3", "index.handler", makeZip({{"/etc/evil.py", "x"}})), 400},
      {"symlink out",
       functionSpec("f10", "python3", "index.handler",
                    makeZip({{"index.py", "x"}, {"link", "", 0777, "../../../etc/shadow"}})),
       400},
      {"not a zip", functionSpec("f11", "python3", "index.handler", "this is not a zip"), 400},
  };
  for (const auto& c : cases) {
    auto r = server_->createFunction(c.body);
    ASSERT_TRUE(r.isOk()) << c.what << ": " << r.status().toString();
    EXPECT_EQ(r->status, c.status) << c.what << ": " << r->body;
    auto b = bodyJson(*r);
    EXPECT_TRUE(b.contains("code") && b.contains("message")) << c.what << ": " << r->body;
  }
  // None of them was created.
  auto l = server_->call("GET", "/2023-03-30/functions");
  ASSERT_TRUE(l.isOk());
  for (const char* n : {"\"f1\"", "\"f8\"", "\"f10\"", "\"f11\""}) {
    EXPECT_EQ(l->body.find(n), std::string::npos) << n;
  }
}

TEST_F(E2eTest, DuplicateUnknownAndAuthErrors) {
  deploy("py-dup", "python3", "index.handler", pythonZip());
  auto dup = server_->createFunction(functionSpec("py-dup", "python3", "index.handler",
                                                  pythonZip()));
  ASSERT_TRUE(dup.isOk());
  EXPECT_EQ(dup->status, 409) << dup->body;
  auto unknown = server_->call("GET", "/2023-03-30/functions/no-such-function");
  ASSERT_TRUE(unknown.isOk());
  EXPECT_EQ(unknown->status, 404);
  auto missingKey = httpRequest(server_->endpoint(), "GET", "/2023-03-30/functions", {}, "");
  ASSERT_TRUE(missingKey.isOk());
  EXPECT_EQ(missingKey->status, 401);
  auto wrongKey = httpRequest(server_->endpoint(), "GET", "/2023-03-30/functions",
                              {{"Authorization", "Bearer sk-wrong"}}, "");
  ASSERT_TRUE(wrongKey.isOk());
  EXPECT_EQ(wrongKey->status, 401);
  EXPECT_TRUE(bodyJson(*wrongKey).contains("code"));
}

TEST_F(E2eTest, OversizedCodeAndBodyAre413) {
  // A "zip" over 100 MB: refused on size before anything is unpacked.
  std::string big(101LL << 20, 'A');
  auto r = server_->createFunction(functionSpec("too-big", "python3", "index.handler", big));
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 413) << r->body.substr(0, 200);
  // A zip bomb: small zipped, over 500 MB unpacked.
  std::string bomb = makeZip({{"index.py", "x"}, {"zeros.bin", std::string(510LL << 20, '\0')}});
  EXPECT_LT(bomb.size(), 5u << 20);
  auto b = server_->createFunction(functionSpec("bomb", "python3", "index.handler", bomb));
  ASSERT_TRUE(b.isOk());
  EXPECT_EQ(b->status, 413) << b->body;
  // A request body over the server's limit.
  std::string huge(150LL << 20, 'x');
  auto h = server_->call("POST", "/2023-03-30/functions", huge);
  if (h.isOk()) {
    EXPECT_EQ(h->status, 413);
  }  // else: the server may close the connection while we still send; that is also a refusal
  auto health = httpRequest(server_->endpoint(), "GET", "/healthz", {}, "");
  ASSERT_TRUE(health.isOk());
  EXPECT_EQ(health->status, 200);
}

TEST_F(E2eTest, CliDeployInvokeListRemove) {
  std::map<std::string, std::string> env = {{"STRATUS_ENDPOINT", server_->endpoint()},
                                            {"STRATUS_KEY", server_->key()},
                                            {"STRATUS_CONFIG", (dir_->path() / "cfg.json").string()}};
  std::string example = std::string(STRATUS_SOURCE_DIR) + "/examples/hello-python";
  auto [rc1, out1] = runCommand({STRATUS_BINARY, "deploy", example, "--name", "cli-py",
                                 "--runtime", "python3", "--handler", "index.handler"},
                                env);
  ASSERT_EQ(rc1, 0) << out1;
  auto [rc2, out2] = runCommand({STRATUS_BINARY, "invoke", "cli-py", "--data", R"({"k":"v"})"},
                                env);
  ASSERT_EQ(rc2, 0) << out2;
  EXPECT_NE(out2.find("hello from python"), std::string::npos) << out2;
  auto [rc3, out3] = runCommand({STRATUS_BINARY, "ls"}, env);
  ASSERT_EQ(rc3, 0) << out3;
  EXPECT_NE(out3.find("cli-py"), std::string::npos) << out3;
  auto [rc4, out4] = runCommand({STRATUS_BINARY, "rm", "cli-py"}, env);
  ASSERT_EQ(rc4, 0) << out4;
  auto [rc5, out5] = runCommand({STRATUS_BINARY, "get", "cli-py"}, env);
  EXPECT_NE(rc5, 0) << out5;
}

std::string cgroupParentFor(const std::filesystem::path& dataDir) {
  return ProcessSandboxOptions::nameForDataDir(dataDir);
}

bool anyCgroupDirLeft(const std::string& parent) {
  for (const auto& entry : std::filesystem::directory_iterator("/sys/fs/cgroup")) {
    std::error_code ec;
    if (!entry.is_directory(ec)) continue;
    auto p = entry.path() / parent;
    if (!std::filesystem::exists(p, ec)) continue;
    for (const auto& child : std::filesystem::directory_iterator(p, ec)) {
      if (child.is_directory(ec)) return true;
    }
  }
  return false;
}

// Names of the sandbox cgroup directories under parent, in every hierarchy.
std::set<std::string> cgroupDirsOf(const std::string& parent) {
  std::set<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator("/sys/fs/cgroup")) {
    std::error_code ec;
    if (!entry.is_directory(ec)) continue;
    auto p = entry.path() / parent;
    if (!std::filesystem::exists(p, ec)) continue;
    for (const auto& child : std::filesystem::directory_iterator(p, ec)) {
      if (child.is_directory(ec)) out.insert(child.path().filename().string());
    }
  }
  return out;
}

TEST(E2eLifecycle, CleanShutdownLeavesNothingBehind) {
  TempDir dir;
  auto data = dir.path() / "data";
  auto s = Server::start(data);
  ASSERT_TRUE(s.isOk()) << s.status().toString();
  Server& server = **s;
  auto c = server.createFunction(functionSpec("py", "python3", "index.handler", pythonZip()));
  ASSERT_TRUE(c.isOk());
  ASSERT_EQ(c->status, 200) << c->body;
  auto c4 = server.createFunction(functionSpec("py4", "python3", "index.sleepy", pythonZip()));
  ASSERT_TRUE(c4.isOk());
  ASSERT_EQ(server.invoke("py", "{}")->status, 200);
  ASSERT_EQ(server.invoke("py4", R"({"sleep":0})")->status, 200);
  std::string parent = cgroupParentFor(data);
  EXPECT_FALSE(processesInCgroup(parent).empty()) << "instances should be running";
  auto st = server.stop(SIGTERM);
  ASSERT_TRUE(st.isOk()) << st.status().toString();
  EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0) << "wait status " << *st;
  EXPECT_TRUE(processesInCgroup(parent).empty());
  EXPECT_FALSE(anyCgroupDirLeft(parent));
  EXPECT_TRUE(mountsMentioning(data.string()).empty());
  // The sandboxes' host-side state is gone: on tmpfs (/dev/shm/<same name as the cgroup
  // parent>, ProcessSandboxOptions::forDataDir) directory and all, else under the data dir.
  const std::filesystem::path shm = "/dev/shm/" + parent;
  EXPECT_TRUE(mountsMentioning(shm.string()).empty());
  EXPECT_FALSE(std::filesystem::exists(shm)) << shm;
  std::error_code ec;
  size_t leftover = 0;
  for (auto& e : std::filesystem::directory_iterator(data / "run" / "sandboxes", ec)) {
    (void)e;
    ++leftover;
  }
  EXPECT_EQ(leftover, 0u);
}

TEST(E2eLifecycle, FunctionsSurviveKill9AndRestart) {
  TempDir dir;
  auto data = dir.path() / "data";
  std::string parent = cgroupParentFor(data);
  {
    auto s = Server::start(data);
    ASSERT_TRUE(s.isOk()) << s.status().toString();
    auto c = (*s)->createFunction(functionSpec("survivor", "python3", "index.handler",
                                               pythonZip()));
    ASSERT_TRUE(c.isOk());
    ASSERT_EQ(c->status, 200) << c->body;
    ASSERT_EQ((*s)->invoke("survivor", "{}")->status, 200);
    auto st = (*s)->stop(SIGKILL);
    ASSERT_TRUE(st.isOk());
  }
  // The sandboxes die with their server (PR_SET_PDEATHSIG); allow the kernel a moment.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!processesInCgroup(parent).empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(processesInCgroup(parent).empty());
  const std::set<std::string> leftBehind = cgroupDirsOf(parent);
  auto s = Server::start(data);
  ASSERT_TRUE(s.isOk()) << s.status().toString();
  // (The new server's warm pool may already have made sandboxes of its own.)
  for (const std::string& name : cgroupDirsOf(parent)) {
    EXPECT_EQ(leftBehind.count(name), 0u) << "the restart sweeps what kill -9 left: " << name;
  }
  auto g = (*s)->call("GET", "/2023-03-30/functions/survivor");
  ASSERT_TRUE(g.isOk());
  EXPECT_EQ(g->status, 200);
  auto r = (*s)->invoke("survivor", R"({"after":"restart"})");
  ASSERT_TRUE(r.isOk());
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(str(bodyJson(*r)["message"]), "hello");
}

}  // namespace
}  // namespace stratus::e2e
