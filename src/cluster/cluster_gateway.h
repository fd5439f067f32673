// ClusterGateway: the public front door of a cluster (`stratus gateway`). Stateless apart from
// caches; run as many as needed behind a load balancer.
//
//   invocations (Sync)  authenticated here (API key hash -> tenant, read from etcd once and
//                       cached), then sent straight to the worker holding an instance, using a
//                       lease from the leader controller (rpc.h). Leases are kept while traffic
//                       flows (released after holdIdle without use, renewed in the background),
//                       so a warm call makes no controller or etcd round trip -- and keeps
//                       working while etcd or the controller is away.
//                       A call that never reached the function (worker unreachable, instance
//                       gone) is retried with another lease, up to 3 attempts; a call lost after
//                       it was sent fails with 503 and a message saying it was not retried.
//                       The tenant's quotas (requestsPerSecond/burst per tenant,
//                       functionRequestsPerSecond per function) apply here too, per gateway:
//                       with N gateways behind a balancer a tenant gets up to N times its rate.
//   everything else     (CRUD, async invocations, tenants, metrics of the API) is forwarded
//                       as is to the leader's public API, which applies the front door's
//                       policy.
//   invalidation        a background loop polls etcd (pollInterval): a new leader (epoch) drops
//                       every lease, a function whose spec changed (mod revision) or vanished
//                       releases its leases so the next call gets the new revision.
// Thread-safety: start()/stop() from the owner; requests are served on the HTTP threads and a
// blocking pool.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "api/rate_limiter.h"
#include "cluster/blocking_pool.h"
#include "cluster/etcd_client.h"
#include "cluster/rpc.h"
#include "gateway/http_server.h"
#include "store/etcd_store.h"

namespace stratus {

struct ClusterGatewayOptions {
  std::string prefix = "/stratus/";
  std::string listenAddress = "127.0.0.1";
  uint16_t port = 9000;
  int httpThreads = 2;
  int blockingThreads = 64;  // calls in flight to workers at once
  Duration holdIdle = std::chrono::seconds(2);
  Duration pollInterval = std::chrono::milliseconds(500);
  Duration renewInterval = std::chrono::seconds(5);
};

struct ClusterGatewayStats {
  int64_t invocations = 0;
  int64_t leaseAcquires = 0;  // controller round trips for a lease
  int64_t warmHits = 0;       // calls served with a lease already held
  int64_t retries = 0;        // calls sent again because they never reached the function
  int64_t forwarded = 0;      // requests forwarded to the controller
  int64_t rateLimited = 0;    // invocations refused by a tenant quota (429)
};

class ClusterGateway {
 public:
  ClusterGateway(std::shared_ptr<EtcdClient> etcd, ClusterGatewayOptions options);
  ~ClusterGateway();
  Status start();
  uint16_t port() const;
  void stop();
  ClusterGatewayStats stats() const;

 private:
  struct Held {
    cluster::GrantedLease lease;
    std::string tenant, name;
    int64_t specModRevision = 0;  // of the function's etcd key when the lease was taken
    bool busy = false;
    bool used = false;
    std::chrono::steady_clock::time_point lastUsed;
  };
  using HeldPtr = std::shared_ptr<Held>;

  void handle(HttpRequest req, HttpRespond respond);
  void invoke(std::string tenant, std::string name, HttpRequest req, std::string rid,
              HttpRespond respond);
  void forward(HttpRequest req, HttpRespond respond);
  Result<std::string> authenticate(const HttpRequest& req);
  // 429 when the tenant or the function is over its quota.
  std::optional<HttpResponse> rateLimit(const std::string& tenant, const std::string& name,
                                        const std::string& rid);
  Result<HeldPtr> takeLease(const std::string& tenant, const std::string& name, bool* fresh);
  void giveBack(const HeldPtr& h);
  void drop(const HeldPtr& h, bool release, bool healthy, bool unreachable);
  void housekeeping();
  void pollEtcd();
  Result<cluster::LeaderInfo> leader();

  std::shared_ptr<EtcdClient> etcd_;
  EtcdStore store_;
  ClusterGatewayOptions options_;
  BlockingPool pool_;
  std::unique_ptr<HttpServer> server_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                                     // GUARDED_BY(mu_)
  std::unordered_map<std::string, std::string> tenantByKey_;  // GUARDED_BY(mu_)
  std::map<std::string, std::vector<HeldPtr>> held_;          // GUARDED_BY(mu_)
  std::map<std::string, int64_t> specRevisions_;              // GUARDED_BY(mu_): etcd key
  std::optional<cluster::LeaderInfo> leader_;                 // GUARDED_BY(mu_)
  std::map<std::string, TenantQuota> quotas_;                 // GUARDED_BY(mu_): from etcd
  SystemClock clock_;
  RateLimiter limiter_{clock_};
  std::thread housekeeper_;

  std::atomic<int64_t> invocations_{0}, acquires_{0}, warmHits_{0}, retries_{0}, forwarded_{0},
      rateLimited_{0};
};

}  // namespace stratus
