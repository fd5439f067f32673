// MetadataStore: durable metadata -- tenants and their API keys, functions, per-function async
// invocation configs, and the async task queue.
// One interface, two backends: SqliteStore (embedded default, this folder) and an etcd store
// (cluster mode). Implementations are thread-safe; every call is a short transaction, committed
// (and, for SqliteStore, fsynced) before it returns: an async task that enqueueAsyncTask
// accepted survives kill -9.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/function.h"
#include "common/status.h"

namespace stratus {

struct ApiKey {
  std::string keySha256;  // we store only the hash of the secret
  std::string tenant;
  bool admin = false;
  std::string createdTime;
};

// A tenant's quotas; 0 means "no limit" for every field.
struct TenantQuota {
  double requestsPerSecond = 0;          // token bucket over all of the tenant's API requests
  int64_t burst = 0;                     // bucket size; 0: max(1, requestsPerSecond)
  double functionRequestsPerSecond = 0;  // token bucket per function (invocations)
  int64_t maxConcurrentInstances = 0;    // instances busy at once, over all functions
  int64_t maxFunctions = 0;
  int64_t maxTotalMemoryMb = 0;  // memory of the instances busy at once
};

// The quota as the API shows and the store keeps it: {"requestsPerSecond": ..., "burst": ...,
// "functionRequestsPerSecond": ..., "maxConcurrentInstances": ..., "maxFunctions": ...,
// "maxTotalMemoryMb": ...}. Parsing applies present fields onto `base` and checks ranges.
std::string tenantQuotaToJson(const TenantQuota& q);
Result<TenantQuota> tenantQuotaFromJson(std::string_view text, TenantQuota base = {});

struct Tenant {
  std::string name;
  TenantQuota quota;
  std::string createdTime;
};

// Values cross process boundaries (store rows, API): keep them stable.
enum class AsyncTaskStatus : int32_t { kEnqueued = 0, kRunning = 1, kSucceeded = 2, kFailed = 3 };
std::string_view asyncTaskStatusName(AsyncTaskStatus s);  // "Enqueued", "Running", ...
std::optional<AsyncTaskStatus> parseAsyncTaskStatus(std::string_view name);

struct AsyncTask {
  std::string tenant;
  std::string function;
  std::string id;  // the request id of the accepted invocation; unique per (tenant, function)
  std::string payload;
  std::string headersJson = "{}";  // request headers passed on to the function (JSON object)
  AsyncTaskStatus status = AsyncTaskStatus::kEnqueued;
  int attempts = 0;           // executions started (a crash mid-attempt does not count)
  int64_t createdMs = 0;      // wall clock, ms since the epoch
  int64_t nextAttemptMs = 0;  // not run before this time
  int64_t updatedMs = 0;
  std::string lastError;  // JSON object of the last failure ({"errorType", "errorMessage", ...})
  std::string result;     // the function's response body (truncated) once Succeeded
};

class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  // ---- functions ----
  // kAlreadyExists if (tenant, name) exists.
  virtual Status createFunction(const FunctionSpec& f) = 0;
  // kNotFound if absent.
  virtual Result<FunctionSpec> getFunction(const std::string& tenant, const std::string& name) = 0;
  // Sorted by name.
  virtual Result<std::vector<FunctionSpec>> listFunctions(const std::string& tenant) = 0;
  // Every tenant's functions (for recovery at startup).
  virtual Result<std::vector<FunctionSpec>> listAllFunctions() = 0;
  // Replaces the stored spec; kNotFound if absent. The caller bumps revision.
  virtual Status updateFunction(const FunctionSpec& f) = 0;
  // kNotFound if absent. Removes the function's async invoke config too (its tasks stay for
  // inspection).
  virtual Status deleteFunction(const std::string& tenant, const std::string& name) = 0;

  // ---- tenants and keys ----
  virtual Status putApiKey(const ApiKey& key) = 0;
  // kNotFound if no key has this hash.
  virtual Result<ApiKey> findApiKey(const std::string& keySha256) = 0;

  // kAlreadyExists if the name is taken.
  virtual Status createTenant(const Tenant& t) = 0;
  virtual Result<Tenant> getTenant(const std::string& name) = 0;
  // Sorted by name.
  virtual Result<std::vector<Tenant>> listTenants() = 0;
  // Replaces the quota; kNotFound if absent.
  virtual Status updateTenant(const Tenant& t) = 0;
  // Removes the tenant with its keys, functions, async configs and tasks in one transaction and
  // returns the functions it had (the caller drains their instances). kNotFound if absent.
  virtual Result<std::vector<FunctionSpec>> deleteTenant(const std::string& name) = 0;

  // ---- async invocation ----
  // The function's async invoke config as a JSON object text; kNotFound if none was set.
  virtual Result<std::string> getAsyncConfig(const std::string& tenant,
                                             const std::string& function) = 0;
  virtual Status putAsyncConfig(const std::string& tenant, const std::string& function,
                                const std::string& configJson) = 0;
  // kNotFound if none was set.
  virtual Status deleteAsyncConfig(const std::string& tenant, const std::string& function) = 0;

  // kAlreadyExists if (tenant, function, id) exists (a client resending its request id).
  virtual Status enqueueAsyncTask(const AsyncTask& task) = 0;
  virtual Result<AsyncTask> getAsyncTask(const std::string& tenant, const std::string& function,
                                         const std::string& id) = 0;
  // Newest first; `status` filters when set; at most `limit`.
  virtual Result<std::vector<AsyncTask>> listAsyncTasks(const std::string& tenant,
                                                        const std::string& function,
                                                        std::optional<AsyncTaskStatus> status,
                                                        int limit) = 0;
  // Atomically takes up to `limit` Enqueued tasks with nextAttemptMs <= nowMs (earliest first),
  // marks them Running, counts the attempt and returns them as stored.
  virtual Result<std::vector<AsyncTask>> claimDueAsyncTasks(int64_t nowMs, int limit) = 0;
  // Writes status, attempts, nextAttemptMs, updatedMs, lastError and result of the task.
  virtual Status updateAsyncTask(const AsyncTask& task) = 0;
  // Startup recovery: Running tasks belong to a process that died; they become Enqueued again,
  // due now, and the interrupted attempt is not counted. Returns how many.
  virtual Result<int64_t> requeueRunningAsyncTasks(int64_t nowMs) = 0;
  // The earliest nextAttemptMs of an Enqueued task, nullopt when none.
  virtual Result<std::optional<int64_t>> nextAsyncTaskDueMs() = 0;
  // Enqueued + Running tasks of one function (admission bound on the async queue).
  virtual Result<int64_t> countPendingAsyncTasks(const std::string& tenant,
                                                 const std::string& function) = 0;
};

}  // namespace stratus
