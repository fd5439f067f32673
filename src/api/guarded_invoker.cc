#include "api/guarded_invoker.h"

#include <algorithm>
#include <optional>
#include <unordered_map>

#include "common/log.h"

namespace stratus {
namespace {

std::string keyOf(const std::string& tenant, const std::string& name) {
  return tenant + "/" + name;
}

int64_t ceilDiv(int64_t a, int64_t b) { return b <= 0 ? a : (a + b - 1) / b; }

std::string retryAfterSeconds(Duration d) {
  int64_t s =
      std::chrono::duration_cast<std::chrono::seconds>(d + std::chrono::milliseconds(999)).count();
  return std::to_string(std::max<int64_t>(1, s));
}

InvokeResult refusal(Code code, std::string_view errorCode, std::string message,
                     Duration retryAfter) {
  InvokeResult r;
  r.status = Status(code, std::move(message));
  r.body = std::string(errorCode);
  r.headers["Retry-After"] = retryAfterSeconds(retryAfter);
  return r;
}

}  // namespace

bool costsInstance(const InvokeResult& r) {
  if (!r.status.isOk()) return r.status.code() == Code::kUnavailable;  // sandbox did not start
  if (r.functionError == FunctionErrorKind::kNone) return false;
  if (r.instanceLost) return true;             // crash, OOM, timeout recycle
  return r.coldStart && r.instanceId.empty();  // init failed: the instance never served
}

struct GuardedInvoker::State {
  struct Function {
    std::string tenant;
    int64_t inFlight = 0;
    // Frozen while calls are in flight so that the tenant totals stay consistent.
    int64_t concurrency = 1;
    int64_t memoryMb = 128;
    // Breaker.
    BreakerState breaker = BreakerState::kClosed;
    int consecutiveFailures = 0;
    TimePoint openUntil{};
    Duration openFor{0};
    bool probeInFlight = false;
  };
  struct TenantUse {
    int64_t busyInstances = 0;
    int64_t busyMemoryMb = 0;
  };

  State(const Clock& c, AdmissionOptions o, QuotaLookup q)
      : clock(c), options(o), quota(std::move(q)) {}

  const Clock& clock;
  const AdmissionOptions options;
  const QuotaLookup quota;

  mutable std::mutex mu;
  std::unordered_map<std::string, Function> functions;  // GUARDED_BY(mu)
  std::unordered_map<std::string, TenantUse> tenants;   // GUARDED_BY(mu)
  AdmissionStats stats;                                 // GUARDED_BY(mu), except openBreakers

  void openBreaker(Function& f, TimePoint now, Duration openFor) {  // REQUIRES(mu)
    f.breaker = BreakerState::kOpen;
    f.openFor = openFor;
    f.openUntil = now + openFor;
    f.probeInFlight = false;
    ++stats.breakerOpens;
  }

