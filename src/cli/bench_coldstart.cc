#include "cli/bench_coldstart.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "cli/client_commands.h"
#include "codepack/zip_writer.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/json.h"
#include "http/http_client.h"
#include "sandbox/process_sandbox.h"

extern char** environ;

namespace stratus {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double msSince(SteadyClock::time_point t0) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
}

struct Stats {
  size_t n = 0;
  double p50 = 0, p99 = 0, min = 0, max = 0;
};

Stats statsOf(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.n = v.size();
  auto at = [&](double p) {
    size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  };
  s.p50 = at(50);
  s.p99 = at(99);
  s.min = v.front();
  s.max = v.back();
  return s;
}

void printRow(const std::string& what, const Stats& s, const std::string& note = "") {
  if (s.n == 0) {
    std::printf("  %-44s %s\n", what.c_str(), note.empty() ? "(not measured)" : note.c_str());
    return;
  }
  std::printf("  %-44s n=%-4zu p50 %8.2f ms  p99 %8.2f ms  min %7.2f  max %8.2f  %s\n",
              what.c_str(), s.n, s.p50, s.p99, s.min, s.max, note.c_str());
}

// Runs argv to completion (stdout/stderr to /dev/null unless `out`), returns its wait status.
Result<int> runQuiet(const std::vector<std::string>& argv, const std::string& cwd = "") {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Status::fromErrno(rc, "start " + argv[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// ---- baselines ---------------------------------------------------------------------------------

std::vector<std::string> bwrapPython() {
  // The minimal bwrap sandbox that can run the distribution's python: every namespace unshared,
  // /usr read-only, fresh /proc, /dev and /tmp.
  return {"bwrap",
          "--unshare-all",
          "--die-with-parent",
          "--ro-bind",
          "/usr",
          "/usr",
          "--symlink",
          "usr/lib",
          "/lib",
          "--symlink",
          "usr/lib64",
          "/lib64",
          "--symlink",
          "usr/bin",
          "/bin",
          "--proc",
          "/proc",
          "--dev",
          "/dev",
          "--tmpfs",
          "/tmp",
          "python3",
          "-c",
          "pass"};
}

// A runc bundle whose container runs /usr/bin/true on a root of /usr (read-only bind) and the
// usr-merge symlinks.
class RuncBundle {
 public:
  static Result<std::unique_ptr<RuncBundle>> create(const fs::path& dir) {
    RETURN_IF_ERROR(makeDirs(dir / "rootfs", 0755));
    for (const char* d : {"usr", "proc", "dev", "tmp"}) {
      RETURN_IF_ERROR(makeDirs(dir / "rootfs" / d, 0755));
    }
    for (const char* l : {"bin", "lib", "lib64", "sbin"}) {
      std::error_code ec;
      fs::create_symlink(std::string("usr/") + l, dir / "rootfs" / l, ec);
    }
    auto spec = runQuiet({"runc", "spec", "--bundle", dir.string()});
    if (!spec.isOk()) return spec.status();
    if (!WIFEXITED(*spec) || WEXITSTATUS(*spec) != 0) return unavailable("runc spec failed");
    ASSIGN_OR_RETURN(std::string text, readFile(dir / "config.json"));
    ASSIGN_OR_RETURN(json::value cfg, parseJson(text));
    auto& o = cfg.as_object();
    o["process"].as_object()["terminal"] = false;
    o["process"].as_object()["args"] = json::array{"/usr/bin/true"};
    o["root"].as_object()["readonly"] = true;
    json::object usr;
    usr["destination"] = "/usr";
    usr["type"] = "bind";
    usr["source"] = "/usr";
    usr["options"] = json::array{"rbind", "ro"};
    o["mounts"].as_array().push_back(usr);
    RETURN_IF_ERROR(writeFileAtomic(dir / "config.json", json::serialize(cfg), 0644));
    return std::unique_ptr<RuncBundle>(new RuncBundle(dir));
  }
  // One `runc run` of the container, wall time in ms.
  Result<double> runOnce() {
    const std::string id = "stratus-bench-" + randomHex(6);
    auto t0 = SteadyClock::now();
    auto st = runQuiet({"runc", "run", "--bundle", dir_.string(), id});
    const double ms = msSince(t0);
    if (!st.isOk()) return st.status();
    if (!WIFEXITED(*st) || WEXITSTATUS(*st) != 0) {
      (void)runQuiet({"runc", "delete", "-f", id});
      return unavailable("runc run exited with status " + std::to_string(*st));
    }
    return ms;
  }

 private:
  explicit RuncBundle(fs::path dir) : dir_(std::move(dir)) {}
  fs::path dir_;
};

Result<double> timeRun(const std::vector<std::string>& argv) {
  auto t0 = SteadyClock::now();
  ASSIGN_OR_RETURN(int st, runQuiet(argv));
  const double ms = msSince(t0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    return unavailable(argv[0] + " exited with status " + std::to_string(st));
  }
  return ms;
}

// ---- a server of our own -----------------------------------------------------------------------

// `stratus up` on a fresh data dir and a free port, output in <dir>/server.log. Stopped (SIGTERM,
// then SIGKILL) and removed on destruction.
class BenchServer {
 public:
  static Result<std::unique_ptr<BenchServer>> start(const std::vector<std::string>& extraArgs) {
    char tmpl[] = "/tmp/stratus-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return Status::fromErrno(errno, "mkdtemp");
    fs::path dir = tmpl;
    const std::string log = (dir / "server.log").string();
    std::vector<std::string> argv = {"/proc/self/exe",        "up",          "--data-dir",
                                     (dir / "data").string(), "--listen",    "127.0.0.1:0",
                                     "--no-client-config",    "--log-level", "warn"};
    argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return Status::fromErrno(rc, "start stratus up");
    std::unique_ptr<BenchServer> s(new BenchServer(pid, dir));
    const std::string marker = "stratus listening on ";
    for (auto deadline = SteadyClock::now() + 60s; SteadyClock::now() < deadline;) {
      auto text = readFile(log);
      if (text.isOk()) {
        size_t at = text->find(marker);
        if (at != std::string::npos) {
          size_t end = text->find('\n', at);
          if (end != std::string::npos) {
            s->endpoint_ = text->substr(at + marker.size(), end - at - marker.size());
            break;
          }
        }
      }
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        s->pid_ = -1;
        return unavailable("stratus up exited: " + (text.isOk() ? *text : std::string()));
      }
      std::this_thread::sleep_for(20ms);  // polling a log file; the bench is not a test
    }
    if (s->endpoint_.empty()) return unavailable("stratus up did not start within 60 s");
    ASSIGN_OR_RETURN(std::string key, readFile(dir / "data" / "admin-key"));
    while (!key.empty() && (key.back() == '\n' || key.back() == ' ')) key.pop_back();
    s->headers_["Authorization"] = "Bearer " + key;
    ASSIGN_OR_RETURN(s->client_, HttpClient::connect(s->endpoint_, 120s));
    return s;
  }

  ~BenchServer() {
    client_.reset();
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      auto deadline = SteadyClock::now() + 120s;
      while (::waitpid(pid_, &status, WNOHANG) != pid_ && SteadyClock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
      }
      if (SteadyClock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
      }
    }
    // STRATUS_BENCH_KEEP=1 keeps the server's data dir and log (to look into a failure).
    const char* keep = std::getenv("STRATUS_BENCH_KEEP");
    if (keep != nullptr && std::string(keep) == "1") {
      std::fprintf(stderr, "kept the server's data dir and log: %s\n", dir_.c_str());
    } else {
      (void)removeTree(dir_);
    }
  }

  pid_t pid() const { return pid_; }
  const std::string& endpoint() const { return endpoint_; }
  const HttpHeaders& headers() const { return headers_; }

  Status deploy(const std::string& name, const std::string& runtime, const std::string& zip) {
    DeployOptions d;
    d.name = name;
    d.runtime = runtime;
    d.handler = "index.handler";
    d.memoryMb = 128;
    d.timeoutSec = 10;
    const std::string body = json::serialize(deployRequestBody(d, zip, /*create=*/true));
    HttpHeaders h = headers_;
    h["Content-Type"] = "application/json";
    ASSIGN_OR_RETURN(HttpResponse r, client_->request("POST", "/2023-03-30/functions", h, body));
    if (r.status / 100 != 2) {
      return unavailable("deploy " + name + ": HTTP " + std::to_string(r.status) + " " +
                         r.body.substr(0, 300));
    }
    return Status::ok();
  }

  struct Call {
    double ms = 0;
    bool cold = false;
  };
  Result<Call> invoke(HttpClient& client, const std::string& name) {
    auto t0 = SteadyClock::now();
    ASSIGN_OR_RETURN(
        HttpResponse r,
        client.request("POST", "/2023-03-30/functions/" + name + "/invocations", headers_, "{}"));
    Call c;
    c.ms = msSince(t0);
    if (r.status != 200 || r.headers.count("x-fc-error-type") != 0) {
      return unavailable("invoke " + name + ": HTTP " + std::to_string(r.status) + " " +
                         r.body.substr(0, 300));
    }
    auto cold = r.headers.find("x-fc-cold-start");
    c.cold = cold != r.headers.end() && cold->second == "true";
    return c;
  }
  Result<Call> invoke(const std::string& name) { return invoke(*client_, name); }

 private:
  BenchServer(pid_t pid, fs::path dir) : pid_(pid), dir_(std::move(dir)) {}
  pid_t pid_;
  fs::path dir_;
  std::string endpoint_;
  HttpHeaders headers_;
  std::unique_ptr<HttpClient> client_;
};

constexpr const char* kPyHello = "def handler(event, context):\n    return 'hello'\n";
constexpr const char* kJsHello = "exports.handler = async () => 'hello';\n";

Result<std::string> helloZip(const std::string& runtime) {
  ZipWriter z;
  RETURN_IF_ERROR(runtime == "python3" ? z.addFile("index.py", kPyHello)
                                       : z.addFile("index.js", kJsHello));
  return z.finish();
}

// ---- coldstart ---------------------------------------------------------------------------------

struct ColdStartOptions {
  int rounds = 30;
  std::vector<std::string> runtimes = {"python3", "nodejs"};
  int pacingMs = 0;  // 0: per runtime (python3 250, nodejs 500)
};

int runColdStart(const ColdStartOptions& o) {
  std::printf("stratus bench coldstart: %d cold starts per runtime and figure\n", o.rounds);
  auto pooled = BenchServer::start({});
  if (!pooled.isOk()) {
    std::fprintf(stderr, "start server: %s\n", pooled.status().toString().c_str());
    return 1;
  }
  auto cold = BenchServer::start({"--no-pool"});
  if (!cold.isOk()) {
    std::fprintf(stderr, "start server: %s\n", cold.status().toString().c_str());
    return 1;
  }
  auto fresh = BenchServer::start({"--no-pool", "--no-templates"});
  if (!fresh.isOk()) {
    std::fprintf(stderr, "start server: %s\n", fresh.status().toString().c_str());
    return 1;
  }
  char tmpl[] = "/tmp/stratus-bench-runc-XXXXXX";
  std::unique_ptr<RuncBundle> runc;
  if (::mkdtemp(tmpl) != nullptr) {
    auto b = RuncBundle::create(fs::path(tmpl) / "bundle");
    if (b.isOk())
      runc = std::move(b).value();
    else
      std::printf("  (runc baseline unavailable: %s)\n", b.status().toString().c_str());
  }
  int failures = 0;
  for (const std::string& rt : o.runtimes) {
    auto zip = helloZip(rt);
    if (!zip.isOk()) return 1;
    const int n = o.rounds + 2;  // two warm-ups per server
    for (int i = 0; i < n; ++i) {
      for (BenchServer* s : {pooled->get(), cold->get(), fresh->get()}) {
        Status st = s->deploy("cs-" + rt + "-" + std::to_string(i), rt, *zip);
        if (!st.isOk()) {
          std::fprintf(stderr, "%s\n", st.toString().c_str());
          return 1;
        }
      }
    }
    const int pacing = o.pacingMs > 0 ? o.pacingMs : (rt == "nodejs" ? 500 : 250);
    // Let the pool warm up (its first blanks start with the server).
    std::this_thread::sleep_for(std::chrono::milliseconds(pacing * 4));
    std::vector<double> hit, miss, missFresh, warm, notCold, base, runcMs;
    for (int i = 0; i < n; ++i) {
      const std::string name = "cs-" + rt + "-" + std::to_string(i);
      // Interleaved, so that both servers and the baselines see the same background load.
      auto a = (*pooled)->invoke(name);
      std::this_thread::sleep_for(std::chrono::milliseconds(pacing));
      auto b = (*cold)->invoke(name);
      auto w = (*pooled)->invoke(name);
      std::this_thread::sleep_for(std::chrono::milliseconds(pacing));
      auto f = (*fresh)->invoke(name);
      std::this_thread::sleep_for(std::chrono::milliseconds(pacing));
      auto bl = rt == "nodejs" ? timeRun({"node", "-e", "0"}) : timeRun(bwrapPython());
      Result<double> rc = runc ? runc->runOnce() : Result<double>(unavailable("no runc"));
      if (!a.isOk() || !b.isOk() || !w.isOk()) {
        ++failures;
        std::fprintf(stderr, "  %s\n",
                     (!a.isOk()   ? a.status()
                      : !b.isOk() ? b.status()
                                  : w.status())
                         .toString()
                         .c_str());
        continue;
      }
      if (i < 2) continue;  // warm-ups
      if (!a->cold || !b->cold) notCold.push_back(1);
      hit.push_back(a->ms);
      miss.push_back(b->ms);
      if (f.isOk()) missFresh.push_back(f->ms);
      warm.push_back(w->ms);
      if (bl.isOk()) base.push_back(*bl);
      if (rc.isOk()) runcMs.push_back(*rc);
    }
    std::printf("%s (request -> response through the server, function with no instance):\n",
                rt.c_str());
    printRow("pool hit (warm pool, default server)", statsOf(hit), "target p50<=10 p99<=30");
    printRow("pool miss (--no-pool): template fork", statsOf(miss), "target p50<=60");
    printRow("pool miss, no template (--no-templates)", statsOf(missFresh),
             rt == "python3" ? "exec of python3" : "exec of node");
    printRow("warm call, same function (reference)", statsOf(warm));
    printRow(
        rt == "nodejs" ? "baseline: node -e 0" : "baseline: bwrap --unshare-all python3 -c pass",
        statsOf(base));
    printRow("baseline: runc run (/usr/bin/true)", statsOf(runcMs));
    if (!notCold.empty()) {
      std::printf("  note: %zu calls were not cold starts (x-fc-cold-start: false)\n",
                  notCold.size());
    }
  }
  pooled->reset();
  cold->reset();
  fresh->reset();
  (void)removeTree(tmpl);
  return failures == 0 ? 0 : 1;
}

// ---- startrate ---------------------------------------------------------------------------------

struct StartRateOptions {
  int seconds = 10;
  int threads = 2;
  size_t netnsPool = 0;  // namespaces made ahead of time; 0: CLONE_NEWNET in every create
};

int runStartRate(const StartRateOptions& o) {
  char tmpl[] = "/tmp/stratus-bench-startrate-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  const fs::path dir = tmpl;
  // Where `stratus up` keeps its sandbox state (tmpfs when the host has one).
  ProcessSandboxOptions so = ProcessSandboxOptions::forDataDir(dir);
  so.cgroupParent = "stratus-bench-" + randomHex(4);
  so.netnsPool = o.netnsPool;
  auto backend = ProcessSandboxBackend::create(so);
  if (!backend.isOk()) {
    std::fprintf(stderr, "%s\n", backend.status().toString().c_str());
    return 1;
  }
  std::printf("stratus bench startrate: %d s, %d creating threads, profile: %s, netns pool %zu\n",
              o.seconds, o.threads,
              (*backend)->hardened() ? "hardened (userns + seccomp)" : "plain", o.netnsPool);
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::unique_ptr<Sandbox>> toDestroy;  // GUARDED_BY(mu)
  bool creatorsDone = false;                       // GUARDED_BY(mu)
  size_t maxBacklog = 0;                           // GUARDED_BY(mu)
  std::atomic<int64_t> created{0}, failed{0}, destroyed{0};
  std::vector<std::vector<double>> lat(static_cast<size_t>(o.threads));
  std::string firstError;
  // Destroys behind the creators (killing a sandbox and removing its cgroup is work too).
  std::thread destroyer([&] {
    for (;;) {
      std::unique_ptr<Sandbox> s;
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return creatorsDone || !toDestroy.empty(); });
        if (toDestroy.empty()) return;
        s = std::move(toDestroy.front());
        toDestroy.pop_front();
      }
      s.reset();
      ++destroyed;
    }
  });
  const auto t0 = SteadyClock::now();
  const auto end = t0 + std::chrono::seconds(o.seconds);
  std::atomic<int> creatorsLeft{o.threads};
  std::vector<std::thread> creators;
  for (int t = 0; t < o.threads; ++t) {
    creators.emplace_back([&, t] {
      while (SteadyClock::now() < end) {
        SandboxSpec spec;
        spec.id = "sr-" + randomHex(6);
        spec.tenant = "bench";
        spec.argv = {"/usr/bin/sleep", "600"};
        spec.cwd = "/";
        auto c0 = SteadyClock::now();
        auto sb = (*backend)->create(spec);
        lat[static_cast<size_t>(t)].push_back(msSince(c0));
        if (!sb.isOk()) {
          if (failed++ == 0) firstError = sb.status().toString();
          continue;
        }
        ++created;
        std::lock_guard<std::mutex> lock(mu);
        toDestroy.push_back(std::move(sb).value());
        maxBacklog = std::max(maxBacklog, toDestroy.size());
        cv.notify_one();
      }
      // Sandboxes die with the thread that created them (PR_SET_PDEATHSIG): wait for the
      // destroyer before leaving.
      if (--creatorsLeft == 0) {
        std::lock_guard<std::mutex> lock(mu);
        creatorsDone = true;
        cv.notify_all();
      }
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return creatorsDone; });
    });
  }
  for (auto& t : creators) t.join();
  const double wall = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  destroyer.join();
  const double drained = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  std::printf(
      "  created %lld sandboxes in %.1f s: %.0f creations/s (target >= 300); destroyed "
      "all after %.1f s (%.0f/s end to end); max backlog %zu; failures %lld\n",
      static_cast<long long>(created.load()), wall, created.load() / wall, drained,
      created.load() / drained, maxBacklog, static_cast<long long>(failed.load()));
  if (!firstError.empty()) std::printf("  first failure: %s\n", firstError.c_str());
  printRow("create() latency under this load", statsOf(all));
  if (o.netnsPool > 0) {
    auto ns = (*backend)->netnsPoolStats();
    std::printf("  netns pool: %llu creates joined a pooled namespace, %llu found it empty\n",
                static_cast<unsigned long long>(ns.taken),
                static_cast<unsigned long long>(ns.fallbacks));
  }
  backend->reset();

  // Baselines: sequential spawn-to-exit rate on the same number of threads, 3 s each.
  auto rate = [&](const std::string& what, std::function<Result<double>()> once) {
    std::atomic<int64_t> n{0};
    std::string err;
    std::mutex errMu;
    const auto bend = SteadyClock::now() + 3s;
    std::vector<std::thread> ts;
    for (int t = 0; t < o.threads; ++t) {
      ts.emplace_back([&] {
        while (SteadyClock::now() < bend) {
          auto r = once();
          if (r.isOk()) {
            ++n;
          } else {
            std::lock_guard<std::mutex> lock(errMu);
            if (err.empty()) err = r.status().toString();
            return;
          }
        }
      });
    }
    for (auto& t : ts) t.join();
    if (!err.empty() && n == 0) {
      std::printf("  baseline %-40s unavailable: %s\n", what.c_str(), err.c_str());
    } else {
      std::printf("  baseline %-40s %.0f /s (%d threads, run to exit)\n", what.c_str(),
                  static_cast<double>(n.load()) / 3.0, o.threads);
    }
  };
  rate("bwrap --unshare-all /usr/bin/true", [] {
    auto argv = bwrapPython();
    argv.resize(argv.size() - 3);
    argv.push_back("/usr/bin/true");
    return timeRun(argv);
  });
  auto bundle = RuncBundle::create(dir / "bundle");
  if (bundle.isOk()) {
    rate("runc run (/usr/bin/true)", [&] { return (*bundle)->runOnce(); });
  } else {
    std::printf("  baseline runc unavailable: %s\n", bundle.status().toString().c_str());
  }
  (void)removeTree(dir);
  return failed == 0 ? 0 : 1;
}

