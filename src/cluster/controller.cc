#include "cluster/controller.h"

#include <climits>

#include "common/ids.h"
#include "common/log.h"
#include "http/http_client.h"

namespace stratus {
namespace {

std::string functionKey(const std::string& tenant, const std::string& name) {
  return tenant + "/" + name;
}

FunctionRef refOf(const FunctionSpec& fn) {
  FunctionRef r;
  r.key = functionKey(fn.tenant, fn.name);
  r.revision = fn.revision;
  r.concurrency = fn.instanceConcurrency;
  r.maxInstances = fn.maxInstances;
  r.memoryMb = fn.memoryMb;
  r.tenant = fn.tenant;
  r.runtime = fn.runtime;
  return r;
}

// A start failure the function caused is a function error, as in LocalInvoker.
InvokeResult acquireFailure(const Status& s) {
  InvokeResult r;
  if (s.code() == Code::kFailedPrecondition) {
    r.functionError = FunctionErrorKind::kUnhandled;
    r.body = s.message();
    r.coldStart = true;
  } else {
    r.status = s;
  }
  return r;
}

Duration callTimeout(const FunctionSpec& fn) {
  return std::chrono::seconds(fn.timeoutSec) + std::chrono::seconds(10);
}

}  // namespace

// ---- ClusterInvoker ----

ClusterInvoker::ClusterInvoker(MetadataStore& store, const Clock& clock, SchedulerOptions options,
                               int64_t epoch, Duration leaseTtl)
    : store_(store),
      clock_(clock),
      epoch_(epoch),
      leaseTtl_(leaseTtl),
      scheduler_(std::make_unique<Scheduler>(static_cast<InstanceLauncher&>(*this), clock,
                                             std::move(options))) {}

ClusterInvoker::~ClusterInvoker() {
  shutdown();
  pool_.stop();
  startPool_.stop();
}

void ClusterInvoker::shutdown() {
  if (shutdown_.exchange(true)) return;
  scheduler_->shutdown();
}

void ClusterInvoker::remember(const FunctionSpec& fn) {
  auto ptr = std::make_shared<const FunctionSpec>(fn);
  std::lock_guard lock(mu_);
  auto& slot = specs_[functionKey(fn.tenant, fn.name)];
  if (!slot || slot->revision <= fn.revision) slot = std::move(ptr);
}

Result<std::shared_ptr<const FunctionSpec>> ClusterInvoker::lookup(const std::string& tenant,
                                                                   const std::string& name) {
  {
    std::lock_guard lock(mu_);
    auto it = specs_.find(functionKey(tenant, name));
    if (it != specs_.end()) return it->second;
  }
  // The leader's Api is the only writer and tells us of every change (functionChanged/Deleted),
  // so a spec read once stays current.
  ASSIGN_OR_RETURN(FunctionSpec f, store_.getFunction(tenant, name));
  remember(f);
  std::lock_guard lock(mu_);
  return specs_[functionKey(tenant, name)];
}

// The scheduler places on an implicit host "local" when it has none: never let it, a cluster
// without workers has no capacity.
Status noWorkers() { return Status(Code::kUnavailable, "no worker has joined the cluster yet"); }

void ClusterInvoker::invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) {
  remember(fn);
  if (hostCount() == 0) {
    InvokeResult r;
    r.status = noWorkers();
    return done(std::move(r));
  }
  attempt(std::make_shared<const FunctionSpec>(fn), std::move(req), std::move(done), 0);
}

void ClusterInvoker::attempt(std::shared_ptr<const FunctionSpec> fn, InvokeRequest req,
                             InvokeCallback done, int tries) {
  scheduler_->acquire(refOf(*fn), [this, fn, req = std::move(req), done = std::move(done),
                                   tries](Result<Lease> lease) mutable {
    if (!lease) return done(acquireFailure(lease.status()));
    pool_.post([this, fn, l = std::move(*lease), req = std::move(req), done = std::move(done),
                tries]() mutable {
      std::string url = hostUrl(l.hostId);
      auto outcome = cluster::invokeOnWorker(url, l.instanceId, req, callTimeout(*fn));
      if (outcome.notSent) {
        scheduler_->release(l, false);
        suspect(l.hostId);
        if (tries < 2 && !shutdown_) {
          SLOG_INFO("call {} did not reach {} on {}: retrying elsewhere", req.requestId,
                    l.instanceId, l.hostId);
          return attempt(fn, std::move(req), std::move(done), tries + 1);
        }
        return done(std::move(outcome.result));
      }
      scheduler_->release(l, !outcome.result.instanceLost);
      outcome.result.coldStart = l.coldStart;
      outcome.result.initDurationUs = l.initDurationUs;
      if (outcome.result.instanceId.empty()) outcome.result.instanceId = l.instanceId;
      done(std::move(outcome.result));
    });
  });
}

