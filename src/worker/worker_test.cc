// Worker tests against the real ProcessSandboxBackend and the real python3 / nodejs / custom
// runtimes: no mocks. Each test has its own temp dir and cgroup parent, so tests can run in
// parallel.
#include "worker/worker.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/fs.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/log.h"
#include "runtime/runtime.h"
#include "sandbox/process_sandbox.h"

namespace stratus {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

template <typename Pred>
bool waitFor(Pred pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);  // polling interval, not a wait for a condition
  }
  return pred();
}

json::object parseObject(const std::string& text) {
  auto v = parseJson(text);
  EXPECT_TRUE(v.isOk()) << "not JSON: " << text;
  if (!v.isOk() || !v->is_object()) return {};
  return v->as_object();
}

std::string str(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// The fields of /proc/<pid>/status that say how confined a process is (defined with the template
// tests below).
std::map<std::string, std::string> confinement(pid_t pid);

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stratus-worker-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    ASSERT_TRUE(runtime::installAssets(tmp_ / "assets").isOk());
    ProcessSandboxOptions so;
    so.stateDir = tmp_ / "sandboxes";
    so.cgroupParent = "stratus-wt-" + randomHex(4);
    cgroupParent_ = so.cgroupParent;
    auto backend = ProcessSandboxBackend::create(so);
    ASSERT_TRUE(backend.isOk()) << backend.status().toString();
    backend_ = std::move(backend).value();
    ASSERT_TRUE(makeDirs(tmp_ / "state").isOk());
    makeWorker(WorkerOptions().startBudget);
  }

  void makeWorker(Duration startBudget, WarmPoolOptions pool = {}, bool templates = false) {
    if (worker_) worker_->shutdown();
    WorkerOptions wo;
    wo.stateDir = tmp_ / "state";
    wo.logDir = tmp_ / "logs";
    wo.runtimeAssetsDir = tmp_ / "assets";
    wo.startBudget = startBudget;
    wo.pool = std::move(pool);
    wo.templates = templates;
    worker_ = std::make_unique<Worker>(wo, *backend_, clock_);
    worker_->setInstanceLostHandler([this](const std::string& id, Status cause) {
      std::lock_guard<std::mutex> lock(mu_);
      lost_.emplace_back(id, cause);
    });
  }

  void TearDown() override {
    if (worker_) worker_->shutdown();
    worker_.reset();
    backend_.reset();
    // Nothing of this test survives the worker and its backend: no cgroup, no state directory.
    if (!cgroupParent_.empty()) {
      EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/memory") / cgroupParent_));
      EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/pids") / cgroupParent_));
    }
    if (fs::exists(tmp_ / "state")) {
      EXPECT_TRUE(fs::is_empty(tmp_ / "state"));
    }
    if (!tmp_.empty()) (void)removeTree(tmp_);
  }

  // A code directory with the given files (name -> content), readable by the sandbox user.
  fs::path writeCode(const std::map<std::string, std::string>& files, mode_t mode = 0644) {
    fs::path dir = tmp_ / ("code-" + randomHex(4));
    EXPECT_TRUE(makeDirs(dir, 0755).isOk());
    for (const auto& [name, content] : files) {
      std::ofstream(dir / name) << content;
      ::chmod((dir / name).c_str(), mode);
    }
    return dir;
  }

  // The host pids of instance id's placeholder command (sleep) and of its runtime (comm starts
  // with runtimeComm); -1 where absent.
  std::pair<pid_t, pid_t> placeholderAndRuntime(const std::string& id,
                                                const std::string& runtimeComm) {
    pid_t placeholder = -1, runtimePid = -1;
    for (pid_t p : pidsOf(id)) {
      auto comm = readFile("/proc/" + std::to_string(p) + "/comm");
      if (!comm.isOk()) continue;
      if (comm->starts_with("sleep")) placeholder = p;
      if (comm->starts_with(runtimeComm) && runtimePid < 0) runtimePid = p;
    }
    return {placeholder, runtimePid};
  }

  // Four templated instances of fn (code: the pool probe) start with fresh module state, see
  // their own function, and the first one's runtime is confined exactly like its sandbox's
  // placeholder command. Returns that confinement.
  std::map<std::string, std::string> expectTemplatedStartsAreFreshAndConfined(
      const std::string& idPrefix, const FunctionSpec& fn, const fs::path& code,
      const std::string& runtimeComm) {
    std::vector<double> ms;
    for (int i = 0; i < 4; ++i) {
      const std::string id = idPrefix + std::to_string(i);
      const auto t0 = std::chrono::steady_clock::now();
      auto ready = start(id, fn, code);
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      EXPECT_TRUE(ready.isOk()) << ready.status().toString();
      if (!ready.isOk()) return {};
      auto r = invoke(id, "{}");
      EXPECT_EQ(r.functionError, FunctionErrorKind::kNone) << r.body;
      auto body = parseObject(r.body);
      EXPECT_EQ(str(body, "data"), "tpl");
      EXPECT_EQ(str(body, "env"), "templated");
      EXPECT_EQ(str(body, "fc"), fn.name);
      EXPECT_EQ(str(body, "cwd"), "/code");
      EXPECT_EQ(body["calls"], json::value(1)) << "module state starts fresh in every instance";
      EXPECT_EQ(body["leak"], json::value(false));
    }
    std::printf(
        "%s templated start (startInstance -> ready): first %.1f ms (starts the template), "
        "then %.1f / %.1f / %.1f ms\n",
        fn.runtime.c_str(), ms[0], ms[1], ms[2], ms[3]);
    auto [placeholder, runtimePid] = placeholderAndRuntime(idPrefix + "0", runtimeComm);
    EXPECT_GT(placeholder, 0);
    EXPECT_GT(runtimePid, 0);
    if (placeholder <= 0 || runtimePid <= 0) return {};
    auto a = confinement(placeholder), b = confinement(runtimePid);
    EXPECT_FALSE(a.empty());
    for (const auto& [k, v] : a) EXPECT_EQ(b[k], v) << k;
    return a;
  }

  FunctionSpec makeFn(const std::string& runtime, const std::string& handler = "index.handler") {
    FunctionSpec fn;
    fn.tenant = "t1";
    fn.name = "fn-" + randomHex(3);
    fn.runtime = runtime;
    fn.handler = handler;
    fn.memoryMb = 128;
    fn.timeoutSec = 10;
    fn.initializationTimeoutSec = 10;
    return fn;
  }

  Result<InstanceReady> start(const std::string& id, const FunctionSpec& fn, const fs::path& code) {
    std::promise<Result<InstanceReady>> p;
    auto f = p.get_future();
    worker_->startInstance(id, fn, code,
                           [&p](Result<InstanceReady> r) { p.set_value(std::move(r)); });
    if (f.wait_for(60s) != std::future_status::ready) return internalError("start did not finish");
    return f.get();
  }

  std::future<InvokeResult> invokeAsync(const std::string& id, std::string payload,
                                        bool wantLogTail = false, std::string rid = "") {
    auto p = std::make_shared<std::promise<InvokeResult>>();
    InvokeRequest req;
    req.requestId = rid.empty() ? newRequestId() : rid;
    req.payload = std::move(payload);
    req.wantLogTail = wantLogTail;
    worker_->invoke(id, std::move(req), [p](InvokeResult r) { p->set_value(std::move(r)); });
    return p->get_future();
  }

  InvokeResult invoke(const std::string& id, std::string payload, bool wantLogTail = false) {
    auto f = invokeAsync(id, std::move(payload), wantLogTail);
    EXPECT_EQ(f.wait_for(60s), std::future_status::ready);
    return f.get();
  }

  // Host pids of the processes in the instance's cgroup (v1 memory controller or v2).
  std::vector<pid_t> pidsOf(const std::string& id) {
    std::vector<pid_t> out;
    for (const fs::path& dir : {fs::path("/sys/fs/cgroup/memory") / cgroupParent_ / id,
                                fs::path("/sys/fs/cgroup") / cgroupParent_ / id}) {
      auto text = readFile(dir / "cgroup.procs");
      if (!text.isOk()) continue;
      std::istringstream in(*text);
      pid_t pid;
      while (in >> pid) out.push_back(pid);
      if (!out.empty()) break;
    }
    return out;
  }

  static bool processGone(pid_t pid) {
    return !fs::exists(fs::path("/proc") / std::to_string(pid));
  }

  std::vector<std::pair<std::string, Status>> lost() {
    std::lock_guard<std::mutex> lock(mu_);
    return lost_;
  }

  // Everything the instance held is gone: processes, state dir, cgroup.
  void expectInstanceGone(const std::string& id, const std::vector<pid_t>& pids) {
    for (pid_t pid : pids) {
      EXPECT_TRUE(waitFor([&] { return processGone(pid); })) << "process " << pid << " survives";
    }
    EXPECT_TRUE(waitFor([&] { return !fs::exists(tmp_ / "state" / id); }))
        << "state dir of " << id << " survives";
    EXPECT_TRUE(waitFor([&] {
      return !fs::exists(fs::path("/sys/fs/cgroup/memory") / cgroupParent_ / id) &&
             !fs::exists(fs::path("/sys/fs/cgroup") / cgroupParent_ / id);
    })) << "cgroup of "
        << id << " survives";
  }

  SystemClock clock_;
  fs::path tmp_;
  std::string cgroupParent_;
  std::unique_ptr<ProcessSandboxBackend> backend_;
  std::unique_ptr<Worker> worker_;
  std::mutex mu_;
  std::vector<std::pair<std::string, Status>> lost_;
};

