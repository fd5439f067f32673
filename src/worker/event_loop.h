// EventLoop: one thread driving epoll -- fd readiness callbacks, timers and tasks posted from
// other threads. The worker's I/O thread.
//
// Ownership: the loop owns its epoll fd, its eventfd and its thread; it never owns the fds
// registered with add() (the caller closes them, after remove()).
// Timers use deadlines from the injected Clock. With a ManualClock, time does not move by itself:
// after advancing it, post() anything to make the loop re-check its timers.
//
// Thread-safety: post(), stop(), inLoopThread() may be called from any thread. Everything else
// (add/modify/remove, timers) only from the loop thread, i.e. from a callback or a posted task.
// Callbacks run on the loop thread, one at a time, and must not block.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace stratus {

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;  // EPOLLIN | EPOLLOUT | EPOLLHUP ...
  using Task = std::function<void()>;
  using TimerId = uint64_t;

  static Result<std::unique_ptr<EventLoop>> create(const Clock& clock);
  ~EventLoop();  // stop()
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Starts the loop thread. Once.
  void start();
  // Asks the loop to exit, runs the tasks still posted, and joins the thread (unless called on
  // the loop thread itself: then the thread exits after the current callback and ~EventLoop
  // joins it). Idempotent.
  void stop();
  // Runs fn on the loop thread, in posting order. Tasks posted after the loop has stopped are
  // run by the thread calling post() (so a posted callback is never silently dropped).
  void post(Task fn);
  bool inLoopThread() const { return std::this_thread::get_id() == threadId_.load(); }

  // Level-triggered registration; cb gets the ready events. An fd can be registered once.
  Status add(int fd, uint32_t events, FdCallback cb);
  Status modify(int fd, uint32_t events);
  // Safe from inside that fd's own callback; no callback for fd runs after remove() returns.
  void remove(int fd);

  TimerId addTimer(TimePoint deadline, Task fn);
  TimerId addTimerAfter(Duration delay, Task fn) {
    return addTimer(clock_.now() + delay, std::move(fn));
  }
  // No-op for a timer that already fired or was cancelled.
  void cancelTimer(TimerId id);

  const Clock& clock() const { return clock_; }
  size_t pendingTimers() const { return timers_.size(); }     // loop thread
  size_t timerHeapSize() const { return timerHeap_.size(); }  // loop thread; for tests

 private:
  EventLoop(const Clock& clock, UniqueFd epoll, UniqueFd wake);
  void run();
  void wake();
  void runPosted();
  void runTimers();
  int waitTimeoutMs();

  struct Entry {
    int fd;
    FdCallback cb;
  };
  struct TimerKey {
    TimePoint deadline;
    TimerId id;
    bool operator>(const TimerKey& o) const {
      return deadline != o.deadline ? deadline > o.deadline : id > o.id;
    }
  };

  const Clock& clock_;
  UniqueFd epoll_;
  UniqueFd wake_;  // eventfd
  std::thread thread_;
  std::atomic<std::thread::id> threadId_{};
  std::atomic<bool> stopRequested_{false};
  bool started_ = false;

  std::mutex mu_;
  std::vector<Task> posted_;  // GUARDED_BY(mu_)
  bool exited_ = false;       // GUARDED_BY(mu_): the loop thread no longer runs posted tasks

  // Loop thread only.
  uint64_t nextToken_ = 1;  // epoll data: a token, never the fd, so a reused fd number cannot
                            // receive a stale event meant for the fd it replaced
  std::unordered_map<uint64_t, std::shared_ptr<Entry>> byToken_;
  std::unordered_map<int, uint64_t> tokenOfFd_;
  TimerId nextTimer_ = 1;
  std::priority_queue<TimerKey, std::vector<TimerKey>, std::greater<>> timerHeap_;
  struct Timer {
    TimePoint deadline;
    Task fn;
  };
  // Cancelled timers stay in the heap until they surface (lazy deletion); compactTimers() rebuilds
  // it when they dominate, so a busy loop with long timeouts does not grow without bound.
  std::unordered_map<TimerId, Timer> timers_;
  void compactTimers();
};

}  // namespace stratus