void ClusterInvoker::functionChanged(const FunctionSpec& fn) {
  {
    std::lock_guard lock(mu_);
    specs_[functionKey(fn.tenant, fn.name)] = std::make_shared<const FunctionSpec>(fn);
  }
  scheduler_->drain(functionKey(fn.tenant, fn.name), fn.revision);
}

void ClusterInvoker::functionDeleted(const FunctionSpec& fn) {
  scheduler_->drain(functionKey(fn.tenant, fn.name), INT64_MAX);
  std::lock_guard lock(mu_);
  specs_.erase(functionKey(fn.tenant, fn.name));
}

void ClusterInvoker::acquireLease(const std::string& tenant, const std::string& name,
                                  std::function<void(Result<cluster::GrantedLease>)> done) {
  pool_.post([this, tenant, name, done = std::move(done)]() mutable {
    auto spec = lookup(tenant, name);
    if (!spec) {
      if (spec.status().code() == Code::kNotFound) {
        return done(notFound("function " + name + " does not exist"));
      }
      return done(spec.status());
    }
    std::shared_ptr<const FunctionSpec> fn = *spec;
    if (hostCount() == 0) return done(noWorkers());
    scheduler_->acquire(refOf(*fn), [this, fn, done = std::move(done)](Result<Lease> lease) {
      if (!lease) return done(lease.status());
      cluster::GrantedLease g;
      g.leaseId = "l-" + randomHex(8);
      g.functionKey = lease->functionKey;
      g.instanceId = lease->instanceId;
      g.hostId = lease->hostId;
      g.workerUrl = hostUrl(lease->hostId);
      g.revision = fn->revision;
      g.runtime = fn->runtime;
      g.timeoutSec = fn->timeoutSec;
      g.coldStart = lease->coldStart;
      g.initDurationUs = lease->initDurationUs;
      g.epoch = epoch_;
      if (g.workerUrl.empty()) {
        scheduler_->release(*lease, false);
        return done(unavailable("worker " + lease->hostId + " of instance " + lease->instanceId +
                                " is gone"));
      }
      {
        std::lock_guard lock(mu_);
        leases_[g.leaseId] = HeldLease{*lease, clock_.now()};
      }
      done(std::move(g));
    });
  });
}

void ClusterInvoker::releaseLease(const std::string& leaseId, bool healthy, bool workerUnreachable,
                                  std::function<void(Status)> done) {
  Lease lease;
  {
    std::lock_guard lock(mu_);
    auto it = leases_.find(leaseId);
    if (it == leases_.end()) return done(notFound("lease " + leaseId + " is not held"));
    lease = it->second.lease;
    leases_.erase(it);
  }
  if (!workerUnreachable) {
    scheduler_->release(lease, healthy);
    return done(Status::ok());
  }
  pool_.post([this, lease, done = std::move(done)] {
    suspect(lease.hostId);
    scheduler_->release(lease, false);
    done(Status::ok());
  });
}

std::vector<std::string> ClusterInvoker::renewLeases(const std::vector<std::string>& ids) {
  std::vector<std::string> unknown;
  TimePoint now = clock_.now();
  std::lock_guard lock(mu_);
  for (const auto& id : ids) {
    auto it = leases_.find(id);
    if (it == leases_.end()) {
      unknown.push_back(id);
    } else {
      it->second.renewed = now;
    }
  }
  return unknown;
}

void ClusterInvoker::instanceLost(const std::string& instanceId) {
  scheduler_->instanceLost(instanceId);
}

