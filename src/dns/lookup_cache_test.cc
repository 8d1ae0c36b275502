#include "dns/lookup_cache.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "dns/resolver.h"

namespace hikyaku::dns {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

class LookupCacheTest : public ::testing::Test {
 protected:
  HostAddresses Host(const std::string& name, Duration ttl) {
    return HostAddresses{name, {boost::asio::ip::make_address("192.0.2.1")}, clock_.Now() + ttl};
  }
  ManualClock clock_;
  LookupCache<HostAddresses> cache_{clock_, minutes(5), hours(1)};
};

TEST_F(LookupCacheTest, ConcurrentRequestsShareOneLookup) {
  int calls = 0;
  EXPECT_TRUE(cache_.Join("mx.test", [&](Result<HostAddresses>) { ++calls; }));
  EXPECT_FALSE(cache_.Join("mx.test", [&](Result<HostAddresses>) { ++calls; }));
  EXPECT_FALSE(cache_.Join("mx.test", [&](Result<HostAddresses>) { ++calls; }));
  EXPECT_TRUE(cache_.Join("other.test", [&](Result<HostAddresses>) { ++calls; }));
  EXPECT_EQ(cache_.in_flight(), 2u);

  auto [answer, waiters] = cache_.Complete("mx.test", Host("mx.test", seconds(60)));
  ASSERT_TRUE(answer);
  EXPECT_EQ(waiters.size(), 3u);
  for (auto& w : waiters) w(answer);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(cache_.in_flight(), 1u);
  // The next request for the name starts a new lookup slot only after expiry.
  EXPECT_TRUE(cache_.Find("mx.test").has_value());
}

TEST_F(LookupCacheTest, AnswerLivesExactlyItsTtl) {
  cache_.Join("mx.test", [](Result<HostAddresses>) {});
  cache_.Complete("mx.test", Host("mx.test", seconds(60)));
  clock_.Advance(seconds(59));
  auto hit = cache_.Find("mx.test");
  ASSERT_TRUE(hit.has_value());
  ASSERT_TRUE(*hit);
  EXPECT_EQ((*hit)->name, "mx.test");
  clock_.Advance(seconds(1));
  EXPECT_FALSE(cache_.Find("mx.test").has_value());
}

TEST_F(LookupCacheTest, LongTtlIsClampedToMaxTtl) {
  cache_.Join("mx.test", [](Result<HostAddresses>) {});
  TimePoint now = clock_.Now();
  auto [answer, waiters] = cache_.Complete("mx.test", Host("mx.test", hours(48)));
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->expires, now + hours(1));  // the value says the truth too
  clock_.Advance(hours(1) - seconds(1));
  EXPECT_TRUE(cache_.Find("mx.test").has_value());
  clock_.Advance(seconds(1));
  EXPECT_FALSE(cache_.Find("mx.test").has_value());
}

TEST_F(LookupCacheTest, ZeroTtlIsNotStored) {
  cache_.Complete("mx.test", Host("mx.test", seconds(0)));
  EXPECT_FALSE(cache_.Find("mx.test").has_value());
  EXPECT_EQ(cache_.cached(), 0u);
}

TEST_F(LookupCacheTest, PermanentFailureIsCachedForNegativeTtl) {
  cache_.Complete("gone.test", Fail(ErrorCode::kNotFound, "gone.test: NXDOMAIN"));
  clock_.Advance(minutes(5) - seconds(1));
  auto hit = cache_.Find("gone.test");
  ASSERT_TRUE(hit.has_value());
  ASSERT_FALSE(*hit);
  EXPECT_EQ(hit->error().message(), "gone.test: NXDOMAIN");
  clock_.Advance(seconds(1));
  EXPECT_FALSE(cache_.Find("gone.test").has_value());
}

TEST_F(LookupCacheTest, TransientFailureIsNotCached) {
  cache_.Join("flaky.test", [](Result<HostAddresses>) {});
  auto [answer, waiters] =
      cache_.Complete("flaky.test", Fail(ErrorCode::kTimeout, "flaky.test: timeout"));
  EXPECT_FALSE(answer);
  EXPECT_EQ(waiters.size(), 1u);
  EXPECT_FALSE(cache_.Find("flaky.test").has_value());
}

TEST_F(LookupCacheTest, ExpiredEntriesAreSweptAsTheMapGrows) {
  for (int i = 0; i < 1000; ++i) cache_.Complete("old" + std::to_string(i), Host("x", seconds(10)));
  EXPECT_EQ(cache_.cached(), 1000u);
  clock_.Advance(seconds(11));
  for (int i = 0; i < 30; ++i) cache_.Complete("new" + std::to_string(i), Host("x", seconds(10)));
  // The sweep at 1024 entries dropped the 1000 expired ones.
  EXPECT_LT(cache_.cached(), 100u);
  EXPECT_TRUE(cache_.Find("new29").has_value());
}

}  // namespace
}  // namespace hikyaku::dns
