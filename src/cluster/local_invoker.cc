#include "cluster/local_invoker.h"

#include <climits>

#include "common/log.h"

namespace stratus {
namespace {

std::string functionKey(const FunctionSpec& fn) { return fn.tenant + "/" + fn.name; }

FunctionRef refOf(const FunctionSpec& fn) {
  FunctionRef ref;
  ref.key = functionKey(fn);
  ref.revision = fn.revision;
  ref.concurrency = fn.instanceConcurrency;
  ref.maxInstances = fn.maxInstances;
  ref.memoryMb = fn.memoryMb;
  ref.tenant = fn.tenant;
  ref.runtime = fn.runtime;
  return ref;
}

}  // namespace

LocalInvoker::LocalInvoker(Worker& worker, CodeCache& code, const Clock& clock,
                           SchedulerOptions options)
    : worker_(worker),
      code_(code),
      scheduler_(
          std::make_unique<Scheduler>(static_cast<InstanceLauncher&>(*this), clock, options)) {
  worker_.setInstanceLostHandler([this](const std::string& id, const Status& cause) {
    SLOG_INFO("instance {} lost: {}", id, cause.toString());
    scheduler_->instanceLost(id);
  });
}

LocalInvoker::~LocalInvoker() { shutdown(); }

void LocalInvoker::invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) {
  {
    std::lock_guard lock(mu_);
    auto& latest = specs_[functionKey(fn)];
    // Copy only when new: a warm call of the same revision must not copy the whole spec.
    if (latest.revision < fn.revision || latest.name.empty()) latest = fn;
  }
  scheduler_->acquire(refOf(fn), [this, req = std::move(req),
                                  done = std::move(done)](Result<Lease> lease) mutable {
    if (!lease.isOk()) {
      InvokeResult r;
      if (lease.status().code() == Code::kFailedPrecondition) {
        // The instance could not start because of the function itself (bad handler, exception
        // at import, runtime exited during init): a function error, as Lambda reports it.
        r.functionError = FunctionErrorKind::kUnhandled;
        r.body = lease.status().message();
        r.coldStart = true;
      } else {
        r.status = lease.status();
      }
      done(std::move(r));
      return;
    }
    Lease l = std::move(lease).value();
    worker_.invoke(l.instanceId, std::move(req), [this, l, done = std::move(done)](InvokeResult r) {
      scheduler_->release(l, !r.instanceLost);
      r.coldStart = l.coldStart;
      r.initDurationUs = l.initDurationUs;
      done(std::move(r));
    });
  });
}

void LocalInvoker::functionChanged(const FunctionSpec& fn) {
  {
    std::lock_guard lock(mu_);
    specs_[functionKey(fn)] = fn;
  }
  scheduler_->drain(functionKey(fn), fn.revision);
}

void LocalInvoker::functionDeleted(const FunctionSpec& fn) {
  scheduler_->drain(functionKey(fn), INT64_MAX);
  std::lock_guard lock(mu_);
  specs_.erase(functionKey(fn));
}

void LocalInvoker::shutdown() { scheduler_->shutdown(); }

void LocalInvoker::tick() { scheduler_->tick(); }

void LocalInvoker::launch(const std::string& instanceId, const FunctionRef& ref,
                          std::function<void(Result<int64_t>)> ready) {
  FunctionSpec spec;
  {
    std::lock_guard lock(mu_);
    auto it = specs_.find(ref.key);
    if (it == specs_.end() || it->second.revision != ref.revision) {
      ready(Status(Code::kAborted, "function " + ref.key + " changed while starting"));
      return;
    }
    spec = it->second;
  }
  // The code's directory: a lazy FUSE view of its pack (or an extracted tree without FUSE),
  // owned by the host uid the function runs as and unreadable to anyone else.
  auto owner = worker_.codeOwner(spec);
  if (!owner) {
    ready(owner.status());
    return;
  }
  auto codeDir = code_.acquire(spec.codeSha256, CodeOwner{owner->uid, owner->gid});
  if (!codeDir) {
    ready(codeDir.status());
    return;
  }
  worker_.startInstance(instanceId, spec, *codeDir,
                        [ready = std::move(ready)](Result<InstanceReady> r) {
                          if (!r.isOk()) {
                            ready(r.status());
                          } else {
                            ready(r->initDurationUs);
                          }
                        });
}

void LocalInvoker::stop(const std::string& instanceId) { worker_.stopInstance(instanceId); }

}  // namespace stratus
