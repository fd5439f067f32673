#include "cluster/rpc.h"

#include <charconv>

#include "http/http_client.h"
#include "common/base64.h"

namespace stratus::cluster {
namespace {

constexpr std::string_view kHeaderPrefix = "x-stratus-h-";

std::string str(const json::object& o, std::string_view key) {
  auto v = getString(o, key);
  return v.isOk() && v->has_value() ? **v : std::string();
}

int64_t num(const json::object& o, std::string_view key) {
  auto v = getInt(o, key);
  return v.isOk() && v->has_value() ? **v : 0;
}

bool flag(const json::object& o, std::string_view key) {
  auto v = getBool(o, key);
  return v.isOk() && v->has_value() && **v;
}

Result<json::object> object(std::string_view text, std::string_view what) {
  ASSIGN_OR_RETURN(json::value v, parseJson(text));
  if (!v.is_object()) return invalidArgument(std::string(what) + " must be a JSON object");
  return std::move(v.as_object());
}

int64_t headerInt(const HttpHeaders& h, std::string_view name) {
  auto it = h.find(name);
  if (it == h.end()) return 0;
  int64_t v = 0;
  std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  return v;
}

std::string headerBase64(const HttpHeaders& h, std::string_view name) {
  auto it = h.find(name);
  if (it == h.end()) return {};
  auto d = base64Decode(it->second);
  return d ? *d : std::string();
}

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

}  // namespace

std::string leaderKey(const std::string& prefix) { return prefix + "cluster/leader"; }
std::string workersPrefix(const std::string& prefix) { return prefix + "cluster/workers/"; }
std::string controllersPrefix(const std::string& prefix) { return prefix + "cluster/controllers/"; }

std::string toJson(const WorkerInfo& w) {
  json::object o;
  o["id"] = w.id;
  o["zone"] = w.zone;
  o["url"] = w.url;
  o["blobUrl"] = w.blobUrl;
  o["memoryMb"] = w.memoryMb;
  o["cpuMillis"] = w.cpuMillis;
  o["maxInstances"] = w.maxInstances;
  o["incarnation"] = w.incarnation;
  return json::serialize(o);
}

Result<WorkerInfo> workerFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(json::object o, object(text, "worker info"));
  WorkerInfo w;
  w.id = str(o, "id");
  w.zone = str(o, "zone");
  w.url = str(o, "url");
  w.blobUrl = str(o, "blobUrl");
  w.memoryMb = num(o, "memoryMb");
  w.cpuMillis = num(o, "cpuMillis");
  w.maxInstances = static_cast<int>(num(o, "maxInstances"));
  w.incarnation = str(o, "incarnation");
  if (w.id.empty() || w.url.empty()) return invalidArgument("worker info lacks id or url");
  if (w.zone.empty()) w.zone = "default";
  return w;
}

std::string toJson(const LeaderInfo& l) {
  json::object o;
  o["id"] = l.id;
  o["apiUrl"] = l.apiUrl;
  o["rpcUrl"] = l.rpcUrl;
  o["blobUrl"] = l.blobUrl;
  o["epoch"] = std::to_string(l.epoch);
  return json::serialize(o);
}

Result<LeaderInfo> leaderFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(json::object o, object(text, "leader info"));
  LeaderInfo l;
  l.id = str(o, "id");
  l.apiUrl = str(o, "apiUrl");
  l.rpcUrl = str(o, "rpcUrl");
  l.blobUrl = str(o, "blobUrl");
  std::string epoch = str(o, "epoch");
  std::from_chars(epoch.data(), epoch.data() + epoch.size(), l.epoch);
  return l;
}

