#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

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

// Marks a parameter to bind as a BLOB rather than TEXT.
struct Blob {
  std::string_view bytes;
};

}  // namespace

// One use of a cached prepared statement: binds ?1..?N in order, steps, reads columns, and on
// destruction resets the statement and clears its bindings -- a statement left mid-step keeps a
// read transaction (and so an old WAL snapshot) open and blocks checkpoints. Every step failure
// becomes a Status that names `what` was being done.
class SqliteStatement {
 public:
  SqliteStatement(sqlite3* db, sqlite3_stmt* st) : db_(db), st_(st) {}
  SqliteStatement(SqliteStatement&& other) noexcept
      : db_(other.db_), st_(std::exchange(other.st_, nullptr)) {}
  SqliteStatement& operator=(SqliteStatement&&) = delete;
  ~SqliteStatement() {
    if (st_ == nullptr) return;
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
  }

  template <typename... Args>
  SqliteStatement& bind(const Args&... args) {
    int i = 0;
    (bindOne(++i, args), ...);
    return *this;
  }

  // A statement that returns no rows.
  Status run(std::string_view what) {
    int rc = sqlite3_step(st_);
    if (rc != SQLITE_DONE) return sqliteError(db_, rc, what);
    return Status::ok();
  }
  // An INSERT: a primary-key or unique conflict is kAlreadyExists(conflict).
  Status insert(std::string_view what, std::string conflict) {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
      return alreadyExists(std::move(conflict));
    }
    if (rc != SQLITE_DONE) return sqliteError(db_, rc, what);
    return Status::ok();
  }
  // Steps to the one row a lookup returns. No row is kNotFound(*missing), or an error when the
  // query always yields a row (an aggregate) and `missing` is not given.
  Status one(std::string_view what, std::optional<std::string> missing = std::nullopt) {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_DONE && missing) return notFound(std::move(*missing));
    if (rc != SQLITE_ROW) return sqliteError(db_, rc, what);
    return Status::ok();
  }
  // Every remaining row through rowFn(*this), which returns T or Result<T>.
  template <typename T, typename RowFn>
  Result<std::vector<T>> collect(std::string_view what, RowFn rowFn) {
    std::vector<T> out;
    for (;;) {
      int rc = sqlite3_step(st_);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return sqliteError(db_, rc, what);
      ASSIGN_OR_RETURN(T row, Result<T>(rowFn(*this)));
      out.push_back(std::move(row));
    }
    return out;
  }
  // Rows changed by the last run().
  int64_t changes() const { return sqlite3_changes(db_); }

  std::string text(int i) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st_, i));
    return p != nullptr ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st_, i)))
                        : std::string();
  }
  int integer(int i) const { return sqlite3_column_int(st_, i); }
  int64_t int64(int i) const { return sqlite3_column_int64(st_, i); }
  bool isNull(int i) const { return sqlite3_column_type(st_, i) == SQLITE_NULL; }

 private:
  void bindOne(int i, std::string_view v) {
    sqlite3_bind_text(st_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void bindOne(int i, Blob v) {
    sqlite3_bind_blob(st_, i, v.bytes.data(), static_cast<int>(v.bytes.size()), SQLITE_TRANSIENT);
  }
  void bindOne(int i, int v) { sqlite3_bind_int(st_, i, v); }
  void bindOne(int i, int64_t v) { sqlite3_bind_int64(st_, i, v); }

  sqlite3* db_;
  sqlite3_stmt* st_;
};

namespace {

Result<FunctionSpec> rowToFunction(const SqliteStatement& st) {
  ASSIGN_OR_RETURN(FunctionSpec f, functionFromStorageJson(st.text(2)));
  // The key columns are authoritative.
  f.tenant = st.text(0);
  f.name = st.text(1);
  return f;
}

Result<Tenant> rowToTenant(const SqliteStatement& st) {
  Tenant t;
  t.name = st.text(0);
  ASSIGN_OR_RETURN(t.quota, tenantQuotaFromJson(st.text(1)));
  t.createdTime = st.text(2);
  return t;
}

constexpr const char* kTaskColumns =
    "tenant, function, id, payload, headers_json, status, attempts, created_ms, "
    "next_attempt_ms, updated_ms, last_error, result";

AsyncTask rowToTask(const SqliteStatement& st) {
  AsyncTask t;
  t.tenant = st.text(0);
  t.function = st.text(1);
  t.id = st.text(2);
  t.payload = st.text(3);
  t.headersJson = st.text(4);
  t.status = static_cast<AsyncTaskStatus>(st.integer(5));
  t.attempts = st.integer(6);
  t.createdMs = st.int64(7);
  t.nextAttemptMs = st.int64(8);
  t.updatedMs = st.int64(9);
  t.lastError = st.text(10);
  t.result = st.text(11);
  return t;
}

constexpr const char* kSelectFunctionsOfTenant =
    "SELECT tenant, name, spec_json FROM functions WHERE tenant = ?1 ORDER BY name";

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

Result<SqliteStatement> SqliteStore::statement(const char* sql) {
  auto it = statements_.find(std::string_view(sql));
  if (it != statements_.end()) return SqliteStatement(db_, it->second);
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr);
  if (rc != SQLITE_OK) return sqliteError(db_, rc, std::string("prepare ") + sql);
  statements_.emplace(sql, st);
  return SqliteStatement(db_, st);
}

Status SqliteStore::createFunction(const FunctionSpec& f) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("INSERT INTO functions(tenant, name, spec_json, revision) "
                             "VALUES(?1, ?2, ?3, ?4)"));
  st.bind(f.tenant, f.name, functionToStorageJson(f), f.revision);
  return st.insert("insert function " + f.name, "function " + f.name + " already exists");
}

