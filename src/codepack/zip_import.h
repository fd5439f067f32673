// Zip import: turns a function's uploaded zip into a directory tree, refusing anything that could
// escape the code root or exhaust the host; the tree then becomes a code pack (CodeCache below).
//
// Refused, each with kInvalidArgument and a message naming the entry:
//   * entries with absolute paths or ".." components, or names with NUL bytes;
//   * symlinks whose target is absolute or resolves outside the code root;
//   * hard links, device nodes, fifos, sockets;
//   * a zip that is not a zip (or is corrupt/truncated).
// Over-limit input is kPayloadTooLarge: zipped size, total unpacked size, entry count, and
// per-entry compression ratio (zip bombs).
// Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "codepack/blob_store.h"
#include "codepack/host_cache.h"
#include "codepack/pack_writer.h"
#include "common/status.h"

namespace stratus {

struct ZipLimits {
  int64_t maxZippedBytes = 100LL << 20;    // 100 MB
  int64_t maxUnpackedBytes = 500LL << 20;  // 500 MB
  int64_t maxEntries = 100000;
  int64_t maxCompressionRatio = 1000;  // unpacked/compressed per entry
};

struct ImportedCode {
  std::string sha256;  // of the zip bytes; the content address
  int64_t zippedBytes = 0;
  int64_t unpackedBytes = 0;
  int64_t files = 0;
};

// Verifies and extracts zip into destDir (created; must not exist). On error destDir is removed.
// Files are written 0644 (0755 if executable in the zip), directories 0755.
Result<ImportedCode> importZip(std::string_view zip, const std::filesystem::path& destDir,
                               const ZipLimits& limits = {});

// CodeCache: the embedded (all-in-one) code pipeline. Deploy side: install() validates the zip
// (importZip, into a temporary tree), turns the tree into a code pack (pack_writer.h) and puts
// the index ("packs/<zip sha256>.index") and the content-addressed data file
// ("data/<data sha256>") into the blob store, by default the directory root/blobs. Worker side:
// acquire() hands out the directory to bind-mount at /code, through a HostCodeCache over the
// same store, as the caller's CodeOwner's (the host uid the sandbox runs as; readable by nobody
// else, host_cache.h): a lazy FUSE view at <mountRoot>/owner-<uid>-<gid>/<sha> (unmounted by the
// destructor, and by a reaper child if this process is killed), or an extracted tree at
// root/owner-<uid>-<gid>/<sha> where FUSE is unavailable. Identical code is stored once (one
// data file); each owner gets its own view of it. root itself is 0700 (root's alone).
// Thread-safe: concurrent installs of the same zip all succeed.
struct CodeCacheOptions {
  bool useFuse = true;  // false: the full-extraction tier only
  PackWriteOptions pack;
  std::shared_ptr<BlobStore> origin;  // default: LocalDirBlobStore(root/blobs)
  // Where the FUSE views are mounted; default defaultMountRoot(root). Outside the data dir on
  // purpose: a server killed with -9 leaves a dead mount until its reaper removes it, and
  // whoever deletes the data dir right after must not trip over it.
  std::filesystem::path mountRoot;
};

// /run/stratus/codepack/<first 16 hex of sha256(absolute root)>: one directory per code cache.
std::filesystem::path defaultMountRoot(const std::filesystem::path& root);

class CodeCache {
 public:
  explicit CodeCache(std::filesystem::path root) : CodeCache(std::move(root), CodeCacheOptions{}) {}
  CodeCache(std::filesystem::path root, CodeCacheOptions options);
  ~CodeCache();
  // Stores the zip's code pack unless already present; returns its info.
  Result<ImportedCode> install(std::string_view zip, const ZipLimits& limits = {});
  // The directory holding the code's tree as `owner`'s, mounting or extracting it on first use.
  Result<std::filesystem::path> acquire(const std::string& sha256, CodeOwner owner);
  // The code extracted to a plain tree at root/<sha256>, root's (no mount: callers may delete the
  // data dir at will; not for sandboxes); on failure (logged) the path it would have had.
  std::filesystem::path pathFor(const std::string& sha256);
  bool contains(const std::string& sha256) const;
  // Removes code no function references any more (the shared data file stays).
  Status remove(const std::string& sha256);

  BlobStore& blobs() { return *origin_; }
  HostCodeCache& host() { return *host_; }

 private:
  std::filesystem::path root_;
  CodeCacheOptions options_;
  std::shared_ptr<BlobStore> origin_;
  std::unique_ptr<HostCodeCache> host_;
};

}  // namespace stratus
