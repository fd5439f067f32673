// Zip import: turns a function's uploaded zip into a directory tree on the host, refusing
// anything that could escape the code root or exhaust the host. First version of the code-pack
// pipeline (issue "code packs" replaces the directory with an index + data pack).
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
#include <string>
#include <string_view>

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

// CodeCache: one extracted tree per code sha256 under root/<sha256>, shared read-only by every
// instance of every function with that code on this host. Thread-safe: concurrent installs of
// the same sha256 are serialised (extract to a temp dir, rename into place).
class CodeCache {
 public:
  explicit CodeCache(std::filesystem::path root) : root_(std::move(root)) {}
  // Extracts zip unless already present; returns its info and leaves the tree at pathFor(sha).
  Result<ImportedCode> install(std::string_view zip, const ZipLimits& limits = {});
  std::filesystem::path pathFor(const std::string& sha256) const { return root_ / sha256; }
  bool contains(const std::string& sha256) const;
  // Removes a tree no function references any more.
  Status remove(const std::string& sha256);

 private:
  std::filesystem::path root_;
};

}  // namespace stratus
