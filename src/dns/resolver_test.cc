#include "dns/resolver.h"

#include <gtest/gtest.h>

namespace hikyaku::dns {
namespace {

TEST(NormalizeName, LowerCaseWithoutTrailingDot) {
  EXPECT_EQ(NormalizeName("Mail.Example.TEST."), "mail.example.test");
  EXPECT_EQ(NormalizeName("example.test"), "example.test");
  EXPECT_EQ(NormalizeName("."), "");
}

TEST(IsValidName, AcceptsDnsNamesOnly) {
  EXPECT_TRUE(IsValidName("example.test"));
  EXPECT_TRUE(IsValidName("_dmarc.example.test"));
  EXPECT_TRUE(IsValidName("localhost"));
  EXPECT_FALSE(IsValidName(""));
  EXPECT_FALSE(IsValidName("a..b"));
  EXPECT_FALSE(IsValidName(".a"));
  EXPECT_FALSE(IsValidName("a b.test"));
  EXPECT_FALSE(IsValidName("a\nb.test"));
  EXPECT_FALSE(IsValidName(std::string(64, 'a') + ".test"));
  EXPECT_TRUE(IsValidName(std::string(63, 'a') + ".test"));
  std::string long_name;
  while (long_name.size() < 254) long_name += "abcdefgh.";
  EXPECT_FALSE(IsValidName(long_name.substr(0, 254)));
}

TEST(ParseAddressLiteral, Rfc5321Forms) {
  EXPECT_EQ(ParseAddressLiteral("[192.0.2.1]"), boost::asio::ip::make_address("192.0.2.1"));
  EXPECT_EQ(ParseAddressLiteral("[IPv6:2001:db8::1]"),
            boost::asio::ip::make_address("2001:db8::1"));
  EXPECT_EQ(ParseAddressLiteral("[ipv6:2001:db8::1]"),
            boost::asio::ip::make_address("2001:db8::1"));
  EXPECT_EQ(ParseAddressLiteral("192.0.2.1"), std::nullopt);      // a name, not a literal
  EXPECT_EQ(ParseAddressLiteral("[2001:db8::1]"), std::nullopt);  // needs the IPv6: tag
  EXPECT_EQ(ParseAddressLiteral("[example.test]"), std::nullopt);
  EXPECT_EQ(ParseAddressLiteral("[]"), std::nullopt);
}

}  // namespace
}  // namespace hikyaku::dns
