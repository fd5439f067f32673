#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <string>

#include "common/json.h"

namespace stratus {
namespace {

// 1: functions, api_keys. 2: tenants, async_configs, async_tasks (created if missing).
constexpr int kSchemaVersion = 2;

Code codeForSqlite(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Code::kUnavailable;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return Code::kResourceExhausted;
    case SQLITE_CONSTRAINT:
      return Code::kAlreadyExists;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return Code::kPermissionDenied;
    default:
      return Code::kInternal;
  }
}

Status sqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string msg = "sqlite: " + std::string(what) + ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return Status(codeForSqlite(rc), std::move(msg));
}

// Resets a cached statement when the call is done with it: a statement left mid-step keeps a
// read transaction (and so an old WAL snapshot) open and blocks checkpoints.
class StmtGuard {
 public:
  explicit StmtGuard(sqlite3_stmt* s) : s_(s) {}
  ~StmtGuard() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  StmtGuard(const StmtGuard&) = delete;
  StmtGuard& operator=(const StmtGuard&) = delete;

 private:
  sqlite3_stmt* s_;
};

// Rolls back an open transaction unless commit() succeeded (early returns on errors).
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {}
  ~Transaction() {
    if (!done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Status commit() {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = std::string("sqlite: commit: ") + (err != nullptr ? err : "");
      sqlite3_free(err);
      return Status(rc == SQLITE_BUSY ? Code::kUnavailable : Code::kInternal, std::move(msg));
    }
    done_ = true;
    return Status::ok();
  }

 private:
  sqlite3* db_;
  bool done_ = false;
};

void bindText(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

std::string columnText(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p != nullptr ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i)))
                      : std::string();
}

Status exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = std::string("sqlite: ") + sql + ": " + (err != nullptr ? err : "");
    sqlite3_free(err);
    return Status(codeForSqlite(rc), std::move(msg));
  }
  return Status::ok();
}

Status createSchema(sqlite3* db) {
  RETURN_IF_ERROR(exec(db, "BEGIN IMMEDIATE"));
  auto fail = [&](Status s) {
    exec(db, "ROLLBACK").isOk();
    return s;
  };
  Status s = exec(db,
                  "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL);"
                  "CREATE TABLE IF NOT EXISTS functions("
                  "  tenant TEXT NOT NULL, name TEXT NOT NULL, spec_json TEXT NOT NULL,"
                  "  revision INTEGER NOT NULL, PRIMARY KEY(tenant, name)) WITHOUT ROWID;"
                  "CREATE TABLE IF NOT EXISTS api_keys("
                  "  key_sha256 TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
                  "  admin INTEGER NOT NULL, created TEXT NOT NULL) WITHOUT ROWID;"
                  "CREATE TABLE IF NOT EXISTS tenants("
                  "  name TEXT PRIMARY KEY, quota_json TEXT NOT NULL, created TEXT NOT NULL)"
                  "  WITHOUT ROWID;"
                  "CREATE TABLE IF NOT EXISTS async_configs("
                  "  tenant TEXT NOT NULL, function TEXT NOT NULL, config_json TEXT NOT NULL,"
                  "  PRIMARY KEY(tenant, function)) WITHOUT ROWID;"
                  "CREATE TABLE IF NOT EXISTS async_tasks("
                  "  tenant TEXT NOT NULL, function TEXT NOT NULL, id TEXT NOT NULL,"
                  "  payload BLOB NOT NULL, headers_json TEXT NOT NULL, status INTEGER NOT NULL,"
                  "  attempts INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
                  "  next_attempt_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
                  "  last_error TEXT NOT NULL, result BLOB NOT NULL,"
                  "  PRIMARY KEY(tenant, function, id));"
                  "CREATE INDEX IF NOT EXISTS async_tasks_due ON async_tasks(status, "
                  "  next_attempt_ms);"
                  "CREATE INDEX IF NOT EXISTS async_tasks_by_function ON async_tasks(tenant, "
                  "  function, created_ms);");
  if (!s) return fail(s);
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db, "SELECT max(version) FROM schema_version", -1, &st, nullptr);
  if (rc != SQLITE_OK) return fail(sqliteError(db, rc, "read schema_version"));
  rc = sqlite3_step(st);
  bool empty = sqlite3_column_type(st, 0) == SQLITE_NULL;
  int version = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) return fail(sqliteError(db, rc, "read schema_version"));
  if (empty) {
    s = exec(db,
             ("INSERT INTO schema_version(version) VALUES(" + std::to_string(kSchemaVersion) + ")")
                 .c_str());
    if (!s) return fail(s);
  } else if (version > kSchemaVersion) {
    return fail(Status(Code::kFailedPrecondition,
                       "database schema version " + std::to_string(version) +
                           " is newer than this binary's (" + std::to_string(kSchemaVersion) +
                           "); upgrade stratus"));
  } else if (version < kSchemaVersion) {
    // Version 2 only added tables (created above); record the upgrade.
    s = exec(db, ("UPDATE schema_version SET version = " + std::to_string(kSchemaVersion)).c_str());
    if (!s) return fail(s);
  }
  return exec(db, "COMMIT");
}

