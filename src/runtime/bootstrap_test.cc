// Runs the real python3 and nodejs bootstraps (as installed by installAssets) as plain child
// processes, with the argv and environment of commandFor()/environmentFor() re-pointed at temp
// directories, and talks the frame protocol to them over a Unix socket: no sandbox needed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>

#include "common/fs.h"
#include "common/unique_fd.h"
#include "runtime/protocol.h"
#include "runtime/runtime.h"

namespace stratus::runtime {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Generous: two cores are shared by every engineer's build and tests.
constexpr milliseconds kStartDeadline{20000};
constexpr milliseconds kCallDeadline{10000};

int64_t nowUnixMs() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/stratus-rt-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() { (void)removeTree(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void writeText(const std::filesystem::path& p, const std::string& text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::filesystem::path& assetsDir() {
  static std::filesystem::path dir;
  return dir;
}

// One bootstrap child process and the worker's end of its socket.
class Child {
 public:
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // Spawns the runtime and waits for its hello.
  ::testing::AssertionResult start(const FunctionSpec& fn) {
    const std::string sockPath = (dir_.path() / "rt.sock").string();
    listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sockPath.c_str());
    if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_.get(), 1) != 0) {
      return ::testing::AssertionFailure() << "listen on " << sockPath;
    }
    // The sandbox paths of commandFor/environmentFor, re-pointed at this test's directories.
    std::vector<std::string> argv = commandFor(fn);
    for (auto& a : argv) {
      if (a.rfind(kAssetsMountPoint, 0) == 0) {
        a = assets_.string() + a.substr(kAssetsMountPoint.size());
      }
    }
    std::vector<std::string> env = environmentFor(fn);
    for (auto& e : env) {
      if (e.rfind("STRATUS_RUNTIME_SOCKET=", 0) == 0) e = "STRATUS_RUNTIME_SOCKET=" + sockPath;
    }
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      return ::testing::AssertionFailure() << "pipe";
    }
    std::vector<char*> cargv, cenv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    for (auto& e : env) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    started_ = Clock::now();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::execve(cargv[0], cargv.data(), cenv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    stdout_.reset(out[0]);
    stderr_.reset(err[0]);
    ::fcntl(stdout_.get(), F_SETFL, O_NONBLOCK);
    ::fcntl(stderr_.get(), F_SETFL, O_NONBLOCK);

    auto deadline = Clock::now() + kStartDeadline;
    while (!conn_) {
      pollfd p{listen_.get(), POLLIN, 0};
      if (!pollOnce(&p, deadline)) return ::testing::AssertionFailure() << "no connect; " << logs();
      if (p.revents & POLLIN) conn_.reset(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    }
    Frame hello;
    auto r = read(hello, kStartDeadline);
    if (!r) return r;
    helloAt_ = Clock::now();
    if (hello.type != FrameType::kHello) return ::testing::AssertionFailure() << "not a hello";
    if (hello.meta.at("pid").as_int64() != pid_) {
      return ::testing::AssertionFailure() << "hello names pid " << hello.meta.at("pid");
    }
    return ::testing::AssertionSuccess();
  }

  // Sends kLoad; returns kReady or kInitError in `out`.
  ::testing::AssertionResult load(json::object meta, Frame& out) {
    send(encodeFrame(FrameType::kLoad, meta));
    auto r = read(out, kStartDeadline);
    readyAt_ = Clock::now();
    return r;
  }

  void sendInvoke(const std::string& requestId, std::string_view body, int64_t timeoutMs = 5000) {
    send(encodeFrame(FrameType::kInvoke,
                     {{"requestId", requestId}, {"deadlineMs", nowUnixMs() + timeoutMs}}, body));
  }

  ::testing::AssertionResult invoke(const std::string& requestId, std::string_view body,
                                    Frame& out) {
    sendInvoke(requestId, body);
    auto r = read(out, kCallDeadline);
    if (!r) return r;
    if (out.meta.at("requestId").as_string() != requestId) {
      return ::testing::AssertionFailure() << "answer for " << out.meta.at("requestId");
    }
    return ::testing::AssertionSuccess();
  }

  ::testing::AssertionResult read(Frame& out, milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      auto r = decoder_.next(out);
      if (!r.isOk()) return ::testing::AssertionFailure() << r.status().toString();
      if (*r) return ::testing::AssertionSuccess();
      pollfd p{conn_.get(), POLLIN, 0};
      if (!pollOnce(&p, deadline)) {
        return ::testing::AssertionFailure() << "no frame in time; " << logs();
      }
      if (p.revents & (POLLIN | POLLHUP)) {
        char buf[65536];
        ssize_t n = ::read(conn_.get(), buf, sizeof buf);
        if (n <= 0) return ::testing::AssertionFailure() << "runtime closed the socket; " << logs();
        decoder_.feed(std::string_view(buf, static_cast<size_t>(n)));
      }
    }
  }

  void send(const std::string& bytes) {
    ASSERT_EQ(::write(conn_.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  // Drains the child's stdout/stderr pipes without blocking.
  void drain() {
    drainFd(stdout_, out_);
    drainFd(stderr_, err_);
  }
  const std::string& out() {
    drain();
    return out_;
  }
  const std::string& err() {
    drain();
    return err_;
  }
  std::string logs() {
    drain();
    return "stdout: [" + out_ + "] stderr: [" + err_ + "]";
  }

  // Waits for the process to exit; returns its wait status, or -1 on timeout.
  int waitExit(milliseconds timeout) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
    auto deadline = Clock::now() + timeout;
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      pollfd p{pidfd.get(), POLLIN, 0};  // readable once the process has exited
      if (!pollOnce(&p, deadline)) return -1;
    }
  }

  void closeSocket() { conn_.reset(); }
  void setAssetsDir(std::filesystem::path dir) { assets_ = std::move(dir); }
  double msToHello() const {
    return std::chrono::duration<double, std::milli>(helloAt_ - started_).count();
  }
  double msToReady() const {
    return std::chrono::duration<double, std::milli>(readyAt_ - started_).count();
  }

 private:
  // Polls the socket (or listener) plus the log pipes, so a chatty child never blocks on a full
  // pipe. Returns false once the deadline has passed.
  bool pollOnce(pollfd* main, Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd fds[3] = {*main, {stdout_.get(), POLLIN, 0}, {stderr_.get(), POLLIN, 0}};
    int n = ::poll(fds, 3, static_cast<int>(std::min<int64_t>(left, 1000)));
    drain();
    main->revents = n > 0 ? fds[0].revents : 0;
    return true;
  }

  static void drainFd(UniqueFd& fd, std::string& into) {
    if (!fd) return;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n <= 0) break;
      into.append(buf, static_cast<size_t>(n));
    }
  }