// ---- density -----------------------------------------------------------------------------------

struct DensityOptions {
  int instances = 500;
  std::string runtime = "python3";
  int startThreads = 4;
  int64_t minFreeMb = 3072;  // stop starting instances below this much available host memory
  bool templates = true;     // false: the server runs with --no-templates (exec'd runtimes)
};

int64_t memAvailableKb() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t v = 0;
  std::string unit;
  while (in >> key >> v >> unit) {
    if (key == "MemAvailable:") return v;
  }
  return 0;
}

int64_t pssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Pss:", 0) == 0) return std::atoll(line.c_str() + 4);
  }
  return 0;
}

// pid -> parent pid for every process.
std::map<pid_t, pid_t> parents() {
  std::map<pid_t, pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream in(e.path() / "stat");
    std::string stat;
    std::getline(in, stat);
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state;
    pid_t ppid;
    if (rest >> state >> ppid) out[std::atoi(name.c_str())] = ppid;
  }
  return out;
}

int runDensity(const DensityOptions& o) {
  std::printf("stratus bench density: %d idle %s instances (one hello function each)\n",
              o.instances, o.runtime.c_str());
  const int64_t availBefore = memAvailableKb();
  std::vector<std::string> serverArgs = {"--keep-alive", "3600"};
  if (!o.templates) serverArgs.push_back("--no-templates");
  auto server = BenchServer::start(serverArgs);
  if (!server.isOk()) {
    std::fprintf(stderr, "start server: %s\n", server.status().toString().c_str());
    return 1;
  }
  auto zip = helloZip(o.runtime);
  if (!zip.isOk()) return 1;
  auto d0 = SteadyClock::now();
  for (int i = 0; i < o.instances; ++i) {
    Status st = (*server)->deploy("d-" + std::to_string(i), o.runtime, *zip);
    if (!st.isOk()) {
      std::fprintf(stderr, "%s\n", st.toString().c_str());
      return 1;
    }
  }
  std::printf("  deployed %d functions in %.1f s (one unpacked code tree: same sha256)\n",
              o.instances, msSince(d0) / 1000);
  const int64_t availDeployed = memAvailableKb();
  std::atomic<int> next{0}, started{0}, errors{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<double> coldMs;
  std::vector<int> alive;  // indices of the functions with an instance
  std::string firstError;
  auto s0 = SteadyClock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < o.startThreads; ++t) {
    ts.emplace_back([&] {
      auto client = HttpClient::connect((*server)->endpoint(), 120s);
      if (!client.isOk()) return;
      for (int i; !stop && (i = next++) < o.instances;) {
        auto r = (*server)->invoke(**client, "d-" + std::to_string(i));
        std::lock_guard<std::mutex> lock(mu);
        if (!r.isOk()) {
          if (errors++ == 0) firstError = r.status().toString();
          continue;
        }
        coldMs.push_back(r->ms);
        alive.push_back(i);
        const int n = ++started;
        if (n % 250 == 0) {
          std::printf("  %d instances alive after %.1f s (available memory %lld MB)\n", n,
                      msSince(s0) / 1000, static_cast<long long>(memAvailableKb() >> 10));
          std::fflush(stdout);
        }
        if (memAvailableKb() < o.minFreeMb * 1024) stop = true;
      }
    });
  }
  for (auto& t : ts) t.join();
  const double startSec = msSince(s0) / 1000;
  if (stop)
    std::printf("  stopped early: less than %lld MB available\n",
                static_cast<long long>(o.minFreeMb));
  if (errors > 0) std::printf("  %d starts failed; first: %s\n", errors.load(), firstError.c_str());
  std::printf("  %d instances started in %.1f s (%.0f/s through the server)\n", started.load(),
              startSec, started.load() / startSec);
  printRow("cold start while filling the host", statsOf(coldMs));

  // PSS of every sandbox process: the server's children are the sandboxes' inits, their children
  // the runtimes (and a few warm-pool blanks, counted as sandboxes too).
  auto pp = parents();
  std::vector<pid_t> inits, runtimes;
  for (const auto& [pid, ppid] : pp) {
    if (ppid == (*server)->pid()) inits.push_back(pid);
  }
  std::set<pid_t> initSet(inits.begin(), inits.end());
  for (const auto& [pid, ppid] : pp) {
    if (initSet.count(ppid) != 0) runtimes.push_back(pid);
  }
  int64_t initPss = 0, rtPss = 0;
  for (pid_t p : inits) initPss += pssKb(p);
  for (pid_t p : runtimes) rtPss += pssKb(p);
  const int64_t availNow = memAvailableKb();
  const size_t sandboxes = std::max<size_t>(1, inits.size());
  std::printf("  sandboxes alive: %zu (%d instances + warm-pool blanks)\n", inits.size(),
              started.load());
  std::printf(
      "  PSS per sandbox: %.2f MB (runtime %.2f MB + init %.2f MB); target python3 <= 8 MB\n",
      (initPss + rtPss) / 1024.0 / sandboxes, rtPss / 1024.0 / sandboxes,
      initPss / 1024.0 / sandboxes);
  std::printf(
      "  host memory used: %lld MB in all (%.2f MB per sandbox; includes kernel memory: "
      "page tables, namespaces, cgroups, sockets); of which deploys %lld MB\n",
      static_cast<long long>((availBefore - availNow) >> 10),
      (availBefore - availNow) / 1024.0 / sandboxes,
      static_cast<long long>((availBefore - availDeployed) >> 10));

  // Warm calls with everything alive: random functions, one at a time.
  std::mt19937 rng(42);
  std::vector<double> warm;
  int warmErrors = 0, coldAgain = 0;
  std::string firstWarmError;
  for (int i = 0; i < 1000 && !alive.empty(); ++i) {
    const auto t0 = SteadyClock::now();
    auto r = (*server)->invoke("d-" + std::to_string(alive[rng() % alive.size()]));
    if (r.isOk()) {
      if (!r->cold) warm.push_back(r->ms);
      coldAgain += r->cold ? 1 : 0;
    } else {
      if (firstWarmError.empty()) {
        char took[64];
        std::snprintf(took, sizeof took, " (call %d, after %.1f ms)", i, msSince(t0));
        firstWarmError = r.status().toString() + took;
      }
      ++warmErrors;
    }
  }
  printRow("warm call with all alive (random function)", statsOf(warm), "target < 5 ms");
  if (coldAgain) std::printf("  %d calls found their instance gone (cold again)\n", coldAgain);
  if (warmErrors) {
    std::printf("  %d warm calls failed; the first: %s\n", warmErrors, firstWarmError.c_str());
  }
  auto t0 = SteadyClock::now();
  server->reset();
  std::printf("  server shut down (all sandboxes removed) in %.1f s\n", msSince(t0) / 1000);
  return errors == 0 && warmErrors == 0 ? 0 : 1;
}

}  // namespace

