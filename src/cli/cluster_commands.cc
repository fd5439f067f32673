#include "cli/cluster_commands.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>

#include "api/api.h"
#include "cluster/cluster_gateway.h"
#include "cluster/controller.h"
#include "cluster/etcd_client.h"
#include "cluster/worker_agent.h"
#include "codepack/zip_import.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/log.h"
#include "gateway/gateway.h"
#include "runtime/runtime.h"
#include "sandbox/process_sandbox.h"
#include "store/etcd_store.h"
#include "worker/worker.h"

namespace stratus {
namespace {

struct Listen {
  std::string host;
  uint16_t port = 0;
};

Result<Listen> parseListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return invalidArgument("listen address must be ADDR:PORT, got '" + listen + "'");
  }
  Listen l;
  l.host = listen.substr(0, colon);
  if (l.host.size() > 2 && l.host.front() == '[' && l.host.back() == ']') {
    l.host = l.host.substr(1, l.host.size() - 2);
  }
  int port = -1;
  try {
    size_t used = 0;
    port = std::stoi(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1) port = -1;
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535) return invalidArgument("bad port in '" + listen + "'");
  l.port = static_cast<uint16_t>(port);
  return l;
}

std::string urlOf(const std::string& host, uint16_t port) {
  return "http://" + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

int fail(const Status& s) {
  SLOG_ERROR("{}", s.toString());
  std::fprintf(stderr, "error: %s\n", s.toString().c_str());
  return 1;
}

// Blocks SIGINT/SIGTERM in every thread created from now on; they are taken with sigtimedwait.
sigset_t blockStopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return set;
}

