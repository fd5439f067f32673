// The escape suite through the real server: `stratus up` runs tests/escape/probe.py as a python3
// function of two tenants, and every named attempt must come back contained. Parameterised over
// how instances come to be (ServerPath: the server's flags), so every creation path -- the warm
// pool of blank sandboxes, a fresh sandbox per cold start, later zygote templates -- is held to
// the same isolation. To cover a new path, add a ServerPath to kPaths.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "codepack/zip_import.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/unique_fd.h"
#include "tests/e2e_util.h"

namespace stratus::e2e {
namespace {

namespace fs = std::filesystem;

struct ServerPath {
  std::string name;
  std::vector<std::string> serverArgs;
};
void PrintTo(const ServerPath& p, std::ostream* os) { *os << p.name; }

const std::vector<ServerPath> kPaths = {
    {"pool", {}},              // default: blank sandboxes from the warm pool, code attached late
    {"fresh", {"--no-pool"}},  // a new sandbox per cold start, code mounted at creation
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string header(const HttpResponse& r, const std::string& name) {
  auto it = r.headers.find(name);
  return it == r.headers.end() ? "" : it->second;
}

// A host address other than loopback (the sandbox must not reach it either), if any.
std::string hostAddress() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return {};
  std::string out;
  for (ifaddrs* i = list; i != nullptr && out.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    char buf[INET_ADDRSTRLEN];
    auto* a = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    if (std::string(buf) != "127.0.0.1") out = buf;
  }
  ::freeifaddrs(list);
  return out;
}

struct Listener {
  explicit Listener(in_addr_t addr) {
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = addr;
    ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd.get(), 16);
    socklen_t len = sizeof a;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  UniqueFd fd;
  uint16_t port = 0;
};

const char* kCustomServer = R"PY(#!/usr/bin/python3
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.end_headers(); self.wfile.write(b"tenant-b")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 9000), H).serve_forever()
)PY";

// One server per creation path, shared by that path's tests: tenant "default" (the admin key)
// and tenant "tenantb" (created through the admin API), each with the probe deployed.
struct World {
  TempDir dir;
  std::unique_ptr<Server> server;
  std::string keyB;
  fs::path hostSecret;
  Listener hostLoopback{htonl(INADDR_LOOPBACK)};
  Listener hostAny{htonl(INADDR_ANY)};

  Result<HttpResponse> invokeAs(const std::string& key, const std::string& fn,
                                const json::object& event) {
    return httpRequest(server->endpoint(), "POST", "/2023-03-30/functions/" + fn + "/invocations",
                       {{"authorization", "Bearer " + key}, {"content-type", "application/json"}},
                       json::serialize(event), std::chrono::seconds(120));
  }
  Result<HttpResponse> createAs(const std::string& key, const std::string& spec) {
    return httpRequest(server->endpoint(), "POST", "/2023-03-30/functions",
                       {{"authorization", "Bearer " + key}, {"content-type", "application/json"}},
                       spec);
  }
};

