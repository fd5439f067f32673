// Blobs over HTTP, for distribution between hosts (seed 1.3 step 5, FaaSNet's idea):
//   * BlobServer     serves a BlobStore read-only: GET/HEAD /blobs/<name>, one Range
//                    ("bytes=a-b", "bytes=a-", "bytes=-n") per request, HTTP/1.1 keep-alive.
//                    A worker runs one over its host cache so peers can fetch what it holds;
//                    the origin (or a test) runs one over the blob store.
//   * HttpBlobStore  the client side: a BlobStore whose reads are range GETs to one server.
//   * PeerBlobStore  asks peers first, then the origin; a peer that does not hold a blob (404)
//                    or is down is skipped for a few seconds.
// The protocol is deliberately tiny (its own ~200 lines, no Beast: codepack depends only on
// common). Every byte fetched is checked against the index's SHA-256s by the reader, so a peer
// cannot serve wrong code. All classes are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "codepack/blob_store.h"
#include "common/status.h"
#include "common/unique_fd.h"

namespace stratus {

struct BlobServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;           // 0: any free port
  int64_t bytesPerSecond = 0;  // > 0: pace all responses together (simulates a slow origin)
  std::chrono::microseconds firstByteDelay{0};  // per request (simulates a remote store's RTT)
};

class BlobServer {
 public:
  static Result<std::unique_ptr<BlobServer>> start(std::shared_ptr<BlobStore> store,
                                                   BlobServerOptions options = {});
  ~BlobServer();  // stops accepting, closes connections, joins every thread
  BlobServer(const BlobServer&) = delete;
  BlobServer& operator=(const BlobServer&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const;  // http://address:port
  int64_t bytesServed() const { return bytesServed_.load(); }
  int64_t requestsServed() const { return requests_.load(); }

 private:
  BlobServer(std::shared_ptr<BlobStore> store, BlobServerOptions options)
      : store_(std::move(store)), options_(std::move(options)) {}
  void acceptLoop();
  void serveConnection(int fd);
  bool handle(int fd, const std::string& head);  // false: close the connection
  void pace(size_t bytes);
  void reapFinished();

  std::shared_ptr<BlobStore> store_;
  BlobServerOptions options_;
  UniqueFd listen_;
  UniqueFd stop_;  // eventfd
  uint16_t port_ = 0;
  std::thread acceptThread_;
  std::mutex mu_;
  std::map<std::thread::id, std::pair<std::thread, int>> conns_;  // GUARDED_BY(mu_)
  std::vector<std::thread::id> finished_;                         // GUARDED_BY(mu_)
  bool stopping_ = false;                                         // GUARDED_BY(mu_)
  std::mutex paceMu_;
  std::chrono::steady_clock::time_point nextFree_{};  // GUARDED_BY(paceMu_)
  std::atomic<int64_t> bytesServed_{0};
  std::atomic<int64_t> requests_{0};
};

class HttpBlobStore : public BlobStore {
 public:
  // baseUrl: "http://host:port" (IPv4/IPv6 literal or name).
  explicit HttpBlobStore(std::string baseUrl,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30));
  Result<int64_t> size(std::string_view name) override;
  Result<std::string> readRange(std::string_view name, int64_t offset, int64_t length) override;
  Result<std::string> readAll(std::string_view name, int64_t maxBytes) override;  // one GET
  // Read-only: uploads go to the origin by other means.
  Status putFile(std::string_view name, const std::filesystem::path& path) override;
  std::string describe() const override { return baseUrl_; }

 private:
  struct Response {
    int status = 0;
    int64_t contentLength = -1;
    std::string body;
  };
  Result<Response> request(const std::string& method, std::string_view name,
                           const std::string& range, int64_t maxBody);

  std::string baseUrl_, host_, port_;
  std::chrono::milliseconds timeout_;
};

class PeerBlobStore : public BlobStore {
 public:
  PeerBlobStore(std::vector<std::string> peerUrls, std::shared_ptr<BlobStore> origin);
  Result<int64_t> size(std::string_view name) override;
  Result<std::string> readRange(std::string_view name, int64_t offset, int64_t length) override;
  Result<std::string> readAll(std::string_view name, int64_t maxBytes) override;
  Status putFile(std::string_view name, const std::filesystem::path& path) override;
  std::string describe() const override;

  int64_t bytesFromPeers() const { return fromPeers_.load(); }
  int64_t bytesFromOrigin() const { return fromOrigin_.load(); }

 private:
  bool skipped(size_t peer, std::string_view name);
  void markMissing(size_t peer, std::string_view name);

  std::vector<std::unique_ptr<HttpBlobStore>> peers_;
  std::shared_ptr<BlobStore> origin_;
  std::mutex mu_;
  // (peer, blob) -> until when we do not ask that peer for that blob again.
  std::map<std::pair<size_t, std::string>, std::chrono::steady_clock::time_point> missing_;
  std::atomic<int64_t> fromPeers_{0}, fromOrigin_{0};
};

}  // namespace stratus
