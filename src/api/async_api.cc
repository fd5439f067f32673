// The async half of the API: accepting an Async invocation (durable before the 202), the
// per-function async invoke config, and task status (docs/api.md "Async invocation").
#include <cstdlib>

#include "api/api.h"
#include "api/api_impl.h"
#include "common/log.h"

namespace stratus {
namespace {

int64_t nowMs(const Clock& c) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(c.now().time_since_epoch()).count();
}

json::object taskToJson(const AsyncTask& t) {
  json::object o;
  o["taskId"] = t.id;
  o["functionName"] = t.function;
  o["status"] = asyncTaskStatusName(t.status);
  o["attempts"] = t.attempts;
  o["createdTimeMs"] = t.createdMs;
  o["lastModifiedTimeMs"] = t.updatedMs;
  if (t.status == AsyncTaskStatus::kEnqueued) o["nextAttemptTimeMs"] = t.nextAttemptMs;
  if (!t.lastError.empty()) {
    auto e = parseJson(t.lastError);
    o["error"] = e.isOk() ? std::move(e).value() : json::value(t.lastError);
  }
  if (t.status == AsyncTaskStatus::kSucceeded) o["result"] = t.result;
  return o;
}

}  // namespace

HttpResponse Api::Impl::invokeAsync(const std::string& tenant, const FunctionSpec& fn,
                                    HttpRequest& req, const std::string& rid) {
  if (static_cast<int64_t>(req.body.size()) > api.options_.maxAsyncPayloadBytes) {
    return errorResponse(
        Status(Code::kPayloadTooLarge,
               "an async event is at most " + std::to_string(api.options_.maxAsyncPayloadBytes) +
                   " bytes; this one has " + std::to_string(req.body.size())),
        rid, "PayloadTooLarge");
  }
  auto pending = api.store_.countPendingAsyncTasks(tenant, fn.name);
  if (!pending) return storeError(pending.status(), rid);
  if (*pending >= api.options_.maxPendingAsyncTasksPerFunction) {
    HttpResponse r = errorResponse(
        Status(Code::kResourceExhausted,
               "function " + fn.name + " already has " + std::to_string(*pending) +
                   " async tasks waiting (bound " +
                   std::to_string(api.options_.maxPendingAsyncTasksPerFunction) + ")"),
        rid, "AsyncQueueFull");
    r.headers["Retry-After"] = "5";
    return r;
  }
  json::object headers;
  for (auto& [k, v] : req.headers) {
    if (iequals(k, "authorization") || iequals(k, "x-api-key") || iequals(k, "x-fc-request-id") ||
        iequals(k, "x-fc-invocation-type") || isHopByHop(k)) {
      continue;
    }
    headers[k] = v;
  }
  AsyncTask t;
  t.tenant = tenant;
  t.function = fn.name;
  t.id = rid;
  t.payload = std::move(req.body);
  t.headersJson = json::serialize(headers);
  t.createdMs = nowMs(wall);
  t.nextAttemptMs = t.createdMs;
  t.updatedMs = t.createdMs;
  // Committed (fsynced) before the 202: an accepted task survives kill -9.
  Status s = api.store_.enqueueAsyncTask(t);
  if (!s.isOk() && s.code() != Code::kAlreadyExists) return storeError(s, rid);
  // kAlreadyExists: the client resent its request id; the first acceptance stands (idempotent).
  if (s.isOk()) {
    asyncAccepted.fetch_add(1, std::memory_order_relaxed);
    dispatcher.notify();
  }
  HttpResponse r;
  r.status = 202;
  r.headers["x-fc-request-id"] = rid;
  return r;
}

