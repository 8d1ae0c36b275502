// CaresResolver against ScriptedDnsServer: real c-ares, real UDP on
// 127.0.0.1, answers shaped by each test, time from a ManualClock.
#include "dns/cares_resolver.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "dns/scripted_dns_server.h"

namespace hikyaku::dns {
namespace {

using boost::asio::ip::make_address;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;
using Server = ScriptedDnsServer;

class CaresResolverTest : public ::testing::Test {
 protected:
  CaresResolverTest() : server_(io_) {
    config_.servers = {config::Endpoint{config::IpAddress::V4(127, 0, 0, 1), server_.port()}};
    config_.timeout = milliseconds(300);
    config_.attempts = 1;
    config_.negative_ttl = minutes(5);
    config_.max_ttl = hours(1);
  }

  CaresResolver& resolver() {
    if (!resolver_) {
      resolver_ = std::make_unique<CaresResolver>(io_, config_, clock_);
      auto started = resolver_->Start();
      EXPECT_TRUE(started) << started.error().ToString();
    }
    return *resolver_;
  }

  // Runs the io_context until `done` holds, at most 5 s of real time.
  template <typename Pred>
  bool RunUntil(Pred done) {
    auto deadline = std::chrono::steady_clock::now() + seconds(5);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(milliseconds(10));
    }
    return done();
  }

  Result<Destination> Mx(const std::string& domain) {
    std::optional<Result<Destination>> out;
    resolver().ResolveMx(domain, [&](Result<Destination> r) { out = std::move(r); });
    EXPECT_FALSE(out.has_value()) << "callback ran inside ResolveMx";
    if (!RunUntil([&] { return out.has_value(); }))
      return Fail(ErrorCode::kInternal, "test: no callback in 5 s");
    return std::move(*out);
  }

  Result<HostAddresses> Host(const std::string& name) {
    std::optional<Result<HostAddresses>> out;
    resolver().ResolveHost(name, [&](Result<HostAddresses> r) { out = std::move(r); });
    if (!RunUntil([&] { return out.has_value(); }))
      return Fail(ErrorCode::kInternal, "test: no callback in 5 s");
    return std::move(*out);
  }

