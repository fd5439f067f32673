#include "common/http.h"

#include <gtest/gtest.h>

namespace stratus {
namespace {

TEST(HttpTest, HeadersAreCaseInsensitive) {
  HttpRequest r;
  r.headers["Content-Type"] = "application/json";
  ASSERT_TRUE(r.header("content-type").has_value());
  EXPECT_EQ(*r.header("CONTENT-TYPE"), "application/json");
  EXPECT_FALSE(r.header("x-missing").has_value());
}

TEST(HttpTest, SplitPathDropsEmptySegments) {
  auto parts = splitPath("/2023-03-30//functions/hello/");
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0], "2023-03-30");
  EXPECT_EQ(parts[2], "hello");
}

TEST(HttpTest, PercentDecoding) {
  EXPECT_EQ(percentDecode("a%20b").value(), "a b");
  EXPECT_FALSE(percentDecode("a%2").has_value());
  EXPECT_FALSE(percentDecode("a%zz").has_value());
  EXPECT_FALSE(percentDecode("%").has_value());
}

TEST(HttpTest, ParseQuery) {
  auto q = parseQuery("limit=10&prefix=a%2Fb&flag&x=a+b");
  EXPECT_EQ(q["limit"], "10");
  EXPECT_EQ(q["prefix"], "a/b");
  EXPECT_EQ(q["flag"], "");
  EXPECT_EQ(q["x"], "a b");
}

}  // namespace
}  // namespace stratus