  TempDir dir_;
  std::filesystem::path assets_ = assetsDir();
  UniqueFd listen_, conn_, stdout_, stderr_;
  pid_t pid_ = -1;
  FrameDecoder decoder_;
  std::string out_, err_;
  Clock::time_point started_, helloAt_, readyAt_;
};

class BootstrapTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    static TempDir* assets = new TempDir();  // shared by every test; removed at exit is not needed
    assetsDir() = assets->path() / "assets";
    auto st = installAssets(assetsDir());
    ASSERT_TRUE(st.isOk()) << st.toString();
  }

  FunctionSpec spec(const std::string& runtime) {
    FunctionSpec fn;
    fn.name = "fn-" + runtime;
    fn.runtime = runtime;
    fn.handler = "index.handler";
    fn.memoryMb = 256;
    fn.timeoutSec = 5;
    return fn;
  }

  json::object loadMeta(const std::string& handler, json::object extra = {}) {
    json::object m{{"handler", handler},     {"codeDir", code_.path().string()},
                   {"functionName", "myfn"}, {"memoryMb", 256},
                   {"timeoutSec", 5},        {"env", json::object{}}};
    for (auto& kv : extra) m[kv.key()] = kv.value();
    return m;
  }

  // Starts a runtime with the code written so far, loads handler, expects kReady.
  void startReady(Child& c, const std::string& runtime, const std::string& handler,
                  json::object extra = {}) {
    ASSERT_TRUE(c.start(spec(runtime)));
    Frame f;
    ASSERT_TRUE(c.load(loadMeta(handler, std::move(extra)), f));
    ASSERT_EQ(f.type, FrameType::kReady) << json::serialize(f.meta) << " " << c.logs();
    ASSERT_TRUE(f.meta.at("initDurationMs").is_int64());
  }

  // Starts a runtime, loads handler and returns the kInitError meta.
  json::object initError(const std::string& runtime, const std::string& handler) {
    Child c;
    EXPECT_TRUE(c.start(spec(runtime)));
    Frame f;
    EXPECT_TRUE(c.load(loadMeta(handler), f));
    EXPECT_EQ(f.type, FrameType::kInitError) << json::serialize(f.meta);
    return f.meta;
  }

  static json::value parse(const std::string& body) {
    auto v = parseJson(body);
    EXPECT_TRUE(v.isOk()) << body;
    return v.isOk() ? *v : json::value();
  }

  void code(const std::string& name, const std::string& text) {
    writeText(code_.path() / name, text);
  }

  // The rest of this fixture holds the checks both runtimes must pass the same way; the tests
  // write each runtime's handler and call them.

  // `r` is what an EventAndContext handler returned for `requestId`: the AWS context fields and
  // the FC `context.function` block, with FROM_LOAD = env.
  void expectContext(const json::object& r, const std::string& requestId, const std::string& env) {
    EXPECT_EQ(r.at("requestId").as_string(), requestId);
    EXPECT_EQ(r.at("functionName").as_string(), "myfn");
    EXPECT_EQ(r.at("memory").as_string(), "256");  // a string, as in AWS's runtime client
    EXPECT_GT(r.at("remaining").as_int64(), 0);
    EXPECT_LE(r.at("remaining").as_int64(), 5000);
    EXPECT_EQ(r.at("version").as_string(), "$LATEST");
    EXPECT_NE(r.at("arn").as_string().find(":function:myfn"), std::string::npos);
    EXPECT_EQ(r.at("logGroup").as_string(), "/aws/lambda/myfn");
    EXPECT_EQ(r.at("env").as_string(), env);
    EXPECT_EQ(r.at("fc"), parse("[\"" + requestId + "\", \"myfn\", 256, \"index.handler\", 5]"));
    EXPECT_EQ(r.at("cwd").as_string(), std::filesystem::canonical(code_.path()).string());
  }

  // A body that is not JSON arrives as a string event, an empty one as {}.
  void expectNonJsonEvents(Child& c, const std::string& requestIdPrefix) {
    Frame f;
    ASSERT_TRUE(c.invoke(requestIdPrefix + "2", "not json at all", f));
    ASSERT_EQ(f.type, FrameType::kResult);
    EXPECT_EQ(parse(f.body).at("event").as_string(), "not json at all");
    ASSERT_TRUE(c.invoke(requestIdPrefix + "3", "", f));
    ASSERT_EQ(f.type, FrameType::kResult);
    EXPECT_EQ(parse(f.body).at("event"), json::object{});
  }

  // index.handler takes 300 ms; two calls with instanceConcurrency 2 finish in well under 600.
  void expectConcurrentInvokesOverlap(const std::string& runtime) {
    Child c;
    startReady(c, runtime, "index.handler", {{"instanceConcurrency", 2}});
    auto t0 = Clock::now();
    c.sendInvoke("a", "{}");
    c.sendInvoke("b", "{}");
    Frame f1, f2;
    ASSERT_TRUE(c.read(f1, kCallDeadline));
    ASSERT_TRUE(c.read(f2, kCallDeadline));
    EXPECT_LT(Clock::now() - t0, milliseconds(550)) << "the calls ran one after the other";
    std::vector<std::string> ids = {std::string(f1.meta.at("requestId").as_string()),
                                    std::string(f2.meta.at("requestId").as_string())};
    std::sort(ids.begin(), ids.end());
    EXPECT_EQ(ids, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(f1.type, FrameType::kResult);
    EXPECT_EQ(f2.type, FrameType::kResult);
  }

  // index.handler logs "log line for <request id>" to stdout and "to stderr" to stderr.
  void expectLogsBeforeTheResult(const std::string& runtime) {
    Child c;
    startReady(c, runtime, "index.handler");
    Frame f;
    ASSERT_TRUE(c.invoke("req-log", "{}", f));
    ASSERT_EQ(f.type, FrameType::kResult);
    // Already in the pipe when the result arrives: the bootstrap flushes before replying.
    EXPECT_NE(c.out().find("log line for req-log\n"), std::string::npos) << c.logs();
    EXPECT_NE(c.err().find("to stderr\n"), std::string::npos) << c.logs();
  }

  // index.init records the function name, index.handler returns the records, and badInit
  // raises errorType("init failed").
  void expectInitializerRunsOnce(const std::string& runtime, const std::string& badInit,
                                 const std::string& errorType) {
    Child c;
    startReady(c, runtime, "index.handler", {{"initializer", "index.init"}});
    Frame f;
    ASSERT_TRUE(c.invoke("r1", "{}", f));
    ASSERT_TRUE(c.invoke("r2", "{}", f));
    ASSERT_EQ(f.type, FrameType::kResult);
    EXPECT_EQ(parse(f.body), parse(R"(["myfn"])"));

    Child d;
    ASSERT_TRUE(d.start(spec(runtime)));
    ASSERT_TRUE(d.load(loadMeta("index.handler", {{"initializer", badInit}}), f));
    ASSERT_EQ(f.type, FrameType::kInitError);
    EXPECT_EQ(f.meta.at("errorType").as_string(), errorType);
    EXPECT_EQ(f.meta.at("errorMessage").as_string(), "init failed");
  }

  TempDir code_;
};

