#include "cluster/worker_agent.h"

#include "common/ids.h"
#include "common/log.h"
#include "http/http_client.h"

namespace stratus {
namespace {

// Code comes from whoever has it: the leader's blob server first (the origin), then peers. The
// list is read at every request, so a leader change or a new peer is picked up at once.
class ClusterBlobSource final : public BlobStore {
 public:
  explicit ClusterBlobSource(std::function<std::vector<std::string>()> sources)
      : sources_(std::move(sources)) {}

  Result<int64_t> size(std::string_view name) override {
    return tryEach([&](HttpBlobStore& s) { return s.size(name); });
  }
  Result<std::string> readRange(std::string_view name, int64_t offset, int64_t length) override {
    return tryEach([&](HttpBlobStore& s) { return s.readRange(name, offset, length); });
  }
  Status putFile(std::string_view, const std::filesystem::path&) override {
    return Status(Code::kFailedPrecondition, "the cluster code source is read-only");
  }
  std::string describe() const override { return "cluster (leader, then peers)"; }

 private:
  template <typename F>
  auto tryEach(F f) -> decltype(f(std::declval<HttpBlobStore&>())) {
    Status last = unavailable("no code source is known (no leader, no peer)");
    for (const std::string& url : sources_()) {
      auto r = f(store(url));
      if (r) return r;
      last = r.status().withContext(url);
    }
    return last;
  }

  HttpBlobStore& store(const std::string& url) {
    std::lock_guard lock(mu_);
    auto& s = stores_[url];
    if (!s) s = std::make_unique<HttpBlobStore>(url, std::chrono::seconds(30));
    return *s;
  }

  std::function<std::vector<std::string>()> sources_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<HttpBlobStore>> stores_;  // GUARDED_BY(mu_)
};

std::string hostForUrl(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace

WorkerAgent::WorkerAgent(Worker& worker, std::shared_ptr<EtcdClient> etcd,
                         WorkerAgentOptions options)
    : worker_(worker), etcd_(std::move(etcd)), options_(std::move(options)) {}

WorkerAgent::~WorkerAgent() { stop(); }

std::string WorkerAgent::url() const { return info_.url; }

Status WorkerAgent::start() {
  HostCodeCacheOptions codeOptions;
  codeOptions.root = options_.codeDir;
  codeOptions.useFuse = options_.useFuse;
  code_ = std::make_unique<HostCodeCache>(
      std::make_shared<ClusterBlobSource>([this] { return codeSources(); }), codeOptions);

  BlobServerOptions blobOptions;
  blobOptions.address = options_.listenAddress;
  ASSIGN_OR_RETURN(blobServer_, BlobServer::start(code_->localStore(), blobOptions));

  HttpServerOptions httpOptions;
  httpOptions.listenAddress = options_.listenAddress;
  httpOptions.port = options_.port;
  httpOptions.threads = options_.httpThreads;
  server_ = std::make_unique<HttpServer>(httpOptions, [this](HttpRequest req, HttpRespond respond) {
    handle(std::move(req), std::move(respond));
  });
  RETURN_IF_ERROR(server_->start().withContext("worker RPC listen"));

  std::string host =
      hostForUrl(options_.advertiseHost.empty() ? options_.listenAddress : options_.advertiseHost);
  info_.id = options_.id;
  info_.zone = options_.zone;
  info_.url = "http://" + host + ":" + std::to_string(server_->boundPort());
  info_.blobUrl = "http://" + host + ":" + std::to_string(blobServer_->port());
  info_.memoryMb = options_.memoryMb;
  info_.cpuMillis = options_.cpuMillis;
  info_.maxInstances = options_.maxInstances;
  info_.incarnation = randomHex(8);

  worker_.setInstanceLostHandler([this](const std::string& id, Status cause) {
    {
      std::lock_guard lock(mu_);
      instances_.erase(id);
    }
    reportLost(id, cause);
  });

  RETURN_IF_ERROR(registerSelf());
  refreshView();
  membership_ = std::thread([this] { membershipLoop(); });
  SLOG_INFO("worker {} (zone {}) serving RPC on {}, code on {}", info_.id, info_.zone, info_.url,
            info_.blobUrl);
  return Status::ok();
}

void WorkerAgent::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (membership_.joinable()) membership_.join();
  int64_t lease;
  {
    std::lock_guard lock(mu_);
    lease = lease_;
  }
  // Leave membership at once rather than when the lease runs out.
  if (lease != 0) (void)etcd_->revokeLease(lease);
  if (server_) server_->stop(std::chrono::seconds(2));
  pool_.stop();
  blobServer_.reset();
  code_.reset();
}

Status WorkerAgent::registerSelf() {
  ASSIGN_OR_RETURN(int64_t lease, etcd_->grantLease(options_.leaseTtlSeconds));
  RETURN_IF_ERROR(
      etcd_->put(cluster::workersPrefix(options_.prefix) + info_.id, toJson(info_), lease));
  std::lock_guard lock(mu_);
  lease_ = lease;
  return Status::ok();
}

void WorkerAgent::membershipLoop() {
  const auto period = std::chrono::milliseconds(options_.leaseTtlSeconds * 1000 / 3);
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, period, [&] { return stopping_; })) {
    int64_t lease = lease_;
    lock.unlock();
    auto ttl = etcd_->keepAlive(lease);
    if (ttl.isOk() && *ttl == 0) {
      // The lease ran out (etcd was unreachable for longer than the TTL): the controller has
      // written this worker off and replaced its instances; register as new.
      SLOG_WARN("worker {}: membership lease expired; registering again", info_.id);
      info_.incarnation = randomHex(8);
      if (Status s = registerSelf(); !s) SLOG_WARN("register: {}", s.toString());
    } else if (!ttl.isOk()) {
      SLOG_WARN("worker {}: lease keep-alive: {}", info_.id, ttl.status().toString());
    }
    refreshView();
    lock.lock();
  }
}