Result<FunctionSpec> SqliteStore::getFunction(const std::string& tenant, const std::string& name) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st, statement("SELECT tenant, name, spec_json FROM functions "
                                                 "WHERE tenant = ?1 AND name = ?2"));
  st.bind(tenant, name);
  RETURN_IF_ERROR(st.one("read function " + name, "function " + name + " not found"));
  return rowToFunction(st);
}

Result<std::vector<FunctionSpec>> SqliteStore::listFunctions(const std::string& tenant) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st, statement(kSelectFunctionsOfTenant));
  st.bind(tenant);
  return st.collect<FunctionSpec>("list functions", rowToFunction);
}

Result<std::vector<FunctionSpec>> SqliteStore::listAllFunctions() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st, statement("SELECT tenant, name, spec_json FROM functions "
                                                 "ORDER BY tenant, name"));
  return st.collect<FunctionSpec>("list functions", rowToFunction);
}

Status SqliteStore::updateFunction(const FunctionSpec& f) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("UPDATE functions SET spec_json = ?3, revision = ?4 "
                             "WHERE tenant = ?1 AND name = ?2"));
  st.bind(f.tenant, f.name, functionToStorageJson(f), f.revision);
  RETURN_IF_ERROR(st.run("update function " + f.name));
  if (st.changes() == 0) return notFound("function " + f.name + " not found");
  return Status::ok();
}

Status SqliteStore::deleteFunction(const std::string& tenant, const std::string& name) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(exec(db_, "BEGIN IMMEDIATE"));
  Transaction tx(db_);
  {
    ASSIGN_OR_RETURN(SqliteStatement st,
                     statement("DELETE FROM functions WHERE tenant = ?1 AND name = ?2"));
    st.bind(tenant, name);
    RETURN_IF_ERROR(st.run("delete function " + name));
    if (st.changes() == 0) return notFound("function " + name + " not found");
  }
  {
    ASSIGN_OR_RETURN(SqliteStatement st,
                     statement("DELETE FROM async_configs WHERE tenant = ?1 AND function = ?2"));
    st.bind(tenant, name);
    RETURN_IF_ERROR(st.run("delete async config of " + name));
  }
  return tx.commit();
}

Status SqliteStore::putApiKey(const ApiKey& key) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("INSERT OR REPLACE INTO api_keys(key_sha256, tenant, admin, created) "
                             "VALUES(?1, ?2, ?3, ?4)"));
  st.bind(key.keySha256, key.tenant, key.admin ? 1 : 0,
          key.createdTime.empty() ? nowRfc3339() : key.createdTime);
  return st.run("store API key of tenant " + key.tenant);
}