// ---- python3 ------------------------------------------------------------------------------------

TEST_F(BootstrapTest, PythonReturnsJsonResultWithEventAndContext) {
  code("index.py", R"(
import os
def handler(event, context):
    return {"event": event, "requestId": context.aws_request_id,
            "functionName": context.function_name, "memory": context.memory_limit_in_mb,
            "remaining": context.get_remaining_time_in_millis(),
            "version": context.function_version, "arn": context.invoked_function_arn,
            "logGroup": context.log_group_name, "env": os.environ.get("FROM_LOAD"),
            "fc": [context.request_id, context.function.name, context.function.memory,
                   context.function.handler, context.function.timeout],
            "cwd": os.getcwd()}
)");
  Child c;
  startReady(c, "python3", "index.handler", {{"env", json::object{{"FROM_LOAD", "yes"}}}});
  Frame f;
  ASSERT_TRUE(c.invoke("req-1", R"({"a": [1, 2, "x"], "b": null})", f));
  ASSERT_EQ(f.type, FrameType::kResult) << json::serialize(f.meta);
  json::object r = parse(f.body).as_object();
  EXPECT_EQ(r.at("event"), parse(R"({"a": [1, 2, "x"], "b": null})"));
  expectContext(r, "req-1", "yes");
  expectNonJsonEvents(c, "req-");
}

