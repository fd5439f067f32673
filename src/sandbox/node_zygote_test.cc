// The nodejs template (src/runtime/nodejs/zygote.js and its native half fork_addon.cc) driven
// through Zygote, into real hardened sandboxes, as root: a forked node survives what a forked
// node is most likely to choke on (GC with V8's worker-thread tasks, JIT, libuv's thread pool,
// DNS, crypto, zlib, sockets, timers, worker_threads), every way out of it reports its exit code,
// no state leaks from one instance to the next or from the template, and a failed spawn (a bad
// request, a sandbox whose pids.max leaves no room for the runtime) leaves the template serving.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <random>
#include <sstream>
#include <thread>

#include "common/fs.h"
#include "runtime/runtime.h"
#include "sandbox/process_sandbox.h"
#include "sandbox/zygote.h"

namespace stratus {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

std::string randomHex() {
  std::random_device rd;
  std::ostringstream o;
  o << std::hex << rd() << rd();
  return o.str();
}

// Everything a forked node is likely to trip on, then the exit the first argument asks for.
constexpr const char* kStress = R"JS(
'use strict';
const fs = require('fs'), crypto = require('crypto'), dns = require('dns'), net = require('net');
const zlib = require('zlib');
const mode = process.argv[2] || '';
const results = {};
// Allocation: many scavenges, and full GCs (V8 posts a worker-thread task in each of them).
let keep = [];
for (let i = 0; i < 2e6; i++) {
  const o = { i, s: 'x' + i };
  if (i % 100 === 0) keep.push(o);
  if (keep.length > 20000) keep = [];
}
for (let r = 0; r < 3; r++) {
  let big = [];
  for (let i = 0; i < 40; i++) big.push(Buffer.alloc(1 << 20, i));
  big = null;
  let a = [];
  for (let i = 0; i < 5e5; i++) a.push({ i });
}
// JIT: hot enough for TurboFan, then a deoptimisation.
function hot(x) { return typeof x === 'number' ? x * 2 + 1 : String(x).length; }
let acc = 0;
for (let i = 0; i < 1e7; i++) acc += hot(i & 1023);
acc += hot('deopt');
results.jit = acc;
const step = (name, p) => p.then((v) => { results[name] = v; }, (e) => { results[name] = 'ERR ' + e.message; });
const ps = [];
ps.push(step('fs', fs.promises.readFile('/proc/self/status', 'utf8').then((s) => s.includes('Pid'))));
ps.push(step('fsMany', Promise.all(Array.from({ length: 100 }, () => fs.promises.stat('/'))).then((a) => a.length)));
ps.push(step('pbkdf2', new Promise((res, rej) => crypto.pbkdf2('pw', 'salt', 5000, 32, 'sha256', (e, k) => e ? rej(e) : res(k.length)))));
ps.push(step('random', new Promise((res, rej) => crypto.randomBytes(16, (e, b) => e ? rej(e) : res(b.length)))));
ps.push(step('zlib', new Promise((res, rej) => zlib.gzip(Buffer.alloc(1 << 20, 7), (e, z) => e ? rej(e) : res(z.length > 0)))));
ps.push(step('dns', new Promise((res) => dns.lookup('localhost', (e, a) => res(e ? e.code : a)))));
ps.push(step('timers', new Promise((res) => { let n = 0; const iv = setInterval(() => { if (++n === 10) { clearInterval(iv); res(n); } }, 1); })));
ps.push(step('tcp', new Promise((res, rej) => {
  const srv = net.createServer((c) => c.pipe(c)).listen(0, '127.0.0.1', () => {
    const c = net.connect(srv.address().port, '127.0.0.1');
    let n = 0;
    c.on('data', () => { if (++n === 20) { c.end(); srv.close(); res(n); } else c.write('x'); });
    c.on('error', rej);
    c.write('x');
  });
  srv.on('error', rej);
})));
ps.push(step('worker', new Promise((res, rej) => {
  const { Worker } = require('worker_threads');
  const w = new Worker('require("worker_threads").parentPort.postMessage(6 * 7)', { eval: true });
  let got = null;
  w.on('message', (m) => { got = m; });
  w.on('error', rej);
  // 'exit' needs the Worker's teardown to finish: node drains V8's worker-thread tasks there.
  w.on('exit', () => res(got));
})));
Promise.all(ps).then(() => {
  process.stdout.write(JSON.stringify(results) + '\n');
  if (mode === 'exit3') process.exit(3);
  if (mode === 'exitCode') process.exitCode = 5;
  if (mode === 'throw') setTimeout(() => { throw new Error('uncaught boom'); }, 1);
  if (mode === 'sigterm') process.kill(process.pid, 'SIGTERM');
});
)JS";

