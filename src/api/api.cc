#include "api/api.h"

#include <strings.h>

#include <algorithm>
#include <cstdio>

#include "api/api_impl.h"
#include "api/validation.h"
#include "common/base64.h"
#include "common/ids.h"
#include "common/json.h"
#include "common/log.h"

namespace stratus {
namespace {

constexpr std::string_view kApiVersion = "2023-03-30";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view defaultErrorCode(Code code) {
  switch (code) {
    case Code::kResourceExhausted:
      return "TooManyRequests";
    case Code::kUnavailable:
    case Code::kAborted:
      return "ServiceUnavailable";
    case Code::kInternal:
      return "InternalError";
    default:
      return codeName(code);
  }
}

HttpResponse jsonResponse(int status, const json::value& body, const std::string& rid) {
  HttpResponse r;
  r.status = status;
  r.headers["Content-Type"] = "application/json";
  r.headers["x-fc-request-id"] = rid;
  r.body = json::serialize(body);
  return r;
}

HttpResponse methodNotAllowed(const HttpRequest& req, std::string_view allow,
                              const std::string& rid) {
  HttpResponse r =
      errorResponse(invalidArgument("method " + req.method + " is not allowed on " + req.path +
                                    " (allowed: " + std::string(allow) + ")"),
                    rid, "MethodNotAllowed");
  r.status = 405;
  r.headers["Allow"] = std::string(allow);
  return r;
}

// Errors of CodeCache::install: a bad zip is the user's, anything else is ours.
HttpResponse codeError(const Status& s, const std::string& rid) {
  if (s.code() == Code::kInvalidArgument) return errorResponse(s, rid, "InvalidCode");
  if (s.code() == Code::kPayloadTooLarge) return errorResponse(s, rid, "PayloadTooLarge");
  SLOG_ERROR("install code package: {}", s.toString());
  return errorResponse(s, rid);
}

HttpResponse functionNotFound(const std::string& name, const std::string& rid) {
  return errorResponse(notFound("function " + name + " does not exist"), rid, "FunctionNotFound");
}

// Store failures other than the expected NotFound/AlreadyExists.
HttpResponse storeError(const Status& s, const std::string& rid) {
  SLOG_ERROR("metadata store: {}", s.toString());
  return errorResponse(s, rid);
}

bool isHopByHop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection", "keep-alive",    "proxy-authenticate", "proxy-authorization",
      "te",         "trailer",       "trailers",           "transfer-encoding",
      "upgrade",    "content-length"};
  for (auto n : kNames) {
    if (iequals(name, n)) return true;
  }
  return false;
}

std::string formatMs(int64_t us) { return std::to_string((us + 500) / 1000); }

std::string formatMb(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

HttpResponse invokeResponse(const InvokeResult& res, const std::string& runtime, bool wantLogTail,
                            const std::string& rid) {
  if (!res.status.isOk()) {
    std::string_view code;
    if (res.status.code() == Code::kNotFound) code = "FunctionNotFound";
    if (res.status.code() != Code::kResourceExhausted) {
      SLOG_WARN("invoke {}: {}", rid, res.status.toString());
    }
    return errorResponse(res.status, rid, code);
  }
  HttpResponse r;
  for (const auto& [k, v] : res.headers) {
    if (!isHopByHop(k)) r.headers[k] = v;
  }
  r.status = res.httpStatus;
  if (r.status < 100 || r.status > 599) {
    // A custom runtime answering with nonsense is the function's fault: report, do not crash.
    SLOG_WARN("invoke {}: function returned HTTP status {}", rid, res.httpStatus);
    r.status = 502;
  }
  if (res.functionError != FunctionErrorKind::kNone) {
    r.headers["Content-Type"] = "application/json";
    r.headers["x-fc-error-type"] = res.functionError == FunctionErrorKind::kHandled
                                       ? "HandledInvocationError"
                                       : "UnhandledInvocationError";
  } else if (runtime != "custom" && r.headers.find("Content-Type") == r.headers.end()) {
    r.headers["Content-Type"] = "application/json";
  }
  r.body = res.body;
  r.headers["x-fc-request-id"] = rid;
  if (wantLogTail) r.headers["x-fc-log-result"] = base64Encode(res.logTail);
  r.headers["x-fc-invocation-duration"] = formatMs(res.durationUs);
  r.headers["x-fc-max-memory-usage"] = formatMb(res.memoryPeakBytes);
  r.headers["x-fc-cpu-time"] = formatMs(res.cpuTimeNs / 1000);
  if (res.coldStart) r.headers["x-fc-init-duration"] = formatMs(res.initDurationUs);
  if (!res.instanceId.empty()) r.headers["x-fc-instance-id"] = res.instanceId;
  r.headers["x-fc-cold-start"] = res.coldStart ? "true" : "false";
  return r;
}

}  // namespace

