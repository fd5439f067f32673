#include "codepack/blob_http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.h"

namespace stratus {
namespace {

constexpr size_t kMaxHead = 16 * 1024;
constexpr int64_t kPiece = 1 << 20;
constexpr auto kPeerMissTtl = std::chrono::seconds(5);

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return std::string(s);
}

bool sendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool parseInt(std::string_view s, int64_t& out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

struct Head {
  std::string method, target, version;
  std::map<std::string, std::string> headers;  // lower-case names
};

bool parseHead(const std::string& head, Head& h) {
  size_t eol = head.find("\r\n");
  std::string_view line = std::string_view(head).substr(0, eol);
  size_t a = line.find(' ');
  size_t b = a == std::string_view::npos ? a : line.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  h.method = std::string(line.substr(0, a));
  h.target = std::string(line.substr(a + 1, b - a - 1));
  h.version = std::string(line.substr(b + 1));
  size_t p = eol == std::string::npos ? head.size() : eol + 2;
  while (p < head.size()) {
    size_t e = head.find("\r\n", p);
    if (e == std::string::npos) e = head.size();
    std::string_view l = std::string_view(head).substr(p, e - p);
    p = e + 2;
    if (l.empty()) continue;
    size_t colon = l.find(':');
    if (colon == std::string_view::npos) return false;
    h.headers[lower(std::string(l.substr(0, colon)))] = trim(l.substr(colon + 1));
  }
  return true;
}

// "bytes=a-b" | "bytes=a-" | "bytes=-n" against a blob of `size` bytes. false: unsatisfiable or
// malformed (both answer 416; multi-range is not supported).
bool parseRange(const std::string& v, int64_t size, int64_t& first, int64_t& last) {
  if (v.rfind("bytes=", 0) != 0) return false;
  std::string_view r = std::string_view(v).substr(6);
  if (r.find(',') != std::string_view::npos) return false;
  size_t dash = r.find('-');
  if (dash == std::string_view::npos) return false;
  std::string_view s = r.substr(0, dash), e = r.substr(dash + 1);
  if (s.empty()) {
    int64_t n;
    if (!parseInt(e, n) || n == 0 || size == 0) return false;
    first = std::max<int64_t>(0, size - n);
    last = size - 1;
    return true;
  }
  if (!parseInt(s, first) || first >= size) return false;
  if (e.empty()) {
    last = size - 1;
  } else {
    if (!parseInt(e, last) || last < first) return false;
    last = std::min(last, size - 1);
  }
  return true;
}

std::string statusLine(int code) {
  switch (code) {
    case 200:
      return "200 OK";
    case 206:
      return "206 Partial Content";
    case 400:
      return "400 Bad Request";
    case 404:
      return "404 Not Found";
    case 405:
      return "405 Method Not Allowed";
    case 416:
      return "416 Range Not Satisfiable";
    default:
      return "500 Internal Server Error";
  }
}

}  // namespace

// ---- server ---------------------------------------------------------------------------------

Result<std::unique_ptr<BlobServer>> BlobServer::start(std::shared_ptr<BlobStore> store,
                                                      BlobServerOptions options) {
  std::unique_ptr<BlobServer> s(new BlobServer(std::move(store), std::move(options)));
  const bool v6 = s->options_.address.find(':') != std::string::npos;
  s->listen_.reset(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s->listen_) return Status::fromErrno(errno, "blob server socket");
  int one = 1;
  ::setsockopt(s->listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(s->options_.port);
    if (::inet_pton(AF_INET6, s->options_.address.c_str(), &a->sin6_addr) != 1) {
      return invalidArgument("blob server address '" + s->options_.address + "'");
    }
    len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(s->options_.port);
    if (::inet_pton(AF_INET, s->options_.address.c_str(), &a->sin_addr) != 1) {
      return invalidArgument("blob server address '" + s->options_.address + "'");
    }
    len = sizeof(sockaddr_in);
  }
  if (::bind(s->listen_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Status::fromErrno(errno, "bind blob server to " + s->options_.address);
  }
  if (::listen(s->listen_.get(), 128) != 0) return Status::fromErrno(errno, "listen");
  len = sizeof ss;
  if (::getsockname(s->listen_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Status::fromErrno(errno, "getsockname");
  }
  s->port_ = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                      : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  s->stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->stop_) return Status::fromErrno(errno, "eventfd");
  s->acceptThread_ = std::thread([raw = s.get()] { raw->acceptLoop(); });
  return s;
}

std::string BlobServer::url() const {
  const bool v6 = options_.address.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + options_.address + "]" : options_.address) + ":" +
         std::to_string(port_);
}

BlobServer::~BlobServer() {
  uint64_t one = 1;
  if (stop_) (void)!::write(stop_.get(), &one, sizeof one);
  if (acceptThread_.joinable()) acceptThread_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& [id, c] : conns_) {
      if (c.second >= 0) ::shutdown(c.second, SHUT_RDWR);
      threads.push_back(std::move(c.first));
    }
    conns_.clear();
    finished_.clear();
  }
  for (auto& t : threads) t.join();
}

