// `stratus bench invoke` and the baseline helpers. No Beast here: the load generator lives in
// http/http_client.cc (the one client-side Beast translation unit).
#include "cli/bench.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>
#include <thread>

#include "cli/bench_coldstart.h"
#include "cli/client_commands.h"
#include "codepack/codeload_bench.h"
#include "common/json.h"
#include "common/unique_fd.h"
#include "sandbox/sandbox_bench.h"

extern char** environ;

namespace stratus {
namespace {

using namespace std::chrono_literals;

struct Child {
  pid_t pid = -1;
  UniqueFd out;  // the child's stdout and stderr
};

// Starts argv with stdin from /dev/null and stdout+stderr into a pipe.
Result<Child> spawnCapture(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::fromErrno(errno, "pipe for " + argv[0]);
  UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Status::fromErrno(rc, "start " + argv[0]);
  return Child{pid, std::move(readEnd)};
}

// Reads from fd until `done(text)` says so, EOF, or the deadline.
template <typename Done>
std::string readUntil(int fd, Duration timeout, Done done) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(out)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char buf[4096];
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

// Reaps pid, escalating to SIGKILL when it does not exit within `grace`.
int reap(pid_t pid, Duration grace) {
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < deadline) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    std::this_thread::sleep_for(5ms);
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// A Lua string literal holding arbitrary bytes (decimal escapes for anything unusual).
std::string luaString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == ' ' || c == '-' || c == '_' || c == '.' || c == ':' || c == '/') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\%03u", c);
      out += buf;
    }
  }
  return out + "\"";
}

// "387.00us", "1.78ms", "2.00s", "1.50m" -> microseconds; -1 if unparsable.
int64_t parseWrkDuration(std::string_view text) {
  std::string t(text);
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (end == t.c_str()) return -1;
  std::string_view unit(end);
  if (unit == "us") return static_cast<int64_t>(v);
  if (unit == "ms") return static_cast<int64_t>(v * 1e3);
  if (unit == "s") return static_cast<int64_t>(v * 1e6);
  if (unit == "m") return static_cast<int64_t>(v * 60e6);
  return -1;
}

std::string formatUs(double us) {
  char buf[32];
  if (us < 1000) {
    std::snprintf(buf, sizeof buf, "%.0f us", us);
  } else if (us < 1e6) {
    std::snprintf(buf, sizeof buf, "%.2f ms", us / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", us / 1e6);
  }
  return buf;
}

// One row of the report.
struct Row {
  std::string target;  // "stratus" | "node"
  std::string tool;    // "generator" | "wrk"
  double rps = 0;
  int64_t requests = 0;
  int64_t errors = 0;
  double p50Us = 0, p90Us = 0, p99Us = 0, maxUs = 0;
  std::string note;  // why a row is missing or what failed first
};

Row rowFromLoad(std::string target, const LoadResult& r) {
  Row row;
  row.target = std::move(target);
  row.tool = "generator";
  row.rps = r.requestsPerSecond();
  row.requests = r.completed;
  row.errors = r.errors + r.failures;
  row.p50Us = r.percentileNs(50) / 1e3;
  row.p90Us = r.percentileNs(90) / 1e3;
  row.p99Us = r.percentileNs(99) / 1e3;
  row.maxUs = r.percentileNs(100) / 1e3;
  row.note = r.firstError;
  return row;
}

Row rowFromWrk(std::string target, const WrkResult& r) {
  Row row;
  row.target = std::move(target);
  row.tool = "wrk";
  row.rps = r.requestsPerSecond;
  row.requests = r.requests;
  row.errors = r.non2xx + r.socketErrors;
  row.p50Us = static_cast<double>(r.p50Us);
  row.p90Us = static_cast<double>(r.p90Us);
  row.p99Us = static_cast<double>(r.p99Us);
  row.maxUs = static_cast<double>(r.maxUs);
  return row;
}

json::object rowJson(const Row& r) {
  json::object o;
  o["target"] = r.target;
  o["tool"] = r.tool;
  o["requestsPerSecond"] = r.rps;
  o["requests"] = r.requests;
  o["errors"] = r.errors;
  o["p50Us"] = r.p50Us;
  o["p90Us"] = r.p90Us;
  o["p99Us"] = r.p99Us;
  o["maxUs"] = r.maxUs;
  if (!r.note.empty()) o["note"] = r.note;
  return o;
}

const Row* findRow(const std::vector<Row>& rows, std::string_view target, std::string_view tool) {
  for (const auto& r : rows) {
    if (r.target == target && r.tool == tool) return &r;
  }
  return nullptr;
}

// The warm-up leaves one warm instance per connection (instanceConcurrency 1 needs that many)
// so that the measurement sees warm invokes only.
LoadOptions loadOptions(const std::string& endpoint, const std::string& target,
                        const HttpHeaders& headers, const InvokeBenchOptions& o) {
  LoadOptions l;
  l.endpoint = endpoint;
  l.method = "POST";
  l.target = target;
  l.headers = headers;
  l.body = o.payload;
  l.requests = o.requests;
  l.concurrency = o.concurrency;
  return l;
}

Result<LoadResult> warmAndMeasure(LoadOptions l) {
  LoadOptions warm = l;
  warm.requests = std::min<int64_t>(l.requests, std::max<int64_t>(100, 4LL * l.concurrency));
  ASSIGN_OR_RETURN(LoadResult ignored, runLoad(warm));
  (void)ignored;
  return runLoad(l);
}

}  // namespace

