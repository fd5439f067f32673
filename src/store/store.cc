// Value helpers of store.h shared by the store backends and the API.
#include "store/store.h"

#include <cmath>

#include "common/json.h"

namespace stratus {

std::string_view asyncTaskStatusName(AsyncTaskStatus s) {
  switch (s) {
    case AsyncTaskStatus::kEnqueued:
      return "Enqueued";
    case AsyncTaskStatus::kRunning:
      return "Running";
    case AsyncTaskStatus::kSucceeded:
      return "Succeeded";
    case AsyncTaskStatus::kFailed:
      return "Failed";
  }
  return "Unknown";
}

std::optional<AsyncTaskStatus> parseAsyncTaskStatus(std::string_view name) {
  for (auto s : {AsyncTaskStatus::kEnqueued, AsyncTaskStatus::kRunning, AsyncTaskStatus::kSucceeded,
                 AsyncTaskStatus::kFailed}) {
    if (asyncTaskStatusName(s) == name) return s;
  }
  return std::nullopt;
}

namespace {
// Whole rates print as integers ("10", not Boost.JSON's "1E1").
json::value rate(double r) {
  if (r == std::floor(r) && std::fabs(r) < 9e15) return static_cast<int64_t>(r);
  return r;
}
}  // namespace

std::string tenantQuotaToJson(const TenantQuota& q) {
  json::object o;
  o["requestsPerSecond"] = rate(q.requestsPerSecond);
  o["burst"] = q.burst;
  o["functionRequestsPerSecond"] = rate(q.functionRequestsPerSecond);
  o["maxConcurrentInstances"] = q.maxConcurrentInstances;
  o["maxFunctions"] = q.maxFunctions;
  o["maxTotalMemoryMb"] = q.maxTotalMemoryMb;
  return json::serialize(o);
}

namespace {

// A non-negative number no larger than `max`; integers only when `integral`.
Result<std::optional<double>> getNumber(const json::object& o, std::string_view key, double max,
                                        bool integral) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return std::optional<double>();
  double d;
  if (v->is_int64()) {
    d = static_cast<double>(v->as_int64());
  } else if (v->is_uint64()) {
    d = static_cast<double>(v->as_uint64());
  } else if (v->is_double()) {
    d = v->as_double();
  } else {
    return invalidArgument(std::string(key) + " must be a number");
  }
  if (!std::isfinite(d) || d < 0 || d > max || (integral && d != std::floor(d))) {
    return invalidArgument(std::string(key) + " must be " + (integral ? "an integer" : "a number") +
                           " between 0 (no limit) and " +
                           std::to_string(static_cast<int64_t>(max)));
  }
  return std::optional<double>(d);
}

}  // namespace

Result<TenantQuota> tenantQuotaFromJson(std::string_view text, TenantQuota q) {
  ASSIGN_OR_RETURN(json::value v, parseJson(text));
  if (!v.is_object()) return invalidArgument("the quota must be a JSON object");
  const json::object& o = v.as_object();
  constexpr double kMaxRate = 1e6;
  constexpr double kMaxCount = 1e9;
  ASSIGN_OR_RETURN(auto rps, getNumber(o, "requestsPerSecond", kMaxRate, false));
  ASSIGN_OR_RETURN(auto burst, getNumber(o, "burst", kMaxCount, true));
  ASSIGN_OR_RETURN(auto frps, getNumber(o, "functionRequestsPerSecond", kMaxRate, false));
  ASSIGN_OR_RETURN(auto inst, getNumber(o, "maxConcurrentInstances", kMaxCount, true));
  ASSIGN_OR_RETURN(auto fns, getNumber(o, "maxFunctions", kMaxCount, true));
  ASSIGN_OR_RETURN(auto mem, getNumber(o, "maxTotalMemoryMb", kMaxCount, true));
  if (rps) q.requestsPerSecond = *rps;
  if (burst) q.burst = static_cast<int64_t>(*burst);
  if (frps) q.functionRequestsPerSecond = *frps;
  if (inst) q.maxConcurrentInstances = static_cast<int64_t>(*inst);
  if (fns) q.maxFunctions = static_cast<int64_t>(*fns);
  if (mem) q.maxTotalMemoryMb = static_cast<int64_t>(*mem);
  return q;
}

}  // namespace stratus