class EscapeTest : public ::testing::TestWithParam<ServerPath> {
 protected:
  static World* world(const ServerPath& path) {
    if (auto it = worlds_.find(path.name); it != worlds_.end()) return it->second.get();
    auto w = std::make_unique<World>();
    auto s = Server::start(w->dir.path() / "data", path.serverArgs);
    EXPECT_TRUE(s.isOk()) << s.status().toString();
    if (!s.isOk()) return nullptr;
    w->server = std::move(s).value();
    w->hostSecret = w->dir.path() / "host-secret";
    std::ofstream(w->hostSecret) << "root-only host secret";
    ::chmod(w->hostSecret.c_str(), 0600);

    auto t = w->server->call("POST", "/admin/tenants", R"({"name":"tenantb"})");
    EXPECT_TRUE(t.isOk() && t->status == 201) << (t.isOk() ? t->body : t.status().toString());
    if (!t.isOk() || t->status != 201) return nullptr;
    w->keyB = parseJson(t->body).value().as_object().at("apiKey").as_string().c_str();

    const std::string probe = slurp(STRATUS_SOURCE_DIR "/tests/escape/probe.py");
    const std::string probeZip = makeZip({{"probe.py", probe, 0644, ""}});
    // Room for a fork bomb of python processes up to the pids limit (copy-on-write pages count).
    const std::string fields = R"("memorySize":512,"timeout":60)";
    for (const std::string& key : {w->server->key(), w->keyB}) {
      auto r =
          w->createAs(key, functionSpec("probe", "python3", "probe.handler", probeZip, fields));
      EXPECT_TRUE(r.isOk() && r->status == 200) << (r.isOk() ? r->body : r.status().toString());
    }
    // Tenant b's code, under a name tenant a will look for.
    auto secretZip =
        makeZip({{"probe.py", probe, 0644, ""}, {"b_secret_code.py", "x=1", 0644, ""}});
    auto r = w->createAs(w->keyB,
                         functionSpec("bsecret", "python3", "probe.handler", secretZip, fields));
    EXPECT_TRUE(r.isOk() && r->status == 200) << (r.isOk() ? r->body : r.status().toString());
    // Tenant b's HTTP server on port 9000 of its own sandbox.
    auto serverZip = makeZip({{"bootstrap", kCustomServer, 0755, ""}});
    r = w->createAs(w->keyB, functionSpec("bserver", "custom", "index.handler", serverZip,
                                          R"("customRuntimeConfig":{"port":9000})"));
    EXPECT_TRUE(r.isOk() && r->status == 200) << (r.isOk() ? r->body : r.status().toString());
    return (worlds_[path.name] = std::move(w)).get();
  }

  static void TearDownTestSuite() { worlds_.clear(); }

  void SetUp() override {
    w_ = world(GetParam());
    ASSERT_NE(w_, nullptr) << "server for path " << GetParam().name << " did not start";
  }

  // Runs an attempt as `key`'s tenant and returns the probe's verdict.
  json::object attempt(const std::string& name, json::object args = {},
                       const std::string& fn = "probe", std::string key = {}) {
    if (key.empty()) key = w_->server->key();
    args["attempt"] = name;
    auto r = w_->invokeAs(key, fn, args);
    EXPECT_TRUE(r.isOk()) << r.status().toString();
    if (!r.isOk()) return {};
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(header(*r, "x-fc-error-type"), "") << r->body;
    auto v = parseJson(r->body);
    if (!v.isOk() || !v->is_object()) {
      ADD_FAILURE() << name << ": " << r->body;
      return {};
    }
    return v->as_object();
  }

  void expectContained(const std::string& name, json::object args = {}) {
    auto res = attempt(name, std::move(args));
    ASSERT_TRUE(res.contains("contained")) << json::serialize(res);
    EXPECT_TRUE(res["contained"].as_bool()) << name << ": " << res["detail"].as_string();
  }

  bool serverHealthy() {
    auto h = httpRequest(w_->server->endpoint(), "GET", "/healthz", {}, "");
    return h.isOk() && h->status == 200;
  }

  World* w_ = nullptr;
  static std::map<std::string, std::unique_ptr<World>> worlds_;
};
std::map<std::string, std::unique_ptr<World>> EscapeTest::worlds_;

