// Cluster wire formats: what controller, workers and gateways say to each other (HTTP/JSON on
// their own ports) and what they keep in etcd.
//
// etcd keys (under the store prefix, default "/stratus/"):
//   cluster/leader            LeaderInfo JSON, under the leader's lease (leader election)
//   cluster/workers/<id>      WorkerInfo JSON, under the worker's lease (membership)
//   cluster/controllers/<id>  LeaderInfo JSON of every controller (code replication sources)
//
// Worker RPC (the worker's --listen port):
//   POST   /cluster/v1/instances/<id>         {"spec": <storage JSON>, "epoch": n} -> start;
//                                             200 {"initDurationUs"} or an error (below)
//   DELETE /cluster/v1/instances/<id>         stop
//   POST   /cluster/v1/instances/<id>/invoke  the payload as body, the call as headers (below)
//   POST   /cluster/v1/reset                  {"epoch": n}: stop every instance (a new leader)
// Controller RPC (the controller's --rpc-listen port):
//   POST /cluster/v1/acquire       {"tenant","function"} -> GrantedLease JSON or an error
//   POST /cluster/v1/release       {"leaseId","healthy","workerUnreachable"}
//   POST /cluster/v1/renew         {"leaseIds": [...]} -> {"unknown": [ids no longer held]}
//   POST /cluster/v1/instance-lost {"instanceId","message"} (from a worker)
//   GET  /cluster/v1/blobs         {"blobs": [names]} (stand-by controllers replicate code)
// Code blobs are served by a codepack BlobServer (GET /blobs/<name>) on the controller's
// --blob-listen and on every worker's (peers).
//
// An error is HTTP 4xx/5xx with {"code": <Code as int>, "message"}. An invocation crosses as:
// request body = payload; x-stratus-request-id, x-stratus-log-tail: 1, and every request header
// of the call prefixed "x-stratus-h-". Response body = result body; x-stratus-code and
// x-stratus-message (base64) for the platform status, x-stratus-function-error,
// x-stratus-http-status, x-stratus-instance-lost, x-stratus-duration-us, x-stratus-memory-peak,
// x-stratus-log-tail (base64), and the function's headers prefixed "x-stratus-h-";
// x-stratus-retryable: 1 when the worker refused the call before running anything.
#pragma once

#include <string>

#include "common/clock.h"
#include "common/http.h"
#include "common/invoke.h"
#include "common/json.h"
#include "common/status.h"

namespace stratus::cluster {

struct WorkerInfo {
  std::string id;
  std::string zone = "default";
  std::string url;      // RPC endpoint, http://host:port
  std::string blobUrl;  // its BlobServer (peers fetch code from here)
  int64_t memoryMb = 0;
  int64_t cpuMillis = 0;
  int maxInstances = 0;
  std::string incarnation;  // random per process start: a restart is a new worker
};
std::string toJson(const WorkerInfo& w);
Result<WorkerInfo> workerFromJson(std::string_view text);

struct LeaderInfo {
  std::string id;
  std::string apiUrl;   // the public API (gateways forward CRUD here)
  std::string rpcUrl;   // controller RPC
  std::string blobUrl;  // code origin
  int64_t epoch = 0;    // the leader's etcd lease id: changes with every leadership
};
std::string toJson(const LeaderInfo& l);
Result<LeaderInfo> leaderFromJson(std::string_view text);

// What a gateway holds to send calls straight to a worker.
struct GrantedLease {
  std::string leaseId;
  std::string functionKey;
  std::string instanceId;
  std::string hostId;
  std::string workerUrl;
  int64_t revision = 0;
  std::string runtime;
  int timeoutSec = 3;
  bool coldStart = false;
  int64_t initDurationUs = 0;
  int64_t epoch = 0;
};
std::string toJson(const GrantedLease& l);
Result<GrantedLease> leaseFromJson(std::string_view text);

// Errors over RPC.
HttpResponse rpcError(const Status& s);
HttpResponse rpcJson(const json::value& v);
// A non-2xx RPC response back into a Status (transport errors pass through).
Status statusFromRpc(const Result<HttpResponse>& r, std::string_view what);

// Invocation encoding (see above).
HttpHeaders encodeInvokeRequest(const InvokeRequest& req);
InvokeRequest decodeInvokeRequest(const HttpRequest& http);
HttpResponse encodeInvokeResult(const InvokeResult& r);
InvokeResult decodeInvokeResult(const HttpResponse& http);

struct RemoteInvokeOutcome {
  InvokeResult result;
  // The call surely never reached the worker (the connection could not be made): safe to retry
  // elsewhere. False when it failed after the request was sent: the function may have run.
  bool notSent = false;
};
// Runs one call on instanceId at workerUrl, on a fresh connection (a reused one could fail in a
// way that does not say whether the request got there).
RemoteInvokeOutcome invokeOnWorker(const std::string& workerUrl, const std::string& instanceId,
                                   const InvokeRequest& req, Duration timeout);

std::string leaderKey(const std::string& prefix);
std::string workersPrefix(const std::string& prefix);
std::string controllersPrefix(const std::string& prefix);

}  // namespace stratus::cluster
