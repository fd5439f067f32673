// LocalInvoker: the all-in-one Invoker. Scheduler and Worker in one process: the scheduler picks
// or starts an instance (through this class as its InstanceLauncher), the worker runs the call.
// Cluster mode replaces it with a remote invoker; the API does not know the difference.
// Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "codepack/zip_import.h"
#include "common/invoke.h"
#include "scheduler/scheduler.h"
#include "worker/worker.h"

namespace stratus {

class LocalInvoker final : public Invoker, private InstanceLauncher {
 public:
  LocalInvoker(Worker& worker, CodeCache& code, const Clock& clock, SchedulerOptions options);
  ~LocalInvoker() override;

  void invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) override;
  void functionChanged(const FunctionSpec& fn) override;
  void functionDeleted(const FunctionSpec& fn) override;
  void shutdown() override;
  // Periodic housekeeping (keep-alive reclaim, queue expiry).
  void tick();
  Scheduler& scheduler() { return *scheduler_; }

 private:
  void launch(const std::string& instanceId, const FunctionRef& fn,
              std::function<void(Result<int64_t>)> ready) override;
  void stop(const std::string& instanceId) override;

  Worker& worker_;
  CodeCache& code_;
  std::unique_ptr<Scheduler> scheduler_;
  std::mutex mu_;
  std::map<std::string, FunctionSpec> specs_;  // GUARDED_BY(mu_): latest spec per function key
};

}  // namespace stratus