Result<FunctionSpec> rowToFunction(sqlite3_stmt* st) {
  ASSIGN_OR_RETURN(FunctionSpec f, functionFromStorageJson(columnText(st, 2)));
  // The key columns are authoritative.
  f.tenant = columnText(st, 0);
  f.name = columnText(st, 1);
  return f;
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::filesystem::path& file) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status s = sqliteError(db, rc, "open " + file.string());
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));
  sqlite3_extended_result_codes(db, 1);
  // Another process (a second `stratus` on the same file, the CLI) may hold the write lock
  // briefly; wait for it rather than failing.
  sqlite3_busy_timeout(db, 5000);
  // WAL: readers never block the writer. synchronous=FULL fsyncs the WAL on every commit, so a
  // deploy that returned 200 survives power loss too, not only kill -9; deploys are rare.
  Status s = exec(db, "PRAGMA journal_mode=WAL");
  if (!s) return s.withContext("open " + file.string());
  s = exec(db, "PRAGMA synchronous=FULL");
  if (!s) return s.withContext("open " + file.string());
  s = createSchema(db);
  if (!s) return s.withContext("open " + file.string());
  return store;
}

SqliteStore::~SqliteStore() {
  for (auto& [sql, st] : statements_) sqlite3_finalize(st);
  sqlite3_close(db_);
}

Result<sqlite3_stmt*> SqliteStore::statement(const char* sql) {
  auto it = statements_.find(std::string_view(sql));
  if (it != statements_.end()) return it->second;
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr);
  if (rc != SQLITE_OK) return sqliteError(db_, rc, std::string("prepare ") + sql);
  statements_.emplace(sql, st);
  return st;
}

Status SqliteStore::createFunction(const FunctionSpec& f) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("INSERT INTO functions(tenant, name, spec_json, revision) "
                             "VALUES(?1, ?2, ?3, ?4)"));
  StmtGuard guard(st);
  bindText(st, 1, f.tenant);
  bindText(st, 2, f.name);
  bindText(st, 3, functionToStorageJson(f));
  sqlite3_bind_int64(st, 4, f.revision);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
    return alreadyExists("function " + f.name + " already exists");
  }
  if (rc != SQLITE_DONE) return sqliteError(db_, rc, "insert function " + f.name);
  return Status::ok();
}

Result<FunctionSpec> SqliteStore::getFunction(const std::string& tenant, const std::string& name) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st, statement("SELECT tenant, name, spec_json FROM functions "
                                                "WHERE tenant = ?1 AND name = ?2"));
  StmtGuard guard(st);
  bindText(st, 1, tenant);
  bindText(st, 2, name);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return notFound("function " + name + " not found");
  if (rc != SQLITE_ROW) return sqliteError(db_, rc, "read function " + name);
  return rowToFunction(st);
}

namespace {
Result<std::vector<FunctionSpec>> collect(sqlite3* db, sqlite3_stmt* st) {
  std::vector<FunctionSpec> out;
  for (;;) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return sqliteError(db, rc, "list functions");
    ASSIGN_OR_RETURN(FunctionSpec f, rowToFunction(st));
    out.push_back(std::move(f));
  }
  return out;
}
}  // namespace

Result<std::vector<FunctionSpec>> SqliteStore::listFunctions(const std::string& tenant) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("SELECT tenant, name, spec_json FROM functions WHERE tenant = ?1 "
                             "ORDER BY name"));
  StmtGuard guard(st);
  bindText(st, 1, tenant);
  return collect(db_, st);
}