// What an instance can see of the state of others and of the template.
constexpr const char* kLeakProbe = R"JS(
'use strict';
const fs = require('fs');
const seen = {
  marker: globalThis.__stratusMarker === undefined ? null : globalThis.__stratusMarker,
  tmp: fs.readdirSync('/tmp'),
  env: Object.keys(process.env).sort(),
  userModules: Object.keys(require.cache).filter((k) => k.startsWith('/code/') && k !== __filename),
  pid: process.pid,
  random: Math.random(),
  fds: fs.readdirSync('/proc/self/fd').map(Number).filter((fd) => {
    try { fs.readlinkSync('/proc/self/fd/' + fd); return true; } catch (_) { return false; }
  }).length,
};
globalThis.__stratusMarker = 'set by ' + process.argv[2];
fs.writeFileSync('/tmp/leak-' + process.argv[2], 'x');
process.env.LEAKED = '1';
process.stdout.write(JSON.stringify(seen) + '\n');
)JS";

class NodeZygoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists("/usr/bin/node")) GTEST_SKIP() << "no /usr/bin/node";
    char tmpl[] = "/tmp/stratus-nodezygote-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    tmp_ = tmpl;
    ::chmod(tmp_.c_str(), 0755);
    ASSERT_TRUE(runtime::installAssets(tmp_ / "assets").isOk());
    code_ = tmp_ / "code";
    ASSERT_TRUE(makeDirs(code_, 0755).isOk());
    ASSERT_TRUE(writeFileAtomic(code_ / "stress.js", kStress, 0644).isOk());
    ASSERT_TRUE(writeFileAtomic(code_ / "leak.js", kLeakProbe, 0644).isOk());
    ProcessSandboxOptions o;
    o.stateDir = tmp_ / "state";
    o.cgroupParent = "stratus-nz-" + randomHex().substr(0, 8);
    auto b = ProcessSandboxBackend::create(o);
    ASSERT_TRUE(b.isOk()) << b.status().toString();
    backend_ = std::move(b).value();
    auto z =
        Zygote::startNode(tmp_ / "assets" / "nodejs" / "zygote.js", {"--max-old-space-size=200"});
    ASSERT_TRUE(z.isOk()) << z.status().toString();
    zygote_ = std::move(z).value();
  }

  void TearDown() override {
    zygote_.reset();
    if (backend_) EXPECT_TRUE(backend_->sweepLeftovers().isOk());
    backend_.reset();
    if (!tmp_.empty()) (void)removeTree(tmp_);
  }

  struct Run {
    Status spawn;
    std::string out, err;
    std::optional<int> exitCode, signal;  // from the pidfd once init has reaped it
  };

  // A hardened sandbox with a placeholder command, a runtime forked into it running
  // /code/<script> args...; waits for it to end (a deadline, not a sleep) and ends the sandbox.
  Run run(const std::vector<std::string>& scriptArgs, int64_t pidsMax = 64,
          std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=/tmp"},
          std::chrono::seconds deadline = 60s) {
    Run r;
    SandboxSpec s;
    s.id = "nz-" + randomHex().substr(0, 10);
    s.tenant = "tenant-a";
    s.codeDir = code_;
    s.pidsMax = pidsMax;
    s.memoryBytes = 256 << 20;
    s.tmpfsBytes = 8 << 20;
    s.argv = {"/usr/bin/sleep", "infinity"};
    auto sb = backend_->create(s);
    if (!sb.isOk()) {
      r.spawn = sb.status();
      return r;
    }
    int op[2], ep[2];
    if (::pipe2(op, O_CLOEXEC) != 0 || ::pipe2(ep, O_CLOEXEC) != 0) std::abort();
    UniqueFd outR(op[0]), outW(op[1]), errR(ep[0]), errW(ep[1]);
    std::vector<std::string> argv;
    for (const auto& a : scriptArgs) argv.push_back(a);
    auto pid = zygote_->spawnInto((*sb)->pid(), outW.get(), errW.get(), env, argv);
    outW.reset();
    errW.reset();
    if (!pid.isOk()) {
      r.spawn = pid.status();
      return r;
    }
    UniqueFd pfd(static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0)));
    const auto end = SteadyClock::now() + deadline;
    // Both pipes to EOF, then the exit status, which exists once init has reaped the runtime.
    for (UniqueFd* p : {&outR, &errR}) {
      std::string& dst = p == &outR ? r.out : r.err;
      for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - SteadyClock::now());
        if (left.count() <= 0) break;
        pollfd pp{p->get(), POLLIN, 0};
        if (::poll(&pp, 1, static_cast<int>(left.count())) <= 0) continue;
        char buf[4096];
        ssize_t n = ::read(p->get(), buf, sizeof buf);
        if (n <= 0) break;
        dst.append(buf, static_cast<size_t>(n));
      }
    }
    while (pfd && SteadyClock::now() < end) {
      struct PidfdInfo {
        uint64_t mask, cgroupid;
        uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
        int32_t exitCode;
      } info{};
      info.mask = 1ULL << 3;  // PIDFD_INFO_EXIT
      if (::ioctl(pfd.get(), 0xC040FF0BUL, &info) == 0 && (info.mask & (1ULL << 3)) != 0) {
        if (WIFSIGNALED(info.exitCode)) {
          r.signal = WTERMSIG(info.exitCode);
        } else {
          r.exitCode = WEXITSTATUS(info.exitCode);
        }
        break;
      }
      // Not reaped yet (the kernel answers EINVAL/ESRCH until the sandbox's init has waited for
      // it): poll, as the worker does.
      std::this_thread::sleep_for(2ms);  // polling interval for init's reaping
    }
    (*sb)->kill();
    return r;
  }

  // The template still forks working runtimes.
  void expectServing() {
    auto r = run({"/code/leak.js", "check"});
    ASSERT_TRUE(r.spawn.isOk()) << r.spawn.toString();
    EXPECT_NE(r.out.find("\"marker\":null"), std::string::npos) << r.out << r.err;
  }

  fs::path tmp_, code_;
  std::unique_ptr<ProcessSandboxBackend> backend_;
  std::unique_ptr<Zygote> zygote_;
};

