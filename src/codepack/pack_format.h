// Code pack format (seed 2.4): a function's code as two files, a small *index* (the tree: names,
// modes, sizes, content hashes, and where each file's bytes sit in the data file) and a *data*
// file (the bytes, in independently addressable chunks, each raw or zstd-compressed), so that a
// worker can serve any file with a range read of the data file. docs/codepack.md gives the byte
// layout; the structs below are that layout (little-endian, fixed width).
//
// PackIndex::parse is the gate for untrusted bytes (a pack from a peer, a damaged disk): it
// checks the trailing SHA-256, every count, offset and name, and the tree's shape, and answers
// kInvalidArgument "corrupt code pack index: ..." for anything wrong, never crashing (fuzzed by
// src/codepack/fuzz). A parsed PackIndex is immutable and safe to share between threads.
#pragma once

#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace stratus {

inline constexpr char kPackIndexMagic[8] = {'S', 'T', 'R', 'P', 'A', 'C', 'K', 'I'};
inline constexpr char kPackDataMagic[8] = {'S', 'T', 'R', 'P', 'A', 'C', 'K', 'D'};
inline constexpr uint32_t kPackVersion = 1;
inline constexpr uint32_t kPackDataHeaderBytes = 16;
// A reader refuses chunks larger than this (bounds the memory one read can allocate).
inline constexpr uint32_t kPackMaxChunkBytes = 16u << 20;

enum class ChunkCodec : uint8_t { kNone = 0, kZstd = 1 };

using Sha256 = std::array<uint8_t, 32>;

#pragma pack(push, 1)
struct PackIndexHeader {
  char magic[8];
  uint32_t version;
  uint32_t maxChunkBytes;  // no chunk's raw length exceeds this
  uint32_t entryCount;     // >= 1; entry 0 is the root directory
  uint32_t chunkCount;
  uint32_t stringBytes;
  uint32_t reserved;   // 0
  uint64_t dataBytes;  // size of the data file
  uint8_t dataSha256[32];
};
static_assert(sizeof(PackIndexHeader) == 72);

struct PackEntry {
  uint32_t parent;      // entry index of the parent directory (< own index; root: 0)
  uint32_t mode;        // S_IFDIR|0755, S_IFREG|0644 or 0755, S_IFLNK|0777
  uint32_t nameOffset;  // into the string table
  uint32_t nameLength;
  uint64_t size;       // file: bytes; symlink: target length; directory: 0
  uint32_t first;      // file: first chunk index; symlink: target offset in the string table
  uint32_t count;      // file: number of chunks; otherwise 0
  uint8_t sha256[32];  // file: of its contents; symlink: of its target; directory: zero
};
static_assert(sizeof(PackEntry) == 64);

struct PackChunk {
  uint64_t dataOffset;    // in the data file; chunks with equal content share one range
  uint32_t storedLength;  // bytes in the data file
  uint32_t rawLength;     // bytes once decoded (> 0)
  uint8_t codec;          // ChunkCodec
  uint8_t reserved[7];    // 0
  uint8_t sha256[32];     // of the raw bytes
};
static_assert(sizeof(PackChunk) == 56);
#pragma pack(pop)

inline constexpr size_t kPackIndexTrailerBytes = 32;  // SHA-256 of everything before it

// The parsed, validated index. Entry i has inode i + 1 in the FUSE view.
class PackIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // Validates everything (see the header comment); maxBytes bounds what the caller accepts.
  static Result<PackIndex> parse(std::string_view bytes, size_t maxBytes = 256u << 20);

  const PackIndexHeader& header() const { return header_; }
  std::string dataSha256Hex() const;
  size_t entryCount() const { return entries_.size(); }
  const PackEntry& entry(uint32_t i) const { return entries_[i]; }
  const PackChunk& chunk(uint32_t i) const { return chunks_[i]; }
  // Offset of chunk i within its file (chunks of one file are consecutive).
  uint64_t chunkFileOffset(uint32_t i) const { return chunkFileOffset_[i]; }
  std::string_view name(uint32_t i) const;
  std::string_view symlinkTarget(uint32_t i) const;
  // Children of directory i, sorted by name.
  const std::vector<uint32_t>& children(uint32_t i) const { return children_[i]; }
  uint32_t lookup(uint32_t dir, std::string_view name) const;  // kNone if absent
  uint32_t lookupPath(std::string_view path) const;            // "a/b/c" from the root
  std::string path(uint32_t i) const;                          // "a/b/c"
  // Index of the chunk holding byte `offset` of file i (offset < size).
  uint32_t chunkAt(uint32_t file, uint64_t offset) const;

  static bool isDir(const PackEntry& e) { return S_ISDIR(e.mode); }
  static bool isFile(const PackEntry& e) { return S_ISREG(e.mode); }
  static bool isSymlink(const PackEntry& e) { return S_ISLNK(e.mode); }

 private:
  PackIndexHeader header_{};
  std::vector<PackEntry> entries_;
  std::vector<PackChunk> chunks_;
  std::vector<uint64_t> chunkFileOffset_;
  std::string strings_;
  std::vector<std::vector<uint32_t>> children_;
};

std::string toHex(const Sha256& h);
std::string toHex(const uint8_t* h, size_t n);

// Lexical check of a symlink target at `depth` directories below the root (shared with the zip
// importer): not empty, not absolute, '..' only at the start and at most `depth` of them.
Status checkSymlinkTarget(const std::string& entry, std::string_view target, size_t depth);

}  // namespace stratus