constexpr const char* kPyHello = R"(
import os
def handler(event, context):
    print("hello-log " + context.aws_request_id, flush=True)
    return {"hello": event.get("name"), "rid": context.aws_request_id}
)";

TEST_F(WorkerTest, Python3HelloStartInvokeResult) {
  FunctionSpec fn = makeFn("python3");
  auto code = writeCode({{"index.py", kPyHello}});
  const auto t0 = std::chrono::steady_clock::now();
  auto ready = start("py-hello", fn, code);
  const auto coldMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(ready.isOk()) << ready.status().toString();
  std::printf("python3 cold start (startInstance -> ready): %.1f ms (initDurationUs %lld)\n",
              coldMs, static_cast<long long>(ready->initDurationUs));
  EXPECT_GT(ready->initDurationUs, 0);
  EXPECT_EQ(worker_->instanceCount(), 1u);

  auto r = invoke("py-hello", R"({"name":"stratus"})");
  ASSERT_TRUE(r.status.isOk()) << r.status.toString();
  EXPECT_EQ(r.functionError, FunctionErrorKind::kNone) << r.body;
  auto body = parseObject(r.body);
  EXPECT_EQ(str(body, "hello"), "stratus");
  EXPECT_FALSE(str(body, "rid").empty());
  EXPECT_EQ(r.instanceId, "py-hello");
  EXPECT_GT(r.durationUs, 0);
  EXPECT_GT(r.memoryPeakBytes, 0);
  EXPECT_FALSE(r.instanceLost);

  // Warm calls keep working; the request id reaches the handler.
  for (int i = 0; i < 20; ++i) {
    const std::string rid = "req-" + std::to_string(i);
    auto f = invokeAsync("py-hello", R"({"name":"n"})", false, rid);
    auto wr = f.get();
    ASSERT_TRUE(wr.status.isOk());
    EXPECT_EQ(str(parseObject(wr.body), "rid"), rid);
  }
}