Result<ApiKey> SqliteStore::findApiKey(const std::string& keySha256) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("SELECT key_sha256, tenant, admin, created FROM api_keys "
                             "WHERE key_sha256 = ?1"));
  st.bind(keySha256);
  RETURN_IF_ERROR(st.one("look up API key", "no such API key"));
  ApiKey k;
  k.keySha256 = st.text(0);
  k.tenant = st.text(1);
  k.admin = st.integer(2) != 0;
  k.createdTime = st.text(3);
  return k;
}

// ---- tenants ----

Status SqliteStore::createTenant(const Tenant& t) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("INSERT INTO tenants(name, quota_json, created) VALUES(?1, ?2, ?3)"));
  st.bind(t.name, tenantQuotaToJson(t.quota), t.createdTime.empty() ? nowRfc3339() : t.createdTime);
  return st.insert("insert tenant " + t.name, "tenant " + t.name + " already exists");
}

Result<Tenant> SqliteStore::getTenant(const std::string& name) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("SELECT name, quota_json, created FROM tenants WHERE name = ?1"));
  st.bind(name);
  RETURN_IF_ERROR(st.one("read tenant " + name, "tenant " + name + " not found"));
  return rowToTenant(st);
}

Result<std::vector<Tenant>> SqliteStore::listTenants() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("SELECT name, quota_json, created FROM tenants ORDER BY name"));
  return st.collect<Tenant>("list tenants", rowToTenant);
}

Status SqliteStore::updateTenant(const Tenant& t) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("UPDATE tenants SET quota_json = ?2 WHERE name = ?1"));
  st.bind(t.name, tenantQuotaToJson(t.quota));
  RETURN_IF_ERROR(st.run("update tenant " + t.name));
  if (st.changes() == 0) return notFound("tenant " + t.name + " not found");
  return Status::ok();
}

Result<std::vector<FunctionSpec>> SqliteStore::deleteTenant(const std::string& name) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(exec(db_, "BEGIN IMMEDIATE"));
  Transaction tx(db_);
  std::vector<FunctionSpec> functions;
  {
    ASSIGN_OR_RETURN(SqliteStatement st, statement("DELETE FROM tenants WHERE name = ?1"));
    st.bind(name);
    RETURN_IF_ERROR(st.run("delete tenant " + name));
    if (st.changes() == 0) return notFound("tenant " + name + " not found");
  }
  {
    ASSIGN_OR_RETURN(SqliteStatement st, statement(kSelectFunctionsOfTenant));
    st.bind(name);
    ASSIGN_OR_RETURN(functions, st.collect<FunctionSpec>("list functions", rowToFunction));
  }
  for (const char* sql :
       {"DELETE FROM functions WHERE tenant = ?1", "DELETE FROM api_keys WHERE tenant = ?1",
        "DELETE FROM async_configs WHERE tenant = ?1",
        "DELETE FROM async_tasks WHERE tenant = ?1"}) {
    ASSIGN_OR_RETURN(SqliteStatement st, statement(sql));
    st.bind(name);
    RETURN_IF_ERROR(st.run(std::string("delete tenant ") + name + ": " + sql));
  }
  RETURN_IF_ERROR(tx.commit());
  return functions;
}

// ---- async configs ----

Result<std::string> SqliteStore::getAsyncConfig(const std::string& tenant,
                                                const std::string& function) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st, statement("SELECT config_json FROM async_configs "
                                                 "WHERE tenant = ?1 AND function = ?2"));
  st.bind(tenant, function);
  RETURN_IF_ERROR(st.one("read async config of " + function,
                         "no async invoke config for function " + function));
  return st.text(0);
}

Status SqliteStore::putAsyncConfig(const std::string& tenant, const std::string& function,
                                   const std::string& configJson) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("INSERT OR REPLACE INTO async_configs(tenant, function, config_json) "
                             "VALUES(?1, ?2, ?3)"));
  st.bind(tenant, function, configJson);
  return st.run("store async config of " + function);
}

Status SqliteStore::deleteAsyncConfig(const std::string& tenant, const std::string& function) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("DELETE FROM async_configs WHERE tenant = ?1 AND function = ?2"));
  st.bind(tenant, function);
  RETURN_IF_ERROR(st.run("delete async config of " + function));
  if (st.changes() == 0) return notFound("no async invoke config for function " + function);
  return Status::ok();
}

// ---- async tasks ----

