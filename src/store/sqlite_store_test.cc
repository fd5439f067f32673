#include "store/sqlite_store.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.h"

namespace stratus {
namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stratus-store-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    file_ = dir_ / "meta.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<SqliteStore> open() {
    auto s = SqliteStore::open(file_);
    EXPECT_TRUE(s.isOk()) << s.status().toString();
    return s.isOk() ? std::move(s).value() : nullptr;
  }

  static FunctionSpec spec(std::string tenant, std::string name) {
    FunctionSpec f;
    f.tenant = std::move(tenant);
    f.name = std::move(name);
    f.runtime = "python3";
    f.handler = "index.handler";
    f.memoryMb = 256;
    f.timeoutSec = 10;
    f.instanceConcurrency = 4;
    f.maxInstances = 7;
    f.environmentVariables = {{"A", "1"}, {"B", "two words"}};
    f.description = "d\xc3\xa9scription \"quoted\"";
    f.initializer = "index.init";
    f.initializationTimeoutSec = 5;
    f.customRuntimeConfig.command = {"/code/bootstrap", "--x"};
    f.customRuntimeConfig.args = {"a"};
    f.customRuntimeConfig.port = 8080;
    f.codeSha256 = std::string(64, 'a');
    f.codeSize = 1234;
    f.codeUnpackedSize = 5678;
    f.revision = 3;
    f.functionId = "fid-1";
    f.createdTime = "2026-01-01T00:00:00Z";
    f.lastModifiedTime = "2026-01-02T00:00:00Z";
    return f;
  }

  std::filesystem::path dir_;
  std::filesystem::path file_;
};

void expectSameSpec(const FunctionSpec& a, const FunctionSpec& b) {
  EXPECT_EQ(a.tenant, b.tenant);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.runtime, b.runtime);
  EXPECT_EQ(a.handler, b.handler);
  EXPECT_EQ(a.memoryMb, b.memoryMb);
  EXPECT_EQ(a.timeoutSec, b.timeoutSec);
  EXPECT_EQ(a.instanceConcurrency, b.instanceConcurrency);
  EXPECT_EQ(a.maxInstances, b.maxInstances);
  EXPECT_EQ(a.environmentVariables, b.environmentVariables);
  EXPECT_EQ(a.description, b.description);
  EXPECT_EQ(a.initializer, b.initializer);
  EXPECT_EQ(a.initializationTimeoutSec, b.initializationTimeoutSec);
  EXPECT_EQ(a.customRuntimeConfig.command, b.customRuntimeConfig.command);
  EXPECT_EQ(a.customRuntimeConfig.args, b.customRuntimeConfig.args);
  EXPECT_EQ(a.customRuntimeConfig.port, b.customRuntimeConfig.port);
  EXPECT_EQ(a.codeSha256, b.codeSha256);
  EXPECT_EQ(a.codeSize, b.codeSize);
  EXPECT_EQ(a.codeUnpackedSize, b.codeUnpackedSize);
  EXPECT_EQ(a.revision, b.revision);
  EXPECT_EQ(a.functionId, b.functionId);
  EXPECT_EQ(a.createdTime, b.createdTime);
  EXPECT_EQ(a.lastModifiedTime, b.lastModifiedTime);
}

TEST(FunctionJsonTest, StorageRoundTripKeepsEveryField) {
  FunctionSpec f;
  f.tenant = "t";
  f.name = "n";
  f.runtime = "custom";
  f.environmentVariables = {{"K", "v\nwith newline"}};
  f.customRuntimeConfig.command = {"python3", "server.py"};
  f.revision = 99;
  f.codeSize = int64_t{5} << 32;  // > 32 bits survives
  auto back = functionFromStorageJson(functionToStorageJson(f));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  expectSameSpec(f, *back);
}

TEST(FunctionJsonTest, StorageRejectsWrongTypes) {
  EXPECT_FALSE(functionFromStorageJson("[1]").isOk());
  EXPECT_FALSE(functionFromStorageJson("{\"memoryMb\":\"big\"}").isOk());
  EXPECT_FALSE(functionFromStorageJson("{\"environmentVariables\":{\"A\":1}}").isOk());
  EXPECT_FALSE(functionFromStorageJson("not json").isOk());
}

