// The hardened profile, for real: the escape probe (tests/escape/probe.py) run as the command
// of real sandboxes, one named test per attempt and creation path (escape_suite.h); per-tenant
// user namespaces on disjoint host uid ranges; the tenant id map; the profile switched off (what
// the benchmark compares against). Runs as root.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "sandbox/escape_suite.h"
#include "sandbox/sandbox_test_util.h"
#include "sandbox/seccomp_filter.h"

#ifndef STRATUS_ESCAPE_PROBE
#error "STRATUS_ESCAPE_PROBE must name tests/escape/probe.py"
#endif

namespace stratus {
namespace {

using namespace sandbox_test;
namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

// The probe and the commands here run python3 in a sandbox: more time than the shared default.
constexpr std::chrono::seconds kProbeTimeout{60};

// Host pid of the sandbox's command: init's only child.
pid_t commandPid(pid_t init) {
  auto deadline = SteadyClock::now() + std::chrono::seconds(10);
  while (SteadyClock::now() < deadline) {
    std::string children =
        slurp("/proc/" + std::to_string(init) + "/task/" + std::to_string(init) + "/children");
    if (!children.empty()) return std::stoi(children);
    std::this_thread::yield();
  }
  return -1;
}

// Host uid and gid (real) of a process.
std::pair<long, long> hostIds(pid_t pid) {
  std::string status = slurp("/proc/" + std::to_string(pid) + "/status");
  auto field = [&](const char* name) {
    size_t at = status.find(name);
    return at == std::string::npos ? -1L : std::stol(status.substr(at + std::strlen(name)));
  };
  return {field("\nUid:"), field("\nGid:")};
}

struct Listener {
  Listener() {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd.get(), 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  UniqueFd fd;
  uint16_t port = 0;
};

// Runs the probe's `attempt` in a sandbox made by `create`; returns the probe's JSON answer.
boost::json::object runProbe(
    const std::function<Result<std::unique_ptr<Sandbox>>(const SandboxSpec&)>& create,
    SandboxSpec s, const std::string& attempt, const boost::json::object& args) {
  int p[2];
  EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  s.argv = {"/usr/bin/python3", "/code/probe.py", attempt, boost::json::serialize(args)};
  s.stdoutFd = w.get();
  s.stderrFd = 2;
  auto sb = create(s);
  EXPECT_TRUE(sb.isOk()) << sb.status().toString();
  if (!sb.isOk()) return {};
  w.reset();
  std::string text = readUntilEof(r.get(), kProbeTimeout);
  auto info = waitExit(**sb, kProbeTimeout);
  EXPECT_TRUE(info.has_value());
  try {
    return boost::json::parse(text).as_object();
  } catch (...) {
    ADD_FAILURE() << attempt << ": probe said " << text;
    return {};
  }
}

}  // namespace

std::vector<std::string> sandboxEscapeAttempts() {
  return {"host_processes",  "root_readonly",  "etc_shadow",       "host_secret",
          "mount",           "unshare",        "clone_namespaces", "setns",
          "ptrace",          "kernel_modules", "keyctl",           "bpf",
          "reboot",          "clock",          "file_handles",     "mknod",
          "raw_sockets",     "proc_kcore",     "sysrq_trigger",    "proc_sys_readonly",
          "no_capabilities", "user_namespace", "dev_allowlist",    "network",
          "fork_bomb",       "tmp_fill"};
}

std::string sandboxEscapeTestName(const ::testing::TestParamInfo<SandboxEscapeParam>& info) {
  return std::get<0>(info.param).name + "_" + std::get<1>(info.param);
}

void SandboxEscapeTest::SetUp() {
  ASSERT_NO_FATAL_FAILURE(setUpSandboxHost("stratus-hard-", tmp_, code_, parent_, backend_));
  put(code_ / "probe.py", slurp(STRATUS_ESCAPE_PROBE), 0644);
}

void SandboxEscapeTest::TearDown() {
  if (backend_) EXPECT_TRUE(backend_->sweepLeftovers().isOk());
  backend_.reset();
  if (!tmp_.empty()) fs::remove_all(tmp_);
}

TEST_P(SandboxEscapeTest, AttemptIsContained) {
  const auto& [path, attempt] = GetParam();
  SandboxSpec s;
  s.id = "esc-" + randomHex().substr(0, 10);
  s.codeDir = code_;
  s.tenant = "tenant-a";
  s.pidsMax = 32;
  s.tmpfsBytes = 8 << 20;
  s.memoryBytes = 256 << 20;
  // A root-only host file, visible inside through a bind mount: only file permissions stand
  // between it and the function, and they must hold (no root, no CAP_DAC_OVERRIDE).
  fs::create_directory(tmp_ / "hostdir");
  put(tmp_ / "hostdir" / "secret", "host secret", 0600);
  put(tmp_ / "secret", "host secret", 0600);
  s.mounts.push_back({tmp_ / "hostdir", "/run/hostdir", true});
  Listener host;

  boost::json::object args;
  args["hostMarkers"] = boost::json::array{"hardening_test", tmp_.string()};
  args["paths"] = boost::json::array{"/run/hostdir/secret", (tmp_ / "secret").string()};
  args["targets"] = boost::json::array{"127.0.0.1:" + std::to_string(host.port)};
  args["limitBytes"] = s.tmpfsBytes;
  args["max"] = 4 * s.pidsMax;
  auto res = runProbe([&](const SandboxSpec& spec) { return path.create(*backend_, spec); }, s,
                      attempt, args);
  ASSERT_TRUE(res.contains("contained")) << boost::json::serialize(res);
  EXPECT_TRUE(res["contained"].as_bool()) << attempt << ": " << res["detail"].as_string();
}

const SandboxCreationPath kFresh{
    "fresh", [](ProcessSandboxBackend& b, const SandboxSpec& s) { return b.create(s); }};
INSTANTIATE_TEST_SUITE_P(Fresh, SandboxEscapeTest,
                         ::testing::Combine(::testing::Values(kFresh),
                                            ::testing::ValuesIn(sandboxEscapeAttempts())),
                         sandboxEscapeTestName);

// Tenants get disjoint host id ranges; within one tenant the range is stable. Root inside (init)
// is the range's first id, the command 65534 inside.
TEST_F(SandboxEscapeTest, TenantsRunAsDisjointHostUids) {
  auto make = [&](const std::string& id, const std::string& tenant) {
    SandboxSpec s;
    s.id = id;
    s.tenant = tenant;
    s.argv = {"/usr/bin/sleep", "1000"};
    auto sb = backend_->create(s);
    EXPECT_TRUE(sb.isOk()) << sb.status().toString();
    return sb.isOk() ? std::move(sb).value() : nullptr;
  };
  auto a1 = make("ua1", "tenant-a"), a2 = make("ua2", "tenant-a"), b1 = make("ub1", "tenant-b");
  ASSERT_TRUE(a1 && a2 && b1);
  uint32_t baseA = *backend_->tenantIds().hostIdBase("tenant-a");
  uint32_t baseB = *backend_->tenantIds().hostIdBase("tenant-b");
  EXPECT_GE(baseA, TenantIdMap::kDefaultFirstHostId);
  EXPECT_GE(baseA > baseB ? baseA - baseB : baseB - baseA, TenantIdMap::kRangeSize);
  struct Case {
    Sandbox* sb;
    uint32_t base;
  };
  for (Case c : {Case{a1.get(), baseA}, Case{a2.get(), baseA}, Case{b1.get(), baseB}}) {
    pid_t cmd = commandPid(c.sb->pid());
    ASSERT_GT(cmd, 0);
    EXPECT_EQ(hostIds(cmd), (std::pair<long, long>{c.base + 65534, c.base + 65534}));
    EXPECT_EQ(hostIds(c.sb->pid()), (std::pair<long, long>{c.base, c.base}));  // init: root inside
    EXPECT_EQ(slurp("/proc/" + std::to_string(cmd) + "/uid_map").find(std::to_string(c.base)) !=
                  std::string::npos,
              true);
  }
}

// Another tenant's sandbox: its /tmp is its own, its processes cannot be signalled.
TEST_F(SandboxEscapeTest, OtherTenantTmpAndProcessesUnreachable) {
  SandboxSpec a;
  a.id = "ot-a";
  a.tenant = "tenant-a";
  a.codeDir = code_;
  auto planted = runProbe([&](const SandboxSpec& s) { return backend_->create(s); }, a, "plant",
                          {{"marker", "marker-of-a"}});
  EXPECT_TRUE(planted["contained"].as_bool());
  // A long-lived sandbox of tenant a with the marker in its /tmp.
  SandboxSpec live = a;
  live.id = "ot-live";
  live.argv = {"/bin/sh", "-c", "echo x > /tmp/marker-of-a; exec sleep 1000"};
  auto la = backend_->create(live);
  ASSERT_TRUE(la.isOk()) << la.status().toString();
  SandboxSpec b = a;
  b.id = "ot-b";
  b.tenant = "tenant-b";
  auto res = runProbe([&](const SandboxSpec& s) { return backend_->create(s); }, b, "other_tenant",
                      {{"marker", "marker-of-a"}});
  EXPECT_TRUE(res["contained"].as_bool()) << res["detail"].as_string();
}

// Without the hardening (what `stratus bench sandbox` compares against) the sandbox still works,
// has no seccomp filter and runs as the plain host uid 65534.
TEST_F(SandboxEscapeTest, HardeningCanBeSwitchedOffForComparison) {
  ProcessSandboxOptions o;
  o.stateDir = tmp_ / "state-plain";
  o.cgroupParent = parent_ + "-plain";
  o.userNamespace = false;
  o.seccomp = false;
  auto plain = ProcessSandboxBackend::create(o);
  ASSERT_TRUE(plain.isOk()) << plain.status().toString();
  SandboxSpec s;
  s.id = "plain";
  s.codeDir = code_;
  auto res = runProbe([&](const SandboxSpec& sp) { return (*plain)->create(sp); }, s,
                      "no_capabilities", {});
  EXPECT_FALSE(res["contained"].as_bool());  // Seccomp: 0
  std::string detail(res["detail"].as_string());
  EXPECT_NE(detail.find("\"Seccomp\": \"0\""), std::string::npos) << detail;
  EXPECT_NE(detail.find("\"CapBnd\": \"0000000000000000\""), std::string::npos) << detail;
  EXPECT_NE(detail.find("65534"), std::string::npos) << detail;
}

// Python threads (clone3 -> ENOSYS -> clone fallback), subprocesses and node all work under the
// filter.
TEST_F(SandboxEscapeTest, RuntimesWorkUnderTheFilter) {
  put(code_ / "t.py",
      "import threading, subprocess, json\n"
      "out = []\n"
      "ts = [threading.Thread(target=lambda i=i: out.append(i)) for i in range(8)]\n"
      "[t.start() for t in ts]; [t.join() for t in ts]\n"
      "p = subprocess.run(['/bin/sh', '-c', 'echo sub'], capture_output=True, text=True)\n"
      "print(json.dumps({'threads': len(out), 'sub': p.stdout.strip()}))\n",
      0644);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  SandboxSpec s;
  s.id = "threads";
  s.codeDir = code_;
  s.argv = {"/usr/bin/python3", "/code/t.py"};
  s.stdoutFd = w.get();
  s.stderrFd = 2;
  auto sb = backend_->create(s);
  ASSERT_TRUE(sb.isOk()) << sb.status().toString();
  w.reset();
  EXPECT_EQ(readUntilEof(r.get(), kProbeTimeout), "{\"threads\": 8, \"sub\": \"sub\"}\n");
  if (fs::exists("/usr/bin/node")) {
    ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
    UniqueFd r2(p[0]), w2(p[1]);
    s.id = "node-threads";
    s.argv = {"/usr/bin/node", "-e",
              "const {Worker}=require('worker_threads');"
              "new Worker('require(\"worker_threads\").parentPort.postMessage(6*7)',{eval:true})"
              ".on('message',m=>{require('fs').readFile('/code/t.py',(e,d)=>"
              "console.log(m, e ? e.code : d.length > 0))})"};
    s.stdoutFd = w2.get();
    auto nb = backend_->create(s);
    ASSERT_TRUE(nb.isOk()) << nb.status().toString();
    w2.reset();
    EXPECT_EQ(readUntilEof(r2.get(), kProbeTimeout), "42 true\n");
  }
}

TEST(TenantIdMapTest, RangesAreDisjointAndPersist) {
  std::string t = (fs::temp_directory_path() / "stratus-ids-XXXXXX").string();
  fs::path dir = ::mkdtemp(t.data());
  fs::path file = dir / "tenant-ids";
  {
    auto m = TenantIdMap::open(file);
    ASSERT_TRUE(m.isOk());
    EXPECT_EQ(*(*m)->hostIdBase("a"), TenantIdMap::kDefaultFirstHostId);
    EXPECT_EQ(*(*m)->hostIdBase("b"), TenantIdMap::kDefaultFirstHostId + 65536);
    EXPECT_EQ(*(*m)->hostIdBase("a"), TenantIdMap::kDefaultFirstHostId);
    EXPECT_EQ(*(*m)->hostId("b", 65534), TenantIdMap::kDefaultFirstHostId + 65536 + 65534);
  }
  // A crash tore the next line: it is dropped, and the next tenant takes its index cleanly.
  std::ofstream(file, std::ios::app) << "2 tor";
  {
    auto m = TenantIdMap::open(file);
    ASSERT_TRUE(m.isOk()) << m.status().toString();
    EXPECT_EQ(*(*m)->hostIdBase("b"), TenantIdMap::kDefaultFirstHostId + 65536);
    EXPECT_EQ(*(*m)->hostIdBase("c"), TenantIdMap::kDefaultFirstHostId + 2 * 65536);
  }
  EXPECT_EQ(slurp(file), "0 a\n1 b\n2 c\n");
  EXPECT_FALSE(TenantIdMap::open(file, 12345).isOk());
  auto full = TenantIdMap::open({}, 0xFFFE0000u);  // the last range that avoids uid -1
  ASSERT_TRUE(full.isOk());
  EXPECT_TRUE((*full)->hostIdBase("x").isOk());
  EXPECT_EQ((*full)->hostIdBase("y").status().code(), Code::kResourceExhausted);
  fs::remove_all(dir);
}

TEST(SeccompFilterTest, CompilesToBpf) {
  auto prog = buildSeccompProgram();
  ASSERT_TRUE(prog.isOk()) << prog.status().toString();
  EXPECT_EQ(prog->size() % 8, 0u);
  EXPECT_GT(prog->size(), 8u * 40);    // one jump per denied syscall at least
  EXPECT_LT(prog->size(), 8u * 4096);  // what init's buffer holds
}

}  // namespace stratus
