#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <climits>
#include <map>
#include <optional>
#include <set>
#include <vector>

namespace stratus {
namespace {

// Records launches and stops; the test decides when (and whether) a launch completes.
class FakeLauncher : public InstanceLauncher {
 public:
  struct Launch {
    std::string id;
    FunctionRef fn;
    std::function<void(Result<int64_t>)> ready;
  };
  void launch(const std::string& id, const FunctionRef& fn,
              std::function<void(Result<int64_t>)> ready) override {
    launches.push_back({id, fn, std::move(ready)});
  }
  void stop(const std::string& id) override { stopped.push_back(id); }

  std::vector<Launch> launches;
  std::vector<std::string> stopped;
};

struct Outcome {
  std::optional<Result<Lease>> result;
};

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() : scheduler_(launcher_, clock_, options()) {}
  static SchedulerOptions options() {
    SchedulerOptions o;
    o.keepAlive = std::chrono::seconds(60);
    o.maxQueueWait = std::chrono::seconds(5);
    return o;
  }
  static FunctionRef fn(int concurrency = 1, int maxInstances = 100, int64_t revision = 1) {
    FunctionRef ref;
    ref.key = "t/f";
    ref.revision = revision;
    ref.concurrency = concurrency;
    ref.maxInstances = maxInstances;
    return ref;
  }
  std::shared_ptr<Outcome> acquire(const FunctionRef& ref) {
    auto out = std::make_shared<Outcome>();
    scheduler_.acquire(ref, [out](Result<Lease> r) { out->result = std::move(r); });
    return out;
  }

  FakeLauncher launcher_;
  ManualClock clock_;
  Scheduler scheduler_;
};

TEST_F(SchedulerTest, FirstCallStartsAnInstanceAndIsCold) {
  auto a = acquire(fn());
  ASSERT_EQ(launcher_.launches.size(), 1u);
  EXPECT_FALSE(a->result.has_value());
  launcher_.launches[0].ready(int64_t{1234});
  ASSERT_TRUE(a->result.has_value());
  ASSERT_TRUE(a->result->isOk());
  EXPECT_TRUE((*a->result)->coldStart);
  EXPECT_EQ((*a->result)->initDurationUs, 1234);
  EXPECT_EQ((*a->result)->instanceId, launcher_.launches[0].id);

  // Released: the next call reuses it, warm.
  scheduler_.release(**a->result, true);
  auto b = acquire(fn());
  ASSERT_TRUE(b->result.has_value() && b->result->isOk());
  EXPECT_FALSE((*b->result)->coldStart);
  EXPECT_EQ(launcher_.launches.size(), 1u);
}

TEST_F(SchedulerTest, ConcurrencyOneScalesToOneInstancePerParallelCall) {
  std::vector<std::shared_ptr<Outcome>> calls;
  for (int i = 0; i < 5; ++i) calls.push_back(acquire(fn(1)));
  EXPECT_EQ(launcher_.launches.size(), 5u);
  for (auto& l : launcher_.launches) l.ready(int64_t{10});
  std::set<std::string> ids;
  for (auto& c : calls) {
    ASSERT_TRUE(c->result.has_value() && c->result->isOk());
    ids.insert((*c->result)->instanceId);
  }
  EXPECT_EQ(ids.size(), 5u);
}

TEST_F(SchedulerTest, ConcurrencyNPacksParallelCallsIntoOneInstance) {
  std::vector<std::shared_ptr<Outcome>> calls;
  for (int i = 0; i < 5; ++i) calls.push_back(acquire(fn(5)));
  ASSERT_EQ(launcher_.launches.size(), 1u);
  launcher_.launches[0].ready(int64_t{10});
  for (auto& c : calls) {
    ASSERT_TRUE(c->result.has_value() && c->result->isOk());
    EXPECT_EQ((*c->result)->instanceId, launcher_.launches[0].id);
  }
  // A sixth call finds the instance full and scales out.
  auto sixth = acquire(fn(5));
  EXPECT_EQ(launcher_.launches.size(), 2u);
  EXPECT_FALSE(sixth->result.has_value());
}

TEST_F(SchedulerTest, MaxInstancesCapsScaleOutAndQueuedCallsTakeFreedSlots) {
  std::vector<std::shared_ptr<Outcome>> calls;
  for (int i = 0; i < 4; ++i) calls.push_back(acquire(fn(1, 2)));
  ASSERT_EQ(launcher_.launches.size(), 2u);
  for (auto& l : launcher_.launches) l.ready(int64_t{1});
  EXPECT_TRUE(calls[0]->result.has_value());
  EXPECT_TRUE(calls[1]->result.has_value());
  EXPECT_FALSE(calls[2]->result.has_value());
  scheduler_.release(**calls[0]->result, true);
  ASSERT_TRUE(calls[2]->result.has_value() && calls[2]->result->isOk());
  EXPECT_FALSE((*calls[2]->result)->coldStart);
  EXPECT_EQ(launcher_.launches.size(), 2u);
}

TEST_F(SchedulerTest, QueuedCallsExpireAfterMaxQueueWait) {
  auto a = acquire(fn(1, 1));
  launcher_.launches[0].ready(int64_t{1});
  auto b = acquire(fn(1, 1));
  clock_.advance(std::chrono::seconds(4));
  scheduler_.tick();
  EXPECT_FALSE(b->result.has_value());
  clock_.advance(std::chrono::seconds(2));
  scheduler_.tick();
  ASSERT_TRUE(b->result.has_value());
  EXPECT_EQ(b->result->status().code(), Code::kResourceExhausted);
}

TEST_F(SchedulerTest, IdleInstancesAreReclaimedAfterKeepAlive) {
  auto a = acquire(fn());
  launcher_.launches[0].ready(int64_t{1});
  scheduler_.release(**a->result, true);
  clock_.advance(std::chrono::seconds(59));
  scheduler_.tick();
  EXPECT_TRUE(launcher_.stopped.empty());
  clock_.advance(std::chrono::seconds(2));
  scheduler_.tick();
  ASSERT_EQ(launcher_.stopped.size(), 1u);
  EXPECT_EQ(launcher_.stopped[0], launcher_.launches[0].id);
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 0u);
}

