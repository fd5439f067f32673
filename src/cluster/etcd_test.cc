// EtcdClient and EtcdStore against a real etcd on loopback.
#include <gtest/gtest.h>

#include "cluster/etcd_client.h"
#include "cluster/testing.h"
#include "common/fs.h"
#include "store/etcd_store.h"

namespace stratus {
namespace {

class EtcdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stratus-etcd-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto etcd = testing::EtcdServer::start(dir_);
    ASSERT_TRUE(etcd.isOk()) << etcd.status().toString();
    etcd_ = std::move(*etcd);
    auto client = EtcdClient::create(etcd_->url());
    ASSERT_TRUE(client.isOk()) << client.status().toString();
    client_ = std::move(*client);
  }
  void TearDown() override {
    client_.reset();
    etcd_.reset();
    (void)removeTree(dir_);
  }

  std::filesystem::path dir_;
  std::unique_ptr<testing::EtcdServer> etcd_;
  std::shared_ptr<EtcdClient> client_;
};

TEST_F(EtcdTest, KvPrefixAndTxn) {
  ASSERT_TRUE(client_->put("/a/1", "one").isOk());
  ASSERT_TRUE(client_->put("/a/2", std::string("t\0o", 3)).isOk());
  ASSERT_TRUE(client_->put("/b", "bee").isOk());
  auto one = client_->get("/a/1");
  ASSERT_TRUE(one.isOk()) << one.status().toString();
  ASSERT_TRUE(one->has_value());
  EXPECT_EQ((*one)->value, "one");
  EXPECT_GT((*one)->modRevision, 0);
  auto missing = client_->get("/a/3");
  ASSERT_TRUE(missing.isOk());
  EXPECT_FALSE(missing->has_value());

  auto prefix = client_->getPrefix("/a/");
  ASSERT_TRUE(prefix.isOk());
  ASSERT_EQ(prefix->size(), 2u);
  EXPECT_EQ((*prefix)[1].value, std::string("t\0o", 3));

  // Create-if-absent: the second one loses.
  auto first = client_->txn({EtcdCompare::absent("/c")}, {EtcdOp::put("/c", "x")});
  ASSERT_TRUE(first.isOk());
  EXPECT_TRUE(first->succeeded);
  auto second =
      client_->txn({EtcdCompare::absent("/c")}, {EtcdOp::put("/c", "y")}, {EtcdOp::get("/c")});
  ASSERT_TRUE(second.isOk());
  EXPECT_FALSE(second->succeeded);
  ASSERT_EQ(second->kvs.size(), 1u);
  ASSERT_EQ(second->kvs[0].size(), 1u);
  EXPECT_EQ(second->kvs[0][0].value, "x");

  auto deleted = client_->delPrefix("/a/");
  ASSERT_TRUE(deleted.isOk());
  EXPECT_EQ(*deleted, 2);
  EXPECT_EQ(client_->getPrefix("/a/")->size(), 0u);
}

TEST_F(EtcdTest, LeaseExpiryRemovesKeys) {
  auto lease = client_->grantLease(1);
  ASSERT_TRUE(lease.isOk()) << lease.status().toString();
  ASSERT_TRUE(client_->put("/members/w1", "alive", *lease).isOk());
  auto ttl = client_->keepAlive(*lease);
  ASSERT_TRUE(ttl.isOk()) << ttl.status().toString();
  EXPECT_GE(*ttl, 1);
  // Without keep-alives the key goes away with the lease.
  EXPECT_TRUE(testing::waitFor(
      [&] {
        auto kv = client_->get("/members/w1");
        return kv.isOk() && !kv->has_value();
      },
      std::chrono::seconds(10)));
  auto expired = client_->keepAlive(*lease);
  ASSERT_TRUE(expired.isOk());
  EXPECT_EQ(*expired, 0);
}

TEST_F(EtcdTest, UnreachableEtcdIsUnavailable) {
  etcd_->kill();
  auto r = client_->get("/x");
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().toString();
  ASSERT_TRUE(etcd_->restart().isOk());
  EXPECT_TRUE(
      testing::waitFor([&] { return client_->get("/x").isOk(); }, std::chrono::seconds(10)));
}

FunctionSpec fn(const std::string& tenant, const std::string& name) {
  FunctionSpec f;
  f.tenant = tenant;
  f.name = name;
  f.runtime = "python3";
  f.handler = "index.handler";
  f.codeSha256 = std::string(64, 'a');
  f.functionId = "id-" + name;
  return f;
}

TEST_F(EtcdTest, StoreFunctions) {
  EtcdStore store(client_);
  ASSERT_TRUE(store.createFunction(fn("t1", "b")).isOk());
  ASSERT_TRUE(store.createFunction(fn("t1", "a")).isOk());
  ASSERT_TRUE(store.createFunction(fn("t2", "a")).isOk());
  EXPECT_EQ(store.createFunction(fn("t1", "a")).code(), Code::kAlreadyExists);
  // A tenant whose name is a prefix of another's sees only its own functions.
  ASSERT_TRUE(store.createFunction(fn("t", "z")).isOk());

  auto list = store.listFunctions("t1");
  ASSERT_TRUE(list.isOk()) << list.status().toString();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "a");
  EXPECT_EQ((*list)[1].name, "b");
  EXPECT_EQ(store.listFunctions("t")->size(), 1u);
  EXPECT_EQ(store.listAllFunctions()->size(), 4u);

  FunctionSpec updated = fn("t1", "a");
  updated.revision = 2;
  updated.memoryMb = 256;
  ASSERT_TRUE(store.updateFunction(updated).isOk());
  auto got = store.getFunction("t1", "a");
  ASSERT_TRUE(got.isOk());
  EXPECT_EQ(got->revision, 2);
  EXPECT_EQ(got->memoryMb, 256);
  EXPECT_EQ(store.updateFunction(fn("t1", "nope")).code(), Code::kNotFound);

  ASSERT_TRUE(store.putAsyncConfig("t1", "a", R"({"maxAsyncRetryAttempts":1})").isOk());
  ASSERT_TRUE(store.deleteFunction("t1", "a").isOk());
  EXPECT_EQ(store.deleteFunction("t1", "a").code(), Code::kNotFound);
  EXPECT_EQ(store.getFunction("t1", "a").status().code(), Code::kNotFound);
  EXPECT_EQ(store.getAsyncConfig("t1", "a").status().code(), Code::kNotFound);
}