void BlobServer::reapFinished() {
  std::vector<std::thread> done;
  {
    std::lock_guard lock(mu_);
    for (auto id : finished_) {
      auto it = conns_.find(id);
      if (it != conns_.end()) {
        done.push_back(std::move(it->second.first));
        conns_.erase(it);
      }
    }
    finished_.clear();
  }
  for (auto& t : done) t.join();
}

void BlobServer::acceptLoop() {
  pollfd fds[2] = {{listen_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  for (;;) {
    int r = ::poll(fds, 2, 1000);
    if (r < 0 && errno != EINTR) break;
    if (fds[1].revents != 0) break;
    reapFinished();
    if (r <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{60, 0};  // an idle keep-alive connection is closed after a minute
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::lock_guard lock(mu_);
    if (stopping_) {
      ::close(fd);
      continue;
    }
    std::thread t([this, fd] { serveConnection(fd); });
    auto id = t.get_id();
    conns_.emplace(id, std::make_pair(std::move(t), fd));
  }
}

void BlobServer::serveConnection(int fd) {
  std::string buf;
  char tmp[4096];
  for (;;) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (buf.size() > kMaxHead) goto done;
      ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) goto done;
      buf.append(tmp, static_cast<size_t>(n));
    }
    {
      std::string head = buf.substr(0, end);
      buf.erase(0, end + 4);
      if (!handle(fd, head)) goto done;
    }
  }
done : {
  std::lock_guard lock(mu_);
  // Forget the fd before closing it, so the destructor never shuts down a reused number.
  if (auto it = conns_.find(std::this_thread::get_id()); it != conns_.end()) {
    it->second.second = -1;
  }
  finished_.push_back(std::this_thread::get_id());
}
  ::close(fd);
}

void BlobServer::pace(size_t bytes) {
  if (options_.bytesPerSecond <= 0) return;
  std::chrono::steady_clock::time_point until;
  {
    std::lock_guard lock(paceMu_);
    auto now = std::chrono::steady_clock::now();
    if (nextFree_ < now) nextFree_ = now;
    nextFree_ += std::chrono::nanoseconds(static_cast<int64_t>(bytes) * 1000000000LL /
                                          options_.bytesPerSecond);
    until = nextFree_;
  }
  std::this_thread::sleep_until(until);
}

bool BlobServer::handle(int fd, const std::string& head) {
  requests_.fetch_add(1);
  Head h;
  auto reply = [&](int code, const std::string& extra, int64_t length, bool keep) {
    std::string r = "HTTP/1.1 " + statusLine(code) +
                    "\r\nContent-Length: " + std::to_string(length) +
                    "\r\nAccept-Ranges: bytes\r\n" + extra +
                    (keep ? "Connection: keep-alive\r\n" : "Connection: close\r\n") + "\r\n";
    return sendAll(fd, r.data(), r.size());
  };
  if (!parseHead(head, h)) {
    reply(400, "", 0, false);
    return false;
  }
  bool keep = h.version == "HTTP/1.1" &&
              lower(h.headers.count("connection") ? h.headers["connection"] : "") != "close";
  if (h.method != "GET" && h.method != "HEAD") return reply(405, "", 0, false) && false;
  if (h.target.rfind("/blobs/", 0) != 0) return reply(404, "", 0, keep) && keep;
  const std::string name = h.target.substr(7);
  auto size = store_->size(name);
  if (!size) {
    Code c = size.status().code();
    return reply(c == Code::kNotFound || c == Code::kInvalidArgument ? 404 : 500, "", 0, keep) &&
           keep;
  }
  int64_t first = 0, last = *size - 1;
  int code = 200;
  if (auto it = h.headers.find("range"); it != h.headers.end()) {
    if (!parseRange(it->second, *size, first, last)) {
      return reply(416, "Content-Range: bytes */" + std::to_string(*size) + "\r\n", 0, keep) &&
             keep;
    }
    code = 206;
  }
  const int64_t length = *size == 0 ? 0 : last - first + 1;
  std::string extra;
  if (code == 206) {
    extra = "Content-Range: bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
            std::to_string(*size) + "\r\n";
  }
  if (options_.firstByteDelay.count() > 0) std::this_thread::sleep_for(options_.firstByteDelay);
  if (!reply(code, extra, length, keep)) return false;
  if (h.method == "HEAD") return keep;
  for (int64_t off = 0; off < length;) {
    int64_t n = std::min(kPiece, length - off);
    auto piece = store_->readRange(name, first + off, n);
    if (!piece) {
      SLOG_WARN("blob server: read {} at {}: {}", name, first + off, piece.status().toString());
      return false;  // the client sees a short body and fails the read
    }
    pace(static_cast<size_t>(n));
    if (!sendAll(fd, piece->data(), piece->size())) return false;
    bytesServed_.fetch_add(n);
    off += n;
  }
  return keep;
}

