#include "cluster/etcd_client.h"

#include <charconv>

#include "common/base64.h"
#include "common/json.h"
#include "http/http_client.h"

namespace stratus {
namespace {

// The gateway encodes int64 fields as JSON strings (proto3 JSON mapping); absent means 0.
int64_t int64Field(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) return 0;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  if (v->is_string()) {
    const auto& s = v->as_string();
    int64_t out = 0;
    std::from_chars(s.data(), s.data() + s.size(), out);
    return out;
  }
  return 0;
}

Result<std::string> bytesField(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return std::string();
  auto decoded = base64Decode(std::string_view(v->as_string().data(), v->as_string().size()));
  if (!decoded) return internalError("etcd returned a malformed " + std::string(key));
  return std::move(*decoded);
}

Result<std::vector<EtcdKv>> parseKvs(const json::object& o) {
  std::vector<EtcdKv> out;
  const json::value* kvs = o.if_contains("kvs");
  if (kvs == nullptr || !kvs->is_array()) return out;
  for (const json::value& item : kvs->as_array()) {
    if (!item.is_object()) continue;
    const json::object& kv = item.as_object();
    EtcdKv e;
    ASSIGN_OR_RETURN(e.key, bytesField(kv, "key"));
    ASSIGN_OR_RETURN(e.value, bytesField(kv, "value"));
    e.createRevision = int64Field(kv, "create_revision");
    e.modRevision = int64Field(kv, "mod_revision");
    e.version = int64Field(kv, "version");
    e.lease = int64Field(kv, "lease");
    out.push_back(std::move(e));
  }
  return out;
}

Result<json::object> parseObject(const std::string& text) {
  ASSIGN_OR_RETURN(json::value v, parseJson(text));
  if (!v.is_object()) return internalError("etcd answered with a non-object: " + text);
  return std::move(v.as_object());
}

json::object rangeRequest(const std::string& key, bool prefix, bool keysOnly) {
  json::object r;
  r["key"] = base64Encode(key);
  if (prefix) r["range_end"] = base64Encode(etcdPrefixEnd(key));
  if (keysOnly) r["keys_only"] = true;
  return r;
}

json::object opJson(const EtcdOp& op) {
  json::object o;
  switch (op.kind) {
    case EtcdOp::Kind::kPut: {
      json::object p;
      p["key"] = base64Encode(op.key);
      p["value"] = base64Encode(op.value);
      if (op.lease != 0) p["lease"] = std::to_string(op.lease);
      o["request_put"] = std::move(p);
      break;
    }
    case EtcdOp::Kind::kDelete:
    case EtcdOp::Kind::kDeletePrefix: {
      json::object d;
      d["key"] = base64Encode(op.key);
      if (op.kind == EtcdOp::Kind::kDeletePrefix)
        d["range_end"] = base64Encode(etcdPrefixEnd(op.key));
      o["request_delete_range"] = std::move(d);
      break;
    }
    case EtcdOp::Kind::kGet:
      o["request_range"] = rangeRequest(op.key, false, false);
      break;
  }
  return o;
}

json::object compareJson(const EtcdCompare& c) {
  json::object o;
  o["key"] = base64Encode(c.key);
  switch (c.op) {
    case EtcdCompare::Op::kEqual:
      o["result"] = "EQUAL";
      break;
    case EtcdCompare::Op::kGreater:
      o["result"] = "GREATER";
      break;
    case EtcdCompare::Op::kLess:
      o["result"] = "LESS";
      break;
    case EtcdCompare::Op::kNotEqual:
      o["result"] = "NOT_EQUAL";
      break;
  }
  switch (c.target) {
    case EtcdCompare::Target::kCreateRevision:
      o["target"] = "CREATE";
      o["create_revision"] = std::to_string(c.number);
      break;
    case EtcdCompare::Target::kModRevision:
      o["target"] = "MOD";
      o["mod_revision"] = std::to_string(c.number);
      break;
    case EtcdCompare::Target::kVersion:
      o["target"] = "VERSION";
      o["version"] = std::to_string(c.number);
      break;
    case EtcdCompare::Target::kValue:
      o["target"] = "VALUE";
      o["value"] = base64Encode(c.value);
      break;
  }
  return o;
}

}  // namespace

