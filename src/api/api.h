// Api: the REST API of DESIGN.md section 3 (Function Compute 3.0 shapes) over transport-neutral
// HttpRequest/HttpResponse values.
//
//   POST   /2023-03-30/functions                     create (code.zipFile base64)
//   GET    /2023-03-30/functions                     list (the caller's tenant only)
//   GET    /2023-03-30/functions/{name}              get
//   PUT    /2023-03-30/functions/{name}              update (new revision; old instances drain)
//   DELETE /2023-03-30/functions/{name}              delete
//   POST   /2023-03-30/functions/{name}/invocations  invoke (x-fc-invocation-type: Sync)
//
// Every platform error is a JSON body {"code": "...", "message": "..."} with the matching HTTP
// status (errorResponse()). A function error is a 200 with x-fc-error-type. Every response
// carries x-fc-request-id.
// Thread-safety: handle() and authenticate() are called concurrently; respond may be called
// from the invoker's threads.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "codepack/zip_import.h"
#include "common/http.h"
#include "common/invoke.h"
#include "common/status.h"
#include "store/store.h"

namespace stratus {

struct ApiOptions {
  ZipLimits zipLimits;
};

class Api {
 public:
  Api(MetadataStore& store, CodeCache& code, Invoker& invoker, ApiOptions options = {});
  ~Api();

  // "Authorization: Bearer <key>" -> the key's tenant; kUnauthenticated when missing or wrong.
  Result<std::string> authenticate(const HttpRequest& req);
  // Serves one authenticated request of `tenant`. respond is called exactly once.
  void handle(const std::string& tenant, HttpRequest req, HttpRespond respond);

  // First start: creates the admin key of tenant "default", stores its hash and writes the
  // key to keyFile with mode 0600. Later starts: reads keyFile. Returns the key.
  static Result<std::string> ensureAdminKey(MetadataStore& store,
                                            const std::filesystem::path& keyFile);

 private:
  MetadataStore& store_;
  CodeCache& code_;
  Invoker& invoker_;
  ApiOptions options_;
  // Request handlers and the in-memory caches that keep SQLite off the warm invoke path
  // (API key hash -> tenant, (tenant, name) -> spec). Defined in api_impl.h.
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// {"code": <name>, "message": ...} with the HTTP status for status.code(); sets
// x-fc-request-id. `code` overrides the JSON code name (e.g. "FunctionNotFound").
HttpResponse errorResponse(const Status& status, const std::string& requestId,
                           std::string_view code = {});
int httpStatusFor(Code code);

}  // namespace stratus
