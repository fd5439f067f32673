// Gateway: request ids, health and metrics endpoints, authentication, and the hand-off to the
// Api (which applies the tenant's limits). Deliberately free of Beast/Asio (HttpServer hides them)
// so that it compiles quickly.
//
// Metrics are plain relaxed atomics: the hot path pays a few uncontended increments, and
// /metrics reads a consistent-enough snapshot for Prometheus.
#include "gateway/gateway.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>

#include "common/ids.h"
#include "common/log.h"

namespace stratus {
namespace {

// Upper bounds (seconds) of the latency histogram buckets; +Inf is implicit.
constexpr std::array<double, 14> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                             0.025,  0.05,    0.1,    0.25,  0.5,    1,     5};

// An incoming x-fc-request-id is honoured (clients correlate their logs with it) only if it
// cannot pollute logs or headers: 1-128 characters of [A-Za-z0-9._-].
bool isSaneRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::string_view guessContentType(const std::string& body) {
  size_t i = body.find_first_not_of(" \t\r\n");
  if (i != std::string::npos && (body[i] == '{' || body[i] == '[')) return "application/json";
  return "text/plain; charset=utf-8";
}

// Request counters behind GET /metrics.
struct Metrics {
  void record(int status, Duration elapsed) {
    int cls = status / 100;
    if (cls < 1 || cls > 5) cls = 5;
    byClass[cls - 1].fetch_add(1, std::memory_order_relaxed);
    int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count();
    latencySumNs.fetch_add(ns, std::memory_order_relaxed);
    double seconds = static_cast<double>(ns) / 1e9;
    size_t b = 0;
    while (b < kBuckets.size() && seconds > kBuckets[b]) ++b;
    buckets[b].fetch_add(1, std::memory_order_relaxed);
  }

  std::string render() const {
    std::string out;
    char line[160];
    out += "# HELP stratus_http_requests_total HTTP requests answered, by status class.\n";
    out += "# TYPE stratus_http_requests_total counter\n";
    for (int c = 0; c < 5; ++c) {
      std::snprintf(line, sizeof line, "stratus_http_requests_total{code=\"%dxx\"} %lld\n", c + 1,
                    static_cast<long long>(byClass[c].load(std::memory_order_relaxed)));
      out += line;
    }
    out += "# HELP stratus_http_requests_in_flight Requests received and not yet answered.\n";
    out += "# TYPE stratus_http_requests_in_flight gauge\n";
    out += "stratus_http_requests_in_flight " +
           std::to_string(inFlight.load(std::memory_order_relaxed)) + "\n";
    out += "# HELP stratus_http_request_duration_seconds Time from request to response.\n";
    out += "# TYPE stratus_http_request_duration_seconds histogram\n";
    int64_t cumulative = 0;
    for (size_t b = 0; b <= kBuckets.size(); ++b) {
      cumulative += buckets[b].load(std::memory_order_relaxed);
      if (b < kBuckets.size()) {
        std::snprintf(line, sizeof line,
                      "stratus_http_request_duration_seconds_bucket{le=\"%g\"} %lld\n", kBuckets[b],
                      static_cast<long long>(cumulative));
      } else {
        std::snprintf(line, sizeof line,
                      "stratus_http_request_duration_seconds_bucket{le=\"+Inf\"} %lld\n",
                      static_cast<long long>(cumulative));
      }
      out += line;
    }
    std::snprintf(line, sizeof line, "stratus_http_request_duration_seconds_sum %.9f\n",
                  static_cast<double>(latencySumNs.load(std::memory_order_relaxed)) / 1e9);
    out += line;
    out += "stratus_http_request_duration_seconds_count " + std::to_string(cumulative) + "\n";
    return out;
  }

  std::array<std::atomic<int64_t>, 5> byClass{};
  std::array<std::atomic<int64_t>, kBuckets.size() + 1> buckets{};
  std::atomic<int64_t> latencySumNs{0};
  std::atomic<int64_t> inFlight{0};
};

}  // namespace

class Gateway::Impl {
 public:
  Impl(Api& api, HttpServerOptions options)
      : api_(api), server_(std::move(options), [this](HttpRequest req, HttpRespond respond) {
          handle(std::move(req), std::move(respond));
        }) {}

  Status start() { return server_.start(); }
  uint16_t port() const { return server_.boundPort(); }
  void every(Duration period, std::function<void()> fn) { server_.every(period, std::move(fn)); }
  void stop(Duration grace) { server_.stop(grace); }

 private:
  // Counts a request in flight until its respond callback has run or been dropped.
  struct InFlight {
    explicit InFlight(std::shared_ptr<Metrics> m) : metrics(std::move(m)) {
      metrics->inFlight.fetch_add(1, std::memory_order_relaxed);
    }
    ~InFlight() { metrics->inFlight.fetch_sub(1, std::memory_order_relaxed); }
    std::shared_ptr<Metrics> metrics;
  };

  void handle(HttpRequest req, HttpRespond respond) {
    auto start = std::chrono::steady_clock::now();
    std::string requestId;
    if (auto incoming = req.header("x-fc-request-id"); incoming && isSaneRequestId(*incoming)) {
      requestId = std::string(*incoming);
    } else {
      requestId = newRequestId();
    }
    req.headers["x-fc-request-id"] = requestId;

    auto inFlight = std::make_shared<InFlight>(metrics_);
    HttpRespond finish = [metrics = metrics_, start, requestId, inFlight,
                          respond = std::move(respond)](HttpResponse r) {
      r.headers["x-fc-request-id"] = requestId;
      if (r.headers.find("content-type") == r.headers.end()) {
        r.headers["Content-Type"] = std::string(guessContentType(r.body));
      }
      metrics->record(r.status, std::chrono::steady_clock::now() - start);
      respond(std::move(r));
    };

    if (req.method == "GET" || req.method == "HEAD") {
      if (req.path == "/healthz") {
        HttpResponse r;
        r.headers["Content-Type"] = "application/json";
        r.body = R"({"status":"ok"})";
        finish(std::move(r));
        return;
      }
      if (req.path == "/metrics") {
        HttpResponse r;
        r.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8";
        r.body = metrics_->render() + api_.metricsText();
        finish(std::move(r));
        return;
      }
    }

    Result<Caller> caller = api_.identify(req);
    if (!caller.isOk()) {
      finish(errorResponse(caller.status(), requestId));
      return;
    }
    api_.handle(*caller, std::move(req), std::move(finish));
  }

  Api& api_;
  // Shared with respond callbacks, which may run after the Gateway is gone.
  std::shared_ptr<Metrics> metrics_ = std::make_shared<Metrics>();
  // Last: its threads call handle(), which uses the members above.
  HttpServer server_;
};

Gateway::Gateway(Api& api, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(api, std::move(options))) {}
Gateway::~Gateway() { impl_->stop(std::chrono::seconds(5)); }

Status Gateway::start() { return impl_->start(); }
uint16_t Gateway::port() const { return impl_->port(); }
void Gateway::every(Duration period, std::function<void()> fn) {
  impl_->every(period, std::move(fn));
}
void Gateway::stop(Duration grace) { impl_->stop(grace); }

}  // namespace stratus