std::string etcdPrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    unsigned char c = static_cast<unsigned char>(end.back());
    if (c < 0xff) {
      end.back() = static_cast<char>(c + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

Result<std::unique_ptr<EtcdClient>> EtcdClient::create(const std::string& endpoints,
                                                       Duration timeout) {
  std::vector<std::string> list;
  size_t start = 0;
  while (start <= endpoints.size()) {
    size_t comma = endpoints.find(',', start);
    if (comma == std::string::npos) comma = endpoints.size();
    std::string one = endpoints.substr(start, comma - start);
    if (!one.empty()) {
      RETURN_IF_ERROR(parseEndpoint(one).status().withContext("--etcd"));
      list.push_back(one);
    }
    start = comma + 1;
  }
  if (list.empty()) return invalidArgument("--etcd needs at least one http://host:port URL");
  return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(list), timeout));
}

EtcdClient::EtcdClient(std::vector<std::string> endpoints, Duration timeout)
    : endpoints_(std::move(endpoints)), timeout_(timeout), idle_(endpoints_.size()) {}

EtcdClient::~EtcdClient() = default;

Result<std::string> EtcdClient::call(const std::string& path, const std::string& body) {
  Status last = unavailable("no etcd endpoint");
  const size_t n = endpoints_.size();
  const size_t first = preferred_.load();
  for (size_t i = 0; i < n; ++i) {
    const size_t e = (first + i) % n;
    std::unique_ptr<HttpClient> client;
    {
      std::lock_guard lock(mu_);
      if (!idle_[e].empty()) {
        client = std::move(idle_[e].back());
        idle_[e].pop_back();
      }
    }
    if (!client) {
      auto c = HttpClient::connect(endpoints_[e], timeout_);
      if (!c) {
        last = c.status().withContext("etcd " + endpoints_[e]);
        continue;
      }
      client = std::move(*c);
    }
    HttpHeaders headers{{"Content-Type", "application/json"}};
    auto res = client->request("POST", path, headers, body);
    if (!res) {
      last = res.status().withContext("etcd " + endpoints_[e] + path);
      continue;
    }
    {
      std::lock_guard lock(mu_);
      if (idle_[e].size() < 8) idle_[e].push_back(std::move(client));
    }
    preferred_.store(e);
    if (res->status != 200) {
      std::string message = res->body;
      if (auto o = parseObject(res->body); o.isOk()) {
        if (auto m = getString(*o, "message"); m.isOk() && m->has_value()) message = **m;
      }
      Code code = res->status == 400 ? Code::kInvalidArgument : Code::kInternal;
      if (res->status == 503) code = Code::kUnavailable;
      return Status(code,
                    "etcd " + path + ": HTTP " + std::to_string(res->status) + ": " + message);
    }
    return std::move(res->body);
  }
  return last;
}

Result<std::optional<EtcdKv>> EtcdClient::get(const std::string& key) {
  ASSIGN_OR_RETURN(std::string text,
                   call("/v3/kv/range", json::serialize(rangeRequest(key, false, false))));
  ASSIGN_OR_RETURN(json::object o, parseObject(text));
  ASSIGN_OR_RETURN(auto kvs, parseKvs(o));
  if (kvs.empty()) return std::optional<EtcdKv>();
  return std::optional<EtcdKv>(std::move(kvs.front()));
}

Result<std::vector<EtcdKv>> EtcdClient::getPrefix(const std::string& prefix, bool keysOnly) {
  ASSIGN_OR_RETURN(std::string text,
                   call("/v3/kv/range", json::serialize(rangeRequest(prefix, true, keysOnly))));
  ASSIGN_OR_RETURN(json::object o, parseObject(text));
  return parseKvs(o);
}

Status EtcdClient::put(const std::string& key, const std::string& value, int64_t lease) {
  json::object r;
  r["key"] = base64Encode(key);
  r["value"] = base64Encode(value);
  if (lease != 0) r["lease"] = std::to_string(lease);
  return call("/v3/kv/put", json::serialize(r)).status();
}