void WorkerAgent::refreshView() {
  std::string leaderRpc, leaderBlob;
  std::vector<std::string> peers;
  auto leader = etcd_->get(cluster::leaderKey(options_.prefix));
  if (!leader.isOk()) return;  // keep the last view while etcd is away
  if (leader->has_value()) {
    if (auto l = cluster::leaderFromJson((*leader)->value); l.isOk()) {
      leaderRpc = l->rpcUrl;
      leaderBlob = l->blobUrl;
    }
  }
  std::vector<std::string> controllers;
  if (auto all = etcd_->getPrefix(cluster::controllersPrefix(options_.prefix)); all.isOk()) {
    for (const auto& kv : *all) {
      auto c = cluster::leaderFromJson(kv.value);
      if (c.isOk() && !c->blobUrl.empty() && c->blobUrl != leaderBlob) {
        controllers.push_back(c->blobUrl);
      }
    }
  }
  auto members = etcd_->getPrefix(cluster::workersPrefix(options_.prefix));
  if (members.isOk()) {
    for (const auto& kv : *members) {
      auto w = cluster::workerFromJson(kv.value);
      if (w.isOk() && w->id != info_.id && !w->blobUrl.empty()) peers.push_back(w->blobUrl);
    }
  }
  std::lock_guard lock(mu_);
  leaderRpcUrl_ = leaderRpc;
  leaderBlobUrl_ = leaderBlob;
  // Other controllers (replicas of the origin) before peers.
  if (members.isOk()) {
    controllers.insert(controllers.end(), peers.begin(), peers.end());
    peerBlobUrls_ = std::move(controllers);
  }
}

std::vector<std::string> WorkerAgent::codeSources() {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  if (!leaderBlobUrl_.empty()) out.push_back(leaderBlobUrl_);
  for (const auto& p : peerBlobUrls_) out.push_back(p);
  return out;
}

void WorkerAgent::reportLost(const std::string& instanceId, const Status& cause) {
  std::string leader;
  {
    std::lock_guard lock(mu_);
    leader = leaderRpcUrl_;
  }
  if (leader.empty()) return;
  pool_.post([leader, instanceId, cause] {
    json::object o;
    o["instanceId"] = instanceId;
    o["message"] = cause.toString();
    auto r = httpRequest(leader, "POST", "/cluster/v1/instance-lost",
                         {{"Content-Type", "application/json"}}, json::serialize(o),
                         std::chrono::seconds(3));
    if (Status s = cluster::statusFromRpc(r, "report lost instance " + instanceId); !s) {
      SLOG_WARN("{}", s.toString());
    }
  });
}

