#include "scheduler/scheduler.h"

#include <algorithm>
#include <climits>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

#include "common/ids.h"

namespace stratus {
namespace {

struct Instance {
  std::string id;
  std::string functionKey;
  int64_t revision = 0;
  int concurrency = 1;
  int busy = 0;
  bool draining = false;  // takes no new calls; stops when idle
  TimePoint lastUsed;
};

struct Waiter {
  TimePoint enqueued;
  std::function<void(Result<Lease>)> done;
};

struct FunctionState {
  FunctionRef ref;                    // latest revision seen
  std::vector<std::string> instances;  // ready instances (any revision) of this function
  int starting = 0;                   // launches in flight for ref.revision
  std::deque<Waiter> queue;
  bool deleted = false;
};

}  // namespace

class Scheduler::Impl {
 public:
  Impl(InstanceLauncher& launcher, const Clock& clock, SchedulerOptions options)
      : launcher_(launcher), clock_(clock), options_(options) {}

  // Work that must run after mu_ is released: callbacks and launcher calls may re-enter us.
  using Actions = std::vector<std::function<void()>>;

  static void run(Actions& actions) {
    for (auto& a : actions) a();
  }

  void acquire(const FunctionRef& fn, std::function<void(Result<Lease>)> done) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      if (shutdown_) {
        actions.push_back([done] { done(Status(Code::kAborted, "scheduler is shutting down")); });
      } else {
        FunctionState& fs = functions_[fn.key];
        fs.deleted = false;
        if (fs.ref.key.empty()) {
          fs.ref = fn;
        } else if (fn.revision > fs.ref.revision) {
          // First call of a new revision: older instances drain; launches still in flight for
          // the old revision are dropped when they finish (onLaunched).
          drainLocked(fs, fn.revision, actions);
          fs.ref = fn;
          fs.starting = 0;
        }
        if (Instance* inst = pickLocked(fs)) {
          ++inst->busy;
          Lease lease{fn.key, inst->id, false, 0};
          actions.push_back([done, lease] { done(lease); });
        } else {
          fs.queue.push_back(Waiter{clock_.now(), std::move(done)});
          scaleLocked(fs, actions);
        }
      }
    }
    run(actions);
  }

  void release(const Lease& lease, bool healthy) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      auto it = instances_.find(lease.instanceId);
      if (it == instances_.end()) return;  // already lost or stopped
      Instance& inst = it->second;
      inst.busy = std::max(0, inst.busy - 1);
      inst.lastUsed = clock_.now();
      auto fit = functions_.find(inst.functionKey);
      if (!healthy) {
        removeInstanceLocked(inst.id, actions, /*stop=*/true);
        if (fit != functions_.end()) scaleLocked(fit->second, actions);
      } else if (fit != functions_.end()) {
        FunctionState& fs = fit->second;
        if (inst.draining) {
          if (inst.busy == 0) removeInstanceLocked(inst.id, actions, /*stop=*/true);
        } else {
          serveQueueLocked(fs, inst, /*cold=*/false, 0, actions);
        }
      }
    }
    run(actions);
  }

  void instanceLost(const std::string& instanceId) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      auto it = instances_.find(instanceId);
      if (it == instances_.end()) return;
      std::string key = it->second.functionKey;
      removeInstanceLocked(instanceId, actions, /*stop=*/false);
      auto fit = functions_.find(key);
      if (fit != functions_.end()) scaleLocked(fit->second, actions);
    }
    run(actions);
  }

  void drain(const std::string& functionKey, int64_t keepRevision) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      auto fit = functions_.find(functionKey);
      if (fit == functions_.end()) return;
      FunctionState& fs = fit->second;
      drainLocked(fs, keepRevision, actions);
      if (keepRevision == INT64_MAX) {
        fs.deleted = true;
        failQueueLocked(fs, notFound("function " + functionKey + " was deleted"), actions);
      }
    }
    run(actions);
  }

  void tick() {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      TimePoint now = clock_.now();
      std::vector<std::string> idle;
      for (auto& [id, inst] : instances_) {
        if (inst.busy == 0 && now - inst.lastUsed >= options_.keepAlive) idle.push_back(id);
      }
      for (const auto& id : idle) removeInstanceLocked(id, actions, /*stop=*/true);
      for (auto& [key, fs] : functions_) {
        while (!fs.queue.empty() && now - fs.queue.front().enqueued >= options_.maxQueueWait) {
          auto done = std::move(fs.queue.front().done);
          fs.queue.pop_front();
          int64_t waitedMs = toMillis(options_.maxQueueWait);
          actions.push_back([done, waitedMs, key = key] {
            done(Status(Code::kResourceExhausted, "no instance of " + key +
                                                      " became available within " +
                                                      std::to_string(waitedMs) + " ms"));
          });
        }
      }
      std::erase_if(functions_, [](const auto& kv) {
        const FunctionState& fs = kv.second;
        return fs.deleted && fs.instances.empty() && fs.starting == 0 && fs.queue.empty();
      });
    }
    run(actions);
  }

  void shutdown() {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
      for (auto& [key, fs] : functions_) {
        failQueueLocked(fs, Status(Code::kAborted, "server is shutting down"), actions);
      }
      std::vector<std::string> ids;
      for (auto& [id, inst] : instances_) ids.push_back(id);
      for (const auto& id : ids) removeInstanceLocked(id, actions, /*stop=*/true);
    }
    run(actions);
  }

  SchedulerStats stats() const {
    std::lock_guard lock(mu_);
    SchedulerStats s;
    s.instances = static_cast<int64_t>(instances_.size());
    for (const auto& [id, inst] : instances_) s.busySlots += inst.busy;
    for (const auto& [key, fs] : functions_) {
      s.starting += fs.starting;
      s.queued += static_cast<int64_t>(fs.queue.size());
    }
    s.coldStarts = coldStarts_;
    return s;
  }

  size_t instanceCount(const std::string& key) const {
    std::lock_guard lock(mu_);
    auto fit = functions_.find(key);
    return fit == functions_.end() ? 0 : fit->second.instances.size();
  }

 private:
  // Least-loaded instance of the current revision with a free slot.
  Instance* pickLocked(FunctionState& fs) {
    Instance* best = nullptr;
    for (const auto& id : fs.instances) {
      Instance& inst = instances_.at(id);
      if (inst.draining || inst.revision != fs.ref.revision) continue;
      if (inst.busy >= inst.concurrency) continue;
      if (best == nullptr || inst.busy < best->busy) best = &inst;
    }
    return best;
  }

  // Starts instances while queued calls exceed the slots that starting instances will bring,
  // up to maxInstances (counting every live instance of the function, draining ones included,
  // so an update cannot double the footprint).
  void scaleLocked(FunctionState& fs, Actions& actions) {
    if (shutdown_ || fs.deleted) return;
    const FunctionRef& ref = fs.ref;
    while (static_cast<int64_t>(fs.queue.size()) >
           static_cast<int64_t>(fs.starting) * ref.concurrency) {
      int live = static_cast<int>(fs.instances.size()) + fs.starting;
      if (live >= ref.maxInstances) break;
      ++fs.starting;
      ++coldStarts_;
      std::string id = "i-" + randomHex(6);
      actions.push_back([this, id, ref] {
        launcher_.launch(id, ref, [this, id, ref](Result<int64_t> r) { onLaunched(id, ref, r); });
      });
    }
  }

  void onLaunched(const std::string& id, const FunctionRef& ref, const Result<int64_t>& r) {
    Actions actions;
    {
      std::lock_guard lock(mu_);
      auto fit = functions_.find(ref.key);
      bool wanted = !shutdown_ && fit != functions_.end() && !fit->second.deleted &&
                    fit->second.ref.revision == ref.revision;
      if (fit != functions_.end() && fit->second.ref.revision == ref.revision) {
        fit->second.starting = std::max(0, fit->second.starting - 1);
      }
      if (!r.isOk()) {
        // The start failed. Calls waiting for it learn why; retrying at once would only fail
        // again (a bad handler) or pile more load on a struggling host.
        if (wanted) failQueueLocked(fit->second, r.status(), actions);
      } else if (!wanted) {
        actions.push_back([this, id] { launcher_.stop(id); });
      } else {
        FunctionState& fs = fit->second;
        Instance inst;
        inst.id = id;
        inst.functionKey = ref.key;
        inst.revision = ref.revision;
        inst.concurrency = std::max(1, ref.concurrency);
        inst.lastUsed = clock_.now();
        instances_[id] = inst;
        fs.instances.push_back(id);
        serveQueueLocked(fs, instances_[id], /*cold=*/true, r.value(), actions);
      }
    }
    run(actions);
  }

  // Gives inst's free slots to queued calls, oldest first.
  void serveQueueLocked(FunctionState& fs, Instance& inst, bool cold, int64_t initUs,
                        Actions& actions) {
    while (!fs.queue.empty() && inst.busy < inst.concurrency && !inst.draining &&
           inst.revision == fs.ref.revision) {
      auto done = std::move(fs.queue.front().done);
      fs.queue.pop_front();
      ++inst.busy;
      Lease lease{inst.functionKey, inst.id, cold, cold ? initUs : 0};
      actions.push_back([done, lease] { done(lease); });
    }
  }

  void drainLocked(FunctionState& fs, int64_t keepRevision, Actions& actions) {
    std::vector<std::string> stopNow;
    for (const auto& id : fs.instances) {
      Instance& inst = instances_.at(id);
      if (inst.revision < keepRevision) {
        inst.draining = true;
        if (inst.busy == 0) stopNow.push_back(id);
      }
    }
    for (const auto& id : stopNow) removeInstanceLocked(id, actions, /*stop=*/true);
  }

  void failQueueLocked(FunctionState& fs, const Status& status, Actions& actions) {
    while (!fs.queue.empty()) {
      auto done = std::move(fs.queue.front().done);
      fs.queue.pop_front();
      actions.push_back([done, status] { done(status); });
    }
  }

  void removeInstanceLocked(const std::string& id, Actions& actions, bool stop) {
    auto it = instances_.find(id);
    if (it == instances_.end()) return;
    auto fit = functions_.find(it->second.functionKey);
    if (fit != functions_.end()) std::erase(fit->second.instances, id);
    instances_.erase(it);
    if (stop) actions.push_back([this, id] { launcher_.stop(id); });
  }

  InstanceLauncher& launcher_;
  const Clock& clock_;
  const SchedulerOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, FunctionState> functions_;  // GUARDED_BY(mu_)
  std::map<std::string, Instance> instances_;       // GUARDED_BY(mu_)
  int64_t coldStarts_ = 0;                          // GUARDED_BY(mu_)
  bool shutdown_ = false;                           // GUARDED_BY(mu_)
};

Scheduler::Scheduler(InstanceLauncher& launcher, const Clock& clock, SchedulerOptions options)
    : impl_(std::make_unique<Impl>(launcher, clock, options)) {}
Scheduler::~Scheduler() = default;

void Scheduler::acquire(const FunctionRef& fn, std::function<void(Result<Lease>)> done) {
  impl_->acquire(fn, std::move(done));
}
void Scheduler::release(const Lease& lease, bool healthy) { impl_->release(lease, healthy); }
void Scheduler::instanceLost(const std::string& instanceId) { impl_->instanceLost(instanceId); }
void Scheduler::drain(const std::string& functionKey, int64_t keepRevision) {
  impl_->drain(functionKey, keepRevision);
}
void Scheduler::tick() { impl_->tick(); }
void Scheduler::shutdown() { impl_->shutdown(); }
SchedulerStats Scheduler::stats() const { return impl_->stats(); }
size_t Scheduler::instanceCount(const std::string& functionKey) const {
  return impl_->instanceCount(functionKey);
}

}  // namespace stratus