// ---- node baseline ------------------------------------------------------------------------

Result<std::unique_ptr<NodeHelloServer>> NodeHelloServer::start() {
  static constexpr const char* kScript = R"JS(
const http = require('http');
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, {'Content-Type': 'application/json', 'Content-Length': 7});
    res.end('"hello"');
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
process.on('SIGTERM', () => process.exit(0));
)JS";
  ASSIGN_OR_RETURN(Child child, spawnCapture({"node", "-e", kScript}));
  std::string line = readUntil(
      child.out.get(), 15s, [](const std::string& s) { return s.find('\n') != std::string::npos; });
  int port = std::atoi(line.c_str());
  if (port <= 0 || port > 65535) {
    ::kill(child.pid, SIGTERM);
    reap(child.pid, 2s);
    return unavailable("node hello server did not start: " + line.substr(0, 300));
  }
  return std::unique_ptr<NodeHelloServer>(
      new NodeHelloServer(child.pid, "http://127.0.0.1:" + std::to_string(port)));
}

NodeHelloServer::~NodeHelloServer() {
  ::kill(pid_, SIGTERM);
  reap(pid_, 2s);
}

// ---- wrk ------------------------------------------------------------------------------------

bool wrkAvailable() {
  const char* path = std::getenv("PATH");
  std::string_view p = path ? path : "/usr/bin:/bin";
  while (!p.empty()) {
    size_t colon = p.find(':');
    std::string dir(p.substr(0, colon));
    if (!dir.empty() && ::access((dir + "/wrk").c_str(), X_OK) == 0) return true;
    if (colon == std::string_view::npos) break;
    p.remove_prefix(colon + 1);
  }
  return false;
}

Result<WrkResult> parseWrkOutput(std::string_view text) {
  WrkResult r;
  bool sawRps = false;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (first == "Requests/sec:") {
      words >> r.requestsPerSecond;
      sawRps = true;
    } else if (first == "Latency") {
      std::string avg, stdev, max;
      if (words >> avg >> stdev >> max) r.maxUs = std::max<int64_t>(0, parseWrkDuration(max));
    } else if (first == "50%" || first == "90%" || first == "99%") {
      std::string v;
      words >> v;
      int64_t us = std::max<int64_t>(0, parseWrkDuration(v));
      (first == "50%" ? r.p50Us : first == "90%" ? r.p90Us : r.p99Us) = us;
    } else if (first == "Non-2xx") {
      size_t colon = line.rfind(':');
      if (colon != std::string::npos) r.non2xx = std::atoll(line.c_str() + colon + 1);
    } else if (first == "Socket") {
      // Socket errors: connect 0, read 0, write 0, timeout 0
      for (const char* key : {"connect ", "read ", "write ", "timeout "}) {
        size_t at = line.find(key);
        if (at != std::string::npos) r.socketErrors += std::atoll(line.c_str() + at + strlen(key));
      }
    } else if (line.find(" requests in ") != std::string::npos) {
      r.requests = std::atoll(first.c_str());
    }
  }
  if (!sawRps) return internalError("unexpected wrk output: " + std::string(text.substr(0, 300)));
  return r;
}

