// SqliteStore: MetadataStore on an SQLite database file in WAL mode (embedded default).
// Survives kill -9: every mutation is a committed transaction before the call returns.
// Thread-safe: one connection guarded by a mutex (metadata calls are rare and short; the async
// queue adds a few short transactions per task).
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace stratus {

class SqliteStatement;  // one use of a cached statement; sqlite_store.cc

class SqliteStore final : public MetadataStore {
 public:
  // Opens or creates the database and its schema.
  static Result<std::unique_ptr<SqliteStore>> open(const std::filesystem::path& file);
  ~SqliteStore() override;

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

 private:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  // The cached prepared statement for sql, reset and with bindings cleared, wrapped so that it
  // is reset again when the caller is done with it.
  Result<SqliteStatement> statement(const char* sql);  // REQUIRES(mu_)

  std::mutex mu_;
  sqlite3* db_;                                                   // GUARDED_BY(mu_)
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;  // GUARDED_BY(mu_)
};

}  // namespace stratus
