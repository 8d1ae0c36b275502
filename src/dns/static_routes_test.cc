#include "dns/static_routes.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>

#include "dns/fake_resolver.h"

namespace hikyaku::dns {
namespace {

using boost::asio::ip::make_address;

config::RouteConfig Route(std::string domain, std::string host, uint16_t port = 25,
                          std::string site = "") {
  return config::RouteConfig{std::move(domain), std::move(host), port, std::move(site)};
}

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() {
    inner_.SetMxHosts("plain.test",
                      {MxHost{"mx.plain.test", 10, {make_address("192.0.2.10")}, 25}});
    inner_.SetHost("relay.example.net",
                   HostAddresses{"relay.example.net",
                                 {make_address("198.51.100.7"), make_address("2001:db8::7")},
                                 TimePoint(Duration(1'700'000'600'000))});
  }

  // Resolves through the router, running both the io_context (literal
  // routes) and the fake (DNS-backed ones) until the answer is in.
  Result<Destination> Resolve(Router& router, const std::string& domain) {
    std::optional<Result<Destination>> out;
    router.ResolveMx(domain, [&](Result<Destination> r) { out = std::move(r); });
    EXPECT_FALSE(out.has_value()) << "callback ran inside ResolveMx";
    for (int i = 0; i < 10 && !out; ++i) {
      io_.restart();
      io_.poll();
      inner_.RunPending();
    }
    if (!out) return Fail(ErrorCode::kInternal, "no answer");
    return std::move(*out);
  }

  boost::asio::io_context io_;
  FakeResolver inner_;
};

TEST_F(RouterTest, IpLiteralRouteNeedsNoDns) {
  Router router(io_.get_executor(), inner_, {Route("bulk.test", "192.0.2.50", 2526)});
  auto dest = Resolve(router, "Bulk.Test.");
  ASSERT_TRUE(dest) << dest.error().ToString();
  EXPECT_EQ(dest->domain, "bulk.test");
  ASSERT_EQ(dest->hosts.size(), 1u);
  EXPECT_EQ(dest->hosts[0].addresses, std::vector{make_address("192.0.2.50")});
  EXPECT_EQ(dest->hosts[0].port, 2526);
  EXPECT_FALSE(dest->implicit_mx);
  EXPECT_EQ(dest->expires, TimePoint::max());
  EXPECT_TRUE(inner_.mx_requests().empty());
  EXPECT_TRUE(inner_.host_requests().empty());
}

TEST_F(RouterTest, Ipv6LiteralWithOrWithoutBrackets) {
  Router router(io_.get_executor(), inner_,
                {Route("a.test", "2001:db8::25", 25), Route("b.test", "[2001:db8::26]", 587)});
  auto a = Resolve(router, "a.test");
  auto b = Resolve(router, "b.test");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->hosts[0].addresses[0], make_address("2001:db8::25"));
  EXPECT_EQ(b->hosts[0].addresses[0], make_address("2001:db8::26"));
  EXPECT_EQ(b->hosts[0].port, 587);
}

TEST_F(RouterTest, HostNameRouteResolvesAddressesAndUsesRoutePort) {
  Router router(io_.get_executor(), inner_, {Route("corp.test", "relay.example.net", 10025)});
  auto dest = Resolve(router, "corp.test");
  ASSERT_TRUE(dest) << dest.error().ToString();
  ASSERT_EQ(dest->hosts.size(), 1u);
  EXPECT_EQ(dest->hosts[0].name, "relay.example.net");
  EXPECT_EQ(dest->hosts[0].port, 10025);
  EXPECT_EQ(dest->hosts[0].addresses.size(), 2u);
  EXPECT_EQ(dest->expires, TimePoint(Duration(1'700'000'600'000)));
  EXPECT_EQ(inner_.host_requests(), std::vector<std::string>{"relay.example.net"});
  EXPECT_TRUE(inner_.mx_requests().empty());  // no MX lookup for a routed domain
}

TEST_F(RouterTest, UnresolvableRouteHostDefersInsteadOfBouncing) {
  Router router(io_.get_executor(), inner_, {Route("corp.test", "typo.example.net")});
  auto dest = Resolve(router, "corp.test");
  ASSERT_FALSE(dest);
  EXPECT_TRUE(dest.error().transient());
  EXPECT_NE(dest.error().message().find("static route to typo.example.net"), std::string::npos)
      << dest.error().message();
  EXPECT_NE(dest.error().message().find("NXDOMAIN"), std::string::npos);
}

TEST_F(RouterTest, ExactBeatsWildcardAndLongestSuffixWins) {
  Router router(
      io_.get_executor(), inner_,
      {Route("*.example.test", "192.0.2.1"), Route("*.mail.example.test", "192.0.2.2"),
       Route("mail.example.test", "192.0.2.3"), Route("*.mail.example.test", "192.0.2.99")});
  auto ip_of = [&](const std::string& d) {
    auto dest = Resolve(router, d);
    return dest ? dest->hosts[0].addresses[0].to_string() : dest.error().message();
  };
  EXPECT_EQ(ip_of("mail.example.test"), "192.0.2.3");    // exact
  EXPECT_EQ(ip_of("a.mail.example.test"), "192.0.2.2");  // longer suffix; first duplicate kept
  EXPECT_EQ(ip_of("x.y.mail.example.test"), "192.0.2.2");
  EXPECT_EQ(ip_of("other.example.test"), "192.0.2.1");
  EXPECT_EQ(ip_of("EXAMPLE.test"), "example.test: NXDOMAIN");  // wildcard does not match the parent
}

TEST_F(RouterTest, UnroutedDomainsGoToTheInnerResolver) {
  Router router(io_.get_executor(), inner_, {Route("*.example.test", "192.0.2.1")});
  auto dest = Resolve(router, "plain.test");
  ASSERT_TRUE(dest);
  EXPECT_EQ(dest->hosts[0].name, "mx.plain.test");
  EXPECT_EQ(inner_.mx_requests(), std::vector<std::string>{"plain.test"});
  EXPECT_EQ(router.FindRoute("plain.test"), nullptr);
}

TEST_F(RouterTest, RouteSite) {
  Router router(
      io_.get_executor(), inner_,
      {Route("*.docomo.test", "192.0.2.1", 25, "docomo"), Route("nosite.test", "192.0.2.2")});
  EXPECT_EQ(router.RouteSite("x.docomo.test"), "docomo");
  EXPECT_EQ(router.RouteSite("X.DOCOMO.test."), "docomo");
  EXPECT_EQ(router.RouteSite("nosite.test"), std::nullopt);
  EXPECT_EQ(router.RouteSite("docomo.test"), std::nullopt);
  EXPECT_EQ(router.RouteSite("elsewhere.test"), std::nullopt);
  ASSERT_NE(router.FindRoute("nosite.test"), nullptr);
  EXPECT_EQ(router.FindRoute("nosite.test")->host, "192.0.2.2");
}

// The dispatcher learns a route's site from the answer itself, so it needs
// no knowledge of which Resolver it talks to.
TEST_F(RouterTest, RoutedDestinationCarriesTheRouteSite) {
  Router router(io_.get_executor(), inner_,
                {Route("*.docomo.test", "192.0.2.1", 25, "docomo"), Route("nosite.test", "192.0.2.2")});
  auto routed = Resolve(router, "x.docomo.test");
  ASSERT_TRUE(routed);
  EXPECT_EQ(routed->site, "docomo");
  auto plain = Resolve(router, "nosite.test");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->site, "");
}

}  // namespace
}  // namespace hikyaku::dns
