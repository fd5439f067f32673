// Pack writer: turns a validated code tree (what importZip extracted) into a code pack, an index
// (returned in memory: it is small) and a data file (streamed to disk). Deterministic: the same
// tree gives byte-identical files whatever the order the directory lists it in, so the data
// file's SHA-256 is a content address and equal code is stored once. Chunks with equal content
// are stored once inside a pack. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "codepack/pack_format.h"
#include "common/status.h"

namespace stratus {

struct PackWriteOptions {
  uint32_t chunkBytes = 1u << 20;  // files are cut into chunks of this many raw bytes
  int zstdLevel = 3;               // 0: store every chunk raw
};

struct PackWriteResult {
  std::string index;       // the whole index file
  std::string dataSha256;  // hex, of the data file
  int64_t dataBytes = 0;
  int64_t rawBytes = 0;  // sum of file sizes
  int64_t files = 0;
  int64_t chunks = 0;        // chunk references
  int64_t storedChunks = 0;  // distinct chunks written to the data file
};

// Walks `tree` (never following symlinks; only files, directories and symlinks allowed) and
// writes the data file to `dataPath` (created; must not exist).
Result<PackWriteResult> writePack(const std::filesystem::path& tree,
                                  const std::filesystem::path& dataPath,
                                  const PackWriteOptions& options = {});

}  // namespace stratus
