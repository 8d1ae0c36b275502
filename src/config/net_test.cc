#include "config/net.h"

#include <gtest/gtest.h>

namespace hikyaku::config {
namespace {

IpAddress Ip(std::string_view text) {
  auto address = IpAddress::Parse(text);
  EXPECT_TRUE(address.has_value()) << text;
  return address.value_or(IpAddress{});
}

TEST(IpAddressTest, ParsesV4AndV6) {
  IpAddress v4 = Ip("192.0.2.10");
  EXPECT_FALSE(v4.v6);
  EXPECT_EQ(v4, IpAddress::V4(192, 0, 2, 10));
  EXPECT_EQ(v4.ToString(), "192.0.2.10");

  IpAddress v6 = Ip("2001:db8::1");
  EXPECT_TRUE(v6.v6);
  EXPECT_EQ(v6.bytes[0], 0x20);
  EXPECT_EQ(v6.bytes[15], 1);
  EXPECT_EQ(v6.ToString(), "2001:db8::1");
  EXPECT_FALSE(v6.IsV4Mapped());
  EXPECT_TRUE(Ip("::ffff:10.1.2.3").IsV4Mapped());
}

TEST(IpAddressTest, RejectsLooseForms) {
  for (std::string_view text :
       {"", "1.2.3", "01.2.3.4", "1.2.3.256", "0x7f.0.0.1", " 1.2.3.4", "1.2.3.4 ", "[::1]",
        "fe80::1%eth0", "localhost", "1:2:3:4:5:6:7:8:9"}) {
    EXPECT_FALSE(IpAddress::Parse(text).has_value()) << text;
  }
}

TEST(EndpointTest, ParsesV4AndBracketedV6) {
  auto v4 = Endpoint::Parse("127.0.0.1:2525");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->address, IpAddress::V4(127, 0, 0, 1));
  EXPECT_EQ(v4->port, 2525);
  EXPECT_EQ(*v4, Endpoint::Loopback(2525));

  auto v6 = Endpoint::Parse("[::1]:25");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->address.v6);
  EXPECT_EQ(v6->address.ToString(), "::1");
  EXPECT_EQ(v6->port, 25);
  EXPECT_EQ(v6->ToString(), "[::1]:25");
}

TEST(EndpointTest, PortZeroMeansAnyFreePortAndIsAccepted) {
  auto endpoint = Endpoint::Parse("127.0.0.1:0");
  ASSERT_TRUE(endpoint);
  EXPECT_EQ(endpoint->port, 0);
  EXPECT_EQ(Endpoint::Parse("[::]:65535")->port, 65535);
}

TEST(EndpointTest, RejectsAmbiguousOrIncompleteText) {
  for (std::string_view text :
       {"", "127.0.0.1", "127.0.0.1:", ":25", "::1:25", "[::1]", "[::1]25", "[::1:25",
        "[127.0.0.1]:25", "localhost:25", "127.0.0.1:65536", "127.0.0.1:025", "127.0.0.1:-1",
        "127.0.0.1:+25", "127.0.0.1:25x"}) {
    EXPECT_FALSE(Endpoint::Parse(text).has_value()) << text;
  }
}

TEST(EndpointTest, ErrorSaysWhatIsWrong) {
  auto bracket = Endpoint::ParseOrError("::1:25");
  ASSERT_FALSE(bracket);
  EXPECT_NE(bracket.error().message().find("brackets"), std::string::npos)
      << bracket.error().message();
  auto name = Endpoint::ParseOrError("localhost:25");
  ASSERT_FALSE(name);
  EXPECT_NE(name.error().message().find("host names are not accepted"), std::string::npos);
}

TEST(EndpointTest, ToStringRoundTrips) {
  for (std::string_view text : {"0.0.0.0:25", "192.0.2.1:587", "[2001:db8::5]:2525", "[::]:0"}) {
    auto endpoint = Endpoint::Parse(text);
    ASSERT_TRUE(endpoint) << text;
    EXPECT_EQ(endpoint->ToString(), text);
  }
}