TEST_P(EscapeTest, HostProcessesInvisible) {
  expectContained("host_processes",
                  {{"hostMarkers", json::array{"up --listen", w_->dir.path().string()}}});
}
TEST_P(EscapeTest, RootAndSystemDirsReadOnly) { expectContained("root_readonly"); }
TEST_P(EscapeTest, EtcShadowUnreadable) { expectContained("etc_shadow"); }
TEST_P(EscapeTest, HostSecretFilesUnreadable) {
  const fs::path data = w_->server->dataDir();
  expectContained("host_secret",
                  {{"paths", json::array{w_->hostSecret.string(), (data / "admin-key").string(),
                                         (data / "meta.db").string(), "/root"}}});
}
TEST_P(EscapeTest, MountDenied) { expectContained("mount"); }
TEST_P(EscapeTest, UnshareDenied) { expectContained("unshare"); }
TEST_P(EscapeTest, CloneWithNamespaceFlagsDenied) { expectContained("clone_namespaces"); }
TEST_P(EscapeTest, SetnsDenied) { expectContained("setns"); }
TEST_P(EscapeTest, PtraceDenied) { expectContained("ptrace"); }
TEST_P(EscapeTest, KernelModuleLoadDenied) { expectContained("kernel_modules"); }
TEST_P(EscapeTest, KeyctlDenied) { expectContained("keyctl"); }
TEST_P(EscapeTest, BpfPerfUserfaultfdDenied) { expectContained("bpf"); }
TEST_P(EscapeTest, RebootAndSwapDenied) { expectContained("reboot"); }
TEST_P(EscapeTest, ClockSettingDenied) { expectContained("clock"); }
TEST_P(EscapeTest, OpenByHandleDenied) { expectContained("file_handles"); }
TEST_P(EscapeTest, MknodDeviceDenied) { expectContained("mknod"); }
TEST_P(EscapeTest, RawAndPacketSocketsDenied) { expectContained("raw_sockets"); }
TEST_P(EscapeTest, ProcKcoreUnusable) { expectContained("proc_kcore"); }
TEST_P(EscapeTest, ProcSysrqTriggerUnusable) { expectContained("sysrq_trigger"); }
TEST_P(EscapeTest, ProcSysReadOnly) { expectContained("proc_sys_readonly"); }
TEST_P(EscapeTest, NoCapabilitiesNoNewPrivsSeccomp) { expectContained("no_capabilities"); }
TEST_P(EscapeTest, UserAndCgroupNamespaces) { expectContained("user_namespace"); }
TEST_P(EscapeTest, DevHoldsOnlyTheAllowList) { expectContained("dev_allowlist"); }

TEST_P(EscapeTest, HostLoopbackAndServerUnreachable) {
  json::array targets{"127.0.0.1:" + std::to_string(w_->hostLoopback.port),
                      w_->server->endpoint().substr(w_->server->endpoint().rfind('/') + 1),
                      "1.1.1.1:80"};
  if (std::string addr = hostAddress(); !addr.empty()) {
    targets.push_back(json::value(addr + ":" + std::to_string(w_->hostAny.port)));
  }
  expectContained("network", {{"targets", targets}});
}

TEST_P(EscapeTest, OtherSandboxesUnreachable) {
  // Tenant b's server is up on port 9000 of its sandbox...
  auto r = w_->invokeAs(w_->keyB, "bserver", json::object{});
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  ASSERT_EQ(r->body, "tenant-b");
  // ...and port 9000 is nothing from here.
  expectContained("network", {{"targets", json::array{"127.0.0.1:9000"}}});
}

TEST_P(EscapeTest, ForkBombContained) {
  expectContained("fork_bomb", {{"max", 4096}});
  EXPECT_TRUE(serverHealthy());
  expectContained("no_capabilities");  // the function still serves
}

TEST_P(EscapeTest, TmpFillContained) {
  expectContained("tmp_fill", {{"limitBytes", 64 << 20}});
  EXPECT_TRUE(serverHealthy());
}

TEST_P(EscapeTest, MemoryBombKilledServerLivesOn) {
  auto r = w_->invokeAs(w_->server->key(), "probe", {{"attempt", "memory_bomb"}});
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->status, 200);
  auto body = parseJson(r->body);
  ASSERT_TRUE(body.isOk()) << r->body;
  EXPECT_EQ(body->as_object().at("errorType").as_string(), "OutOfMemory") << r->body;
  EXPECT_TRUE(serverHealthy());
  expectContained("no_capabilities");  // a new instance serves the next call
}

TEST_P(EscapeTest, OtherTenantCodeAndTmpUnreachable) {
  const std::string marker = "marker-" + GetParam().name;
  auto planted = attempt("plant", {{"marker", marker}}, "bsecret", w_->keyB);
  ASSERT_TRUE(planted["contained"].as_bool()) << json::serialize(planted);
  const fs::path data = w_->server->dataDir();
  auto res = attempt("other_tenant",
                     {{"marker", marker},
                      {"codeFiles", json::array{"b_secret_code.py"}},
                      {"paths", json::array{(data / "code").string(), (data / "logs").string(),
                                            (data / "run").string()}}});
  EXPECT_TRUE(res["contained"].as_bool()) << res["detail"].as_string();
  // Tenant b cannot reach tenant a's functions through the API either.
  auto r = w_->invokeAs(w_->keyB, "probe", {{"attempt", "no_capabilities"}});
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(r->status, 200);  // its own probe
  auto other = httpRequest(w_->server->endpoint(), "GET", "/2023-03-30/functions",
                           {{"authorization", "Bearer " + w_->keyB}}, "");
  ASSERT_TRUE(other.isOk());
  EXPECT_EQ(other->body.find("\"bserver\"") != std::string::npos, true);
}

