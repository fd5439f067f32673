#include "cluster/cluster_gateway.h"

#include <strings.h>

#include <cstdio>
#include <set>

#include "api/api.h"
#include "common/base64.h"
#include "common/ids.h"
#include "common/log.h"
#include "http/http_client.h"

namespace stratus {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

bool isHopByHop(std::string_view name) {
  static constexpr std::string_view kNames[] = {"connection",
                                                "keep-alive",
                                                "proxy-authenticate",
                                                "proxy-authorization",
                                                "te",
                                                "trailer",
                                                "trailers",
                                                "transfer-encoding",
                                                "upgrade",
                                                "content-length",
                                                "host"};
  for (auto n : kNames) {
    if (iequals(name, n)) return true;
  }
  return false;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool isSaneRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string percentEncode(std::string_view s, bool keepSlash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || c == '.' || c == '~' || (keepSlash && c == '/');
    if (plain) {
      out += c;
    } else {
      out += '%';
      out += kHex[(static_cast<unsigned char>(c) >> 4) & 0xf];
      out += kHex[static_cast<unsigned char>(c) & 0xf];
    }
  }
  return out;
}

}  // namespace

ClusterGateway::ClusterGateway(std::shared_ptr<EtcdClient> etcd, ClusterGatewayOptions options)
    : etcd_(etcd),
      store_(etcd, options.prefix),
      options_(std::move(options)),
      pool_(options_.blockingThreads) {}

ClusterGateway::~ClusterGateway() { stop(); }

Status ClusterGateway::start() {
  HttpServerOptions http;
  http.listenAddress = options_.listenAddress;
  http.port = options_.port;
  http.threads = options_.httpThreads;
  server_ = std::make_unique<HttpServer>(http, [this](HttpRequest req, HttpRespond respond) {
    handle(std::move(req), std::move(respond));
  });
  RETURN_IF_ERROR(server_->start());
  pollEtcd();
  housekeeper_ = std::thread([this] { housekeeping(); });
  return Status::ok();
}

uint16_t ClusterGateway::port() const { return server_ ? server_->boundPort() : 0; }

void ClusterGateway::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (housekeeper_.joinable()) housekeeper_.join();
  if (server_) server_->stop(std::chrono::seconds(5));
  // Give the slots back so that the instances can idle out.
  std::vector<HeldPtr> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [k, v] : held_) all.insert(all.end(), v.begin(), v.end());
    held_.clear();
  }
  for (auto& h : all) drop(h, true, true, false);
  pool_.stop();
}

ClusterGatewayStats ClusterGateway::stats() const {
  return ClusterGatewayStats{invocations_.load(), acquires_.load(),  warmHits_.load(),
                             retries_.load(),     forwarded_.load(), rateLimited_.load()};
}

