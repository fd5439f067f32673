// Blob store: where code packs live, addressed by name ("packs/<zip sha256>.index",
// "data/<data sha256>"), read by byte range so a worker can fetch just the chunks a handler
// touches. Backends:
//   * LocalDirBlobStore   one directory (the embedded default; also a worker's host cache);
//   * HttpBlobStore       another host's BlobServer (blob_http.h): the origin or a peer;
//   * PeerBlobStore       peers first, then the origin (blob_http.h).
// An S3-compatible backend implements the same four calls with GetObject + Range, HeadObject
// and PutObject (docs/codepack.md). Blobs are immutable once put: a name always means the same
// bytes, which is what makes caching and peer fetches safe. Implementations are thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace stratus {

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // Size of a blob; kNotFound if absent.
  virtual Result<int64_t> size(std::string_view name) = 0;
  // Exactly `length` bytes from `offset` (a short blob is an error: kInvalidArgument).
  virtual Result<std::string> readRange(std::string_view name, int64_t offset, int64_t length) = 0;
  // Stores the file at `path` under `name` unless the name exists (blobs are immutable). The
  // file may be moved (renamed) into the store.
  virtual Status putFile(std::string_view name, const std::filesystem::path& path) = 0;
  // Where the blob is on this host's disk, when it is (lets a host use a local store in place).
  virtual std::optional<std::filesystem::path> localPath(std::string_view name) { return {}; }
  // A short name for logs and errors ("dir /var/...", "http://host:port").
  virtual std::string describe() const = 0;

  // The whole blob (kInvalidArgument if over maxBytes). Default: size() then readRange().
  virtual Result<std::string> readAll(std::string_view name, int64_t maxBytes);
  // durable = false skips the fsync: for caches whose content is verified when read back.
  Status putBytes(std::string_view name, std::string_view bytes,
                  const std::filesystem::path& scratchDir, bool durable = true);
};

// Blob names are relative paths of plain components ([A-Za-z0-9._-], no "." or ".."), so
// nothing a peer asks for can leave the store's directory.
bool validBlobName(std::string_view name);

class LocalDirBlobStore : public BlobStore {
 public:
  explicit LocalDirBlobStore(std::filesystem::path root) : root_(std::move(root)) {}
  Result<int64_t> size(std::string_view name) override;
  Result<std::string> readRange(std::string_view name, int64_t offset, int64_t length) override;
  Status putFile(std::string_view name, const std::filesystem::path& path) override;
  std::optional<std::filesystem::path> localPath(std::string_view name) override;
  std::string describe() const override { return "dir " + root_.string(); }
  const std::filesystem::path& root() const { return root_; }
  Status remove(std::string_view name);

 private:
  std::filesystem::path root_;
};

}  // namespace stratus
