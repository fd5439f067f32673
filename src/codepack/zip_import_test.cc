#include "codepack/zip_import.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "codepack/zip_writer.h"
#include "common/fs.h"
#include "common/ids.h"

namespace stratus {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "codepack-test-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() { (void)removeTree(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string mustFinish(ZipWriter& w) {
  auto r = w.finish();
  EXPECT_TRUE(r.isOk()) << r.status().toString();
  return r.isOk() ? *r : std::string();
}

std::string slurp(const fs::path& p) {
  auto r = readFile(p);
  EXPECT_TRUE(r.isOk()) << r.status().toString();
  return r.isOk() ? *r : std::string();
}

mode_t permOf(const fs::path& p) {
  struct stat st;
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

// Sets the Unix mode stored in a central-directory entry's external attributes, which is where
// the zip reader takes an entry's type from; the zip writer itself refuses fifos and devices.
void patchCentralMode(std::string& zip, std::string_view name, uint32_t mode) {
  for (size_t p = 0; p + 46 < zip.size(); ++p) {
    if (std::memcmp(zip.data() + p, "PK\x01\x02", 4) != 0) continue;
    size_t nameLen =
        static_cast<unsigned char>(zip[p + 28]) | (static_cast<unsigned char>(zip[p + 29]) << 8);
    if (std::string_view(zip.data() + p + 46, nameLen) != name) continue;
    zip[p + 5] = 3;  // made by: Unix
    uint32_t attr = mode << 16;
    for (int i = 0; i < 4; ++i) zip[p + 38 + i] = static_cast<char>((attr >> (8 * i)) & 0xff);
    return;
  }
  ADD_FAILURE() << "no central directory entry named " << name;
}

TEST(ImportZip, ExtractsTreeWithModesAndSizes) {
  TempDir t;
  ZipWriter w;
  ASSERT_TRUE(w.addDirectory("lib/").isOk());
  ASSERT_TRUE(w.addFile("index.py", "def handler(e, c):\n  return e\n").isOk());
  ASSERT_TRUE(w.addFile("lib/deep/nested/data.txt", "nested").isOk());  // no dir entries
  ASSERT_TRUE(w.addFile("bootstrap", "#!/bin/sh\necho hi\n", 0755).isOk());
  ASSERT_TRUE(w.addFile("private", "p", 0600).isOk());
  ASSERT_TRUE(w.addSymlink("lib/deep/link", "../../index.py").isOk());
  std::string zip = mustFinish(w);

  fs::path dest = t.path() / "code";
  auto r = importZip(zip, dest);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->sha256, sha256Hex(zip));
  EXPECT_EQ(r->zippedBytes, static_cast<int64_t>(zip.size()));
  EXPECT_EQ(r->files, 4);
  EXPECT_EQ(r->unpackedBytes, 30 + 6 + 18 + 1 + 14);  // file bytes + symlink target

  EXPECT_EQ(slurp(dest / "index.py"), "def handler(e, c):\n  return e\n");
  EXPECT_EQ(slurp(dest / "lib/deep/nested/data.txt"), "nested");
  EXPECT_EQ(permOf(dest), 0755u);
  EXPECT_EQ(permOf(dest / "lib"), 0755u);
  EXPECT_EQ(permOf(dest / "lib/deep/nested"), 0755u);
  EXPECT_EQ(permOf(dest / "index.py"), 0644u);
  EXPECT_EQ(permOf(dest / "bootstrap"), 0755u);
  EXPECT_EQ(permOf(dest / "private"), 0644u);  // normalised: instances run as another uid
  EXPECT_EQ(fs::read_symlink(dest / "lib/deep/link"), "../../index.py");
  EXPECT_EQ(slurp(dest / "lib/deep/link"), "def handler(e, c):\n  return e\n");
}

TEST(ImportZip, DestinationMustNotExist) {
  TempDir t;
  ZipWriter w;
  ASSERT_TRUE(w.addFile("a", "a").isOk());
  std::string zip = mustFinish(w);
  auto r = importZip(zip, t.path());
  EXPECT_FALSE(r.isOk());
}

struct Rejected {
  const char* what;
  std::function<void(ZipWriter&)> build;
  const char* messagePart;
};

void expectRejected(const std::string& zip, Code code, const std::string& messagePart,
                    const ZipLimits& limits = {}) {
  TempDir t;
  ASSERT_TRUE(makeDirs(t.path() / "box").isOk());
  fs::path dest = t.path() / "box" / "code";
  auto r = importZip(zip, dest, limits);
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), code) << r.status().toString();
  EXPECT_NE(r.status().message().find(messagePart), std::string::npos) << r.status().toString();
  EXPECT_FALSE(fs::exists(dest)) << "destination left behind";
  // Nothing may appear beside the destination either.
  for (const auto& e : fs::directory_iterator(t.path() / "box")) {
    ADD_FAILURE() << "unexpected file outside the code root: " << e.path();
  }
}

