// Writes the seed corpora of the fuzz targets (committed under corpus/): small packs in the
// fuzzer's input layout ([u32 index length][index][data]) and small zips, benign and hostile.
// Usage: codepack_fuzz_seeds CORPUS_DIR
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "codepack/pack_test_util.h"
#include "codepack/pack_writer.h"
#include "codepack/zip_writer.h"
#include "common/fs.h"

using namespace stratus;
namespace fs = std::filesystem;

static int fail(const Status& s) {
  std::fprintf(stderr, "%s\n", s.toString().c_str());
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  const fs::path out = argv[1];
  if (auto s = makeDirs(out / "pack"); !s) return fail(s);
  if (auto s = makeDirs(out / "zip"); !s) return fail(s);
  TempDir t("fuzz-seeds");
  int n = 0;
  for (auto [big, chunk, level] :
       {std::tuple<size_t, uint32_t, int>{3000, 1024, 3}, {5000, 4096, 0}, {200, 64, 3}}) {
    const fs::path src = t.path() / ("src" + std::to_string(n));
    std::string bytes = randomBytes(big / 2, n) + std::string(big / 2, 'a');
    buildSampleTree(src, bytes);
    auto w =
        writePack(src, t.path() / ("data" + std::to_string(n)), PackWriteOptions{chunk, level});
    if (!w) return fail(w.status());
    auto data = readFile(t.path() / ("data" + std::to_string(n)));
    if (!data) return fail(data.status());
    uint32_t len = static_cast<uint32_t>(w->index.size());
    std::string input(reinterpret_cast<const char*>(&len), 4);
    input += w->index + *data;
    if (auto s = writeFileAtomic(out / "pack" / ("seed-" + std::to_string(n)), input); !s) {
      return fail(s);
    }
    ++n;
  }
  auto zipSeed = [&](const std::string& name, auto build) -> int {
    ZipWriter w;
    build(w);
    auto z = w.finish();
    if (!z) return fail(z.status());
    if (auto s = writeFileAtomic(out / "zip" / name, *z); !s) return fail(s);
    return 0;
  };
  int rc = 0;
  rc |= zipSeed("tree", [](ZipWriter& w) {
    (void)w.addFile("index.py", "def handler(e, c):\n    return 1\n");
    (void)w.addFile("bin/run", "#!/bin/sh\n", 0755);
    (void)w.addDirectory("lib/");
    (void)w.addSymlink("lib/link", "../index.py");
    (void)w.addFile("z.txt", std::string(5000, 'z'));
  });
  rc |= zipSeed("escape", [](ZipWriter& w) {
    (void)w.addFile("../x", "x");
    (void)w.addSymlink("out", "/etc/passwd");
  });
  rc |= zipSeed("through-link", [](ZipWriter& w) {
    (void)w.addSymlink("lib", ".");
    (void)w.addFile("lib/x", "x");
    (void)w.addHardlink("h", "lib/x");
  });
  return rc;
}
