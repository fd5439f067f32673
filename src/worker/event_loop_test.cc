#include "worker/event_loop.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <future>
#include <thread>

namespace stratus {
namespace {

std::unique_ptr<EventLoop> makeLoop(const Clock& clock) {
  auto r = EventLoop::create(clock);
  EXPECT_TRUE(r.isOk()) << r.status().toString();
  auto loop = std::move(r).value();
  loop->start();
  return loop;
}

// Runs fn on the loop and waits for it.
template <typename F>
auto onLoop(EventLoop& loop, F fn) {
  std::promise<decltype(fn())> p;
  auto f = p.get_future();
  loop.post([&] {
    if constexpr (std::is_void_v<decltype(fn())>) {
      fn();
      p.set_value();
    } else {
      p.set_value(fn());
    }
  });
  return f.get();
}

TEST(EventLoopTest, PostRunsOnLoopThreadInOrder) {
  SystemClock clock;
  auto loop = makeLoop(clock);
  std::vector<int> seen;
  std::promise<void> done;
  std::atomic<bool> allOnLoop{true};
  for (int i = 0; i < 100; ++i) {
    loop->post([&, i] {
      if (!loop->inLoopThread()) allOnLoop = false;
      seen.push_back(i);
      if (i == 99) done.set_value();
    });
  }
  done.get_future().wait();
  EXPECT_TRUE(allOnLoop);
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_FALSE(loop->inLoopThread());
}

TEST(EventLoopTest, PostFromManyThreads) {
  SystemClock clock;
  auto loop = makeLoop(clock);
  std::atomic<int> n{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) loop->post([&] { ++n; });
    });
  }
  for (auto& t : threads) t.join();
  onLoop(*loop, [] {});
  EXPECT_EQ(n.load(), 4000);
}

TEST(EventLoopTest, FdReadableCallbackAndRemove) {
  SystemClock clock;
  auto loop = makeLoop(clock);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::promise<std::string> got;
  std::atomic<int> calls{0};
  ASSERT_TRUE(onLoop(*loop, [&] {
                return loop->add(a.get(), EPOLLIN, [&](uint32_t ev) {
                  ++calls;
                  char buf[64];
                  ssize_t n = ::read(a.get(), buf, sizeof buf);
                  loop->remove(a.get());  // removing itself from inside its callback is allowed
                  got.set_value(std::string(buf, n > 0 ? n : 0));
                });
              }).isOk());
  ASSERT_EQ(::write(b.get(), "ping", 4), 4);
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(f.get(), "ping");
  // After remove(), more data produces no callback.
  ASSERT_EQ(::write(b.get(), "more", 4), 4);
  onLoop(*loop, [] {});
  onLoop(*loop, [] {});
  EXPECT_EQ(calls.load(), 1);
  // Registering the same fd twice is an error.
  EXPECT_TRUE(onLoop(*loop, [&] { return loop->add(b.get(), EPOLLIN, [](uint32_t) {}); }).isOk());
  EXPECT_FALSE(onLoop(*loop, [&] { return loop->add(b.get(), EPOLLIN, [](uint32_t) {}); }).isOk());
  onLoop(*loop, [&] { loop->remove(b.get()); });
}

TEST(EventLoopTest, WritableViaModify) {
  SystemClock clock;
  auto loop = makeLoop(clock);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  std::promise<uint32_t> got;
  bool set = false;
  ASSERT_TRUE(onLoop(*loop, [&] {
                return loop->add(a.get(), EPOLLIN, [&](uint32_t ev) {
                  if (!set && (ev & EPOLLOUT)) {
                    set = true;
                    got.set_value(ev);
                  }
                });
              }).isOk());
  ASSERT_TRUE(onLoop(*loop, [&] { return loop->modify(a.get(), EPOLLIN | EPOLLOUT); }).isOk());
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(f.get() & EPOLLOUT);
  onLoop(*loop, [&] { loop->remove(a.get()); });
}

TEST(EventLoopTest, TimersFireInDeadlineOrderAndCancel) {
  SystemClock clock;
  auto loop = makeLoop(clock);
  std::mutex mu;
  std::vector<int> order;
  std::promise<void> done;
  const auto start = clock.now();
  onLoop(*loop, [&] {
    loop->addTimerAfter(std::chrono::milliseconds(30), [&] {
      std::lock_guard<std::mutex> l(mu);
      order.push_back(30);
      done.set_value();
    });
    loop->addTimerAfter(std::chrono::milliseconds(10), [&] {
      std::lock_guard<std::mutex> l(mu);
      order.push_back(10);
    });
    auto id = loop->addTimerAfter(std::chrono::milliseconds(20), [&] {
      std::lock_guard<std::mutex> l(mu);
      order.push_back(20);
    });
    loop->cancelTimer(id);
  });
  done.get_future().wait();
  EXPECT_GE(clock.now() - start, std::chrono::milliseconds(30));
  std::lock_guard<std::mutex> l(mu);
  EXPECT_EQ(order, (std::vector<int>{10, 30}));
}

TEST(EventLoopTest, CancelledTimersDoNotAccumulate) {
  SystemClock clock;
  auto loop = makeLoop(clock);
  std::atomic<int> fired{0};
  onLoop(*loop, [&] {
    // Like a busy worker: every call arms a long timeout and cancels it when the result arrives.
    for (int i = 0; i < 100000; ++i) {
      auto id = loop->addTimerAfter(std::chrono::hours(1), [&] { ++fired; });
      loop->cancelTimer(id);
    }
    loop->addTimerAfter(std::chrono::milliseconds(1), [&] { ++fired; });
  });
  EXPECT_LE(onLoop(*loop, [&] { return loop->timerHeapSize(); }), 4096u);
  EXPECT_EQ(onLoop(*loop, [&] { return loop->pendingTimers(); }) + fired.load(), 1u);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (fired.load() == 0 && std::chrono::steady_clock::now() < deadline) onLoop(*loop, [] {});
  EXPECT_EQ(fired.load(), 1);
}

TEST(EventLoopTest, ManualClockTimers) {
  ManualClock clock;
  auto loop = makeLoop(clock);
  std::atomic<bool> fired{false};
  onLoop(*loop, [&] { loop->addTimerAfter(std::chrono::seconds(100), [&] { fired = true; }); });
  onLoop(*loop, [] {});
  EXPECT_FALSE(fired.load());
  clock.advance(std::chrono::seconds(99));
  onLoop(*loop, [] {});
  onLoop(*loop, [] {});
  EXPECT_FALSE(fired.load());
  clock.advance(std::chrono::seconds(1));
  loop->post([] {});  // wakes the loop so it re-reads the clock
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!fired && std::chrono::steady_clock::now() < deadline) {
    onLoop(*loop, [] {});
  }
  EXPECT_TRUE(fired.load());
}

TEST(EventLoopTest, StopRunsPendingPostsAndLaterPostsRunInline) {
  SystemClock clock;
  auto loop = makeLoop(clock);
  std::atomic<int> n{0};
  for (int i = 0; i < 10; ++i) loop->post([&] { ++n; });
  loop->stop();
  EXPECT_EQ(n.load(), 10);
  loop->post([&] { ++n; });  // after stop: runs on this thread
  EXPECT_EQ(n.load(), 11);
  loop->stop();  // idempotent
}

TEST(EventLoopTest, StopFromInsideLoop) {
  SystemClock clock;
  auto loop = makeLoop(clock);
  std::promise<void> p;
  loop->post([&] {
    loop->stop();
    p.set_value();
  });
  p.get_future().wait();
  loop.reset();  // joins without deadlock
  SUCCEED();
}

}  // namespace
}  // namespace stratus
