// Internals of Api (api.cc, auth.cc): request handlers and the caches that keep the metadata
// store off the warm invoke path.
//
// Caches: API key hash -> tenant (positive lookups only; keys are never revoked yet), and
// (tenant, name) -> spec. This Api is the only writer of its store in embedded mode, so its own
// mutations keep the spec cache exact; a lookup that raced with a mutation does not fill the
// cache (generation check). Cluster mode (several API processes on one etcd store) will need
// the store's watch to invalidate; until then the cache is per-process truth.
// Thread-safe: every member is guarded by the mutex named beside it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "api/api.h"

namespace stratus {

struct Api::Impl {
  explicit Impl(Api& api) : api(api) {}

  Api& api;

  std::shared_mutex keyMu;
  std::unordered_map<std::string, std::string> tenantByKeyHash;  // GUARDED_BY(keyMu)

  std::shared_mutex specMu;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<const FunctionSpec>>
      specs;                    // GUARDED_BY(specMu)
  uint64_t specGeneration = 0;  // GUARDED_BY(specMu); bumped by every mutation

  // Serialises create/update/delete so that read-modify-write of a spec never loses an update.
  std::mutex mutationMu;

  Result<std::shared_ptr<const FunctionSpec>> lookup(const std::string& tenant,
                                                     const std::string& name);
  void cachePut(const FunctionSpec& spec);
  void cacheErase(const std::string& tenant, const std::string& name);

  HttpResponse list(const std::string& tenant, const HttpRequest& req, const std::string& rid);
  HttpResponse create(const std::string& tenant, const HttpRequest& req, const std::string& rid);
  HttpResponse get(const std::string& tenant, const std::string& name, const std::string& rid);
  HttpResponse update(const std::string& tenant, const std::string& name, const HttpRequest& req,
                      const std::string& rid);
  HttpResponse remove(const std::string& tenant, const std::string& name, const std::string& rid);
  void invoke(const std::string& tenant, const std::string& name, HttpRequest req,
              const std::string& rid, HttpRespond respond);
};

}  // namespace stratus
