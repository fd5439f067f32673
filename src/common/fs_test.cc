#include "common/fs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/ids.h"

namespace stratus {
namespace {

mode_t modeOf(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

TEST(FsTest, MakeDirsSetsModeOnlyOnWhatItCreates) {
  auto base = std::filesystem::temp_directory_path() / ("fs-test-" + randomHex(6));
  ASSERT_TRUE(makeDirs(base, 0751).isOk());
  EXPECT_EQ(modeOf(base), 0751u);
  mode_t tmpBefore = modeOf(base.parent_path());
  ASSERT_TRUE(makeDirs(base / "a" / "b", 0700).isOk());
  EXPECT_EQ(modeOf(base / "a"), 0700u);
  EXPECT_EQ(modeOf(base / "a" / "b"), 0700u);
  // Existing directories keep their mode (this once turned /tmp into 0755).
  EXPECT_EQ(modeOf(base), 0751u);
  EXPECT_EQ(modeOf(base.parent_path()), tmpBefore);
  ASSERT_TRUE(makeDirs(base, 0700).isOk());
  EXPECT_EQ(modeOf(base), 0751u);
  ASSERT_TRUE(removeTree(base).isOk());
  EXPECT_FALSE(std::filesystem::exists(base));
}

TEST(FsTest, MakeDirsOverAFileFails) {
  auto base = std::filesystem::temp_directory_path() / ("fs-test-" + randomHex(6));
  ASSERT_TRUE(writeFileAtomic(base, "x").isOk());
  EXPECT_FALSE(makeDirs(base).isOk());
  EXPECT_FALSE(makeDirs(base / "sub").isOk());
  ASSERT_TRUE(removeTree(base).isOk());
}

TEST(FsTest, WriteFileAtomicAndRead) {
  auto f = std::filesystem::temp_directory_path() / ("fs-test-" + randomHex(6));
  ASSERT_TRUE(writeFileAtomic(f, "secret", 0600).isOk());
  EXPECT_EQ(modeOf(f), 0600u);
  auto r = readFile(f);
  ASSERT_TRUE(r.isOk());
  EXPECT_EQ(*r, "secret");
  EXPECT_EQ(readFile(f.string() + ".missing").status().code(), Code::kNotFound);
  ASSERT_TRUE(removeTree(f).isOk());
}

}  // namespace
}  // namespace stratus
