// Api: the REST API of DESIGN.md section 3 (Function Compute 3.0 shapes) over transport-neutral
// HttpRequest/HttpResponse values, with the front door's per-tenant policy (docs/api.md,
// docs/reliability.md).
//
//   POST   /2023-03-30/functions                     create (code.zipFile base64)
//   GET    /2023-03-30/functions                     list (the caller's tenant only)
//   GET    /2023-03-30/functions/{name}              get
//   PUT    /2023-03-30/functions/{name}              update (new revision; old instances drain)
//   DELETE /2023-03-30/functions/{name}              delete
//   POST   /2023-03-30/functions/{name}/invocations  invoke (x-fc-invocation-type: Sync|Async)
//   GET|PUT|DELETE /2023-03-30/functions/{name}/async-invoke-config
//   GET    /2023-03-30/functions/{name}/async-tasks[/{id}]
//   POST|GET /admin/tenants, GET|PUT|DELETE /admin/tenants/{name}   (admin keys only)
//
// Every request of a tenant passes its token bucket (quota requestsPerSecond), every invocation
// its function's bucket (functionRequestsPerSecond): 429 TooManyRequests with Retry-After.
// Invocations then pass the GuardedInvoker (admission, tenant instance/memory caps, circuit
// breaker). Async invocations are stored durably before the 202 and run by the AsyncDispatcher.
//
// Every platform error is a JSON body {"code": "...", "message": "..."} with the matching HTTP
// status (errorResponse()). A function error is a 200 with x-fc-error-type. Every response
// carries x-fc-request-id.
// Thread-safety: identify()/authenticate() and handle() are called concurrently; respond may be
// called from the invoker's threads.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "api/async_dispatcher.h"
#include "api/guarded_invoker.h"
#include "api/rate_limiter.h"
#include "codepack/zip_import.h"
#include "common/clock.h"
#include "common/http.h"
#include "common/invoke.h"
#include "common/status.h"
#include "store/store.h"

namespace stratus {

struct ApiOptions {
  ZipLimits zipLimits;
  // Monotonic time for rate limits and breakers; nullptr: the system's steady clock.
  const Clock* clock = nullptr;
  // Wall time (since the Unix epoch) for async due times; nullptr: WallClock.
  const Clock* wallClock = nullptr;
  AdmissionOptions admission;
  AsyncOptions async;
  // Run async tasks on a background thread (tests drive the dispatcher by hand instead).
  bool startAsyncDispatcher = true;
  int64_t maxAsyncPayloadBytes = 256 << 10;  // Function Compute's async event limit
  int64_t maxPendingAsyncTasksPerFunction = 10000;
  // The jitter source of async backoff; nullptr: random.
  std::function<double()> asyncJitter;
};

// Who is calling: the tenant a key belongs to, and whether the key may use /admin.
struct Caller {
  std::string tenant;
  bool admin = false;
};

class Api {
 public:
  Api(MetadataStore& store, CodeCache& code, Invoker& invoker, ApiOptions options = {});
  ~Api();  // stops the async dispatcher

  // "Authorization: Bearer <key>" (or x-api-key) -> its caller; kUnauthenticated when missing or
  // wrong.
  Result<Caller> identify(const HttpRequest& req);
  // identify(), tenant only.
  Result<std::string> authenticate(const HttpRequest& req);
  // Serves one authenticated request. respond is called exactly once.
  void handle(const Caller& caller, HttpRequest req, HttpRespond respond);
  // A non-admin caller of `tenant`.
  void handle(const std::string& tenant, HttpRequest req, HttpRespond respond);

  // Prometheus text of the front door's own counters (rate limits, admission, breakers, async).
  std::string metricsText() const;
  AsyncDispatcher& asyncDispatcher();
  GuardedInvoker& guardedInvoker();

  // First start: creates tenant "default" and its admin key, stores the key's hash and writes
  // the key to keyFile with mode 0600. Later starts: reads keyFile. Returns the key.
  static Result<std::string> ensureAdminKey(MetadataStore& store,
                                            const std::filesystem::path& keyFile);

 private:
  MetadataStore& store_;
  CodeCache& code_;
  Invoker& invoker_;
  ApiOptions options_;
  // Request handlers, the caches that keep SQLite off the warm invoke path, the limiters, the
  // guarded invoker and the async dispatcher. Defined in api_impl.h.
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// {"code": <name>, "message": ...} with the HTTP status for status.code(); sets
// x-fc-request-id. `code` overrides the JSON code name (e.g. "FunctionNotFound").
HttpResponse errorResponse(const Status& status, const std::string& requestId,
                           std::string_view code = {});
int httpStatusFor(Code code);

// One front-door rate-limit check (docs/reliability.md): against the tenant's bucket when
// function is null, else against that function's. nullopt when allowed; otherwise the 429
// TooManyRequests answer with Retry-After. Shared by the Api and the cluster gateway.
std::optional<HttpResponse> checkRateLimit(RateLimiter& limiter, const TenantQuota& quota,
                                           const std::string& tenant, const std::string* function,
                                           const std::string& requestId);

// The HTTP answer to an invocation: the function's body and status, x-fc-* accounting headers,
// x-fc-error-type for function errors, errorResponse() (+ Retry-After) for platform errors.
// Shared by the Api and the cluster gateway's direct-to-worker path.
HttpResponse invokeResponse(const InvokeResult& res, const std::string& runtime, bool wantLogTail,
                            const std::string& rid);

}  // namespace stratus
