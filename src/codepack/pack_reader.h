// Pack reader: file contents out of a code pack, by range. The index says which chunks hold the
// bytes; the reader fetches each chunk's stored bytes from a PackDataSource (a local file, a
// partially downloaded file, a remote blob), decodes it, and checks its SHA-256 before handing
// out a byte of it, so a damaged disk or a lying peer gives an error, never wrong code. A small
// LRU of decoded chunks makes the kernel's 128 KiB reads of one chunk cost one decode.
// Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "codepack/pack_format.h"
#include "common/status.h"

namespace stratus {

// The data file of one pack, wherever it is.
class PackDataSource {
 public:
  virtual ~PackDataSource() = default;
  // Exactly `length` bytes at `offset`.
  virtual Status read(uint64_t offset, size_t length, char* out) = 0;
  // The bytes at [offset, offset+length) failed their checksum: drop any cached copy so the next
  // read fetches them again.
  virtual void invalidate(uint64_t offset, size_t length) {}
};

class MemoryDataSource : public PackDataSource {
 public:
  explicit MemoryDataSource(std::string_view bytes) : bytes_(bytes) {}
  Status read(uint64_t offset, size_t length, char* out) override;

 private:
  std::string_view bytes_;  // not owned
};

class PackReader {
 public:
  PackReader(std::shared_ptr<const PackIndex> index, std::shared_ptr<PackDataSource> data,
             size_t cachedChunks = 8);

  const PackIndex& index() const { return *index_; }
  // Up to `length` bytes of file `entry` from `offset` into out; 0 at or past the end.
  Result<size_t> read(uint32_t entry, uint64_t offset, size_t length, char* out);
  // The whole file (for small files and tests).
  Result<std::string> readFile(uint32_t entry);

 private:
  Result<std::shared_ptr<const std::string>> chunk(uint32_t c);
  Result<std::shared_ptr<const std::string>> loadChunk(const PackChunk& k, uint32_t c);

  std::shared_ptr<const PackIndex> index_;
  std::shared_ptr<PackDataSource> data_;
  size_t capacity_;
  std::mutex mu_;
  struct Slot {
    uint64_t key = UINT64_MAX;  // data offset of the chunk
    uint64_t used = 0;
    std::shared_ptr<const std::string> bytes;
  };
  std::vector<Slot> slots_;  // GUARDED_BY(mu_)
  uint64_t tick_ = 0;        // GUARDED_BY(mu_)
};

// Writes the pack's tree to destDir (created; must not exist; removed again on error): the
// full-extraction tier, for hosts without FUSE. Modes as in the index (0644/0755).
Status extractPack(PackReader& reader, const std::filesystem::path& destDir);

}  // namespace stratus