void ClusterInvoker::tick() {
  std::vector<Lease> expired;
  {
    TimePoint now = clock_.now();
    std::lock_guard lock(mu_);
    for (auto it = leases_.begin(); it != leases_.end();) {
      if (now - it->second.renewed > leaseTtl_) {
        expired.push_back(it->second.lease);
        it = leases_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& l : expired) {
    SLOG_INFO("lease on {} expired (its gateway stopped renewing it)", l.instanceId);
    scheduler_->release(l, true);
  }
  scheduler_->tick();
}

size_t ClusterInvoker::hostCount() {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [id, h] : hosts_) n += h.dead ? 0 : 1;
  return n;
}

std::string ClusterInvoker::hostUrl(const std::string& hostId) {
  std::lock_guard lock(mu_);
  auto it = hosts_.find(hostId);
  return it == hosts_.end() ? std::string() : it->second.info.url;
}

Status ClusterInvoker::resetWorker(const cluster::WorkerInfo& w) {
  json::object o;
  o["epoch"] = std::to_string(epoch_);
  auto r = httpRequest(w.url, "POST", "/cluster/v1/reset", {{"Content-Type", "application/json"}},
                       json::serialize(o), std::chrono::seconds(2));
  return cluster::statusFromRpc(r, "reset worker " + w.id);
}

void ClusterInvoker::suspect(const std::string& hostId) {
  std::string url = hostUrl(hostId);
  if (url.empty()) return;
  auto r = httpRequest(url, "GET", "/healthz", {}, {}, std::chrono::seconds(1));
  if (r.isOk() && r->status == 200) return;
  {
    std::lock_guard lock(mu_);
    auto it = hosts_.find(hostId);
    if (it == hosts_.end() || it->second.dead) return;
    it->second.dead = true;
  }
  SLOG_WARN("worker {} does not answer ({}): replacing its instances", hostId,
            r.isOk() ? "HTTP " + std::to_string(r->status) : r.status().toString());
  scheduler_->hostDead(hostId);
}

void ClusterInvoker::syncMembers(const std::vector<cluster::WorkerInfo>& alive) {
  std::map<std::string, const cluster::WorkerInfo*> now;
  for (const auto& w : alive) now[w.id] = &w;
  std::vector<std::string> gone;
  std::vector<cluster::WorkerInfo> fresh;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, h] : hosts_) {
      auto it = now.find(id);
      if (it == now.end()) {
        if (!h.dead) gone.push_back(id);
      } else if (it->second->incarnation != h.info.incarnation || h.dead) {
        // A restarted worker (new incarnation), or one written off after a failed call that
        // is registered still: reset it before it takes instances again.
        if (!h.dead) gone.push_back(id);
        fresh.push_back(*it->second);
      }
    }
    for (const auto& w : alive) {
      if (hosts_.find(w.id) == hosts_.end()) fresh.push_back(w);
    }
    for (const auto& id : gone) hosts_[id].dead = true;
  }
  for (const auto& id : gone) {
    SLOG_WARN("worker {} left the cluster (lease expired or restarted): replacing its instances",
              id);
    scheduler_->hostDead(id);
  }
  for (const auto& id : gone) {
    if (now.find(id) == now.end()) {
      std::lock_guard lock(mu_);
      hosts_.erase(id);
    }
  }
  for (const auto& w : fresh) {
    if (Status s = resetWorker(w); !s) {
      SLOG_WARN("worker {} not added yet: {}", w.id, s.toString());
      continue;
    }
    {
      std::lock_guard lock(mu_);
      hosts_[w.id] = Host{w, false};
    }
    HostSpec spec;
    spec.id = w.id;
    spec.zone = w.zone;
    spec.memoryMb = w.memoryMb;
    spec.cpuMillis = w.cpuMillis;
    spec.maxInstances = w.maxInstances;
    scheduler_->addHost(spec);
    scheduler_->hostDead("local");  // in case a call ever made the scheduler create it
    SLOG_INFO("worker {} joined (zone {}, {})", w.id, w.zone, w.url);
  }
}

void ClusterInvoker::launch(const std::string& instanceId, const FunctionRef& fn,
                            std::function<void(Result<int64_t>)> ready) {
  // Only reached without any host (the scheduler's implicit "local" one): no worker yet.
  (void)instanceId;
  ready(Status(Code::kResourceExhausted, "no worker has joined the cluster yet to run " + fn.key));
}

