#include "codepack/codeload_bench.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <vector>

#include "codepack/blob_http.h"
#include "codepack/host_cache.h"
#include "codepack/pack_fuse.h"
#include "codepack/pack_test_util.h"
#include "codepack/zip_import.h"
#include "codepack/zip_writer.h"
#include "common/fs.h"
#include "common/json.h"
#include "common/log.h"

extern char** environ;

namespace stratus {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

constexpr const char* kHandler =
    "import json, os\n"
    "def handler(event, context):\n"
    "    with open(os.path.join(os.path.dirname(__file__), 'config.json')) as f:\n"
    "        return json.load(f)['greeting']\n";

Status buildPackage(const fs::path& dir, int64_t bytes) {
  RETURN_IF_ERROR(makeDirs(dir / "assets"));
  RETURN_IF_ERROR(writeFileAtomic(dir / "handler.py", kHandler));
  RETURN_IF_ERROR(writeFileAtomic(dir / "config.json", R"({"greeting": "hello"})"));
  // Incompressible assets (models, libraries, data) in 2 MiB files: zstd cannot shrink them.
  constexpr int64_t kFile = 2 << 20;
  for (int64_t i = 0, done = 0; done < bytes; ++i, done += kFile) {
    const int64_t n = std::min(kFile, bytes - done);
    RETURN_IF_ERROR(writeFileAtomic(dir / "assets" / ("blob-" + std::to_string(i) + ".bin"),
                                    randomBytes(static_cast<size_t>(n), static_cast<uint64_t>(i))));
  }
  return Status::ok();
}

// Runs the handler the way a runtime would (import from the code dir, call it) and returns
// what it printed.
Result<std::string> runHandler(const fs::path& codeDir) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return Status::fromErrno(errno, "pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::string dir = codeDir.string();
  const char* argv[] = {"/usr/bin/python3",
                        "-B",
                        "-S",
                        "-c",
                        "import sys; sys.path.insert(0, sys.argv[1]); import handler; "
                        "print(handler.handler({}, None))",
                        dir.c_str(),
                        nullptr};
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    return Status::fromErrno(rc, "spawn python3");
  }
  std::string got;
  char buf[256];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return internalError("handler failed (status " + std::to_string(status) + ")");
  }
  return got;
}

struct Sample {
  double firstByteMs = 0, firstResponseMs = 0, localMs = 0;
};

