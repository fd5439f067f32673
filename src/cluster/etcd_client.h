// EtcdClient: the few etcd v3 calls Stratus needs, spoken to etcd's JSON gateway
// (POST /v3/kv/range, /v3/kv/put, /v3/kv/deleterange, /v3/kv/txn, /v3/lease/grant,
// /v3/lease/keepalive, /v3/lease/revoke; keys and values base64) with our own HttpClient, so
// that no gRPC stack is needed. etcd 3.4+.
//
// Every call is synchronous and bounded by the client's timeout. Several endpoints may be given
// ("http://a:2379,http://b:2379"): a call that cannot reach one tries the next, and the one that
// answered is preferred afterwards. Transport failures are kUnavailable (or kDeadlineExceeded);
// an error etcd itself returns is kInternal with its message (kInvalidArgument for a malformed
// request). Thread-safe: connections are pooled per endpoint, one request per connection at a
// time.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace stratus {

class HttpClient;

struct EtcdKv {
  std::string key;
  std::string value;
  int64_t createRevision = 0;
  int64_t modRevision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

// One comparison of a transaction: target(key) op value.
struct EtcdCompare {
  enum class Target { kCreateRevision, kModRevision, kVersion, kValue };
  enum class Op { kEqual, kGreater, kLess, kNotEqual };
  std::string key;
  Target target = Target::kCreateRevision;
  Op op = Op::kEqual;
  int64_t number = 0;  // revisions, version
  std::string value;   // kValue

  // The key does not exist.
  static EtcdCompare absent(std::string key) {
    return {std::move(key), Target::kCreateRevision, Op::kEqual, 0, {}};
  }
  // The key exists.
  static EtcdCompare exists(std::string key) {
    return {std::move(key), Target::kCreateRevision, Op::kGreater, 0, {}};
  }
  // The key was not modified since modRevision (and still exists).
  static EtcdCompare unchangedSince(std::string key, int64_t modRevision) {
    return {std::move(key), Target::kModRevision, Op::kEqual, modRevision, {}};
  }
};

// One operation of a transaction.
struct EtcdOp {
  enum class Kind { kPut, kDelete, kDeletePrefix, kGet };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;
  int64_t lease = 0;

  static EtcdOp put(std::string key, std::string value, int64_t lease = 0) {
    return {Kind::kPut, std::move(key), std::move(value), lease};
  }
  static EtcdOp del(std::string key) { return {Kind::kDelete, std::move(key), {}, 0}; }
  static EtcdOp delPrefix(std::string prefix) {
    return {Kind::kDeletePrefix, std::move(prefix), {}, 0};
  }
  static EtcdOp get(std::string key) { return {Kind::kGet, std::move(key), {}, 0}; }
};

struct EtcdTxnResult {
  bool succeeded = false;
  // Per operation of the branch that ran: the keys read (kGet) or the number deleted
  // (kDelete*; in deleted[i]).
  std::vector<std::vector<EtcdKv>> kvs;
  std::vector<int64_t> deleted;
};

class EtcdClient {
 public:
  // endpoints: comma-separated "http://host:port" URLs. Does not connect yet.
  static Result<std::unique_ptr<EtcdClient>> create(const std::string& endpoints,
                                                    Duration timeout = std::chrono::seconds(3));
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  Result<std::optional<EtcdKv>> get(const std::string& key);
  // Every key starting with prefix, sorted by key. keysOnly: values left empty.
  Result<std::vector<EtcdKv>> getPrefix(const std::string& prefix, bool keysOnly = false);
  Status put(const std::string& key, const std::string& value, int64_t lease = 0);
  // Returns how many keys were deleted (0 or 1).
  Result<int64_t> del(const std::string& key);
  Result<int64_t> delPrefix(const std::string& prefix);
  Result<EtcdTxnResult> txn(const std::vector<EtcdCompare>& compares,
                            const std::vector<EtcdOp>& success,
                            const std::vector<EtcdOp>& failure = {});

  // Leases: grant returns the id; keepAlive returns the remaining TTL in seconds, 0 when the
  // lease has expired (or never existed).
  Result<int64_t> grantLease(int64_t ttlSeconds);
  Result<int64_t> keepAlive(int64_t leaseId);
  Status revokeLease(int64_t leaseId);

  const std::vector<std::string>& endpoints() const { return endpoints_; }

 private:
  EtcdClient(std::vector<std::string> endpoints, Duration timeout);
  // POSTs a JSON body to path on the first endpoint that answers; returns the response JSON text.
  Result<std::string> call(const std::string& path, const std::string& body);

  std::vector<std::string> endpoints_;
  Duration timeout_;
  std::atomic<size_t> preferred_{0};
  std::mutex mu_;
  // Idle connections per endpoint index.
  std::vector<std::vector<std::unique_ptr<HttpClient>>> idle_;  // GUARDED_BY(mu_)
};

// "/a/b/" -> the range end that selects every key with this prefix.
std::string etcdPrefixEnd(const std::string& prefix);

}  // namespace stratus
