// AsyncDispatcher against the real SqliteStore (temp file) with a ManualClock as the wall clock
// and a fixed jitter draw, so that retry times are exact; the invoker is scripted (it stands
// for the scheduler/worker seam).
#include "api/async_dispatcher.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <deque>
#include <filesystem>

#include "store/sqlite_store.h"

namespace stratus {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int64_t kStartMs = 1'700'000'000'000;

class ScriptedInvoker final : public Invoker {
 public:
  void invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) override {
    calls.push_back({fn.name, req});
    InvokeResult r;
    if (!script.empty()) {
      r = script.front();
      if (script.size() > 1) script.pop_front();
    }
    if (r.status.isOk() && r.functionError == FunctionErrorKind::kNone && r.body.empty()) {
      r.body = R"({"echo":)" + req.payload + "}";
    }
    done(std::move(r));
  }
  void functionChanged(const FunctionSpec&) override {}
  void functionDeleted(const FunctionSpec&) override {}
  void shutdown() override {}

  static InvokeResult failure() {
    InvokeResult r;
    r.functionError = FunctionErrorKind::kUnhandled;
    r.body = R"({"errorType":"ValueError","errorMessage":"boom"})";
    return r;
  }
  static InvokeResult success() { return InvokeResult{}; }
  static InvokeResult refused() {
    InvokeResult r;
    r.status = unavailable("breaker open");
    r.body = "CircuitBreakerOpen";
    r.headers["Retry-After"] = "7";
    return r;
  }

  std::vector<std::pair<std::string, InvokeRequest>> calls;
  std::deque<InvokeResult> script;
};

class AsyncDispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/stratus-async-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto s = SqliteStore::open(dir_ / "meta.db");
    ASSERT_TRUE(s.isOk()) << s.status().toString();
    store_ = std::move(s).value();
    clock_.set(TimePoint(milliseconds(kStartMs)));
    for (const char* name : {"f", "ok-dest", "fail-dest"}) {
      FunctionSpec f;
      f.tenant = "t";
      f.name = name;
      f.runtime = "python3";
      ASSERT_TRUE(store_->createFunction(f).isOk());
    }
    make(1.0);
  }
  void TearDown() override {
    dispatcher_.reset();
    std::filesystem::remove_all(dir_);
  }

  void make(double jitter) {
    dispatcher_.reset();
    AsyncOptions o;
    o.baseBackoff = seconds(1);
    o.maxBackoff = seconds(60);
    dispatcher_ = std::make_unique<AsyncDispatcher>(
        *store_, invoker_, clock_, o,
        [this](const std::string& t,
               const std::string& n) -> Result<std::shared_ptr<const FunctionSpec>> {
          ASSIGN_OR_RETURN(FunctionSpec f, store_->getFunction(t, n));
          return std::make_shared<const FunctionSpec>(std::move(f));
        },
        [jitter] { return jitter; });
  }

  void enqueue(const std::string& id, const std::string& payload = "{\"n\":1}") {
    AsyncTask t;
    t.tenant = "t";
    t.function = "f";
    t.id = id;
    t.payload = payload;
    t.createdMs = nowMs();
    t.nextAttemptMs = nowMs();
    t.updatedMs = nowMs();
    ASSERT_TRUE(store_->enqueueAsyncTask(t).isOk());
  }
  void config(const std::string& json) {
    auto c = parseAsyncInvokeConfig(json);
    ASSERT_TRUE(c.isOk()) << c.status().toString();
    ASSERT_TRUE(
        store_->putAsyncConfig("t", "f", json::serialize(asyncInvokeConfigToJson(*c))).isOk());
  }
  int64_t nowMs() const {
    return std::chrono::duration_cast<milliseconds>(clock_.now().time_since_epoch()).count();
  }
  AsyncTask task(const std::string& id, const std::string& fn = "f") {
    auto t = store_->getAsyncTask("t", fn, id);
    EXPECT_TRUE(t.isOk()) << t.status().toString();
    return t.isOk() ? *t : AsyncTask{};
  }

  std::filesystem::path dir_;
  std::unique_ptr<SqliteStore> store_;
  ManualClock clock_;
  ScriptedInvoker invoker_;
  std::unique_ptr<AsyncDispatcher> dispatcher_;
};

