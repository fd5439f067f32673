#include "common/base64.h"

#include <gtest/gtest.h>

namespace stratus {
namespace {

TEST(Base64Test, RoundTripsRfc4648Vectors) {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},         {"f", "Zg=="},        {"fo", "Zm8="},         {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64Encode(plain), encoded);
    auto d = base64Decode(encoded);
    ASSERT_TRUE(d.isOk());
    EXPECT_EQ(*d, plain);
  }
}

TEST(Base64Test, BinaryRoundTrip) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  auto d = base64Decode(base64Encode(all));
  ASSERT_TRUE(d.isOk());
  EXPECT_EQ(*d, all);
}

TEST(Base64Test, RejectsGarbage) {
  EXPECT_FALSE(base64Decode("Zm9v!").isOk());
  EXPECT_FALSE(base64Decode("Zg==Zg").isOk());
  EXPECT_TRUE(base64Decode("Zm9v\nYmFy").isOk());
}

}  // namespace
}  // namespace stratus
