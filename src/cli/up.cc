#include "cli/up.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "api/api.h"
#include "cli/client_commands.h"
#include "cluster/local_invoker.h"
#include "codepack/zip_import.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/log.h"
#include "gateway/gateway.h"
#include "runtime/runtime.h"
#include "sandbox/process_sandbox.h"
#include "store/sqlite_store.h"
#include "worker/worker.h"

namespace stratus {
namespace {

Result<std::pair<std::string, uint16_t>> parseListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return invalidArgument("--listen must be ADDR:PORT, got '" + listen + "'");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  try {
    size_t used = 0;
    port = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1) port = -1;
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535) return invalidArgument("--listen has a bad port: '" + listen + "'");
  return std::make_pair(host, static_cast<uint16_t>(port));
}

// Kills runtime template processes (python3, nodejs) a SIGKILLed predecessor on this data dir left running: their
// command line names this data dir's runtime assets. Defence in depth: the template and its
// helpers carry PR_SET_PDEATHSIG, and the helper that once hung on a runtime that never reported
// its pid (and so outlived the server) waits on a pipe's EOF now (zygote.py, zygote_test).
void killStaleTemplates(const std::filesystem::path& runtimeDir) {
  const std::string needles[] = {(runtimeDir / "python3" / "zygote.py").string(),
                                  (runtimeDir / "nodejs" / "zygote.js").string()};
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmdline = readFile(entry.path() / "cmdline");
    if (!cmdline.isOk()) continue;
    const bool stale = std::any_of(std::begin(needles), std::end(needles), [&](const auto& n) {
      return cmdline->find(n) != std::string::npos;
    });
    if (!stale) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == getpid()) continue;
    SLOG_WARN("killing stale runtime template {} left by an earlier run", pid);
    ::kill(pid, SIGKILL);
  }
}

int fail(const Status& s) {
  SLOG_ERROR("{}", s.toString());
  std::fprintf(stderr, "error: %s\n", s.toString().c_str());
  return 1;
}

}  // namespace

