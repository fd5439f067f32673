// GuardedInvoker against a scripted inner invoker: the component under test is the decorator
// (admission, tenant caps, breaker); the inner invoker stands for the scheduler/worker seam and
// counts the instances a call would have started.
#include "api/guarded_invoker.h"

#include <gtest/gtest.h>

#include <deque>
#include <mutex>

namespace stratus {
namespace {

using std::chrono::seconds;

class ScriptedInvoker final : public Invoker {
 public:
  void invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) override {
    ++calls;
    if (deferred) {
      pending.push_back(std::move(done));
      return;
    }
    done(next());
  }
  void functionChanged(const FunctionSpec&) override { ++changed; }
  void functionDeleted(const FunctionSpec&) override {}
  void shutdown() override {}

  InvokeResult next() {
    if (script.empty()) return ok();
    InvokeResult r = script.front();
    if (script.size() > 1 || !repeatLast) script.pop_front();
    return r;
  }
  void finishOne(InvokeResult r) {
    auto cb = std::move(pending.front());
    pending.pop_front();
    cb(std::move(r));
  }

  static InvokeResult ok() { return InvokeResult{}; }
  static InvokeResult crash() {
    InvokeResult r;
    r.functionError = FunctionErrorKind::kUnhandled;
    r.instanceLost = true;
    r.body = R"({"errorType":"RuntimeExited"})";
    return r;
  }
  static InvokeResult initFailure() {
    InvokeResult r;
    r.functionError = FunctionErrorKind::kUnhandled;
    r.coldStart = true;
    r.body = R"({"errorType":"Runtime.ImportModuleError"})";
    return r;
  }
  static InvokeResult handledError() {
    InvokeResult r;
    r.functionError = FunctionErrorKind::kUnhandled;
    r.instanceId = "i-1";
    r.body = R"({"errorType":"ValueError"})";
    return r;
  }