void ClusterInvoker::launchOn(const std::string& hostId, const std::string& instanceId,
                              const FunctionRef& ref, std::function<void(Result<int64_t>)> ready) {
  std::shared_ptr<const FunctionSpec> spec;
  cluster::WorkerInfo worker;
  {
    std::lock_guard lock(mu_);
    auto it = specs_.find(ref.key);
    if (it == specs_.end() || it->second->revision != ref.revision) {
      ready(Status(Code::kAborted, "function " + ref.key + " changed while starting"));
      return;
    }
    spec = it->second;
    auto h = hosts_.find(hostId);
    if (h == hosts_.end() || h->second.dead) {
      ready(unavailable("worker " + hostId + " is gone"));
      return;
    }
    worker = h->second.info;
    instanceHost_[instanceId] = hostId;
  }
  startPool_.post([this, spec, worker, instanceId, ready = std::move(ready)] {
    json::object body;
    body["spec"] = functionToStorageJson(*spec);
    body["epoch"] = std::to_string(epoch_);
    // Code fetch + sandbox + runtime init.
    Duration timeout =
        std::chrono::seconds(spec->initializationTimeoutSec) + std::chrono::seconds(60);
    auto r = httpRequest(worker.url, "POST", "/cluster/v1/instances/" + instanceId,
                         {{"Content-Type", "application/json"}}, json::serialize(body), timeout);
    Status s = cluster::statusFromRpc(r, "start " + instanceId + " on worker " + worker.id);
    if (!s) {
      {
        std::lock_guard lock(mu_);
        instanceHost_.erase(instanceId);
      }
      if (!r) {
        // Unreachable: let the next placement avoid it if it is really gone.
        suspect(worker.id);
      }
      // kFailedPrecondition (the function's fault) keeps its message: the JSON error body.
      return ready(s);
    }
    auto o = parseJson(r->body);
    int64_t init = 0;
    if (o && o->is_object()) {
      if (auto v = getInt(o->as_object(), "initDurationUs"); v.isOk() && v->has_value()) init = **v;
    }
    ready(init);
  });
}

void ClusterInvoker::stop(const std::string& instanceId) {
  std::string url;
  {
    std::lock_guard lock(mu_);
    auto it = instanceHost_.find(instanceId);
    if (it == instanceHost_.end()) return;
    auto h = hosts_.find(it->second);
    if (h != hosts_.end() && !h->second.dead) url = h->second.info.url;
    instanceHost_.erase(it);
  }
  if (url.empty()) return;
  startPool_.post([url, instanceId] {
    auto r = httpRequest(url, "DELETE", "/cluster/v1/instances/" + instanceId, {}, {},
                         std::chrono::seconds(3));
    if (Status s = cluster::statusFromRpc(r, "stop " + instanceId); !s) {
      SLOG_WARN("{}", s.toString());
    }
  });
}

// ---- Controller ----

Controller::Controller(std::shared_ptr<EtcdClient> etcd, MetadataStore& store,
                       std::shared_ptr<LocalDirBlobStore> blobs, ControllerOptions options)
    : etcd_(std::move(etcd)),
      store_(store),
      blobs_(std::move(blobs)),
      options_(std::move(options)) {}

Controller::~Controller() { stop(); }

Status Controller::start() {
  BlobServerOptions blobOptions;
  blobOptions.address = options_.blobListenAddress;
  blobOptions.port = options_.blobPort;
  ASSIGN_OR_RETURN(blobServer_, BlobServer::start(blobs_, blobOptions));

  HttpServerOptions rpcOptions;
  rpcOptions.listenAddress = options_.rpcListenAddress;
  rpcOptions.port = options_.rpcPort;
  rpcOptions.threads = 2;
  rpc_ = std::make_unique<HttpServer>(rpcOptions, [this](HttpRequest req, HttpRespond respond) {
    handleRpc(std::move(req), std::move(respond));
  });
  RETURN_IF_ERROR(rpc_->start().withContext("controller RPC listen"));

  auto hostOf = [&](const std::string& listen) {
    std::string h = options_.advertiseHost.empty() ? listen : options_.advertiseHost;
    return h.find(':') != std::string::npos ? "[" + h + "]" : h;
  };
  info_.id = options_.id;
  info_.apiUrl = options_.apiUrl;
  info_.rpcUrl =
      "http://" + hostOf(options_.rpcListenAddress) + ":" + std::to_string(rpc_->boundPort());
  info_.blobUrl =
      "http://" + hostOf(options_.blobListenAddress) + ":" + std::to_string(blobServer_->port());
  // Every controller, leader or not, is listed (no lease: a stopped one's entry only costs a
  // refused connection) so that controllers copy each other's code blobs and workers can fetch
  // from any of them.
  RETURN_IF_ERROR(etcd_->put(cluster::controllersPrefix(options_.prefix) + info_.id, toJson(info_))
                      .withContext("register controller " + info_.id));
  replicator_ = std::thread([this] { replicationLoop(); });
  return Status::ok();
}