TEST(CidrTest, ContainsV4) {
  auto net = Cidr::Parse("10.0.0.0/8");
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->Contains(Ip("10.0.0.0")));
  EXPECT_TRUE(net->Contains(Ip("10.255.255.255")));
  EXPECT_FALSE(net->Contains(Ip("11.0.0.0")));
  EXPECT_FALSE(net->Contains(Ip("9.255.255.255")));
  EXPECT_FALSE(net->Contains(Ip("2001:db8::1")));

  auto odd = Cidr::Parse("192.168.4.0/22");  // prefix not on a byte boundary
  ASSERT_TRUE(odd);
  EXPECT_TRUE(odd->Contains(Ip("192.168.7.255")));
  EXPECT_FALSE(odd->Contains(Ip("192.168.8.0")));
  EXPECT_FALSE(odd->Contains(Ip("192.168.3.255")));
}

TEST(CidrTest, ContainsV6) {
  auto net = Cidr::Parse("2001:db8:abcd::/48");
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->Contains(Ip("2001:db8:abcd:1::7")));
  EXPECT_FALSE(net->Contains(Ip("2001:db8:abce::1")));
  EXPECT_FALSE(net->Contains(Ip("10.0.0.1")));

  auto host = Cidr::Parse("::1/128");
  ASSERT_TRUE(host);
  EXPECT_TRUE(host->Contains(Ip("::1")));
  EXPECT_FALSE(host->Contains(Ip("::2")));
  EXPECT_FALSE(host->Contains(Ip("127.0.0.1")));
}

TEST(CidrTest, V4NetworkContainsMappedV6ClientAndBack) {
  // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
  auto loopback = Cidr::Parse("127.0.0.0/8");
  ASSERT_TRUE(loopback);
  EXPECT_TRUE(loopback->Contains(Ip("::ffff:127.0.0.1")));
  EXPECT_FALSE(loopback->Contains(Ip("::ffff:128.0.0.1")));
  EXPECT_FALSE(loopback->Contains(Ip("::127.0.0.1")));  // IPv4-compatible, not mapped

  auto mapped = Cidr::Parse("::ffff:10.0.0.0/104");
  ASSERT_TRUE(mapped);
  EXPECT_TRUE(mapped->Contains(Ip("10.9.8.7")));
  EXPECT_FALSE(mapped->Contains(Ip("11.0.0.1")));
}

TEST(CidrTest, BareAddressIsOneHost) {
  auto v4 = Cidr::Parse("192.0.2.7");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->prefix_length, 32);
  EXPECT_TRUE(v4->Contains(Ip("192.0.2.7")));
  EXPECT_FALSE(v4->Contains(Ip("192.0.2.8")));
  auto v6 = Cidr::Parse("2001:db8::7");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->prefix_length, 128);
}

TEST(CidrTest, ZeroPrefixContainsEverythingOfItsFamily) {
  auto all4 = Cidr::Parse("0.0.0.0/0");
  ASSERT_TRUE(all4);
  EXPECT_TRUE(all4->Contains(Ip("203.0.113.9")));
  EXPECT_TRUE(all4->Contains(Ip("::ffff:203.0.113.9")));
  EXPECT_FALSE(all4->Contains(Ip("2001:db8::1")));
}

TEST(CidrTest, HostBitsSetAreRejectedWithTheLikelyNetwork) {
  EXPECT_FALSE(Cidr::Parse("10.1.0.0/8").has_value());
  EXPECT_FALSE(Cidr::Parse("192.168.1.1/24").has_value());
  EXPECT_FALSE(Cidr::Parse("2001:db8::1/64").has_value());
  auto error = Cidr::ParseOrError("10.1.0.0/8");
  ASSERT_FALSE(error);
  EXPECT_NE(error.error().message().find("did you mean 10.0.0.0/8?"), std::string::npos)
      << error.error().message();
}

TEST(CidrTest, RejectsBadPrefixLengths) {
  for (std::string_view text : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/08", "10.0.0.0/-1",
                                "10.0.0.0/8/8", "/8", "10.0.0/8"}) {
    EXPECT_FALSE(Cidr::Parse(text).has_value()) << text;
  }
}

TEST(CidrTest, ToStringRoundTrips) {
  for (std::string_view text : {"127.0.0.0/8", "::1/128", "2001:db8::/32", "0.0.0.0/0"}) {
    auto cidr = Cidr::Parse(text);
    ASSERT_TRUE(cidr) << text;
    EXPECT_EQ(cidr->ToString(), text);
  }
}

}  // namespace
}  // namespace hikyaku::config