std::string toJson(const GrantedLease& l) {
  json::object o;
  o["leaseId"] = l.leaseId;
  o["functionKey"] = l.functionKey;
  o["instanceId"] = l.instanceId;
  o["hostId"] = l.hostId;
  o["workerUrl"] = l.workerUrl;
  o["revision"] = l.revision;
  o["runtime"] = l.runtime;
  o["timeoutSec"] = l.timeoutSec;
  o["coldStart"] = l.coldStart;
  o["initDurationUs"] = l.initDurationUs;
  o["epoch"] = std::to_string(l.epoch);
  return json::serialize(o);
}

Result<GrantedLease> leaseFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(json::object o, object(text, "lease"));
  GrantedLease l;
  l.leaseId = str(o, "leaseId");
  l.functionKey = str(o, "functionKey");
  l.instanceId = str(o, "instanceId");
  l.hostId = str(o, "hostId");
  l.workerUrl = str(o, "workerUrl");
  l.revision = num(o, "revision");
  l.runtime = str(o, "runtime");
  l.timeoutSec = static_cast<int>(num(o, "timeoutSec"));
  l.coldStart = flag(o, "coldStart");
  l.initDurationUs = num(o, "initDurationUs");
  std::string epoch = str(o, "epoch");
  std::from_chars(epoch.data(), epoch.data() + epoch.size(), l.epoch);
  if (l.leaseId.empty() || l.workerUrl.empty()) return invalidArgument("lease lacks id or url");
  return l;
}

HttpResponse rpcJson(const json::value& v) {
  HttpResponse r;
  r.headers["Content-Type"] = "application/json";
  r.body = json::serialize(v);
  return r;
}

HttpResponse rpcError(const Status& s) {
  json::object o;
  o["code"] = static_cast<int>(s.code());
  o["message"] = s.message();
  HttpResponse r = rpcJson(o);
  switch (s.code()) {
    case Code::kInvalidArgument:
      r.status = 400;
      break;
    case Code::kNotFound:
      r.status = 404;
      break;
    case Code::kFailedPrecondition:
      r.status = 412;
      break;
    case Code::kResourceExhausted:
      r.status = 429;
      break;
    default:
      r.status = 503;
  }
  return r;
}

Status statusFromRpc(const Result<HttpResponse>& r, std::string_view what) {
  if (!r) return r.status().withContext(what);
  if (r->status >= 200 && r->status < 300) return Status::ok();
  auto o = object(r->body, "RPC error");
  if (!o) {
    return Status(Code::kInternal, std::string(what) + ": HTTP " + std::to_string(r->status) +
                                       ": " + r->body.substr(0, 200));
  }
  int64_t code = num(*o, "code");
  if (code <= 0 || code > static_cast<int64_t>(Code::kAborted))
    code = static_cast<int>(Code::kInternal);
  // The message is passed through untouched: a start failure the function caused carries the
  // JSON error body the caller shows.
  return Status(static_cast<Code>(code), str(*o, "message"));
}

HttpHeaders encodeInvokeRequest(const InvokeRequest& req) {
  HttpHeaders h;
  h["x-stratus-request-id"] = req.requestId;
  if (req.wantLogTail) h["x-stratus-log-tail"] = "1";
  for (const auto& [k, v] : req.headers) h[std::string(kHeaderPrefix) + k] = v;
  h["Content-Type"] = "application/octet-stream";
  return h;
}

InvokeRequest decodeInvokeRequest(const HttpRequest& http) {
  InvokeRequest req;
  if (auto id = http.header("x-stratus-request-id")) req.requestId = std::string(*id);
  req.wantLogTail = http.header("x-stratus-log-tail").has_value();
  for (const auto& [k, v] : http.headers) {
    if (startsWithNoCase(k, kHeaderPrefix)) req.headers[k.substr(kHeaderPrefix.size())] = v;
  }
  req.payload = http.body;
  return req;
}