TEST_F(BootstrapTest, PythonReturnValuesAreJsonEncoded) {
  code("index.py", R"(
def handler(event, context):
    return event["v"]
def none(event, context):
    return None
)");
  Child c;
  startReady(c, "python3", "index.handler");
  Frame f;
  ASSERT_TRUE(c.invoke("r", R"({"v": "h\u00e9llo"})", f));
  ASSERT_EQ(f.type, FrameType::kResult);
  EXPECT_EQ(parse(f.body).as_string(), "h\xc3\xa9llo");
  ASSERT_TRUE(c.invoke("r", R"({"v": [1.5, true, {"k": 3}]})", f));
  EXPECT_EQ(parse(f.body), parse("[1.5, true, {\"k\": 3}]"));
  Child n;
  startReady(n, "python3", "index.none");
  ASSERT_TRUE(n.invoke("r", "{}", f));
  ASSERT_EQ(f.type, FrameType::kResult);
  EXPECT_EQ(f.body, "null");
}

TEST_F(BootstrapTest, PythonExceptionBecomesErrorWithTypeMessageAndStack) {
  code("index.py", R"(
def helper(x):
    raise ValueError("bad input: " + str(x))
def handler(event, context):
    if event.get("fail"):
        helper(event["fail"])
    return "fine"
)");
  Child c;
  startReady(c, "python3", "index.handler");
  Frame f;
  ASSERT_TRUE(c.invoke("req-err", R"({"fail": 42})", f));
  ASSERT_EQ(f.type, FrameType::kError);
  EXPECT_EQ(f.meta.at("errorType").as_string(), "ValueError");
  EXPECT_EQ(f.meta.at("errorMessage").as_string(), "bad input: 42");
  const auto& stack = f.meta.at("stackTrace").as_array();
  ASSERT_EQ(stack.size(), 2u) << json::serialize(stack);  // handler, helper: no bootstrap frames
  EXPECT_NE(stack[0].as_string().find("index.py"), std::string::npos);
  EXPECT_NE(stack[1].as_string().find("in helper"), std::string::npos);
  EXPECT_FALSE(f.meta.at("handled").as_bool());
  // The instance keeps serving.
  ASSERT_TRUE(c.invoke("req-ok", "{}", f));
  ASSERT_EQ(f.type, FrameType::kResult);
  EXPECT_EQ(f.body, "\"fine\"");
}

TEST_F(BootstrapTest, PythonUnserialisableResultIsMarshalError) {
  code("index.py", "def handler(event, context):\n    return {'s': {1, 2}}\n");
  Child c;
  startReady(c, "python3", "index.handler");
  Frame f;
  ASSERT_TRUE(c.invoke("r", "{}", f));
  ASSERT_EQ(f.type, FrameType::kError);
  EXPECT_EQ(f.meta.at("errorType").as_string(), "Runtime.MarshalError");
  EXPECT_NE(f.meta.at("errorMessage").as_string().find("set"), std::string::npos);
}

