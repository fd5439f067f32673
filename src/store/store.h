// MetadataStore: durable metadata -- functions and API keys (later: async tasks, records).
// One interface, two backends: SqliteStore (embedded default, this folder) and an etcd store
// (cluster mode). Implementations are thread-safe; every call is a short transaction.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/function.h"

namespace stratus {

struct ApiKey {
  std::string keySha256;  // we store only the hash of the secret
  std::string tenant;
  bool admin = false;
  std::string createdTime;
};

class MetadataStore {
 public:
  virtual ~MetadataStore() = default;

  // kAlreadyExists if (tenant, name) exists.
  virtual Status createFunction(const FunctionSpec& f) = 0;
  // kNotFound if absent.
  virtual Result<FunctionSpec> getFunction(const std::string& tenant, const std::string& name) = 0;
  // Sorted by name.
  virtual Result<std::vector<FunctionSpec>> listFunctions(const std::string& tenant) = 0;
  // Every tenant's functions (for recovery at startup).
  virtual Result<std::vector<FunctionSpec>> listAllFunctions() = 0;
  // Replaces the stored spec; kNotFound if absent. The caller bumps revision.
  virtual Status updateFunction(const FunctionSpec& f) = 0;
  // kNotFound if absent.
  virtual Status deleteFunction(const std::string& tenant, const std::string& name) = 0;

  virtual Status putApiKey(const ApiKey& key) = 0;
  // kNotFound if no key has this hash.
  virtual Result<ApiKey> findApiKey(const std::string& keySha256) = 0;
};

}  // namespace stratus
