// HttpServer on Boost.Asio/Beast with C++20 coroutines.
//
// Threading: one io_context per thread (the "io_context per core" layout), so a connection lives
// on exactly one thread and needs no strand; the acceptor runs on the first context and hands
// sockets out round-robin. The handler may answer from any thread: its respond callback posts
// the response to the connection's context and wakes the connection coroutine, which waits on a
// timer that never expires by itself (Asio's cheapest "event").
//
// Lifetime: respond callbacks can outlive the server (an invocation still running in a worker
// when the gateway shuts down). They hold only a weak_ptr to the connection and a shared Core
// whose `alive` flag, read under a shared lock, says whether the io_contexts still exist.
#include "gateway/http_server.h"

#include <fcntl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/log.h"

namespace stratus {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Executor = asio::io_context::executor_type;
using Stream = beast::basic_stream<tcp, Executor>;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable_t<Executor>{});
// After an error response, how long and how much of the client's remaining upload to drain.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 64 << 20;

std::string jsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out;
}

HttpResponse jsonErrorResponse(int status, std::string_view code, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.headers["Content-Type"] = "application/json";
  r.body = "{\"code\":\"" + jsonEscape(code) + "\",\"message\":\"" + jsonEscape(message) + "\"}";
  return r;
}

// Shared with respond callbacks, which may outlive the server.
struct Core {
  std::shared_mutex mu;
  bool alive = true;  // GUARDED_BY(mu): false once the io_contexts are stopped
};

// One client connection. Every field is touched only on the connection's io_context thread.
struct Conn {
  Conn(Stream::socket_type socket, Executor ex) : exec(ex), stream(std::move(socket)), wake(ex) {}
  Executor exec;
  Stream stream;
  asio::steady_timer wake;  // cancelled when `pending` is set or the server aborts
  std::optional<HttpResponse> pending;
  bool idle = false;     // suspended waiting for the first bytes of a request
  bool closing = false;  // server stopping: close after the current response
  bool aborted = false;  // grace period over: close now
};

// The state behind one request's respond callback: delivers exactly once, and a callback
// dropped without being called answers 500 rather than leaving the client hanging.
class RespondState {
 public:
  RespondState(std::weak_ptr<Conn> conn, std::shared_ptr<Core> core)
      : conn_(std::move(conn)), core_(std::move(core)) {}
  ~RespondState() {
    if (!done_.load(std::memory_order_relaxed)) {
      deliver(jsonErrorResponse(500, "InternalError", "request dropped without a response"));
    }
  }

  void deliver(HttpResponse r) {
    if (done_.exchange(true)) return;
    std::shared_ptr<Conn> c = conn_.lock();
    if (!c) return;
    if (c->exec.running_in_this_thread()) {
      // Answered inline by the handler (or on the connection's thread): no post needed.
      c->pending = std::move(r);
      c->wake.cancel();
      return;
    }
    std::shared_lock lock(core_->mu);
    if (!core_->alive) return;
    asio::post(c->exec, [c, r = std::move(r)]() mutable {
      c->pending = std::move(r);
      c->wake.cancel();
    });
  }

 private:
  std::weak_ptr<Conn> conn_;
  std::shared_ptr<Core> core_;
  std::atomic<bool> done_{false};
};

// Maps a Beast read error to the response the client deserves, or nullopt to just close.
std::optional<HttpResponse> responseForReadError(const boost::system::error_code& ec,
                                                 const HttpServerOptions& options) {
  if (ec == http::error::body_limit) {
    return jsonErrorResponse(
        413, "PayloadTooLarge",
        "request body exceeds " + std::to_string(options.maxBodyBytes) + " bytes");
  }
  if (ec == http::error::header_limit) {
    return jsonErrorResponse(
        431, "RequestHeaderFieldsTooLarge",
        "request header exceeds " + std::to_string(options.maxHeaderBytes) + " bytes");
  }
  if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message &&
      ec != http::error::need_more && ec != http::error::need_buffer) {
    return jsonErrorResponse(400, "BadRequest", "malformed HTTP request: " + ec.message());
  }
  return std::nullopt;
}