TEST(ImportZip, RejectsPathsThatEscape) {
  std::vector<Rejected> cases = {
      {"dot-dot", [](ZipWriter& w) { (void)w.addFile("../evil", "x"); }, "'..'"},
      {"inner dot-dot",
       [](ZipWriter& w) {
         (void)w.addFile("ok", "x");
         (void)w.addFile("a/../../evil", "x");
       },
       "'..'"},
      {"long name", [](ZipWriter& w) { (void)w.addFile("d/" + std::string(300, 'n'), "x"); },
       "longer than 255"},
      {"absolute", [](ZipWriter& w) { (void)w.addFile("/tmp/stratus-evil", "x"); }, "absolute"},
      {"symlink absolute", [](ZipWriter& w) { (void)w.addSymlink("l", "/etc/passwd"); },
       "absolute"},
      {"symlink out", [](ZipWriter& w) { (void)w.addSymlink("a/l", "../../etc"); },
       "leaves the code root"},
      {"symlink dot-dot after name", [](ZipWriter& w) { (void)w.addSymlink("l", "a/../../x"); },
       "after a name"},
      {"write through symlink",
       [](ZipWriter& w) {
         (void)w.addDirectory("sub/");
         (void)w.addSymlink("link", "sub");
         (void)w.addFile("link/evil", "x");
       },
       "passes through 'link'"},
      {"write through symlink to root",
       [](ZipWriter& w) {
         (void)w.addSymlink("here", ".");
         (void)w.addFile("here/evil", "x");
       },
       "passes through 'here'"},
      {"replace file by symlink",
       [](ZipWriter& w) {
         (void)w.addFile("f", "x");
         (void)w.addSymlink("f", "g");
       },
       "more than once"},
      {"symlink then file of same name",
       [](ZipWriter& w) {
         (void)w.addSymlink("f", "g");
         (void)w.addFile("f", "x");
       },
       "more than once"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ZipWriter w;
    c.build(w);
    expectRejected(mustFinish(w), Code::kInvalidArgument, c.messagePart);
  }
}

TEST(ImportZip, WriteThroughSymlinkLeavesTargetUntouched) {
  TempDir t;
  ZipWriter w;
  ASSERT_TRUE(w.addDirectory("sub/").isOk());
  ASSERT_TRUE(w.addSymlink("link", "sub").isOk());
  ASSERT_TRUE(w.addFile("link/evil", "x").isOk());
  auto r = importZip(mustFinish(w), t.path() / "code");
  ASSERT_FALSE(r.isOk());
  EXPECT_FALSE(fs::exists(t.path() / "code"));
}

TEST(ImportZip, RejectsNulInName) {
  ZipWriter w;
  ASSERT_TRUE(w.addFile("okXevil", "x").isOk());
  std::string zip = mustFinish(w);
  size_t patched = 0;
  for (size_t p = zip.find("okXevil"); p != std::string::npos; p = zip.find("okXevil", p + 1)) {
    zip[p + 2] = '\0';
    ++patched;
  }
  ASSERT_EQ(patched, 2u);  // local header and central directory
  expectRejected(zip, Code::kInvalidArgument, "NUL");
}

TEST(ImportZip, SpecialFilesAreRefusedOrNeverCreated) {
  for (uint32_t type : {uint32_t{S_IFIFO}, uint32_t{S_IFCHR}, uint32_t{S_IFBLK}}) {
    SCOPED_TRACE(type);
    ZipWriter w;
    ASSERT_TRUE(w.addFile("node", "").isOk());
    std::string zip = mustFinish(w);
    patchCentralMode(zip, "node", type | 0644);
    TempDir t;
    auto r = importZip(zip, t.path() / "code");
    if (r.isOk()) {
      // libarchive 3.6 reads such zip entries as regular files; either way no device or fifo
      // may appear on the host.
      struct stat st;
      ASSERT_EQ(::lstat((t.path() / "code/node").c_str(), &st), 0);
      EXPECT_TRUE(S_ISREG(st.st_mode)) << std::oct << st.st_mode;
    } else {
      EXPECT_NE(r.status().message().find("zip entry 'node' is a"), std::string::npos)
          << r.status().toString();
    }
  }
}

TEST(ImportZip, HardLinksAreRefusedOrNeverCreated) {
  ZipWriter w;
  ASSERT_TRUE(w.addFile("target", "secret").isOk());
  ASSERT_TRUE(w.addHardlink("alias", "target").isOk());
  auto zip = mustFinish(w);
  TempDir t;
  auto r = importZip(zip, t.path() / "code");
  if (r.isOk()) {
    // The zip format has no hard links: libarchive writes the entry as a plain (empty) file.
    // Whatever lands must be a separate inode, never a link to another path.
    struct stat a, b;
    ASSERT_EQ(::lstat((t.path() / "code/target").c_str(), &a), 0);
    ASSERT_EQ(::lstat((t.path() / "code/alias").c_str(), &b), 0);
    EXPECT_NE(a.st_ino, b.st_ino);
    EXPECT_EQ(b.st_nlink, 1u);
  } else {
    EXPECT_NE(r.status().message().find("hard link"), std::string::npos) << r.status().toString();
  }
}

TEST(ImportZip, ZipBombHitsUnpackedLimit) {
  ZipWriter w;
  ASSERT_TRUE(w.addFile("zeros", std::string(20 << 20, '\0')).isOk());
  std::string zip = mustFinish(w);
  ASSERT_LT(zip.size(), 200u << 10);  // really is a bomb
  ZipLimits limits;
  limits.maxUnpackedBytes = 1 << 20;
  expectRejected(zip, Code::kPayloadTooLarge, "maxUnpackedBytes", limits);
}

TEST(ImportZip, ZipBombHitsRatioLimit) {
  ZipWriter w;
  ASSERT_TRUE(w.addFile("zeros", std::string(20 << 20, '\0')).isOk());
  ZipLimits limits;
  limits.maxCompressionRatio = 100;
  expectRejected(mustFinish(w), Code::kPayloadTooLarge, "maxCompressionRatio", limits);
}

TEST(ImportZip, SmallCompressibleFilesPassRatioCheck) {
  ZipWriter w;
  ASSERT_TRUE(w.addFile("zeros", std::string(100 << 10, '\0')).isOk());
  ZipLimits limits;
  limits.maxCompressionRatio = 10;
  TempDir t;
  auto r = importZip(mustFinish(w), t.path() / "code", limits);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(fs::file_size(t.path() / "code/zeros"), 100u << 10);
}

TEST(ImportZip, TooManyEntries) {
  ZipWriter w;
  for (int i = 0; i < 11; ++i) ASSERT_TRUE(w.addFile("f" + std::to_string(i), "x").isOk());
  ZipLimits limits;
  limits.maxEntries = 10;
  expectRejected(mustFinish(w), Code::kPayloadTooLarge, "maxEntries", limits);
}

TEST(ImportZip, ZippedSizeLimit) {
  ZipWriter w;
  ASSERT_TRUE(w.addFile("f", "hello").isOk());
  ZipLimits limits;
  limits.maxZippedBytes = 50;
  expectRejected(mustFinish(w), Code::kPayloadTooLarge, "maxZippedBytes", limits);
}

TEST(ImportZip, GarbageIsNotAZip) {
  std::mt19937 rng(42);
  std::string garbage(4096, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  expectRejected(garbage, Code::kInvalidArgument, "code.zipFile is not a valid zip archive: ");
  expectRejected("", Code::kInvalidArgument, "not a valid zip archive");
  expectRejected("PK\x03\x04 but nothing else at all", Code::kInvalidArgument,
                 "not a valid zip archive");
}

TEST(ImportZip, TruncatedZipIsNotAZip) {
  std::mt19937 rng(7);
  std::string data(256 << 10, '\0');
  for (char& c : data) c = static_cast<char>(rng());  // incompressible
  ZipWriter w;
  ASSERT_TRUE(w.addFile("a", "first").isOk());
  ASSERT_TRUE(w.addFile("random", data).isOk());
  std::string zip = mustFinish(w);
  for (size_t cut : {zip.size() / 2, zip.size() - 30}) {
    SCOPED_TRACE(cut);
    expectRejected(zip.substr(0, cut), Code::kInvalidArgument, "not a valid zip archive");
  }
}

TEST(CodeCache, InstallIsIdempotentAndRemovable) {
  TempDir t;
  CodeCache cache(t.path() / "cache");
  ZipWriter w;
  ASSERT_TRUE(w.addFile("index.js", "exports.handler = async () => 1;\n").isOk());
  std::string zip = mustFinish(w);
  const std::string sha = sha256Hex(zip);
  EXPECT_FALSE(cache.contains(sha));

  auto a = cache.install(zip);
  ASSERT_TRUE(a.isOk()) << a.status().toString();
  EXPECT_EQ(a->sha256, sha);
  EXPECT_TRUE(cache.contains(sha));
  EXPECT_EQ(slurp(cache.pathFor(sha) / "index.js"), "exports.handler = async () => 1;\n");
  struct stat before;
  ASSERT_EQ(::stat(cache.pathFor(sha).c_str(), &before), 0);

  auto b = cache.install(zip);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  EXPECT_EQ(b->sha256, a->sha256);
  EXPECT_EQ(b->files, a->files);
  EXPECT_EQ(b->unpackedBytes, a->unpackedBytes);
  EXPECT_EQ(b->zippedBytes, a->zippedBytes);
  struct stat after;
  ASSERT_EQ(::stat(cache.pathFor(sha).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino) << "second install replaced the tree";

  ASSERT_TRUE(cache.remove(sha).isOk());
  EXPECT_FALSE(cache.contains(sha));
  EXPECT_FALSE(fs::exists(cache.pathFor(sha)));
  EXPECT_TRUE(cache.remove(sha).isOk());  // absent is fine
  EXPECT_FALSE(cache.remove("../../etc").isOk());
}

TEST(CodeCache, BadZipLeavesNothing) {
  TempDir t;
  CodeCache cache(t.path() / "cache");
  ZipWriter w;
  ASSERT_TRUE(w.addFile("../x", "x").isOk());
  auto r = cache.install(mustFinish(w));
  ASSERT_FALSE(r.isOk());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  for (const auto& e : fs::directory_iterator(t.path() / "cache")) {
    // The cache's own (private, empty) skeleton is there from the start.
    const std::string name = e.path().filename();
    if ((name == "blobs" || name == "partial") && fs::is_empty(e.path())) continue;
    ADD_FAILURE() << "left behind: " << e.path();
  }
}

TEST(CodeCache, ConcurrentInstallsOfTheSameZipAllSucceed) {
  TempDir t;
  CodeCache cache(t.path() / "cache");
  ZipWriter w;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(w.addFile("d" + std::to_string(i % 7) + "/f" + std::to_string(i),
                          std::string(1000 + i, 'a' + i % 26))
                    .isOk());
  }
  std::string zip = mustFinish(w);
  std::vector<Result<ImportedCode>> results(4, Status(Code::kInternal, "not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { results[i] = cache.install(zip); });
  }
  for (auto& th : threads) th.join();
  for (const auto& r : results) {
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    EXPECT_EQ(r->sha256, sha256Hex(zip));
    EXPECT_EQ(r->files, 200);
  }
  const fs::path tree = cache.pathFor(sha256Hex(zip));
  EXPECT_EQ(slurp(tree / "d3/f199"), std::string(1199, 'a' + 199 % 26));
  size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(tree)) files += e.is_regular_file();
  EXPECT_EQ(files, 200u);
  for (const auto& e : fs::directory_iterator(t.path() / "cache")) {
    std::string n = e.path().filename();
    EXPECT_EQ(n.rfind(".tmp-", 0), std::string::npos) << "temp left behind: " << n;
  }
}

TEST(ZipDirectory, RoundTripsThroughImport) {
  TempDir t;
  fs::path src = t.path() / "src";
  ASSERT_TRUE(makeDirs(src / "lib/sub").isOk());
  ASSERT_TRUE(writeFileAtomic(src / "index.py", "print(1)\n").isOk());
  ASSERT_TRUE(writeFileAtomic(src / "bootstrap", "#!/bin/sh\n", 0755).isOk());
  ASSERT_TRUE(writeFileAtomic(src / "lib/sub/.hidden", "h").isOk());
  ASSERT_TRUE(makeDirs(src / "empty").isOk());
  fs::create_symlink("../index.py", src / "lib/link");

  auto zip = zipDirectory(src);
  ASSERT_TRUE(zip.isOk()) << zip.status().toString();
  auto again = zipDirectory(src);
  ASSERT_TRUE(again.isOk());
  EXPECT_EQ(sha256Hex(*zip), sha256Hex(*again)) << "zipping is not deterministic";

  fs::path dest = t.path() / "dest";
  auto r = importZip(*zip, dest);
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  EXPECT_EQ(r->files, 3);
  EXPECT_EQ(slurp(dest / "index.py"), "print(1)\n");
  EXPECT_EQ(slurp(dest / "lib/sub/.hidden"), "h");
  EXPECT_EQ(permOf(dest / "bootstrap"), 0755u);
  EXPECT_EQ(permOf(dest / "index.py"), 0644u);
  EXPECT_TRUE(fs::is_directory(dest / "empty"));
  EXPECT_EQ(fs::read_symlink(dest / "lib/link"), "../index.py");
}

}  // namespace
}  // namespace stratus