Result<int64_t> EtcdClient::del(const std::string& key) {
  json::object r;
  r["key"] = base64Encode(key);
  ASSIGN_OR_RETURN(std::string text, call("/v3/kv/deleterange", json::serialize(r)));
  ASSIGN_OR_RETURN(json::object o, parseObject(text));
  return int64Field(o, "deleted");
}

Result<int64_t> EtcdClient::delPrefix(const std::string& prefix) {
  json::object r;
  r["key"] = base64Encode(prefix);
  r["range_end"] = base64Encode(etcdPrefixEnd(prefix));
  ASSIGN_OR_RETURN(std::string text, call("/v3/kv/deleterange", json::serialize(r)));
  ASSIGN_OR_RETURN(json::object o, parseObject(text));
  return int64Field(o, "deleted");
}

Result<EtcdTxnResult> EtcdClient::txn(const std::vector<EtcdCompare>& compares,
                                      const std::vector<EtcdOp>& success,
                                      const std::vector<EtcdOp>& failure) {
  json::object r;
  json::array cmp, ok, ko;
  for (const auto& c : compares) cmp.push_back(compareJson(c));
  for (const auto& op : success) ok.push_back(opJson(op));
  for (const auto& op : failure) ko.push_back(opJson(op));
  r["compare"] = std::move(cmp);
  r["success"] = std::move(ok);
  r["failure"] = std::move(ko);
  ASSIGN_OR_RETURN(std::string text, call("/v3/kv/txn", json::serialize(r)));
  ASSIGN_OR_RETURN(json::object o, parseObject(text));
  EtcdTxnResult out;
  if (const json::value* s = o.if_contains("succeeded"); s && s->is_bool()) {
    out.succeeded = s->as_bool();
  }
  if (const json::value* rs = o.if_contains("responses"); rs && rs->is_array()) {
    for (const json::value& item : rs->as_array()) {
      std::vector<EtcdKv> kvs;
      int64_t deleted = 0;
      if (item.is_object()) {
        const json::object& io = item.as_object();
        if (const json::value* rr = io.if_contains("response_range"); rr && rr->is_object()) {
          ASSIGN_OR_RETURN(kvs, parseKvs(rr->as_object()));
        }
        if (const json::value* dr = io.if_contains("response_delete_range");
            dr && dr->is_object()) {
          deleted = int64Field(dr->as_object(), "deleted");
        }
      }
      out.kvs.push_back(std::move(kvs));
      out.deleted.push_back(deleted);
    }
  }
  return out;
}

Result<int64_t> EtcdClient::grantLease(int64_t ttlSeconds) {
  json::object r;
  r["TTL"] = std::to_string(ttlSeconds);
  ASSIGN_OR_RETURN(std::string text, call("/v3/lease/grant", json::serialize(r)));
  ASSIGN_OR_RETURN(json::object o, parseObject(text));
  int64_t id = int64Field(o, "ID");
  if (id == 0) {
    std::string err = o.contains("error") ? json::serialize(o.at("error")) : text;
    return internalError("etcd lease grant failed: " + err);
  }
  return id;
}

Result<int64_t> EtcdClient::keepAlive(int64_t leaseId) {
  json::object r;
  r["ID"] = std::to_string(leaseId);
  ASSIGN_OR_RETURN(std::string text, call("/v3/lease/keepalive", json::serialize(r)));
  // The gateway streams: one {"result": {...}} object per request sent.
  ASSIGN_OR_RETURN(json::object o, parseObject(text));
  if (const json::value* res = o.if_contains("result"); res && res->is_object()) {
    return int64Field(res->as_object(), "TTL");
  }
  if (o.contains("error")) return internalError("etcd keepalive: " + json::serialize(o["error"]));
  return int64Field(o, "TTL");
}

Status EtcdClient::revokeLease(int64_t leaseId) {
  json::object r;
  r["ID"] = std::to_string(leaseId);
  return call("/v3/lease/revoke", json::serialize(r)).status();
}

}  // namespace stratus