void WorkerAgent::handle(HttpRequest req, HttpRespond respond) {
  auto segs = splitPath(req.path);
  if (req.method == "GET" && req.path == "/healthz") {
    HttpResponse r;
    r.headers["Content-Type"] = "application/json";
    r.body = R"({"status":"ok","role":"worker"})";
    return respond(std::move(r));
  }
  if (segs.size() >= 3 && segs[0] == "cluster" && segs[1] == "v1") {
    if (segs[2] == "instances" && segs.size() == 5 && segs[4] == "invoke" && req.method == "POST") {
      std::string id(segs[3]);
      bool known;
      {
        std::lock_guard lock(mu_);
        known = instances_.count(id) > 0;
      }
      if (!known) {
        InvokeResult r;
        r.status = Status(Code::kNotFound, "instance " + id + " is not on worker " + info_.id);
        HttpResponse http = cluster::encodeInvokeResult(r);
        http.headers["x-stratus-retryable"] = "1";
        return respond(std::move(http));
      }
      InvokeRequest ir = cluster::decodeInvokeRequest(req);
      worker_.invoke(id, std::move(ir), [respond = std::move(respond)](InvokeResult r) {
        respond(cluster::encodeInvokeResult(r));
      });
      return;
    }
    if (segs[2] == "instances" && segs.size() == 4) {
      std::string id(segs[3]);
      if (req.method == "POST") return startInstance(id, std::move(req), std::move(respond));
      if (req.method == "DELETE") {
        {
          std::lock_guard lock(mu_);
          instances_.erase(id);
        }
        worker_.stopInstance(id);
        return respond(cluster::rpcJson(json::object()));
      }
    }
    if (segs[2] == "reset" && segs.size() == 3 && req.method == "POST") {
      std::set<std::string> all;
      {
        std::lock_guard lock(mu_);
        all.swap(instances_);
      }
      SLOG_INFO("worker {}: reset by a new leader: stopping {} instances", info_.id, all.size());
      for (const auto& id : all) worker_.stopInstance(id);
      return respond(cluster::rpcJson(json::object()));
    }
  }
  respond(cluster::rpcError(notFound("no worker RPC at " + req.method + " " + req.path)));
}

void WorkerAgent::startInstance(const std::string& id, HttpRequest req, HttpRespond respond) {
  // Fetching code blocks (network): off the server's threads.
  pool_.post([this, id, req = std::move(req), respond = std::move(respond)]() mutable {
    auto body = parseJson(req.body);
    if (!body || !body->is_object() || !body->as_object().contains("spec")) {
      return respond(cluster::rpcError(invalidArgument("start needs {\"spec\": ...}")));
    }
    const json::value& specJson = body->as_object().at("spec");
    auto spec = functionFromStorageJson(specJson.is_string() ? std::string(specJson.as_string())
                                                             : json::serialize(specJson));
    if (!spec) return respond(cluster::rpcError(spec.status()));
    // Owned by the host uid the function runs as (its tenant's), unreadable to anyone else.
    auto owner = worker_.codeOwner(*spec);
    if (!owner) return respond(cluster::rpcError(owner.status()));
    auto codeDir = code_->acquire(spec->codeSha256, CodeOwner{owner->uid, owner->gid});
    if (!codeDir) {
      SLOG_WARN("worker {}: code {} for {}: {}", info_.id, spec->codeSha256, id,
                codeDir.status().toString());
      return respond(cluster::rpcError(
          Status(Code::kUnavailable, "fetch code " + spec->codeSha256 + " on worker " + info_.id +
                                         ": " + codeDir.status().message())));
    }
    worker_.startInstance(id, *spec, *codeDir,
                          [this, id, respond = std::move(respond)](Result<InstanceReady> r) {
                            if (!r) return respond(cluster::rpcError(r.status()));
                            {
                              std::lock_guard lock(mu_);
                              instances_.insert(id);
                            }
                            json::object o;
                            o["initDurationUs"] = r->initDurationUs;
                            respond(cluster::rpcJson(o));
                          });
  });
}

}  // namespace stratus
