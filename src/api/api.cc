#include "api/api.h"

#include <fmt/format.h>
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

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
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

namespace {

constexpr std::string_view kApiVersion = "2023-03-30";

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

// Errors of CodeCache::install: a bad zip is the user's, anything else is ours.
HttpResponse codeError(const Status& s, const std::string& rid) {
  if (s.code() == Code::kInvalidArgument) return errorResponse(s, rid, "InvalidCode");
  if (s.code() == Code::kPayloadTooLarge) return errorResponse(s, rid, "PayloadTooLarge");
  SLOG_ERROR("install code package: {}", s.toString());
  return errorResponse(s, rid);
}

std::string formatMs(int64_t us) { return std::to_string((us + 500) / 1000); }

std::string formatMb(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace

HttpResponse invokeResponse(const InvokeResult& res, const std::string& runtime, bool wantLogTail,
                            const std::string& rid) {
  if (!res.status.isOk()) {
    std::string_view code;
    if (res.status.code() == Code::kNotFound) code = "FunctionNotFound";
    auto retryAfter = res.headers.find("Retry-After");
    if (retryAfter != res.headers.end()) {
      code = res.body;  // a refusal of the front door (GuardedInvoker): its code name
    } else if (res.status.code() != Code::kResourceExhausted) {
      SLOG_WARN("invoke {}: {}", rid, res.status.toString());
    }
    HttpResponse r = errorResponse(res.status, rid, code);
    if (retryAfter != res.headers.end()) r.headers["Retry-After"] = retryAfter->second;
    return r;
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

Api::Impl::Impl(Api& a)
    : api(a),
      clock(a.options_.clock != nullptr ? *a.options_.clock : systemClock),
      wall(a.options_.wallClock != nullptr ? *a.options_.wallClock : wallClock),
      limiter(clock),
      guarded(a.invoker_, clock, a.options_.admission,
              [this](const std::string& tenant) { return quotaOf(tenant); }),
      dispatcher(
          a.store_, guarded, wall, a.options_.async,
          [this](const std::string& tenant, const std::string& name) {
            return lookup(tenant, name);
          },
          a.options_.asyncJitter) {}

Api::Api(MetadataStore& store, CodeCache& code, Invoker& invoker, ApiOptions options)
    : store_(store),
      code_(code),
      invoker_(invoker),
      options_(std::move(options)),
      impl_(std::make_unique<Impl>(*this)) {
  if (Status s = impl_->dispatcher.recover(); !s.isOk()) {
    SLOG_ERROR("async: recover interrupted tasks: {}", s.toString());
  }
  if (options_.startAsyncDispatcher) impl_->dispatcher.start();
}

Api::~Api() { impl_->dispatcher.stop(); }

AsyncDispatcher& Api::asyncDispatcher() { return impl_->dispatcher; }
GuardedInvoker& Api::guardedInvoker() { return impl_->guarded; }

void Api::handle(const std::string& tenant, HttpRequest req, HttpRespond respond) {
  handle(Caller{tenant, false}, std::move(req), std::move(respond));
}

void Api::handle(const Caller& caller, HttpRequest req, HttpRespond respond) {
  const std::string& tenant = caller.tenant;
  std::string rid;
  if (auto h = req.header("x-fc-request-id"); h && !h->empty()) {
    rid = std::string(*h);
  } else {
    rid = newRequestId();
  }
  auto segs = splitPath(req.path);
  if (!segs.empty() && segs[0] == "admin") {
    return respond(impl_->admin(caller, req, segs, rid));
  }
  if (segs.size() >= 2 && segs[0] == kApiVersion && segs[1] == "functions") {
    // Invocations also pass their function's bucket; checked in invoke() after the lookup so
    // that an unknown function is a 404, not a 429.
    if (auto limited = impl_->rateLimit(tenant, nullptr, rid)) return respond(std::move(*limited));
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
    if (segs.size() == 4 && segs[3] == "async-invoke-config") {
      return respond(impl_->asyncConfig(tenant, name, req, rid));
    }
    if ((segs.size() == 4 || segs.size() == 5) && segs[3] == "async-tasks") {
      std::string id = segs.size() == 5 ? std::string(segs[4]) : std::string();
      return respond(impl_->asyncTasks(tenant, name, segs.size() == 5 ? &id : nullptr, req, rid));
    }
  }
  respond(errorResponse(notFound("no API at " + req.method + " " + req.path), rid, "NotFound"));
}

// ---- limits ----

TenantQuota Api::Impl::quotaOf(const std::string& tenant) {
  {
    std::shared_lock lock(quotaMu);
    auto it = quotas.find(tenant);
    if (it != quotas.end()) return it->second;
  }
  TenantQuota q;
  auto t = api.store_.getTenant(tenant);
  if (t.isOk()) {
    q = t->quota;
  } else if (t.status().code() != Code::kNotFound) {
    SLOG_ERROR("read the quota of tenant {}: {}", tenant, t.status().toString());
    return q;  // do not cache a failure
  }
  std::unique_lock lock(quotaMu);
  quotas[tenant] = q;
  return q;
}

std::optional<HttpResponse> Api::Impl::rateLimit(const std::string& tenant,
                                                 const std::string* function,
                                                 const std::string& rid) {
  auto limited = checkRateLimit(limiter, quotaOf(tenant), tenant, function, rid);
  if (limited) rateLimited.fetch_add(1, std::memory_order_relaxed);
  return limited;
}

std::optional<HttpResponse> checkRateLimit(RateLimiter& limiter, const TenantQuota& q,
                                           const std::string& tenant, const std::string* function,
                                           const std::string& requestId) {
  RateLimiter::Decision d;
  std::string what;
  if (function == nullptr) {
    d = limiter.tryAcquire(tenant, q.requestsPerSecond, static_cast<double>(q.burst));
    what = "tenant " + tenant + " is over its quota of " +
           fmt::format("{:g}", q.requestsPerSecond) + " requests per second";
  } else {
    d = limiter.tryAcquire(tenant + "/" + *function, q.functionRequestsPerSecond, 0);
    what = "function " + *function + " is over its quota of " +
           fmt::format("{:g}", q.functionRequestsPerSecond) + " invocations per second";
  }
  if (d.allowed) return std::nullopt;
  HttpResponse r =
      errorResponse(Status(Code::kResourceExhausted, what), requestId, "TooManyRequests");
  int64_t seconds = std::chrono::duration_cast<std::chrono::seconds>(d.retryAfter +
                                                                     std::chrono::milliseconds(999))
                        .count();
  r.headers["Retry-After"] = std::to_string(std::max<int64_t>(1, seconds));
  return r;
}

std::string Api::metricsText() const {
  AdmissionStats a = impl_->guarded.stats();
  std::string out;
  auto counter = [&](const char* name, const char* help, const char* type, int64_t v,
                     const char* labels = "") {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + labels + " " + std::to_string(v) + "\n";
  };
  counter("stratus_rate_limited_total", "Requests refused by a tenant or function token bucket.",
          "counter", impl_->rateLimited.load(std::memory_order_relaxed));
  out +=
      "# HELP stratus_admission_refused_total Invocations refused before the scheduler.\n"
      "# TYPE stratus_admission_refused_total counter\n";
  out += "stratus_admission_refused_total{reason=\"queue_full\"} " +
         std::to_string(a.refusedQueueFull) + "\n";
  out += "stratus_admission_refused_total{reason=\"tenant_limit\"} " +
         std::to_string(a.refusedTenantLimit) + "\n";
  out += "stratus_admission_refused_total{reason=\"breaker_open\"} " +
         std::to_string(a.refusedBreakerOpen) + "\n";
  counter("stratus_invocations_in_flight", "Invocations admitted and not finished.", "gauge",
          a.inFlight);
  counter("stratus_breaker_opens_total", "Times a function's circuit breaker opened.", "counter",
          a.breakerOpens);
  counter("stratus_breakers_open", "Functions whose circuit breaker is open or half-open.", "gauge",
          a.openBreakers);
  counter("stratus_async_accepted_total", "Async invocations stored and answered 202.", "counter",
          impl_->asyncAccepted.load(std::memory_order_relaxed));
  counter("stratus_async_in_flight", "Async tasks running now.", "gauge",
          impl_->dispatcher.inFlight());
  return out;
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
    if (TenantQuota q = quotaOf(tenant); q.maxFunctions > 0) {
      auto existing = api.store_.listFunctions(tenant);
      if (!existing) return storeError(existing.status(), rid);
      if (static_cast<int64_t>(existing->size()) >= q.maxFunctions) {
        return errorResponse(
            Status(Code::kPermissionDenied,
                   "tenant " + tenant + " already has " + std::to_string(existing->size()) +
                       " functions (quota maxFunctions " + std::to_string(q.maxFunctions) + ")"),
            rid, "QuotaExceeded");
      }
    }
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
  guarded.functionChanged(merged);
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
  guarded.functionDeleted(gone);
  limiter.erase(tenant + "/" + name);
  HttpResponse r;
  r.status = 204;
  r.headers["x-fc-request-id"] = rid;
  return r;
}

void Api::Impl::invoke(const std::string& tenant, const std::string& name, HttpRequest req,
                       const std::string& rid, HttpRespond respond) {
  bool async = false;
  if (auto type = req.header("x-fc-invocation-type"); type && !iequals(*type, "Sync")) {
    if (!iequals(*type, "Async")) {
      return respond(
          errorResponse(invalidArgument("x-fc-invocation-type must be Sync or Async, got '" +
                                        std::string(*type) + "'"),
                        rid));
    }
    async = true;
  }
  auto spec = lookup(tenant, name);
  if (!spec) {
    if (spec.status().code() == Code::kNotFound) return respond(functionNotFound(name, rid));
    return respond(storeError(spec.status(), rid));
  }
  if (auto limited = rateLimit(tenant, &name, rid)) return respond(std::move(*limited));
  if (async) return respond(invokeAsync(tenant, **spec, req, rid));
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
  guarded.invoke(
      fnRef, std::move(ir),
      [fn = std::move(fn), rid, wantLogTail, respond = std::move(respond)](InvokeResult res) {
        respond(invokeResponse(res, fn->runtime, wantLogTail, rid));
      });
}

}  // namespace stratus