TEST_F(BootstrapTest, PythonInitErrors) {
  code("index.py", "def handler(event, context):\n    return 1\nnot_callable = 5\n");
  code("broken.py", "def handler(event, context)\n    return 1\n");
  code("needsdep.py", "import not_installed_anywhere\ndef handler(e, c):\n    return 1\n");
  code("raises.py", "raise KeyError('CONFIG')\n");

  auto e = initError("python3", "missing.handler");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.ImportModuleError");
  EXPECT_NE(e.at("errorMessage").as_string().find("missing"), std::string::npos);
  e = initError("python3", "needsdep.handler");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.ImportModuleError");
  EXPECT_NE(e.at("errorMessage").as_string().find("not_installed_anywhere"), std::string::npos);
  e = initError("python3", "index.nothere");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.HandlerNotFound");
  EXPECT_NE(e.at("errorMessage").as_string().find("nothere"), std::string::npos);
  e = initError("python3", "index.not_callable");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.HandlerNotFound");
  e = initError("python3", "broken.handler");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.UserCodeSyntaxError");
  ASSERT_FALSE(e.at("stackTrace").as_array().empty());
  EXPECT_NE(e.at("stackTrace").as_array()[0].as_string().find("broken.py"), std::string::npos);
  e = initError("python3", "raises.handler");  // like Lambda: the exception's own type
  EXPECT_EQ(e.at("errorType").as_string(), "KeyError");
  e = initError("python3", "nodot");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.MalformedHandlerName");
}

TEST_F(BootstrapTest, PythonHandlerInSubdirectory) {
  code("src/app/main.py", "def handler(event, context):\n    return 'deep'\n");
  Child c;
  startReady(c, "python3", "src/app/main.handler");
  Frame f;
  ASSERT_TRUE(c.invoke("r", "{}", f));
  ASSERT_EQ(f.type, FrameType::kResult);
  EXPECT_EQ(f.body, "\"deep\"");
}

TEST_F(BootstrapTest, PythonConcurrentInvokesOverlap) {
  code("index.py",
       "import time\ndef handler(event, context):\n    time.sleep(0.3)\n"
       "    return context.aws_request_id\n");
  expectConcurrentInvokesOverlap("python3");
}

TEST_F(BootstrapTest, PythonRunsCallsOnTheReaderThreadOnlyWithoutConcurrency) {
  code("index.py",
       "import threading\ndef handler(event, context):\n"
       "    return threading.current_thread() is threading.main_thread()\n");
  for (int concurrency : {1, 2}) {
    Child c;
    startReady(c, "python3", "index.handler", {{"instanceConcurrency", concurrency}});
    Frame f;
    ASSERT_TRUE(c.invoke("r", "{}", f));
    ASSERT_EQ(f.type, FrameType::kResult) << json::serialize(f.meta);
    EXPECT_EQ(f.body, concurrency == 1 ? "true" : "false");
  }
}

TEST_F(BootstrapTest, PythonPrintReachesStdoutBeforeTheResult) {
  code("index.py",
       "import sys\ndef handler(event, context):\n"
       "    print('log line for', context.aws_request_id)\n"
       "    sys.stderr.write('to stderr\\n')\n    return 1\n");
  expectLogsBeforeTheResult("python3");
}

TEST_F(BootstrapTest, PythonInitializerRunsOnceWithContext) {
  code("index.py", R"(
calls = []
def init(context):
    calls.append(context.function_name)
def handler(event, context):
    return calls
def bad_init(context):
    raise RuntimeError("init failed")
)");
  expectInitializerRunsOnce("python3", "index.bad_init", "RuntimeError");
}

