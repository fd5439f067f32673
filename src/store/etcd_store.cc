#include "store/etcd_store.h"

#include <algorithm>

#include "common/base64.h"
#include "common/json.h"

namespace stratus {
namespace {

// Keeps [A-Za-z0-9._-] and percent-encodes the rest, so '/' in a name cannot split a key.
std::string escape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
    if (plain) {
      out += c;
    } else {
      out += '%';
      out += kHex[(static_cast<unsigned char>(c) >> 4) & 0xf];
      out += kHex[static_cast<unsigned char>(c) & 0xf];
    }
  }
  return out;
}

// The JSON object stored at a key; `what` names it in the error ("stored tenant is not an
// object").
Result<json::object> storedObject(std::string_view text, std::string_view what) {
  ASSIGN_OR_RETURN(json::value v, parseJson(text));
  if (!v.is_object()) return internalError("stored " + std::string(what) + " is not an object");
  return std::move(v.as_object());
}

std::string apiKeyToJson(const ApiKey& k) {
  json::object o;
  o["keySha256"] = k.keySha256;
  o["tenant"] = k.tenant;
  o["admin"] = k.admin;
  o["createdTime"] = k.createdTime;
  return json::serialize(o);
}

Result<ApiKey> apiKeyFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(const json::object o, storedObject(text, "API key"));
  ApiKey k;
  ASSIGN_OR_RETURN(auto sha, getString(o, "keySha256"));
  ASSIGN_OR_RETURN(auto tenant, getString(o, "tenant"));
  ASSIGN_OR_RETURN(auto admin, getBool(o, "admin"));
  ASSIGN_OR_RETURN(auto created, getString(o, "createdTime"));
  k.keySha256 = sha.value_or("");
  k.tenant = tenant.value_or("");
  k.admin = admin.value_or(false);
  k.createdTime = created.value_or("");
  return k;
}

std::string tenantToJson(const Tenant& t) {
  json::object o;
  o["name"] = t.name;
  o["quota"] = tenantQuotaToJson(t.quota);
  o["createdTime"] = t.createdTime.empty() ? nowRfc3339() : t.createdTime;
  return json::serialize(o);
}

Result<Tenant> tenantFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(const json::object o, storedObject(text, "tenant"));
  Tenant t;
  ASSIGN_OR_RETURN(auto name, getString(o, "name"));
  ASSIGN_OR_RETURN(auto quota, getString(o, "quota"));
  ASSIGN_OR_RETURN(auto created, getString(o, "createdTime"));
  t.name = name.value_or("");
  if (quota) {
    ASSIGN_OR_RETURN(t.quota, tenantQuotaFromJson(*quota));
  }
  t.createdTime = created.value_or("");
  return t;
}

std::string taskToJson(const AsyncTask& t) {
  json::object o;
  o["tenant"] = t.tenant;
  o["function"] = t.function;
  o["id"] = t.id;
  o["payload"] = base64Encode(t.payload);
  o["headersJson"] = t.headersJson;
  o["status"] = static_cast<int>(t.status);
  o["attempts"] = t.attempts;
  o["createdMs"] = t.createdMs;
  o["nextAttemptMs"] = t.nextAttemptMs;
  o["updatedMs"] = t.updatedMs;
  o["lastError"] = t.lastError;
  o["result"] = base64Encode(t.result);
  return json::serialize(o);
}