TEST(AsyncInvokeConfigTest, ParsesFunctionComputeShapeAndChecksRanges) {
  auto c = parseAsyncInvokeConfig(
      R"({"maxAsyncRetryAttempts":2,"maxAsyncEventAgeInSeconds":60,
          "destinationConfig":{"onSuccess":{"destination":"acs:fc:cn-hangzhou:1:functions/ok"},
                               "onFailure":{"destination":"dlq"}}})");
  ASSERT_TRUE(c.isOk()) << c.status().toString();
  EXPECT_EQ(c->maxAsyncRetryAttempts, 2);
  EXPECT_EQ(c->maxAsyncEventAgeInSeconds, 60);
  EXPECT_EQ(c->onSuccess, "ok");
  EXPECT_EQ(c->onFailure, "dlq");
  auto d = parseAsyncInvokeConfig("{}");
  ASSERT_TRUE(d.isOk());
  EXPECT_EQ(d->maxAsyncRetryAttempts, 3);
  EXPECT_EQ(d->maxAsyncEventAgeInSeconds, 86400);
  for (const char* bad :
       {R"({"maxAsyncRetryAttempts":9})", R"({"maxAsyncRetryAttempts":-1})",
        R"({"maxAsyncEventAgeInSeconds":0})", R"({"maxAsyncEventAgeInSeconds":86401})",
        R"({"maxAsyncRetryAttempts":"2"})", R"({"destinationConfig":{"onSuccess":"x"}})",
        R"({"destinationConfig":{"onFailure":{"destination":"../x"}}})", "[]", "nope"}) {
    EXPECT_FALSE(parseAsyncInvokeConfig(bad).isOk()) << bad;
  }
}

TEST_F(AsyncDispatcherTest, BackoffDoublesWithEqualJitterAndIsCapped) {
  make(1.0);
  EXPECT_EQ(toMillis(dispatcher_->backoff(1)), 1000);
  EXPECT_EQ(toMillis(dispatcher_->backoff(2)), 2000);
  EXPECT_EQ(toMillis(dispatcher_->backoff(3)), 4000);
  EXPECT_EQ(toMillis(dispatcher_->backoff(7)), 60000);  // 64 s capped at 60
  EXPECT_EQ(toMillis(dispatcher_->backoff(30)), 60000);
  make(0.0);
  EXPECT_EQ(toMillis(dispatcher_->backoff(1)), 500);
  EXPECT_EQ(toMillis(dispatcher_->backoff(3)), 2000);
  make(0.5);
  EXPECT_EQ(toMillis(dispatcher_->backoff(2)), 1500);
}

TEST_F(AsyncDispatcherTest, SuccessIsRecordedWithTheResult) {
  enqueue("a");
  EXPECT_EQ(dispatcher_->runDue(), 1);
  EXPECT_EQ(dispatcher_->inFlight(), 0);
  AsyncTask t = task("a");
  EXPECT_EQ(t.status, AsyncTaskStatus::kSucceeded);
  EXPECT_EQ(t.attempts, 1);
  EXPECT_EQ(t.result, R"({"echo":{"n":1}})");
  ASSERT_EQ(invoker_.calls.size(), 1u);
  EXPECT_EQ(invoker_.calls[0].second.requestId, "a");
  EXPECT_EQ(invoker_.calls[0].second.headers["x-fc-invocation-type"], "Async");
  EXPECT_EQ(dispatcher_->runDue(), 0);
}