TEST_F(NodeZygoteTest, ForkedNodeSurvivesGcJitThreadPoolSocketsAndWorkers) {
  for (int i = 0; i < 3; ++i) {
    auto r = run({"/code/stress.js"});
    ASSERT_TRUE(r.spawn.isOk()) << r.spawn.toString();
    auto v = boost::json::parse(r.out.substr(0, r.out.find('\n')));
    auto& o = v.as_object();
    EXPECT_EQ(o["fs"], true) << r.out << r.err;
    EXPECT_EQ(o["fsMany"], 100);
    EXPECT_EQ(o["pbkdf2"], 32);
    EXPECT_EQ(o["random"], 16);
    EXPECT_EQ(o["zlib"], true);
    EXPECT_EQ(o["dns"], "127.0.0.1");
    EXPECT_EQ(o["timers"], 10);
    EXPECT_EQ(o["tcp"], 20);
    EXPECT_EQ(o["worker"], 42);
    // The event loop ran dry: node's own exit path would wait for platform threads the child
    // does not have; the template's leaves with _exit and the code.
    EXPECT_EQ(r.exitCode, 0) << r.err;
  }
}

TEST_F(NodeZygoteTest, EveryExitReportsItsCode) {
  auto exit3 = run({"/code/stress.js", "exit3"});
  ASSERT_TRUE(exit3.spawn.isOk()) << exit3.spawn.toString();
  EXPECT_EQ(exit3.exitCode, 3) << exit3.err;
  auto code5 = run({"/code/stress.js", "exitCode"});
  EXPECT_EQ(code5.exitCode, 5) << code5.err;
  auto thrown = run({"/code/stress.js", "throw"});
  EXPECT_EQ(thrown.exitCode, 1);
  EXPECT_NE(thrown.err.find("Error: uncaught boom"), std::string::npos) << thrown.err;
  auto term = run({"/code/stress.js", "sigterm"});
  EXPECT_EQ(term.signal, SIGTERM) << term.err;
}