void ClusterGateway::handle(HttpRequest req, HttpRespond respond) {
  std::string rid;
  if (auto incoming = req.header("x-fc-request-id"); incoming && isSaneRequestId(*incoming)) {
    rid = std::string(*incoming);
  } else {
    rid = newRequestId();
  }
  req.headers["x-fc-request-id"] = rid;
  if (req.method == "GET" && req.path == "/healthz") {
    HttpResponse r;
    r.headers["Content-Type"] = "application/json";
    r.headers["x-fc-request-id"] = rid;
    r.body = R"({"status":"ok","role":"gateway"})";
    return respond(std::move(r));
  }
  if (req.method == "GET" && req.path == "/metrics") {
    auto s = stats();
    HttpResponse r;
    r.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8";
    r.body =
        "# TYPE stratus_gateway_invocations_total counter\nstratus_gateway_invocations_total " +
        std::to_string(s.invocations) +
        "\n# TYPE stratus_gateway_lease_acquires_total counter\n"
        "stratus_gateway_lease_acquires_total " +
        std::to_string(s.leaseAcquires) +
        "\n# TYPE stratus_gateway_warm_hits_total counter\nstratus_gateway_warm_hits_total " +
        std::to_string(s.warmHits) +
        "\n# TYPE stratus_gateway_retries_total counter\nstratus_gateway_retries_total " +
        std::to_string(s.retries) +
        "\n# TYPE stratus_gateway_forwarded_total counter\nstratus_gateway_forwarded_total " +
        std::to_string(s.forwarded) +
        "\n# TYPE stratus_gateway_rate_limited_total counter\n"
        "stratus_gateway_rate_limited_total " +
        std::to_string(s.rateLimited) + "\n";
    return respond(std::move(r));
  }
  auto segs = splitPath(req.path);
  bool syncInvoke = req.method == "POST" && segs.size() == 4 && segs[0] == "2023-03-30" &&
                    segs[1] == "functions" && segs[3] == "invocations";
  if (syncInvoke) {
    if (auto type = req.header("x-fc-invocation-type"); type && !iequals(*type, "Sync")) {
      syncInvoke = false;  // Async (durable queue) and errors: the controller's Api
    }
  }
  if (!syncInvoke) {
    pool_.post([this, req = std::move(req), respond = std::move(respond)]() mutable {
      forward(std::move(req), std::move(respond));
    });
    return;
  }
  std::string name(segs[2]);
  pool_.post([this, name, rid, req = std::move(req), respond = std::move(respond)]() mutable {
    auto tenant = authenticate(req);
    if (!tenant) return respond(errorResponse(tenant.status(), rid));
    if (auto limited = rateLimit(*tenant, name, rid)) return respond(std::move(*limited));
    invoke(std::move(*tenant), name, std::move(req), rid, std::move(respond));
  });
}

Result<std::string> ClusterGateway::authenticate(const HttpRequest& req) {
  std::string_view key;
  if (auto auth = req.header("authorization")) {
    std::string_view v = trim(*auth);
    constexpr std::string_view kScheme = "bearer ";
    if (v.size() <= kScheme.size() ||
        ::strncasecmp(v.data(), kScheme.data(), kScheme.size()) != 0) {
      return Status(Code::kUnauthenticated, "Authorization header must be 'Bearer <key>'");
    }
    key = trim(v.substr(kScheme.size()));
  } else if (auto x = req.header("x-api-key")) {
    key = trim(*x);
  }
  if (key.empty()) {
    return Status(Code::kUnauthenticated, "missing Authorization: Bearer <key> header");
  }
  std::string hash = sha256Hex(key);
  {
    std::lock_guard lock(mu_);
    auto it = tenantByKey_.find(hash);
    if (it != tenantByKey_.end()) return it->second;
  }
  auto found = store_.findApiKey(hash);
  if (!found) {
    if (found.status().code() == Code::kNotFound) {
      return Status(Code::kUnauthenticated, "invalid API key");
    }
    return Status(Code::kUnavailable, "cannot check the API key: " + found.status().message());
  }
  std::lock_guard lock(mu_);
  tenantByKey_[hash] = found->tenant;
  return found->tenant;
}

std::optional<HttpResponse> ClusterGateway::rateLimit(const std::string& tenant,
                                                      const std::string& name,
                                                      const std::string& rid) {
  TenantQuota q;
  {
    std::lock_guard lock(mu_);
    auto it = quotas_.find(tenant);
    if (it != quotas_.end()) q = it->second;
  }
  auto limited = checkRateLimit(limiter_, q, tenant, nullptr, rid);
  if (!limited) limited = checkRateLimit(limiter_, q, tenant, &name, rid);
  if (limited) rateLimited_.fetch_add(1, std::memory_order_relaxed);
  return limited;
}

Result<cluster::LeaderInfo> ClusterGateway::leader() {
  {
    std::lock_guard lock(mu_);
    if (leader_) return *leader_;
  }
  pollEtcd();
  std::lock_guard lock(mu_);
  if (leader_) return *leader_;
  return unavailable("no controller is leading the cluster right now; retry shortly");
}

