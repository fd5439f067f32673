// WorkerAgent: a Worker on the cluster. Registers the host in etcd under a lease kept alive
// every ttl/3 (a worker that dies or is cut off disappears from membership when the lease
// expires), serves the worker RPC of rpc.h on its own port for the controller (start, stop,
// reset) and for gateways and the controller (invoke), reports lost instances to the leader,
// and gets code through a HostCodeCache whose source is the leader's blob server, then the
// other workers (peers) -- the same blobs this host serves to its peers with its own BlobServer.
//
// Thread-safety: start()/stop() from the owner; everything else runs on the agent's threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cluster/blocking_pool.h"
#include "cluster/etcd_client.h"
#include "cluster/rpc.h"
#include "codepack/blob_http.h"
#include "codepack/host_cache.h"
#include "gateway/http_server.h"
#include "worker/worker.h"

namespace stratus {

struct WorkerAgentOptions {
  std::string prefix = "/stratus/";
  std::string id;  // unique per host
  std::string zone = "default";
  std::string listenAddress = "127.0.0.1";
  uint16_t port = 0;
  std::string advertiseHost;  // how others reach this host; default listenAddress
  int64_t memoryMb = 8192;
  int64_t cpuMillis = 4000;
  int maxInstances = 500;
  int64_t leaseTtlSeconds = 3;
  std::filesystem::path codeDir;  // host code cache (blobs, mounts, trees)
  bool useFuse = true;
  int httpThreads = 2;
};

class WorkerAgent {
 public:
  WorkerAgent(Worker& worker, std::shared_ptr<EtcdClient> etcd, WorkerAgentOptions options);
  ~WorkerAgent();  // stop()

  // Starts the RPC and blob servers, registers in etcd and keeps the lease alive. Fails if a
  // port cannot be bound or etcd cannot be reached at first.
  Status start();
  // Deregisters (revokes the lease) and stops serving. Instances are the Worker's to stop.
  void stop();
  std::string url() const;

 private:
  void handle(HttpRequest req, HttpRespond respond);
  void startInstance(const std::string& id, HttpRequest req, HttpRespond respond);
  void membershipLoop();
  Status registerSelf();
  void refreshView();  // leader and peers, from etcd
  std::vector<std::string> codeSources();
  void reportLost(const std::string& instanceId, const Status& cause);

  Worker& worker_;
  std::shared_ptr<EtcdClient> etcd_;
  WorkerAgentOptions options_;
  cluster::WorkerInfo info_;
  BlockingPool pool_{8};
  std::unique_ptr<HostCodeCache> code_;
  std::unique_ptr<BlobServer> blobServer_;
  std::unique_ptr<HttpServer> server_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                  // GUARDED_BY(mu_)
  int64_t lease_ = 0;                      // GUARDED_BY(mu_)
  std::set<std::string> instances_;        // GUARDED_BY(mu_): started and not stopped/lost
  std::string leaderRpcUrl_;               // GUARDED_BY(mu_)
  std::string leaderBlobUrl_;              // GUARDED_BY(mu_)
  std::vector<std::string> peerBlobUrls_;  // GUARDED_BY(mu_)
  std::thread membership_;
};

}  // namespace stratus