Result<AsyncTask> taskFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(const json::object o, storedObject(text, "async task"));
  AsyncTask t;
  ASSIGN_OR_RETURN(auto tenant, getString(o, "tenant"));
  ASSIGN_OR_RETURN(auto function, getString(o, "function"));
  ASSIGN_OR_RETURN(auto id, getString(o, "id"));
  ASSIGN_OR_RETURN(auto payload, getString(o, "payload"));
  ASSIGN_OR_RETURN(auto headers, getString(o, "headersJson"));
  ASSIGN_OR_RETURN(auto status, getInt(o, "status"));
  ASSIGN_OR_RETURN(auto attempts, getInt(o, "attempts"));
  ASSIGN_OR_RETURN(auto created, getInt(o, "createdMs"));
  ASSIGN_OR_RETURN(auto next, getInt(o, "nextAttemptMs"));
  ASSIGN_OR_RETURN(auto updated, getInt(o, "updatedMs"));
  ASSIGN_OR_RETURN(auto lastError, getString(o, "lastError"));
  ASSIGN_OR_RETURN(auto result, getString(o, "result"));
  t.tenant = tenant.value_or("");
  t.function = function.value_or("");
  t.id = id.value_or("");
  ASSIGN_OR_RETURN(t.payload, base64Decode(payload.value_or("")));
  t.headersJson = headers.value_or("{}");
  t.status = static_cast<AsyncTaskStatus>(status.value_or(0));
  t.attempts = static_cast<int>(attempts.value_or(0));
  t.createdMs = created.value_or(0);
  t.nextAttemptMs = next.value_or(0);
  t.updatedMs = updated.value_or(0);
  t.lastError = lastError.value_or("");
  ASSIGN_OR_RETURN(t.result, base64Decode(result.value_or("")));
  return t;
}

// Every value of kvs through parse (the key order is etcd's; callers sort by their own order).
template <typename T, typename Parse>
Result<std::vector<T>> parseValues(const std::vector<EtcdKv>& kvs, Parse parse) {
  std::vector<T> out;
  out.reserve(kvs.size());
  for (const auto& kv : kvs) {
    ASSIGN_OR_RETURN(T v, parse(kv.value));
    out.push_back(std::move(v));
  }
  return out;
}

Result<std::vector<FunctionSpec>> parseFunctions(const std::vector<EtcdKv>& kvs) {
  ASSIGN_OR_RETURN(std::vector<FunctionSpec> out,
                   parseValues<FunctionSpec>(kvs, functionFromStorageJson));
  std::sort(out.begin(), out.end(), [](const FunctionSpec& a, const FunctionSpec& b) {
    return a.tenant != b.tenant ? a.tenant < b.tenant : a.name < b.name;
  });
  return out;
}

// The transactions every table uses. Each is one etcd txn guarded by a compare on the key.

// Writes value at key only when the key does not exist yet; kAlreadyExists(conflict) otherwise.
Status createKey(EtcdClient& etcd, const std::string& key, std::string value,
                 std::string conflict) {
  ASSIGN_OR_RETURN(EtcdTxnResult r,
                   etcd.txn({EtcdCompare::absent(key)}, {EtcdOp::put(key, std::move(value))}));
  if (!r.succeeded) return alreadyExists(std::move(conflict));
  return Status::ok();
}

// Runs ops only when key exists; kNotFound(missing) otherwise.
Status ifKeyExists(EtcdClient& etcd, const std::string& key, std::vector<EtcdOp> ops,
                   std::string missing) {
  ASSIGN_OR_RETURN(EtcdTxnResult r, etcd.txn({EtcdCompare::exists(key)}, ops));
  if (!r.succeeded) return notFound(std::move(missing));
  return Status::ok();
}

// Writes value at key unless the key changed since modRevision: false when it did (another
// writer came first).
Result<bool> putIfUnchanged(EtcdClient& etcd, const std::string& key, int64_t modRevision,
                            std::string value) {
  ASSIGN_OR_RETURN(EtcdTxnResult r, etcd.txn({EtcdCompare::unchangedSince(key, modRevision)},
                                             {EtcdOp::put(key, std::move(value))}));
  return r.succeeded;
}

// Read-modify-write of one key with a mod_revision guard, retried on a concurrent change.
template <typename Modify>
Status updateGuarded(EtcdClient& etcd, const std::string& key, const std::string& what,
                     Modify modify) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto kv, etcd.get(key));
    if (!kv) return notFound(what + " not found");
    ASSIGN_OR_RETURN(std::string value, modify(kv->value));
    ASSIGN_OR_RETURN(bool written, putIfUnchanged(etcd, key, kv->modRevision, std::move(value)));
    if (written) return Status::ok();
  }
  return Status(Code::kAborted, "update " + what + ": too much contention");
}

}  // namespace

