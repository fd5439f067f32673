// Api::identify and Api::ensureAdminKey: API keys are random secrets; the store keeps only
// their SHA-256, so a leaked database does not leak usable keys.
#include <strings.h>

#include <system_error>

#include "api/api.h"
#include "api/api_impl.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/log.h"

namespace stratus {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

Status unauthenticated(std::string m) { return Status(Code::kUnauthenticated, std::move(m)); }

}  // namespace

Result<std::string> Api::authenticate(const HttpRequest& req) {
  ASSIGN_OR_RETURN(Caller c, identify(req));
  return c.tenant;
}

Result<Caller> Api::identify(const HttpRequest& req) {
  std::string_view key;
  if (auto auth = req.header("authorization")) {
    std::string_view v = trim(*auth);
    constexpr std::string_view kScheme = "bearer ";
    if (v.size() <= kScheme.size() ||
        ::strncasecmp(v.data(), kScheme.data(), kScheme.size()) != 0) {
      return unauthenticated("Authorization header must be 'Bearer <key>'");
    }
    key = trim(v.substr(kScheme.size()));
  } else if (auto x = req.header("x-api-key")) {
    key = trim(*x);
  }
  if (key.empty()) return unauthenticated("missing Authorization: Bearer <key> header");

  std::string hash = sha256Hex(key);
  {
    std::shared_lock lock(impl_->keyMu);
    auto it = impl_->callerByKeyHash.find(hash);
    if (it != impl_->callerByKeyHash.end()) return it->second;
  }
  auto found = store_.findApiKey(hash);
  if (!found) {
    if (found.status().code() == Code::kNotFound) return unauthenticated("invalid API key");
    SLOG_ERROR("look up API key: {}", found.status().toString());
    return found.status();
  }
  Caller caller{found->tenant, found->admin};
  std::unique_lock lock(impl_->keyMu);
  impl_->callerByKeyHash[hash] = caller;
  return caller;
}

Result<std::string> Api::ensureAdminKey(MetadataStore& store,
                                        const std::filesystem::path& keyFile) {
  // The admin's tenant is a tenant like the others (quotas, listing); it cannot be deleted.
  if (Status s = store.createTenant(Tenant{"default", {}, nowRfc3339()});
      !s.isOk() && s.code() != Code::kAlreadyExists) {
    return s.withContext("create tenant default");
  }
  std::string key;
  std::error_code ec;
  if (std::filesystem::exists(keyFile, ec)) {
    ASSIGN_OR_RETURN(std::string text, readFile(keyFile));
    key = std::string(trim(text));
    if (key.empty()) {
      return Status(Code::kFailedPrecondition, "admin key file " + keyFile.string() +
                                                   " is empty; delete it to generate a new key");
    }
    std::string hash = sha256Hex(key);
    auto found = store.findApiKey(hash);
    if (found) return key;
    if (found.status().code() != Code::kNotFound) {
      return found.status().withContext("look up the admin key");
    }
    // The key file survived but the database did not (fresh data dir, restored file): re-register
    // the key so that the operator's saved key keeps working.
    ApiKey k{hash, "default", true, nowRfc3339()};
    RETURN_IF_ERROR(store.putApiKey(k).withContext("store the admin key"));
    SLOG_INFO("re-registered the admin key from {}", keyFile.string());
    return key;
  }
  key = "sk-" + randomHex(24);
  ApiKey k{sha256Hex(key), "default", true, nowRfc3339()};
  // Store first: a crash before the file is written leaves an unusable hash, never a key file
  // that does not authenticate.
  RETURN_IF_ERROR(store.putApiKey(k).withContext("store the admin key"));
  // Only a missing parent is created: makeDirs chmods, and the parent is usually the data dir.
  if (keyFile.has_parent_path() && !std::filesystem::exists(keyFile.parent_path(), ec)) {
    RETURN_IF_ERROR(makeDirs(keyFile.parent_path(), 0755));
  }
  RETURN_IF_ERROR(writeFileAtomic(keyFile, key + "\n", 0600));
  SLOG_INFO("generated the admin API key of tenant default in {}", keyFile.string());
  return key;
}

}  // namespace stratus
