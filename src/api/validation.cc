#include "api/validation.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "common/base64.h"
#include "runtime/runtime.h"

namespace stratus::validation {
namespace {

bool isAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool isDigit(char c) { return c >= '0' && c <= '9'; }

// JS identifiers may contain '$'; Python's may not, but a '$' there just fails at import time
// with a function error the user can read, so one rule serves both runtimes.
bool isIdentifier(std::string_view s) {
  if (s.empty()) return false;
  if (!isAlpha(s[0]) && s[0] != '_' && s[0] != '$') return false;
  for (char c : s) {
    if (!isAlpha(c) && !isDigit(c) && c != '_' && c != '$') return false;
  }
  return true;
}

bool isEnvName(std::string_view s) {
  if (s.empty() || (!isAlpha(s[0]) && s[0] != '_')) return false;
  for (char c : s) {
    if (!isAlpha(c) && !isDigit(c) && c != '_') return false;
  }
  return true;
}

size_t utf8Length(std::string_view s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

Status setInt(const json::object& body, std::string_view key, int& out) {
  ASSIGN_OR_RETURN(auto v, getInt(body, key));
  if (v) {
    // Clamp into int range without wrapping, so 1e12 is reported as out of range, not as 0.
    if (*v > INT32_MAX) {
      out = INT32_MAX;
    } else if (*v < INT32_MIN) {
      out = INT32_MIN;
    } else {
      out = static_cast<int>(*v);
    }
  }
  return Status::ok();
}

Status setString(const json::object& body, std::string_view key, std::string& out) {
  ASSIGN_OR_RETURN(auto v, getString(body, key));
  if (v) out = std::move(*v);
  return Status::ok();
}

Status setStringArray(const json::object& o, std::string_view field, std::string_view key,
                      std::vector<std::string>& out) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return Status::ok();
  if (!v->is_array()) return invalidArgument(std::string(field) + " must be an array of strings");
  std::vector<std::string> tmp;
  for (const auto& e : v->as_array()) {
    if (!e.is_string()) return invalidArgument(std::string(field) + " must be an array of strings");
    tmp.emplace_back(e.as_string());
  }
  out = std::move(tmp);
  return Status::ok();
}

Status range(std::string_view field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return invalidArgument(std::string(field) + " must be between " + std::to_string(lo) + " and " +
                           std::to_string(hi) + ", got " + std::to_string(v));
  }
  return Status::ok();
}

Status validateCommandList(std::string_view field, const std::vector<std::string>& v,
                           bool nonEmptyElements) {
  if (v.size() > kMaxCommandElements) {
    return invalidArgument(std::string(field) + " has more than " +
                           std::to_string(kMaxCommandElements) + " elements");
  }
  for (const auto& s : v) {
    if (s.size() > kMaxCommandElementBytes) {
      return invalidArgument(std::string(field) + " has an element longer than " +
                             std::to_string(kMaxCommandElementBytes) + " bytes");
    }
    if (s.find('\0') != std::string::npos) {
      return invalidArgument(std::string(field) + " elements must not contain NUL bytes");
    }
    if (nonEmptyElements && s.empty()) {
      return invalidArgument(std::string(field) + " elements must not be empty");
    }
  }
  return Status::ok();
}

}  // namespace

Result<json::object> parseBodyObject(std::string_view body) {
  auto v = parseJson(body);
  if (!v) return invalidArgument("request body is not valid JSON: " + v.status().message());
  if (!v->is_object()) return invalidArgument("request body must be a JSON object");
  return std::move(v->as_object());
}

bool isValidFunctionName(std::string_view name) {
  // ^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$
  if (name.empty() || name.size() > 64) return false;
  if (!isAlpha(name[0]) && name[0] != '_') return false;
  for (char c : name) {
    if (!isAlpha(c) && !isDigit(c) && c != '_' && c != '-') return false;
  }
  return true;
}

bool isValidHandler(std::string_view handler) {
  if (handler.empty() || handler.size() > kMaxHandlerLength) return false;
  size_t dot = handler.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return false;
  if (!isIdentifier(handler.substr(dot + 1))) return false;
  std::string_view module = handler.substr(0, dot);
  if (module.front() == '/') return false;
  // Path segments of the module: no empty segment, no "." or "..", printable ASCII only.
  size_t i = 0;
  while (i <= module.size()) {
    size_t j = module.find('/', i);
    if (j == std::string_view::npos) j = module.size();
    std::string_view seg = module.substr(i, j - i);
    if (seg.empty() || seg == "." || seg == "..") return false;
    for (char c : seg) {
      if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f ||
          c == '\\') {
        return false;
      }
    }
    i = j + 1;
  }
  return true;
}