bool Controller::campaign(const std::function<bool()>& stop) {
  const auto period = std::chrono::milliseconds(options_.leaseTtlSeconds * 1000 / 3);
  bool announced = false;
  while (!stop()) {
    auto lease = etcd_->grantLease(options_.leaseTtlSeconds);
    if (lease) {
      cluster::LeaderInfo mine = info_;
      mine.epoch = *lease;
      const std::string key = cluster::leaderKey(options_.prefix);
      auto r = etcd_->txn({EtcdCompare::absent(key)}, {EtcdOp::put(key, toJson(mine), *lease)},
                          {EtcdOp::get(key)});
      if (r && r->succeeded) {
        info_ = mine;
        lease_ = *lease;
        SLOG_INFO("controller {} is the leader (epoch {})", info_.id, info_.epoch);
        return true;
      }
      (void)etcd_->revokeLease(*lease);
      if (r && !announced && !r->kvs.empty() && !r->kvs[0].empty()) {
        auto leader = cluster::leaderFromJson(r->kvs[0][0].value);
        SLOG_INFO("controller {} stands by (leader: {})", info_.id,
                  leader ? leader->id : std::string("?"));
        announced = true;
      }
      if (!r) SLOG_WARN("campaign: {}", r.status().toString());
    } else {
      SLOG_WARN("campaign: {}", lease.status().toString());
    }
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, period, [&] { return stopping_; })) return false;
  }
  return false;
}

void Controller::replicateOnce() {
  auto controllers = etcd_->getPrefix(cluster::controllersPrefix(options_.prefix));
  if (!controllers) return;
  for (const auto& kv : *controllers) {
    auto other = cluster::leaderFromJson(kv.value);
    if (!other || other->id == info_.id || other->rpcUrl.empty()) continue;
    auto r =
        httpRequest(other->rpcUrl, "GET", "/cluster/v1/blobs", {}, {}, std::chrono::seconds(1));
    if (!r || r->status != 200) continue;  // down (or an old registration): next round
    auto o = parseJson(r->body);
    if (!o || !o->is_object()) continue;
    const json::value* names = o->as_object().if_contains("blobs");
    if (names == nullptr || !names->is_array()) continue;
    HttpBlobStore source(other->blobUrl, std::chrono::seconds(60));
    for (const json::value& n : names->as_array()) {
      if (!n.is_string()) continue;
      std::string name(n.as_string());
      if (!validBlobName(name) || blobs_->size(name).isOk()) continue;
      auto bytes = source.readAll(name, 1LL << 30);
      if (!bytes) {
        SLOG_WARN("replicate code blob {} from {}: {}", name, other->id, bytes.status().toString());
        continue;
      }
      if (Status s = blobs_->putBytes(name, *bytes, blobs_->root() / ".scratch"); !s) {
        SLOG_WARN("replicate code blob {}: {}", name, s.toString());
      } else {
        SLOG_INFO("replicated code blob {} from controller {}", name, other->id);
      }
    }
  }
}

void Controller::replicationLoop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    replicateOnce();
    lock.lock();
    cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
  }
}

ClusterInvoker& Controller::lead() {
  SchedulerOptions so = options_.scheduler;
  invoker_ = std::make_unique<ClusterInvoker>(store_, clock_, so, info_.epoch);
  active_.store(invoker_.get());
  leader_ = std::thread([this] { leaderLoop(); });
  return *invoker_;
}

void Controller::leaderLoop() {
  const auto period = std::chrono::milliseconds(500);
  const auto ttl = std::chrono::seconds(options_.leaseTtlSeconds);
  auto lastRenewed = std::chrono::steady_clock::now();
  auto nextKeepAlive = lastRenewed;
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    auto now = std::chrono::steady_clock::now();
    if (now >= nextKeepAlive) {
      auto r = etcd_->keepAlive(lease_);
      if (r && *r > 0) {
        lastRenewed = now;
      } else if (r) {
        SLOG_ERROR("controller {}: the leader lease expired: no longer the leader", info_.id);
        lost_ = true;
      } else {
        SLOG_WARN("controller {}: leader keep-alive: {}", info_.id, r.status().toString());
      }
      nextKeepAlive = now + ttl / 3;
    }
    // Without a renewal for a whole TTL another controller may lead already: stop serving.
    if (now - lastRenewed > ttl) {
      if (!lost_)
        SLOG_ERROR("controller {}: could not renew leadership for {} s", info_.id,
                   options_.leaseTtlSeconds);
      lost_ = true;
    }
    if (lost_) return;
    auto members = etcd_->getPrefix(cluster::workersPrefix(options_.prefix));
    if (members) {
      std::vector<cluster::WorkerInfo> alive;
      for (const auto& kv : *members) {
        if (auto w = cluster::workerFromJson(kv.value)) alive.push_back(std::move(*w));
      }
      invoker_->syncMembers(alive);
    }
    invoker_->tick();
    lock.lock();
    cv_.wait_for(lock, period, [&] { return stopping_; });
  }
}