int runUp(const UpOptions& options) {
  initLogging(options.logLevel);
  if (options.dataDir.empty()) return fail(invalidArgument("--data-dir is required"));
  auto listen = parseListen(options.listen);
  if (!listen.isOk()) return fail(listen.status());

  // Signals are taken synchronously by this thread (sigwait); every thread created below
  // inherits the mask, so no other thread is interrupted by them.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const std::filesystem::path dir = std::filesystem::absolute(options.dataDir);
  if (Status s = makeDirs(dir / "logs", 0700); !s.isOk()) return fail(s);
  for (const char* sub : {"code", "runtime", "run", "run/sandboxes", "run/instances"}) {
    if (Status s = makeDirs(dir / sub, 0755); !s.isOk()) return fail(s);
  }

  auto store = SqliteStore::open(dir / "meta.db");
  if (!store.isOk()) return fail(store.status());
  auto adminKey = Api::ensureAdminKey(**store, dir / "admin-key");
  if (!adminKey.isOk()) return fail(adminKey.status());
  if (Status s = runtime::installAssets(dir / "runtime"); !s.isOk()) return fail(s);

  // Leftovers of a previous run that was killed (-9): its sandboxes, cgroups, socket dirs.
  // Its own cgroup subtree (two servers on one host never sweep each other's sandboxes) and
  // sandbox state on tmpfs where the host has one.
  auto sandboxOptions = ProcessSandboxOptions::forDataDir(dir);
  // Tenants keep their host uid ranges (user namespaces) across restarts.
  auto tenantIds = TenantIdMap::open(dir / "tenant-ids");
  if (!tenantIds.isOk()) return fail(tenantIds.status());
  sandboxOptions.tenantIds = std::move(tenantIds).value();
  auto backend = ProcessSandboxBackend::create(std::move(sandboxOptions));
  if (!backend.isOk()) return fail(backend.status());
  if (Status s = (*backend)->sweepLeftovers(); !s.isOk()) return fail(s);
  killStaleTemplates(dir / "runtime");
  if (Status s = removeTree(dir / "run" / "instances"); !s.isOk()) return fail(s);
  if (Status s = makeDirs(dir / "run" / "instances"); !s.isOk()) return fail(s);

  SystemClock clock;
  WorkerOptions workerOptions;
  workerOptions.stateDir = dir / "run" / "instances";
  workerOptions.logDir = dir / "logs";
  workerOptions.runtimeAssetsDir = dir / "runtime";
  workerOptions.pool.enabled = options.pool;
  workerOptions.pool.maxPerKey = options.poolMaxPerKey;
  workerOptions.pool.memoryBudgetBytes = options.poolBudgetMb << 20;
  workerOptions.templates = options.templates;
  Worker worker(workerOptions, **backend, clock);

  CodeCache code(dir / "code");
  SchedulerOptions schedulerOptions;
  schedulerOptions.keepAlive = options.keepAlive;
  LocalInvoker invoker(worker, code, clock, schedulerOptions);
  Api api(**store, code, invoker);

  HttpServerOptions httpOptions;
  httpOptions.listenAddress = listen->first;
  httpOptions.port = listen->second;
  httpOptions.threads = options.httpThreads;
  Gateway gateway(api, httpOptions);
  gateway.every(std::chrono::seconds(1), [&invoker] { invoker.tick(); });
  if (Status s = gateway.start(); !s.isOk()) return fail(s.withContext("listen on " + options.listen));

  std::string host = listen->first.find(':') != std::string::npos ? "[" + listen->first + "]"
                                                                   : listen->first;
  std::string endpoint = "http://" + host + ":" + std::to_string(gateway.port());
  if (options.writeClientConfig) {
    if (Status s = writeClientConfig(ClientConfig{endpoint, *adminKey}); !s.isOk()) {
      SLOG_WARN("could not write the client config: {}", s.toString());
    }
  }
  SLOG_INFO("stratus listening on {} (data dir {}, admin key in {})", endpoint, dir.string(),
            (dir / "admin-key").string());
  std::printf("stratus listening on %s\n", endpoint.c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stopSignals, &sig);
  SLOG_INFO("{} received: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
  gateway.stop(std::chrono::seconds(10));
  invoker.shutdown();
  worker.shutdown();
  SLOG_INFO("stopped cleanly");
  return 0;
}

void addUpCommand(CLI::App& app) {
  auto options = std::make_shared<UpOptions>();
  auto keepAliveSec = std::make_shared<int64_t>(600);
  auto dataDir = std::make_shared<std::string>();
  CLI::App* up = app.add_subcommand("up", "Run gateway, API, scheduler and worker in one process");
  up->add_option("--listen", options->listen, "ADDR:PORT to serve HTTP on (port 0: any free port)")
      ->capture_default_str();
  up->add_option("--data-dir", *dataDir, "Directory for metadata, code, logs")->required();
  up->add_option("--http-threads", options->httpThreads, "HTTP server threads")
      ->capture_default_str();
  up->add_option("--keep-alive", *keepAliveSec, "Seconds an idle instance is kept")
      ->capture_default_str();
  up->add_option("--log-level", options->logLevel, "debug | info | warn | error")
      ->capture_default_str();
  up->add_flag("!--no-pool", options->pool,
               "Start every instance cold: no warm pool of pre-started python3/nodejs sandboxes");
  up->add_flag("!--no-templates", options->templates,
               "Start python3/nodejs runtimes by exec instead of forking them from a template process");
  up->add_option("--pool-max", options->poolMaxPerKey,
                 "Most blank sandboxes kept per (runtime, memory size)")
      ->capture_default_str();
  up->add_option("--pool-budget-mb", options->poolBudgetMb,
                 "Memory the warm pool's blank sandboxes may use in total (MB)")
      ->capture_default_str();
  up->add_flag("!--no-client-config", options->writeClientConfig,
               "Do not write the CLI's config file (endpoint and admin key)");
  up->callback([options, keepAliveSec, dataDir] {
    options->dataDir = *dataDir;
    options->keepAlive = std::chrono::seconds(*keepAliveSec);
    int rc = runUp(*options);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace stratus