TEST_F(SchedulerTest, BusyInstancesAreNotReclaimed) {
  auto a = acquire(fn());
  launcher_.launches[0].ready(int64_t{1});
  clock_.advance(std::chrono::minutes(5));
  scheduler_.tick();
  EXPECT_TRUE(launcher_.stopped.empty());
}

TEST_F(SchedulerTest, FailedStartFailsWaitingCallsWithItsCause) {
  auto a = acquire(fn());
  auto b = acquire(fn());
  ASSERT_EQ(launcher_.launches.size(), 2u);
  launcher_.launches[0].ready(Status(Code::kFailedPrecondition, "{\"errorType\":\"x\"}"));
  ASSERT_TRUE(a->result.has_value());
  EXPECT_EQ(a->result->status().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(b->result.has_value());
  EXPECT_EQ(b->result->status().code(), Code::kFailedPrecondition);
}

TEST_F(SchedulerTest, NewRevisionDrainsOldInstances) {
  auto a = acquire(fn(1, 100, 1));
  auto b = acquire(fn(1, 100, 1));
  for (auto& l : launcher_.launches) l.ready(int64_t{1});
  scheduler_.release(**a->result, true);  // idle
  // b stays busy. Revision 2 arrives.
  scheduler_.drain("t/f", 2);
  ASSERT_EQ(launcher_.stopped.size(), 1u);
  EXPECT_EQ(launcher_.stopped[0], (*a->result)->instanceId);
  auto c = acquire(fn(1, 100, 2));
  ASSERT_EQ(launcher_.launches.size(), 3u);
  EXPECT_EQ(launcher_.launches[2].fn.revision, 2);
  // The busy old instance stops as soon as its call returns.
  scheduler_.release(**b->result, true);
  ASSERT_EQ(launcher_.stopped.size(), 2u);
  EXPECT_EQ(launcher_.stopped[1], (*b->result)->instanceId);
}

TEST_F(SchedulerTest, DeleteFailsQueuedCallsWithNotFound) {
  auto a = acquire(fn());
  scheduler_.drain("t/f", INT64_MAX);
  ASSERT_TRUE(a->result.has_value());
  EXPECT_EQ(a->result->status().code(), Code::kNotFound);
  // The launch that was in flight is stopped when it completes.
  launcher_.launches[0].ready(int64_t{1});
  ASSERT_EQ(launcher_.stopped.size(), 1u);
}

TEST_F(SchedulerTest, LostAndUnhealthyInstancesAreForgotten) {
  auto a = acquire(fn());
  launcher_.launches[0].ready(int64_t{1});
  scheduler_.instanceLost((*a->result)->instanceId);
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 0u);
  scheduler_.release(**a->result, true);  // late release of a lost instance is harmless
  auto b = acquire(fn());
  ASSERT_EQ(launcher_.launches.size(), 2u);
  launcher_.launches[1].ready(int64_t{1});
  scheduler_.release(**b->result, /*healthy=*/false);
  EXPECT_EQ(scheduler_.instanceCount("t/f"), 0u);
  ASSERT_EQ(launcher_.stopped.size(), 1u);
}

TEST_F(SchedulerTest, LostInstanceWithQueuedCallsStartsAReplacement) {
  auto a = acquire(fn(1, 1));
  launcher_.launches[0].ready(int64_t{1});
  auto b = acquire(fn(1, 1));  // queued: cap reached
  EXPECT_EQ(launcher_.launches.size(), 1u);
  scheduler_.instanceLost((*a->result)->instanceId);
  ASSERT_EQ(launcher_.launches.size(), 2u);
  launcher_.launches[1].ready(int64_t{1});
  ASSERT_TRUE(b->result.has_value() && b->result->isOk());
}

TEST_F(SchedulerTest, ShutdownAbortsQueuedCallsAndStopsInstances) {
  auto a = acquire(fn(1, 1));
  launcher_.launches[0].ready(int64_t{1});
  auto b = acquire(fn(1, 1));
  scheduler_.shutdown();
  ASSERT_TRUE(b->result.has_value());
  EXPECT_EQ(b->result->status().code(), Code::kAborted);
  EXPECT_EQ(launcher_.stopped.size(), 1u);
  auto c = acquire(fn());
  ASSERT_TRUE(c->result.has_value());
  EXPECT_EQ(c->result->status().code(), Code::kAborted);
}

}  // namespace
}  // namespace stratus
