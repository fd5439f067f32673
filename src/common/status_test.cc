#include "common/status.h"

#include <gtest/gtest.h>

namespace stratus {
namespace {

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.isOk());
  EXPECT_EQ(s.toString(), "OK");
}

TEST(StatusTest, FromErrnoNamesTheCallAndTheError) {
  Status s = Status::fromErrno(EPERM, "mount /code for i-1");
  EXPECT_FALSE(s.isOk());
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_EQ(s.sysErrno(), EPERM);
  EXPECT_NE(s.message().find("mount /code for i-1: EPERM"), std::string::npos) << s.message();
}

TEST(StatusTest, WithContextPrefixesAndKeepsErrno) {
  Status s = Status::fromErrno(ENOENT, "open x").withContext("start instance i-2");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.sysErrno(), ENOENT);
  EXPECT_EQ(s.message().rfind("start instance i-2: open x: ENOENT", 0), 0u) << s.message();
}

Result<int> half(int x) {
  if (x % 2 != 0) return invalidArgument("odd");
  return x / 2;
}

Result<int> quarter(int x) {
  ASSIGN_OR_RETURN(int h, half(x));
  ASSIGN_OR_RETURN(int q, half(h));
  return q;
}

TEST(ResultTest, AssignOrReturnPropagates) {
  auto ok = quarter(8);
  ASSERT_TRUE(ok.isOk());
  EXPECT_EQ(*ok, 2);
  auto bad = quarter(6);
  ASSERT_FALSE(bad.isOk());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace stratus