TEST_F(BootstrapTest, PythonExitsWhenTheWorkerCloses) {
  code("index.py", "def handler(event, context):\n    return 1\n");
  Child c;
  startReady(c, "python3", "index.handler");
  c.closeSocket();
  int status = c.waitExit(kCallDeadline);
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST_F(BootstrapTest, PythonRunsFromBytecodeOrFromSource) {
  code("index.py", "def handler(event, context):\n    raise OSError('x')\n");
  TempDir assets;
  ASSERT_TRUE(installAssets(assets.path()).isOk());
  for (const char* without : {"stratus_runtime.py", "stratus_runtime.pyc"}) {
    ASSERT_TRUE(std::filesystem::exists(assets.path() / "python3" / without)) << without;
    std::filesystem::rename(assets.path() / "python3" / without, assets.path() / "aside");
    Child c;
    c.setAssetsDir(assets.path());
    startReady(c, "python3", "index.handler");
    Frame f;
    ASSERT_TRUE(c.invoke("r", "{}", f));
    ASSERT_EQ(f.type, FrameType::kError);
    // Either way the runtime's own frames stay out of the user's stack trace.
    EXPECT_EQ(f.meta.at("stackTrace").as_array().size(), 1u)
        << without << " " << json::serialize(f.meta);
    std::filesystem::rename(assets.path() / "aside", assets.path() / "python3" / without);
  }
}

// ---- nodejs -------------------------------------------------------------------------------------

TEST_F(BootstrapTest, NodeAsyncHandlerWithEventAndContext) {
  code("index.js", R"(
exports.handler = async (event, context) => ({
  event, requestId: context.awsRequestId, functionName: context.functionName,
  memory: context.memoryLimitInMB, remaining: context.getRemainingTimeInMillis(),
  version: context.functionVersion, arn: context.invokedFunctionArn,
  logGroup: context.logGroupName, env: process.env.FROM_LOAD, cwd: process.cwd(),
  fc: [context.requestId, context.function.name, context.function.memory,
       context.function.handler, context.function.timeout],
  waits: context.callbackWaitsForEmptyEventLoop,
});
)");
  Child c;
  startReady(c, "nodejs", "index.handler", {{"env", json::object{{"FROM_LOAD", "node-yes"}}}});
  Frame f;
  ASSERT_TRUE(c.invoke("req-n1", R"({"a": [1, 2, "x"]})", f));
  ASSERT_EQ(f.type, FrameType::kResult) << json::serialize(f.meta);
  json::object r = parse(f.body).as_object();
  EXPECT_EQ(r.at("event"), parse(R"({"a": [1, 2, "x"]})"));
  expectContext(r, "req-n1", "node-yes");
  EXPECT_TRUE(r.at("waits").as_bool());
  expectNonJsonEvents(c, "req-n");
}

TEST_F(BootstrapTest, NodePromiseCallbackAndSyncStyles) {
  code("index.js", R"(
exports.promise = (event) => new Promise((resolve) => setTimeout(() => resolve({style: 'promise'}), 5));
exports.callback = (event, context, callback) => { setTimeout(() => callback(null, {style: 'callback'}), 5); };
exports.sync = (event, context) => ({style: 'sync'});
exports.legacy = (event, context, cb) => { setTimeout(() => context.succeed({style: 'legacy'}), 5); };
exports.undef = async () => undefined;
)");
  for (std::string style : {"promise", "callback", "sync", "legacy"}) {
    Child c;
    startReady(c, "nodejs", "index." + style);
    Frame f;
    ASSERT_TRUE(c.invoke("r-" + style, "{}", f));
    ASSERT_EQ(f.type, FrameType::kResult) << style << json::serialize(f.meta);
    EXPECT_EQ(parse(f.body).at("style").as_string(), style);
  }
  Child c;
  startReady(c, "nodejs", "index.undef");
  Frame f;
  ASSERT_TRUE(c.invoke("r", "{}", f));
  ASSERT_EQ(f.type, FrameType::kResult);
  EXPECT_EQ(f.body, "null");
}

TEST_F(BootstrapTest, NodeErrorsAreHandledOrUnhandled) {
  code("index.js", R"(
exports.handler = async (event, context) => {
  if (event.mode === 'throw') { const o = null; return o.field; }
  if (event.mode === 'reject') throw new RangeError('out of range');
  return 'ok';
};
exports.cb = (event, context, callback) => {
  if (event.mode === 'string') return callback('plain failure');
  callback(new Error('handled failure'));
};
)");
  Child c;
  startReady(c, "nodejs", "index.handler");
  Frame f;
  ASSERT_TRUE(c.invoke("r1", R"({"mode": "throw"})", f));
  ASSERT_EQ(f.type, FrameType::kError);
  EXPECT_EQ(f.meta.at("errorType").as_string(), "TypeError");
  EXPECT_FALSE(f.meta.at("handled").as_bool());
  ASSERT_FALSE(f.meta.at("stackTrace").as_array().empty());
  bool mentionsIndex = false;
  for (const auto& line : f.meta.at("stackTrace").as_array()) {
    mentionsIndex |= line.as_string().find("index.js") != std::string::npos;
  }
  EXPECT_TRUE(mentionsIndex) << json::serialize(f.meta);
  ASSERT_TRUE(c.invoke("r2", R"({"mode": "reject"})", f));
  EXPECT_EQ(f.meta.at("errorType").as_string(), "RangeError");
  EXPECT_EQ(f.meta.at("errorMessage").as_string(), "out of range");
  EXPECT_FALSE(f.meta.at("handled").as_bool());
  ASSERT_TRUE(c.invoke("r3", "{}", f));  // still serving
  EXPECT_EQ(f.type, FrameType::kResult);

  Child d;
  startReady(d, "nodejs", "index.cb");
  ASSERT_TRUE(d.invoke("r4", "{}", f));
  ASSERT_EQ(f.type, FrameType::kError);
  EXPECT_EQ(f.meta.at("errorType").as_string(), "Error");
  EXPECT_EQ(f.meta.at("errorMessage").as_string(), "handled failure");
  EXPECT_TRUE(f.meta.at("handled").as_bool());
  ASSERT_TRUE(d.invoke("r5", R"({"mode": "string"})", f));
  EXPECT_EQ(f.meta.at("errorType").as_string(), "string");
  EXPECT_EQ(f.meta.at("errorMessage").as_string(), "plain failure");
  EXPECT_TRUE(f.meta.at("handled").as_bool());
}

TEST_F(BootstrapTest, NodeResolvesBundledNodeModules) {
  code("node_modules/greeter/package.json", R"({"name": "greeter", "main": "lib/greet.js"})");
  code("node_modules/greeter/lib/greet.js", "exports.greet = (n) => 'hello ' + n;\n");
  code("index.js",
       "const {greet} = require('greeter');\n"
       "exports.handler = async (e) => greet(e.name);\n");
  Child c;
  startReady(c, "nodejs", "index.handler");
  Frame f;
  ASSERT_TRUE(c.invoke("r", R"({"name": "stratus"})", f));
  ASSERT_EQ(f.type, FrameType::kResult) << json::serialize(f.meta);
  EXPECT_EQ(f.body, "\"hello stratus\"");
}

TEST_F(BootstrapTest, NodeLoadsEsModules) {
  code("esm.mjs", "export const handler = async (event) => ({esm: true, n: event.n});\n");
  code("typed/package.json", R"({"type": "module"})");
  code("typed/app.js",
       "const v = await Promise.resolve('module js');\n"  // top-level await
       "export async function handler() { return v; }\n");
  Child c;
  startReady(c, "nodejs", "esm.handler");
  Frame f;
  ASSERT_TRUE(c.invoke("r", R"({"n": 3})", f));
  ASSERT_EQ(f.type, FrameType::kResult) << json::serialize(f.meta);
  EXPECT_EQ(parse(f.body), parse(R"({"esm": true, "n": 3})"));
  Child d;
  startReady(d, "nodejs", "typed/app.handler");
  ASSERT_TRUE(d.invoke("r", "{}", f));
  ASSERT_EQ(f.type, FrameType::kResult) << json::serialize(f.meta);
  EXPECT_EQ(f.body, "\"module js\"");
  EXPECT_EQ(d.err().find("ExperimentalWarning"), std::string::npos) << d.logs();
}

TEST_F(BootstrapTest, NodeInitErrors) {
  code("index.js", "exports.handler = async () => 1;\nexports.value = 5;\n");
  code("broken.js", "exports.handler = async () => {\n");
  code("needsdep.js", "require('not-installed-anywhere');\n");
  code("raises.js", "throw new TypeError('bad config');\n");
  auto e = initError("nodejs", "missing.handler");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.ImportModuleError");
  e = initError("nodejs", "needsdep.handler");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.ImportModuleError");
  EXPECT_NE(e.at("errorMessage").as_string().find("not-installed-anywhere"), std::string::npos);
  e = initError("nodejs", "index.nothere");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.HandlerNotFound");
  e = initError("nodejs", "index.value");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.HandlerNotFound");
  e = initError("nodejs", "broken.handler");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.UserCodeSyntaxError");
  e = initError("nodejs", "raises.handler");
  EXPECT_EQ(e.at("errorType").as_string(), "TypeError");
  EXPECT_EQ(e.at("errorMessage").as_string(), "bad config");
  e = initError("nodejs", "nodot");
  EXPECT_EQ(e.at("errorType").as_string(), "Runtime.MalformedHandlerName");
}

TEST_F(BootstrapTest, NodeConcurrentInvokesOverlap) {
  code("index.js",
       "exports.handler = async (e, ctx) => {\n"
       "  await new Promise((r) => setTimeout(r, 300));\n"
       "  return ctx.awsRequestId;\n};\n");
  expectConcurrentInvokesOverlap("nodejs");
}

TEST_F(BootstrapTest, NodeConsoleLogReachesStdoutBeforeTheResult) {
  code("index.js",
       "exports.handler = async (e, ctx) => {\n"
       "  console.log('log line for', ctx.awsRequestId);\n"
       "  console.error('to stderr');\n  return 1;\n};\n");
  expectLogsBeforeTheResult("nodejs");
}

TEST_F(BootstrapTest, NodeInitializerRunsOnce) {
  code("index.js", R"(
const calls = [];
exports.init = (context, callback) => { calls.push(context.functionName); callback(); };
exports.handler = async () => calls;
exports.badInit = async () => { throw new Error('init failed'); };
)");
  expectInitializerRunsOnce("nodejs", "index.badInit", "Error");
}

TEST_F(BootstrapTest, NodeUncaughtErrorsOutsideAHandlerEndTheProcess) {
  code("index.js",
       "exports.timer = async () => {\n"
       "  setTimeout(() => { throw new Error('late failure'); }, 1);\n"
       "  return 'returned';\n};\n"
       "exports.rejection = async () => {\n"
       "  Promise.reject(new Error('forgotten rejection'));\n"
       "  return 'returned';\n};\n");
  for (std::string which : {"timer", "rejection"}) {
    Child c;
    startReady(c, "nodejs", "index." + which);
    Frame f;
    ASSERT_TRUE(c.invoke("r", "{}", f));
    EXPECT_EQ(f.type, FrameType::kResult);
    int status = c.waitExit(kCallDeadline);
    ASSERT_NE(status, -1) << which << " still running";
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << which << " " << status;
    EXPECT_NE(c.err().find(which == "timer" ? "late failure" : "forgotten rejection"),
              std::string::npos)
        << c.logs();
  }
}

// ---- both ---------------------------------------------------------------------------------------

TEST_F(BootstrapTest, LargeEventsAndResultsRoundTrip) {
  code("index.py",
       "def handler(event, context):\n    return {'n': len(event['data']), "
       "'echo': event['data'][::-1]}\n");
  code("index.js",
       "exports.handler = async (event) => ({n: event.data.length, "
       "echo: event.data.split('').reverse().join('')});\n");
  std::string data(6 << 20, 'a');
  for (size_t i = 0; i < data.size(); i += 997) data[i] = static_cast<char>('b' + i % 20);
  std::string reversed(data.rbegin(), data.rend());
  for (std::string runtime : {"python3", "nodejs"}) {
    Child c;
    startReady(c, runtime, "index.handler");
    for (int i = 0; i < 2; ++i) {
      Frame f;
      ASSERT_TRUE(c.invoke("big", "{\"data\": \"" + data + "\"}", f)) << runtime;
      ASSERT_EQ(f.type, FrameType::kResult) << runtime << json::serialize(f.meta);
      json::value r = parse(f.body);
      EXPECT_EQ(r.at("n").as_int64(), static_cast<int64_t>(data.size())) << runtime;
      EXPECT_TRUE(r.at("echo").as_string() == reversed) << runtime;
    }
  }
}

// exec -> exit of a bare interpreter, the floor for a bootstrap's exec -> hello.
double msToExit(std::vector<std::string> argv) {
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  auto t0 = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::execv(cargv[0], cargv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << argv[0];
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Not a benchmark: reports how long each bootstrap takes from exec to hello and to ready (loaded
// a trivial handler), which is the runtime's share of a pool-miss cold start, next to the bare
// interpreter measured in the same run (the machine is shared, so absolute numbers drift).
TEST_F(BootstrapTest, StartupTime) {
  code("index.py", "def handler(event, context):\n    return 1\n");
  code("index.js", "exports.handler = async () => 1;\n");
  const std::map<std::string, std::vector<std::string>> bare = {
      {"python3", {"/usr/bin/python3", "-S", "-c", "pass"}},
      {"nodejs", {"/usr/bin/node", "-e", "0"}}};
  for (std::string runtime : {"python3", "nodejs"}) {
    std::vector<double> hello, ready, floor;
    for (int i = 0; i < 7; ++i) {
      floor.push_back(msToExit(bare.at(runtime)));
      Child c;
      startReady(c, runtime, "index.handler");
      hello.push_back(c.msToHello());
      ready.push_back(c.msToReady());
    }
    std::sort(hello.begin(), hello.end());
    std::sort(ready.begin(), ready.end());
    std::sort(floor.begin(), floor.end());
    std::printf(
        "[ startup  ] %-8s exec->hello %.1f ms, exec->ready %.1f ms (median of 7; min "
        "%.1f); bare interpreter exec->exit %.1f ms\n",
        runtime.c_str(), hello[3], ready[3], ready[0], floor[3]);
    RecordProperty(runtime + "_ready_median_ms", static_cast<int>(ready[3]));
  }
}

}  // namespace
}  // namespace stratus::runtime