int httpStatusFor(Code code) {
  switch (code) {
    case Code::kOk:
      return 200;
    case Code::kInvalidArgument:
      return 400;
    case Code::kUnauthenticated:
      return 401;
    case Code::kPermissionDenied:
      return 403;
    case Code::kNotFound:
      return 404;
    case Code::kAlreadyExists:
      return 409;
    case Code::kFailedPrecondition:
      return 412;
    case Code::kPayloadTooLarge:
      return 413;
    case Code::kResourceExhausted:
      return 429;
    case Code::kUnavailable:
    case Code::kAborted:
      return 503;
    case Code::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

HttpResponse errorResponse(const Status& status, const std::string& requestId,
                           std::string_view code) {
  json::object o;
  o["code"] = code.empty() ? defaultErrorCode(status.code()) : code;
  o["message"] = status.message();
  o["requestId"] = requestId;
  return jsonResponse(httpStatusFor(status.code()), o, requestId);
}

Api::Api(MetadataStore& store, CodeCache& code, Invoker& invoker, ApiOptions options)
    : store_(store),
      code_(code),
      invoker_(invoker),
      options_(options),
      impl_(std::make_unique<Impl>(*this)) {}

Api::~Api() = default;

void Api::handle(const std::string& tenant, HttpRequest req, HttpRespond respond) {
  std::string rid;
  if (auto h = req.header("x-fc-request-id"); h && !h->empty()) {
    rid = std::string(*h);
  } else {
    rid = newRequestId();
  }
  auto segs = splitPath(req.path);
  if (segs.size() >= 2 && segs[0] == kApiVersion && segs[1] == "functions") {
    if (segs.size() == 2) {
      if (req.method == "GET") return respond(impl_->list(tenant, req, rid));
      if (req.method == "POST") return respond(impl_->create(tenant, req, rid));
      return respond(methodNotAllowed(req, "GET, POST", rid));
    }
    std::string name(segs[2]);
    if (segs.size() == 3) {
      if (req.method == "GET") return respond(impl_->get(tenant, name, rid));
      if (req.method == "PUT") return respond(impl_->update(tenant, name, req, rid));
      if (req.method == "DELETE") return respond(impl_->remove(tenant, name, rid));
      return respond(methodNotAllowed(req, "GET, PUT, DELETE", rid));
    }
    if (segs.size() == 4 && segs[3] == "invocations") {
      if (req.method == "POST") {
        return impl_->invoke(tenant, name, std::move(req), rid, std::move(respond));
      }
      return respond(methodNotAllowed(req, "POST", rid));
    }
  }
  respond(errorResponse(notFound("no API at " + req.method + " " + req.path), rid, "NotFound"));
}

// ---- caches ----

Result<std::shared_ptr<const FunctionSpec>> Api::Impl::lookup(const std::string& tenant,
                                                              const std::string& name) {
  uint64_t generation;
  {
    std::shared_lock lock(specMu);
    auto it = specs.find({tenant, name});
    if (it != specs.end()) return it->second;
    generation = specGeneration;
  }
  ASSIGN_OR_RETURN(FunctionSpec f, api.store_.getFunction(tenant, name));
  auto ptr = std::make_shared<const FunctionSpec>(std::move(f));
  std::unique_lock lock(specMu);
  // A mutation in between may have made what we read stale; then leave the cache alone.
  if (specGeneration == generation) specs[{tenant, name}] = ptr;
  return ptr;
}

void Api::Impl::cachePut(const FunctionSpec& spec) {
  auto ptr = std::make_shared<const FunctionSpec>(spec);
  std::unique_lock lock(specMu);
  ++specGeneration;
  specs[{spec.tenant, spec.name}] = std::move(ptr);
}

void Api::Impl::cacheErase(const std::string& tenant, const std::string& name) {
  std::unique_lock lock(specMu);
  ++specGeneration;
  specs.erase({tenant, name});
}

// ---- handlers ----

HttpResponse Api::Impl::list(const std::string& tenant, const HttpRequest& req,
                             const std::string& rid) {
  auto all = api.store_.listFunctions(tenant);
  if (!all) return storeError(all.status(), rid);
  std::string prefix, startAfter;
  if (auto it = req.query.find("prefix"); it != req.query.end()) prefix = it->second;
  if (auto it = req.query.find("nextToken"); it != req.query.end()) startAfter = it->second;
  int64_t limit = -1;  // no limit parameter: everything in one page
  if (auto it = req.query.find("limit"); it != req.query.end()) {
    char* end = nullptr;
    long long v = std::strtoll(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0' || v < 1 || v > 1000) {
      return errorResponse(invalidArgument("limit must be an integer between 1 and 1000"), rid);
    }
    limit = v;
  }
  json::array fns;
  std::string next;
  for (const auto& f : *all) {  // sorted by name (store contract)
    if (!startAfter.empty() && f.name <= startAfter) continue;
    if (!prefix.empty() && f.name.compare(0, prefix.size(), prefix) != 0) continue;
    if (limit >= 0 && static_cast<int64_t>(fns.size()) == limit) {
      next = fns.back().as_object().at("functionName").as_string().c_str();
      break;
    }
    fns.emplace_back(functionToJson(f));
  }
  json::object o;
  o["functions"] = std::move(fns);
  if (!next.empty()) o["nextToken"] = next;
  return jsonResponse(200, o, rid);
}

HttpResponse Api::Impl::create(const std::string& tenant, const HttpRequest& req,
                               const std::string& rid) {
  auto body = validation::parseBodyObject(req.body);
  if (!body) return errorResponse(body.status(), rid, "MalformedJSON");
  auto spec = validation::parseCreateSpec(*body);
  if (!spec) return errorResponse(spec.status(), rid);
  auto zip = validation::decodeCode(*body, api.options_.zipLimits.maxZippedBytes);
  if (!zip) return errorResponse(zip.status(), rid);
  if (!zip->has_value()) {
    return errorResponse(invalidArgument("code.zipFile (the base64 of a zip file) is required"),
                         rid);
  }
  FunctionSpec& f = *spec;
  f.tenant = tenant;
  // Cheap duplicate check before the expensive extraction; the store's key is the real guard.
  if (auto existing = lookup(tenant, f.name); existing) {
    return errorResponse(alreadyExists("function " + f.name + " already exists"), rid,
                         "FunctionAlreadyExists");
  } else if (existing.status().code() != Code::kNotFound) {
    return storeError(existing.status(), rid);
  }
  auto code = api.code_.install(**zip, api.options_.zipLimits);
  if (!code) return codeError(code.status(), rid);
  f.codeSha256 = code->sha256;
  f.codeSize = code->zippedBytes;
  f.codeUnpackedSize = code->unpackedBytes;
  f.functionId = newRequestId();
  f.createdTime = nowRfc3339();
  f.lastModifiedTime = f.createdTime;
  f.revision = 1;
  {
    std::lock_guard lock(mutationMu);
    Status s = api.store_.createFunction(f);
    if (s.code() == Code::kAlreadyExists) {
      return errorResponse(s, rid, "FunctionAlreadyExists");
    }
    if (!s) return storeError(s, rid);
    cachePut(f);
  }
  SLOG_INFO("created function {}/{} ({}, code {})", tenant, f.name, f.runtime, f.codeSha256);
  return jsonResponse(200, functionToJson(f), rid);
}

HttpResponse Api::Impl::get(const std::string& tenant, const std::string& name,
                            const std::string& rid) {
  auto f = lookup(tenant, name);
  if (!f) {
    if (f.status().code() == Code::kNotFound) return functionNotFound(name, rid);
    return storeError(f.status(), rid);
  }
  return jsonResponse(200, functionToJson(**f), rid);
}

HttpResponse Api::Impl::update(const std::string& tenant, const std::string& name,
                               const HttpRequest& req, const std::string& rid) {
  auto body = validation::parseBodyObject(req.body);
  if (!body) return errorResponse(body.status(), rid, "MalformedJSON");
  auto current = lookup(tenant, name);
  if (!current) {
    if (current.status().code() == Code::kNotFound) return functionNotFound(name, rid);
    return storeError(current.status(), rid);
  }
  // Validate before extracting the code, so a bad field costs no extraction.
  if (auto pre = validation::applyUpdate(*body, **current); !pre) {
    return errorResponse(pre.status(), rid);
  }
  auto zip = validation::decodeCode(*body, api.options_.zipLimits.maxZippedBytes);
  if (!zip) return errorResponse(zip.status(), rid);
  std::optional<ImportedCode> code;
  if (zip->has_value()) {
    auto installed = api.code_.install(**zip, api.options_.zipLimits);
    if (!installed) return codeError(installed.status(), rid);
    code = std::move(*installed);
  }
  FunctionSpec merged;
  {
    std::lock_guard lock(mutationMu);
    // Re-read under the lock: the authoritative current revision.
    auto fresh = api.store_.getFunction(tenant, name);
    if (!fresh) {
      if (fresh.status().code() == Code::kNotFound) return functionNotFound(name, rid);
      return storeError(fresh.status(), rid);
    }
    auto m = validation::applyUpdate(*body, *fresh);
    if (!m) return errorResponse(m.status(), rid);
    merged = std::move(*m);
    if (code) {
      merged.codeSha256 = code->sha256;
      merged.codeSize = code->zippedBytes;
      merged.codeUnpackedSize = code->unpackedBytes;
    }
    merged.revision = fresh->revision + 1;
    merged.lastModifiedTime = nowRfc3339();
    Status s = api.store_.updateFunction(merged);
    if (s.code() == Code::kNotFound) return functionNotFound(name, rid);
    if (!s) return storeError(s, rid);
    cachePut(merged);
  }
  SLOG_INFO("updated function {}/{} to revision {}", tenant, name, merged.revision);
  api.invoker_.functionChanged(merged);
  return jsonResponse(200, functionToJson(merged), rid);
}

HttpResponse Api::Impl::remove(const std::string& tenant, const std::string& name,
                               const std::string& rid) {
  FunctionSpec gone;
  {
    std::lock_guard lock(mutationMu);
    auto f = api.store_.getFunction(tenant, name);
    if (!f) {
      if (f.status().code() == Code::kNotFound) return functionNotFound(name, rid);
      return storeError(f.status(), rid);
    }
    Status s = api.store_.deleteFunction(tenant, name);
    if (s.code() == Code::kNotFound) return functionNotFound(name, rid);
    if (!s) return storeError(s, rid);
    cacheErase(tenant, name);
    gone = std::move(*f);
  }
  SLOG_INFO("deleted function {}/{}", tenant, name);
  // The code tree stays in the CodeCache: draining instances may still have it mounted, and
  // other functions may share it. Reclaiming unreferenced trees is a later GC's job.
  api.invoker_.functionDeleted(gone);
  HttpResponse r;
  r.status = 204;
  r.headers["x-fc-request-id"] = rid;
  return r;
}

void Api::Impl::invoke(const std::string& tenant, const std::string& name, HttpRequest req,
                       const std::string& rid, HttpRespond respond) {
  if (auto type = req.header("x-fc-invocation-type"); type && !iequals(*type, "Sync")) {
    if (iequals(*type, "Async")) {
      return respond(errorResponse(invalidArgument("Async invocation is not supported yet"), rid));
    }
    return respond(
        errorResponse(invalidArgument("x-fc-invocation-type must be Sync or Async, got '" +
                                      std::string(*type) + "'"),
                      rid));
  }
  auto spec = lookup(tenant, name);
  if (!spec) {
    if (spec.status().code() == Code::kNotFound) return respond(functionNotFound(name, rid));
    return respond(storeError(spec.status(), rid));
  }
  InvokeRequest ir;
  ir.requestId = rid;
  if (auto lt = req.header("x-fc-log-type"); lt && iequals(*lt, "Tail")) ir.wantLogTail = true;
  for (auto& [k, v] : req.headers) {
    if (iequals(k, "authorization") || iequals(k, "x-api-key") || iequals(k, "x-fc-request-id") ||
        isHopByHop(k)) {
      continue;
    }
    ir.headers.emplace(k, v);
  }
  ir.headers["x-fc-request-id"] = rid;
  ir.payload = std::move(req.body);
  bool wantLogTail = ir.wantLogTail;
  std::shared_ptr<const FunctionSpec> fn = std::move(*spec);
  const FunctionSpec& fnRef = *fn;
  // The callback keeps the spec alive until the call is done, whatever the invoker keeps.
  api.invoker_.invoke(
      fnRef, std::move(ir),
      [fn = std::move(fn), rid, wantLogTail, respond = std::move(respond)](InvokeResult res) {
        respond(invokeResponse(res, fn->runtime, wantLogTail, rid));
      });
}

}  // namespace stratus
