#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <string>

namespace stratus {
namespace {

constexpr int kSchemaVersion = 1;

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
                  "  admin INTEGER NOT NULL, created TEXT NOT NULL) WITHOUT ROWID;");
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
  }
  // Migrations from older versions go here, each bumping schema_version in this transaction.
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
  ASSIGN_OR_RETURN(sqlite3_stmt * st,
                   statement("DELETE FROM functions WHERE tenant = ?1 AND name = ?2"));
  StmtGuard guard(st);
  bindText(st, 1, tenant);
  bindText(st, 2, name);
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) return sqliteError(db_, rc, "delete function " + name);
  if (sqlite3_changes(db_) == 0) return notFound("function " + name + " not found");
  return Status::ok();
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

}  // namespace stratus