http::response<http::string_body> toBeast(HttpResponse&& r, unsigned version, bool keepAlive,
                                          bool head) {
  http::response<http::string_body> res;
  res.version(version);
  res.result(r.status >= 100 && r.status <= 599 ? static_cast<unsigned>(r.status) : 500u);
  for (auto& [name, value] : r.headers) {
    http::field f = http::string_to_field(name);
    if (f == http::field::content_length || f == http::field::transfer_encoding ||
        f == http::field::connection) {
      continue;  // framing is ours
    }
    if (f != http::field::unknown) {
      res.insert(f, value);
    } else {
      res.insert(name, value);
    }
  }
  res.keep_alive(keepAlive);
  const unsigned status = res.result_int();
  if (status < 200 || status == 204 || status == 304) {
    r.body.clear();  // these carry no body (and Beast refuses to frame one)
  }
  if (head) {
    res.content_length(r.body.size());
  } else {
    res.body() = std::move(r.body);
    res.prepare_payload();
  }
  return res;
}

// Beast message -> HttpRequest; nullopt when the target is not an absolute, decodable path.
std::optional<HttpRequest> toHttpRequest(http::request<http::string_body>& msg) {
  HttpRequest req;
  std::string_view target = msg.target();
  size_t q = target.find('?');
  auto path = percentDecode(target.substr(0, q));
  if (!path || path->empty() || (*path)[0] != '/') return std::nullopt;
  req.method = std::string(msg.method_string());
  req.path = std::move(*path);
  if (q != std::string_view::npos) req.query = parseQuery(target.substr(q + 1));
  appendHeaderFields(msg, req.headers);
  req.body = std::move(msg.body());
  return req;
}

}  // namespace

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, HttpHandler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {
    int n = std::max(1, options_.threads);
    for (int i = 0; i < n; ++i) {
      contexts_.push_back(std::make_unique<asio::io_context>(1));
      guards_.emplace_back(contexts_.back()->get_executor());
    }
    acceptor_.emplace(contexts_[0]->get_executor());
  }

  ~Impl() {
    stop(std::chrono::seconds(0));
    {
      std::unique_lock lock(core_->mu);
      core_->alive = false;
    }
    // Destroying the contexts destroys suspended coroutine frames (their guards unregister from
    // conns_, which is still alive here); the acceptor goes first since it uses contexts_[0].
    guards_.clear();
    acceptor_.reset();
    contexts_.clear();
  }

  Status start() {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(options_.listenAddress, ec);
    if (ec)
      return invalidArgument("listen address '" + options_.listenAddress + "': " + ec.message());
    tcp::endpoint ep(addr, options_.port);
    std::string what = options_.listenAddress + ":" + std::to_string(options_.port);
    if (acceptor_->open(ep.protocol(), ec); ec) return sysStatus(ec, "open socket for " + what);
    if (acceptor_->set_option(tcp::acceptor::reuse_address(true), ec); ec) {
      return sysStatus(ec, "set SO_REUSEADDR on " + what);
    }
    if (acceptor_->bind(ep, ec); ec) return sysStatus(ec, "bind " + what);
    if (acceptor_->listen(asio::socket_base::max_listen_connections, ec); ec) {
      return sysStatus(ec, "listen on " + what);
    }
    boundPort_ = acceptor_->local_endpoint(ec).port();
    asio::co_spawn(contexts_[0]->get_executor(), acceptLoop(), asio::detached);
    for (auto& [period, fn] : periodic_) {
      asio::co_spawn(contexts_[0]->get_executor(), tickLoop(period, fn), asio::detached);
    }
    for (auto& ctx : contexts_) {
      threads_.emplace_back([c = ctx.get()] { c->run(); });
    }
    started_ = true;
    return Status::ok();
  }

  uint16_t boundPort() const { return boundPort_; }

  void every(Duration period, std::function<void()> fn) {
    periodic_.emplace_back(period, std::move(fn));
  }

  void stop(Duration grace) {
    std::lock_guard stopLock(stopMu_);
    if (!started_ || stopped_) return;
    stopped_ = true;
    stopping_.store(true);
    asio::post(contexts_[0]->get_executor(), [this] {
      boost::system::error_code ignored;
      acceptor_->close(ignored);
    });
    // Idle connections close now; busy ones after their response is written.
    forEachConn([](const std::shared_ptr<Conn>& c) {
      c->closing = true;
      if (c->idle) c->stream.cancel();
    });
    auto deadline = std::chrono::steady_clock::now() + grace;
    {
      std::unique_lock lock(connsMu_);
      connsCv_.wait_until(lock, deadline, [this] { return conns_.empty(); });
    }
    forEachConn([](const std::shared_ptr<Conn>& c) {
      c->aborted = true;
      c->stream.cancel();
      c->wake.cancel();
    });
    {
      std::unique_lock lock(connsMu_);
      connsCv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return conns_.empty(); });
    }
    for (auto& g : guards_) g.reset();
    for (auto& ctx : contexts_) ctx->stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
    std::unique_lock lock(core_->mu);
    core_->alive = false;
  }

 private:
  static Status sysStatus(const boost::system::error_code& ec, const std::string& what) {
    if (ec.category() == boost::system::system_category()) {
      return Status::fromErrno(ec.value(), what);
    }
    return unavailable(what + ": " + ec.message());
  }

  // Registers a connection for stop() for the lifetime of its coroutine (including a frame
  // destroyed unfinished when the contexts go away).
  // The connection's slots (open_, perAddress_) were taken by the accept loop; released here.
  struct ConnRegistration {
    ConnRegistration(Impl& impl, const std::shared_ptr<Conn>& c, std::string address)
        : impl(impl), key(c.get()), address(std::move(address)) {
      std::lock_guard lock(impl.connsMu_);
      impl.conns_.emplace(key, c);
    }
    ~ConnRegistration() {
      std::lock_guard lock(impl.connsMu_);
      impl.conns_.erase(key);
      --impl.open_;
      if (auto it = impl.perAddress_.find(address);
          it != impl.perAddress_.end() && --it->second <= 0) {
        impl.perAddress_.erase(it);
      }
      if (impl.conns_.empty()) impl.connsCv_.notify_all();
    }
    Impl& impl;
    Conn* key;
    std::string address;
  };

  template <typename Fn>
  void forEachConn(Fn fn) {
    std::vector<std::shared_ptr<Conn>> live;
    {
      std::lock_guard lock(connsMu_);
      for (auto& [key, weak] : conns_) {
        if (auto c = weak.lock()) live.push_back(std::move(c));
      }
    }
    for (auto& c : live) asio::post(c->exec, [c, fn] { fn(c); });
  }

  asio::awaitable<void, Executor> acceptLoop() {
    size_t next = 0;
    asio::steady_timer backoff(contexts_[0]->get_executor());
    for (;;) {
      asio::io_context& ctx = *contexts_[next++ % contexts_.size()];
      Stream::socket_type socket(ctx.get_executor());
      auto [ec] = co_await acceptor_->async_accept(socket, kTuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
        // EMFILE and friends: back off instead of spinning on a full fd table.
        SLOG_WARN("http accept: {}", ec.message());
        backoff.expires_after(std::chrono::milliseconds(50));
        co_await backoff.async_wait(kTuple);
        continue;
      }
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      // Asio accepts without SOCK_CLOEXEC: a process the server starts (a runtime template)
      // must not keep a client connection open after the server has closed it.
      ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
      std::string address;
      if (auto ep = socket.remote_endpoint(ignored); !ignored) address = ep.address().to_string();
      std::optional<HttpResponse> refuse;
      {
        std::lock_guard lock(connsMu_);
        if (open_ + refusing_ >= options_.maxConnections) {
          refuse = jsonErrorResponse(503, "ServiceUnavailable",
                                     "the server has " + std::to_string(open_) +
                                         " connections open (limit " +
                                         std::to_string(options_.maxConnections) + ")");
        } else if (perAddress_[address] >= options_.maxConnectionsPerAddress) {
          refuse = jsonErrorResponse(429, "TooManyConnections",
                                     "client " + address + " already has " +
                                         std::to_string(perAddress_[address]) +
                                         " connections open (limit " +
                                         std::to_string(options_.maxConnectionsPerAddress) + ")");
        }
        if (refuse) {
          ++refusing_;
          ++refusedConnections_;
          if (perAddress_[address] == 0) perAddress_.erase(address);
        } else {
          ++perAddress_[address];
          ++open_;
        }
      }
      auto conn = std::make_shared<Conn>(std::move(socket), ctx.get_executor());
      if (refuse) {
        refuse->headers["Retry-After"] = "1";
        asio::co_spawn(ctx.get_executor(), refuseConnection(std::move(conn), std::move(*refuse)),
                       asio::detached);
        continue;
      }
      asio::co_spawn(ctx.get_executor(), session(std::move(conn), std::move(address)),
                     asio::detached);
    }
  }

  asio::awaitable<void, Executor> tickLoop(Duration period, std::function<void()> fn) {
    asio::steady_timer timer(contexts_[0]->get_executor());
    for (;;) {
      timer.expires_after(period);
      auto [ec] = co_await timer.async_wait(kTuple);
      if (ec || stopping_.load()) co_return;
      try {
        fn();
      } catch (const std::exception& e) {
        SLOG_ERROR("periodic task threw: {}", e.what());
      }
    }
  }

  // Answers a connection over a limit and closes it; bounded by a short deadline so that a
  // client that does not read cannot keep even this alive.
  asio::awaitable<void, Executor> refuseConnection(std::shared_ptr<Conn> conn, HttpResponse r) {
    struct Release {
      Impl& impl;
      ~Release() {
        std::lock_guard lock(impl.connsMu_);
        --impl.refusing_;
      }
    } release{*this};
    auto res = toBeast(std::move(r), 11, false, false);
    conn->stream.expires_after(std::chrono::seconds(2));
    co_await http::async_write(conn->stream, res, kTuple);
    boost::system::error_code ignored;
    conn->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    conn->stream.close();
  }

  asio::awaitable<void, Executor> writeAndLinger(std::shared_ptr<Conn> conn, HttpResponse r) {
    auto res = toBeast(std::move(r), 11, false, false);
    conn->stream.expires_after(options_.idleTimeout);
    auto [ec, n] = co_await http::async_write(conn->stream, res, kTuple);
    if (ec) co_return;
    // Read (and drop) what the client is still sending so that closing does not turn into a
    // RST that destroys our error response in the client's receive queue.
    boost::system::error_code ignored;
    conn->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    conn->stream.expires_after(kLingerTime);
    std::vector<char> sink(64 << 10);
    size_t total = 0;
    while (total < kLingerBytes) {
      auto [rec, got] = co_await conn->stream.async_read_some(asio::buffer(sink), kTuple);
      if (rec) break;
      total += got;
    }
  }

  asio::awaitable<void, Executor> session(std::shared_ptr<Conn> conn, std::string address) {
    ConnRegistration registration(*this, conn, std::move(address));
    if (stopping_.load()) co_return;
    boost::system::error_code ec;
    std::string remote;
    auto rep = conn->stream.socket().remote_endpoint(ec);
    if (!ec) remote = rep.address().to_string() + ":" + std::to_string(rep.port());

    beast::flat_buffer buffer;
    int served = 0;
    for (;;) {
      if (conn->closing) break;
      http::request_parser<http::string_body> parser;
      parser.header_limit(
          static_cast<uint32_t>(std::min<int64_t>(options_.maxHeaderBytes, UINT32_MAX)));
      parser.body_limit(static_cast<uint64_t>(options_.maxBodyBytes));

      // Idle: wait up to idleTimeout for the first byte of the next request.
      if (buffer.size() == 0) {
        conn->idle = true;
        conn->stream.expires_after(options_.idleTimeout);
        auto [iec, in] = co_await conn->stream.async_read_some(buffer.prepare(16 << 10), kTuple);
        conn->idle = false;
        if (iec) break;
        buffer.commit(in);
      }
      // Then the whole header within headerTimeout (slowloris). Our own timer rather than the
      // stream's expiry, which would close the socket before we can answer 408.
      conn->stream.expires_never();
      // 0: reading, 1: read finished (a timer handler already queued must not cancel later
      // operations), 2: timed out.
      auto headerState = std::make_shared<int>(0);
      asio::steady_timer headerTimer(conn->exec);
      headerTimer.expires_after(options_.headerTimeout);
      headerTimer.async_wait([conn, headerState](boost::system::error_code ec) {
        if (ec || *headerState != 0) return;
        *headerState = 2;
        boost::system::error_code ignored;
        conn->stream.socket().cancel(ignored);
      });
      auto [hec, hn] = co_await http::async_read_header(conn->stream, buffer, parser, kTuple);
      const bool timedOut = *headerState == 2;
      *headerState = 1;
      headerTimer.cancel();
      if (hec) {
        if (timedOut && !conn->aborted) {
          co_await writeAndLinger(
              conn,
              jsonErrorResponse(408, "RequestTimeout",
                                "the request header was not complete within " +
                                    std::to_string(toMillis(options_.headerTimeout)) + " ms"));
        } else if (auto r = responseForReadError(hec, options_); r && !conn->aborted) {
          co_await writeAndLinger(conn, std::move(*r));
        }
        break;
      }
      if (!parser.is_done()) {
        auto expect = parser.get()[http::field::expect];
        if (beast::iequals(expect, "100-continue")) {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          auto [cec, cn] =
              co_await asio::async_write(conn->stream, asio::buffer(kContinue), kTuple);
          if (cec) break;
        }
        conn->stream.expires_after(options_.bodyTimeout);
        auto [bec, bn] = co_await http::async_read(conn->stream, buffer, parser, kTuple);
        if (bec) {
          if (auto r = responseForReadError(bec, options_); r && !conn->aborted) {
            co_await writeAndLinger(conn, std::move(*r));
          }
          break;
        }
      }

      http::request<http::string_body> msg = parser.release();
      const bool keepAlive = msg.keep_alive();
      const bool head = msg.method() == http::verb::head;
      const unsigned version = msg.version();

      std::optional<HttpRequest> converted = toHttpRequest(msg);
      if (!converted) {
        co_await writeAndLinger(conn,
                                jsonErrorResponse(400, "BadRequest", "malformed request target"));
        break;
      }
      HttpRequest req = std::move(*converted);
      req.remoteAddress = remote;

      conn->pending.reset();
      conn->stream.expires_never();  // the handler owns the request's deadline
      {
        auto state = std::make_shared<RespondState>(conn, core_);
        try {
          handler_(std::move(req), [state](HttpResponse r) { state->deliver(std::move(r)); });
        } catch (const std::exception& e) {
          SLOG_ERROR("http handler threw: {}", e.what());
          state->deliver(jsonErrorResponse(500, "InternalError", "handler failed"));
        }
      }
      while (!conn->pending && !conn->aborted) {
        conn->wake.expires_at(asio::steady_timer::time_point::max());
        co_await conn->wake.async_wait(kTuple);
      }
      if (conn->aborted) break;

      ++served;
      auto res = toBeast(std::move(*conn->pending), version,
                         keepAlive && !conn->closing && !stopping_.load() &&
                             served < options_.maxRequestsPerConnection,
                         head);
      conn->pending.reset();
      conn->stream.expires_after(options_.idleTimeout);
      auto [wec, wn] = co_await http::async_write(conn->stream, res, kTuple);
      if (wec || !res.keep_alive()) break;
    }
    conn->stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    conn->stream.close();
  }

  HttpServerOptions options_;
  HttpHandler handler_;
  std::shared_ptr<Core> core_ = std::make_shared<Core>();
  std::vector<std::pair<Duration, std::function<void()>>> periodic_;

  std::mutex connsMu_;
  std::condition_variable connsCv_;
  std::unordered_map<Conn*, std::weak_ptr<Conn>> conns_;  // GUARDED_BY(connsMu_)
  std::unordered_map<std::string, int> perAddress_;       // GUARDED_BY(connsMu_)
  int open_ = 0;      // GUARDED_BY(connsMu_): accepted, counted from accept (not registration)
  int refusing_ = 0;  // GUARDED_BY(connsMu_): refused connections being answered
  int64_t refusedConnections_ = 0;  // GUARDED_BY(connsMu_)

  std::atomic<bool> stopping_{false};
  std::mutex stopMu_;
  bool started_ = false;
  bool stopped_ = false;  // GUARDED_BY(stopMu_)
  uint16_t boundPort_ = 0;

  // Declared after conns_ so that frames destroyed with the contexts can still unregister.
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<Executor>> guards_;
  std::optional<tcp::acceptor> acceptor_;
  std::vector<std::thread> threads_;
};

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