Result<ClusterGateway::HeldPtr> ClusterGateway::takeLease(const std::string& tenant,
                                                          const std::string& name, bool* fresh) {
  const std::string key = tenant + "/" + name;
  {
    std::lock_guard lock(mu_);
    auto it = held_.find(key);
    if (it != held_.end()) {
      for (auto& h : it->second) {
        if (!h->busy) {
          h->busy = true;
          *fresh = false;
          return h;
        }
      }
    }
  }
  *fresh = true;
  ASSIGN_OR_RETURN(cluster::LeaderInfo l, leader());
  json::object body;
  body["tenant"] = tenant;
  body["function"] = name;
  acquires_.fetch_add(1, std::memory_order_relaxed);
  // A cold start waits here: bounded by the function's init time, generously.
  auto r =
      httpRequest(l.rpcUrl, "POST", "/cluster/v1/acquire", {{"Content-Type", "application/json"}},
                  json::serialize(body), std::chrono::seconds(120));
  if (!r) {
    {
      std::lock_guard lock(mu_);
      leader_.reset();  // re-read it from etcd next time
    }
    return unavailable("the controller is unreachable: " + r.status().message());
  }
  RETURN_IF_ERROR(cluster::statusFromRpc(r, "acquire"));
  ASSIGN_OR_RETURN(cluster::GrantedLease g, cluster::leaseFromJson(r->body));
  auto h = std::make_shared<Held>();
  h->lease = std::move(g);
  h->tenant = tenant;
  h->name = name;
  h->busy = true;
  std::lock_guard lock(mu_);
  auto rev = specRevisions_.find(store_.functionKey(tenant, name));
  h->specModRevision = rev == specRevisions_.end() ? 0 : rev->second;
  held_[key].push_back(h);
  return h;
}

void ClusterGateway::giveBack(const HeldPtr& h) {
  std::lock_guard lock(mu_);
  h->busy = false;
  h->used = true;
  h->lastUsed = std::chrono::steady_clock::now();
}

void ClusterGateway::drop(const HeldPtr& h, bool release, bool healthy, bool unreachable) {
  {
    std::lock_guard lock(mu_);
    auto it = held_.find(h->lease.functionKey);
    if (it != held_.end()) {
      std::erase(it->second, h);
      if (it->second.empty()) held_.erase(it);
    }
  }
  if (!release) return;
  std::optional<cluster::LeaderInfo> l;
  {
    std::lock_guard lock(mu_);
    l = leader_;
  }
  if (!l || l->epoch != h->lease.epoch) return;  // its controller is gone: nothing to return
  json::object body;
  body["leaseId"] = h->lease.leaseId;
  body["healthy"] = healthy;
  body["workerUnreachable"] = unreachable;
  auto r =
      httpRequest(l->rpcUrl, "POST", "/cluster/v1/release", {{"Content-Type", "application/json"}},
                  json::serialize(body), std::chrono::seconds(3));
  if (Status s = cluster::statusFromRpc(r, "release lease " + h->lease.leaseId); !s) {
    SLOG_DEBUG("{}", s.toString());
  }
}