HttpResponse Api::Impl::asyncConfig(const std::string& tenant, const std::string& name,
                                    const HttpRequest& req, const std::string& rid) {
  auto fn = lookup(tenant, name);
  if (!fn) {
    if (fn.status().code() == Code::kNotFound) return functionNotFound(name, rid);
    return storeError(fn.status(), rid);
  }
  MetadataStore& store = api.store_;
  if (req.method == "GET") {
    auto text = store.getAsyncConfig(tenant, name);
    if (!text) {
      if (text.status().code() == Code::kNotFound) {
        return errorResponse(text.status(), rid, "AsyncConfigNotFound");
      }
      return storeError(text.status(), rid);
    }
    auto cfg = parseAsyncInvokeConfig(*text);
    if (!cfg) return storeError(cfg.status(), rid);
    json::object o = asyncInvokeConfigToJson(*cfg);
    o["functionName"] = name;
    return jsonResponse(200, o, rid);
  }
  if (req.method == "PUT") {
    auto cfg = parseAsyncInvokeConfig(req.body);
    if (!cfg) {
      return errorResponse(cfg.status(), rid,
                           cfg.status().message().find("JSON") != std::string::npos
                               ? "MalformedJSON"
                               : std::string_view());
    }
    std::string text = json::serialize(asyncInvokeConfigToJson(*cfg));
    if (Status s = store.putAsyncConfig(tenant, name, text); !s) return storeError(s, rid);
    json::object o = asyncInvokeConfigToJson(*cfg);
    o["functionName"] = name;
    return jsonResponse(200, o, rid);
  }
  if (req.method == "DELETE") {
    Status s = store.deleteAsyncConfig(tenant, name);
    if (s.code() == Code::kNotFound) return errorResponse(s, rid, "AsyncConfigNotFound");
    if (!s) return storeError(s, rid);
    HttpResponse r;
    r.status = 204;
    r.headers["x-fc-request-id"] = rid;
    return r;
  }
  return methodNotAllowed(req, "GET, PUT, DELETE", rid);
}

HttpResponse Api::Impl::asyncTasks(const std::string& tenant, const std::string& name,
                                   const std::string* id, const HttpRequest& req,
                                   const std::string& rid) {
  if (req.method != "GET") return methodNotAllowed(req, "GET", rid);
  MetadataStore& store = api.store_;
  if (id != nullptr) {
    // Tasks outlive their function (kept for inspection), so no function lookup here; the
    // tenant in the key keeps other tenants' tasks invisible.
    auto t = store.getAsyncTask(tenant, name, *id);
    if (!t) {
      if (t.status().code() == Code::kNotFound) {
        return errorResponse(t.status(), rid, "AsyncTaskNotFound");
      }
      return storeError(t.status(), rid);
    }
    return jsonResponse(200, taskToJson(*t), rid);
  }
  std::optional<AsyncTaskStatus> status;
  if (auto it = req.query.find("status"); it != req.query.end()) {
    status = parseAsyncTaskStatus(it->second);
    if (!status) {
      return errorResponse(invalidArgument("status must be Enqueued, Running, Succeeded or Failed"),
                           rid);
    }
  }
  int limit = 100;
  if (auto it = req.query.find("limit"); it != req.query.end()) {
    char* end = nullptr;
    long v = std::strtol(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0' || v < 1 || v > 1000) {
      return errorResponse(invalidArgument("limit must be an integer between 1 and 1000"), rid);
    }
    limit = static_cast<int>(v);
  }
  auto tasks = store.listAsyncTasks(tenant, name, status, limit);
  if (!tasks) return storeError(tasks.status(), rid);
  if (tasks->empty()) {
    // Another tenant's function, or none at all: 404 like every other endpoint (tasks of a
    // deleted function stay listable while they exist).
    auto fn = lookup(tenant, name);
    if (!fn) {
      if (fn.status().code() == Code::kNotFound) return functionNotFound(name, rid);
      return storeError(fn.status(), rid);
    }
  }
  json::array arr;
  for (const AsyncTask& t : *tasks) arr.emplace_back(taskToJson(t));
  return jsonResponse(200, json::object{{"tasks", std::move(arr)}}, rid);
}

}  // namespace stratus