// ---- client ---------------------------------------------------------------------------------

HttpBlobStore::HttpBlobStore(std::string baseUrl, std::chrono::milliseconds timeout)
    : baseUrl_(std::move(baseUrl)), timeout_(timeout) {
  std::string_view u = baseUrl_;
  if (u.rfind("http://", 0) == 0) u.remove_prefix(7);
  while (!u.empty() && u.back() == '/') u.remove_suffix(1);
  if (!u.empty() && u.front() == '[') {
    size_t close = u.find(']');
    host_ = std::string(u.substr(1, close == std::string_view::npos ? u.size() - 1 : close - 1));
    if (close != std::string_view::npos && close + 1 < u.size() && u[close + 1] == ':') {
      port_ = std::string(u.substr(close + 2));
    }
  } else {
    size_t colon = u.rfind(':');
    host_ = std::string(u.substr(0, colon));
    if (colon != std::string_view::npos) port_ = std::string(u.substr(colon + 1));
  }
  if (port_.empty()) port_ = "80";
}

Result<HttpBlobStore::Response> HttpBlobStore::request(const std::string& method,
                                                       std::string_view name,
                                                       const std::string& range, int64_t maxBody) {
  if (!validBlobName(name)) return invalidArgument("invalid blob name '" + std::string(name) + "'");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host_.c_str(), port_.c_str(), &hints, &res); rc != 0) {
    return unavailable("resolve " + baseUrl_ + ": " + ::gai_strerror(rc));
  }
  UniqueFd fd;
  int err = 0;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd.reset(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) continue;
    timeval tv{static_cast<time_t>(timeout_.count() / 1000),
               static_cast<suseconds_t>((timeout_.count() % 1000) * 1000)};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) == 0) break;
    err = errno;
    fd.reset();
  }
  ::freeaddrinfo(res);
  if (!fd) {
    Status s = Status::fromErrno(err, "connect to " + baseUrl_);
    return Status(Code::kUnavailable, s.message());
  }
  std::string req = method + " /blobs/" + std::string(name) + " HTTP/1.1\r\nHost: " + host_ +
                    "\r\n" + (range.empty() ? "" : "Range: " + range + "\r\n") +
                    "Connection: close\r\n\r\n";
  if (!sendAll(fd.get(), req.data(), req.size())) {
    return Status(Code::kUnavailable, Status::fromErrno(errno, "send to " + baseUrl_).message());
  }
  std::string buf;
  char tmp[64 * 1024];
  size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    if (buf.size() > kMaxHead) return unavailable(baseUrl_ + " sent an oversized header");
    ssize_t n = ::recv(fd.get(), tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return unavailable(baseUrl_ + " closed the connection before answering");
    buf.append(tmp, static_cast<size_t>(n));
  }
  // The status line parses like a request line: "HTTP/1.1" "206" "Partial Content".
  Head h;
  if (!parseHead(buf.substr(0, end), h)) return unavailable(baseUrl_ + " sent a malformed header");
  Response r;
  int64_t status = 0;
  if (!parseInt(h.target, status)) return unavailable(baseUrl_ + " sent a malformed status");
  r.status = static_cast<int>(status);
  if (auto it = h.headers.find("content-length"); it != h.headers.end()) {
    if (!parseInt(it->second, r.contentLength)) {
      return unavailable(baseUrl_ + " sent a malformed Content-Length");
    }
  }
  if (method == "HEAD" || r.status / 100 != 2) return r;
  if (r.contentLength < 0) return unavailable(baseUrl_ + " answered without a Content-Length");
  if (r.contentLength > maxBody) {
    return invalidArgument("blob " + std::string(name) + " at " + baseUrl_ + " is " +
                           std::to_string(r.contentLength) + " bytes, over the " +
                           std::to_string(maxBody) + "-byte limit");
  }
  r.body = buf.substr(end + 4);
  r.body.reserve(static_cast<size_t>(r.contentLength));
  while (static_cast<int64_t>(r.body.size()) < r.contentLength) {
    size_t want =
        std::min<size_t>(sizeof tmp, static_cast<size_t>(r.contentLength) - r.body.size());
    ssize_t n = ::recv(fd.get(), tmp, want, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return unavailable(baseUrl_ + " cut the body short");
    r.body.append(tmp, static_cast<size_t>(n));
  }
  if (static_cast<int64_t>(r.body.size()) != r.contentLength) {
    return unavailable(baseUrl_ + " sent more than Content-Length");
  }
  return r;
}