HttpServer::~HttpServer() = default;

Status HttpServer::start() { return impl_->start(); }

uint16_t HttpServer::boundPort() const { return impl_->boundPort(); }

void HttpServer::stop(Duration grace) { impl_->stop(grace); }

void HttpServer::every(Duration period, std::function<void()> fn) {
  impl_->every(period, std::move(fn));
}

Result<HttpRequest> parseHttpRequest(std::string_view bytes, const HttpServerOptions& options) {
  http::request_parser<http::string_body> parser;
  parser.eager(true);
  parser.header_limit(static_cast<uint32_t>(std::min<int64_t>(options.maxHeaderBytes, UINT32_MAX)));
  parser.body_limit(static_cast<uint64_t>(options.maxBodyBytes));
  boost::system::error_code ec;
  asio::const_buffer buf(bytes.data(), bytes.size());
  while (buf.size() > 0 && !parser.is_done()) {
    size_t used = parser.put(buf, ec);
    if (ec == http::error::need_more) break;
    if (ec) {
      auto r = responseForReadError(ec, options);
      return invalidArgument("HTTP " + std::to_string(r ? r->status : 400) + ": " + ec.message());
    }
    if (used == 0) break;
    buf += used;
  }
  if (!parser.is_done()) {
    parser.put_eof(ec);
    if (ec || !parser.is_done()) return invalidArgument("incomplete HTTP request");
  }
  http::request<http::string_body> msg = parser.release();
  auto req = toHttpRequest(msg);
  if (!req) return invalidArgument("malformed request target");
  return std::move(*req);
}

}  // namespace stratus
