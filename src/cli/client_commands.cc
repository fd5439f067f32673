#include "cli/client_commands.h"

#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "codepack/zip_writer.h"
#include "common/base64.h"
#include "common/fs.h"
#include "http/http_client.h"

namespace stratus {

namespace {

constexpr std::string_view kDefaultEndpoint = "http://127.0.0.1:9000";
constexpr std::string_view kFunctions = "/2023-03-30/functions";
constexpr auto kControlTimeout = std::chrono::seconds(120);  // deploy uploads up to 100 MB
constexpr auto kInvokeTimeout = std::chrono::minutes(15);    // longer than any function timeout

std::string envOr(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Percent-encodes a path segment (function names are restricted, but be safe).
std::string encodeSegment(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// Thrown out of a CLI11 callback to set the exit code (main() turns it into the return value).
[[noreturn]] void exitWith(int rc) { throw CLI::RuntimeError(rc); }

[[noreturn]] void die(const Status& s) {
  std::fprintf(stderr, "error: %s: %s\n", std::string(codeName(s.code())).c_str(),
               s.message().c_str());
  exitWith(1);
}

struct CommonOptions {
  std::string endpoint;
  std::string key;
  bool json = false;
};

void addCommonOptions(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--endpoint", o.endpoint,
                  "Stratus API endpoint (default: $STRATUS_ENDPOINT, the config file, " +
                      std::string(kDefaultEndpoint) + ")");
  cmd->add_option("--key", o.key, "API key (default: $STRATUS_KEY, then the config file)");
  cmd->add_flag("--json", o.json, "Print the API's JSON response unchanged");
}

// One API call with the resolved endpoint/key; exits the process with a readable message on
// transport failures and on API errors (unless allowStatus says the caller handles that code).
class Client {
 public:
  explicit Client(const CommonOptions& o) {
    auto cfg = resolveClientConfig(o.endpoint, o.key);
    if (!cfg) die(cfg.status());
    cfg_ = *cfg;
  }

  HttpResponse call(std::string_view method, const std::string& target, std::string_view body,
                    HttpHeaders headers = {}, Duration timeout = kControlTimeout,
                    int allowStatus = 0) {
    if (!cfg_.key.empty()) headers["Authorization"] = "Bearer " + cfg_.key;
    if (!body.empty()) headers["Content-Type"] = "application/json";
    auto r = httpRequest(cfg_.endpoint, method, target, headers, body, timeout);
    if (!r) {
      const Status& s = r.status();
      if (s.code() == Code::kUnavailable) {
        std::fprintf(stderr,
                     "error: Unavailable: cannot reach Stratus at %s (%s)\n"
                     "  Start a server with `stratus up --data-dir ~/.stratus` (or "
                     "scripts/quickstart.sh),\n"
                     "  or point the CLI elsewhere with --endpoint or STRATUS_ENDPOINT.\n",
                     cfg_.endpoint.c_str(), s.message().c_str());
        exitWith(1);
      }
      die(s.withContext(std::string(method) + " " + cfg_.endpoint + target));
    }
    if (r->status >= 400 && r->status != allowStatus) apiError(*r);
    return std::move(r).value();
  }

  const ClientConfig& config() const { return cfg_; }

  [[noreturn]] static void apiError(const HttpResponse& r) {
    std::string code = "HTTP" + std::to_string(r.status), message = r.body;
    if (auto v = parseJson(r.body); v && v->is_object()) {
      const auto& o = v->as_object();
      if (auto c = getString(o, "code"); c && *c) code = **c;
      if (auto m = getString(o, "message"); m && *m) message = **m;
    }
    while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) {
      message.pop_back();
    }
    std::fprintf(stderr, "error: %s: %s\n", code.c_str(), message.c_str());
    if (r.status == 401 || r.status == 403) {
      std::fprintf(stderr,
                   "  (the admin key is in <data-dir>/admin-key; pass it with --key or "
                   "STRATUS_KEY)\n");
    }
    exitWith(1);
  }

 private:
  ClientConfig cfg_;
};

void printBody(const std::string& body) {
  std::fwrite(body.data(), 1, body.size(), stdout);
  if (body.empty() || body.back() != '\n') std::fputc('\n', stdout);
}

json::object parseObjectOrDie(const HttpResponse& r) {
  auto v = parseJson(r.body);
  if (!v || !v->is_object()) {
    die(internalError("the server sent a response that is not a JSON object: " + r.body));
  }
  return v->as_object();
}

std::string scalar(const json::value* v) {
  if (!v || v->is_null()) return "";
  if (v->is_string()) return std::string(v->as_string());
  return json::serialize(*v);
}

std::string field(const json::object& o, std::string_view key) {
  return scalar(o.if_contains(key));
}

// ---- deploy --------------------------------------------------------------------------------

struct DeployArgs {
  CommonOptions common;
  std::string path;
  DeployOptions spec;
  std::string handler, description;
  int memory = 0, timeout = 0, concurrency = 0, maxInstances = 0;
  std::vector<std::string> env;
  CLI::Option *handlerOpt = nullptr, *memoryOpt = nullptr, *timeoutOpt = nullptr,
              *concurrencyOpt = nullptr, *maxInstancesOpt = nullptr, *envOpt = nullptr,
              *descriptionOpt = nullptr;
};

void runDeploy(DeployArgs& a) {
  DeployOptions& d = a.spec;
  if (d.name.empty()) {
    d.name = std::filesystem::path(a.path).lexically_normal().filename().string();
    if (d.name.empty()) {
      d.name = std::filesystem::absolute(a.path).lexically_normal().parent_path().filename();
    }
    if (auto dot = d.name.rfind(".zip"); dot != std::string::npos && dot + 4 == d.name.size()) {
      d.name.resize(dot);
    }
  }
  if (a.handlerOpt->count()) d.handler = a.handler;
  if (a.memoryOpt->count()) d.memoryMb = a.memory;
  if (a.timeoutOpt->count()) d.timeoutSec = a.timeout;
  if (a.concurrencyOpt->count()) d.concurrency = a.concurrency;
  if (a.maxInstancesOpt->count()) d.maxInstances = a.maxInstances;
  if (a.descriptionOpt->count()) d.description = a.description;
  if (a.envOpt->count()) {
    auto env = parseEnvAssignments(a.env);
    if (!env) die(env.status());
    d.env = std::move(env).value();
  }
  auto zip = loadCodePackage(a.path);
  if (!zip) die(zip.status());

  Client client(a.common);
  const std::string create = json::serialize(deployRequestBody(d, *zip, true));
  HttpResponse r = client.call("POST", std::string(kFunctions), create, {}, kControlTimeout, 409);
  bool updated = false;
  if (r.status == 409) {
    const std::string update = json::serialize(deployRequestBody(d, *zip, false));
    r = client.call("PUT", std::string(kFunctions) + "/" + encodeSegment(d.name), update);
    updated = true;
  }
  if (a.common.json) return printBody(r.body);
  json::object f = parseObjectOrDie(r);
  std::printf("%s function %s (revision %s)\n", updated ? "updated" : "created",
              field(f, "functionName").c_str(), field(f, "revision").c_str());
  std::printf("  runtime      %s\n", field(f, "runtime").c_str());
  if (!field(f, "handler").empty()) std::printf("  handler      %s\n", field(f, "handler").c_str());
  std::printf("  memory       %s MB, timeout %s s, concurrency %s, max instances %s\n",
              field(f, "memorySize").c_str(), field(f, "timeout").c_str(),
              field(f, "instanceConcurrency").c_str(), field(f, "maxInstances").c_str());
  std::printf("  code         %s (%s bytes zipped, %s unpacked)\n", field(f, "codeSha256").c_str(),
              field(f, "codeSize").c_str(), field(f, "codeUnpackedSize").c_str());
  std::printf("  invoke with  stratus invoke %s --data '{\"key\": \"value\"}'\n",
              field(f, "functionName").c_str());
}

// ---- invoke --------------------------------------------------------------------------------

struct InvokeArgs {
  CommonOptions common;
  std::string name;
  std::string data = "{}";
  bool log = false;
  bool async = false;
};

void runInvoke(InvokeArgs& a) {
  std::string payload = a.data;
  if (!payload.empty() && payload[0] == '@') {
    std::string file = payload.substr(1);
    if (file == "-") {
      payload.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else {
      auto text = readFile(file);
      if (!text) die(text.status());
      payload = std::move(text).value();
    }
  }
  HttpHeaders h;
  h["x-fc-invocation-type"] = a.async ? "Async" : "Sync";
  if (a.log) h["x-fc-log-type"] = "Tail";
  Client client(a.common);
  HttpResponse r =
      client.call("POST", std::string(kFunctions) + "/" + encodeSegment(a.name) + "/invocations",
                  payload, h, kInvokeTimeout);
  auto header = [&](std::string_view k) {
    auto it = r.headers.find(std::string(k));
    return it == r.headers.end() ? std::string() : it->second;
  };
  const std::string errorType = header("x-fc-error-type");
  std::string logText;
  if (auto it = r.headers.find("x-fc-log-result"); it != r.headers.end()) {
    auto decoded = base64Decode(it->second);
    logText = decoded ? std::move(decoded).value() : "(undecodable log: " + it->second + ")";
  }
  if (a.common.json) {
    json::object o;
    o["status"] = r.status;
    o["requestId"] = header("x-fc-request-id");
    if (!errorType.empty()) o["errorType"] = errorType;
    if (auto v = parseJson(r.body); v) {
      o["body"] = *v;
    } else {
      o["body"] = r.body;
    }
    if (a.log) o["log"] = logText;
    json::object fc;
    for (const auto& [k, v] : r.headers) {
      if (k.size() > 5 && ::strncasecmp(k.c_str(), "x-fc-", 5) == 0 &&
          ::strcasecmp(k.c_str(), "x-fc-log-result") != 0) {
        fc[k] = v;
      }
    }
    o["headers"] = std::move(fc);
    printBody(json::serialize(o));
  } else if (!r.body.empty() || r.status == 200) {
    printBody(r.body);
  }
  if (a.log && !logText.empty()) {
    std::fwrite(logText.data(), 1, logText.size(), stderr);
    if (logText.back() != '\n') std::fputc('\n', stderr);
  }
  if (!errorType.empty()) {
    std::fprintf(stderr, "error: function error (x-fc-error-type: %s), request id %s\n",
                 errorType.c_str(), header("x-fc-request-id").c_str());
    exitWith(1);
  }
  if (a.async && !a.common.json) {
    std::fprintf(stderr, "queued (request id %s)\n", header("x-fc-request-id").c_str());
  }
}

// ---- ls / get / rm -------------------------------------------------------------------------

void runList(const CommonOptions& o) {
  Client client(o);
  json::array all;
  std::string next;
  std::string raw;
  do {
    std::string target = std::string(kFunctions) + "?limit=1000";
    if (!next.empty()) target += "&nextToken=" + encodeSegment(next);
    HttpResponse r = client.call("GET", target, {});
    raw = r.body;
    json::object page = parseObjectOrDie(r);
    if (auto* fns = page.if_contains("functions"); fns && fns->is_array()) {
      for (auto& f : fns->as_array()) all.push_back(f);
    }
    next = field(page, "nextToken");
  } while (!next.empty());
  if (o.json) {
    json::object out;
    out["functions"] = std::move(all);
    return printBody(json::serialize(out));
  }
  if (all.empty()) {
    std::printf("no functions yet; deploy one with `stratus deploy DIR --runtime python3`\n");
    return;
  }
  std::vector<std::array<std::string, 7>> rows;
  rows.push_back({"NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "REVISION", "MODIFIED"});
  for (const auto& v : all) {
    if (!v.is_object()) continue;
    const auto& f = v.as_object();
    rows.push_back({field(f, "functionName"), field(f, "runtime"), field(f, "handler"),
                    field(f, "memorySize") + "MB", field(f, "timeout") + "s", field(f, "revision"),
                    field(f, "lastModifiedTime")});
  }
  std::array<size_t, 7> width{};
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

void runGet(const CommonOptions& o, const std::string& name) {
  Client client(o);
  HttpResponse r = client.call("GET", std::string(kFunctions) + "/" + encodeSegment(name), {});
  if (o.json) return printBody(r.body);
  json::object f = parseObjectOrDie(r);
  size_t width = 0;
  for (const auto& kv : f) width = std::max(width, kv.key().size());
  for (const auto& kv : f) {
    const json::value& v = kv.value();
    std::string key(kv.key());
    if (v.is_object() && key == "environmentVariables") {
      std::printf("%-*s", static_cast<int>(width + 2), key.c_str());
      if (v.as_object().empty()) std::printf("(none)");
      bool first = true;
      for (const auto& e : v.as_object()) {
        std::printf("%s%s=%s", first ? "" : " ", std::string(e.key()).c_str(),
                    scalar(&e.value()).c_str());
        first = false;
      }
      std::printf("\n");
    } else {
      std::printf("%-*s%s\n", static_cast<int>(width + 2), key.c_str(), scalar(&v).c_str());
    }
  }
}

void runRemove(const CommonOptions& o, const std::string& name) {
  Client client(o);
  HttpResponse r = client.call("DELETE", std::string(kFunctions) + "/" + encodeSegment(name), {});
  if (o.json) {
    json::object out;
    out["deleted"] = name;
    return printBody(r.body.empty() ? json::serialize(out) : r.body);
  }
  std::printf("deleted function %s\n", name.c_str());
}

// ---- tenant (admin) ----------------------------------------------------------------------

struct TenantArgs {
  CommonOptions common;
  std::string name;
  double rps = 0, functionRps = 0;
  int64_t burst = 0, maxInstances = 0, maxFunctions = 0, maxMemory = 0;
  CLI::Option *rpsOpt = nullptr, *functionRpsOpt = nullptr, *burstOpt = nullptr,
              *maxInstancesOpt = nullptr, *maxFunctionsOpt = nullptr, *maxMemoryOpt = nullptr;
};

void addQuotaOptions(CLI::App* cmd, TenantArgs& a) {
  a.rpsOpt = cmd->add_option("--rps", a.rps,
                             "Requests per second over all the tenant's API calls "
                             "(0: no limit)");
  a.burstOpt = cmd->add_option("--burst", a.burst, "Token bucket size (default: one second's)");
  a.functionRpsOpt =
      cmd->add_option("--function-rps", a.functionRps, "Invocations per second per function");
  a.maxInstancesOpt =
      cmd->add_option("--max-instances", a.maxInstances, "Instances busy at once, all functions");
  a.maxFunctionsOpt = cmd->add_option("--max-functions", a.maxFunctions, "Functions");
  a.maxMemoryOpt =
      cmd->add_option("--max-memory", a.maxMemory, "MB of memory of the instances busy at once");
}

json::object quotaBody(const TenantArgs& a) {
  json::object o;
  if (a.rpsOpt->count()) o["requestsPerSecond"] = a.rps;
  if (a.burstOpt->count()) o["burst"] = a.burst;
  if (a.functionRpsOpt->count()) o["functionRequestsPerSecond"] = a.functionRps;
  if (a.maxInstancesOpt->count()) o["maxConcurrentInstances"] = a.maxInstances;
  if (a.maxFunctionsOpt->count()) o["maxFunctions"] = a.maxFunctions;
  if (a.maxMemoryOpt->count()) o["maxTotalMemoryMb"] = a.maxMemory;
  return o;
}

std::string quotaSummary(const json::object& t) {
  const json::value* q = t.if_contains("quota");
  if (!q || !q->is_object()) return "";
  std::string out;
  for (const auto& kv : q->as_object()) {
    std::string v = scalar(&kv.value());
    if (v == "0") continue;
    if (!out.empty()) out += " ";
    out += std::string(kv.key()) + "=" + v;
  }
  return out.empty() ? "(no limits)" : out;
}

void runTenantCreate(TenantArgs& a) {
  Client client(a.common);
  json::object body = quotaBody(a);
  body["name"] = a.name;
  HttpResponse r = client.call("POST", "/admin/tenants", json::serialize(body));
  if (a.common.json) return printBody(r.body);
  json::object t = parseObjectOrDie(r);
  std::printf("created tenant %s\n", field(t, "name").c_str());
  std::printf("  quota    %s\n", quotaSummary(t).c_str());
  std::printf("  api key  %s\n", field(t, "apiKey").c_str());
  std::printf("  (the key is shown only now; the server keeps only its hash)\n");
}

void runTenantList(const CommonOptions& o) {
  Client client(o);
  HttpResponse r = client.call("GET", "/admin/tenants", {});
  if (o.json) return printBody(r.body);
  json::object page = parseObjectOrDie(r);
  std::printf("%-24s  %-22s  %s\n", "NAME", "CREATED", "QUOTA");
  if (auto* ts = page.if_contains("tenants"); ts && ts->is_array()) {
    for (const auto& v : ts->as_array()) {
      if (!v.is_object()) continue;
      const auto& t = v.as_object();
      std::printf("%-24s  %-22s  %s\n", field(t, "name").c_str(), field(t, "createdTime").c_str(),
                  quotaSummary(t).c_str());
    }
  }
}

void runTenantSet(TenantArgs& a) {
  Client client(a.common);
  HttpResponse r =
      client.call("PUT", "/admin/tenants/" + encodeSegment(a.name), json::serialize(quotaBody(a)));
  if (a.common.json) return printBody(r.body);
  json::object t = parseObjectOrDie(r);
  std::printf("tenant %s: %s\n", field(t, "name").c_str(), quotaSummary(t).c_str());
}

void runTenantRemove(const CommonOptions& o, const std::string& name) {
  Client client(o);
  HttpResponse r = client.call("DELETE", "/admin/tenants/" + encodeSegment(name), {});
  if (o.json) {
    json::object out;
    out["deleted"] = name;
    return printBody(json::serialize(out));
  }
  std::printf("deleted tenant %s with its keys, functions and async tasks\n", name.c_str());
}

void addTenantCommands(CLI::App& app) {
  CLI::App* tenant =
      app.add_subcommand("tenant", "Manage tenants, their API keys and quotas (admin key)");
  tenant->require_subcommand(1);
  {
    auto a = std::make_shared<TenantArgs>();
    CLI::App* cmd = tenant->add_subcommand("create", "Create a tenant and print its API key");
    cmd->add_option("name", a->name, "Tenant name")->required();
    addQuotaOptions(cmd, *a);
    addCommonOptions(cmd, a->common);
    cmd->callback([a] { runTenantCreate(*a); });
  }
  {
    auto o = std::make_shared<CommonOptions>();
    CLI::App* cmd = tenant->add_subcommand("ls", "List tenants and their quotas");
    addCommonOptions(cmd, *o);
    cmd->callback([o] { runTenantList(*o); });
  }
  {
    auto a = std::make_shared<TenantArgs>();
    CLI::App* cmd = tenant->add_subcommand("set", "Change a tenant's quotas (0: no limit)");
    cmd->add_option("name", a->name, "Tenant name")->required();
    addQuotaOptions(cmd, *a);
    addCommonOptions(cmd, a->common);
    cmd->callback([a] { runTenantSet(*a); });
  }
  {
    auto o = std::make_shared<CommonOptions>();
    auto name = std::make_shared<std::string>();
    CLI::App* cmd =
        tenant->add_subcommand("rm", "Delete a tenant with its keys, functions and tasks");
    cmd->add_option("name", *name, "Tenant name")->required();
    addCommonOptions(cmd, *o);
    cmd->callback([o, name] { runTenantRemove(*o, *name); });
  }
}

Status makePrivateDirs(const std::filesystem::path& dir) {
  if (dir.empty()) return Status::ok();
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return invalidArgument(dir.string() + " is not a directory");
    return Status::ok();
  }
  RETURN_IF_ERROR(makePrivateDirs(dir.parent_path()));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::fromErrno(errno, "mkdir " + dir.string());
  }
  return Status::ok();
}

}  // namespace

// ---- config ---------------------------------------------------------------------------------

std::filesystem::path clientConfigPath() {
  if (std::string p = envOr("STRATUS_CONFIG"); !p.empty()) return p;
  std::string home = envOr("HOME");
  if (home.empty()) home = "/root";
  return std::filesystem::path(home) / ".config" / "stratus" / "config.json";
}

Status writeClientConfig(const ClientConfig& config) {
  const std::filesystem::path path = clientConfigPath();
  RETURN_IF_ERROR(makePrivateDirs(path.parent_path()));
  json::object o;
  o["endpoint"] = config.endpoint;
  o["key"] = config.key;
  return writeFileAtomic(path, json::serialize(o) + "\n", 0600);
}

Result<ClientConfig> resolveClientConfig(std::string flagEndpoint, std::string flagKey) {
  ClientConfig c{std::move(flagEndpoint), std::move(flagKey)};
  if (c.endpoint.empty()) c.endpoint = envOr("STRATUS_ENDPOINT");
  if (c.key.empty()) c.key = envOr("STRATUS_KEY");
  if (c.endpoint.empty() || c.key.empty()) {
    const std::filesystem::path path = clientConfigPath();
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) {
      auto text = readFile(path);
      if (!text) return text.status().withContext("read client config");
      auto v = parseJson(*text);
      if (!v || !v->is_object()) {
        return invalidArgument("client config " + path.string() +
                               " is not a JSON object; fix or delete it");
      }
      ASSIGN_OR_RETURN(auto endpoint, getString(v->as_object(), "endpoint"));
      ASSIGN_OR_RETURN(auto key, getString(v->as_object(), "key"));
      if (c.endpoint.empty() && endpoint) c.endpoint = *endpoint;
      if (c.key.empty() && key) c.key = *key;
    }
  }
  if (c.endpoint.empty()) c.endpoint = kDefaultEndpoint;
  return c;
}

// ---- deploy helpers ---------------------------------------------------------------------------

Result<std::string> loadCodePackage(const std::filesystem::path& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::fromErrno(errno, "code " + path.string());
  if (S_ISDIR(st.st_mode)) return zipDirectory(path);
  if (!S_ISREG(st.st_mode)) {
    return invalidArgument(path.string() + " is neither a directory nor a zip file");
  }
  ASSIGN_OR_RETURN(std::string data, readFile(path));
  if (data.size() < 4 || data.compare(0, 2, "PK") != 0) {
    return invalidArgument(path.string() +
                           " is not a zip file (deploy takes a directory or a .zip)");
  }
  return data;
}

json::object deployRequestBody(const DeployOptions& d, std::string_view zip, bool create) {
  json::object o;
  o["functionName"] = d.name;
  if (!d.runtime.empty()) o["runtime"] = d.runtime;
  if (d.handler) {
    o["handler"] = *d.handler;
  } else if (create && (d.runtime == "python3" || d.runtime == "nodejs")) {
    o["handler"] = "index.handler";
  }
  if (d.memoryMb) o["memorySize"] = *d.memoryMb;
  if (d.timeoutSec) o["timeout"] = *d.timeoutSec;
  if (d.concurrency) o["instanceConcurrency"] = *d.concurrency;
  if (d.maxInstances) o["maxInstances"] = *d.maxInstances;
  if (d.env) {
    json::object env;
    for (const auto& [k, v] : *d.env) env[k] = v;
    o["environmentVariables"] = std::move(env);
  }
  if (d.description) o["description"] = *d.description;
  json::object code;
  code["zipFile"] = base64Encode(zip);
  o["code"] = std::move(code);
  return o;
}

Result<std::map<std::string, std::string>> parseEnvAssignments(
    const std::vector<std::string>& assignments) {
  std::map<std::string, std::string> env;
  for (const std::string& a : assignments) {
    size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0) {
      return invalidArgument("--env takes KEY=VALUE, got '" + a + "'");
    }
    env[a.substr(0, eq)] = a.substr(eq + 1);
  }
  return env;
}

// ---- registration -----------------------------------------------------------------------------

void addClientCommands(CLI::App& app) {
  {
    auto a = std::make_shared<DeployArgs>();
    CLI::App* cmd = app.add_subcommand(
        "deploy", "Create or update a function from a directory or a .zip (idempotent)");
    cmd->add_option("path", a->path, "Directory (zipped in memory) or .zip file")->required();
    cmd->add_option("--name", a->spec.name, "Function name (default: the directory's name)");
    cmd->add_option("--runtime", a->spec.runtime, "python3 | nodejs | custom | provided")
        ->required();
    a->handlerOpt = cmd->add_option("--handler", a->handler,
                                    "file.function (default for python3/nodejs: index.handler)");
    a->memoryOpt = cmd->add_option("--memory", a->memory, "Memory in MB (multiple of 128)");
    a->timeoutOpt = cmd->add_option("--timeout", a->timeout, "Timeout in seconds");
    a->concurrencyOpt =
        cmd->add_option("--concurrency", a->concurrency, "Concurrent requests per instance");
    a->maxInstancesOpt = cmd->add_option("--max-instances", a->maxInstances, "Instance cap");
    a->envOpt = cmd->add_option("--env", a->env, "Environment variable KEY=VALUE (repeatable)")
                    ->take_all()
                    ->allow_extra_args(false);
    a->descriptionOpt = cmd->add_option("--description", a->description, "Free text");
    addCommonOptions(cmd, a->common);
    cmd->callback([a] { runDeploy(*a); });
  }
  {
    auto a = std::make_shared<InvokeArgs>();
    CLI::App* cmd = app.add_subcommand("invoke", "Invoke a function and print its response");
    cmd->add_option("name", a->name, "Function name")->required();
    cmd->add_option("--data,-d", a->data, "Event JSON, or @file (@- for stdin); default {}");
    cmd->add_flag("--log", a->log, "Print the invocation's log tail to stderr");
    cmd->add_flag("--async", a->async, "Queue the invocation (x-fc-invocation-type: Async)");
    addCommonOptions(cmd, a->common);
    cmd->callback([a] { runInvoke(*a); });
  }
  {
    auto o = std::make_shared<CommonOptions>();
    CLI::App* cmd = app.add_subcommand("ls", "List functions");
    addCommonOptions(cmd, *o);
    cmd->callback([o] { runList(*o); });
  }
  {
    auto o = std::make_shared<CommonOptions>();
    auto name = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand("get", "Show a function's configuration");
    cmd->add_option("name", *name, "Function name")->required();
    addCommonOptions(cmd, *o);
    cmd->callback([o, name] { runGet(*o, *name); });
  }
  {
    auto o = std::make_shared<CommonOptions>();
    auto name = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand("rm", "Delete a function");
    cmd->add_option("name", *name, "Function name")->required();
    addCommonOptions(cmd, *o);
    cmd->callback([o, name] { runRemove(*o, *name); });
  }
  addTenantCommands(app);
}

}  // namespace stratus