TEST_F(NodeZygoteTest, NoStateLeaksBetweenInstancesOrFromTheTemplate) {
  auto a = run({"/code/leak.js", "a"}, 64, {"PATH=/usr/bin:/bin", "ONLY_A=1"});
  auto b = run({"/code/leak.js", "b"}, 64, {"PATH=/usr/bin:/bin", "ONLY_B=1"});
  ASSERT_TRUE(a.spawn.isOk() && b.spawn.isOk()) << a.spawn.toString() << b.spawn.toString();
  auto va = boost::json::parse(a.out).as_object(), vb = boost::json::parse(b.out).as_object();
  for (auto* v : {&va, &vb}) {
    EXPECT_TRUE((*v)["marker"].is_null()) << "module globals leak: " << (*v)["marker"];
    EXPECT_TRUE((*v)["tmp"].as_array().empty()) << "/tmp leaks: " << (*v)["tmp"];
    EXPECT_TRUE((*v)["userModules"].as_array().empty()) << (*v)["userModules"];
    // stdio, libuv's epoll/eventfd/two pipes (both ends), the directory being listed
    EXPECT_LE((*v)["fds"].as_int64(), 3 + 2 + 4 + 1) << "fds: " << (*v)["fds"];
    EXPECT_LT((*v)["pid"].as_int64(), 10) << "process.pid is the one in the sandbox";
  }
  // Exactly the environment of the request: not the template's, not the previous instance's.
  EXPECT_EQ(va["env"], (boost::json::array{"ONLY_A", "PATH"}));
  EXPECT_EQ(vb["env"], (boost::json::array{"ONLY_B", "PATH"}));
  // Math.random is seeded per instance, not inherited from the template.
  EXPECT_NE(va["random"], vb["random"]);
}

TEST_F(NodeZygoteTest, TemplateSurvivesFailedSpawns) {
  // A request the template cannot honour (an environment entry without '='): refused after the
  // fork, reported as an error, and the template serves the next request.
  auto bad = run({"/code/leak.js", "x"}, 64, {"NOT_AN_ASSIGNMENT"});
  EXPECT_FALSE(bad.spawn.isOk());
  EXPECT_NE(bad.spawn.message().find("environment"), std::string::npos) << bad.spawn.toString();
  expectServing();
  // pids.max 4: init, the placeholder, the template's child C and G1 fill it, so G1's fork of
  // the runtime fails. C must not wait for a pid report that can never come.
  for (int64_t pids : {2, 3, 4}) {
    const auto t0 = SteadyClock::now();
    auto r = run({"/code/leak.js", "y"}, pids);
    EXPECT_FALSE(r.spawn.isOk()) << "pids.max " << pids;
    EXPECT_LT(SteadyClock::now() - t0, 5s) << "pids.max " << pids << ": " << r.spawn.toString();
    expectServing();
  }
}

}  // namespace
}  // namespace stratus