Result<WrkResult> runWrk(const std::string& url, const std::string& method,
                         const HttpHeaders& headers, const std::string& body, int connections,
                         int seconds) {
  std::string script =
      "wrk.method = " + luaString(method) + "\nwrk.body = " + luaString(body) + "\n";
  for (const auto& [name, value] : headers) {
    script += "wrk.headers[" + luaString(name) + "] = " + luaString(value) + "\n";
  }
  char path[] = "/tmp/stratus-wrk-XXXXXX.lua";
  UniqueFd fd(::mkstemps(path, 4));
  if (fd.get() < 0) return Status::fromErrno(errno, "create wrk script");
  struct Unlink {
    const char* p;
    ~Unlink() { ::unlink(p); }
  } unlinkScript{path};
  if (::write(fd.get(), script.data(), script.size()) != static_cast<ssize_t>(script.size())) {
    return Status::fromErrno(errno, "write wrk script");
  }
  int threads = connections >= 2 ? 2 : 1;
  ASSIGN_OR_RETURN(
      Child child,
      spawnCapture({"wrk", "-t" + std::to_string(threads), "-c" + std::to_string(connections),
                    "-d" + std::to_string(seconds) + "s", "--latency", "-s", path, url}));
  std::string out = readUntil(child.out.get(), std::chrono::seconds(seconds + 30),
                              [](const std::string&) { return false; });
  int status = reap(child.pid, 5s);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return internalError("wrk failed: " + out.substr(0, 300));
  }
  return parseWrkOutput(out);
}

// ---- bench invoke ---------------------------------------------------------------------------

int runInvokeBench(const InvokeBenchOptions& o) {
  auto fail = [](const std::string& what) {
    std::fprintf(stderr, "error: %s\n", what.c_str());
    return 1;
  };
  if (o.endpoint.empty() || o.key.empty() || o.function.empty()) {
    return fail("bench invoke needs --endpoint, --key and --function");
  }
  if (o.requests < 1 || o.concurrency < 1) return fail("--requests and --concurrency must be >= 1");
  const std::string target = "/2023-03-30/functions/" + o.function + "/invocations";
  HttpHeaders headers{{"Authorization", "Bearer " + o.key}, {"Content-Type", "application/json"}};

  // One call first: a missing function or a bad key should be one clear line, not N errors.
  auto probe = httpRequest(o.endpoint, "POST", target, headers, o.payload);
  if (!probe.isOk()) return fail(probe.status().toString());
  if (probe->status != 200 || probe->headers.count("x-fc-error-type")) {
    return fail("invoke " + o.function + ": HTTP " + std::to_string(probe->status) + " " +
                probe->headers["x-fc-error-type"] + " " + probe->body.substr(0, 500));
  }

  std::vector<Row> rows;
  auto stratus = warmAndMeasure(loadOptions(o.endpoint, target, headers, o));
  if (!stratus.isOk()) return fail(stratus.status().toString());
  rows.push_back(rowFromLoad("stratus", *stratus));

  std::string baselineNote;
  std::unique_ptr<NodeHelloServer> node;
  if (o.baseline) {
    auto started = NodeHelloServer::start();
    if (started.isOk()) {
      node = std::move(*started);
      auto base = warmAndMeasure(loadOptions(node->endpoint(), target, headers, o));
      if (base.isOk()) {
        rows.push_back(rowFromLoad("node", *base));
      } else {
        baselineNote = base.status().toString();
      }
    } else {
      baselineNote = started.status().toString();
    }
    if (o.wrkSeconds > 0 && wrkAvailable()) {
      auto w = runWrk(o.endpoint + target, "POST", headers, o.payload, o.concurrency, o.wrkSeconds);
      if (w.isOk()) rows.push_back(rowFromWrk("stratus", *w));
      if (node) {
        auto wn = runWrk(node->endpoint() + target, "POST", headers, o.payload, o.concurrency,
                         o.wrkSeconds);
        if (wn.isOk()) rows.push_back(rowFromWrk("node", *wn));
      }
      if (!w.isOk()) baselineNote += (baselineNote.empty() ? "" : "; ") + w.status().toString();
    }
  }

  // Ratios stratus/node with the same tool: throughput (higher is better for stratus) and
  // p50/p99 latency (lower is better).
  json::object ratios;
  for (const char* tool : {"generator", "wrk"}) {
    const Row* s = findRow(rows, "stratus", tool);
    const Row* n = findRow(rows, "node", tool);
    if (!s || !n || n->rps <= 0 || n->p50Us <= 0 || n->p99Us <= 0) continue;
    json::object r;
    r["throughput"] = s->rps / n->rps;
    r["p50Latency"] = s->p50Us / n->p50Us;
    r["p99Latency"] = s->p99Us / n->p99Us;
    ratios[tool] = std::move(r);
  }

  const Row& measured = rows.front();
  const bool clean = measured.errors == 0;
  if (o.json) {
    json::object out;
    out["function"] = o.function;
    out["endpoint"] = o.endpoint;
    out["requests"] = o.requests;
    out["concurrency"] = o.concurrency;
    out["payloadBytes"] = o.payload.size();
    json::array arr;
    for (const auto& r : rows) arr.push_back(rowJson(r));
    out["results"] = std::move(arr);
    out["ratios"] = std::move(ratios);
    if (!baselineNote.empty()) out["baselineNote"] = baselineNote;
    std::printf("%s\n", json::serialize(out).c_str());
    return clean ? 0 : 1;
  }

  std::printf("warm invoke of %s: %d requests over %d keep-alive connections, %zu-byte payload\n",
              o.function.c_str(), o.requests, o.concurrency, o.payload.size());
  std::printf("%-8s %-10s %10s %9s %7s %10s %10s %10s %10s\n", "target", "tool", "requests",
              "req/s", "errors", "p50", "p90", "p99", "max");
  for (const auto& r : rows) {
    std::printf("%-8s %-10s %10lld %9.0f %7lld %10s %10s %10s %10s\n", r.target.c_str(),
                (r.tool == "wrk" ? "wrk " + std::to_string(o.wrkSeconds) + "s" : r.tool).c_str(),
                static_cast<long long>(r.requests), r.rps, static_cast<long long>(r.errors),
                formatUs(r.p50Us).c_str(), formatUs(r.p90Us).c_str(), formatUs(r.p99Us).c_str(),
                formatUs(r.maxUs).c_str());
  }
  for (const auto& [tool, v] : ratios) {
    const auto& r = v.as_object();
    std::printf("stratus/node (%s): throughput %.2fx, p50 latency %.2fx, p99 latency %.2fx\n",
                std::string(tool).c_str(), r.at("throughput").as_double(),
                r.at("p50Latency").as_double(), r.at("p99Latency").as_double());
  }
  if (!baselineNote.empty()) std::printf("baseline: %s\n", baselineNote.c_str());
  if (!measured.note.empty()) std::printf("first error: %s\n", measured.note.c_str());
  if (o.baseline && o.wrkSeconds > 0 && !wrkAvailable()) {
    std::printf("wrk: not installed, skipped\n");
  }
  return clean ? 0 : 1;
}