Result<std::vector<FunctionSpec>> SqliteStore::listAllFunctions() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st, statement("SELECT tenant, name, spec_json FROM functions "
                                                "ORDER BY tenant, name"));
  StmtGuard guard(st);
  return collect(db_, st);
}

Status SqliteStore::updateFunction(const FunctionSpec& f) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("UPDATE functions SET spec_json = ?3, revision = ?4 "
                             "WHERE tenant = ?1 AND name = ?2"));
  StmtGuard guard(st);
  bindText(st, 1, f.tenant);
  bindText(st, 2, f.name);
  bindText(st, 3, functionToStorageJson(f));
  sqlite3_bind_int64(st, 4, f.revision);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) return sqliteError(db_, rc, "update function " + f.name);
  if (sqlite3_changes(db_) == 0) return notFound("function " + f.name + " not found");
  return Status::ok();
}

Status SqliteStore::deleteFunction(const std::string& tenant, const std::string& name) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(exec(db_, "BEGIN IMMEDIATE"));
  Transaction tx(db_);
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     statement("DELETE FROM functions WHERE tenant = ?1 AND name = ?2"));
    StmtGuard guard(st);
    bindText(st, 1, tenant);
    bindText(st, 2, name);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) return sqliteError(db_, rc, "delete function " + name);
    if (sqlite3_changes(db_) == 0) return notFound("function " + name + " not found");
  }
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     statement("DELETE FROM async_configs WHERE tenant = ?1 AND function = ?2"));
    StmtGuard guard(st);
    bindText(st, 1, tenant);
    bindText(st, 2, name);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) return sqliteError(db_, rc, "delete async config of " + name);
  }
  return tx.commit();
}

Status SqliteStore::putApiKey(const ApiKey& key) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("INSERT OR REPLACE INTO api_keys(key_sha256, tenant, admin, created) "
                             "VALUES(?1, ?2, ?3, ?4)"));
  StmtGuard guard(st);
  bindText(st, 1, key.keySha256);
  bindText(st, 2, key.tenant);
  sqlite3_bind_int(st, 3, key.admin ? 1 : 0);
  bindText(st, 4, key.createdTime.empty() ? nowRfc3339() : key.createdTime);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) return sqliteError(db_, rc, "store API key of tenant " + key.tenant);
  return Status::ok();
}

Result<ApiKey> SqliteStore::findApiKey(const std::string& keySha256) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("SELECT key_sha256, tenant, admin, created FROM api_keys "
                             "WHERE key_sha256 = ?1"));
  StmtGuard guard(st);
  bindText(st, 1, keySha256);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return notFound("no such API key");
  if (rc != SQLITE_ROW) return sqliteError(db_, rc, "look up API key");
  ApiKey k;
  k.keySha256 = columnText(st, 0);
  k.tenant = columnText(st, 1);
  k.admin = sqlite3_column_int(st, 2) != 0;
  k.createdTime = columnText(st, 3);
  return k;
}

// ---- tenants ----

namespace {

Result<Tenant> rowToTenant(sqlite3_stmt* st) {
  Tenant t;
  t.name = columnText(st, 0);
  ASSIGN_OR_RETURN(t.quota, tenantQuotaFromJson(columnText(st, 1)));
  t.createdTime = columnText(st, 2);
  return t;
}

constexpr const char* kTaskColumns =
    "tenant, function, id, payload, headers_json, status, attempts, created_ms, "
    "next_attempt_ms, updated_ms, last_error, result";

AsyncTask rowToTask(sqlite3_stmt* st) {
  AsyncTask t;
  t.tenant = columnText(st, 0);
  t.function = columnText(st, 1);
  t.id = columnText(st, 2);
  t.payload = columnText(st, 3);
  t.headersJson = columnText(st, 4);
  t.status = static_cast<AsyncTaskStatus>(sqlite3_column_int(st, 5));
  t.attempts = sqlite3_column_int(st, 6);
  t.createdMs = sqlite3_column_int64(st, 7);
  t.nextAttemptMs = sqlite3_column_int64(st, 8);
  t.updatedMs = sqlite3_column_int64(st, 9);
  t.lastError = columnText(st, 10);
  t.result = columnText(st, 11);
  return t;
}

void bindBlob(sqlite3_stmt* s, int i, std::string_view v) {
  sqlite3_bind_blob(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
}

Status stepDone(sqlite3* db, sqlite3_stmt* st, std::string_view what) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) return sqliteError(db, rc, what);
  return Status::ok();
}

}  // namespace

