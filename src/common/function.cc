#include "common/function.h"

#include <ctime>

namespace stratus {
namespace {

json::array toJsonArray(const std::vector<std::string>& v) {
  json::array a;
  a.reserve(v.size());
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

json::object envToJson(const std::map<std::string, std::string>& env) {
  json::object o;
  for (const auto& [k, v] : env) o[k] = v;
  return o;
}

json::object customConfigToJson(const CustomRuntimeConfig& c) {
  json::object o;
  o["command"] = toJsonArray(c.command);
  o["args"] = toJsonArray(c.args);
  o["port"] = c.port;
  return o;
}

// Storage readers are lenient about absent fields (older rows, hand edits) but strict about
// types: a wrong type means a corrupt row, which must not be silently half-read.
Status readString(const json::object& o, std::string_view key, std::string& out) {
  ASSIGN_OR_RETURN(auto v, getString(o, key));
  if (v) out = std::move(*v);
  return Status::ok();
}

template <typename Int>
Status readInt(const json::object& o, std::string_view key, Int& out) {
  ASSIGN_OR_RETURN(auto v, getInt(o, key));
  if (v) out = static_cast<Int>(*v);
  return Status::ok();
}

Status readStringArray(const json::object& o, std::string_view key, std::vector<std::string>& out) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || v->is_null()) return Status::ok();
  if (!v->is_array()) return invalidArgument(std::string(key) + " must be an array");
  out.clear();
  for (const auto& e : v->as_array()) {
    if (!e.is_string()) return invalidArgument(std::string(key) + " must hold strings");
    out.emplace_back(e.as_string());
  }
  return Status::ok();
}

}  // namespace

json::object functionToJson(const FunctionSpec& f) {
  json::object o;
  o["functionName"] = f.name;
  o["functionId"] = f.functionId;
  o["runtime"] = f.runtime;
  o["handler"] = f.handler;
  o["memorySize"] = f.memoryMb;
  o["timeout"] = f.timeoutSec;
  o["instanceConcurrency"] = f.instanceConcurrency;
  o["maxInstances"] = f.maxInstances;
  o["environmentVariables"] = envToJson(f.environmentVariables);
  o["description"] = f.description;
  o["initializer"] = f.initializer;
  o["initializationTimeout"] = f.initializationTimeoutSec;
  if (f.runtime == "custom" || !f.customRuntimeConfig.command.empty() ||
      !f.customRuntimeConfig.args.empty()) {
    o["customRuntimeConfig"] = customConfigToJson(f.customRuntimeConfig);
  }
  o["codeSha256"] = f.codeSha256;
  o["codeChecksum"] = f.codeSha256;
  o["codeSize"] = f.codeSize;
  o["codeUnpackedSize"] = f.codeUnpackedSize;
  o["revision"] = f.revision;
  o["createdTime"] = f.createdTime;
  o["lastModifiedTime"] = f.lastModifiedTime;
  return o;
}

std::string functionToStorageJson(const FunctionSpec& f) {
  json::object o;
  o["tenant"] = f.tenant;
  o["name"] = f.name;
  o["runtime"] = f.runtime;
  o["handler"] = f.handler;
  o["memoryMb"] = f.memoryMb;
  o["timeoutSec"] = f.timeoutSec;
  o["instanceConcurrency"] = f.instanceConcurrency;
  o["maxInstances"] = f.maxInstances;
  o["environmentVariables"] = envToJson(f.environmentVariables);
  o["description"] = f.description;
  o["initializer"] = f.initializer;
  o["initializationTimeoutSec"] = f.initializationTimeoutSec;
  o["customRuntimeConfig"] = customConfigToJson(f.customRuntimeConfig);
  o["codeSha256"] = f.codeSha256;
  o["codeSize"] = f.codeSize;
  o["codeUnpackedSize"] = f.codeUnpackedSize;
  o["revision"] = f.revision;
  o["functionId"] = f.functionId;
  o["createdTime"] = f.createdTime;
  o["lastModifiedTime"] = f.lastModifiedTime;
  return json::serialize(o);
}

Result<FunctionSpec> functionFromStorageJson(std::string_view text) {
  ASSIGN_OR_RETURN(json::value v, parseJson(text));
  if (!v.is_object()) return invalidArgument("stored function is not a JSON object");
  const json::object& o = v.as_object();
  FunctionSpec f;
  RETURN_IF_ERROR(readString(o, "tenant", f.tenant));
  RETURN_IF_ERROR(readString(o, "name", f.name));
  RETURN_IF_ERROR(readString(o, "runtime", f.runtime));
  RETURN_IF_ERROR(readString(o, "handler", f.handler));
  RETURN_IF_ERROR(readInt(o, "memoryMb", f.memoryMb));
  RETURN_IF_ERROR(readInt(o, "timeoutSec", f.timeoutSec));
  RETURN_IF_ERROR(readInt(o, "instanceConcurrency", f.instanceConcurrency));
  RETURN_IF_ERROR(readInt(o, "maxInstances", f.maxInstances));
  if (const json::value* env = o.if_contains("environmentVariables");
      env != nullptr && !env->is_null()) {
    if (!env->is_object()) return invalidArgument("environmentVariables must be an object");
    for (const auto& kv : env->as_object()) {
      if (!kv.value().is_string()) {
        return invalidArgument("environmentVariables values must be strings");
      }
      f.environmentVariables[std::string(kv.key())] = std::string(kv.value().as_string());
    }
  }
  RETURN_IF_ERROR(readString(o, "description", f.description));
  RETURN_IF_ERROR(readString(o, "initializer", f.initializer));
  RETURN_IF_ERROR(readInt(o, "initializationTimeoutSec", f.initializationTimeoutSec));
  if (const json::value* c = o.if_contains("customRuntimeConfig"); c != nullptr && !c->is_null()) {
    if (!c->is_object()) return invalidArgument("customRuntimeConfig must be an object");
    const json::object& co = c->as_object();
    RETURN_IF_ERROR(readStringArray(co, "command", f.customRuntimeConfig.command));
    RETURN_IF_ERROR(readStringArray(co, "args", f.customRuntimeConfig.args));
    RETURN_IF_ERROR(readInt(co, "port", f.customRuntimeConfig.port));
  }
  RETURN_IF_ERROR(readString(o, "codeSha256", f.codeSha256));
  RETURN_IF_ERROR(readInt(o, "codeSize", f.codeSize));
  RETURN_IF_ERROR(readInt(o, "codeUnpackedSize", f.codeUnpackedSize));
  RETURN_IF_ERROR(readInt(o, "revision", f.revision));
  RETURN_IF_ERROR(readString(o, "functionId", f.functionId));
  RETURN_IF_ERROR(readString(o, "createdTime", f.createdTime));
  RETURN_IF_ERROR(readString(o, "lastModifiedTime", f.lastModifiedTime));
  return f;
}

std::string nowRfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buf, n);
}

}  // namespace stratus
