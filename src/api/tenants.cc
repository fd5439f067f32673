// The admin API: tenants, their keys and quotas (docs/api.md "Tenants"). Only admin keys may use
// it; a tenant key gets 403. Quotas take effect on the next request (the caches are updated here).
#include "api/api.h"
#include "api/api_impl.h"
#include "api/validation.h"
#include "common/ids.h"
#include "common/log.h"

namespace stratus {
namespace {

constexpr std::string_view kAdminTenant = "default";

json::object tenantToJson(const Tenant& t) {
  json::object o;
  o["name"] = t.name;
  auto q = parseJson(tenantQuotaToJson(t.quota));
  o["quota"] = q.isOk() ? std::move(q).value() : json::value(json::object());
  o["createdTime"] = t.createdTime;
  return o;
}

HttpResponse tenantNotFound(const std::string& name, const std::string& rid) {
  return errorResponse(notFound("tenant " + name + " does not exist"), rid, "TenantNotFound");
}

// The quota fields of a create/update body: at the top level or under "quota".
Result<TenantQuota> quotaFromBody(const json::object& body, TenantQuota base) {
  if (const json::value* q = body.if_contains("quota"); q && !q->is_null()) {
    if (!q->is_object()) return invalidArgument("quota must be an object");
    return tenantQuotaFromJson(json::serialize(*q), base);
  }
  return tenantQuotaFromJson(json::serialize(body), base);
}

}  // namespace

HttpResponse Api::Impl::admin(const Caller& caller, const HttpRequest& req,
                              const std::vector<std::string_view>& segs, const std::string& rid) {
  if (!caller.admin) {
    return errorResponse(Status(Code::kPermissionDenied, "the admin API needs an admin key"), rid,
                         "AccessDenied");
  }
  if (segs.size() < 2 || segs[1] != "tenants" || segs.size() > 4) {
    return errorResponse(notFound("no API at " + req.method + " " + req.path), rid, "NotFound");
  }
  MetadataStore& store = api.store_;
  if (segs.size() == 2) {
    if (req.method == "GET") {
      auto all = store.listTenants();
      if (!all) return storeError(all.status(), rid);
      json::array arr;
      for (const Tenant& t : *all) arr.emplace_back(tenantToJson(t));
      return jsonResponse(200, json::object{{"tenants", std::move(arr)}}, rid);
    }
    if (req.method != "POST") return methodNotAllowed(req, "GET, POST", rid);
    auto body = validation::parseBodyObject(req.body);
    if (!body) return errorResponse(body.status(), rid, "MalformedJSON");
    auto name = getString(*body, "name");
    if (!name) return errorResponse(name.status(), rid);
    if (!*name || !validation::isValidFunctionName(**name)) {
      return errorResponse(invalidArgument("name is required: 1-64 characters of [A-Za-z0-9_-], "
                                           "starting with a letter or _"),
                           rid);
    }
    auto quota = quotaFromBody(*body, {});
    if (!quota) return errorResponse(quota.status(), rid);
    Tenant t{**name, *quota, nowRfc3339()};
    std::string key = "sk-" + randomHex(24);
    {
      std::lock_guard lock(mutationMu);
      Status s = store.createTenant(t);
      if (s.code() == Code::kAlreadyExists) return errorResponse(s, rid, "TenantAlreadyExists");
      if (!s) return storeError(s, rid);
      s = store.putApiKey(ApiKey{sha256Hex(key), t.name, false, t.createdTime});
      if (!s) return storeError(s, rid);
      std::unique_lock q(quotaMu);
      quotas[t.name] = t.quota;
    }
    SLOG_INFO("created tenant {}", t.name);
    json::object o = tenantToJson(t);
    o["apiKey"] = key;  // shown once; the store keeps only its hash
    return jsonResponse(201, o, rid);
  }

  const std::string name(segs[2]);
  if (segs.size() == 4) {
    // POST /admin/tenants/{name}/keys: one more key (rotation: create, switch, delete tenant's
    // old key by recreating the tenant is not needed).
    if (segs[3] != "keys") {
      return errorResponse(notFound("no API at " + req.method + " " + req.path), rid, "NotFound");
    }
    if (req.method != "POST") return methodNotAllowed(req, "POST", rid);
    auto t = store.getTenant(name);
    if (!t) {
      if (t.status().code() == Code::kNotFound) return tenantNotFound(name, rid);
      return storeError(t.status(), rid);
    }
    std::string key = "sk-" + randomHex(24);
    if (Status s = store.putApiKey(ApiKey{sha256Hex(key), name, false, nowRfc3339()}); !s) {
      return storeError(s, rid);
    }
    return jsonResponse(201, json::object{{"name", name}, {"apiKey", key}}, rid);
  }

  if (req.method == "GET") {
    auto t = store.getTenant(name);
    if (!t) {
      if (t.status().code() == Code::kNotFound) return tenantNotFound(name, rid);
      return storeError(t.status(), rid);
    }
    return jsonResponse(200, tenantToJson(*t), rid);
  }
  if (req.method == "PUT") {
    auto body = validation::parseBodyObject(req.body);
    if (!body) return errorResponse(body.status(), rid, "MalformedJSON");
    std::lock_guard lock(mutationMu);
    auto t = store.getTenant(name);
    if (!t) {
      if (t.status().code() == Code::kNotFound) return tenantNotFound(name, rid);
      return storeError(t.status(), rid);
    }
    auto quota = quotaFromBody(*body, t->quota);
    if (!quota) return errorResponse(quota.status(), rid);
    t->quota = *quota;
    if (Status s = store.updateTenant(*t); !s) {
      if (s.code() == Code::kNotFound) return tenantNotFound(name, rid);
      return storeError(s, rid);
    }
    {
      std::unique_lock q(quotaMu);
      quotas[name] = t->quota;
    }
    SLOG_INFO("updated the quota of tenant {}: {}", name, tenantQuotaToJson(t->quota));
    return jsonResponse(200, tenantToJson(*t), rid);
  }
  if (req.method == "DELETE") {
    if (name == kAdminTenant) {
      return errorResponse(invalidArgument("tenant default holds the admin key and cannot be "
                                           "deleted"),
                           rid);
    }
    std::vector<FunctionSpec> gone;
    {
      std::lock_guard lock(mutationMu);
      auto removed = store.deleteTenant(name);
      if (!removed) {
        if (removed.status().code() == Code::kNotFound) return tenantNotFound(name, rid);
        return storeError(removed.status(), rid);
      }
      gone = std::move(*removed);
      {
        std::unique_lock k(keyMu);
        std::erase_if(callerByKeyHash, [&](const auto& kv) { return kv.second.tenant == name; });
      }
      {
        std::unique_lock q(quotaMu);
        quotas.erase(name);
      }
      for (const FunctionSpec& f : gone) cacheErase(name, f.name);
    }
    limiter.erase(name);
    limiter.erasePrefix(name + "/");
    for (const FunctionSpec& f : gone) guarded.functionDeleted(f);
    SLOG_INFO("deleted tenant {} and its {} function(s)", name, gone.size());
    HttpResponse r;
    r.status = 204;
    r.headers["x-fc-request-id"] = rid;
    return r;
  }
  return methodNotAllowed(req, "GET, PUT, DELETE", rid);
}

}  // namespace stratus