Result<Sample> measureOnce(const std::string& url, const std::string& sha, const fs::path& root,
                           bool lazy) {
  HostCodeCacheOptions o;
  o.root = root;
  o.useFuse = lazy;
  o.backgroundDownload = true;
  Sample s;
  {
    HostCodeCache host(std::make_shared<HttpBlobStore>(url), o);
    const auto t0 = Clock::now();
    ASSIGN_OR_RETURN(fs::path dir, host.acquire(sha, CodeOwner{}));
    UniqueFd fd(::open((dir / "config.json").c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return Status::fromErrno(errno, "open config.json");
    char c;
    if (::read(fd.get(), &c, 1) != 1) return Status::fromErrno(errno, "read config.json");
    s.firstByteMs = msSince(t0);
    // The first response: a fresh handler process on a separately loaded host would pay the
    // same load; here the load is already done, so add the handler's own time to first byte.
    const auto t1 = Clock::now();
    ASSIGN_OR_RETURN(std::string out, runHandler(dir));
    if (out != "hello\n") return internalError("handler answered '" + out + "'");
    s.firstResponseMs = s.firstByteMs + msSince(t1);
    RETURN_IF_ERROR(host.waitLocal(sha, std::chrono::minutes(5)));
    s.localMs = msSince(t0);
  }
  RETURN_IF_ERROR(removeTree(root));
  return s;
}

}  // namespace

int runCodeloadBench(const CodeloadBenchOptions& options) {
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "bench codeload: %s\n", s.toString().c_str());
    return 1;
  };
  const bool lazyOk = ::geteuid() == 0 && fuseAvailable();
  if (!lazyOk) {
    std::fprintf(stderr, "bench codeload: the lazy tier needs root and /dev/fuse\n");
    return 1;
  }
  std::unique_ptr<TempDir> tmp;
  fs::path work = options.workDir;
  if (work.empty()) {
    tmp = std::make_unique<TempDir>("stratus-bench-codeload");
    work = tmp->path();
  }
  if (Status s = makeDirs(work); !s) return fail(s);

  // Deploy: zip -> validated tree -> pack in the origin store (what POST /functions does).
  auto originStore = std::make_shared<LocalDirBlobStore>(work / "origin" / "blobs");
  CodeCache origin(work / "origin", CodeCacheOptions{false, {}, originStore, {}});
  struct Package {
    std::string name;
    int64_t bytes;
    std::string sha;
    int64_t zipBytes = 0;
    double deployMs = 0;
  };
  std::vector<Package> packages = {{"small", 4 << 10, ""},
                                   {"large", int64_t{options.sizeMb} << 20, ""}};
  for (Package& p : packages) {
    const fs::path src = work / ("src-" + p.name);
    if (Status s = buildPackage(src, p.bytes); !s) return fail(s);
    auto zip = zipDirectory(src);
    if (!zip) return fail(zip.status());
    (void)removeTree(src);
    const auto t0 = Clock::now();
    auto info = origin.install(*zip);
    if (!info) return fail(info.status());
    p.deployMs = msSince(t0);
    p.sha = info->sha256;
    p.zipBytes = static_cast<int64_t>(zip->size());
  }
  BlobServerOptions so;
  so.bytesPerSecond = options.originMbps * 1000 * 1000 / 8;
  so.firstByteDelay = std::chrono::milliseconds(options.originLatencyMs);
  auto server = BlobServer::start(originStore, so);
  if (!server) return fail(server.status());

  std::map<std::pair<std::string, std::string>, std::vector<Sample>> samples;
  for (int r = 0; r < options.runs; ++r) {
    for (const Package& p : packages) {
      for (bool lazy : {false, true}) {
        const std::string mode = lazy ? "lazy" : "full";
        auto s =
            measureOnce((*server)->url(), p.sha,
                        work / "hosts" / (p.name + "-" + mode + "-" + std::to_string(r)), lazy);
        if (!s) return fail(s.status().withContext(p.name + " " + mode));
        samples[{p.name, mode}].push_back(*s);
      }
    }
  }
  auto med = [&](const std::string& pkg, const std::string& mode, double Sample::*field) {
    std::vector<double> v;
    for (const Sample& s : samples[{pkg, mode}]) v.push_back(s.*field);
    return median(v);
  };
  const double fbRatio = med("large", "full", &Sample::firstByteMs) /
                         std::max(0.001, med("large", "lazy", &Sample::firstByteMs));
  const double frRatio = med("large", "full", &Sample::firstResponseMs) /
                         std::max(0.001, med("large", "lazy", &Sample::firstResponseMs));
  const double largeVsSmall = med("large", "lazy", &Sample::firstResponseMs) /
                              std::max(0.001, med("small", "lazy", &Sample::firstResponseMs));
  const double smallLazyVsFull = med("small", "lazy", &Sample::firstResponseMs) /
                                 std::max(0.001, med("small", "full", &Sample::firstResponseMs));

  if (options.json) {
    json::object o;
    o["sizeMb"] = options.sizeMb;
    o["runs"] = options.runs;
    o["originMbps"] = options.originMbps;
    o["originLatencyMs"] = options.originLatencyMs;
    json::array rows;
    for (const Package& p : packages) {
      for (const char* mode : {"full", "lazy"}) {
        json::object row;
        row["package"] = p.name;
        row["mode"] = mode;
        row["unpackedBytes"] = p.bytes;
        row["deployMs"] = p.deployMs;
        row["firstByteMs"] = med(p.name, mode, &Sample::firstByteMs);
        row["firstResponseMs"] = med(p.name, mode, &Sample::firstResponseMs);
        row["wholePackLocalMs"] = med(p.name, mode, &Sample::localMs);
        rows.push_back(row);
      }
    }
    o["results"] = rows;
    o["largeFullOverLazyFirstByte"] = fbRatio;
    o["largeFullOverLazyFirstResponse"] = frRatio;
    o["largeLazyOverSmallLazyFirstResponse"] = largeVsSmall;
    o["smallLazyOverSmallFullFirstResponse"] = smallLazyVsFull;
    std::printf("%s\n", json::serialize(o).c_str());
    return 0;
  }
  std::printf("code load: %d MB package vs a 4 KB one, origin %s%s, %d runs (medians)\n",
              options.sizeMb,
              options.originMbps > 0 ? (std::to_string(options.originMbps) + " Mbit/s").c_str()
                                     : "unthrottled loopback",
              options.originLatencyMs > 0
                  ? (", +" + std::to_string(options.originLatencyMs) + " ms per request").c_str()
                  : "",
              options.runs);
  std::printf("%-8s %-5s %11s %14s %17s %15s\n", "package", "mode", "deploy ms", "first byte ms",
              "first response ms", "all local ms");
  for (const Package& p : packages) {
    for (const char* mode : {"full", "lazy"}) {
      std::printf("%-8s %-5s %11.1f %14.2f %17.2f %15.1f\n", p.name.c_str(), mode, p.deployMs,
                  med(p.name, mode, &Sample::firstByteMs),
                  med(p.name, mode, &Sample::firstResponseMs), med(p.name, mode, &Sample::localMs));
    }
  }
  std::printf(
      "large package, full / lazy: first byte %.1fx, first response %.1fx (target >= 10x: %s)\n",
      fbRatio, frRatio, frRatio >= 10 ? "met" : "MISSED");
  std::printf("large lazy / small lazy first response: %.2fx (target <= 2x: %s)\n", largeVsSmall,
              largeVsSmall <= 2 ? "met" : "MISSED");
  std::printf("small package, lazy / full first response: %.2fx (no regression: %s)\n",
              smallLazyVsFull, smallLazyVsFull <= 1.1 ? "met" : "MISSED");
  return 0;
}

void addCodeloadBench(CLI::App* bench) {
  auto o = std::make_shared<CodeloadBenchOptions>();
  CLI::App* c = bench->add_subcommand(
      "codeload", "Time to first response of a large package: lazy FUSE loading vs full extract");
  c->add_option("--size-mb", o->sizeMb, "Unpacked size of the large package")
      ->capture_default_str();
  c->add_option("--runs", o->runs, "Runs per package and mode")->capture_default_str();
  c->add_option("--origin-mbps", o->originMbps, "Throttle the origin (0: loopback speed)")
      ->capture_default_str();
  c->add_option("--origin-latency-ms", o->originLatencyMs, "Delay per origin request")
      ->capture_default_str();
  c->add_option("--work-dir", o->workDir, "Where to build packages and host caches");
  c->add_flag("--json", o->json, "Machine-readable results");
  c->callback([o] {
    int rc = runCodeloadBench(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace stratus