Status SqliteStore::createTenant(const Tenant& t) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("INSERT INTO tenants(name, quota_json, created) VALUES(?1, ?2, ?3)"));
  StmtGuard guard(st);
  bindText(st, 1, t.name);
  bindText(st, 2, tenantQuotaToJson(t.quota));
  bindText(st, 3, t.createdTime.empty() ? nowRfc3339() : t.createdTime);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
    return alreadyExists("tenant " + t.name + " already exists");
  }
  if (rc != SQLITE_DONE) return sqliteError(db_, rc, "insert tenant " + t.name);
  return Status::ok();
}

Result<Tenant> SqliteStore::getTenant(const std::string& name) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("SELECT name, quota_json, created FROM tenants WHERE name = ?1"));
  StmtGuard guard(st);
  bindText(st, 1, name);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return notFound("tenant " + name + " not found");
  if (rc != SQLITE_ROW) return sqliteError(db_, rc, "read tenant " + name);
  return rowToTenant(st);
}

Result<std::vector<Tenant>> SqliteStore::listTenants() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("SELECT name, quota_json, created FROM tenants ORDER BY name"));
  StmtGuard guard(st);
  std::vector<Tenant> out;
  for (;;) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return sqliteError(db_, rc, "list tenants");
    ASSIGN_OR_RETURN(Tenant t, rowToTenant(st));
    out.push_back(std::move(t));
  }
  return out;
}

Status SqliteStore::updateTenant(const Tenant& t) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("UPDATE tenants SET quota_json = ?2 WHERE name = ?1"));
  StmtGuard guard(st);
  bindText(st, 1, t.name);
  bindText(st, 2, tenantQuotaToJson(t.quota));
  RETURN_IF_ERROR(stepDone(db_, st, "update tenant " + t.name));
  if (sqlite3_changes(db_) == 0) return notFound("tenant " + t.name + " not found");
  return Status::ok();
}

Result<std::vector<FunctionSpec>> SqliteStore::deleteTenant(const std::string& name) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(exec(db_, "BEGIN IMMEDIATE"));
  Transaction tx(db_);
  std::vector<FunctionSpec> functions;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st, statement("DELETE FROM tenants WHERE name = ?1"));
    StmtGuard guard(st);
    bindText(st, 1, name);
    RETURN_IF_ERROR(stepDone(db_, st, "delete tenant " + name));
    if (sqlite3_changes(db_) == 0) return notFound("tenant " + name + " not found");
  }
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     statement("SELECT tenant, name, spec_json FROM functions WHERE tenant = ?1 "
                               "ORDER BY name"));
    StmtGuard guard(st);
    bindText(st, 1, name);
    ASSIGN_OR_RETURN(functions, collect(db_, st));
  }
  for (const char* sql :
       {"DELETE FROM functions WHERE tenant = ?1", "DELETE FROM api_keys WHERE tenant = ?1",
        "DELETE FROM async_configs WHERE tenant = ?1",
        "DELETE FROM async_tasks WHERE tenant = ?1"}) {
    ASSIGN_OR_RETURN(sqlite3_stmt * st, statement(sql));
    StmtGuard guard(st);
    bindText(st, 1, name);
    RETURN_IF_ERROR(stepDone(db_, st, std::string("delete tenant ") + name + ": " + sql));
  }
  RETURN_IF_ERROR(tx.commit());
  return functions;
}

// ---- async configs ----

Result<std::string> SqliteStore::getAsyncConfig(const std::string& tenant,
                                                const std::string& function) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st, statement("SELECT config_json FROM async_configs "
                                                "WHERE tenant = ?1 AND function = ?2"));
  StmtGuard guard(st);
  bindText(st, 1, tenant);
  bindText(st, 2, function);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return notFound("no async invoke config for function " + function);
  if (rc != SQLITE_ROW) return sqliteError(db_, rc, "read async config of " + function);
  return columnText(st, 0);
}