void ClusterGateway::invoke(std::string tenant, std::string name, HttpRequest req, std::string rid,
                            HttpRespond respond) {
  invocations_.fetch_add(1, std::memory_order_relaxed);
  InvokeRequest ir;
  ir.requestId = rid;
  if (auto lt = req.header("x-fc-log-type"); lt && iequals(*lt, "Tail")) ir.wantLogTail = true;
  for (auto& [k, v] : req.headers) {
    if (iequals(k, "authorization") || iequals(k, "x-api-key") || iequals(k, "x-fc-request-id") ||
        isHopByHop(k)) {
      continue;
    }
    ir.headers.emplace(k, v);
  }
  ir.headers["x-fc-request-id"] = rid;
  ir.payload = std::move(req.body);

  Status lastFailure;
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool fresh = false;
    auto held = takeLease(tenant, name, &fresh);
    if (!held) {
      const Status& s = held.status();
      if (s.code() == Code::kFailedPrecondition) {
        // The instance could not start because of the function (bad handler, exception at
        // import): a function error, as the Api reports it.
        InvokeResult r;
        r.functionError = FunctionErrorKind::kUnhandled;
        r.body = s.message();
        r.coldStart = true;
        return respond(invokeResponse(r, "", ir.wantLogTail, rid));
      }
      if (s.code() == Code::kNotFound) {
        return respond(errorResponse(s, rid, "FunctionNotFound"));
      }
      return respond(errorResponse(s, rid));
    }
    HeldPtr h = *held;
    if (!fresh) warmHits_.fetch_add(1, std::memory_order_relaxed);
    auto outcome = cluster::invokeOnWorker(h->lease.workerUrl, h->lease.instanceId, ir,
                                           std::chrono::seconds(h->lease.timeoutSec + 10));
    if (outcome.notSent) {
      // Never reached the function: drop the lease, tell the controller, try another.
      retries_.fetch_add(1, std::memory_order_relaxed);
      SLOG_INFO("call {} did not reach {} ({}): retrying", rid, h->lease.instanceId,
                outcome.result.status.message());
      lastFailure = outcome.result.status;
      // Every other lease on that worker is as dead: give them up (not busy ones; the calls on
      // busy ones find out by themselves).
      std::vector<HeldPtr> sameWorker;
      {
        std::lock_guard lock(mu_);
        for (auto& [k, v] : held_) {
          for (auto& other : v) {
            if (other != h && !other->busy && other->lease.workerUrl == h->lease.workerUrl) {
              sameWorker.push_back(other);
            }
          }
        }
      }
      drop(h, true, false, true);
      for (auto& other : sameWorker) drop(other, true, false, false);
      continue;
    }
    InvokeResult& res = outcome.result;
    if (!h->used) {
      res.coldStart = h->lease.coldStart;
      res.initDurationUs = h->lease.initDurationUs;
    }
    if (res.instanceId.empty()) res.instanceId = h->lease.instanceId;
    if (res.instanceLost || !res.status.isOk()) {
      drop(h, true, false, !res.status.isOk() && res.status.code() == Code::kUnavailable);
    } else {
      giveBack(h);
    }
    HttpResponse out = invokeResponse(res, h->lease.runtime, ir.wantLogTail, rid);
    // Which worker ran the call: operators (and the failover tests) see the routing.
    if (res.status.isOk()) out.headers["x-stratus-worker-id"] = h->lease.hostId;
    return respond(std::move(out));
  }
  respond(errorResponse(
      Status(Code::kUnavailable,
             "no worker could take the call after 3 attempts: " + lastFailure.message()),
      rid));
}

void ClusterGateway::forward(HttpRequest req, HttpRespond respond) {
  forwarded_.fetch_add(1, std::memory_order_relaxed);
  std::string rid = req.headers["x-fc-request-id"];
  auto l = leader();
  if (!l) return respond(errorResponse(l.status(), rid));
  std::string target = percentEncode(req.path, true);
  if (!req.query.empty()) {
    char sep = '?';
    for (const auto& [k, v] : req.query) {
      target += sep;
      target += percentEncode(k, false) + "=" + percentEncode(v, false);
      sep = '&';
    }
  }
  HttpHeaders headers;
  for (const auto& [k, v] : req.headers) {
    if (!isHopByHop(k)) headers[k] = v;
  }
  auto r = httpRequest(l->apiUrl, req.method, target, headers, req.body, std::chrono::seconds(300));
  if (!r) {
    {
      std::lock_guard lock(mu_);
      leader_.reset();
    }
    return respond(errorResponse(unavailable("the controller's API at " + l->apiUrl +
                                             " is unreachable: " + r.status().message()),
                                 rid));
  }
  // This gateway's own update or delete takes effect for its next call, not the next poll.
  auto segs = splitPath(req.path);
  if ((req.method == "PUT" || req.method == "DELETE") && r->status / 100 == 2 && segs.size() == 3 &&
      segs[0] == "2023-03-30" && segs[1] == "functions") {
    std::vector<HeldPtr> stale;
    {
      std::lock_guard lock(mu_);
      for (auto& [k, v] : held_) {
        for (auto& h : v) {
          if (h->name == segs[2] && !h->busy) stale.push_back(h);
        }
      }
    }
    for (auto& h : stale) drop(h, true, true, false);
  }
  HttpResponse out;
  out.status = r->status;
  for (const auto& [k, v] : r->headers) {
    if (!isHopByHop(k)) out.headers[k] = v;
  }
  out.body = std::move(r->body);
  respond(std::move(out));
}

