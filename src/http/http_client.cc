// HttpClient and the load generator. The one client-side translation unit that includes Beast
// (each such TU costs ~25 s to compile), which is why runLoad() lives here and not in bench.cc.
//
// The synchronous client runs Beast's asynchronous operations on a private io_context and
// drives it until they finish: that is how its per-request timeout (beast::basic_stream's
// expiry) works, which blocking socket calls would not honour.
#include "http/http_client.h"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <sstream>
#include <thread>

namespace stratus {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Executor = asio::io_context::executor_type;
using Stream = beast::basic_stream<tcp, Executor>;
using ErrorCode = boost::system::error_code;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable_t<Executor>{});
constexpr uint32_t kHeaderLimit = 1 << 20;

Status transportStatus(const ErrorCode& ec, const std::string& what) {
  if (ec == beast::error::timeout) return Status(Code::kDeadlineExceeded, what + ": timed out");
  return unavailable(what + ": " + ec.message());
}

bool closedByPeer(const ErrorCode& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == http::error::partial_message;
}

HttpResponse fromBeast(http::response<http::string_body>&& res) {
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  appendHeaderFields(res, out.headers);
  out.body = std::move(res.body());
  return out;
}

}  // namespace

Result<HttpEndpoint> parseEndpoint(std::string_view endpoint) {
  std::string_view s = endpoint;
  if (s.starts_with("https://")) {
    return invalidArgument("endpoint '" + std::string(endpoint) + "': https is not supported");
  }
  if (s.starts_with("http://")) s.remove_prefix(7);
  if (size_t slash = s.find('/'); slash != std::string_view::npos) {
    if (s.substr(slash) != "/") {
      return invalidArgument("endpoint '" + std::string(endpoint) + "' must not have a path");
    }
    s = s.substr(0, slash);
  }
  HttpEndpoint ep;
  std::string_view portText;
  if (s.starts_with('[')) {  // [::1]:9000
    size_t close = s.find(']');
    if (close == std::string_view::npos) {
      return invalidArgument("endpoint '" + std::string(endpoint) + "': unclosed '['");
    }
    ep.host = std::string(s.substr(1, close - 1));
    std::string_view rest = s.substr(close + 1);
    if (rest.starts_with(':')) portText = rest.substr(1);
  } else if (size_t colon = s.rfind(':'); colon != std::string_view::npos) {
    ep.host = std::string(s.substr(0, colon));
    portText = s.substr(colon + 1);
  } else {
    ep.host = std::string(s);
  }
  if (ep.host.empty()) {
    return invalidArgument("endpoint '" + std::string(endpoint) + "' has no host");
  }
  if (!portText.empty()) {
    unsigned port = 0;
    auto [p, err] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
    if (err != std::errc() || p != portText.data() + portText.size() || port == 0 || port > 65535) {
      return invalidArgument("endpoint '" + std::string(endpoint) + "': bad port");
    }
    ep.port = static_cast<uint16_t>(port);
  }
  return ep;
}

class HttpClient::Impl {
 public:
  Impl(HttpEndpoint ep, Duration timeout)
      : ep_(std::move(ep)), timeout_(timeout), stream_(ioc_.get_executor()) {
    hostHeader_ = (ep_.host.find(':') != std::string::npos ? "[" + ep_.host + "]" : ep_.host) +
                  ":" + std::to_string(ep_.port);
  }

  Status connect() {
    close();
    tcp::resolver resolver(ioc_);
    ErrorCode ec;
    auto results = resolver.resolve(ep_.host, std::to_string(ep_.port), ec);
    if (ec) return unavailable("resolve " + ep_.host + ": " + ec.message());
    stream_.expires_after(timeout_);
    stream_.async_connect(results, [&](const ErrorCode& e, const tcp::endpoint&) { ec = e; });
    run();
    if (ec) return transportStatus(ec, "connect to " + hostHeader_);
    stream_.socket().set_option(tcp::no_delay(true), ec);
    connected_ = true;
    return Status::ok();
  }