// The code views the server itself produced for the two tenants' identical probe (under its code
// root in the data dir, and its FUSE mounts under /run/stratus/codepack): one per tenant, owned
// by that tenant's sandbox uid (range base from <data-dir>/tenant-ids + 65534). Even a process
// of tenant a's host uid that knew the host path -- or held a handle to the directory, as a bind
// mount would give it -- can neither list nor read tenant b's, and vice versa; each reads its
// own through the handle.
TEST_P(EscapeTest, OtherTenantCodeCacheUnreadableWithTenantUid) {
  for (const std::string& key : {w_->server->key(), w_->keyB}) {  // both hold the probe's code
    auto r = w_->invokeAs(key, "probe", {{"attempt", "no_capabilities"}});
    ASSERT_TRUE(r.isOk() && r->status == 200) << (r.isOk() ? r->body : r.status().toString());
  }
  std::map<std::string, uint32_t> base;  // tenant -> host id range base
  {
    std::istringstream in(slurp(w_->server->dataDir() / "tenant-ids"));
    for (std::string idx, tenant; in >> idx >> tenant;) {
      base[tenant] = (1u << 24) + static_cast<uint32_t>(std::stoul(idx)) * 65536;
    }
  }
  ASSERT_TRUE(base.count("default") && base.count("tenantb"))
      << slurp(w_->server->dataDir() / "tenant-ids");
  const std::set<uid_t> tenantUids = {base["default"] + 65534, base["tenantb"] + 65534};

  // sha -> owner uid -> view
  std::map<std::string, std::map<uid_t, fs::path>> views;
  const fs::path codeRoot = w_->server->dataDir() / "code";
  for (const fs::path& root : {codeRoot, defaultMountRoot(codeRoot)}) {
    std::error_code ec;
    for (const auto& o : fs::directory_iterator(root, ec)) {
      if (o.path().filename().string().rfind("owner-", 0) != 0) continue;
      for (const auto& v : fs::directory_iterator(o.path(), ec)) {
        struct stat st;
        if (v.path().filename().string()[0] == '.' || ::stat(v.path().c_str(), &st) != 0) continue;
        EXPECT_EQ(st.st_mode & 07777, 0500u) << v.path();
        EXPECT_EQ(st.st_gid, st.st_uid) << v.path();
        views[v.path().filename()][st.st_uid] = v.path();
      }
    }
  }
  const std::map<uid_t, fs::path>* probe = nullptr;
  for (const auto& [sha, owners] : views) {
    for (const auto& [uid, path] : owners) {
      EXPECT_TRUE(tenantUids.count(uid)) << path << " belongs to uid " << uid;
    }
    if (owners.size() == 2) probe = &owners;
  }
  ASSERT_NE(probe, nullptr) << "no code shared by both tenants found under " << codeRoot;

  auto asUid = [](uid_t uid, const std::function<int()>& fn) {
    pid_t pid = ::fork();
    if (pid == 0) {
      if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
          ::setresuid(uid, uid, uid) != 0) {
        _exit(255);
      }
      _exit(fn());
    }
    int status = 0;
    return ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) ? WEXITSTATUS(status) : 254;
  };
  auto readAt = [](int dir, const char* name) {
    int fd = ::openat(dir, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    char c;
    int r = ::read(fd, &c, 1) == 1 ? 0 : EIO;
    ::close(fd);
    return r;
  };
  auto listAt = [](int dir) {
    int fd = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    ::close(fd);
    return 0;
  };
  for (const auto& [me, mine] : *probe) {
    for (const auto& [them, theirs] : *probe) {
      if (me == them) continue;
      UniqueFd own(::open(mine.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      UniqueFd other(::open(theirs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      ASSERT_TRUE(own && other);
      const int ownFd = own.get(), otherFd = other.get();
      const std::string otherFile = (theirs / "probe.py").string();
      EXPECT_EQ(asUid(me, [&] { return readAt(ownFd, "probe.py"); }), 0) << mine;
      EXPECT_EQ(asUid(me, [&] { return listAt(ownFd); }), 0) << mine;
      EXPECT_EQ(asUid(me, [&] { return readAt(otherFd, "probe.py"); }), EACCES) << theirs;
      EXPECT_EQ(asUid(me, [&] { return listAt(otherFd); }), EACCES) << theirs;
      EXPECT_EQ(asUid(me, [&] { return readAt(AT_FDCWD, otherFile.c_str()); }), EACCES)
          << otherFile;
    }
  }
}

// Every process of every sandbox of the server (pool included) runs as an unprivileged host uid
// of a user-namespace range, never the host's root; with fresh sandboxes (instance id = sandbox
// id) each tenant's instance is found, and the two tenants' ranges differ.
TEST_P(EscapeTest, InstancesRunAsUnprivilegedHostUids) {
  auto hostUid = [](pid_t pid) -> long {
    std::string status = slurp("/proc/" + std::to_string(pid) + "/status");
    size_t at = status.find("\nUid:");
    return at == std::string::npos ? -1 : std::stol(status.substr(at + 5));  // -1: exited
  };
  std::map<std::string, std::string> instances;
  for (auto [tenant, key] :
       {std::pair<std::string, std::string>{"a", w_->server->key()}, {"b", w_->keyB}}) {
    auto r = w_->invokeAs(key, "probe", {{"attempt", "no_capabilities"}});
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    instances[tenant] = header(*r, "x-fc-instance-id");
  }
  const std::string parent =
      "stratus-" + sha256Hex(fs::absolute(w_->server->dataDir()).string()).substr(0, 12) + "/";
  auto all = processesInCgroup(parent);
  ASSERT_GE(all.size(), 4u);  // at least init + runtime of each tenant's instance
  for (pid_t pid : all) {
    long uid = hostUid(pid);
    if (uid >= 0) EXPECT_GE(uid, 1L << 24) << "pid " << pid << " runs as host uid " << uid;
  }
  if (GetParam().name != "fresh") return;
  std::map<std::string, std::set<long>> uids;
  for (const auto& [tenant, instance] : instances) {
    for (pid_t pid : processesInCgroup(instance)) uids[tenant].insert(hostUid(pid));
    EXPECT_FALSE(uids[tenant].empty()) << instance;
  }
  for (long u : uids["a"]) EXPECT_EQ(uids["b"].count(u), 0u) << "tenants share host uid " << u;
}

// Accounting: the call's duration, CPU time, peak memory and cold start come back as headers,
// and a REPORT line lands in the function's log.
TEST_P(EscapeTest, AccountingHeadersAndReportLine) {
  auto r = w_->invokeAs(w_->server->key(), "probe", {{"attempt", "fork_bomb"}, {"max", 20}});
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  for (const char* h :
       {"x-fc-invocation-duration", "x-fc-cpu-time", "x-fc-max-memory-usage", "x-fc-cold-start"}) {
    EXPECT_FALSE(header(*r, h).empty()) << h;
  }
  EXPECT_GT(std::stod(header(*r, "x-fc-max-memory-usage")), 1.0);
  const std::string rid = header(*r, "x-fc-request-id");
  const fs::path log = w_->server->dataDir() / "logs" / "default" / "probe.log";
  // The worker writes the line before it completes the call: no waiting.
  EXPECT_NE(slurp(log).find("REPORT RequestId: " + rid), std::string::npos) << slurp(log);
}

INSTANTIATE_TEST_SUITE_P(Paths, EscapeTest, ::testing::ValuesIn(kPaths),
                         [](const ::testing::TestParamInfo<ServerPath>& i) {
                           return i.param.name;
                         });

}  // namespace
}  // namespace stratus::e2e