TEST(FunctionJsonTest, ApiShapeUsesFunctionComputeNamesAndHidesTenant) {
  FunctionSpec f;
  f.tenant = "secret-tenant";
  f.name = "hello";
  f.runtime = "nodejs";
  f.handler = "index.handler";
  f.memoryMb = 512;
  f.codeSha256 = "abc";
  f.revision = 2;
  json::object o = functionToJson(f);
  EXPECT_EQ(o.at("functionName").as_string(), "hello");
  EXPECT_EQ(o.at("runtime").as_string(), "nodejs");
  EXPECT_EQ(o.at("memorySize").as_int64(), 512);
  EXPECT_EQ(o.at("timeout").as_int64(), 3);
  EXPECT_EQ(o.at("codeSha256").as_string(), "abc");
  EXPECT_EQ(o.at("revision").as_int64(), 2);
  EXPECT_EQ(json::serialize(o).find("secret-tenant"), std::string::npos);
}

TEST(FunctionJsonTest, NowIsRfc3339Utc) {
  std::string t = nowRfc3339();
  ASSERT_EQ(t.size(), 20u) << t;
  EXPECT_EQ(t[4], '-');
  EXPECT_EQ(t[10], 'T');
  EXPECT_EQ(t[19], 'Z');
}

TEST_F(SqliteStoreTest, CrudRoundTrip) {
  auto store = open();
  ASSERT_TRUE(store);
  FunctionSpec f = spec("t1", "hello");
  ASSERT_TRUE(store->createFunction(f).isOk());

  auto got = store->getFunction("t1", "hello");
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  expectSameSpec(f, *got);

  f.memoryMb = 1024;
  f.revision = 4;
  ASSERT_TRUE(store->updateFunction(f).isOk());
  got = store->getFunction("t1", "hello");
  ASSERT_TRUE(got.isOk());
  EXPECT_EQ(got->memoryMb, 1024);
  EXPECT_EQ(got->revision, 4);

  ASSERT_TRUE(store->deleteFunction("t1", "hello").isOk());
  EXPECT_EQ(store->getFunction("t1", "hello").status().code(), Code::kNotFound);
}

TEST_F(SqliteStoreTest, DuplicateAndMissing) {
  auto store = open();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->createFunction(spec("t1", "f")).isOk());
  Status dup = store->createFunction(spec("t1", "f"));
  EXPECT_EQ(dup.code(), Code::kAlreadyExists) << dup.toString();
  // Same name in another tenant is a different function.
  EXPECT_TRUE(store->createFunction(spec("t2", "f")).isOk());

  EXPECT_EQ(store->getFunction("t1", "nope").status().code(), Code::kNotFound);
  EXPECT_EQ(store->getFunction("t3", "f").status().code(), Code::kNotFound);
  EXPECT_EQ(store->updateFunction(spec("t1", "nope")).code(), Code::kNotFound);
  EXPECT_EQ(store->deleteFunction("t1", "nope").code(), Code::kNotFound);
  EXPECT_EQ(store->findApiKey("0000").status().code(), Code::kNotFound);
}

TEST_F(SqliteStoreTest, ListIsPerTenantAndSorted) {
  auto store = open();
  ASSERT_TRUE(store);
  for (const char* n : {"zeta", "alpha", "mid"})
    ASSERT_TRUE(store->createFunction(spec("a", n)).isOk());
  ASSERT_TRUE(store->createFunction(spec("b", "beta")).isOk());

  auto a = store->listFunctions("a");
  ASSERT_TRUE(a.isOk());
  ASSERT_EQ(a->size(), 3u);
  EXPECT_EQ((*a)[0].name, "alpha");
  EXPECT_EQ((*a)[1].name, "mid");
  EXPECT_EQ((*a)[2].name, "zeta");
  for (const auto& f : *a) EXPECT_EQ(f.tenant, "a");

  auto none = store->listFunctions("c");
  ASSERT_TRUE(none.isOk());
  EXPECT_TRUE(none->empty());

  auto all = store->listAllFunctions();
  ASSERT_TRUE(all.isOk());
  EXPECT_EQ(all->size(), 4u);
}

TEST_F(SqliteStoreTest, ApiKeys) {
  auto store = open();
  ASSERT_TRUE(store);
  ApiKey k{"hash1", "tenant-x", true, "2026-01-01T00:00:00Z"};
  ASSERT_TRUE(store->putApiKey(k).isOk());
  auto got = store->findApiKey("hash1");
  ASSERT_TRUE(got.isOk());
  EXPECT_EQ(got->tenant, "tenant-x");
  EXPECT_TRUE(got->admin);
  EXPECT_EQ(got->createdTime, "2026-01-01T00:00:00Z");
  // put replaces.
  k.admin = false;
  k.tenant = "tenant-y";
  ASSERT_TRUE(store->putApiKey(k).isOk());
  got = store->findApiKey("hash1");
  ASSERT_TRUE(got.isOk());
  EXPECT_EQ(got->tenant, "tenant-y");
  EXPECT_FALSE(got->admin);
}