TEST_F(AsyncDispatcherTest, RetriesFollowTheBackoffScheduleThenFail) {
  config(R"({"maxAsyncRetryAttempts":3,
             "destinationConfig":{"onFailure":{"destination":"fail-dest"}}})");
  invoker_.script = {ScriptedInvoker::failure()};
  enqueue("r");
  const int64_t t0 = nowMs();
  // Attempt 1 now; retries 1 s, 2 s and 4 s after each failure (jitter draw 1.0).
  const int64_t expectedGaps[] = {1000, 2000, 4000};
  ASSERT_EQ(dispatcher_->runDue(), 1);
  for (int retry = 0; retry < 3; ++retry) {
    AsyncTask t = task("r");
    ASSERT_EQ(t.status, AsyncTaskStatus::kEnqueued) << retry;
    EXPECT_EQ(t.attempts, retry + 1);
    EXPECT_EQ(t.nextAttemptMs - nowMs(), expectedGaps[retry]);
    EXPECT_NE(t.lastError.find("ValueError"), std::string::npos);
    // Not a millisecond early.
    clock_.advance(milliseconds(expectedGaps[retry] - 1));
    EXPECT_EQ(dispatcher_->runDue(), 0);
    clock_.advance(milliseconds(1));
    EXPECT_EQ(dispatcher_->runDue(), 1);
  }
  EXPECT_EQ(nowMs() - t0, 7000);
  AsyncTask t = task("r");
  EXPECT_EQ(t.status, AsyncTaskStatus::kFailed);
  EXPECT_EQ(t.attempts, 4);
  EXPECT_EQ(invoker_.calls.size(), 4u);
  // The failed task is kept, and the onFailure destination got the event.
  AsyncTask dest = task("r-onFailure", "fail-dest");
  EXPECT_EQ(dest.status, AsyncTaskStatus::kEnqueued);
  auto ev = parseJson(dest.payload);
  ASSERT_TRUE(ev.isOk());
  const auto& ctx = ev->as_object().at("requestContext").as_object();
  EXPECT_EQ(ctx.at("condition").as_string(), "RetriesExhausted");
  EXPECT_EQ(ctx.at("approximateInvokeCount").as_int64(), 4);
  EXPECT_EQ(ev->as_object().at("requestPayload").as_object().at("n").as_int64(), 1);
  // The destination task runs like any other.
  invoker_.script = {ScriptedInvoker::success()};
  EXPECT_EQ(dispatcher_->runDue(), 1);
  EXPECT_EQ(invoker_.calls.back().first, "fail-dest");
  EXPECT_EQ(task("r-onFailure", "fail-dest").status, AsyncTaskStatus::kSucceeded);
}

TEST_F(AsyncDispatcherTest, SuccessAfterRetriesGoesToOnSuccess) {
  config(R"({"maxAsyncRetryAttempts":2,
             "destinationConfig":{"onSuccess":{"destination":"ok-dest"}}})");
  invoker_.script = {ScriptedInvoker::failure(), ScriptedInvoker::success()};
  enqueue("s");
  ASSERT_EQ(dispatcher_->runDue(), 1);
  clock_.advance(seconds(1));
  ASSERT_EQ(dispatcher_->runDue(), 1);
  AsyncTask t = task("s");
  EXPECT_EQ(t.status, AsyncTaskStatus::kSucceeded);
  EXPECT_EQ(t.attempts, 2);
  AsyncTask dest = task("s-onSuccess", "ok-dest");
  auto ev = parseJson(dest.payload);
  ASSERT_TRUE(ev.isOk());
  EXPECT_EQ(ev->as_object().at("requestContext").as_object().at("condition").as_string(),
            "Success");
  EXPECT_EQ(ev->as_object().at("responsePayload").as_object().at("echo").as_object().at("n"), 1);
}