Result<int64_t> HttpBlobStore::size(std::string_view name) {
  ASSIGN_OR_RETURN(Response r, request("HEAD", name, "", 0));
  if (r.status == 404) return notFound("blob " + std::string(name) + " at " + baseUrl_);
  if (r.status != 200 || r.contentLength < 0) {
    return unavailable(baseUrl_ + " answered HEAD with " + std::to_string(r.status));
  }
  return r.contentLength;
}

Result<std::string> HttpBlobStore::readRange(std::string_view name, int64_t offset,
                                             int64_t length) {
  if (offset < 0 || length < 0) return invalidArgument("negative blob range");
  if (length == 0) return std::string();
  ASSIGN_OR_RETURN(Response r, request("GET", name,
                                       "bytes=" + std::to_string(offset) + "-" +
                                           std::to_string(offset + length - 1),
                                       length));
  if (r.status == 404) return notFound("blob " + std::string(name) + " at " + baseUrl_);
  if (r.status == 416) {
    return invalidArgument("blob " + std::string(name) + " at " + baseUrl_ + " ends before byte " +
                           std::to_string(offset + length));
  }
  if (r.status != 206 && !(r.status == 200 && offset == 0)) {
    return unavailable(baseUrl_ + " answered GET with " + std::to_string(r.status));
  }
  if (static_cast<int64_t>(r.body.size()) != length) {
    return invalidArgument("blob " + std::string(name) + " at " + baseUrl_ + " ends before byte " +
                           std::to_string(offset + length));
  }
  return std::move(r.body);
}

Result<std::string> HttpBlobStore::readAll(std::string_view name, int64_t maxBytes) {
  ASSIGN_OR_RETURN(Response r, request("GET", name, "", maxBytes));
  if (r.status == 404) return notFound("blob " + std::string(name) + " at " + baseUrl_);
  if (r.status != 200)
    return unavailable(baseUrl_ + " answered GET with " + std::to_string(r.status));
  return std::move(r.body);
}

Status HttpBlobStore::putFile(std::string_view name, const std::filesystem::path&) {
  return Status(Code::kFailedPrecondition,
                baseUrl_ + " is read-only (put " + std::string(name) + ")");
}

// ---- peers, then origin ---------------------------------------------------------------------

PeerBlobStore::PeerBlobStore(std::vector<std::string> peerUrls, std::shared_ptr<BlobStore> origin)
    : origin_(std::move(origin)) {
  for (auto& u : peerUrls) {
    // A peer that stalls costs a cold start; give up on it quickly and use the origin.
    peers_.push_back(std::make_unique<HttpBlobStore>(u, std::chrono::seconds(5)));
  }
}

std::string PeerBlobStore::describe() const {
  return "peers(" + std::to_string(peers_.size()) + ") then " + origin_->describe();
}

bool PeerBlobStore::skipped(size_t peer, std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = missing_.find({peer, std::string(name)});
  if (it == missing_.end()) return false;
  if (std::chrono::steady_clock::now() >= it->second) {
    missing_.erase(it);
    return false;
  }
  return true;
}

void PeerBlobStore::markMissing(size_t peer, std::string_view name) {
  std::lock_guard lock(mu_);
  missing_[{peer, std::string(name)}] = std::chrono::steady_clock::now() + kPeerMissTtl;
}

Result<int64_t> PeerBlobStore::size(std::string_view name) {
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (skipped(i, name)) continue;
    auto r = peers_[i]->size(name);
    if (r) return r;
    markMissing(i, name);
  }
  return origin_->size(name);
}

Result<std::string> PeerBlobStore::readRange(std::string_view name, int64_t offset,
                                             int64_t length) {
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (skipped(i, name)) continue;
    auto r = peers_[i]->readRange(name, offset, length);
    if (r) {
      fromPeers_.fetch_add(length);
      return r;
    }
    SLOG_DEBUG("peer {} has no {} [{}+{}]: {}", peers_[i]->describe(), name, offset, length,
               r.status().toString());
    markMissing(i, name);
  }
  auto r = origin_->readRange(name, offset, length);
  if (r) fromOrigin_.fetch_add(length);
  return r;
}

Result<std::string> PeerBlobStore::readAll(std::string_view name, int64_t maxBytes) {
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (skipped(i, name)) continue;
    auto r = peers_[i]->readAll(name, maxBytes);
    if (r) {
      fromPeers_.fetch_add(static_cast<int64_t>(r->size()));
      return r;
    }
    markMissing(i, name);
  }
  auto r = origin_->readAll(name, maxBytes);
  if (r) fromOrigin_.fetch_add(static_cast<int64_t>(r->size()));
  return r;
}

Status PeerBlobStore::putFile(std::string_view name, const std::filesystem::path& path) {
  return origin_->putFile(name, path);
}

}  // namespace stratus