  Result<HttpResponse> request(std::string_view method, std::string_view target,
                               const HttpHeaders& headers, std::string_view body) {
    http::request<http::string_body> req;
    http::verb verb = http::string_to_verb(method);
    if (verb == http::verb::unknown) {
      req.method_string(method);
    } else {
      req.method(verb);
    }
    req.target(target);
    req.version(11);
    req.set(http::field::host, hostHeader_);
    req.set(http::field::user_agent, "stratus");
    for (const auto& [name, value] : headers) req.set(name, value);
    req.body() = std::string(body);
    req.keep_alive(true);
    req.prepare_payload();
    const bool head = verb == http::verb::head;

    // A reused connection may have been closed by the server while it sat idle; that shows up
    // as EOF/RST before any response byte and is safe to retry once on a new connection.
    for (int attempt = 0;; ++attempt) {
      bool fresh = !connected_;
      if (fresh) RETURN_IF_ERROR(connect());
      ErrorCode ec;
      stream_.expires_after(timeout_);
      http::async_write(stream_, req, [&](const ErrorCode& e, size_t) { ec = e; });
      run();
      if (ec) {
        close();
        if (!fresh && attempt == 0 && closedByPeer(ec)) continue;
        return transportStatus(ec, "send " + std::string(method) + " " + std::string(target));
      }
      http::response_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(boost::none);
      if (head) parser.skip(true);
      http::async_read(stream_, buffer_, parser, [&](const ErrorCode& e, size_t) { ec = e; });
      run();
      if (ec) {
        bool nothingRead = !parser.got_some();
        close();
        if (!fresh && attempt == 0 && nothingRead && closedByPeer(ec)) continue;
        return transportStatus(
            ec, "read response to " + std::string(method) + " " + std::string(target));
      }
      stream_.expires_never();
      auto res = parser.release();
      if (!res.keep_alive()) close();
      return fromBeast(std::move(res));
    }
  }

  void setTimeout(Duration timeout) { timeout_ = timeout; }

 private:
  void run() {
    ioc_.restart();
    ioc_.run();
  }

  void close() {
    if (!connected_) return;
    ErrorCode ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    buffer_.clear();
    connected_ = false;
  }

  HttpEndpoint ep_;
  std::string hostHeader_;
  Duration timeout_;
  asio::io_context ioc_{1};
  Stream stream_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
};

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

Result<std::unique_ptr<HttpClient>> HttpClient::connect(const std::string& endpoint,
                                                        Duration timeout) {
  ASSIGN_OR_RETURN(HttpEndpoint ep, parseEndpoint(endpoint));
  try {
    auto impl = std::make_unique<Impl>(std::move(ep), timeout);
    RETURN_IF_ERROR(impl->connect());
    return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
  } catch (const std::exception& e) {
    return internalError("connect to " + endpoint + ": " + e.what());
  }
}

Result<HttpResponse> HttpClient::request(std::string_view method, std::string_view target,
                                         const HttpHeaders& headers, std::string_view body) {
  try {
    return impl_->request(method, target, headers, body);
  } catch (const std::exception& e) {
    // Beast throws only for misuse such as an invalid header value; report, do not propagate.
    return invalidArgument(std::string(method) + " " + std::string(target) + ": " + e.what());
  }
}

void HttpClient::setTimeout(Duration timeout) { impl_->setTimeout(timeout); }

Result<HttpResponse> httpRequest(const std::string& endpoint, std::string_view method,
                                 std::string_view target, const HttpHeaders& headers,
                                 std::string_view body, Duration timeout) {
  ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> client, HttpClient::connect(endpoint, timeout));
  return client->request(method, target, headers, body);
}

// ---- Load generation -------------------------------------------------------------------------

int64_t LoadResult::percentileNs(double p) const {
  if (latencyNs.empty()) return 0;
  double rank = p / 100.0 * static_cast<double>(latencyNs.size() - 1);
  size_t i = static_cast<size_t>(rank + 0.5);
  return latencyNs[std::min(i, latencyNs.size() - 1)];
}

namespace {

// State shared by the generator threads: the request counter is the only thing they share; each
// thread records into its own LoadResult, merged at the end.
struct LoadRun {
  const LoadOptions& options;
  tcp::resolver::results_type endpoints;
  std::string wire;  // the serialized request, identical for every request
  std::atomic<int64_t> issued{0};

  bool claim() { return issued.fetch_add(1, std::memory_order_relaxed) < options.requests; }

  static void noteError(LoadResult& result, std::string text) {
    if (result.firstError.empty()) result.firstError = std::move(text);
  }