  int calls = 0;
  int changed = 0;
  bool deferred = false;
  bool repeatLast = true;
  std::deque<InvokeResult> script;
  std::deque<InvokeCallback> pending;
};

FunctionSpec fn(std::string tenant, std::string name, int maxInstances = 10, int conc = 1,
                int memoryMb = 128) {
  FunctionSpec f;
  f.tenant = std::move(tenant);
  f.name = std::move(name);
  f.maxInstances = maxInstances;
  f.instanceConcurrency = conc;
  f.memoryMb = memoryMb;
  return f;
}

InvokeResult call(GuardedInvoker& g, const FunctionSpec& f) {
  std::optional<InvokeResult> out;
  g.invoke(f, InvokeRequest{}, [&](InvokeResult r) { out = std::move(r); });
  EXPECT_TRUE(out.has_value());
  return out ? *out : InvokeResult{};
}

std::string retryAfter(const InvokeResult& r) {
  auto it = r.headers.find("Retry-After");
  return it == r.headers.end() ? "" : it->second;
}

TEST(CostsInstanceTest, ClassifiesWhatStartsContainers) {
  EXPECT_FALSE(costsInstance(ScriptedInvoker::ok()));
  EXPECT_FALSE(costsInstance(ScriptedInvoker::handledError()));
  EXPECT_TRUE(costsInstance(ScriptedInvoker::crash()));
  EXPECT_TRUE(costsInstance(ScriptedInvoker::initFailure()));
  InvokeResult noSandbox;
  noSandbox.status = unavailable("could not create sandbox");
  EXPECT_TRUE(costsInstance(noSandbox));
  InvokeResult busy;
  busy.status = Status(Code::kResourceExhausted, "queue wait");
  EXPECT_FALSE(costsInstance(busy));
}

TEST(GuardedInvokerTest, CrashLoopOpensTheBreakerAndRefusesWithoutCallingDownstream) {
  ManualClock clock;
  ScriptedInvoker inner;
  inner.script = {ScriptedInvoker::crash()};
  GuardedInvoker g(inner, clock, AdmissionOptions{}, nullptr);
  auto f = fn("t", "crashy");
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(call(g, f).status.isOk()) << i;
  EXPECT_EQ(g.breakerState("t", "crashy"), BreakerState::kOpen);
  auto r = call(g, f);
  EXPECT_EQ(r.status.code(), Code::kUnavailable);
  EXPECT_EQ(r.body, "CircuitBreakerOpen");
  EXPECT_EQ(retryAfter(r), "5");
  EXPECT_EQ(inner.calls, 5);
  clock.advance(seconds(3));
  EXPECT_EQ(retryAfter(call(g, f)), "2");
  EXPECT_EQ(inner.calls, 5);
  // Another function of the same tenant is not affected.
  inner.script = {ScriptedInvoker::ok()};
  EXPECT_TRUE(call(g, fn("t", "fine")).status.isOk());
  EXPECT_EQ(g.stats().breakerOpens, 1);
  EXPECT_EQ(g.stats().refusedBreakerOpen, 2);
}

TEST(GuardedInvokerTest, OrdinaryFunctionErrorsDoNotOpenIt) {
  ManualClock clock;
  ScriptedInvoker inner;
  inner.script = {ScriptedInvoker::handledError()};
  GuardedInvoker g(inner, clock, AdmissionOptions{}, nullptr);
  for (int i = 0; i < 50; ++i) call(g, fn("t", "f"));
  EXPECT_EQ(g.breakerState("t", "f"), BreakerState::kClosed);
  EXPECT_EQ(inner.calls, 50);
}

TEST(GuardedInvokerTest, ASuccessResetsTheConsecutiveCount) {
  ManualClock clock;
  ScriptedInvoker inner;
  inner.repeatLast = false;
  GuardedInvoker g(inner, clock, AdmissionOptions{}, nullptr);
  auto f = fn("t", "flaky");
  for (int round = 0; round < 5; ++round) {
    for (int i = 0; i < 4; ++i) inner.script.push_back(ScriptedInvoker::initFailure());
    inner.script.push_back(ScriptedInvoker::ok());
  }
  for (int i = 0; i < 25; ++i) call(g, f);
  EXPECT_EQ(g.breakerState("t", "flaky"), BreakerState::kClosed);
}

TEST(GuardedInvokerTest, HalfOpenLetsOneProbeThroughAndBacksOffOnFailure) {
  ManualClock clock;
  ScriptedInvoker inner;
  inner.script = {ScriptedInvoker::crash()};
  GuardedInvoker g(inner, clock, AdmissionOptions{}, nullptr);
  auto f = fn("t", "f");
  for (int i = 0; i < 5; ++i) call(g, f);
  ASSERT_EQ(g.breakerState("t", "f"), BreakerState::kOpen);

  // After 5 s: one probe. While it runs, others are refused.
  clock.advance(seconds(5));
  inner.deferred = true;
  std::optional<InvokeResult> probe;
  g.invoke(f, InvokeRequest{}, [&](InvokeResult r) { probe = r; });
  EXPECT_EQ(inner.calls, 6);
  EXPECT_EQ(g.breakerState("t", "f"), BreakerState::kHalfOpen);
  auto other = call(g, f);
  EXPECT_EQ(other.body, "CircuitBreakerOpen");
  EXPECT_EQ(inner.calls, 6);
  // The probe crashes: open again, twice as long.
  inner.finishOne(ScriptedInvoker::crash());
  ASSERT_TRUE(probe.has_value());
  EXPECT_EQ(g.breakerState("t", "f"), BreakerState::kOpen);
  inner.deferred = false;
  EXPECT_EQ(retryAfter(call(g, f)), "10");
  clock.advance(seconds(10));
  // This probe succeeds: closed, calls flow again.
  inner.script = {ScriptedInvoker::ok()};
  EXPECT_TRUE(call(g, f).status.isOk());
  EXPECT_EQ(g.breakerState("t", "f"), BreakerState::kClosed);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(call(g, f).status.isOk());
}

TEST(GuardedInvokerTest, UpdatingTheFunctionClosesTheBreaker) {
  ManualClock clock;
  ScriptedInvoker inner;
  inner.script = {ScriptedInvoker::crash()};
  GuardedInvoker g(inner, clock, AdmissionOptions{}, nullptr);
  auto f = fn("t", "f");
  for (int i = 0; i < 5; ++i) call(g, f);
  ASSERT_EQ(g.breakerState("t", "f"), BreakerState::kOpen);
  g.functionChanged(f);
  EXPECT_EQ(inner.changed, 1);
  EXPECT_EQ(g.breakerState("t", "f"), BreakerState::kClosed);
  inner.script = {ScriptedInvoker::ok()};
  EXPECT_TRUE(call(g, f).status.isOk());
}

// The avalanche bound: a function that crashes on every call, hammered for ten minutes of
// virtual time at 100 calls/s, starts a handful of instances, not 60 000.
TEST(GuardedInvokerTest, CrashLoopUnderSustainedLoadStartsBoundedInstances) {
  ManualClock clock;
  ScriptedInvoker inner;
  inner.script = {ScriptedInvoker::crash()};
  AdmissionOptions o;
  GuardedInvoker g(inner, clock, o, nullptr);
  auto f = fn("t", "f");
  int refused = 0;
  for (int i = 0; i < 60000; ++i) {
    if (!call(g, f).status.isOk()) ++refused;
    clock.advance(std::chrono::milliseconds(10));
  }
  // 5 to open, then one probe per open period: 5, 10, 20, 40, 60, 60, ... s over 600 s.
  EXPECT_LE(inner.calls, 5 + 14);
  EXPECT_EQ(refused, 60000 - inner.calls);
}

TEST(GuardedInvokerTest, QueueBoundRefusesAtOnceWith503) {
  ManualClock clock;
  ScriptedInvoker inner;
  inner.deferred = true;
  AdmissionOptions o;
  o.queueDepthPerFunction = 2;
  GuardedInvoker g(inner, clock, o, nullptr);
  auto f = fn("t", "f", /*maxInstances=*/1, /*conc=*/1);
  int answered = 0;
  for (int i = 0; i < 3; ++i) g.invoke(f, InvokeRequest{}, [&](InvokeResult) { ++answered; });
  EXPECT_EQ(inner.calls, 3);  // one running, two waiting
  std::optional<InvokeResult> fourth;
  g.invoke(f, InvokeRequest{}, [&](InvokeResult r) { fourth = r; });
  ASSERT_TRUE(fourth.has_value());
  EXPECT_EQ(fourth->status.code(), Code::kUnavailable);
  EXPECT_EQ(fourth->body, "FunctionQueueFull");
  EXPECT_EQ(retryAfter(*fourth), "1");
  EXPECT_EQ(inner.calls, 3);
  inner.finishOne(ScriptedInvoker::ok());
  EXPECT_EQ(answered, 1);
  g.invoke(f, InvokeRequest{}, [&](InvokeResult) { ++answered; });
  EXPECT_EQ(inner.calls, 4);
  EXPECT_EQ(g.stats().inFlight, 3);
  EXPECT_EQ(g.stats().refusedQueueFull, 1);
}

TEST(GuardedInvokerTest, TenantInstanceAndMemoryCaps) {
  ManualClock clock;
  ScriptedInvoker inner;
  inner.deferred = true;
  TenantQuota q;
  q.maxConcurrentInstances = 3;
  q.maxTotalMemoryMb = 512;
  GuardedInvoker g(inner, clock, AdmissionOptions{},
                   [&](const std::string& t) { return t == "capped" ? q : TenantQuota{}; });
  auto small = fn("capped", "small", 10, /*conc=*/4, 128);
  auto big = fn("capped", "big", 10, 1, 256);
  std::vector<InvokeResult> refused;
  auto invoke = [&](const FunctionSpec& f) {
    g.invoke(f, InvokeRequest{}, [&](InvokeResult r) {
      if (!r.status.isOk()) refused.push_back(r);
    });
  };
  // Four calls of a concurrency-4 function need one instance (128 MB).
  for (int i = 0; i < 4; ++i) invoke(small);
  EXPECT_TRUE(refused.empty());
  // One big call: 2 instances, 384 MB. A second big one would be 640 MB > 512.
  invoke(big);
  EXPECT_TRUE(refused.empty());
  invoke(big);
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].status.code(), Code::kResourceExhausted);
  EXPECT_EQ(refused[0].body, "TenantMemoryLimitExceeded");
  EXPECT_EQ(retryAfter(refused[0]), "1");
  // A fifth small call needs a second small instance: 3 instances, 512 MB: fits exactly.
  invoke(small);
  EXPECT_EQ(refused.size(), 1u);
  // Calls six to eight fit on that instance; a ninth would need a fourth instance.
  for (int i = 0; i < 3; ++i) invoke(small);
  EXPECT_EQ(refused.size(), 1u);
  invoke(small);
  ASSERT_EQ(refused.size(), 2u);
  EXPECT_EQ(refused[1].body, "TenantInstanceLimitExceeded");
  // Another tenant is not capped.
  for (int i = 0; i < 20; ++i) invoke(fn("free", "f", 100));
  EXPECT_EQ(refused.size(), 2u);
  // Finishing calls gives the capacity back.
  while (!inner.pending.empty()) inner.finishOne(ScriptedInvoker::ok());
  EXPECT_EQ(g.stats().inFlight, 0);
  invoke(big);
  invoke(big);
  EXPECT_EQ(refused.size(), 2u);
}

}  // namespace
}  // namespace stratus
