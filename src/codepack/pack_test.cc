// Code pack format: writer -> index parser -> reader round trips, deduplication, determinism,
// and rejection of corrupt or truncated packs (every truncation, every single-byte flip of a
// small pack, and structurally wrong indexes with a valid checksum).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <random>

#include "codepack/pack_format.h"
#include "codepack/pack_reader.h"
#include "codepack/pack_test_util.h"
#include "codepack/pack_writer.h"
#include "codepack/sha256.h"
#include "common/fs.h"

namespace stratus {
namespace {

namespace fs = std::filesystem;

TEST(PackWriter, RoundTripsATree) {
  TempDir t;
  const fs::path src = t.path() / "src";
  const std::string big = randomBytes(3 * 1024 * 1024 + 123, 7);
  buildSampleTree(src, big);
  auto w = writePack(src, t.path() / "data", PackWriteOptions{1u << 20, 3});
  ASSERT_TRUE(w.isOk()) << w.status().toString();
  auto data = readFile(t.path() / "data");
  ASSERT_TRUE(data.isOk());
  EXPECT_EQ(w->dataSha256, toHex(Sha256Hasher::of(*data)));
  EXPECT_EQ(w->files, 6);

  auto ix = PackIndex::parse(w->index);
  ASSERT_TRUE(ix.isOk()) << ix.status().toString();
  auto index = std::make_shared<const PackIndex>(std::move(*ix));
  PackReader r(index, std::make_shared<MemoryDataSource>(*data));

  auto expectFile = [&](const std::string& path, const std::string& want, uint32_t perm) {
    uint32_t i = index->lookupPath(path);
    ASSERT_NE(i, PackIndex::kNone) << path;
    EXPECT_EQ(index->entry(i).mode, S_IFREG | perm) << path;
    auto got = r.readFile(i);
    ASSERT_TRUE(got.isOk()) << got.status().toString();
    EXPECT_EQ(*got, want) << path;
    EXPECT_EQ(toHex(index->entry(i).sha256, 32), toHex(Sha256Hasher::of(want))) << path;
  };
  expectFile("index.py", "def handler(e, c):\n    return open('/code/data/small.txt').read()\n",
             0644);
  expectFile("bootstrap", "#!/bin/sh\necho hi\n", 0755);
  expectFile("data/small.txt", "small\n", 0644);
  expectFile("data/big.bin", big, 0644);
  expectFile("data/big-copy.bin", big, 0644);
  expectFile("empty", "", 0644);
  uint32_t link = index->lookupPath("lib/link");
  ASSERT_NE(link, PackIndex::kNone);
  EXPECT_TRUE(PackIndex::isSymlink(index->entry(link)));
  EXPECT_EQ(index->symlinkTarget(link), "../index.py");
  uint32_t emptyDir = index->lookupPath("lib/emptydir");
  ASSERT_NE(emptyDir, PackIndex::kNone);
  EXPECT_TRUE(PackIndex::isDir(index->entry(emptyDir)));
  EXPECT_EQ(index->lookupPath("nope"), PackIndex::kNone);
  EXPECT_EQ(index->path(index->lookupPath("data/small.txt")), "data/small.txt");

  // big.bin and big-copy.bin share their 4 chunks: 8 references, 4 + the small files stored.
  EXPECT_EQ(w->chunks, 4 + 4 + 3);  // big, its copy, index.py + bootstrap + small (empty: 0)
  EXPECT_EQ(w->storedChunks, 4 + 3);
  EXPECT_LT(w->dataBytes, static_cast<int64_t>(2 * big.size()));

  // Reads at every alignment, across chunk boundaries, and past the end.
  uint32_t bi = index->lookupPath("data/big.bin");
  for (uint64_t off : {uint64_t{0}, uint64_t{1}, uint64_t{(1 << 20) - 1}, uint64_t{1 << 20},
                       uint64_t{3 << 20}, uint64_t{big.size() - 1}}) {
    std::string buf(200000, '\0');
    auto n = r.read(bi, off, buf.size(), buf.data());
    ASSERT_TRUE(n.isOk());
    EXPECT_EQ(*n, std::min<size_t>(buf.size(), big.size() - off));
    EXPECT_EQ(buf.substr(0, *n), big.substr(off, *n)) << off;
  }
  std::string buf(10, '\0');
  EXPECT_EQ(*r.read(bi, big.size(), 10, buf.data()), 0u);
  EXPECT_FALSE(r.read(index->lookupPath("data"), 0, 10, buf.data()).isOk());

  // Full extraction gives the same tree.
  const fs::path out = t.path() / "out";
  ASSERT_TRUE(extractPack(r, out).isOk());
  EXPECT_EQ(*readFile(out / "data/big-copy.bin"), big);
  EXPECT_EQ(fs::read_symlink(out / "lib/link"), "../index.py");
  struct stat st;
  ASSERT_EQ(::stat((out / "bootstrap").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  EXPECT_TRUE(fs::is_directory(out / "lib/emptydir"));
}

TEST(PackWriter, IsDeterministicAndCompressesOnlyWhenItPays) {
  TempDir t;
  const fs::path src = t.path() / "src";
  buildSampleTree(src, std::string(2 << 20, 'z'));  // compresses to almost nothing
  auto a = writePack(src, t.path() / "a");
  auto b = writePack(src, t.path() / "b");
  ASSERT_TRUE(a.isOk() && b.isOk());
  EXPECT_EQ(a->index, b->index);
  EXPECT_EQ(a->dataSha256, b->dataSha256);
  EXPECT_LT(a->dataBytes, 64 * 1024);
  auto raw = writePack(src, t.path() / "raw", PackWriteOptions{1u << 20, 0});
  ASSERT_TRUE(raw.isOk());
  EXPECT_GT(raw->dataBytes, 1 << 20);  // one raw 1 MiB chunk: all four are equal
  EXPECT_NE(raw->dataSha256, a->dataSha256);
  EXPECT_FALSE(writePack(src, t.path() / "a").isOk()) << "overwrote an existing data file";
}

class CorruptPack : public ::testing::Test {
 protected:
  void SetUp() override {
    const fs::path src = t_.path() / "src";
    buildSampleTree(src, randomBytes(70000, 3));
    auto w = writePack(src, t_.path() / "data", PackWriteOptions{16384, 3});
    ASSERT_TRUE(w.isOk()) << w.status().toString();
    index_ = w->index;
    data_ = *readFile(t_.path() / "data");
  }
  // Every file's bytes through the reader; an error is fine, a crash or wrong bytes are not.
  static void readEverything(const PackIndex& ix, std::string_view data) {
    PackReader r(std::make_shared<const PackIndex>(ix), std::make_shared<MemoryDataSource>(data));
    for (uint32_t i = 0; i < ix.entryCount(); ++i) {
      if (!PackIndex::isFile(ix.entry(i))) continue;
      auto got = r.readFile(i);
      if (got) {
        EXPECT_EQ(toHex(Sha256Hasher::of(*got)), toHex(ix.entry(i).sha256, 32));
      }
    }
  }
  // Re-seals a modified index with a correct trailing checksum.
  static std::string reseal(std::string ix) {
    ix.resize(ix.size() - kPackIndexTrailerBytes);
    Sha256 h = Sha256Hasher::of(ix);
    ix.append(reinterpret_cast<const char*>(h.data()), h.size());
    return ix;
  }
  PackEntry* entryAt(std::string& ix, uint32_t i) {
    return reinterpret_cast<PackEntry*>(ix.data() + sizeof(PackIndexHeader) +
                                        i * sizeof(PackEntry));
  }
  PackChunk* chunkAt(std::string& ix, uint32_t i) {
    auto* h = reinterpret_cast<PackIndexHeader*>(ix.data());
    return reinterpret_cast<PackChunk*>(ix.data() + sizeof(PackIndexHeader) +
                                        h->entryCount * sizeof(PackEntry) + i * sizeof(PackChunk));
  }
  void expectCorrupt(const std::string& ix, std::string_view what) {
    auto r = PackIndex::parse(ix);
    ASSERT_FALSE(r.isOk()) << what;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find("corrupt code pack index"), std::string::npos)
        << r.status().message();
  }

  TempDir t_;
  std::string index_, data_;
};

TEST_F(CorruptPack, EveryTruncationAndFlipOfTheIndexIsRejected) {
  ASSERT_TRUE(PackIndex::parse(index_).isOk());
  for (size_t n = 0; n < index_.size(); ++n) expectCorrupt(index_.substr(0, n), "truncated");
  for (size_t i = 0; i < index_.size(); ++i) {
    std::string bad = index_;
    bad[i] ^= 0x40;
    expectCorrupt(bad, "flipped");
  }
  expectCorrupt(index_ + "x", "extended");
}

TEST_F(CorruptPack, StructuralDamageWithAValidChecksumIsRejected) {
  {
    std::string ix = index_;
    entryAt(ix, 2)->parent = 2;
    expectCorrupt(reseal(ix), "self parent");
  }
  {
    std::string ix = index_;
    entryAt(ix, 1)->nameLength = 0;
    expectCorrupt(reseal(ix), "empty name");
  }
  {
    std::string ix = index_;
    entryAt(ix, 1)->nameOffset = 1u << 30;
    expectCorrupt(reseal(ix), "name outside strings");
  }
  {
    std::string ix = index_;
    entryAt(ix, 1)->mode = S_IFCHR | 0644;
    expectCorrupt(reseal(ix), "device");
  }
  {
    std::string ix = index_;
    entryAt(ix, 1)->mode |= S_ISUID;
    expectCorrupt(reseal(ix), "setuid");
  }
  {
    std::string ix = index_;
    chunkAt(ix, 0)->dataOffset = UINT64_MAX - 3;
    expectCorrupt(reseal(ix), "chunk offset overflow");
  }
  {
    std::string ix = index_;
    chunkAt(ix, 0)->rawLength += 1;
    expectCorrupt(reseal(ix), "sizes do not add up");
  }
  {
    std::string ix = index_;
    chunkAt(ix, 0)->codec = 9;
    expectCorrupt(reseal(ix), "codec");
  }
  {
    std::string ix = index_;
    auto* h = reinterpret_cast<PackIndexHeader*>(ix.data());
    h->version = 2;
    expectCorrupt(reseal(ix), "version");
  }
  {
    // A symlink retargeted to escape the root: write "../../../etc" over its target bytes.
    auto parsed = PackIndex::parse(index_);
    ASSERT_TRUE(parsed.isOk());
    uint32_t link = parsed->lookupPath("lib/link");
    ASSERT_NE(link, PackIndex::kNone);
    std::string ix = index_;
    PackEntry* e = entryAt(ix, link);
    auto* h = reinterpret_cast<PackIndexHeader*>(ix.data());
    size_t strings = ix.size() - kPackIndexTrailerBytes - h->stringBytes;
    std::memcpy(ix.data() + strings + e->first, "../../x/ab", 10);
    ASSERT_EQ(e->size, 11u);  // "../index.py"
    e->size = 10;
    expectCorrupt(reseal(ix), "escaping symlink");
  }
}

TEST_F(CorruptPack, DamagedDataGivesErrorsNotWrongBytes) {
  auto ix = PackIndex::parse(index_);
  ASSERT_TRUE(ix.isOk());
  std::mt19937 rng(1);
  for (int round = 0; round < 300; ++round) {
    std::string bad = data_;
    size_t pos = rng() % bad.size();
    bad[pos] ^= static_cast<char>(1 + rng() % 255);
    readEverything(*ix, bad);
  }
  for (size_t n = 0; n < data_.size(); n += 997) readEverything(*ix, data_.substr(0, n));
  // A flipped byte in a chunk that belongs to a file is caught.
  uint32_t small = ix->lookupPath("data/small.txt");
  std::string bad = data_;
  bad[ix->chunk(ix->entry(small).first).dataOffset] ^= 1;
  PackReader r(std::make_shared<const PackIndex>(*ix), std::make_shared<MemoryDataSource>(bad));
  auto got = r.readFile(small);
  ASSERT_FALSE(got.isOk());
  EXPECT_NE(got.status().message().find("SHA-256"), std::string::npos) << got.status().message();
}

}  // namespace
}  // namespace stratus
