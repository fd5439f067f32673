#include "worker/event_loop.h"

#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"

namespace stratus {

Result<std::unique_ptr<EventLoop>> EventLoop::create(const Clock& clock) {
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return Status::fromErrno(errno, "epoll_create1");
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return Status::fromErrno(errno, "eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // token 0 is the wake-up eventfd
  if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0) {
    return Status::fromErrno(errno, "epoll_ctl add eventfd");
  }
  return std::unique_ptr<EventLoop>(new EventLoop(clock, std::move(ep), std::move(wake)));
}

EventLoop::EventLoop(const Clock& clock, UniqueFd epoll, UniqueFd wake)
    : clock_(clock), epoll_(std::move(epoll)), wake_(std::move(wake)) {}

EventLoop::~EventLoop() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void EventLoop::start() {
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] {
    threadId_ = std::this_thread::get_id();
    run();
  });
}

void EventLoop::stop() {
  stopRequested_ = true;
  wake();
  if (inLoopThread()) return;  // run() notices after the current callback; ~EventLoop joins
  if (thread_.joinable()) thread_.join();
  // Never started (or already exited): make sure nothing posted is left unrun.
  std::vector<Task> tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    exited_ = true;
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EventLoop::post(Task fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!exited_) {
      posted_.push_back(std::move(fn));
      fn = nullptr;
    }
  }
  if (fn) {
    fn();
    return;
  }
  wake();
}

void EventLoop::wake() {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop will wake anyway.
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

Status EventLoop::add(int fd, uint32_t events, FdCallback cb) {
  if (tokenOfFd_.count(fd) != 0)
    return internalError("event loop: fd " + std::to_string(fd) + " already registered");
  const uint64_t token = nextToken_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return Status::fromErrno(errno, "epoll_ctl add fd " + std::to_string(fd));
  }
  byToken_[token] = std::make_shared<Entry>(Entry{fd, std::move(cb)});
  tokenOfFd_[fd] = token;
  return Status::ok();
}

Status EventLoop::modify(int fd, uint32_t events) {
  auto it = tokenOfFd_.find(fd);
  if (it == tokenOfFd_.end())
    return internalError("event loop: fd " + std::to_string(fd) + " not registered");
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = it->second;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    return Status::fromErrno(errno, "epoll_ctl mod fd " + std::to_string(fd));
  }
  return Status::ok();
}

void EventLoop::remove(int fd) {
  auto it = tokenOfFd_.find(fd);
  if (it == tokenOfFd_.end()) return;
  // May fail with EBADF/ENOENT if the caller already closed fd; the kernel dropped it then.
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  byToken_.erase(it->second);
  tokenOfFd_.erase(it);
}

EventLoop::TimerId EventLoop::addTimer(TimePoint deadline, Task fn) {
  const TimerId id = nextTimer_++;
  timers_.emplace(id, Timer{deadline, std::move(fn)});
  timerHeap_.push(TimerKey{deadline, id});
  return id;
}

void EventLoop::cancelTimer(TimerId id) {
  if (timers_.erase(id) != 0 && timerHeap_.size() > 1024 &&
      timerHeap_.size() > 4 * timers_.size()) {
    compactTimers();
  }
}

void EventLoop::compactTimers() {
  std::vector<TimerKey> live;
  live.reserve(timers_.size());
  for (const auto& [id, t] : timers_) live.push_back(TimerKey{t.deadline, id});
  timerHeap_ = decltype(timerHeap_)(std::greater<>(), std::move(live));
}

int EventLoop::waitTimeoutMs() {
  while (!timerHeap_.empty() && timers_.count(timerHeap_.top().id) == 0) timerHeap_.pop();
  if (timerHeap_.empty()) return -1;
  const Duration left = timerHeap_.top().deadline - clock_.now();
  if (left <= Duration::zero()) return 0;
  // Round up: waking a little late is fine, spinning on a sub-millisecond remainder is not.
  const int64_t ms = (left.count() + 999'999) / 1'000'000;
  return ms > 60'000 ? 60'000 : static_cast<int>(ms);
}

void EventLoop::runTimers() {
  const TimePoint now = clock_.now();
  while (!timerHeap_.empty() && timerHeap_.top().deadline <= now) {
    const TimerId id = timerHeap_.top().id;
    timerHeap_.pop();
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled
    Task fn = std::move(it->second.fn);
    timers_.erase(it);
    fn();
  }
}

void EventLoop::runPosted() {
  std::vector<Task> tasks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EventLoop::run() {
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  while (!stopRequested_) {
    const int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, waitTimeoutMs());
    if (n < 0 && errno != EINTR) {
      SLOG_ERROR("event loop: epoll_wait: {}", std::strerror(errno));
      break;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t token = events[i].data.u64;
      if (token == 0) {
        uint64_t v;
        [[maybe_unused]] ssize_t r = ::read(wake_.get(), &v, sizeof v);
        continue;
      }
      auto it = byToken_.find(token);
      if (it == byToken_.end()) continue;         // removed by an earlier callback in this batch
      std::shared_ptr<Entry> entry = it->second;  // keeps cb alive if it removes itself
      entry->cb(events[i].events);
    }
    runPosted();
    runTimers();
  }
  // Run what is still posted so no callback is dropped; later posts run on the poster's thread.
  for (;;) {
    std::vector<Task> tasks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (posted_.empty()) {
        exited_ = true;
        break;
      }
      tasks.swap(posted_);
    }
    for (auto& t : tasks) t();
  }
}

}  // namespace stratus