HttpResponse encodeInvokeResult(const InvokeResult& r) {
  HttpResponse http;
  http.headers["x-stratus-code"] = std::to_string(static_cast<int>(r.status.code()));
  if (!r.status.isOk()) http.headers["x-stratus-message"] = base64Encode(r.status.message());
  http.headers["x-stratus-function-error"] = std::to_string(static_cast<int>(r.functionError));
  http.headers["x-stratus-http-status"] = std::to_string(r.httpStatus);
  if (r.instanceLost) http.headers["x-stratus-instance-lost"] = "1";
  http.headers["x-stratus-duration-us"] = std::to_string(r.durationUs);
  http.headers["x-stratus-memory-peak"] = std::to_string(r.memoryPeakBytes);
  if (!r.logTail.empty()) http.headers["x-stratus-log-tail"] = base64Encode(r.logTail);
  if (!r.instanceId.empty()) http.headers["x-stratus-instance-id"] = r.instanceId;
  for (const auto& [k, v] : r.headers) http.headers[std::string(kHeaderPrefix) + k] = v;
  http.headers["Content-Type"] = "application/octet-stream";
  http.body = r.body;
  return http;
}

InvokeResult decodeInvokeResult(const HttpResponse& http) {
  InvokeResult r;
  auto code = http.headers.find("x-stratus-code");
  if (code == http.headers.end()) {
    // Not our worker RPC at all (a proxy, a wrong port): say so.
    r.status = Status(Code::kInternal, "worker answered HTTP " + std::to_string(http.status) +
                                           " without a result: " + http.body.substr(0, 200));
    return r;
  }
  int64_t c = headerInt(http.headers, "x-stratus-code");
  if (c != 0) {
    if (c < 0 || c > static_cast<int64_t>(Code::kAborted)) c = static_cast<int>(Code::kInternal);
    r.status = Status(static_cast<Code>(c), headerBase64(http.headers, "x-stratus-message"));
  }
  r.functionError =
      static_cast<FunctionErrorKind>(headerInt(http.headers, "x-stratus-function-error"));
  r.httpStatus = static_cast<int>(headerInt(http.headers, "x-stratus-http-status"));
  if (r.httpStatus == 0) r.httpStatus = 200;
  r.instanceLost = http.headers.count("x-stratus-instance-lost") > 0;
  r.durationUs = headerInt(http.headers, "x-stratus-duration-us");
  r.memoryPeakBytes = headerInt(http.headers, "x-stratus-memory-peak");
  r.logTail = headerBase64(http.headers, "x-stratus-log-tail");
  if (auto it = http.headers.find("x-stratus-instance-id"); it != http.headers.end()) {
    r.instanceId = it->second;
  }
  for (const auto& [k, v] : http.headers) {
    if (startsWithNoCase(k, kHeaderPrefix)) r.headers[k.substr(kHeaderPrefix.size())] = v;
  }
  r.body = http.body;
  return r;
}

RemoteInvokeOutcome invokeOnWorker(const std::string& workerUrl, const std::string& instanceId,
                                   const InvokeRequest& req, Duration timeout) {
  RemoteInvokeOutcome out;
  auto client = HttpClient::connect(workerUrl, std::chrono::seconds(2));
  if (!client) {
    out.notSent = true;
    out.result.status =
        unavailable("worker " + workerUrl + " unreachable: " + client.status().message());
    return out;
  }
  (*client)->setTimeout(timeout);
  auto res = (*client)->request("POST", "/cluster/v1/instances/" + instanceId + "/invoke",
                                encodeInvokeRequest(req), req.payload);
  if (!res) {
    out.result.status =
        Status(Code::kUnavailable, "the worker running the call (" + workerUrl +
                                       ") was lost during the call; it was not retried because "
                                       "the function may have run: " +
                                       res.status().message());
    out.result.instanceLost = true;
    return out;
  }
  out.result = decodeInvokeResult(*res);
  // The worker refused before running anything (the instance is not there: a new leader reset
  // it, or it was stopped): as safe to retry as a refused connection.
  if (res->headers.count("x-stratus-retryable") > 0) out.notSent = true;
  return out;
}

}  // namespace stratus::cluster