void addBenchCommand(CLI::App& app) {
  CLI::App* bench =
      app.add_subcommand("bench", "Measure a running Stratus against same-run baselines");
  bench->require_subcommand(1);
  addSandboxBenchCommand(*bench);
  addColdStartBenchCommands(*bench);  // coldstart, startrate, density (bench_coldstart.h)
  addCodeloadBench(bench);

  struct Flags {
    InvokeBenchOptions options;
    std::string endpoint, key;
    bool noBaseline = false;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* invoke = bench->add_subcommand(
      "invoke", "Warm invoke latency and throughput, next to a bare node http server");
  invoke->add_option("--endpoint", flags->endpoint,
                     "Stratus endpoint (default: $STRATUS_ENDPOINT, the config file, "
                     "http://127.0.0.1:9000)");
  invoke->add_option("--key", flags->key, "API key (default: $STRATUS_KEY, the config file)");
  invoke->add_option("--function", flags->options.function, "Function to invoke")->required();
  invoke->add_option("-n,--requests", flags->options.requests, "Requests to measure")
      ->capture_default_str();
  invoke->add_option("-c,--concurrency", flags->options.concurrency, "Keep-alive connections")
      ->capture_default_str();
  invoke->add_option("--payload", flags->options.payload, "Request body")->capture_default_str();
  invoke
      ->add_option("--wrk-duration", flags->options.wrkSeconds, "Seconds per wrk run; 0 skips wrk")
      ->capture_default_str();
  invoke->add_flag("--json", flags->options.json, "Machine-readable output");
  invoke->add_flag("--no-baseline", flags->noBaseline, "Skip the node and wrk baselines");
  invoke->callback([flags] {
    auto config = resolveClientConfig(flags->endpoint, flags->key);
    if (!config.isOk()) {
      std::fprintf(stderr, "error: %s\n", config.status().toString().c_str());
      throw CLI::RuntimeError(1);
    }
    InvokeBenchOptions o = flags->options;
    o.endpoint = config->endpoint.empty() ? "http://127.0.0.1:9000" : config->endpoint;
    o.key = config->key;
    o.baseline = !flags->noBaseline;
    int rc = runInvokeBench(o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace stratus
