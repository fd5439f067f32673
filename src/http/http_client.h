// HttpClient: a small synchronous HTTP/1.1 client (Boost.Beast underneath, hidden here) for every
// component that speaks HTTP to another process: the etcd client and cluster RPC, the CLI, the
// end-to-end tests; and runLoad(), the asynchronous load generator that `stratus bench` and the
// gateway's tests share.
//
// Layering: src/http depends on common only; store, cluster, gateway tests and cli depend on it,
// never the reverse. Beast stays inside http_client.cc (compiled against stratus_asio).
//
// HttpClient keeps one keep-alive connection to one endpoint, reconnects once when a reused
// connection turns out to have been closed by the server while idle, and bounds every request by
// its timeout. Failures are Status values (kUnavailable for connect/transport errors,
// kDeadlineExceeded for timeouts, kInvalidArgument for a bad endpoint); nothing throws.
// Thread-safety: one HttpClient per thread; httpRequest() and runLoad() are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/http.h"
#include "common/status.h"

namespace stratus {

// "http://host:port", "host:port" or "http://host" (port 80). https is not supported.
struct HttpEndpoint {
  std::string host;
  uint16_t port = 80;
};
Result<HttpEndpoint> parseEndpoint(std::string_view endpoint);

class HttpClient {
 public:
  static constexpr Duration kDefaultTimeout = std::chrono::seconds(30);

  // Connects now, so that a wrong endpoint fails here rather than on the first request.
  static Result<std::unique_ptr<HttpClient>> connect(const std::string& endpoint,
                                                     Duration timeout = kDefaultTimeout);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and reads the whole response. `target` is the path plus query, already
  // percent-encoded. Content-Length and Host are set here.
  Result<HttpResponse> request(std::string_view method, std::string_view target,
                               const HttpHeaders& headers = {}, std::string_view body = {});
  // Bounds each later request (connect, write and read together).
  void setTimeout(Duration timeout);

 private:
  class Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One request on a fresh connection.
Result<HttpResponse> httpRequest(const std::string& endpoint, std::string_view method,
                                 std::string_view target, const HttpHeaders& headers = {},
                                 std::string_view body = {},
                                 Duration timeout = HttpClient::kDefaultTimeout);

// ---- Load generation -------------------------------------------------------------------------

struct LoadOptions {
  std::string endpoint;
  std::string method = "POST";
  std::string target = "/";
  HttpHeaders headers;
  std::string body;
  int64_t requests = 10000;
  int concurrency = 16;  // connections, each with one request in flight (keep-alive)
  int threads = 2;       // generator threads (at most `concurrency`), connections spread evenly
  Duration timeout = std::chrono::seconds(30);  // per request
};

struct LoadResult {
  int64_t completed = 0;  // responses received
  int64_t errors = 0;     // responses that are not 200, or carry x-fc-error-type
  int64_t failures = 0;   // transport failures: connect, write, read, timeout
  std::map<int, int64_t> statusCounts;
  std::string firstError;          // the first failure or error response, for the report
  double seconds = 0;              // wall time of the whole run
  std::vector<int64_t> latencyNs;  // one per completed request, sorted ascending

  double requestsPerSecond() const { return seconds > 0 ? completed / seconds : 0; }
  // p in [0, 100]; 0 when nothing completed.
  int64_t percentileNs(double p) const;
};

// Drives `requests` requests over `concurrency` keep-alive connections from `threads` threads and
// records each request's latency (write of the request to the end of the response). Fails only
// on a bad endpoint; per-request failures are counted in the result.
Result<LoadResult> runLoad(const LoadOptions& options);
Result<LoadResult> runLoad(const std::string& endpoint, std::string_view method,
                           std::string_view target, const HttpHeaders& headers,
                           std::string_view body, int64_t requests, int concurrency);

}  // namespace stratus
