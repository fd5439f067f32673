// Internals of Api (api.cc, auth.cc, tenants.cc, async_api.cc): request handlers, the caches
// that keep the metadata store off the warm invoke path, and the front door's policy objects.
//
// Caches: API key hash -> caller (positive lookups; a deleted tenant's keys are evicted),
// tenant -> quota, and (tenant, name) -> spec. This Api is the only writer of its store in
// embedded mode, so its own mutations keep the caches exact; a lookup that raced with a mutation
// does not fill the spec cache (generation check). Cluster mode (several API processes on one
// etcd store) will need the store's watch to invalidate; until then the caches are per-process
// truth.
// Thread-safe: every member is guarded by the mutex named beside it, or is thread-safe itself.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "api/api.h"
#include "api/async_dispatcher.h"
#include "api/guarded_invoker.h"
#include "api/rate_limiter.h"

namespace stratus {

struct Api::Impl {
  explicit Impl(Api& api);

  Api& api;
  SystemClock systemClock;
  WallClock wallClock;
  const Clock& clock;  // monotonic
  const Clock& wall;   // since the epoch

  std::shared_mutex keyMu;
  std::unordered_map<std::string, Caller> callerByKeyHash;  // GUARDED_BY(keyMu)

  std::shared_mutex quotaMu;
  std::unordered_map<std::string, TenantQuota> quotas;  // GUARDED_BY(quotaMu)

  std::shared_mutex specMu;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<const FunctionSpec>>
      specs;                    // GUARDED_BY(specMu)
  uint64_t specGeneration = 0;  // GUARDED_BY(specMu); bumped by every mutation

  // Serialises create/update/delete (functions and tenants) so that read-modify-write of a spec
  // never loses an update and quota checks on create are exact.
  std::mutex mutationMu;

  RateLimiter limiter;
  GuardedInvoker guarded;
  AsyncDispatcher dispatcher;
  std::atomic<int64_t> rateLimited{0};
  std::atomic<int64_t> asyncAccepted{0};

  Result<std::shared_ptr<const FunctionSpec>> lookup(const std::string& tenant,
                                                     const std::string& name);
  void cachePut(const FunctionSpec& spec);
  void cacheErase(const std::string& tenant, const std::string& name);
  TenantQuota quotaOf(const std::string& tenant);
  // Takes a token from the tenant's bucket (and the function's, when name is set); a refusal is
  // the 429 to send.
  std::optional<HttpResponse> rateLimit(const std::string& tenant, const std::string* function,
                                        const std::string& rid);

  HttpResponse list(const std::string& tenant, const HttpRequest& req, const std::string& rid);
  HttpResponse create(const std::string& tenant, const HttpRequest& req, const std::string& rid);
  HttpResponse get(const std::string& tenant, const std::string& name, const std::string& rid);
  HttpResponse update(const std::string& tenant, const std::string& name, const HttpRequest& req,
                      const std::string& rid);
  HttpResponse remove(const std::string& tenant, const std::string& name, const std::string& rid);
  void invoke(const std::string& tenant, const std::string& name, HttpRequest req,
              const std::string& rid, HttpRespond respond);

  // tenants.cc
  HttpResponse admin(const Caller& caller, const HttpRequest& req,
                     const std::vector<std::string_view>& segs, const std::string& rid);

  // async_api.cc
  HttpResponse invokeAsync(const std::string& tenant, const FunctionSpec& fn, HttpRequest& req,
                           const std::string& rid);
  HttpResponse asyncConfig(const std::string& tenant, const std::string& name,
                           const HttpRequest& req, const std::string& rid);
  HttpResponse asyncTasks(const std::string& tenant, const std::string& name, const std::string* id,
                          const HttpRequest& req, const std::string& rid);
};

// Shared by the handler files.
HttpResponse jsonResponse(int status, const json::value& body, const std::string& rid);
HttpResponse storeError(const Status& s, const std::string& rid);
HttpResponse functionNotFound(const std::string& name, const std::string& rid);
HttpResponse methodNotAllowed(const HttpRequest& req, std::string_view allow,
                              const std::string& rid);
bool iequals(std::string_view a, std::string_view b);
bool isHopByHop(std::string_view name);

}  // namespace stratus
