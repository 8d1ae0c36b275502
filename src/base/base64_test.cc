#include "base/base64.h"

#include <gtest/gtest.h>

namespace hikyaku {
namespace {

TEST(Base64Test, Rfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {"\xff\xfe", "//4="},
  };
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(Base64Encode(plain), encoded);
    auto decoded = Base64Decode(encoded);
    ASSERT_TRUE(decoded.has_value()) << encoded;
    EXPECT_EQ(*decoded, plain);
  }
}

TEST(Base64Test, BinaryRoundTrip) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 17) {
    auto decoded = Base64Decode(Base64Encode(all.substr(0, n)));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(*decoded, all.substr(0, n));
  }
}

TEST(Base64Test, RejectsMalformedInput) {
  for (const char* bad : {"Zg", "Zg=", "Zm9", "Z===", "=Zm9", "Zm=v", "Zm9v\r\n", "Zm 9v",
                          "Zh==", "Zm9=Zm9v", "Zm9v*", "A"}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace hikyaku
