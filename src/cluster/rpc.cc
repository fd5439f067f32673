#include "cluster/rpc.h"

#include <charconv>
#include <functional>
#include <vector>

#include "common/base64.h"
#include "http/http_client.h"

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

// The call's (or the function's) own headers cross as x-stratus-h-<name>.
template <typename From, typename To>
void addPrefixedHeaders(const From& from, To& to) {
  for (const auto& [k, v] : from) to[std::string(kHeaderPrefix) + k] = v;
}
template <typename From, typename To>
void takePrefixedHeaders(const From& from, To& to) {
  for (const auto& [k, v] : from) {
    if (startsWithNoCase(k, kHeaderPrefix)) to[k.substr(kHeaderPrefix.size())] = v;
  }
}

// A Code sent as an error: anything that is not one (0 included) is kInternal.
Code errorCodeFromWire(int64_t c) {
  if (c <= 0 || c > static_cast<int64_t>(Code::kAborted)) return Code::kInternal;
  return static_cast<Code>(c);
}

// One wire struct's JSON fields, listed once for both directions, so that a field is written and
// read under the same name. A field that is absent or of another type reads as empty/zero (a
// peer of another version may lack it); checks of required fields follow the read.
template <typename T>
class WireFields {
 public:
  WireFields& text(const char* name, std::string T::*m) {
    return add([=](const T& v, json::object& o) { o[name] = v.*m; },
               [=](const json::object& o, T& v) { v.*m = str(o, name); });
  }
  template <typename Int>
  WireFields& integer(const char* name, Int T::*m) {
    return add([=](const T& v, json::object& o) { o[name] = v.*m; },
               [=](const json::object& o, T& v) { v.*m = static_cast<Int>(num(o, name)); });
  }
  WireFields& flag(const char* name, bool T::*m) {
    return add([=](const T& v, json::object& o) { o[name] = v.*m; },
               [=](const json::object& o, T& v) { v.*m = stratus::cluster::flag(o, name); });
  }
  // An etcd lease id: crosses as a decimal string, which every JSON reader keeps exact.
  WireFields& decimal(const char* name, int64_t T::*m) {
    return add([=](const T& v, json::object& o) { o[name] = std::to_string(v.*m); },
               [=](const json::object& o, T& v) {
                 std::string d = str(o, name);
                 std::from_chars(d.data(), d.data() + d.size(), v.*m);
               });
  }

  std::string toJson(const T& v) const {
    json::object o;
    for (const Field& f : fields_) f.put(v, o);
    return json::serialize(o);
  }
  Result<T> fromJson(std::string_view text, std::string_view what) const {
    ASSIGN_OR_RETURN(json::object o, object(text, what));
    T v;
    for (const Field& f : fields_) f.get(o, v);
    return v;
  }

 private:
  struct Field {
    std::function<void(const T&, json::object&)> put;
    std::function<void(const json::object&, T&)> get;
  };
  WireFields& add(std::function<void(const T&, json::object&)> put,
                  std::function<void(const json::object&, T&)> get) {
    fields_.push_back({std::move(put), std::move(get)});
    return *this;
  }
  std::vector<Field> fields_;
};

const WireFields<WorkerInfo>& workerFields() {
  static const WireFields<WorkerInfo> fields =
      WireFields<WorkerInfo>()
          .text("id", &WorkerInfo::id)
          .text("zone", &WorkerInfo::zone)
          .text("url", &WorkerInfo::url)
          .text("blobUrl", &WorkerInfo::blobUrl)
          .integer("memoryMb", &WorkerInfo::memoryMb)
          .integer("cpuMillis", &WorkerInfo::cpuMillis)
          .integer("maxInstances", &WorkerInfo::maxInstances)
          .text("incarnation", &WorkerInfo::incarnation);
  return fields;
}

const WireFields<LeaderInfo>& leaderFields() {
  static const WireFields<LeaderInfo> fields = WireFields<LeaderInfo>()
                                                   .text("id", &LeaderInfo::id)
                                                   .text("apiUrl", &LeaderInfo::apiUrl)
                                                   .text("rpcUrl", &LeaderInfo::rpcUrl)
                                                   .text("blobUrl", &LeaderInfo::blobUrl)
                                                   .decimal("epoch", &LeaderInfo::epoch);
  return fields;
}

const WireFields<GrantedLease>& leaseFields() {
  static const WireFields<GrantedLease> fields =
      WireFields<GrantedLease>()
          .text("leaseId", &GrantedLease::leaseId)
          .text("functionKey", &GrantedLease::functionKey)
          .text("instanceId", &GrantedLease::instanceId)
          .text("hostId", &GrantedLease::hostId)
          .text("workerUrl", &GrantedLease::workerUrl)
          .integer("revision", &GrantedLease::revision)
          .text("runtime", &GrantedLease::runtime)
          .integer("timeoutSec", &GrantedLease::timeoutSec)
          .flag("coldStart", &GrantedLease::coldStart)
          .integer("initDurationUs", &GrantedLease::initDurationUs)
          .decimal("epoch", &GrantedLease::epoch);
  return fields;
}

}  // namespace

std::string leaderKey(const std::string& prefix) { return prefix + "cluster/leader"; }
std::string workersPrefix(const std::string& prefix) { return prefix + "cluster/workers/"; }
std::string controllersPrefix(const std::string& prefix) { return prefix + "cluster/controllers/"; }

std::string toJson(const WorkerInfo& w) { return workerFields().toJson(w); }

Result<WorkerInfo> workerFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(WorkerInfo w, workerFields().fromJson(text, "worker info"));
  if (w.id.empty() || w.url.empty()) return invalidArgument("worker info lacks id or url");
  if (w.zone.empty()) w.zone = "default";
  return w;
}

std::string toJson(const LeaderInfo& l) { return leaderFields().toJson(l); }

Result<LeaderInfo> leaderFromJson(std::string_view text) {
  return leaderFields().fromJson(text, "leader info");
}

std::string toJson(const GrantedLease& l) { return leaseFields().toJson(l); }

Result<GrantedLease> leaseFromJson(std::string_view text) {
  ASSIGN_OR_RETURN(GrantedLease l, leaseFields().fromJson(text, "lease"));
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
  // The message is passed through untouched: a start failure the function caused carries the
  // JSON error body the caller shows.
  return Status(errorCodeFromWire(num(*o, "code")), str(*o, "message"));
}

HttpHeaders encodeInvokeRequest(const InvokeRequest& req) {
  HttpHeaders h;
  h["x-stratus-request-id"] = req.requestId;
  if (req.wantLogTail) h["x-stratus-log-tail"] = "1";
  addPrefixedHeaders(req.headers, h);
  h["Content-Type"] = "application/octet-stream";
  return h;
}

InvokeRequest decodeInvokeRequest(const HttpRequest& http) {
  InvokeRequest req;
  if (auto id = http.header("x-stratus-request-id")) req.requestId = std::string(*id);
  req.wantLogTail = http.header("x-stratus-log-tail").has_value();
  takePrefixedHeaders(http.headers, req.headers);
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
  addPrefixedHeaders(r.headers, http.headers);
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
  if (c != 0)
    r.status = Status(errorCodeFromWire(c), headerBase64(http.headers, "x-stratus-message"));
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
  takePrefixedHeaders(http.headers, r.headers);
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
