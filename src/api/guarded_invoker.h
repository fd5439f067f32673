// GuardedInvoker: the avalanche protection of seed 1.3 as an Invoker decorator around the real
// invoker (LocalInvoker in all-in-one mode), so the scheduler stays untouched.
//
//   admission   per function, at most maxInstances * instanceConcurrency calls run and at most
//               queueDepthPerFunction more wait; a call beyond that is refused at once (503
//               FunctionQueueFull) instead of piling up in the scheduler's queue.
//   tenant caps the tenant's busy instances (sum over its functions of ceil(in flight /
//               instanceConcurrency)) and their memory stay within the tenant's quota
//               (429 TenantInstanceLimitExceeded / TenantMemoryLimitExceeded).
//   breaker     per function: `breakerFailureThreshold` consecutive calls that cost an instance
//               (init failure, crash, OOM, timeout recycle, a sandbox that could not start) open
//               it; while open every call is refused (503 CircuitBreakerOpen) without touching
//               the scheduler, so a broken function cannot make the platform start containers
//               without end. After the open period one probe call goes through (half-open): a
//               call that does not cost an instance closes the breaker, a failure reopens it for
//               twice as long (up to breakerMaxOpenFor). Updating the function closes it.
//
// A refusal is an InvokeResult with status kUnavailable (503) or kResourceExhausted (429), the
// error code name in `body` and the seconds to wait in headers["Retry-After"]; the inner invoker
// is not called. Time comes from the injected Clock. Thread-safe (one mutex, never held while
// calling the inner invoker or a callback).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "common/invoke.h"
#include "store/store.h"

namespace stratus {

struct AdmissionOptions {
  int queueDepthPerFunction = 64;
  int breakerFailureThreshold = 5;
  Duration breakerOpenFor = std::chrono::seconds(5);
  Duration breakerMaxOpenFor = std::chrono::seconds(60);
  Duration queueFullRetryAfter = std::chrono::seconds(1);
};

enum class BreakerState : int32_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

struct AdmissionStats {
  int64_t inFlight = 0;
  int64_t refusedQueueFull = 0;
  int64_t refusedTenantLimit = 0;
  int64_t refusedBreakerOpen = 0;
  int64_t breakerOpens = 0;
  int64_t openBreakers = 0;
};

// Whether a finished call cost an instance (the breaker counts those).
bool costsInstance(const InvokeResult& r);

class GuardedInvoker final : public Invoker {
 public:
  using QuotaLookup = std::function<TenantQuota(const std::string& tenant)>;

  GuardedInvoker(Invoker& inner, const Clock& clock, AdmissionOptions options, QuotaLookup quota);
  ~GuardedInvoker() override;

  void invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) override;
  void functionChanged(const FunctionSpec& fn) override;
  void functionDeleted(const FunctionSpec& fn) override;
  void shutdown() override;

  BreakerState breakerState(const std::string& tenant, const std::string& name) const;
  AdmissionStats stats() const;

 private:
  struct State;
  Invoker& inner_;
  std::shared_ptr<State> state_;  // shared with callbacks of calls still running
};

}  // namespace stratus