Status SqliteStore::enqueueAsyncTask(const AsyncTask& t) {
  std::lock_guard lock(mu_);
  static const std::string sql = std::string("INSERT INTO async_tasks(") + kTaskColumns +
                                 ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
  ASSIGN_OR_RETURN(SqliteStatement st, statement(sql.c_str()));
  st.bind(t.tenant, t.function, t.id, Blob{t.payload}, t.headersJson, static_cast<int>(t.status),
          t.attempts, t.createdMs, t.nextAttemptMs, t.updatedMs, t.lastError, Blob{t.result});
  return st.insert("enqueue async task " + t.id, "async task " + t.id + " already exists");
}

Result<AsyncTask> SqliteStore::getAsyncTask(const std::string& tenant, const std::string& function,
                                            const std::string& id) {
  std::lock_guard lock(mu_);
  static const std::string sql = std::string("SELECT ") + kTaskColumns +
                                 " FROM async_tasks WHERE tenant = ?1 AND function = ?2 AND "
                                 "id = ?3";
  ASSIGN_OR_RETURN(SqliteStatement st, statement(sql.c_str()));
  st.bind(tenant, function, id);
  RETURN_IF_ERROR(st.one("read async task " + id, "async task " + id + " not found"));
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
  ASSIGN_OR_RETURN(SqliteStatement st, statement(sql.c_str()));
  st.bind(tenant, function, status ? static_cast<int>(*status) : -1, limit);
  return st.collect<AsyncTask>("list async tasks of " + function, rowToTask);
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
    ASSIGN_OR_RETURN(SqliteStatement st, statement(sql.c_str()));
    st.bind(nowMs, limit);
    ASSIGN_OR_RETURN(out, st.collect<AsyncTask>("claim async tasks", rowToTask));
  }
  for (AsyncTask& t : out) {
    ASSIGN_OR_RETURN(SqliteStatement st,
                     statement("UPDATE async_tasks SET status = 1, attempts = attempts + 1, "
                               "updated_ms = ?4 WHERE tenant = ?1 AND function = ?2 AND id = ?3"));
    st.bind(t.tenant, t.function, t.id, nowMs);
    RETURN_IF_ERROR(st.run("claim async task " + t.id));
    t.status = AsyncTaskStatus::kRunning;
    t.attempts += 1;
    t.updatedMs = nowMs;
  }
  RETURN_IF_ERROR(tx.commit());
  return out;
}

Status SqliteStore::updateAsyncTask(const AsyncTask& t) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("UPDATE async_tasks SET status = ?4, attempts = ?5, "
                             "next_attempt_ms = ?6, updated_ms = ?7, last_error = ?8, result = ?9 "
                             "WHERE tenant = ?1 AND function = ?2 AND id = ?3"));
  st.bind(t.tenant, t.function, t.id, static_cast<int>(t.status), t.attempts, t.nextAttemptMs,
          t.updatedMs, t.lastError, Blob{t.result});
  RETURN_IF_ERROR(st.run("update async task " + t.id));
  if (st.changes() == 0) return notFound("async task " + t.id + " not found");
  return Status::ok();
}

Result<int64_t> SqliteStore::requeueRunningAsyncTasks(int64_t nowMs) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("UPDATE async_tasks SET status = 0, next_attempt_ms = ?1, "
                             "updated_ms = ?1, attempts = max(attempts - 1, 0) WHERE status = 1"));
  st.bind(nowMs);
  RETURN_IF_ERROR(st.run("requeue running async tasks"));
  return st.changes();
}

Result<std::optional<int64_t>> SqliteStore::nextAsyncTaskDueMs() {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("SELECT min(next_attempt_ms) FROM async_tasks WHERE status = 0"));
  RETURN_IF_ERROR(st.one("read the next async due time"));
  if (st.isNull(0)) return std::optional<int64_t>();
  return std::optional<int64_t>(st.int64(0));
}

Result<int64_t> SqliteStore::countPendingAsyncTasks(const std::string& tenant,
                                                    const std::string& function) {
  std::lock_guard lock(mu_);
  ASSIGN_OR_RETURN(SqliteStatement st,
                   statement("SELECT count(*) FROM async_tasks WHERE tenant = ?1 AND "
                             "function = ?2 AND status IN (0, 1)"));
  st.bind(tenant, function);
  RETURN_IF_ERROR(st.one("count async tasks of " + function));
  return st.int64(0);
}

}  // namespace stratus