TEST_F(WorkerTest, NodejsHello) {
  FunctionSpec fn = makeFn("nodejs");
  auto code = writeCode({{"index.js", R"(
exports.handler = async (event, context) => {
  console.log("node-log", context.awsRequestId);
  return { hello: event.name, fn: context.functionName };
};
)"}});
  const auto t0 = std::chrono::steady_clock::now();
  auto ready = start("node-hello", fn, code);
  const auto coldMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(ready.isOk()) << ready.status().toString();
  std::printf("nodejs cold start (startInstance -> ready): %.1f ms\n", coldMs);
  auto r = invoke("node-hello", R"({"name":"node"})", true);
  ASSERT_TRUE(r.status.isOk()) << r.status.toString();
  EXPECT_EQ(r.functionError, FunctionErrorKind::kNone) << r.body;
  auto body = parseObject(r.body);
  EXPECT_EQ(str(body, "hello"), "node");
  EXPECT_EQ(str(body, "fn"), fn.name);
  EXPECT_NE(r.logTail.find("node-log"), std::string::npos) << r.logTail;
}

constexpr const char* kCustomServer = R"(#!/usr/bin/python3
import http.server, json, sys
state = {"inits": 0}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        body = self.rfile.read(n)
        if self.path == "/initialize":
            state["inits"] += 1
            out = b"ok"
        else:
            print("custom-log", self.headers.get("x-fc-request-id"), flush=True)
            out = json.dumps({"echo": body.decode(), "rid": self.headers.get("x-fc-request-id"),
                              "fn": self.headers.get("x-fc-function-name"),
                              "mem": self.headers.get("x-fc-function-memory"),
                              "user": self.headers.get("x-user"), "path": self.path,
                              "inits": state["inits"]}).encode()
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("x-custom", "yes")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
http.server.ThreadingHTTPServer(("127.0.0.1", 9000), H).serve_forever()
)";

TEST_F(WorkerTest, CustomRuntimeHttp) {
  FunctionSpec fn = makeFn("custom", "");
  fn.initializer = "init";
  fn.instanceConcurrency = 4;
  auto code = writeCode({{"bootstrap", kCustomServer}}, 0755);
  const auto t0 = std::chrono::steady_clock::now();
  auto ready = start("custom-1", fn, code);
  ASSERT_TRUE(ready.isOk()) << ready.status().toString();
  std::printf(
      "custom (python http.server) cold start: %.1f ms\n",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  for (int i = 0; i < 5; ++i) {  // several calls: keep-alive connection reuse
    InvokeRequest req;
    req.requestId = "rid-" + std::to_string(i);
    req.payload = "payload-" + std::to_string(i);
    req.wantLogTail = true;
    req.headers["x-user"] = "u1";
    std::promise<InvokeResult> p;
    worker_->invoke("custom-1", req, [&p](InvokeResult r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    ASSERT_TRUE(r.status.isOk()) << r.status.toString();
    EXPECT_EQ(r.functionError, FunctionErrorKind::kNone);
    EXPECT_EQ(r.httpStatus, 201);
    EXPECT_EQ(r.headers["x-custom"], "yes");
    auto body = parseObject(r.body);
    EXPECT_EQ(str(body, "echo"), req.payload);
    EXPECT_EQ(str(body, "rid"), req.requestId);
    EXPECT_EQ(str(body, "fn"), fn.name);
    EXPECT_EQ(str(body, "mem"), "128");
    EXPECT_EQ(str(body, "user"), "u1");
    EXPECT_EQ(str(body, "path"), "/invoke");
    EXPECT_EQ(body["inits"].as_int64(), 1);
    EXPECT_NE(r.logTail.find("custom-log " + req.requestId), std::string::npos) << r.logTail;
  }
  // Concurrent calls open more connections.
  std::vector<std::future<InvokeResult>> fs;
  for (int i = 0; i < 4; ++i) fs.push_back(invokeAsync("custom-1", "c" + std::to_string(i)));
  for (int i = 0; i < 4; ++i) {
    auto r = fs[i].get();
    ASSERT_TRUE(r.status.isOk()) << r.status.toString();
    EXPECT_EQ(str(parseObject(r.body), "echo"), "c" + std::to_string(i));
  }
}

TEST_F(WorkerTest, CustomRuntimeThatNeverListensTimesOut) {
  FunctionSpec fn = makeFn("custom", "");
  fn.initializationTimeoutSec = 1;
  auto code = writeCode({{"bootstrap", "#!/usr/bin/python3\nimport time\ntime.sleep(60)\n"}}, 0755);
  makeWorker(std::chrono::seconds(1));
  const auto t0 = std::chrono::steady_clock::now();
  auto r = start("custom-never", fn, code);
  // Bounded by initializationTimeout (1 s) + startBudget (1 s).
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(str(parseObject(r.status().message()), "errorType"), "Runtime.InitTimeout");
  EXPECT_EQ(worker_->instanceCount(), 0u);
  expectInstanceGone("custom-never", {});
}

TEST_F(WorkerTest, HandlerExceptionIsFunctionError) {
  FunctionSpec fn = makeFn("python3");
  auto code = writeCode({{"index.py", R"(
def handler(event, context):
    if event.get("fail"):
        raise ValueError("bad input " + str(event["fail"]))
    return "fine"
)"}});
  ASSERT_TRUE(start("py-exc", fn, code).isOk());
  auto r = invoke("py-exc", R"({"fail": 7})");
  ASSERT_TRUE(r.status.isOk()) << r.status.toString();
  EXPECT_EQ(r.functionError, FunctionErrorKind::kUnhandled);
  EXPECT_FALSE(r.instanceLost);
  auto body = parseObject(r.body);
  EXPECT_EQ(str(body, "errorType"), "ValueError");
  EXPECT_EQ(str(body, "errorMessage"), "bad input 7");
  EXPECT_TRUE(body.contains("stackTrace"));
  // The instance survives a handler exception.
  auto ok = invoke("py-exc", "{}");
  EXPECT_TRUE(ok.status.isOk());
  EXPECT_EQ(ok.functionError, FunctionErrorKind::kNone);
  EXPECT_EQ(ok.body, "\"fine\"");
}

TEST_F(WorkerTest, NodeCallbackErrorIsHandled) {
  FunctionSpec fn = makeFn("nodejs");
  auto code = writeCode({{"index.js", R"(
exports.handler = (event, context, callback) => { callback(new Error("told to fail")); };
)"}});
  auto ready = start("node-cb", fn, code);
  ASSERT_TRUE(ready.isOk()) << ready.status().toString();
  auto r = invoke("node-cb", "{}");
  ASSERT_TRUE(r.status.isOk());
  EXPECT_EQ(r.functionError, FunctionErrorKind::kHandled) << r.body;
  EXPECT_EQ(str(parseObject(r.body), "errorMessage"), "told to fail");
}

TEST_F(WorkerTest, InitErrorMissingHandler) {
  FunctionSpec fn = makeFn("python3", "index.nope");
  auto code = writeCode({{"index.py", "def handler(e, c):\n    return 1\n"}});
  auto r = start("py-noh", fn, code);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().toString();
  auto body = parseObject(r.status().message());
  EXPECT_FALSE(str(body, "errorType").empty()) << r.status().message();
  EXPECT_NE(str(body, "errorMessage").find("nope"), std::string::npos) << r.status().message();
  EXPECT_EQ(worker_->instanceCount(), 0u);
  expectInstanceGone("py-noh", {});
  // A call on it is refused as a platform error.
  auto c = invoke("py-noh", "{}");
  EXPECT_EQ(c.status.code(), Code::kUnavailable);
}

TEST_F(WorkerTest, InitCrashIsExitError) {
  FunctionSpec fn = makeFn("python3");
  auto code = writeCode({{"index.py", "import os\nos._exit(5)\n"}});
  auto r = start("py-initcrash", fn, code);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().toString();
  auto body = parseObject(r.status().message());
  EXPECT_EQ(str(body, "errorType"), "Runtime.ExitError") << r.status().message();
  EXPECT_NE(str(body, "errorMessage").find("code 5"), std::string::npos) << r.status().message();
  expectInstanceGone("py-initcrash", {});
}

TEST_F(WorkerTest, SandboxCreationFailureIsPlatformError) {
  FunctionSpec fn = makeFn("python3");
  auto r = start("py-nocode", fn, tmp_ / "no-such-code-dir");
  ASSERT_FALSE(r.isOk());
  EXPECT_NE(r.status().code(), Code::kFailedPrecondition) << r.status().toString();
  EXPECT_EQ(worker_->instanceCount(), 0u);
  expectInstanceGone("py-nocode", {});
}

TEST_F(WorkerTest, TimeoutRecyclesInstance) {
  FunctionSpec fn = makeFn("python3");
  fn.timeoutSec = 1;
  fn.instanceConcurrency = 2;
  auto code = writeCode({{"index.py", "import time\ndef handler(e, c):\n    time.sleep(30)\n"}});
  ASSERT_TRUE(start("py-slow", fn, code).isOk());
  const auto pids = pidsOf("py-slow");
  EXPECT_FALSE(pids.empty());
  auto first = invokeAsync("py-slow", "{}");
  auto second = invokeAsync("py-slow", "{}");
  auto r1 = first.get();
  auto r2 = second.get();
  // Whichever call's timer fired first is the timeout; the other was recycled with it.
  InvokeResult* timedOut = &r1;
  InvokeResult* recycled = &r2;
  if (str(parseObject(r1.body), "errorType") != "FunctionTimeout") std::swap(timedOut, recycled);
  ASSERT_TRUE(timedOut->status.isOk());
  EXPECT_EQ(timedOut->functionError, FunctionErrorKind::kUnhandled);
  auto body = parseObject(timedOut->body);
  EXPECT_EQ(str(body, "errorType"), "FunctionTimeout");
  EXPECT_EQ(str(body, "errorMessage"), "Function timed out after 1 seconds");
  EXPECT_TRUE(timedOut->instanceLost);
  EXPECT_GE(timedOut->durationUs, 1'000'000);
  ASSERT_TRUE(recycled->status.isOk());
  EXPECT_EQ(recycled->functionError, FunctionErrorKind::kUnhandled);
  EXPECT_EQ(str(parseObject(recycled->body), "errorType"), "RuntimeExited");
  EXPECT_TRUE(recycled->instanceLost);

  ASSERT_TRUE(waitFor([&] { return lost().size() == 1; }));
  EXPECT_EQ(lost()[0].first, "py-slow");
  EXPECT_EQ(lost()[0].second.code(), Code::kDeadlineExceeded);
  EXPECT_EQ(worker_->instanceCount(), 0u);
  expectInstanceGone("py-slow", pids);
  EXPECT_EQ(lost().size(), 1u);  // once
}

TEST_F(WorkerTest, MemoryBombIsOutOfMemory) {
  FunctionSpec fn = makeFn("python3");
  fn.memoryMb = 128;
  auto code = writeCode({{"index.py", R"(
def handler(event, context):
    chunks = []
    for _ in range(32):
        chunks.append(b"x" * (16 << 20))   # 512 MB, every page touched
    return len(chunks)
)"}});
  ASSERT_TRUE(start("py-oom", fn, code).isOk());
  const auto pids = pidsOf("py-oom");
  auto r = invoke("py-oom", "{}");
  ASSERT_TRUE(r.status.isOk()) << r.status.toString();
  EXPECT_EQ(r.functionError, FunctionErrorKind::kUnhandled);
  auto body = parseObject(r.body);
  EXPECT_EQ(str(body, "errorType"), "OutOfMemory") << r.body;
  EXPECT_EQ(str(body, "errorMessage"),
            "Function exceeded its memory limit of 128 MB and was killed");
  EXPECT_TRUE(r.instanceLost);
  ASSERT_TRUE(waitFor([&] { return lost().size() == 1; }));
  EXPECT_EQ(lost()[0].second.code(), Code::kOutOfMemory);
  expectInstanceGone("py-oom", pids);
}

TEST_F(WorkerTest, CrashIsRuntimeExited) {
  FunctionSpec fn = makeFn("python3");
  auto code = writeCode({{"index.py", "import os\ndef handler(e, c):\n    os._exit(3)\n"}});
  ASSERT_TRUE(start("py-crash", fn, code).isOk());
  const auto pids = pidsOf("py-crash");
  auto r = invoke("py-crash", "{}");
  ASSERT_TRUE(r.status.isOk()) << r.status.toString();
  EXPECT_EQ(r.functionError, FunctionErrorKind::kUnhandled);
  auto body = parseObject(r.body);
  EXPECT_EQ(str(body, "errorType"), "RuntimeExited") << r.body;
  EXPECT_NE(str(body, "errorMessage").find("code 3"), std::string::npos) << r.body;
  EXPECT_TRUE(r.instanceLost);
  ASSERT_TRUE(waitFor([&] { return lost().size() == 1; }));
  EXPECT_EQ(lost()[0].second.code(), Code::kUnavailable);
  EXPECT_EQ(worker_->instanceCount(), 0u);
  expectInstanceGone("py-crash", pids);
}

TEST_F(WorkerTest, TwoConcurrentCallsOnOneInstance) {
  FunctionSpec fn = makeFn("python3");
  fn.instanceConcurrency = 2;
  // The "wait" call only finishes if the "set" call runs while it is still running.
  auto code = writeCode({{"index.py", R"(
import os, time
FLAG = "/tmp/flag"
def handler(event, context):
    if event.get("wait"):
        deadline = time.time() + 8
        while time.time() < deadline:
            if os.path.exists(FLAG):
                return "saw-flag"
            time.sleep(0.005)
        return "no-flag"
    open(FLAG, "w").close()
    return "set"
)"}});
  ASSERT_TRUE(start("py-conc", fn, code).isOk());
  auto waiting = invokeAsync("py-conc", R"({"wait": true})");
  auto setting = invokeAsync("py-conc", R"({})");
  auto rs = setting.get();
  auto rw = waiting.get();
  ASSERT_TRUE(rs.status.isOk());
  ASSERT_TRUE(rw.status.isOk());
  EXPECT_EQ(rs.body, "\"set\"");
  EXPECT_EQ(rw.body, "\"saw-flag\"");
}

TEST_F(WorkerTest, LogTailAndLogFile) {
  FunctionSpec fn = makeFn("python3");
  auto code = writeCode({{"index.py", R"(
import sys
def handler(event, context):
    print("line-for-" + event["tag"])
    sys.stderr.write("err-for-" + event["tag"] + "\n")
    return "ok"
)"}});
  ASSERT_TRUE(start("py-logs", fn, code).isOk());
  auto r1 = invoke("py-logs", R"({"tag":"one"})", true);
  ASSERT_TRUE(r1.status.isOk());
  EXPECT_NE(r1.logTail.find("line-for-one"), std::string::npos) << r1.logTail;
  EXPECT_NE(r1.logTail.find("err-for-one"), std::string::npos) << r1.logTail;
  auto r2 = invoke("py-logs", R"({"tag":"two"})", true);
  EXPECT_NE(r2.logTail.find("line-for-two"), std::string::npos) << r2.logTail;
  EXPECT_EQ(r2.logTail.find("line-for-one"), std::string::npos) << "tail leaks an earlier call";
  auto r3 = invoke("py-logs", R"({"tag":"three"})", false);
  EXPECT_TRUE(r3.logTail.empty());
  const fs::path logFile = tmp_ / "logs" / fn.tenant / (fn.name + ".log");
  EXPECT_TRUE(waitFor([&] {
    auto text = readFile(logFile);
    return text.isOk() && text->find("line-for-three") != std::string::npos &&
           text->find("err-for-one") != std::string::npos;
  })) << logFile;
}

TEST_F(WorkerTest, StopInstanceAbortsCallsAndLeavesNothing) {
  FunctionSpec fn = makeFn("python3");
  auto code = writeCode({{"index.py", "import time\ndef handler(e, c):\n    time.sleep(30)\n"}});
  ASSERT_TRUE(start("py-stop", fn, code).isOk());
  const auto pids = pidsOf("py-stop");
  ASSERT_FALSE(pids.empty());
  for (pid_t pid : pids) EXPECT_FALSE(processGone(pid));
  auto call = invokeAsync("py-stop", "{}");
  worker_->stopInstance("py-stop");
  ASSERT_EQ(call.wait_for(10s), std::future_status::ready);
  auto r = call.get();
  EXPECT_EQ(r.status.code(), Code::kAborted);
  EXPECT_TRUE(waitFor([&] { return worker_->instanceCount() == 0; }));
  expectInstanceGone("py-stop", pids);
  EXPECT_TRUE(lost().empty()) << "stopInstance is not a loss";
}

TEST_F(WorkerTest, StopWhileStartingAbortsTheStart) {
  FunctionSpec fn = makeFn("python3");
  auto code = writeCode({{"index.py", kPyHello}});
  for (int i = 0; i < 5; ++i) {
    const std::string id = "early-stop-" + std::to_string(i);
    std::promise<Result<InstanceReady>> p;
    worker_->startInstance(id, fn, code,
                           [&p](Result<InstanceReady> r) { p.set_value(std::move(r)); });
    // Stop at different points of the start: before/while the sandbox is created, before ready.
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5 * i));
    worker_->stopInstance(id);
    auto f = p.get_future();
    ASSERT_EQ(f.wait_for(30s), std::future_status::ready);
    auto r = f.get();
    if (r.isOk()) {
      // It was ready before the stop arrived; the stop still removes it.
      SUCCEED() << "ready before the stop";
    } else {
      EXPECT_EQ(r.status().code(), Code::kAborted) << r.status().toString();
    }
    EXPECT_TRUE(waitFor([&] { return worker_->instanceCount() == 0; }));
    expectInstanceGone(id, {});
  }
  EXPECT_TRUE(lost().empty());
}

TEST_F(WorkerTest, LogTailOfAChattyInstance) {
  FunctionSpec fn = makeFn("python3");
  // 200 KB of output per call: more than the 64 KB ring; the tail is the last 4 KB of the call.
  auto code = writeCode({{"index.py", R"(
import sys
def handler(event, context):
    for i in range(2000):
        sys.stdout.write("%s-%04d ".ljust(100, ".") % (event["tag"], i) + "\n")
    sys.stdout.flush()
    return "ok"
)"}});
  ASSERT_TRUE(start("py-chatty", fn, code).isOk());
  for (const std::string tag : {"first", "second"}) {
    auto r = invoke("py-chatty", R"({"tag":")" + tag + R"("})", true);
    ASSERT_TRUE(r.status.isOk()) << r.status.toString();
    EXPECT_EQ(r.logTail.size(), 4096u);
    EXPECT_NE(r.logTail.find(tag + "-1999"), std::string::npos) << r.logTail.substr(0, 200);
    EXPECT_EQ(r.logTail.find(tag + "-1900"), std::string::npos);
  }
}

TEST_F(WorkerTest, LargePayloadsAndManyCallsInFlight) {
  FunctionSpec fn = makeFn("python3");
  fn.instanceConcurrency = 8;
  auto code = writeCode({{"index.py", R"(
def handler(event, context):
    return {"n": event["n"], "len": len(event["data"]), "data": event["data"]}
)"}});
  ASSERT_TRUE(start("py-big", fn, code).isOk());
  // 4 MB each way: far beyond the socket buffer, so writes go through EPOLLOUT.
  const std::string big(4 << 20, 'z');
  auto r = invoke("py-big", R"({"n": 0, "data": ")" + big + R"("})");
  ASSERT_TRUE(r.status.isOk()) << r.status.toString();
  auto body = parseObject(r.body);
  ASSERT_EQ(r.functionError, FunctionErrorKind::kNone) << r.body.substr(0, 500);
  EXPECT_EQ(body["len"].to_number<int64_t>(), 4 << 20);
  EXPECT_EQ(str(body, "data"), big);
  // Many calls multiplexed on one connection, each answered with its own result; at most
  // instanceConcurrency in flight, as the scheduler would send them.
  for (int round = 0; round < 25; ++round) {
    std::vector<std::future<InvokeResult>> calls;
    for (int k = 0; k < 8; ++k) {
      const int i = round * 8 + k;
      calls.push_back(invokeAsync("py-big", R"({"n": )" + std::to_string(i) + R"(, "data": ")" +
                                                std::string(i * 100, 'a') + R"("})"));
    }
    for (int k = 0; k < 8; ++k) {
      const int i = round * 8 + k;
      ASSERT_EQ(calls[k].wait_for(60s), std::future_status::ready);
      auto ri = calls[k].get();
      ASSERT_TRUE(ri.status.isOk()) << ri.status.toString();
      ASSERT_EQ(ri.functionError, FunctionErrorKind::kNone) << ri.body.substr(0, 500);
      auto bi = parseObject(ri.body);
      EXPECT_EQ(bi["n"].to_number<int64_t>(), i);
      EXPECT_EQ(bi["len"].to_number<int64_t>(), i * 100);
    }
  }
}

TEST_F(WorkerTest, CallsBeyondInstanceConcurrencyAreRefused) {
  FunctionSpec fn = makeFn("python3");
  fn.instanceConcurrency = 2;
  auto code = writeCode(
      {{"index.py", "import time\ndef handler(e, c):\n    time.sleep(2)\n    return 1\n"}});
  ASSERT_TRUE(start("py-limit", fn, code).isOk());
  auto a = invokeAsync("py-limit", "{}");
  auto b = invokeAsync("py-limit", "{}");
  auto c = invoke("py-limit", "{}");  // both slots are busy for 2 s
  EXPECT_EQ(c.status.code(), Code::kResourceExhausted) << c.status.toString();
  EXPECT_FALSE(c.instanceLost);
  EXPECT_TRUE(a.get().status.isOk());
  EXPECT_TRUE(b.get().status.isOk());
  auto d = invoke("py-limit", "{}");  // slots free again
  EXPECT_TRUE(d.status.isOk());
  EXPECT_EQ(d.functionError, FunctionErrorKind::kNone);
}

size_t openFdCount() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST_F(WorkerTest, NoFdLeakAcrossInstanceLifecycles) {
  FunctionSpec py = makeFn("python3");
  FunctionSpec custom = makeFn("custom", "");
  auto pyCode = writeCode({{"index.py", kPyHello}});
  auto customCode = writeCode({{"bootstrap", kCustomServer}}, 0755);
  auto cycle = [&](const std::string& id, const FunctionSpec& fn, const fs::path& code) {
    ASSERT_TRUE(start(id, fn, code).isOk());
    auto r = invoke(id, R"({"name":"x"})", true);
    ASSERT_TRUE(r.status.isOk());
    worker_->stopInstance(id);
    ASSERT_TRUE(waitFor([&] { return worker_->instanceCount() == 0; }));
    expectInstanceGone(id, {});
  };
  cycle("fd-warmup", py, pyCode);  // first use may allocate lasting things (log dir, spdlog)
  const size_t before = openFdCount();
  for (int i = 0; i < 3; ++i) {
    cycle("fd-py-" + std::to_string(i), py, pyCode);
    cycle("fd-custom-" + std::to_string(i), custom, customCode);
  }
  EXPECT_TRUE(waitFor([&] { return openFdCount() <= before; }))
      << "fds before " << before << ", after " << openFdCount();
}

TEST_F(WorkerTest, ShutdownLeavesNothingBehind) {
  FunctionSpec py = makeFn("python3");
  FunctionSpec node = makeFn("nodejs");
  auto pyCode = writeCode({{"index.py", kPyHello}});
  auto nodeCode = writeCode({{"index.js", "exports.handler = async () => 1;\n"}});
  ASSERT_TRUE(start("sd-py", py, pyCode).isOk());
  ASSERT_TRUE(start("sd-node", node, nodeCode).isOk());
  auto pids = pidsOf("sd-py");
  auto nodePids = pidsOf("sd-node");
  pids.insert(pids.end(), nodePids.begin(), nodePids.end());
  ASSERT_GE(pids.size(), 2u);
  // A start still in progress at shutdown is aborted, not leaked.
  std::promise<Result<InstanceReady>> pending;
  worker_->startInstance("sd-late", py, pyCode,
                         [&](Result<InstanceReady> r) { pending.set_value(std::move(r)); });
  worker_->shutdown();
  // Synchronous: everything is gone when shutdown() returns.
  for (pid_t pid : pids) EXPECT_TRUE(processGone(pid)) << pid;
  EXPECT_TRUE(fs::is_empty(tmp_ / "state"));
  auto late = pending.get_future();
  ASSERT_EQ(late.wait_for(0s), std::future_status::ready);
  auto lr = late.get();
  // Either it became ready just before shutdown (and was then stopped), or it was aborted.
  if (!lr.isOk()) {
    EXPECT_EQ(lr.status().code(), Code::kAborted) << lr.status().toString();
  }
  EXPECT_EQ(worker_->instanceCount(), 0u);
  // After shutdown calls fail fast.
  auto r = invoke("sd-py", "{}");
  EXPECT_EQ(r.status.code(), Code::kAborted);
  worker_->shutdown();  // idempotent
}

TEST_F(WorkerTest, UnknownInstanceAndDuplicateId) {
  auto r = invoke("nope", "{}");
  EXPECT_EQ(r.status.code(), Code::kUnavailable);
  auto bad = start("Bad_ID", makeFn("python3"), tmp_);
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  FunctionSpec fn = makeFn("python3");
  auto code = writeCode({{"index.py", kPyHello}});
  ASSERT_TRUE(start("dup", fn, code).isOk());
  auto again = start("dup", fn, code);
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);
  EXPECT_EQ(worker_->instanceCount(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Warm pool and delayed code mount.

WarmPoolOptions poolOn() {
  WarmPoolOptions p;
  p.enabled = true;
  p.prewarm = {{"t1", "python3", 128}, {"t1", "nodejs", 128}};  // makeFn's tenant
  return p;
}

// Host pids of every blank pooled sandbox ("w-..." cgroups).
std::vector<std::pair<std::string, pid_t>> blankPids(const std::string& cgroupParent) {
  std::vector<std::pair<std::string, pid_t>> out;
  std::error_code ec;
  for (const auto& e :
       fs::directory_iterator(fs::path("/sys/fs/cgroup/memory") / cgroupParent, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with("w-")) continue;
    auto text = readFile(e.path() / "cgroup.procs");
    if (!text.isOk()) continue;
    std::istringstream in(*text);
    pid_t pid;
    while (in >> pid) out.emplace_back(name, pid);
  }
  return out;
}

constexpr const char* kPyPoolProbe = R"(
import os
STATE = {"calls": 0}
def handler(event, context):
    STATE["calls"] += 1
    leak = os.path.exists("/tmp/leak")
    open("/tmp/leak", "w").close()
    return {"data": open("data.txt").read(), "cwd": os.getcwd(), "env": os.environ.get("MY_VAR"),
            "fc": os.environ.get("FC_FUNCTION_NAME"), "other": os.environ.get("OTHER_VAR"),
            "calls": STATE["calls"], "leak": leak, "code": sorted(os.listdir("/code")),
            "name": context.function_name, "mem": context.memory_limit_in_mb}
)";

constexpr const char* kJsPoolProbe = R"(
const fs = require('fs');
let calls = 0;
exports.handler = async (event, context) => {
  calls += 1;
  const leak = fs.existsSync('/tmp/leak');
  fs.writeFileSync('/tmp/leak', '');
  return { data: fs.readFileSync('data.txt', 'utf8'), cwd: process.cwd(), env: process.env.MY_VAR,
           fc: process.env.FC_FUNCTION_NAME, calls, leak, code: fs.readdirSync('/code').sort(),
           name: context.functionName };
};
)";

TEST_F(WorkerTest, PoolHitAttachesCodeAndLoadsTheFunction) {
  makeWorker(WorkerOptions().startBudget, poolOn());
  ASSERT_TRUE(waitFor([&] { return worker_->poolStats().warm == 2; }, 30s))
      << "python3 and nodejs blanks did not warm up";
  for (const std::string rt : {"python3", "nodejs"}) {
    FunctionSpec fn = makeFn(rt);
    fn.environmentVariables["MY_VAR"] = "v-" + rt;
    auto code = writeCode(
        {{rt == "python3" ? "index.py" : "index.js", rt == "python3" ? kPyPoolProbe : kJsPoolProbe},
         {"data.txt", "code-of-" + rt}});
    const auto t0 = std::chrono::steady_clock::now();
    auto ready = start("pool-" + rt, fn, code);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(ready.isOk()) << ready.status().toString();
    EXPECT_TRUE(ready->fromPool);
    std::printf("%s pool hit, startInstance -> ready: %.2f ms\n", rt.c_str(), ms);
    auto r = invoke("pool-" + rt, "{}");
    ASSERT_TRUE(r.status.isOk()) << r.status.toString();
    ASSERT_EQ(r.functionError, FunctionErrorKind::kNone) << r.body;
    auto body = parseObject(r.body);
    EXPECT_EQ(str(body, "data"), "code-of-" + rt);
    EXPECT_EQ(str(body, "cwd"), "/code");
    EXPECT_EQ(str(body, "env"), "v-" + rt);
    EXPECT_EQ(str(body, "fc"), fn.name) << "reserved variables describe the function, not a blank";
    EXPECT_EQ(str(body, "name"), fn.name);
    EXPECT_EQ(body["leak"], json::value(false));
  }
  auto stats = worker_->poolStats();
  EXPECT_EQ(stats.hits, 2);
  EXPECT_EQ(stats.misses, 0);
  EXPECT_EQ(worker_->instanceCount(), 2u) << "blanks are not instances";
  // Refilled in the background.
  EXPECT_TRUE(waitFor([&] { return worker_->poolStats().warm == 2; }, 30s));
}

TEST_F(WorkerTest, PooledInstancesShareNoState) {
  WarmPoolOptions pool = poolOn();
  pool.prewarm = {{"t1", "python3", 128}};
  pool.minPerKey = 2;
  makeWorker(WorkerOptions().startBudget, pool);
  auto code = writeCode({{"index.py", kPyPoolProbe}, {"data.txt", "a"}});
  auto other = writeCode({{"index.py", kPyPoolProbe}, {"data.txt", "b"}, {"secret.txt", "s"}});
  FunctionSpec a = makeFn("python3");
  a.environmentVariables["MY_VAR"] = "a";
  FunctionSpec b = makeFn("python3");
  b.environmentVariables["OTHER_VAR"] = "b-only";
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(waitFor([&] { return worker_->poolStats().warm == 2; }, 30s));
    const std::string ia = "ia-" + std::to_string(round), ib = "ib-" + std::to_string(round);
    ASSERT_TRUE(start(ib, b, other).isOk());
    ASSERT_TRUE(start(ia, a, code).isOk());
    auto rb = parseObject(invoke(ib, "{}").body);
    auto ra = parseObject(invoke(ia, "{}").body);
    // Each instance: its own code only, its own env only, a fresh /tmp, fresh module state.
    EXPECT_EQ(str(ra, "data"), "a");
    EXPECT_EQ(ra["code"], parseJson(R"(["data.txt","index.py"])").value());
    EXPECT_EQ(ra["other"], json::value(nullptr)) << "env of another pooled instance leaked";
    EXPECT_EQ(str(rb, "other"), "b-only");
    EXPECT_EQ(rb["env"], json::value(nullptr));
    EXPECT_EQ(ra["leak"], json::value(false));
    EXPECT_EQ(rb["leak"], json::value(false));
    EXPECT_EQ(ra["calls"], json::value(1));
    worker_->stopInstance(ia);
    worker_->stopInstance(ib);
    ASSERT_TRUE(waitFor([&] { return worker_->instanceCount() == 0; }));
  }
  EXPECT_EQ(worker_->poolStats().hits, 4);
}

TEST_F(WorkerTest, FunctionsThatNeedStartupConfigBypassThePool) {
  makeWorker(WorkerOptions().startBudget, poolOn());
  ASSERT_TRUE(waitFor([&] { return worker_->poolStats().warm == 2; }, 30s));
  FunctionSpec fn = makeFn("python3");
  fn.environmentVariables["PYTHONHASHSEED"] = "7";
  auto code = writeCode({{"index.py",
                          "import os\ndef handler(e, c):\n"
                          "    return os.environ['PYTHONHASHSEED']\n"}});
  auto ready = start("bypass", fn, code);
  ASSERT_TRUE(ready.isOk()) << ready.status().toString();
  EXPECT_FALSE(ready->fromPool);
  EXPECT_EQ(invoke("bypass", "{}").body, "\"7\"");
  FunctionSpec wide = makeFn("python3");
  wide.instanceConcurrency = 100;  // needs more pids than a pooled sandbox has
  ASSERT_TRUE(start("wide", wide, code).isOk());
  auto stats = worker_->poolStats();
  EXPECT_EQ(stats.bypassed, 2);
  EXPECT_EQ(stats.hits, 0);
}

TEST_F(WorkerTest, PoolSizeFollowsDemandWithinTheBudget) {
  WarmPoolOptions pool = poolOn();
  pool.prewarm.clear();
  pool.demandWindow = 2s;
  makeWorker(WorkerOptions().startBudget, pool);
  FunctionSpec fn = makeFn("python3");
  fn.memoryMb = 192;  // a key nothing prewarms
  auto code = writeCode({{"index.py", "def handler(e, c):\n    return 1\n"}});
  // Three concurrent cold starts: all miss (the pool learns the key from them).
  std::vector<std::future<Result<InstanceReady>>> starts;
  for (int i = 0; i < 3; ++i) {
    starts.push_back(std::async(std::launch::async,
                                [&, i] { return start("d-" + std::to_string(i), fn, code); }));
  }
  for (auto& f : starts) {
    auto ready = f.get();
    ASSERT_TRUE(ready.isOk());
  }
  EXPECT_EQ(worker_->poolStats().misses + worker_->poolStats().hits, 3);
  EXPECT_GE(worker_->poolStats().misses, 1);
  // Three cold starts in the window: three blanks of that key.
  ASSERT_TRUE(waitFor([&] { return worker_->poolStats().warm == 3; }, 30s));
  auto ready = start("d-hit", fn, code);
  ASSERT_TRUE(ready.isOk());
  EXPECT_TRUE(ready->fromPool);
  // No demand for a window: the pool shrinks to nothing.
  EXPECT_TRUE(waitFor([&] { return worker_->poolStats().warm == 0; }, 15s));
  // (An instance taken from the pool keeps its sandbox, named like a blank: stop them first.)
  for (const char* id : {"d-0", "d-1", "d-2", "d-hit"}) worker_->stopInstance(id);
  EXPECT_TRUE(waitFor([&] { return blankPids(cgroupParent_).empty(); }));

  // A budget below one blank: nothing is pooled at all.
  pool.prewarm = {{"t1", "python3", 128}};
  pool.memoryBudgetBytes = 1 << 20;
  makeWorker(WorkerOptions().startBudget, pool);
  auto miss = start("b-0", makeFn("python3"), code);
  ASSERT_TRUE(miss.isOk());
  EXPECT_FALSE(miss->fromPool);
  EXPECT_EQ(worker_->poolStats().warm + worker_->poolStats().creating, 0u);
}

TEST_F(WorkerTest, ADeadBlankIsReplaced) {
  WarmPoolOptions pool = poolOn();
  pool.prewarm = {{"t1", "python3", 128}};
  makeWorker(WorkerOptions().startBudget, pool);
  ASSERT_TRUE(waitFor([&] { return worker_->poolStats().warm == 1; }, 30s));
  auto before = blankPids(cgroupParent_);
  ASSERT_FALSE(before.empty());
  for (auto& [name, pid] : before) ::kill(pid, SIGKILL);
  ASSERT_TRUE(waitFor(
      [&] {
        auto now = blankPids(cgroupParent_);
        return worker_->poolStats().warm == 1 && !now.empty() && now[0].first != before[0].first;
      },
      30s));
  auto code = writeCode({{"index.py", "def handler(e, c):\n    return 2\n"}});
  auto ready = start("after-death", makeFn("python3"), code);
  ASSERT_TRUE(ready.isOk()) << ready.status().toString();
  EXPECT_TRUE(ready->fromPool);
  EXPECT_EQ(invoke("after-death", "{}").body, "2");
  EXPECT_TRUE(lost().empty()) << "a dead blank is not a lost instance";
}

// A legal instanceConcurrency must not hit the sandbox's pids limit (python runs a thread per
// call in flight).
TEST_F(WorkerTest, HighConcurrencyFitsInThePidsLimit) {
  FunctionSpec fn = makeFn("python3");
  fn.instanceConcurrency = 160;
  auto code = writeCode({{"index.py", R"(
import time
def handler(event, context):
    time.sleep(0.3)
    return 1
)"}});
  ASSERT_TRUE(start("wide", fn, code).isOk());
  std::vector<std::future<InvokeResult>> calls;
  for (int i = 0; i < 160; ++i) calls.push_back(invokeAsync("wide", "{}"));
  int ok = 0;
  for (auto& f : calls) {
    auto r = f.get();
    if (r.status.isOk() && r.functionError == FunctionErrorKind::kNone) ++ok;
  }
  EXPECT_EQ(ok, 160);
  EXPECT_TRUE(lost().empty());
}

// ---------------------------------------------------------------------------------------------
// Templates: python3 runtimes forked from the zygote.

// The fields of /proc/<pid>/status that say how confined a process is.
std::map<std::string, std::string> confinement(pid_t pid) {
  std::map<std::string, std::string> out;
  auto text = readFile("/proc/" + std::to_string(pid) + "/status");
  if (!text.isOk()) return out;
  std::istringstream in(*text);
  std::string line;
  for (; std::getline(in, line);) {
    const std::string key = line.substr(0, line.find(':'));
    if (key == "Uid" || key == "Gid" || key == "Groups" || key.starts_with("Cap") ||
        key == "NoNewPrivs" || key == "Seccomp" || key == "Seccomp_filters" || key == "PPid") {
      out[key] = line.substr(line.find(':') + 1);
    }
  }
  for (const char* ns : {"user", "mnt", "pid_for_children", "net", "uts", "ipc", "cgroup"}) {
    std::error_code ec;
    out[std::string("ns/") + ns] =
        fs::read_symlink(fs::path("/proc") / std::to_string(pid) / "ns" / ns, ec).string();
  }
  auto cg = readFile("/proc/" + std::to_string(pid) + "/cgroup");
  out["cgroup"] = cg.isOk() ? *cg : "";
  auto limits = readFile("/proc/" + std::to_string(pid) + "/limits");
  out["limits"] = limits.isOk() ? *limits : "";
  return out;
}

TEST_F(WorkerTest, TemplatedPythonIsConfinedExactlyLikeTheSandboxCommand) {
  makeWorker(WorkerOptions().startBudget, {}, /*templates=*/true);
  FunctionSpec fn = makeFn("python3");
  fn.environmentVariables["MY_VAR"] = "templated";
  auto code = writeCode({{"index.py", kPyPoolProbe}, {"data.txt", "tpl"}});
  // In the sandbox's cgroup: the placeholder command (sleep, started by the sandbox's init like
  // any command) and the runtime forked from the template. Same confinement, field by field.
  auto a = expectTemplatedStartsAreFreshAndConfined("tpl-", fn, code, "python3");
  EXPECT_EQ(a["NoNewPrivs"].find('1') != std::string::npos, true);
  // A crash of a templated runtime is a lost instance.
  FunctionSpec crash = makeFn("python3");
  auto crashCode = writeCode({{"index.py", "import os\ndef handler(e, c):\n    os._exit(3)\n"}});
  ASSERT_TRUE(start("tpl-crash", crash, crashCode).isOk());
  auto r = invoke("tpl-crash", "{}");
  EXPECT_TRUE(r.instanceLost);
  EXPECT_NE(r.body.find("code 3"), std::string::npos) << r.body;
  EXPECT_EQ(r.functionError, FunctionErrorKind::kUnhandled);
  EXPECT_TRUE(waitFor([&] { return lost().size() == 1; }));
}
// nodejs templates: the same checks, plus the exits a forked node must report like an exec'd one
// (node's own exit path would wait for V8 platform threads that exist only in the template).
TEST_F(WorkerTest, TemplatedNodeIsConfinedAndReportsExitsLikeAnExecdOne) {
  makeWorker(WorkerOptions().startBudget, {}, /*templates=*/true);
  FunctionSpec fn = makeFn("nodejs");
  fn.environmentVariables["MY_VAR"] = "templated";
  auto code = writeCode({{"index.js", kJsPoolProbe}, {"data.txt", "tpl"}});
  expectTemplatedStartsAreFreshAndConfined("ntpl-", fn, code, "node");

  // Exits: the same report from a templated and an exec'd instance of the same code.
  struct Case {
    std::string name, code, expect;
  };
  const std::vector<Case> cases = {
      {"exit3", "exports.handler = async () => { process.exit(3); };\n", "code 3"},
      {"timer-throw",
       "exports.handler = (e, c, cb) => { setTimeout(() => { throw new Error('boom'); }, 1); };\n",
       "code 1"},
  };
  for (bool templated : {true, false}) {
    makeWorker(WorkerOptions().startBudget, {}, templated);
    for (const Case& c : cases) {
      SCOPED_TRACE(c.name + (templated ? " templated" : " exec'd"));
      const size_t lostBefore = lost().size();
      const std::string id = "nx-" + c.name + (templated ? "-t" : "-e");
      ASSERT_TRUE(start(id, makeFn("nodejs"), writeCode({{"index.js", c.code}})).isOk());
      auto r = invoke(id, "{}");
      EXPECT_TRUE(r.instanceLost);
      EXPECT_NE(r.body.find(c.expect), std::string::npos) << r.body;
      EXPECT_EQ(r.functionError, FunctionErrorKind::kUnhandled);
      EXPECT_TRUE(waitFor([&] { return lost().size() == lostBefore + 1; }));
    }
    // A module whose top level throws: the same init error either way.
    FunctionSpec bad = makeFn("nodejs");
    auto st = start(std::string("nx-top") + (templated ? "-t" : "-e"), bad,
                    writeCode({{"index.js", "throw new TypeError('at top level');\n"}}));
    EXPECT_FALSE(st.isOk());
    EXPECT_NE(st.status().message().find("TypeError"), std::string::npos) << st.status().toString();
    EXPECT_NE(st.status().message().find("at top level"), std::string::npos)
        << st.status().toString();
  }
}

// A template that cannot work on this host (here: the nodejs template script exits at once, as
// the real one does on a node build without the symbols it patches) turns templates off for
// that runtime: the first instance and every later one start exec'd and work.
TEST_F(WorkerTest, UnusableTemplateFallsBackToExecdRuntimes) {
  {
    std::ofstream(tmp_ / "assets" / "nodejs" / "zygote.js", std::ios::trunc)
        << "process.stderr.write('no usable node here');\nprocess.exit(1);\n";
  }
  makeWorker(WorkerOptions().startBudget, {}, /*templates=*/true);
  auto code = writeCode({{"index.js", "exports.handler = async () => ({ pid: process.pid });\n"}});
  for (int i = 0; i < 2; ++i) {
    const std::string id = "nofork-" + std::to_string(i);
    auto ready = start(id, makeFn("nodejs"), code);
    ASSERT_TRUE(ready.isOk()) << ready.status().toString();
    auto r = invoke(id, "{}");
    EXPECT_EQ(r.functionError, FunctionErrorKind::kNone) << r.body;
    // Exec'd: node runs as the sandbox's own command, no placeholder holds the sandbox open.
    auto [placeholder, node] = placeholderAndRuntime(id, "node");
    EXPECT_GT(node, 0);
    EXPECT_EQ(placeholder, -1) << "instance " << id << " is templated";
  }
}

// Not a benchmark (that is `stratus bench`), but prints the cold-start figures for the report and
// checks that initDurationUs is consistent with what the caller observes.
TEST_F(WorkerTest, ColdStartTimes) {
  spdlog::set_level(spdlog::level::debug);  // prints the per-phase breakdown
  for (const std::string rt : {"python3", "nodejs"}) {
    FunctionSpec fn = makeFn(rt);
    auto code = writeCode({{rt == "python3" ? "index.py" : "index.js",
                            rt == "python3" ? "def handler(e, c):\n    return 1\n"
                                            : "exports.handler = async () => 1;\n"}});
    std::vector<double> ms;
    for (int i = 0; i < 5; ++i) {
      const std::string id = "cold-" + rt + "-" + std::to_string(i);
      const auto t0 = std::chrono::steady_clock::now();
      auto ready = start(id, fn, code);
      const double wall =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      ASSERT_TRUE(ready.isOk()) << ready.status().toString();
      EXPECT_LE(ready->initDurationUs / 1000.0, wall + 1);
      ms.push_back(wall);
      worker_->stopInstance(id);
      ASSERT_TRUE(waitFor([&] { return worker_->instanceCount() == 0; }));
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%s cold start, startInstance -> ready, 5 runs: p50 %.1f ms, min %.1f, max %.1f\n",
                rt.c_str(), ms[2], ms[0], ms[4]);
  }
  spdlog::set_level(spdlog::level::info);
}

// Prints the warm round trip through the worker (post -> frame -> runtime -> frame -> callback),
// python3 and a custom runtime, for the report; every call must succeed.
TEST_F(WorkerTest, WarmInvokeLatency) {
  struct Case {
    std::string runtime, file, code;
    mode_t mode;
  };
  for (const Case& c : {Case{"python3", "index.py", "def handler(e, c):\n    return 1\n", 0644},
                        Case{"nodejs", "index.js", "exports.handler = async () => 1;\n", 0644},
                        Case{"custom", "bootstrap", kCustomServer, 0755}}) {
    FunctionSpec fn = makeFn(c.runtime, c.runtime == "custom" ? "" : "index.handler");
    auto code = writeCode({{c.file, c.code}}, c.mode);
    const std::string id = "warm-" + c.runtime;
    ASSERT_TRUE(start(id, fn, code).isOk());
    std::vector<double> us;
    for (int i = 0; i < 300; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = invoke(id, "{}");
      us.push_back(
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      ASSERT_TRUE(r.status.isOk()) << r.status.toString();
      ASSERT_EQ(r.functionError, FunctionErrorKind::kNone) << r.body;
    }
    std::sort(us.begin(), us.end());
    std::printf("%s warm invoke through the worker, 300 sequential: p50 %.0f us, p99 %.0f us\n",
                c.runtime.c_str(), us[150], us[297]);
  }
}

}  // namespace
}  // namespace stratus