  asio::awaitable<void, Executor> connection(LoadResult& result) {
    Executor ex = co_await asio::this_coro::executor;
    Stream stream(ex);
    beast::flat_buffer buffer;
    bool connected = false;
    while (claim()) {
      if (!connected) {
        stream.expires_after(options.timeout);
        auto [ec, ep] = co_await stream.async_connect(endpoints, kTuple);
        if (ec) {
          ++result.failures;
          noteError(result, "connect: " + ec.message());
          stream.close();
          continue;
        }
        ErrorCode ignored;
        stream.socket().set_option(tcp::no_delay(true), ignored);
        buffer.clear();
        connected = true;
      }
      auto start = std::chrono::steady_clock::now();
      stream.expires_after(options.timeout);
      auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(wire), kTuple);
      http::response_parser<http::string_body> parser;
      ErrorCode rec;
      if (!wec) {
        parser.header_limit(kHeaderLimit);
        parser.body_limit(boost::none);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, kTuple);
        rec = ec;
      }
      if (wec || rec) {
        ++result.failures;
        noteError(result, (wec ? "send: " : "read: ") + (wec ? wec : rec).message());
        stream.close();
        connected = false;
        continue;
      }
      auto elapsed = std::chrono::steady_clock::now() - start;
      result.latencyNs.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
      ++result.completed;
      const auto& res = parser.get();
      int status = static_cast<int>(res.result_int());
      ++result.statusCounts[status];
      auto errorType = res["x-fc-error-type"];
      if (status != 200 || !errorType.empty()) {
        ++result.errors;
        noteError(result,
                  "HTTP " + std::to_string(status) +
                      (errorType.empty() ? "" : " x-fc-error-type " + std::string(errorType)) +
                      ": " + res.body().substr(0, 300));
      }
      if (!res.keep_alive()) {
        stream.close();
        connected = false;
      }
    }
    if (connected) {
      ErrorCode ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream.close();
    }
  }
};

}  // namespace

Result<LoadResult> runLoad(const LoadOptions& options) {
  ASSIGN_OR_RETURN(HttpEndpoint ep, parseEndpoint(options.endpoint));
  if (options.requests < 0 || options.concurrency < 1) {
    return invalidArgument("load: requests must be >= 0 and concurrency >= 1");
  }
  try {
    ErrorCode ec;
    tcp::resolver::results_type endpoints;
    {
      asio::io_context ioc(1);
      tcp::resolver resolver(ioc);
      endpoints = resolver.resolve(ep.host, std::to_string(ep.port), ec);
    }
    if (ec) return unavailable("resolve " + ep.host + ": " + ec.message());
    LoadRun run{options, std::move(endpoints), {}};

    http::request<http::string_body> req;
    http::verb verb = http::string_to_verb(options.method);
    if (verb == http::verb::unknown) {
      req.method_string(options.method);
    } else {
      req.method(verb);
    }
    req.target(options.target);
    req.version(11);
    req.set(http::field::host, ep.host + ":" + std::to_string(ep.port));
    req.set(http::field::user_agent, "stratus-bench");
    for (const auto& [name, value] : options.headers) req.set(name, value);
    req.body() = options.body;
    req.keep_alive(true);
    req.prepare_payload();
    std::ostringstream wire;
    wire << req;
    run.wire = wire.str();

    int conns = static_cast<int>(
        std::min<int64_t>(options.concurrency, std::max<int64_t>(1, options.requests)));
    int threads = std::clamp(options.threads, 1, conns);
    std::vector<LoadResult> partial(static_cast<size_t>(threads));
    std::vector<std::unique_ptr<asio::io_context>> contexts;
    for (int t = 0; t < threads; ++t) {
      contexts.push_back(std::make_unique<asio::io_context>(1));
      partial[t].latencyNs.reserve(static_cast<size_t>(options.requests / threads + 1));
    }
    for (int i = 0; i < conns; ++i) {
      asio::co_spawn(*contexts[i % threads], run.connection(partial[i % threads]), asio::detached);
    }
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    for (int t = 1; t < threads; ++t) workers.emplace_back([c = contexts[t].get()] { c->run(); });
    contexts[0]->run();
    for (auto& w : workers) w.join();

    LoadResult result;
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.latencyNs.reserve(static_cast<size_t>(options.requests));
    for (auto& p : partial) {
      result.completed += p.completed;
      result.errors += p.errors;
      result.failures += p.failures;
      for (auto& [status, n] : p.statusCounts) result.statusCounts[status] += n;
      if (result.firstError.empty()) result.firstError = std::move(p.firstError);
      result.latencyNs.insert(result.latencyNs.end(), p.latencyNs.begin(), p.latencyNs.end());
    }
    std::sort(result.latencyNs.begin(), result.latencyNs.end());
    return result;
  } catch (const std::exception& e) {
    return internalError(std::string("load generator: ") + e.what());
  }
}

Result<LoadResult> runLoad(const std::string& endpoint, std::string_view method,
                           std::string_view target, const HttpHeaders& headers,
                           std::string_view body, int64_t requests, int concurrency) {
  LoadOptions options;
  options.endpoint = endpoint;
  options.method = std::string(method);
  options.target = std::string(target);
  options.headers = headers;
  options.body = std::string(body);
  options.requests = requests;
  options.concurrency = concurrency;
  return runLoad(options);
}

}  // namespace stratus