Status SqliteStore::putAsyncConfig(const std::string& tenant, const std::string& function,
                                   const std::string& configJson) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("INSERT OR REPLACE INTO async_configs(tenant, function, config_json) "
                             "VALUES(?1, ?2, ?3)"));
  StmtGuard guard(st);
  bindText(st, 1, tenant);
  bindText(st, 2, function);
  bindText(st, 3, configJson);
  return stepDone(db_, st, "store async config of " + function);
}

Status SqliteStore::deleteAsyncConfig(const std::string& tenant, const std::string& function) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("DELETE FROM async_configs WHERE tenant = ?1 AND function = ?2"));
  StmtGuard guard(st);
  bindText(st, 1, tenant);
  bindText(st, 2, function);
  RETURN_IF_ERROR(stepDone(db_, st, "delete async config of " + function));
  if (sqlite3_changes(db_) == 0) {
    return notFound("no async invoke config for function " + function);
  }
  return Status::ok();
}

// ---- async tasks ----

Status SqliteStore::enqueueAsyncTask(const AsyncTask& t) {
  std::lock_guard lock(mu_);
  static const std::string sql = std::string("INSERT INTO async_tasks(") + kTaskColumns +
                                 ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
  ASSIGN_OR_RETURN(sqlite3_stmt * st, statement(sql.c_str()));
  StmtGuard guard(st);
  bindText(st, 1, t.tenant);
  bindText(st, 2, t.function);
  bindText(st, 3, t.id);
  bindBlob(st, 4, t.payload);
  bindText(st, 5, t.headersJson);
  sqlite3_bind_int(st, 6, static_cast<int>(t.status));
  sqlite3_bind_int(st, 7, t.attempts);
  sqlite3_bind_int64(st, 8, t.createdMs);
  sqlite3_bind_int64(st, 9, t.nextAttemptMs);
  sqlite3_bind_int64(st, 10, t.updatedMs);
  bindText(st, 11, t.lastError);
  bindBlob(st, 12, t.result);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
    return alreadyExists("async task " + t.id + " already exists");
  }
  if (rc != SQLITE_DONE) return sqliteError(db_, rc, "enqueue async task " + t.id);
  return Status::ok();
}

Result<AsyncTask> SqliteStore::getAsyncTask(const std::string& tenant, const std::string& function,
                                            const std::string& id) {
  std::lock_guard lock(mu_);
  static const std::string sql = std::string("SELECT ") + kTaskColumns +
                                 " FROM async_tasks WHERE tenant = ?1 AND function = ?2 AND "
                                 "id = ?3";
  ASSIGN_OR_RETURN(sqlite3_stmt * st, statement(sql.c_str()));
  StmtGuard guard(st);
  bindText(st, 1, tenant);
  bindText(st, 2, function);
  bindText(st, 3, id);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) return notFound("async task " + id + " not found");
  if (rc != SQLITE_ROW) return sqliteError(db_, rc, "read async task " + id);
  return rowToTask(st);
}

Result<std::vector<AsyncTask>> SqliteStore::listAsyncTasks(const std::string& tenant,
                                                           const std::string& function,
                                                           std::optional<AsyncTaskStatus> status,
                                                           int limit) {
  std::lock_guard lock(mu_);
  static const std::string sql =
      std::string("SELECT ") + kTaskColumns +
      " FROM async_tasks WHERE tenant = ?1 AND function = ?2 AND (?3 < 0 OR status = ?3) "
      "ORDER BY created_ms DESC, id DESC LIMIT ?4";
  ASSIGN_OR_RETURN(sqlite3_stmt * st, statement(sql.c_str()));
  StmtGuard guard(st);
  bindText(st, 1, tenant);
  bindText(st, 2, function);
  sqlite3_bind_int(st, 3, status ? static_cast<int>(*status) : -1);
  sqlite3_bind_int(st, 4, limit);
  std::vector<AsyncTask> out;
  for (;;) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return sqliteError(db_, rc, "list async tasks of " + function);
    out.push_back(rowToTask(st));
  }
  return out;
}

