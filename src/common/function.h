// FunctionSpec: one deployed function's configuration, as stored and as the API shows it
// (field names follow Alibaba Function Compute 3.0). Plain value type.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace stratus {

struct CustomRuntimeConfig {
  std::vector<std::string> command;  // default: ["/code/bootstrap"]
  std::vector<std::string> args;
  int port = 9000;
};

struct FunctionSpec {
  std::string tenant;  // owning tenant id; never shown to other tenants
  std::string name;    // functionName: [A-Za-z_][A-Za-z0-9_-]{0,63}
  std::string runtime;  // "python3" | "nodejs" | "custom" | "provided"
  std::string handler;  // "file.function" (python3, nodejs)
  int memoryMb = 128;
  int timeoutSec = 3;
  int instanceConcurrency = 1;
  int maxInstances = 100;
  std::map<std::string, std::string> environmentVariables;
  std::string description;
  std::string initializer;
  int initializationTimeoutSec = 3;
  CustomRuntimeConfig customRuntimeConfig;
  // Code: content address of the imported package and its sizes.
  std::string codeSha256;
  int64_t codeSize = 0;          // zipped bytes
  int64_t codeUnpackedSize = 0;  // bytes after extraction
  // Bumped on every update; instances of older revisions drain.
  int64_t revision = 1;
  std::string functionId;        // stable random id assigned at creation
  std::string createdTime;       // RFC 3339 UTC
  std::string lastModifiedTime;  // RFC 3339 UTC
};

// The API representation (no tenant, no code bytes).
json::object functionToJson(const FunctionSpec& f);
// Storage round trip: includes tenant and every field.
std::string functionToStorageJson(const FunctionSpec& f);
Result<FunctionSpec> functionFromStorageJson(std::string_view text);

// Current UTC time as RFC 3339 ("2026-11-27T08:34:12Z").
std::string nowRfc3339();

}  // namespace stratus
