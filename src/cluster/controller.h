// Cluster controller: the API and the scheduler of a Stratus cluster, elected through etcd.
//
//   ClusterInvoker  the Invoker the controller's Api uses, and the scheduler's InstanceLauncher:
//                   the same Scheduler as all-in-one mode, with one host per registered worker
//                   (zones from the worker's registration, so placement spreads a function over
//                   zones) and instances started, stopped and invoked over the worker RPC.
//                   Gateways take *leases* from it: a concurrency slot on an instance that the
//                   gateway keeps while it has traffic and calls directly, so a warm call makes
//                   no controller round trip. A lease not renewed within leaseTtl (its gateway
//                   died) returns to the scheduler.
//   Controller      leader election (a key under an etcd lease; the stand-by campaigns until the
//                   key goes away with a dead leader's lease), worker membership (hosts appear
//                   with their lease key and die when it expires; a worker that comes back, or a
//                   new leader, first resets it so that no instance is orphaned), the controller
//                   RPC of rpc.h, and code: a BlobServer over the code blob store; every
//                   controller copies the blobs the others have (anti-entropy, every second),
//                   so a stand-by can serve all code once it takes over and a restarted old
//                   leader catches up with what was deployed while it was away.
//
// A leader that cannot renew its lease within the TTL stops serving (leadershipLost()); the
// daemon exits and its supervisor restarts it as a stand-by, as kube-controller-manager does.
// Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cluster/blocking_pool.h"
#include "cluster/etcd_client.h"
#include "cluster/rpc.h"
#include "codepack/blob_http.h"
#include "codepack/blob_store.h"
#include "common/invoke.h"
#include "gateway/http_server.h"
#include "scheduler/scheduler.h"
#include "store/store.h"

namespace stratus {

class ClusterInvoker final : public Invoker, private InstanceLauncher {
 public:
  ClusterInvoker(MetadataStore& store, const Clock& clock, SchedulerOptions options, int64_t epoch,
                 Duration leaseTtl = std::chrono::seconds(30));
  ~ClusterInvoker() override;

  void invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) override;
  void functionChanged(const FunctionSpec& fn) override;
  void functionDeleted(const FunctionSpec& fn) override;
  void shutdown() override;

  // Gateway leases. acquire runs done on a pool thread.
  void acquireLease(const std::string& tenant, const std::string& name,
                    std::function<void(Result<cluster::GrantedLease>)> done);
  // workerUnreachable: the gateway could not reach the instance's worker; it is health-checked
  // (and written off if it does not answer) before done runs, so that the caller's retry is not
  // routed to it again. done runs on a pool thread.
  void releaseLease(const std::string& leaseId, bool healthy, bool workerUnreachable,
                    std::function<void(Status)> done);
  // Renews the gateway's leases; returns the ids that are not (or no longer) valid.
  std::vector<std::string> renewLeases(const std::vector<std::string>& ids);

  void instanceLost(const std::string& instanceId);
  // Membership: the workers registered in etcd now. New ones (or new incarnations) are reset and
  // added; missing ones are dead.
  void syncMembers(const std::vector<cluster::WorkerInfo>& alive);
  // Timers: the scheduler's and lease expiry.
  void tick();
  Scheduler& scheduler() { return *scheduler_; }
  size_t hostCount();

 private:
  struct Host {
    cluster::WorkerInfo info;
    bool dead = false;
  };
  struct HeldLease {
    Lease lease;
    TimePoint renewed;
  };
  void launchOn(const std::string& hostId, const std::string& instanceId, const FunctionRef& fn,
                std::function<void(Result<int64_t>)> ready) override;
  void launch(const std::string& instanceId, const FunctionRef& fn,
              std::function<void(Result<int64_t>)> ready) override;
  void stop(const std::string& instanceId) override;

  void attempt(std::shared_ptr<const FunctionSpec> fn, InvokeRequest req, InvokeCallback done,
               int tries);
  Result<std::shared_ptr<const FunctionSpec>> lookup(const std::string& tenant,
                                                     const std::string& name);
  void remember(const FunctionSpec& fn);
  std::string hostUrl(const std::string& hostId);
  // A call could not reach hostId: if it does not answer a health check either, it is dead now
  // (without waiting for its lease to expire). Blocks briefly; call on the pool.
  void suspect(const std::string& hostId);
  Status resetWorker(const cluster::WorkerInfo& w);

  MetadataStore& store_;
  const Clock& clock_;
  const int64_t epoch_;
  const Duration leaseTtl_;
  BlockingPool pool_{32};  // calls, lease grants, releases
  // Instance starts (code fetch + init: up to a minute each) and stops, apart so that slow
  // starts never hold up lease grants for warm instances.
  BlockingPool startPool_{32};
  std::unique_ptr<Scheduler> scheduler_;

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const FunctionSpec>> specs_;  // GUARDED_BY(mu_)
  std::map<std::string, Host> hosts_;                                 // GUARDED_BY(mu_)
  std::map<std::string, std::string> instanceHost_;                   // GUARDED_BY(mu_)
  std::map<std::string, HeldLease> leases_;                           // GUARDED_BY(mu_)
  std::atomic<bool> shutdown_{false};
};

struct ControllerOptions {
  std::string prefix = "/stratus/";
  std::string id;
  std::string apiUrl;  // where the public API will be served (advertised to gateways)
  std::string rpcListenAddress = "127.0.0.1";
  uint16_t rpcPort = 0;
  std::string blobListenAddress = "127.0.0.1";
  uint16_t blobPort = 0;
  std::string advertiseHost;  // default: the listen addresses
  int64_t leaseTtlSeconds = 3;
  std::filesystem::path codeBlobDir;  // the CodeCache's origin directory (code/blobs)
  SchedulerOptions scheduler;
};

class Controller {
 public:
  Controller(std::shared_ptr<EtcdClient> etcd, MetadataStore& store,
             std::shared_ptr<LocalDirBlobStore> blobs, ControllerOptions options);
  ~Controller();

  // Starts the RPC and blob servers (a stand-by serves code too).
  Status start();
  // Campaigns until this controller leads. Returns
  // false when `stop` became true first.
  bool campaign(const std::function<bool()>& stop);
  // Leader only: starts membership, timers and lease keep-alive; the invoker is ready for an Api.
  ClusterInvoker& lead();
  // True once a leader could not renew its lease within the TTL.
  bool leadershipLost() const { return lost_.load(); }
  // Steps down (revokes the leader lease) and stops everything.
  void stop();
  const cluster::LeaderInfo& info() const { return info_; }

 private:
  void handleRpc(HttpRequest req, HttpRespond respond);
  void leaderLoop();
  void replicateOnce();  // copies the code blobs other controllers have and this one lacks
  void replicationLoop();

  std::shared_ptr<EtcdClient> etcd_;
  MetadataStore& store_;
  std::shared_ptr<LocalDirBlobStore> blobs_;
  ControllerOptions options_;
  SystemClock clock_;
  cluster::LeaderInfo info_;
  std::unique_ptr<BlobServer> blobServer_;
  std::unique_ptr<HttpServer> rpc_;
  std::unique_ptr<ClusterInvoker> invoker_;
  std::atomic<ClusterInvoker*> active_{nullptr};  // set once leading
  std::atomic<bool> lost_{false};
  int64_t lease_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::thread leader_;
  std::thread replicator_;
};

}  // namespace stratus