EtcdStore::EtcdStore(std::shared_ptr<EtcdClient> etcd, std::string prefix)
    : etcd_(std::move(etcd)), prefix_(std::move(prefix)) {
  if (prefix_.empty() || prefix_.back() != '/') prefix_ += '/';
}

std::string EtcdStore::key(std::initializer_list<std::string_view> parts) const {
  std::string k = prefix_;
  bool first = true;
  for (std::string_view p : parts) {
    if (!first) k += '/';
    // The first part is the table name, written as is.
    k += first ? std::string(p) : escape(p);
    first = false;
  }
  return k;
}

std::string EtcdStore::functionKey(const std::string& tenant, const std::string& name) const {
  return key({"functions", tenant, name});
}

// ---- functions ----

Status EtcdStore::createFunction(const FunctionSpec& f) {
  return createKey(*etcd_, functionKey(f.tenant, f.name), functionToStorageJson(f),
                   "function " + f.name + " already exists");
}

Result<FunctionSpec> EtcdStore::getFunction(const std::string& tenant, const std::string& name) {
  ASSIGN_OR_RETURN(auto kv, etcd_->get(functionKey(tenant, name)));
  if (!kv) return notFound("function " + name + " not found");
  return functionFromStorageJson(kv->value);
}

Result<std::vector<FunctionSpec>> EtcdStore::listFunctions(const std::string& tenant) {
  ASSIGN_OR_RETURN(auto kvs, etcd_->getPrefix(key({"functions", tenant}) + "/"));
  return parseFunctions(kvs);
}

Result<std::vector<FunctionSpec>> EtcdStore::listAllFunctions() {
  ASSIGN_OR_RETURN(auto kvs, etcd_->getPrefix(functionsPrefix()));
  return parseFunctions(kvs);
}

Status EtcdStore::updateFunction(const FunctionSpec& f) {
  std::string k = functionKey(f.tenant, f.name);
  return ifKeyExists(*etcd_, k, {EtcdOp::put(k, functionToStorageJson(f))},
                     "function " + f.name + " not found");
}

Status EtcdStore::deleteFunction(const std::string& tenant, const std::string& name) {
  std::string k = functionKey(tenant, name);
  return ifKeyExists(*etcd_, k, {EtcdOp::del(k), EtcdOp::del(key({"asyncconfig", tenant, name}))},
                     "function " + name + " not found");
}

// ---- tenants and keys ----

Status EtcdStore::putApiKey(const ApiKey& k) {
  return etcd_->put(key({"apikeys", k.keySha256}), apiKeyToJson(k));
}

Result<ApiKey> EtcdStore::findApiKey(const std::string& keySha256) {
  ASSIGN_OR_RETURN(auto kv, etcd_->get(key({"apikeys", keySha256})));
  if (!kv) return notFound("no such API key");
  return apiKeyFromJson(kv->value);
}

Status EtcdStore::createTenant(const Tenant& t) {
  return createKey(*etcd_, key({"tenants", t.name}), tenantToJson(t),
                   "tenant " + t.name + " already exists");
}

Result<Tenant> EtcdStore::getTenant(const std::string& name) {
  ASSIGN_OR_RETURN(auto kv, etcd_->get(key({"tenants", name})));
  if (!kv) return notFound("tenant " + name + " not found");
  return tenantFromJson(kv->value);
}

Result<std::vector<Tenant>> EtcdStore::listTenants() {
  ASSIGN_OR_RETURN(auto kvs, etcd_->getPrefix(prefix_ + "tenants/"));
  ASSIGN_OR_RETURN(std::vector<Tenant> out, parseValues<Tenant>(kvs, tenantFromJson));
  std::sort(out.begin(), out.end(),
            [](const Tenant& a, const Tenant& b) { return a.name < b.name; });
  return out;
}

Status EtcdStore::updateTenant(const Tenant& t) {
  return updateGuarded(*etcd_, key({"tenants", t.name}), "tenant " + t.name,
                       [&](const std::string& old) -> Result<std::string> {
                         ASSIGN_OR_RETURN(Tenant stored, tenantFromJson(old));
                         stored.quota = t.quota;
                         return tenantToJson(stored);
                       });
}