  boost::asio::io_context io_;
  ManualClock clock_;
  Server server_;
  config::DnsConfig config_;
  std::unique_ptr<CaresResolver> resolver_;
};

TEST_F(CaresResolverTest, MxHostsInPreferenceOrderWithBothFamilies) {
  server_.AddMx("two.test", 20, "mx2.two.test", 3600);
  server_.AddMx("two.test", 10, "mx1.two.test", 3600);
  server_.AddA("mx1.two.test", "192.0.2.1", 600);
  server_.AddAaaa("mx1.two.test", "2001:db8::1", 900);
  server_.AddA("mx2.two.test", "192.0.2.2", 120);
  TimePoint now = clock_.Now();

  auto dest = Mx("two.test");
  ASSERT_TRUE(dest) << dest.error().ToString();
  EXPECT_EQ(dest->domain, "two.test");
  EXPECT_FALSE(dest->implicit_mx);
  ASSERT_EQ(dest->hosts.size(), 2u);
  EXPECT_EQ(dest->hosts[0].name, "mx1.two.test");
  EXPECT_EQ(dest->hosts[0].preference, 10);
  EXPECT_EQ(dest->hosts[0].port, 25);
  EXPECT_EQ(dest->hosts[0].addresses,
            (std::vector{make_address("192.0.2.1"), make_address("2001:db8::1")}));
  EXPECT_EQ(dest->hosts[1].name, "mx2.two.test");
  EXPECT_EQ(dest->hosts[1].addresses, std::vector{make_address("192.0.2.2")});
  // The smallest TTL of everything the answer was built from: mx2's A.
  EXPECT_EQ(dest->expires, now + seconds(120));
}

TEST_F(CaresResolverTest, NoMxMeansImplicitMx) {
  server_.AddA("implicit.test", "192.0.2.4", 300);
  auto dest = Mx("implicit.test");
  ASSERT_TRUE(dest) << dest.error().ToString();
  EXPECT_TRUE(dest->implicit_mx);
  ASSERT_EQ(dest->hosts.size(), 1u);
  EXPECT_EQ(dest->hosts[0].name, "implicit.test");
  EXPECT_EQ(dest->hosts[0].preference, 0);
  EXPECT_EQ(dest->hosts[0].addresses, std::vector{make_address("192.0.2.4")});
}

TEST_F(CaresResolverTest, NullMxIsPermanent) {
  server_.AddMx("nullmx.test", 0, ".", 300);
  server_.AddA("nullmx.test", "192.0.2.9", 300);  // must not become an implicit MX
  auto dest = Mx("nullmx.test");
  ASSERT_FALSE(dest);
  EXPECT_EQ(dest.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(dest.error().transient());
  EXPECT_EQ(dest.error().message(), "nullmx.test: null MX (RFC 7505): the domain accepts no mail");
}

TEST_F(CaresResolverTest, NullMxBesideRealHostsIsIgnored) {
  server_.AddMx("mixed.test", 0, ".", 300);
  server_.AddMx("mixed.test", 10, "mx.mixed.test", 300);
  server_.AddA("mx.mixed.test", "192.0.2.11", 300);
  auto dest = Mx("mixed.test");
  ASSERT_TRUE(dest) << dest.error().ToString();
  ASSERT_EQ(dest->hosts.size(), 1u);
  EXPECT_EQ(dest->hosts[0].name, "mx.mixed.test");
}

TEST_F(CaresResolverTest, NxdomainIsPermanent) {
  auto dest = Mx("nx.test");
  ASSERT_FALSE(dest);
  EXPECT_EQ(dest.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(dest.error().transient());
  EXPECT_EQ(dest.error().message(), "nx.test: NXDOMAIN");
}

TEST_F(CaresResolverTest, NoMxAndNoAddressIsPermanent) {
  server_.Exists("empty.test");
  auto dest = Mx("empty.test");
  ASSERT_FALSE(dest);
  EXPECT_EQ(dest.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(dest.error().message(), "empty.test: no MX and no A/AAAA record");
}

TEST_F(CaresResolverTest, ServfailIsTransientAndNotCached) {
  server_.SetRcode("broken.test", Server::kServFail);
  auto dest = Mx("broken.test");
  ASSERT_FALSE(dest);
  EXPECT_TRUE(dest.error().transient());
  EXPECT_EQ(dest.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(dest.error().message().find("broken.test: SERVFAIL"), std::string::npos)
      << dest.error().message();
  int first = server_.queries("broken.test", Server::kTypeMx);
  EXPECT_FALSE(Mx("broken.test"));
  EXPECT_GT(server_.queries("broken.test", Server::kTypeMx), first);
}

TEST_F(CaresResolverTest, RefusedIsTransient) {
  server_.SetRcode("refused.test", Server::kRefused);
  auto dest = Mx("refused.test");
  ASSERT_FALSE(dest);
  EXPECT_TRUE(dest.error().transient());
  EXPECT_NE(dest.error().message().find("REFUSED"), std::string::npos) << dest.error().message();
}

TEST_F(CaresResolverTest, SilentServerTimesOutWithinTheConfiguredBudget) {
  server_.Ignore("slow.test");
  config_.timeout = milliseconds(200);
  config_.attempts = 2;
  auto start = std::chrono::steady_clock::now();
  auto dest = Mx("slow.test");
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(dest);
  EXPECT_EQ(dest.error().code(), ErrorCode::kTimeout);
  EXPECT_TRUE(dest.error().transient());
  EXPECT_EQ(server_.queries("slow.test", Server::kTypeMx), 2);  // dns.attempts
  EXPECT_LT(took, seconds(3));
}

TEST_F(CaresResolverTest, MxHostWithoutAddressIsDropped) {
  server_.AddMx("partial.test", 10, "dead.partial.test", 3600);
  server_.AddMx("partial.test", 20, "live.partial.test", 3600);
  server_.AddA("live.partial.test", "192.0.2.20", 3600);
  TimePoint now = clock_.Now();
  auto dest = Mx("partial.test");
  ASSERT_TRUE(dest) << dest.error().ToString();
  ASSERT_EQ(dest->hosts.size(), 1u);
  EXPECT_EQ(dest->hosts[0].name, "live.partial.test");
  // Looked at again after negative_ttl, in case the dropped host comes back.
  EXPECT_EQ(dest->expires, now + minutes(5));
}

TEST_F(CaresResolverTest, NoMxHostWithAnAddressIsTransient) {
  server_.AddMx("hollow.test", 10, "a.hollow.test", 3600);
  server_.AddMx("hollow.test", 20, "b.hollow.test", 3600);
  server_.SetRcode("b.hollow.test", Server::kServFail);
  auto dest = Mx("hollow.test");
  ASSERT_FALSE(dest);
  EXPECT_TRUE(dest.error().transient());
  EXPECT_NE(dest.error().message().find("hollow.test: no address for any MX host"),
            std::string::npos);
  EXPECT_NE(dest.error().message().find("a.hollow.test: NXDOMAIN"), std::string::npos)
      << dest.error().message();
  EXPECT_NE(dest.error().message().find("b.hollow.test: SERVFAIL"), std::string::npos)
      << dest.error().message();
}

TEST_F(CaresResolverTest, AnswersAreCachedUntilTheSmallestTtl) {
  server_.AddMx("cached.test", 10, "mx.cached.test", 600);
  server_.AddA("mx.cached.test", "192.0.2.30", 300);
  ASSERT_TRUE(Mx("cached.test"));
  clock_.Advance(seconds(299));
  ASSERT_TRUE(Mx("Cached.TEST."));  // same name in another spelling
  EXPECT_EQ(server_.queries("cached.test", Server::kTypeMx), 1);
  EXPECT_EQ(server_.queries("mx.cached.test", Server::kTypeA), 1);
  EXPECT_EQ(resolver().stats().cache_hits, 1u);

  clock_.Advance(seconds(1));
  ASSERT_TRUE(Mx("cached.test"));
  EXPECT_EQ(server_.queries("cached.test", Server::kTypeMx), 2);
  EXPECT_EQ(server_.queries("mx.cached.test", Server::kTypeA), 2);
}

TEST_F(CaresResolverTest, LongTtlsAreClampedToMaxTtl) {
  server_.AddMx("long.test", 10, "mx.long.test", 7 * 86400);
  server_.AddA("mx.long.test", "192.0.2.31", 7 * 86400);
  TimePoint now = clock_.Now();
  auto dest = Mx("long.test");
  ASSERT_TRUE(dest);
  EXPECT_EQ(dest->expires, now + hours(1));
  clock_.Advance(hours(1));
  ASSERT_TRUE(Mx("long.test"));
  EXPECT_EQ(server_.queries("long.test", Server::kTypeMx), 2);
}

TEST_F(CaresResolverTest, NegativeAnswersAreCachedForNegativeTtl) {
  ASSERT_FALSE(Mx("gone.test"));
  clock_.Advance(minutes(5) - seconds(1));
  auto again = Mx("gone.test");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message(), "gone.test: NXDOMAIN");
  EXPECT_EQ(server_.queries("gone.test", Server::kTypeMx), 1);
  clock_.Advance(seconds(1));
  ASSERT_FALSE(Mx("gone.test"));
  EXPECT_EQ(server_.queries("gone.test", Server::kTypeMx), 2);
}

TEST_F(CaresResolverTest, ConcurrentLookupsOfOneDomainShareOneQuery) {
  server_.AddMx("busy.test", 10, "mx.busy.test", 600);
  server_.AddA("mx.busy.test", "192.0.2.40", 600);
  int answers = 0;
  for (int i = 0; i < 5; ++i) {
    resolver().ResolveMx(i % 2 ? "busy.test" : "BUSY.test", [&](Result<Destination> r) {
      ASSERT_TRUE(r);
      EXPECT_EQ(r->hosts[0].addresses[0], make_address("192.0.2.40"));
      ++answers;
    });
  }
  ASSERT_TRUE(RunUntil([&] { return answers == 5; }));
  EXPECT_EQ(server_.queries("busy.test", Server::kTypeMx), 1);
  EXPECT_EQ(server_.queries("mx.busy.test", Server::kTypeA), 1);
  EXPECT_EQ(resolver().stats().coalesced, 4u);
}

TEST_F(CaresResolverTest, SharedMxHostIsLookedUpOnce) {
  for (const char* d : {"a.test", "b.test", "c.test"})
    server_.AddMx(d, 10, "mx.provider.test", 600);
  server_.AddA("mx.provider.test", "192.0.2.50", 600);
  int answers = 0;
  for (const char* d : {"a.test", "b.test", "c.test"}) {
    resolver().ResolveMx(d, [&](Result<Destination> r) {
      EXPECT_TRUE(r);
      ++answers;
    });
  }
  ASSERT_TRUE(RunUntil([&] { return answers == 3; }));
  EXPECT_EQ(server_.queries("mx.provider.test", Server::kTypeA), 1);
}

TEST_F(CaresResolverTest, EqualPreferencesAreShuffledPerCaller) {
  server_.AddMx("pair.test", 10, "x.pair.test", 600);
  server_.AddMx("pair.test", 10, "y.pair.test", 600);
  server_.AddMx("pair.test", 5, "first.pair.test", 600);
  for (const char* h : {"x.pair.test", "y.pair.test", "first.pair.test"})
    server_.AddA(h, "192.0.2.60", 600);
  std::set<std::string> seconds_seen;
  for (int i = 0; i < 40; ++i) {
    auto dest = Mx("pair.test");
    ASSERT_TRUE(dest);
    ASSERT_EQ(dest->hosts.size(), 3u);
    EXPECT_EQ(dest->hosts[0].name, "first.pair.test");  // preference still rules
    seconds_seen.insert(dest->hosts[1].name);
  }
  EXPECT_EQ(seconds_seen, (std::set<std::string>{"x.pair.test", "y.pair.test"}));
  EXPECT_EQ(server_.queries("pair.test", Server::kTypeMx), 1);  // shuffled from the cache
}

TEST_F(CaresResolverTest, ResolveHost) {
  server_.AddA("host.test", "192.0.2.70", 60);
  server_.AddAaaa("host.test", "2001:db8::70", 60);
  server_.Exists("v6less.test");
  auto host = Host("HOST.test");
  ASSERT_TRUE(host) << host.error().ToString();
  EXPECT_EQ(host->name, "host.test");
  EXPECT_EQ(host->addresses,
            (std::vector{make_address("192.0.2.70"), make_address("2001:db8::70")}));
  auto none = Host("v6less.test");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().message(), "v6less.test: no A/AAAA record");
  auto nx = Host("nohost.test");
  ASSERT_FALSE(nx);
  EXPECT_EQ(nx.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(nx.error().message(), "nohost.test: NXDOMAIN");
}

TEST_F(CaresResolverTest, AddressLiteralNeedsNoDns) {
  auto dest = Mx("[192.0.2.80]");
  ASSERT_TRUE(dest) << dest.error().ToString();
  EXPECT_EQ(dest->hosts[0].addresses, std::vector{make_address("192.0.2.80")});
  EXPECT_EQ(server_.total_queries(), 0);
}

TEST_F(CaresResolverTest, InvalidNamesArePermanentWithoutQuery) {
  auto dest = Mx("bad..test");
  ASSERT_FALSE(dest);
  EXPECT_EQ(dest.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(dest.error().transient());
  EXPECT_EQ(server_.total_queries(), 0);
}

TEST_F(CaresResolverTest, NotStartedIsTransient) {
  CaresResolver unstarted(io_, config_, clock_);
  std::optional<Result<Destination>> out;
  unstarted.ResolveMx("two.test", [&](Result<Destination> r) { out = std::move(r); });
  ASSERT_TRUE(RunUntil([&] { return out.has_value(); }));
  ASSERT_FALSE(*out);
  EXPECT_EQ(out->error().code(), ErrorCode::kUnavailable);
}

TEST_F(CaresResolverTest, DestroyingWithLookupsInFlightDropsTheirCallbacks) {
  server_.Ignore("slow.test");
  bool called = false;
  resolver().ResolveMx("slow.test", [&](Result<Destination>) { called = true; });
  RunUntil([&] { return server_.queries("slow.test", Server::kTypeMx) > 0; });
  ASSERT_EQ(server_.queries("slow.test", Server::kTypeMx), 1);
  resolver_.reset();
  io_.restart();
  io_.run_for(milliseconds(500));  // past the timeout: nothing may fire
  EXPECT_FALSE(called);
}

TEST_F(CaresResolverTest, CallbackMayDestroyTheResolver) {
  server_.AddA("implicit.test", "192.0.2.4", 300);
  bool called = false;
  resolver().ResolveMx("implicit.test", [&](Result<Destination> r) {
    EXPECT_TRUE(r);
    called = true;
    resolver_.reset();
  });
  ASSERT_TRUE(RunUntil([&] { return called; }));
  io_.restart();
  io_.run_for(milliseconds(50));
}

// The delivery engine may run one io_context on several threads: the
// resolver's strand must keep c-ares and the caches single-threaded (run
// this under the tsan preset to see a violation).
TEST_F(CaresResolverTest, IoContextRunOnSeveralThreads) {
  for (int d = 0; d < 10; ++d) {
    std::string domain = "d" + std::to_string(d) + ".test";
    server_.AddMx(domain, 10, "mx." + domain, 600);
    server_.AddA("mx." + domain, "192.0.2." + std::to_string(100 + d), 600);
  }
  server_.SetRcode("fail.test", Server::kServFail);
  CaresResolver& r = resolver();
  std::atomic<int> ok{0};
  std::atomic<int> failed{0};
  auto guard = boost::asio::make_work_guard(io_);
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back([this] { io_.run(); });
  for (int i = 0; i < 200; ++i) {
    std::string domain = i % 21 == 20 ? "fail.test" : "d" + std::to_string(i % 10) + ".test";
    r.ResolveMx(domain, [&ok, &failed, domain](Result<Destination> result) {
      if (result && result->domain == domain) {
        ++ok;
      } else {
        ++failed;
      }
    });
  }
  auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (ok + failed < 200 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  guard.reset();
  io_.stop();
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok + failed, 200);
  EXPECT_EQ(failed, 200 / 21);
  for (int d = 0; d < 10; ++d) {
    // Coalescing or the cache answered every repeat.
    EXPECT_EQ(server_.queries("d" + std::to_string(d) + ".test", Server::kTypeMx), 1);
  }
}

}  // namespace
}  // namespace hikyaku::dns
