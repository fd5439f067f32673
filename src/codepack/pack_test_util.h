// Helpers shared by the code pack tests, the fuzz corpus generator and `bench codeload`:
// temp dirs, deterministic random bytes, a sample code tree. Header-only; not thread-safe.
#pragma once

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "common/fs.h"

namespace stratus {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "codepack-test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty()) (void)removeTree(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// n bytes of xorshift output: incompressible, and the same for the same seed.
inline std::string randomBytes(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    for (size_t k = 0; k < 8 && i + k < n; ++k) s[i + k] = static_cast<char>(x >> (8 * k));
  }
  return s;
}

// index.py, bootstrap (0755), data/small.txt, data/big.bin (= big), data/big-copy.bin (= big),
// empty, lib/link -> ../index.py, lib/emptydir/.
inline void buildSampleTree(const std::filesystem::path& root, const std::string& big) {
  (void)makeDirs(root / "data");
  (void)makeDirs(root / "lib/emptydir");
  (void)writeFileAtomic(root / "index.py",
                        "def handler(e, c):\n    return open('/code/data/small.txt').read()\n");
  (void)writeFileAtomic(root / "bootstrap", "#!/bin/sh\necho hi\n", 0755);
  (void)writeFileAtomic(root / "data/small.txt", "small\n");
  (void)writeFileAtomic(root / "data/big.bin", big);
  (void)writeFileAtomic(root / "data/big-copy.bin", big);
  (void)writeFileAtomic(root / "empty", "");
  std::error_code ec;
  std::filesystem::create_symlink("../index.py", root / "lib/link", ec);
}

}  // namespace stratus