bool isReservedEnvironmentName(std::string_view name) {
  static constexpr std::array<std::string_view, 3> kPrefixes = {"FC_", "AWS_LAMBDA_", "STRATUS_"};
  static constexpr std::array<std::string_view, 3> kNames = {"_HANDLER", "LAMBDA_TASK_ROOT",
                                                             "LAMBDA_RUNTIME_DIR"};
  for (auto p : kPrefixes) {
    if (name.substr(0, p.size()) == p) return true;
  }
  for (auto n : kNames) {
    if (name == n) return true;
  }
  return false;
}

Status applyFields(const json::object& body, FunctionSpec& spec) {
  RETURN_IF_ERROR(setString(body, "functionName", spec.name));
  RETURN_IF_ERROR(setString(body, "runtime", spec.runtime));
  RETURN_IF_ERROR(setString(body, "handler", spec.handler));
  RETURN_IF_ERROR(setInt(body, "memorySize", spec.memoryMb));
  RETURN_IF_ERROR(setInt(body, "timeout", spec.timeoutSec));
  RETURN_IF_ERROR(setInt(body, "instanceConcurrency", spec.instanceConcurrency));
  RETURN_IF_ERROR(setInt(body, "maxInstances", spec.maxInstances));
  RETURN_IF_ERROR(setString(body, "description", spec.description));
  RETURN_IF_ERROR(setString(body, "initializer", spec.initializer));
  RETURN_IF_ERROR(setInt(body, "initializationTimeout", spec.initializationTimeoutSec));

  if (const json::value* env = body.if_contains("environmentVariables");
      env != nullptr && !env->is_null()) {
    if (!env->is_object()) {
      return invalidArgument("environmentVariables must be an object of string values");
    }
    // An update replaces the whole map (as Function Compute does), not key by key.
    std::map<std::string, std::string> vars;
    for (const auto& kv : env->as_object()) {
      if (!kv.value().is_string()) {
        return invalidArgument("environmentVariables." + std::string(kv.key()) +
                               " must be a string");
      }
      vars[std::string(kv.key())] = std::string(kv.value().as_string());
    }
    spec.environmentVariables = std::move(vars);
  }

  if (const json::value* c = body.if_contains("customRuntimeConfig");
      c != nullptr && !c->is_null()) {
    if (!c->is_object()) return invalidArgument("customRuntimeConfig must be an object");
    const json::object& co = c->as_object();
    CustomRuntimeConfig cfg;  // replaced whole, like environmentVariables
    RETURN_IF_ERROR(setStringArray(co, "customRuntimeConfig.command", "command", cfg.command));
    RETURN_IF_ERROR(setStringArray(co, "customRuntimeConfig.args", "args", cfg.args));
    auto port = getInt(co, "port");
    if (!port) return invalidArgument("customRuntimeConfig.port must be an integer");
    if (*port) {
      cfg.port = static_cast<int>(std::clamp<int64_t>(**port, INT32_MIN, INT32_MAX));
    }
    spec.customRuntimeConfig = std::move(cfg);
  }
  return Status::ok();
}