TEST_F(SqliteStoreTest, ReopenKeepsData) {
  {
    auto store = open();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->createFunction(spec("t", "kept")).isOk());
    ASSERT_TRUE(store->putApiKey({"h", "t", false, ""}).isOk());
  }
  auto store = open();
  ASSERT_TRUE(store);
  auto got = store->getFunction("t", "kept");
  ASSERT_TRUE(got.isOk());
  expectSameSpec(spec("t", "kept"), *got);
  auto key = store->findApiKey("h");
  ASSERT_TRUE(key.isOk());
  EXPECT_FALSE(key->createdTime.empty());  // filled in when the caller left it empty
}

// A committed mutation survives the process dying without closing the database (kill -9).
TEST_F(SqliteStoreTest, SurvivesProcessKill) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = SqliteStore::open(file_);
    if (!s.isOk()) ::_exit(2);
    if (!(*s)->createFunction(spec("t", "durable")).isOk()) ::_exit(3);
    ::kill(::getpid(), SIGKILL);
    ::_exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  auto store = open();
  ASSERT_TRUE(store);
  EXPECT_TRUE(store->getFunction("t", "durable").isOk());
}

TEST_F(SqliteStoreTest, UsesWalMode) {
  auto store = open();
  ASSERT_TRUE(store);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, RefusesNewerSchema) {
  {
    auto store = open();
    ASSERT_TRUE(store);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE schema_version SET version = 999", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto s = SqliteStore::open(file_);
  ASSERT_FALSE(s.isOk());
  EXPECT_EQ(s.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("999"), std::string::npos) << s.status().message();
}

TEST_F(SqliteStoreTest, OpenFailureSaysWhy) {
  auto s = SqliteStore::open(dir_ / "no" / "such" / "dir" / "meta.db");
  ASSERT_FALSE(s.isOk());
  EXPECT_NE(s.status().message().find("meta.db"), std::string::npos) << s.status().message();
}

TEST_F(SqliteStoreTest, ConcurrentUseFromThreads) {
  auto store = open();
  ASSERT_TRUE(store);
  constexpr int kThreads = 4, kPerThread = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string name = "f" + std::to_string(t) + "_" + std::to_string(i);
        FunctionSpec f = spec("tenant", name);
        if (!store->createFunction(f).isOk()) ++failures;
        auto got = store->getFunction("tenant", name);
        if (!got.isOk() || got->name != name) ++failures;
        f.revision = 2;
        if (!store->updateFunction(f).isOk()) ++failures;
        if (!store->listFunctions("tenant").isOk()) ++failures;
        if (i % 2 == 0 && !store->deleteFunction("tenant", name).isOk()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto all = store->listFunctions("tenant");
  ASSERT_TRUE(all.isOk());
  EXPECT_EQ(all->size(), static_cast<size_t>(kThreads * (kPerThread / 2)));  // odd i kept
  for (const auto& f : *all) EXPECT_EQ(f.revision, 2);
}

// ---- tenants ----

TEST(TenantQuotaJsonTest, RoundTripAndRanges) {
  TenantQuota q;
  q.requestsPerSecond = 2.5;
  q.burst = 10;
  q.functionRequestsPerSecond = 1;
  q.maxConcurrentInstances = 3;
  q.maxFunctions = 4;
  q.maxTotalMemoryMb = 1024;
  auto back = tenantQuotaFromJson(tenantQuotaToJson(q));
  ASSERT_TRUE(back.isOk()) << back.status().toString();
  EXPECT_EQ(back->requestsPerSecond, 2.5);
  EXPECT_EQ(back->burst, 10);
  EXPECT_EQ(back->functionRequestsPerSecond, 1);
  EXPECT_EQ(back->maxConcurrentInstances, 3);
  EXPECT_EQ(back->maxFunctions, 4);
  EXPECT_EQ(back->maxTotalMemoryMb, 1024);
  // Partial JSON applies onto the base.
  auto partial = tenantQuotaFromJson(R"({"maxFunctions": 9})", q);
  ASSERT_TRUE(partial.isOk());
  EXPECT_EQ(partial->maxFunctions, 9);
  EXPECT_EQ(partial->burst, 10);
  EXPECT_FALSE(tenantQuotaFromJson(R"({"maxFunctions": -1})").isOk());
  EXPECT_FALSE(tenantQuotaFromJson(R"({"maxFunctions": 1.5})").isOk());
  EXPECT_FALSE(tenantQuotaFromJson(R"({"requestsPerSecond": "10"})").isOk());
  EXPECT_FALSE(tenantQuotaFromJson(R"([1])").isOk());
}

TEST_F(SqliteStoreTest, TenantsCrud) {
  auto db = open();
  Tenant t{"acme", {}, ""};
  t.quota.requestsPerSecond = 5;
  ASSERT_TRUE(db->createTenant(t).isOk());
  EXPECT_EQ(db->createTenant(t).code(), Code::kAlreadyExists);
  ASSERT_TRUE(db->createTenant(Tenant{"beta", {}, ""}).isOk());
  auto got = db->getTenant("acme");
  ASSERT_TRUE(got.isOk());
  EXPECT_EQ(got->quota.requestsPerSecond, 5);
  EXPECT_FALSE(got->createdTime.empty());
  t.quota.maxFunctions = 2;
  ASSERT_TRUE(db->updateTenant(t).isOk());
  EXPECT_EQ(db->getTenant("acme")->quota.maxFunctions, 2);
  EXPECT_EQ(db->updateTenant(Tenant{"nope", {}, ""}).code(), Code::kNotFound);
  auto all = db->listTenants();
  ASSERT_TRUE(all.isOk());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "acme");
  EXPECT_EQ(db->getTenant("nope").status().code(), Code::kNotFound);
}

TEST_F(SqliteStoreTest, DeleteTenantRemovesEverythingOfItsOwnOnly) {
  auto db = open();
  ASSERT_TRUE(db->createTenant(Tenant{"acme", {}, ""}).isOk());
  ASSERT_TRUE(db->createTenant(Tenant{"beta", {}, ""}).isOk());
  ASSERT_TRUE(db->createFunction(spec("acme", "f1")).isOk());
  ASSERT_TRUE(db->createFunction(spec("acme", "f2")).isOk());
  ASSERT_TRUE(db->createFunction(spec("beta", "f1")).isOk());
  ASSERT_TRUE(db->putApiKey(ApiKey{"h-acme", "acme", false, ""}).isOk());
  ASSERT_TRUE(db->putApiKey(ApiKey{"h-beta", "beta", false, ""}).isOk());
  ASSERT_TRUE(db->putAsyncConfig("acme", "f1", "{}").isOk());
  AsyncTask task;
  task.tenant = "acme";
  task.function = "f1";
  task.id = "t1";
  ASSERT_TRUE(db->enqueueAsyncTask(task).isOk());
  task.tenant = "beta";
  ASSERT_TRUE(db->enqueueAsyncTask(task).isOk());

  auto gone = db->deleteTenant("acme");
  ASSERT_TRUE(gone.isOk()) << gone.status().toString();
  ASSERT_EQ(gone->size(), 2u);
  EXPECT_EQ((*gone)[0].name, "f1");
  EXPECT_EQ(db->getTenant("acme").status().code(), Code::kNotFound);
  EXPECT_TRUE(db->listFunctions("acme")->empty());
  EXPECT_EQ(db->findApiKey("h-acme").status().code(), Code::kNotFound);
  EXPECT_EQ(db->getAsyncConfig("acme", "f1").status().code(), Code::kNotFound);
  EXPECT_EQ(db->getAsyncTask("acme", "f1", "t1").status().code(), Code::kNotFound);
  // The other tenant is untouched.
  EXPECT_EQ(db->listFunctions("beta")->size(), 1u);
  EXPECT_TRUE(db->findApiKey("h-beta").isOk());
  EXPECT_TRUE(db->getAsyncTask("beta", "f1", "t1").isOk());
  EXPECT_EQ(db->deleteTenant("acme").status().code(), Code::kNotFound);
}

// ---- async ----

TEST_F(SqliteStoreTest, AsyncConfigFollowsTheFunction) {
  auto db = open();
  ASSERT_TRUE(db->createFunction(spec("t", "f")).isOk());
  EXPECT_EQ(db->getAsyncConfig("t", "f").status().code(), Code::kNotFound);
  ASSERT_TRUE(db->putAsyncConfig("t", "f", R"({"maxAsyncRetryAttempts":1})").isOk());
  EXPECT_EQ(*db->getAsyncConfig("t", "f"), R"({"maxAsyncRetryAttempts":1})");
  ASSERT_TRUE(db->putAsyncConfig("t", "f", R"({"maxAsyncRetryAttempts":2})").isOk());
  EXPECT_EQ(*db->getAsyncConfig("t", "f"), R"({"maxAsyncRetryAttempts":2})");
  ASSERT_TRUE(db->deleteFunction("t", "f").isOk());
  EXPECT_EQ(db->getAsyncConfig("t", "f").status().code(), Code::kNotFound);
  EXPECT_EQ(db->deleteAsyncConfig("t", "f").code(), Code::kNotFound);
}

TEST_F(SqliteStoreTest, AsyncTaskLifecycle) {
  auto db = open();
  AsyncTask a;
  a.tenant = "t";
  a.function = "f";
  a.id = "a";
  a.payload = std::string("bin\0ary", 7);
  a.createdMs = 1000;
  a.nextAttemptMs = 1000;
  AsyncTask b = a;
  b.id = "b";
  b.createdMs = 1001;
  b.nextAttemptMs = 5000;
  ASSERT_TRUE(db->enqueueAsyncTask(a).isOk());
  ASSERT_TRUE(db->enqueueAsyncTask(b).isOk());
  EXPECT_EQ(db->enqueueAsyncTask(a).code(), Code::kAlreadyExists);
  EXPECT_EQ(*db->countPendingAsyncTasks("t", "f"), 2);
  EXPECT_EQ(**db->nextAsyncTaskDueMs(), 1000);

  // Only due tasks are claimed, once.
  auto claimed = db->claimDueAsyncTasks(2000, 10);
  ASSERT_TRUE(claimed.isOk()) << claimed.status().toString();
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ((*claimed)[0].id, "a");
  EXPECT_EQ((*claimed)[0].attempts, 1);
  EXPECT_EQ((*claimed)[0].status, AsyncTaskStatus::kRunning);
  EXPECT_EQ((*claimed)[0].payload, a.payload);
  EXPECT_TRUE(db->claimDueAsyncTasks(2000, 10)->empty());
  EXPECT_EQ(db->getAsyncTask("t", "f", "a")->status, AsyncTaskStatus::kRunning);

  // A crash: the running task is requeued and its interrupted attempt not counted.
  EXPECT_EQ(*db->requeueRunningAsyncTasks(3000), 1);
  auto again = db->getAsyncTask("t", "f", "a");
  EXPECT_EQ(again->status, AsyncTaskStatus::kEnqueued);
  EXPECT_EQ(again->attempts, 0);
  EXPECT_EQ(again->nextAttemptMs, 3000);

  claimed = db->claimDueAsyncTasks(6000, 10);
  ASSERT_EQ(claimed->size(), 2u);
  AsyncTask done = (*claimed)[0];
  done.status = AsyncTaskStatus::kSucceeded;
  done.result = "{\"ok\":1}";
  done.updatedMs = 6001;
  ASSERT_TRUE(db->updateAsyncTask(done).isOk());
  AsyncTask failed = (*claimed)[1];
  failed.status = AsyncTaskStatus::kFailed;
  failed.lastError = "{\"errorType\":\"X\"}";
  ASSERT_TRUE(db->updateAsyncTask(failed).isOk());
  EXPECT_EQ(*db->countPendingAsyncTasks("t", "f"), 0);
  EXPECT_FALSE(db->nextAsyncTaskDueMs()->has_value());

  auto onlyFailed = db->listAsyncTasks("t", "f", AsyncTaskStatus::kFailed, 10);
  ASSERT_EQ(onlyFailed->size(), 1u);
  EXPECT_EQ((*onlyFailed)[0].lastError, failed.lastError);
  auto all = db->listAsyncTasks("t", "f", std::nullopt, 10);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, "b");  // newest first
  EXPECT_TRUE(db->listAsyncTasks("other", "f", std::nullopt, 10)->empty());
}

TEST_F(SqliteStoreTest, AcceptedAsyncTaskSurvivesProcessKill) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto s = SqliteStore::open(file_);
    if (!s.isOk()) _exit(2);
    AsyncTask t;
    t.tenant = "t";
    t.function = "f";
    t.id = "durable";
    if (!(*s)->enqueueAsyncTask(t).isOk()) _exit(3);
    ::kill(getpid(), SIGKILL);
  }
  int st = 0;
  ASSERT_EQ(waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(st)) << "child exited with " << WEXITSTATUS(st);
  auto db = open();
  EXPECT_TRUE(db->getAsyncTask("t", "f", "durable").isOk());
}

TEST_F(SqliteStoreTest, UpgradesVersionOneDatabase) {
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(file_.c_str(), &raw), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(raw,
                           "CREATE TABLE schema_version(version INTEGER NOT NULL);"
                           "INSERT INTO schema_version VALUES(1);",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(raw);
  }
  auto db = open();
  ASSERT_NE(db, nullptr);
  EXPECT_TRUE(db->createTenant(Tenant{"acme", {}, ""}).isOk());
}

}  // namespace
}  // namespace stratus