TEST_F(EtcdTest, StoreTenantsAndKeys) {
  EtcdStore store(client_);
  Tenant t;
  t.name = "acme";
  t.quota.requestsPerSecond = 5;
  ASSERT_TRUE(store.createTenant(t).isOk());
  EXPECT_EQ(store.createTenant(t).code(), Code::kAlreadyExists);
  t.quota.maxFunctions = 3;
  ASSERT_TRUE(store.updateTenant(t).isOk());
  auto got = store.getTenant("acme");
  ASSERT_TRUE(got.isOk()) << got.status().toString();
  EXPECT_EQ(got->quota.maxFunctions, 3);
  EXPECT_EQ(got->quota.requestsPerSecond, 5);
  EXPECT_FALSE(got->createdTime.empty());

  ASSERT_TRUE(store.putApiKey(ApiKey{"h1", "acme", false, "now"}).isOk());
  ASSERT_TRUE(store.putApiKey(ApiKey{"h2", "other", true, "now"}).isOk());
  auto key = store.findApiKey("h1");
  ASSERT_TRUE(key.isOk());
  EXPECT_EQ(key->tenant, "acme");
  EXPECT_EQ(store.findApiKey("zz").status().code(), Code::kNotFound);

  ASSERT_TRUE(store.createFunction(fn("acme", "f")).isOk());
  auto gone = store.deleteTenant("acme");
  ASSERT_TRUE(gone.isOk()) << gone.status().toString();
  ASSERT_EQ(gone->size(), 1u);
  EXPECT_EQ((*gone)[0].name, "f");
  EXPECT_EQ(store.findApiKey("h1").status().code(), Code::kNotFound);
  EXPECT_TRUE(store.findApiKey("h2").isOk());
  EXPECT_EQ(store.listFunctions("acme")->size(), 0u);
  EXPECT_EQ(store.deleteTenant("acme").status().code(), Code::kNotFound);
}

TEST_F(EtcdTest, StoreAsyncQueue) {
  EtcdStore store(client_);
  for (int i = 0; i < 3; ++i) {
    AsyncTask t;
    t.tenant = "t";
    t.function = "f";
    t.id = "r" + std::to_string(i);
    t.payload = std::string("\x01\x02", 2);
    t.createdMs = 100 + i;
    t.nextAttemptMs = i == 2 ? 10000 : 100 + i;
    ASSERT_TRUE(store.enqueueAsyncTask(t).isOk());
  }
  AsyncTask dup;
  dup.tenant = "t";
  dup.function = "f";
  dup.id = "r0";
  EXPECT_EQ(store.enqueueAsyncTask(dup).code(), Code::kAlreadyExists);
  EXPECT_EQ(*store.countPendingAsyncTasks("t", "f"), 3);
  EXPECT_EQ(**store.nextAsyncTaskDueMs(), 100);

  auto claimed = store.claimDueAsyncTasks(1000, 10);
  ASSERT_TRUE(claimed.isOk()) << claimed.status().toString();
  ASSERT_EQ(claimed->size(), 2u);
  EXPECT_EQ((*claimed)[0].id, "r0");
  EXPECT_EQ((*claimed)[0].attempts, 1);
  EXPECT_EQ((*claimed)[0].payload, std::string("\x01\x02", 2));
  EXPECT_EQ(store.claimDueAsyncTasks(1000, 10)->size(), 0u);  // already running

  AsyncTask done = (*claimed)[0];
  done.status = AsyncTaskStatus::kSucceeded;
  done.result = "ok";
  ASSERT_TRUE(store.updateAsyncTask(done).isOk());
  EXPECT_EQ(store.getAsyncTask("t", "f", "r0")->result, "ok");

  EXPECT_EQ(*store.requeueRunningAsyncTasks(2000), 1);  // r1
  auto r1 = store.getAsyncTask("t", "f", "r1");
  ASSERT_TRUE(r1.isOk());
  EXPECT_EQ(r1->status, AsyncTaskStatus::kEnqueued);
  EXPECT_EQ(r1->attempts, 0);
  EXPECT_EQ(r1->nextAttemptMs, 2000);

  auto newest = store.listAsyncTasks("t", "f", std::nullopt, 2);
  ASSERT_TRUE(newest.isOk());
  ASSERT_EQ(newest->size(), 2u);
  EXPECT_EQ((*newest)[0].id, "r2");
  auto succeeded = store.listAsyncTasks("t", "f", AsyncTaskStatus::kSucceeded, 10);
  ASSERT_EQ(succeeded->size(), 1u);
  EXPECT_EQ(*store.countPendingAsyncTasks("t", "f"), 2);
}

}  // namespace
}  // namespace stratus