void Controller::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (leader_.joinable()) leader_.join();
  if (replicator_.joinable()) replicator_.join();
  if (invoker_) invoker_->shutdown();
  if (rpc_) rpc_->stop(std::chrono::seconds(2));
  active_.store(nullptr);
  // Hand over at once instead of making the stand-by wait for the TTL.
  if (lease_ != 0 && !lost_) (void)etcd_->revokeLease(lease_);
  invoker_.reset();
  blobServer_.reset();
}

void Controller::handleRpc(HttpRequest req, HttpRespond respond) {
  if (req.method == "GET" && req.path == "/healthz") {
    json::object o;
    o["status"] = "ok";
    o["leader"] = active_.load() != nullptr;
    return respond(cluster::rpcJson(o));
  }
  if (req.method == "GET" && req.path == "/cluster/v1/blobs") {
    json::array names;
    std::error_code ec;
    const auto& root = blobs_->root();
    for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string name = std::filesystem::relative(it->path(), root, ec).string();
      if (validBlobName(name)) names.emplace_back(name);
    }
    json::object o;
    o["blobs"] = std::move(names);
    return respond(cluster::rpcJson(o));
  }
  ClusterInvoker* inv = active_.load();
  if (inv == nullptr) {
    return respond(cluster::rpcError(unavailable("controller " + info_.id + " is not the leader")));
  }
  auto body = parseJson(req.body.empty() ? std::string("{}") : req.body);
  if (!body || !body->is_object()) {
    return respond(cluster::rpcError(invalidArgument("RPC body must be a JSON object")));
  }
  const json::object& o = body->as_object();
  auto str = [&](std::string_view k) {
    auto v = getString(o, k);
    return v.isOk() && v->has_value() ? **v : std::string();
  };
  auto flag = [&](std::string_view k) {
    auto v = getBool(o, k);
    return v.isOk() && v->has_value() && **v;
  };
  if (req.method != "POST") {
    return respond(
        cluster::rpcError(notFound("no controller RPC at " + req.method + " " + req.path)));
  }
  if (req.path == "/cluster/v1/acquire") {
    inv->acquireLease(str("tenant"), str("function"),
                      [respond = std::move(respond)](Result<cluster::GrantedLease> l) {
                        if (!l) return respond(cluster::rpcError(l.status()));
                        HttpResponse r;
                        r.headers["Content-Type"] = "application/json";
                        r.body = toJson(*l);
                        respond(std::move(r));
                      });
    return;
  }
  if (req.path == "/cluster/v1/release") {
    inv->releaseLease(str("leaseId"), flag("healthy"), flag("workerUnreachable"),
                      [respond = std::move(respond)](Status s) {
                        respond(s ? cluster::rpcJson(json::object()) : cluster::rpcError(s));
                      });
    return;
  }
  if (req.path == "/cluster/v1/renew") {
    std::vector<std::string> ids;
    if (const json::value* a = o.if_contains("leaseIds"); a && a->is_array()) {
      for (const auto& v : a->as_array()) {
        if (v.is_string()) ids.emplace_back(v.as_string());
      }
    }
    json::array unknown;
    for (auto& id : inv->renewLeases(ids)) unknown.emplace_back(id);
    json::object out;
    out["unknown"] = std::move(unknown);
    return respond(cluster::rpcJson(out));
  }
  if (req.path == "/cluster/v1/instance-lost") {
    SLOG_INFO("instance {} lost: {}", str("instanceId"), str("message"));
    inv->instanceLost(str("instanceId"));
    return respond(cluster::rpcJson(json::object()));
  }
  respond(cluster::rpcError(notFound("no controller RPC at " + req.method + " " + req.path)));
}

}  // namespace stratus