void ClusterGateway::pollEtcd() {
  auto leaderKv = etcd_->get(cluster::leaderKey(options_.prefix));
  if (leaderKv) {
    std::optional<cluster::LeaderInfo> now;
    if (leaderKv->has_value()) {
      if (auto l = cluster::leaderFromJson((*leaderKv)->value)) now = std::move(*l);
    }
    std::vector<HeldPtr> stale;
    {
      std::lock_guard lock(mu_);
      if (now) {
        // Leases of another epoch belong to a controller that is gone (the new one reset the
        // workers): forget them.
        for (auto& [k, v] : held_) {
          for (auto& h : v) {
            if (h->lease.epoch != now->epoch && !h->busy) stale.push_back(h);
          }
        }
      }
      leader_ = now;
    }
    for (auto& h : stale) drop(h, false, false, false);
  }
  if (auto tenants = store_.listTenants(); tenants.isOk()) {
    std::map<std::string, TenantQuota> quotas;
    for (const auto& t : *tenants) quotas[t.name] = t.quota;
    std::lock_guard lock(mu_);
    quotas_ = std::move(quotas);
  }
  auto fns = etcd_->getPrefix(store_.functionsPrefix(), /*keysOnly=*/true);
  if (!fns) return;  // etcd away: keep serving with what we hold
  std::map<std::string, int64_t> revs;
  for (const auto& kv : *fns) revs[kv.key] = kv.modRevision;
  std::vector<HeldPtr> changed;
  {
    std::lock_guard lock(mu_);
    specRevisions_ = revs;
    for (auto& [k, v] : held_) {
      for (auto& h : v) {
        auto it = revs.find(store_.functionKey(h->tenant, h->name));
        if (!h->busy && (it == revs.end() || it->second != h->specModRevision)) {
          changed.push_back(h);
        }
      }
    }
  }
  for (auto& h : changed) drop(h, true, true, false);
}

void ClusterGateway::housekeeping() {
  auto nextPoll = std::chrono::steady_clock::now();
  auto nextRenew = nextPoll + options_.renewInterval;
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stopping_; })) {
    auto now = std::chrono::steady_clock::now();
    std::vector<HeldPtr> idle, all;
    for (auto& [k, v] : held_) {
      for (auto& h : v) {
        all.push_back(h);
        if (!h->busy && now - h->lastUsed > options_.holdIdle) idle.push_back(h);
      }
    }
    std::optional<cluster::LeaderInfo> l = leader_;
    lock.unlock();
    for (auto& h : idle) drop(h, true, true, false);
    if (now >= nextPoll) {
      pollEtcd();
      nextPoll = now + options_.pollInterval;
    }
    if (now >= nextRenew && l && !all.empty()) {
      nextRenew = now + options_.renewInterval;
      json::array ids;
      for (auto& h : all) ids.emplace_back(h->lease.leaseId);
      json::object body;
      body["leaseIds"] = std::move(ids);
      auto r = httpRequest(l->rpcUrl, "POST", "/cluster/v1/renew",
                           {{"Content-Type", "application/json"}}, json::serialize(body),
                           std::chrono::seconds(3));
      if (r && r->status == 200) {
        if (auto o = parseJson(r->body); o && o->is_object()) {
          if (const json::value* u = o->as_object().if_contains("unknown"); u && u->is_array()) {
            std::set<std::string> unknown;
            for (const auto& v : u->as_array()) {
              if (v.is_string()) unknown.emplace(v.as_string());
            }
            for (auto& h : all) {
              // The controller no longer knows it (restarted, or it expired): forget it; a
              // call in flight on it finishes and its slot is not given back twice.
              if (unknown.count(h->lease.leaseId)) drop(h, false, false, false);
            }
          }
        }
      }
    }
    lock.lock();
  }
}

}  // namespace stratus