bool stopRequested(const sigset_t& set, std::chrono::milliseconds wait) {
  timespec ts{static_cast<time_t>(wait.count() / 1000),
              static_cast<long>((wait.count() % 1000) * 1000000)};
  int sig = sigtimedwait(&set, nullptr, &ts);
  if (sig > 0) {
    SLOG_INFO("{} received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    return true;
  }
  return false;
}

// A stable id per data dir, so that a restarted daemon keeps its name.
Result<std::string> persistentId(const std::filesystem::path& dir, const std::string& role,
                                 const std::string& given) {
  if (!given.empty()) return given;
  auto file = dir / (role + "-id");
  if (auto text = readFile(file); text.isOk()) {
    std::string id = *text;
    while (!id.empty() && isspace(static_cast<unsigned char>(id.back()))) id.pop_back();
    if (!id.empty()) return id;
  }
  std::string id = role + "-" + randomHex(4);
  RETURN_IF_ERROR(writeFileAtomic(file, id + "\n", 0644));
  return id;
}

struct CommonOptions {
  std::string etcd;
  std::string listen;
  std::string prefix = "/stratus/";
  std::string advertiseHost;
  std::string logLevel = "info";
  int64_t leaseTtl = 3;
};

void addCommon(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--etcd", o.etcd, "etcd client URLs, comma-separated (http://host:2379)")
      ->required();
  cmd->add_option("--listen", o.listen, "ADDR:PORT to serve on")->required();
  cmd->add_option("--etcd-prefix", o.prefix, "Key prefix of this cluster in etcd")
      ->capture_default_str();
  cmd->add_option("--advertise-host", o.advertiseHost,
                  "Host name or address others use to reach this daemon (default: the listen "
                  "address)");
  cmd->add_option("--lease-ttl", o.leaseTtl, "Seconds of etcd lease TTL (membership, leadership)")
      ->capture_default_str();
  cmd->add_option("--log-level", o.logLevel, "debug | info | warn | error")->capture_default_str();
}

// ---- controller ----

struct ControllerCli {
  CommonOptions common;
  std::string dataDir;
  std::string rpcListen;
  std::string blobListen;
  std::string id;
  int64_t keepAlive = 600;
  std::string isolation = "tenant";
  std::string placement = "best-fit";
  int httpThreads = 2;
};

int runController(const ControllerCli& o) {
  initLogging(o.common.logLevel);
  sigset_t signals = blockStopSignals();
  auto listen = parseListen(o.common.listen);
  if (!listen) return fail(listen.status());
  if (listen->port == 0) {
    return fail(
        invalidArgument("controller --listen needs a fixed port: it is advertised to "
                        "gateways before the API starts serving"));
  }
  const std::filesystem::path dir = std::filesystem::absolute(o.dataDir);
  if (Status s = makeDirs(dir / "code", 0755); !s) return fail(s);
  auto id = persistentId(dir, "controller", o.id);
  if (!id) return fail(id.status());

  auto etcdClient = EtcdClient::create(o.common.etcd);
  if (!etcdClient) return fail(etcdClient.status());
  std::shared_ptr<EtcdClient> etcd = std::move(*etcdClient);
  EtcdStore store(etcd, o.common.prefix);

  auto blobs = std::make_shared<LocalDirBlobStore>(dir / "code" / "blobs");
  CodeCacheOptions codeOptions;
  codeOptions.origin = blobs;
  codeOptions.useFuse = false;  // the controller never runs code
  CodeCache code(dir / "code", codeOptions);

  ControllerOptions co;
  co.prefix = o.common.prefix;
  co.id = *id;
  std::string advertise = o.common.advertiseHost.empty() ? listen->host : o.common.advertiseHost;
  co.apiUrl = urlOf(advertise, listen->port);
  co.advertiseHost = o.common.advertiseHost;
  co.rpcListenAddress = listen->host;
  co.blobListenAddress = listen->host;
  if (!o.rpcListen.empty()) {
    auto r = parseListen(o.rpcListen);
    if (!r) return fail(r.status());
    co.rpcListenAddress = r->host;
    co.rpcPort = r->port;
  }
  if (!o.blobListen.empty()) {
    auto b = parseListen(o.blobListen);
    if (!b) return fail(b.status());
    co.blobListenAddress = b->host;
    co.blobPort = b->port;
  }
  co.leaseTtlSeconds = o.common.leaseTtl;
  co.codeBlobDir = dir / "code" / "blobs";
  co.scheduler.keepAlive = std::chrono::seconds(o.keepAlive);
  auto isolation = parseIsolationLevel(o.isolation);
  if (!isolation) return fail(isolation.status());
  co.scheduler.isolation = *isolation;
  auto placement = parsePlacementStrategy(o.placement);
  if (!placement) return fail(placement.status());
  co.scheduler.placement = *placement;

  Controller controller(etcd, store, blobs, co);
  if (Status s = controller.start(); !s) return fail(s);
  SLOG_INFO("controller {} campaigning (RPC {}, code {})", *id, controller.info().rpcUrl,
            controller.info().blobUrl);
  std::printf("stratus controller %s standing by\n", id->c_str());
  std::fflush(stdout);
  bool stop = false;
  if (!controller.campaign([&] {
        stop = stop || stopRequested(signals, std::chrono::milliseconds(0));
        return stop;
      })) {
    controller.stop();
    return 0;
  }

  ClusterInvoker& invoker = controller.lead();
  auto adminKey = Api::ensureAdminKey(store, dir / "admin-key");
  if (!adminKey) {
    controller.stop();
    return fail(adminKey.status());
  }
  Api api(store, code, invoker);
  HttpServerOptions http;
  http.listenAddress = listen->host;
  http.port = listen->port;
  http.threads = o.httpThreads;
  Gateway gateway(api, http);
  if (Status s = gateway.start(); !s) {
    controller.stop();
    return fail(s.withContext("listen on " + o.common.listen));
  }
  std::printf("stratus controller %s leading, API on %s\n", id->c_str(), co.apiUrl.c_str());
  std::fflush(stdout);

  while (!stopRequested(signals, std::chrono::milliseconds(200))) {
    if (controller.leadershipLost()) {
      SLOG_ERROR(
          "leadership lost: exiting so that the supervisor restarts this controller as a "
          "stand-by");
      gateway.stop(std::chrono::seconds(1));
      controller.stop();
      return 3;
    }
  }
  gateway.stop(std::chrono::seconds(5));
  controller.stop();
  SLOG_INFO("controller stopped");
  return 0;
}

// ---- worker ----

struct WorkerCli {
  CommonOptions common;
  std::string dataDir;
  std::string zone = "default";
  std::string id;
  int64_t memoryMb = 8192;
  int64_t cpuMillis = 0;
  int maxInstances = 500;
  bool noFuse = false;
  bool pool = true;
};

int runWorker(const WorkerCli& o) {
  initLogging(o.common.logLevel);
  sigset_t signals = blockStopSignals();
  auto listen = parseListen(o.common.listen);
  if (!listen) return fail(listen.status());
  const std::filesystem::path dir = std::filesystem::absolute(o.dataDir);
  if (Status s = makeDirs(dir / "logs", 0700); !s) return fail(s);
  for (const char* sub : {"code", "runtime", "run", "run/sandboxes", "run/instances"}) {
    if (Status s = makeDirs(dir / sub, 0755); !s) return fail(s);
  }
  auto id = persistentId(dir, "worker", o.id);
  if (!id) return fail(id.status());
  if (Status s = runtime::installAssets(dir / "runtime"); !s) return fail(s);

  // Leftovers of a previous run that was killed (-9): its sandboxes, cgroups, socket dirs.
  auto sandboxOptions = ProcessSandboxOptions::forDataDir(dir);
  // Tenants keep their host uid ranges (user namespaces) across restarts.
  auto tenantIds = TenantIdMap::open(dir / "tenant-ids");
  if (!tenantIds) return fail(tenantIds.status());
  sandboxOptions.tenantIds = std::move(tenantIds).value();
  auto backend = ProcessSandboxBackend::create(std::move(sandboxOptions));
  if (!backend) return fail(backend.status());
  if (Status s = (*backend)->sweepLeftovers(); !s) return fail(s);
  if (Status s = removeTree(dir / "run" / "instances"); !s) return fail(s);
  if (Status s = makeDirs(dir / "run" / "instances"); !s) return fail(s);

  auto etcdClient = EtcdClient::create(o.common.etcd);
  if (!etcdClient) return fail(etcdClient.status());
  std::shared_ptr<EtcdClient> etcd = std::move(*etcdClient);

  SystemClock clock;
  WorkerOptions wo;
  wo.stateDir = dir / "run" / "instances";
  wo.logDir = dir / "logs";
  wo.runtimeAssetsDir = dir / "runtime";
  wo.pool.enabled = o.pool;
  Worker worker(wo, **backend, clock);

  WorkerAgentOptions ao;
  ao.prefix = o.common.prefix;
  ao.id = *id;
  ao.zone = o.zone;
  ao.listenAddress = listen->host;
  ao.port = listen->port;
  ao.advertiseHost = o.common.advertiseHost;
  ao.memoryMb = o.memoryMb;
  ao.cpuMillis = o.cpuMillis > 0 ? o.cpuMillis : 1000 * std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
  ao.maxInstances = o.maxInstances;
  ao.leaseTtlSeconds = o.common.leaseTtl;
  ao.codeDir = dir / "code";
  ao.useFuse = !o.noFuse;
  WorkerAgent agent(worker, etcd, ao);
  if (Status s = agent.start(); !s) return fail(s);
  std::printf("stratus worker %s (zone %s) serving on %s\n", id->c_str(), o.zone.c_str(),
              agent.url().c_str());
  std::fflush(stdout);

  while (!stopRequested(signals, std::chrono::milliseconds(500))) {
  }
  agent.stop();
  worker.shutdown();
  SLOG_INFO("worker stopped");
  return 0;
}

// ---- gateway ----

struct GatewayCli {
  CommonOptions common;
  int httpThreads = 2;
  int64_t holdIdleMs = 2000;
};

int runGateway(const GatewayCli& o) {
  initLogging(o.common.logLevel);
  sigset_t signals = blockStopSignals();
  auto listen = parseListen(o.common.listen);
  if (!listen) return fail(listen.status());
  auto etcdClient = EtcdClient::create(o.common.etcd);
  if (!etcdClient) return fail(etcdClient.status());
  ClusterGatewayOptions go;
  go.prefix = o.common.prefix;
  go.listenAddress = listen->host;
  go.port = listen->port;
  go.httpThreads = o.httpThreads;
  go.holdIdle = std::chrono::milliseconds(o.holdIdleMs);
  ClusterGateway gateway(std::move(*etcdClient), go);
  if (Status s = gateway.start(); !s) return fail(s.withContext("listen on " + o.common.listen));
  std::string url = urlOf(listen->host, gateway.port());
  std::printf("stratus gateway listening on %s\n", url.c_str());
  std::fflush(stdout);
  while (!stopRequested(signals, std::chrono::milliseconds(500))) {
  }
  gateway.stop();
  SLOG_INFO("gateway stopped");
  return 0;
}

}  // namespace

void addClusterCommands(CLI::App& app) {
  {
    auto o = std::make_shared<ControllerCli>();
    CLI::App* cmd = app.add_subcommand(
        "controller", "Run a cluster controller: API and scheduler, elected through etcd");
    addCommon(cmd, o->common);
    cmd->add_option("--data-dir", o->dataDir, "Directory for code and the admin key")->required();
    cmd->add_option("--rpc-listen", o->rpcListen,
                    "ADDR:PORT of the controller RPC (default: the --listen host, any port)");
    cmd->add_option("--blob-listen", o->blobListen,
                    "ADDR:PORT of the code blob server (default: the --listen host, any port)");
    cmd->add_option("--id", o->id, "Controller id (default: generated, kept in the data dir)");
    cmd->add_option("--keep-alive", o->keepAlive, "Seconds an idle instance is kept")
        ->capture_default_str();
    cmd->add_option("--isolation", o->isolation, "tenant | vpc | mixed")->capture_default_str();
    cmd->add_option("--placement", o->placement, "best-fit | spread")->capture_default_str();
    cmd->add_option("--http-threads", o->httpThreads, "HTTP server threads")->capture_default_str();
    cmd->callback([o] {
      int rc = runController(*o);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  }
  {
    auto o = std::make_shared<WorkerCli>();
    CLI::App* cmd = app.add_subcommand(
        "worker", "Run a cluster worker: sandboxes and instances, registered in etcd");
    addCommon(cmd, o->common);
    cmd->add_option("--data-dir", o->dataDir, "Directory for code, sandboxes and logs")->required();
    cmd->add_option("--zone", o->zone, "Zone of this host (placement spreads across zones)")
        ->capture_default_str();
    cmd->add_option("--id", o->id, "Worker id (default: generated, kept in the data dir)");
    cmd->add_option("--memory-mb", o->memoryMb, "Memory for sandboxes on this host")
        ->capture_default_str();
    cmd->add_option("--cpu-millis", o->cpuMillis, "CPU for sandboxes (default: 1000 per core)");
    cmd->add_option("--max-instances", o->maxInstances, "Instances on this host at most")
        ->capture_default_str();
    cmd->add_flag("--no-fuse", o->noFuse, "Extract code instead of mounting packs lazily");
    cmd->add_flag("!--no-pool", o->pool, "No warm pool of pre-started python3/nodejs sandboxes");
    cmd->callback([o] {
      int rc = runWorker(*o);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  }
  {
    auto o = std::make_shared<GatewayCli>();
    CLI::App* cmd = app.add_subcommand(
        "gateway", "Run a cluster gateway: the public API, calls straight to workers");
    addCommon(cmd, o->common);
    cmd->add_option("--http-threads", o->httpThreads, "HTTP server threads")->capture_default_str();
    cmd->add_option("--hold-idle-ms", o->holdIdleMs,
                    "Milliseconds an unused instance lease is kept before it is returned")
        ->capture_default_str();
    cmd->callback([o] {
      int rc = runGateway(*o);
      if (rc != 0) throw CLI::RuntimeError(rc);
    });
  }
}

}  // namespace stratus