void addColdStartBenchCommands(CLI::App& bench) {
  auto cs = std::make_shared<ColdStartOptions>();
  CLI::App* c = bench.add_subcommand(
      "coldstart", "Cold start through a server it starts: pool hit / pool miss, baselines");
  c->add_option("-n,--rounds", cs->rounds, "Cold starts per runtime and figure")
      ->capture_default_str();
  c->add_option("--runtime", cs->runtimes, "Runtimes to measure")->capture_default_str();
  c->add_option("--pacing-ms", cs->pacingMs, "Pause between cold starts (0: per runtime)");
  c->callback([cs] {
    int rc = runColdStart(*cs);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  auto sr = std::make_shared<StartRateOptions>();
  CLI::App* s = bench.add_subcommand("startrate", "Sandbox creations per second, sustained");
  s->add_option("--seconds", sr->seconds, "How long to create sandboxes")->capture_default_str();
  s->add_option("--threads", sr->threads, "Creating threads")->capture_default_str();
  s->add_option("--netns-pool", sr->netnsPool,
                "Network namespaces made ahead of time (0: CLONE_NEWNET in every create)")
      ->capture_default_str();
  s->callback([sr] {
    int rc = runStartRate(*sr);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });

  auto de = std::make_shared<DensityOptions>();
  CLI::App* d =
      bench.add_subcommand("density", "Idle instances per host: PSS, host memory, warm latency");
  d->add_option("-n,--instances", de->instances, "Idle instances to start")->capture_default_str();
  d->add_option("--runtime", de->runtime, "python3 or nodejs")->capture_default_str();
  d->add_flag("!--no-templates", de->templates,
              "Server with --no-templates: runtimes exec'd in their sandbox (the comparison)");
  d->add_option("--start-threads", de->startThreads, "Concurrent cold starts while filling")
      ->capture_default_str();
  d->add_option("--min-free-mb", de->minFreeMb,
                "Stop starting instances when less host memory than this is available")
      ->capture_default_str();
  d->callback([de] {
    int rc = runDensity(*de);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace stratus