Result<std::vector<AsyncTask>> SqliteStore::claimDueAsyncTasks(int64_t nowMs, int limit) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(exec(db_, "BEGIN IMMEDIATE"));
  Transaction tx(db_);
  std::vector<AsyncTask> out;
  {
    static const std::string sql = std::string("SELECT ") + kTaskColumns +
                                   " FROM async_tasks WHERE status = 0 AND next_attempt_ms <= ?1 "
                                   "ORDER BY next_attempt_ms LIMIT ?2";
    ASSIGN_OR_RETURN(sqlite3_stmt * st, statement(sql.c_str()));
    StmtGuard guard(st);
    sqlite3_bind_int64(st, 1, nowMs);
    sqlite3_bind_int(st, 2, limit);
    for (;;) {
      int rc = sqlite3_step(st);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return sqliteError(db_, rc, "claim async tasks");
      out.push_back(rowToTask(st));
    }
  }
  if (out.empty()) {
    RETURN_IF_ERROR(tx.commit());
    return out;
  }
  for (AsyncTask& t : out) {
    ASSIGN_OR_RETURN(sqlite3_stmt * st,
                     statement("UPDATE async_tasks SET status = 1, attempts = attempts + 1, "
                               "updated_ms = ?4 WHERE tenant = ?1 AND function = ?2 AND id = ?3"));
    StmtGuard guard(st);
    bindText(st, 1, t.tenant);
    bindText(st, 2, t.function);
    bindText(st, 3, t.id);
    sqlite3_bind_int64(st, 4, nowMs);
    RETURN_IF_ERROR(stepDone(db_, st, "claim async task " + t.id));
    t.status = AsyncTaskStatus::kRunning;
    t.attempts += 1;
    t.updatedMs = nowMs;
  }
  RETURN_IF_ERROR(tx.commit());
  return out;
}

Status SqliteStore::updateAsyncTask(const AsyncTask& t) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("UPDATE async_tasks SET status = ?4, attempts = ?5, "
                             "next_attempt_ms = ?6, updated_ms = ?7, last_error = ?8, result = ?9 "
                             "WHERE tenant = ?1 AND function = ?2 AND id = ?3"));
  StmtGuard guard(st);
  bindText(st, 1, t.tenant);
  bindText(st, 2, t.function);
  bindText(st, 3, t.id);
  sqlite3_bind_int(st, 4, static_cast<int>(t.status));
  sqlite3_bind_int(st, 5, t.attempts);
  sqlite3_bind_int64(st, 6, t.nextAttemptMs);
  sqlite3_bind_int64(st, 7, t.updatedMs);
  bindText(st, 8, t.lastError);
  bindBlob(st, 9, t.result);
  RETURN_IF_ERROR(stepDone(db_, st, "update async task " + t.id));
  if (sqlite3_changes(db_) == 0) return notFound("async task " + t.id + " not found");
  return Status::ok();
}

Result<int64_t> SqliteStore::requeueRunningAsyncTasks(int64_t nowMs) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("UPDATE async_tasks SET status = 0, next_attempt_ms = ?1, "
                             "updated_ms = ?1, attempts = max(attempts - 1, 0) WHERE status = 1"));
  StmtGuard guard(st);
  sqlite3_bind_int64(st, 1, nowMs);
  RETURN_IF_ERROR(stepDone(db_, st, "requeue running async tasks"));
  return static_cast<int64_t>(sqlite3_changes(db_));
}

Result<std::optional<int64_t>> SqliteStore::nextAsyncTaskDueMs() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("SELECT min(next_attempt_ms) FROM async_tasks WHERE status = 0"));
  StmtGuard guard(st);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) return sqliteError(db_, rc, "read the next async due time");
  if (sqlite3_column_type(st, 0) == SQLITE_NULL) return std::optional<int64_t>();
  return std::optional<int64_t>(sqlite3_column_int64(st, 0));
}

Result<int64_t> SqliteStore::countPendingAsyncTasks(const std::string& tenant,
                                                    const std::string& function) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("SELECT count(*) FROM async_tasks WHERE tenant = ?1 AND "
                             "function = ?2 AND status IN (0, 1)"));
  StmtGuard guard(st);
  bindText(st, 1, tenant);
  bindText(st, 2, function);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) return sqliteError(db_, rc, "count async tasks of " + function);
  return static_cast<int64_t>(sqlite3_column_int64(st, 0));
}

}  // namespace stratus
