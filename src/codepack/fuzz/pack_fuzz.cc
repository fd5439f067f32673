// libFuzzer target for the code pack reader: PackIndex::parse on untrusted bytes, then every
// file of an accepted index read through PackReader from an untrusted data file. Input layout:
// a little-endian u32 index length, the index, then the data file. Errors are expected; a crash,
// a sanitizer report or a file read back with the wrong SHA-256 is a bug.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "codepack/pack_format.h"
#include "codepack/pack_reader.h"
#include "codepack/sha256.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using namespace stratus;
  if (size < 4) return 0;
  uint32_t indexLen;
  std::memcpy(&indexLen, bytes, 4);
  std::string_view rest(reinterpret_cast<const char*>(bytes) + 4, size - 4);
  if (indexLen > rest.size()) return 0;
  auto parsed = PackIndex::parse(rest.substr(0, indexLen), 1 << 20);
  if (!parsed) return 0;
  auto index = std::make_shared<const PackIndex>(std::move(*parsed));
  std::string_view data = rest.substr(indexLen);
  PackReader reader(index, std::make_shared<MemoryDataSource>(data), 2);
  for (uint32_t i = 0; i < index->entryCount(); ++i) {
    const PackEntry& e = index->entry(i);
    (void)index->path(i);
    (void)index->lookup(i, "x");
    if (PackIndex::isSymlink(e)) (void)index->symlinkTarget(i);
    if (!PackIndex::isFile(e) || e.size > (8u << 20)) continue;
    auto got = reader.readFile(i);
    if (got && toHex(Sha256Hasher::of(*got)) != toHex(e.sha256, 32)) std::abort();
    char buf[7];
    if (e.size > 0) (void)reader.read(i, e.size - 1, sizeof buf, buf);
  }
  return 0;
}
