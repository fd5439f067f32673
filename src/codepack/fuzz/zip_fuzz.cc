// libFuzzer target for the zip importer: importZip of untrusted bytes into a fresh directory
// under small limits. Errors are expected; a crash, a sanitizer report, or anything written
// outside the destination (checked: the scratch parent holds only the destination) is a bug.
#include <dirent.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "codepack/zip_import.h"
#include "common/fs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using namespace stratus;
  static const std::filesystem::path scratch = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "zip-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    return std::filesystem::path(tmpl);
  }();
  const std::filesystem::path parent = scratch / "p";
  (void)removeTree(parent);
  if (!makeDirs(parent).isOk()) std::abort();
  ZipLimits limits;
  limits.maxZippedBytes = 1 << 20;
  limits.maxUnpackedBytes = 4 << 20;
  limits.maxEntries = 1000;
  (void)importZip(std::string_view(reinterpret_cast<const char*>(bytes), size), parent / "dest",
                  limits);
  for (const auto& e : std::filesystem::directory_iterator(parent)) {
    if (e.path().filename() != "dest") std::abort();  // something escaped the destination
  }
  (void)removeTree(parent);
  return 0;
}