TEST_F(AsyncDispatcherTest, ZeroRetriesMeansOneAttempt) {
  config(R"({"maxAsyncRetryAttempts":0})");
  invoker_.script = {ScriptedInvoker::failure()};
  enqueue("z");
  ASSERT_EQ(dispatcher_->runDue(), 1);
  EXPECT_EQ(task("z").status, AsyncTaskStatus::kFailed);
  EXPECT_EQ(task("z").attempts, 1);
}

TEST_F(AsyncDispatcherTest, EventAgeBoundsRetries) {
  config(R"({"maxAsyncRetryAttempts":8,"maxAsyncEventAgeInSeconds":10})");
  invoker_.script = {ScriptedInvoker::failure()};
  enqueue("old");
  clock_.advance(seconds(11));
  ASSERT_EQ(dispatcher_->runDue(), 1);
  AsyncTask t = task("old");
  EXPECT_EQ(t.status, AsyncTaskStatus::kFailed);
  EXPECT_EQ(t.attempts, 0);  // never ran
  EXPECT_NE(t.lastError.find("EventAgeExceeded"), std::string::npos);
  EXPECT_TRUE(invoker_.calls.empty());
}

TEST_F(AsyncDispatcherTest, RefusalsAreNotAttemptsAndWaitForRetryAfter) {
  invoker_.script = {ScriptedInvoker::refused(), ScriptedInvoker::success()};
  enqueue("busy");
  ASSERT_EQ(dispatcher_->runDue(), 1);
  AsyncTask t = task("busy");
  EXPECT_EQ(t.status, AsyncTaskStatus::kEnqueued);
  EXPECT_EQ(t.attempts, 0);
  EXPECT_EQ(t.nextAttemptMs - nowMs(), 7000);
  clock_.advance(seconds(7));
  ASSERT_EQ(dispatcher_->runDue(), 1);
  EXPECT_EQ(task("busy").status, AsyncTaskStatus::kSucceeded);
  EXPECT_EQ(task("busy").attempts, 1);
}

TEST_F(AsyncDispatcherTest, DeletedFunctionFailsTheTask) {
  enqueue("gone");
  ASSERT_TRUE(store_->deleteFunction("t", "f").isOk());
  ASSERT_EQ(dispatcher_->runDue(), 1);
  EXPECT_EQ(task("gone").status, AsyncTaskStatus::kFailed);
  EXPECT_NE(task("gone").lastError.find("FunctionNotFound"), std::string::npos);
  EXPECT_TRUE(invoker_.calls.empty());
}

TEST_F(AsyncDispatcherTest, RecoverRequeuesTasksOfADeadProcess) {
  enqueue("x");
  // A previous process claimed it and died.
  auto claimed = store_->claimDueAsyncTasks(nowMs(), 10);
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_EQ(dispatcher_->runDue(), 0);
  ASSERT_TRUE(dispatcher_->recover().isOk());
  EXPECT_EQ(dispatcher_->runDue(), 1);
  EXPECT_EQ(task("x").status, AsyncTaskStatus::kSucceeded);
  EXPECT_EQ(task("x").attempts, 1);
}

TEST_F(AsyncDispatcherTest, BackgroundThreadRunsWhatIsDue) {
  // With the thread, time still comes from the ManualClock: due tasks run, future ones wait.
  enqueue("now");
  AsyncTask later;
  later.tenant = "t";
  later.function = "f";
  later.id = "later";
  later.createdMs = nowMs();
  later.nextAttemptMs = nowMs() + 3'600'000;
  ASSERT_TRUE(store_->enqueueAsyncTask(later).isOk());
  dispatcher_->start();
  auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (task("now").status != AsyncTaskStatus::kSucceeded &&
         std::chrono::steady_clock::now() < deadline) {
    dispatcher_->notify();
    std::this_thread::yield();
  }
  EXPECT_EQ(task("now").status, AsyncTaskStatus::kSucceeded);
  EXPECT_EQ(task("later").status, AsyncTaskStatus::kEnqueued);
  dispatcher_->stop();
}

}  // namespace
}  // namespace stratus