Status validateSpec(const FunctionSpec& spec) {
  if (spec.name.empty()) return invalidArgument("functionName is required");
  if (!isValidFunctionName(spec.name)) {
    return invalidArgument("functionName '" + spec.name +
                           "' is invalid: it must match ^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$");
  }
  if (spec.runtime.empty()) {
    return invalidArgument("runtime is required; known runtimes: " + runtime::knownRuntimesList());
  }
  if (!runtime::isKnownRuntime(spec.runtime)) {
    return invalidArgument("runtime '" + spec.runtime +
                           "' is not supported; known runtimes: " + runtime::knownRuntimesList());
  }
  const bool builtin = spec.runtime == "python3" || spec.runtime == "nodejs";
  if (builtin && spec.handler.empty()) {
    return invalidArgument("handler is required for runtime " + spec.runtime +
                           " (e.g. \"index.handler\")");
  }
  if (!spec.handler.empty()) {
    if (builtin && !isValidHandler(spec.handler)) {
      return invalidArgument("handler '" + spec.handler +
                             "' is invalid: expected file.function, e.g. \"index.handler\" or "
                             "\"src/app.main\" (relative path, no '..')");
    }
    if (spec.handler.size() > kMaxHandlerLength) {
      return invalidArgument("handler is longer than " + std::to_string(kMaxHandlerLength) +
                             " characters");
    }
  }
  if (!spec.initializer.empty()) {
    if (builtin && !isValidHandler(spec.initializer)) {
      return invalidArgument("initializer '" + spec.initializer +
                             "' is invalid: expected file.function, e.g. \"index.initializer\"");
    }
    if (spec.initializer.size() > kMaxHandlerLength) {
      return invalidArgument("initializer is longer than " + std::to_string(kMaxHandlerLength) +
                             " characters");
    }
  }
  RETURN_IF_ERROR(range("memorySize", spec.memoryMb, kMinMemoryMb, kMaxMemoryMb));
  if (spec.memoryMb % kMemoryStepMb != 0) {
    return invalidArgument("memorySize must be a multiple of 128 (MB), got " +
                           std::to_string(spec.memoryMb));
  }
  RETURN_IF_ERROR(range("timeout", spec.timeoutSec, 1, kMaxTimeoutSec));
  RETURN_IF_ERROR(
      range("instanceConcurrency", spec.instanceConcurrency, 1, kMaxInstanceConcurrency));
  RETURN_IF_ERROR(range("maxInstances", spec.maxInstances, 1, kMaxMaxInstances));
  RETURN_IF_ERROR(range("initializationTimeout", spec.initializationTimeoutSec, 1,
                        kMaxInitializationTimeoutSec));
  if (utf8Length(spec.description) > kMaxDescriptionChars) {
    return invalidArgument("description is longer than " + std::to_string(kMaxDescriptionChars) +
                           " characters");
  }

  size_t envBytes = 0;
  for (const auto& [k, v] : spec.environmentVariables) {
    if (!isEnvName(k)) {
      return invalidArgument("environment variable name '" + k +
                             "' is invalid: it must match ^[A-Za-z_][A-Za-z0-9_]*$");
    }
    if (isReservedEnvironmentName(k)) {
      return invalidArgument("environment variable " + k +
                             " is reserved for the platform (FC_*, AWS_LAMBDA_*, STRATUS_*, "
                             "_HANDLER, LAMBDA_TASK_ROOT, LAMBDA_RUNTIME_DIR)");
    }
    if (v.find('\0') != std::string::npos) {
      return invalidArgument("environment variable " + k + " contains a NUL byte");
    }
    envBytes += k.size() + v.size();
  }
  if (envBytes > kMaxEnvironmentBytes) {
    return invalidArgument("environmentVariables total " + std::to_string(envBytes) +
                           " bytes, more than the limit of " +
                           std::to_string(kMaxEnvironmentBytes));
  }

  RETURN_IF_ERROR(
      validateCommandList("customRuntimeConfig.command", spec.customRuntimeConfig.command, true));
  RETURN_IF_ERROR(
      validateCommandList("customRuntimeConfig.args", spec.customRuntimeConfig.args, false));
  RETURN_IF_ERROR(range("customRuntimeConfig.port", spec.customRuntimeConfig.port, 1, 65535));
  return Status::ok();
}

Result<FunctionSpec> parseCreateSpec(const json::object& body) {
  FunctionSpec spec;
  RETURN_IF_ERROR(applyFields(body, spec));
  RETURN_IF_ERROR(validateSpec(spec));
  return spec;
}

Result<FunctionSpec> applyUpdate(const json::object& body, const FunctionSpec& current) {
  FunctionSpec spec = current;
  RETURN_IF_ERROR(applyFields(body, spec));
  if (spec.name != current.name) {
    return invalidArgument("functionName '" + spec.name + "' does not match the function '" +
                           current.name + "' being updated; functions cannot be renamed");
  }
  RETURN_IF_ERROR(validateSpec(spec));
  return spec;
}

Result<std::optional<std::string>> decodeCode(const json::object& body, int64_t maxZippedBytes) {
  const json::value* code = body.if_contains("code");
  if (code == nullptr || code->is_null()) return std::optional<std::string>();
  if (!code->is_object()) return invalidArgument("code must be an object {\"zipFile\": base64}");
  const json::value* zip = code->as_object().if_contains("zipFile");
  if (zip == nullptr || zip->is_null()) {
    return invalidArgument("code.zipFile (the base64 of a zip file) is required");
  }
  if (!zip->is_string()) return invalidArgument("code.zipFile must be a base64 string");
  std::string_view text = zip->as_string();
  // 4 base64 characters carry 3 bytes; the slack allows for newlines the decoder skips.
  auto limit = static_cast<uint64_t>(maxZippedBytes);
  if (text.size() / 4 * 3 > limit + limit / 16 + 1024) {
    return Status(Code::kPayloadTooLarge, "code.zipFile is larger than the limit of " +
                                              std::to_string(maxZippedBytes) + " bytes");
  }
  auto decoded = base64Decode(text);
  if (!decoded) {
    return invalidArgument("code.zipFile is not valid base64: " + decoded.status().message());
  }
  if (static_cast<int64_t>(decoded->size()) > maxZippedBytes) {
    return Status(Code::kPayloadTooLarge, "code.zipFile decodes to " +
                                              std::to_string(decoded->size()) +
                                              " bytes, more than the limit of " +
                                              std::to_string(maxZippedBytes) + " bytes");
  }
  if (decoded->empty()) return invalidArgument("code.zipFile is empty");
  return std::optional<std::string>(std::move(*decoded));
}

}  // namespace stratus::validation