Result<std::vector<FunctionSpec>> EtcdStore::deleteTenant(const std::string& name) {
  const std::string tenantKey = key({"tenants", name});
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto tenant, etcd_->get(tenantKey));
    if (!tenant) return notFound("tenant " + name + " not found");
    const std::string fnPrefix = key({"functions", name}) + "/";
    ASSIGN_OR_RETURN(auto fnKvs, etcd_->getPrefix(fnPrefix));
    ASSIGN_OR_RETURN(std::vector<FunctionSpec> functions, parseFunctions(fnKvs));
    ASSIGN_OR_RETURN(auto keyKvs, etcd_->getPrefix(prefix_ + "apikeys/"));
    std::vector<EtcdCompare> guard{EtcdCompare::unchangedSince(tenantKey, tenant->modRevision)};
    std::vector<EtcdOp> ops{EtcdOp::del(tenantKey), EtcdOp::delPrefix(fnPrefix),
                            EtcdOp::delPrefix(key({"asyncconfig", name}) + "/"),
                            EtcdOp::delPrefix(key({"asynctasks", name}) + "/")};
    for (const auto& kv : keyKvs) {
      auto k = apiKeyFromJson(kv.value);
      if (k && k->tenant == name) ops.push_back(EtcdOp::del(kv.key));
    }
    // A function created meanwhile would be deleted without being returned: guard them too.
    for (const auto& kv : fnKvs)
      guard.push_back(EtcdCompare::unchangedSince(kv.key, kv.modRevision));
    ASSIGN_OR_RETURN(EtcdTxnResult r, etcd_->txn(guard, ops));
    if (r.succeeded) return functions;
  }
  return Status(Code::kAborted, "delete tenant " + name + ": too much contention");
}

// ---- async invocation ----

Result<std::string> EtcdStore::getAsyncConfig(const std::string& tenant,
                                              const std::string& function) {
  ASSIGN_OR_RETURN(auto kv, etcd_->get(key({"asyncconfig", tenant, function})));
  if (!kv) return notFound("no async invoke config for function " + function);
  return kv->value;
}

Status EtcdStore::putAsyncConfig(const std::string& tenant, const std::string& function,
                                 const std::string& configJson) {
  return etcd_->put(key({"asyncconfig", tenant, function}), configJson);
}

Status EtcdStore::deleteAsyncConfig(const std::string& tenant, const std::string& function) {
  ASSIGN_OR_RETURN(int64_t n, etcd_->del(key({"asyncconfig", tenant, function})));
  if (n == 0) return notFound("no async invoke config for function " + function);
  return Status::ok();
}

Status EtcdStore::enqueueAsyncTask(const AsyncTask& t) {
  return createKey(*etcd_, key({"asynctasks", t.tenant, t.function, t.id}), taskToJson(t),
                   "async task " + t.id + " already exists");
}

Result<AsyncTask> EtcdStore::getAsyncTask(const std::string& tenant, const std::string& function,
                                          const std::string& id) {
  ASSIGN_OR_RETURN(auto kv, etcd_->get(key({"asynctasks", tenant, function, id})));
  if (!kv) return notFound("async task " + id + " not found");
  return taskFromJson(kv->value);
}

Result<std::vector<AsyncTask>> EtcdStore::listAsyncTasks(const std::string& tenant,
                                                         const std::string& function,
                                                         std::optional<AsyncTaskStatus> status,
                                                         int limit) {
  ASSIGN_OR_RETURN(auto kvs, etcd_->getPrefix(key({"asynctasks", tenant, function}) + "/"));
  std::vector<AsyncTask> out;
  for (const auto& kv : kvs) {
    ASSIGN_OR_RETURN(AsyncTask t, taskFromJson(kv.value));
    if (status && t.status != *status) continue;
    out.push_back(std::move(t));
  }
  std::sort(out.begin(), out.end(), [](const AsyncTask& a, const AsyncTask& b) {
    return a.createdMs != b.createdMs ? a.createdMs > b.createdMs : a.id > b.id;
  });
  if (limit >= 0 && static_cast<int64_t>(out.size()) > limit) out.resize(limit);
  return out;
}

