// EtcdStore: MetadataStore on etcd (cluster mode), so that every controller, gateway and the
// stand-by see the same functions, tenants and keys, and a controller that dies loses nothing.
//
// Layout under a prefix (default "/stratus/"), one JSON value per key; name components are
// percent-encoded so that no name can reach into another's key range:
//   functions/<tenant>/<name>          functionToStorageJson
//   apikeys/<sha256>                   {"tenant","admin","createdTime"}
//   tenants/<name>                     {"name","quota":"<quota JSON>","createdTime"}
//   asyncconfig/<tenant>/<function>    the config JSON text
//   asynctasks/<tenant>/<function>/<id> the task (payload and result base64)
// Uniqueness and read-modify-write use etcd transactions (create_revision / mod_revision
// compares), so concurrent writers from several processes never lose an update. A value is
// limited by etcd's --max-request-bytes (1.5 MiB by default): async payloads larger than that
// fail with etcd's error.
// Thread-safe (EtcdClient is).
#pragma once

#include <memory>
#include <string>

#include "cluster/etcd_client.h"
#include "store/store.h"

namespace stratus {

class EtcdStore final : public MetadataStore {
 public:
  EtcdStore(std::shared_ptr<EtcdClient> etcd, std::string prefix = "/stratus/");

  Status createFunction(const FunctionSpec& f) override;
  Result<FunctionSpec> getFunction(const std::string& tenant, const std::string& name) override;
  Result<std::vector<FunctionSpec>> listFunctions(const std::string& tenant) override;
  Result<std::vector<FunctionSpec>> listAllFunctions() override;
  Status updateFunction(const FunctionSpec& f) override;
  Status deleteFunction(const std::string& tenant, const std::string& name) override;
  Status putApiKey(const ApiKey& key) override;
  Result<ApiKey> findApiKey(const std::string& keySha256) override;
  Status createTenant(const Tenant& t) override;
  Result<Tenant> getTenant(const std::string& name) override;
  Result<std::vector<Tenant>> listTenants() override;
  Status updateTenant(const Tenant& t) override;
  Result<std::vector<FunctionSpec>> deleteTenant(const std::string& name) override;
  Result<std::string> getAsyncConfig(const std::string& tenant,
                                     const std::string& function) override;
  Status putAsyncConfig(const std::string& tenant, const std::string& function,
                        const std::string& configJson) override;
  Status deleteAsyncConfig(const std::string& tenant, const std::string& function) override;
  Status enqueueAsyncTask(const AsyncTask& task) override;
  Result<AsyncTask> getAsyncTask(const std::string& tenant, const std::string& function,
                                 const std::string& id) override;
  Result<std::vector<AsyncTask>> listAsyncTasks(const std::string& tenant,
                                                const std::string& function,
                                                std::optional<AsyncTaskStatus> status,
                                                int limit) override;
  Result<std::vector<AsyncTask>> claimDueAsyncTasks(int64_t nowMs, int limit) override;
  Status updateAsyncTask(const AsyncTask& task) override;
  Result<int64_t> requeueRunningAsyncTasks(int64_t nowMs) override;
  Result<std::optional<int64_t>> nextAsyncTaskDueMs() override;
  Result<int64_t> countPendingAsyncTasks(const std::string& tenant,
                                         const std::string& function) override;

  // The key of a function's spec (watchers, e.g. the cluster gateway, poll this prefix).
  std::string functionKey(const std::string& tenant, const std::string& name) const;
  std::string functionsPrefix() const { return prefix_ + "functions/"; }
  EtcdClient& etcd() { return *etcd_; }

 private:
  std::string key(std::initializer_list<std::string_view> parts) const;

  std::shared_ptr<EtcdClient> etcd_;
  std::string prefix_;
};

}  // namespace stratus