  // Call finished: release its admission and feed the breaker.
  void finish(const std::string& key, bool probe, bool failure) {
    std::lock_guard lock(mu);
    auto it = functions.find(key);
    if (it == functions.end()) return;
    Function& f = it->second;
    TenantUse& t = tenants[f.tenant];
    int64_t before = ceilDiv(f.inFlight, f.concurrency);
    f.inFlight = std::max<int64_t>(0, f.inFlight - 1);
    int64_t released = before - ceilDiv(f.inFlight, f.concurrency);
    t.busyInstances -= released;
    t.busyMemoryMb -= released * f.memoryMb;
    --stats.inFlight;

    const TimePoint now = clock.now();
    if (probe) {
      f.probeInFlight = false;
      if (failure) {
        openBreaker(f, now, std::min(f.openFor * 2, options.breakerMaxOpenFor));
        SLOG_WARN("circuit breaker of {} stays open: the probe call failed", key);
      } else {
        f.breaker = BreakerState::kClosed;
        f.consecutiveFailures = 0;
        SLOG_INFO("circuit breaker of {} closed: the probe call succeeded", key);
      }
      return;
    }
    if (f.breaker != BreakerState::kClosed) return;  // a late result of a call before the open
    if (!failure) {
      f.consecutiveFailures = 0;
      return;
    }
    if (++f.consecutiveFailures >= options.breakerFailureThreshold) {
      openBreaker(f, now, options.breakerOpenFor);
      SLOG_WARN("circuit breaker of {} opened after {} consecutive failed instances", key,
                f.consecutiveFailures);
    }
  }
};

GuardedInvoker::GuardedInvoker(Invoker& inner, const Clock& clock, AdmissionOptions options,
                               QuotaLookup quota)
    : inner_(inner), state_(std::make_shared<State>(clock, options, std::move(quota))) {}

GuardedInvoker::~GuardedInvoker() = default;

void GuardedInvoker::invoke(const FunctionSpec& fn, InvokeRequest req, InvokeCallback done) {
  const std::string key = keyOf(fn.tenant, fn.name);
  // Outside the lock: the lookup may read the store on a tenant's first call.
  const TenantQuota quota = state_->quota ? state_->quota(fn.tenant) : TenantQuota{};
  std::optional<InvokeResult> refused;
  bool probe = false;
  {
    State& s = *state_;
    std::lock_guard lock(s.mu);
    auto [it, inserted] = s.functions.try_emplace(key);
    State::Function& f = it->second;
    if (inserted) f.tenant = fn.tenant;
    const TimePoint now = s.clock.now();

    // Breaker first: an open breaker costs nothing downstream.
    if (f.breaker == BreakerState::kOpen && now >= f.openUntil) f.breaker = BreakerState::kHalfOpen;
    if (f.breaker == BreakerState::kOpen) {
      ++s.stats.refusedBreakerOpen;
      refused = refusal(Code::kUnavailable, "CircuitBreakerOpen",
                        "function " + fn.name +
                            " is failing to start or crashing; calls are refused for a while "
                            "(circuit breaker open)",
                        f.openUntil - now);
    } else if (f.breaker == BreakerState::kHalfOpen) {
      if (f.probeInFlight) {
        ++s.stats.refusedBreakerOpen;
        refused = refusal(
            Code::kUnavailable, "CircuitBreakerOpen",
            "function " + fn.name + " is failing; a probe call is checking whether it recovered",
            std::chrono::seconds(1));
      } else {
        probe = true;
      }
    }

    if (!refused) {
      if (f.inFlight == 0) {
        f.concurrency = std::max(1, fn.instanceConcurrency);
        f.memoryMb = fn.memoryMb;
      }
      const int64_t capacity = static_cast<int64_t>(std::max(1, fn.maxInstances)) * f.concurrency;
      const int64_t bound = capacity + s.options.queueDepthPerFunction;
      const int64_t extraInstance =
          ceilDiv(f.inFlight + 1, f.concurrency) - ceilDiv(f.inFlight, f.concurrency);
      State::TenantUse& t = s.tenants[fn.tenant];
      if (f.inFlight >= bound) {
        ++s.stats.refusedQueueFull;
        refused = refusal(Code::kUnavailable, "FunctionQueueFull",
                          "function " + fn.name + " has " + std::to_string(f.inFlight) +
                              " calls running or waiting (bound " + std::to_string(bound) +
                              "); retry later",
                          s.options.queueFullRetryAfter);
      } else if (extraInstance > 0 && quota.maxConcurrentInstances > 0 &&
                 t.busyInstances + extraInstance > quota.maxConcurrentInstances) {
        ++s.stats.refusedTenantLimit;
        refused =
            refusal(Code::kResourceExhausted, "TenantInstanceLimitExceeded",
                    "tenant " + fn.tenant + " already has " + std::to_string(t.busyInstances) +
                        " busy instances (quota maxConcurrentInstances " +
                        std::to_string(quota.maxConcurrentInstances) + ")",
                    s.options.queueFullRetryAfter);
      } else if (extraInstance > 0 && quota.maxTotalMemoryMb > 0 &&
                 t.busyMemoryMb + extraInstance * f.memoryMb > quota.maxTotalMemoryMb) {
        ++s.stats.refusedTenantLimit;
        refused =
            refusal(Code::kResourceExhausted, "TenantMemoryLimitExceeded",
                    "tenant " + fn.tenant + " already uses " + std::to_string(t.busyMemoryMb) +
                        " MB in busy instances (quota maxTotalMemoryMb " +
                        std::to_string(quota.maxTotalMemoryMb) + ")",
                    s.options.queueFullRetryAfter);
      } else {
        ++f.inFlight;
        t.busyInstances += extraInstance;
        t.busyMemoryMb += extraInstance * f.memoryMb;
        ++s.stats.inFlight;
        if (probe) f.probeInFlight = true;
      }
    }
  }
  if (refused) {
    done(std::move(*refused));
    return;
  }
  inner_.invoke(fn, std::move(req),
                [state = state_, key, probe, done = std::move(done)](InvokeResult r) {
                  state->finish(key, probe, costsInstance(r));
                  done(std::move(r));
                });
}

void GuardedInvoker::functionChanged(const FunctionSpec& fn) {
  {
    std::lock_guard lock(state_->mu);
    auto it = state_->functions.find(keyOf(fn.tenant, fn.name));
    if (it != state_->functions.end()) {
      // A new revision may fix what broke: give it a fresh chance.
      it->second.breaker = BreakerState::kClosed;
      it->second.consecutiveFailures = 0;
      it->second.probeInFlight = false;
    }
  }
  inner_.functionChanged(fn);
}

void GuardedInvoker::functionDeleted(const FunctionSpec& fn) {
  {
    std::lock_guard lock(state_->mu);
    auto it = state_->functions.find(keyOf(fn.tenant, fn.name));
    if (it != state_->functions.end() && it->second.inFlight == 0) state_->functions.erase(it);
  }
  inner_.functionDeleted(fn);
}

void GuardedInvoker::shutdown() { inner_.shutdown(); }

BreakerState GuardedInvoker::breakerState(const std::string& tenant,
                                          const std::string& name) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->functions.find(keyOf(tenant, name));
  if (it == state_->functions.end()) return BreakerState::kClosed;
  return it->second.breaker;
}

AdmissionStats GuardedInvoker::stats() const {
  std::lock_guard lock(state_->mu);
  AdmissionStats s = state_->stats;
  s.openBreakers = 0;
  for (const auto& [k, f] : state_->functions) {
    if (f.breaker != BreakerState::kClosed) ++s.openBreakers;
  }
  return s;
}

}  // namespace stratus