Result<std::vector<AsyncTask>> EtcdStore::claimDueAsyncTasks(int64_t nowMs, int limit) {
  ASSIGN_OR_RETURN(auto kvs, etcd_->getPrefix(prefix_ + "asynctasks/"));
  struct Due {
    AsyncTask task;
    std::string key;
    int64_t modRevision;
  };
  std::vector<Due> due;
  for (const auto& kv : kvs) {
    ASSIGN_OR_RETURN(AsyncTask t, taskFromJson(kv.value));
    if (t.status == AsyncTaskStatus::kEnqueued && t.nextAttemptMs <= nowMs) {
      due.push_back({std::move(t), kv.key, kv.modRevision});
    }
  }
  std::sort(due.begin(), due.end(),
            [](const Due& a, const Due& b) { return a.task.nextAttemptMs < b.task.nextAttemptMs; });
  std::vector<AsyncTask> out;
  for (auto& d : due) {
    if (static_cast<int>(out.size()) >= limit) break;
    d.task.status = AsyncTaskStatus::kRunning;
    d.task.attempts += 1;
    d.task.updatedMs = nowMs;
    // Another controller (or a racing claim) that took it first wins; skip it then.
    ASSIGN_OR_RETURN(bool claimed,
                     putIfUnchanged(*etcd_, d.key, d.modRevision, taskToJson(d.task)));
    if (claimed) out.push_back(std::move(d.task));
  }
  return out;
}

Status EtcdStore::updateAsyncTask(const AsyncTask& t) {
  return updateGuarded(*etcd_, key({"asynctasks", t.tenant, t.function, t.id}),
                       "async task " + t.id, [&](const std::string& old) -> Result<std::string> {
                         ASSIGN_OR_RETURN(AsyncTask stored, taskFromJson(old));
                         stored.status = t.status;
                         stored.attempts = t.attempts;
                         stored.nextAttemptMs = t.nextAttemptMs;
                         stored.updatedMs = t.updatedMs;
                         stored.lastError = t.lastError;
                         stored.result = t.result;
                         return taskToJson(stored);
                       });
}

Result<int64_t> EtcdStore::requeueRunningAsyncTasks(int64_t nowMs) {
  ASSIGN_OR_RETURN(auto kvs, etcd_->getPrefix(prefix_ + "asynctasks/"));
  int64_t n = 0;
  for (const auto& kv : kvs) {
    ASSIGN_OR_RETURN(AsyncTask t, taskFromJson(kv.value));
    if (t.status != AsyncTaskStatus::kRunning) continue;
    t.status = AsyncTaskStatus::kEnqueued;
    t.nextAttemptMs = nowMs;
    t.updatedMs = nowMs;
    t.attempts = std::max(t.attempts - 1, 0);
    ASSIGN_OR_RETURN(bool requeued, putIfUnchanged(*etcd_, kv.key, kv.modRevision, taskToJson(t)));
    if (requeued) ++n;
  }
  return n;
}

Result<std::optional<int64_t>> EtcdStore::nextAsyncTaskDueMs() {
  ASSIGN_OR_RETURN(auto kvs, etcd_->getPrefix(prefix_ + "asynctasks/"));
  std::optional<int64_t> next;
  for (const auto& kv : kvs) {
    ASSIGN_OR_RETURN(AsyncTask t, taskFromJson(kv.value));
    if (t.status != AsyncTaskStatus::kEnqueued) continue;
    if (!next || t.nextAttemptMs < *next) next = t.nextAttemptMs;
  }
  return next;
}

Result<int64_t> EtcdStore::countPendingAsyncTasks(const std::string& tenant,
                                                  const std::string& function) {
  ASSIGN_OR_RETURN(auto kvs, etcd_->getPrefix(key({"asynctasks", tenant, function}) + "/"));
  int64_t n = 0;
  for (const auto& kv : kvs) {
    ASSIGN_OR_RETURN(AsyncTask t, taskFromJson(kv.value));
    if (t.status == AsyncTaskStatus::kEnqueued || t.status == AsyncTaskStatus::kRunning) ++n;
  }
  return n;
}

}  // namespace stratus
