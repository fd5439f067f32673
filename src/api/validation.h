// Validation of the function create/update bodies (docs/api.md lists every rule).
//
// A body is first parsed into a JSON object (parseBodyObject), then its fields are applied onto
// a FunctionSpec (defaults for create, the stored spec for a partial update) and the merged spec
// is checked as a whole (validateSpec). Type errors and range errors are kInvalidArgument with a
// message naming the field; an over-size code package is kPayloadTooLarge. Unknown fields are
// ignored, as Function Compute does. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/function.h"
#include "common/json.h"
#include "common/status.h"

namespace stratus::validation {

inline constexpr int kMinMemoryMb = 128;
inline constexpr int kMaxMemoryMb = 3072;
inline constexpr int kMemoryStepMb = 128;
inline constexpr int kMaxTimeoutSec = 900;
inline constexpr int kMaxInstanceConcurrency = 200;
inline constexpr int kMaxMaxInstances = 1000;
inline constexpr int kMaxInitializationTimeoutSec = 300;
inline constexpr size_t kMaxDescriptionChars = 256;
inline constexpr size_t kMaxHandlerLength = 128;
// Sum of name and value bytes of all environment variables (Lambda allows 4 KB; we are roomier).
inline constexpr size_t kMaxEnvironmentBytes = 16 * 1024;
inline constexpr size_t kMaxCommandElements = 64;
inline constexpr size_t kMaxCommandElementBytes = 4096;

// The body must be a JSON object. Malformed JSON or another JSON type is kInvalidArgument.
Result<json::object> parseBodyObject(std::string_view body);

bool isValidFunctionName(std::string_view name);
// "file.function" with an optional relative directory: "index.handler", "src/app.main".
bool isValidHandler(std::string_view handler);
// Environment variable names the platform sets itself (FC_*, AWS_LAMBDA_*, STRATUS_*, ...).
bool isReservedEnvironmentName(std::string_view name);

// Copies every field present (and not null) in body onto spec. Type errors only; the ranges are
// validateSpec's job because an update is checked after merging. functionName is applied too.
Status applyFields(const json::object& body, FunctionSpec& spec);

// Range and shape rules on a complete spec.
Status validateSpec(const FunctionSpec& spec);

// Create: defaults + body, functionName and runtime required, then validateSpec.
Result<FunctionSpec> parseCreateSpec(const json::object& body);

// Update: current + body (partial), then validateSpec. functionName, if present, must equal
// current.name (a function cannot be renamed).
Result<FunctionSpec> applyUpdate(const json::object& body, const FunctionSpec& current);

// code.zipFile decoded. nullopt when the body has no "code"; kInvalidArgument when "code" has no
// zipFile, or zipFile is not a string or not base64; kPayloadTooLarge when the decoded zip is
// larger than maxZippedBytes (checked on the encoded length first, so a huge body is never
// decoded).
Result<std::optional<std::string>> decodeCode(const json::object& body, int64_t maxZippedBytes);

}  // namespace stratus::validation
