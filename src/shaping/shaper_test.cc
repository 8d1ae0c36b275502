#include "shaping/shaper.h"

#include <gtest/gtest.h>

#include <map>

namespace hikyaku::shaping {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

constexpr TimePoint kStart = TimePoint(Duration(1'800'000'000'000));  // 2027-01-15 08:00 UTC

ShaperConfig TwoSources(uint32_t weight_a = 2, uint32_t weight_b = 1) {
  ShaperConfig c;
  c.sources = {{"a", "127.0.0.50", "", {}}, {"b", "127.0.0.51", "", {}}};
  c.pools = {{"main", {{"a", weight_a}, {"b", weight_b}}}, {"solo", {{"b", 1}}}};
  return c;
}

std::string PickName(Shaper& s, PoolId pool, std::string_view site, TimePoint now) {
  auto pick = s.PickSource(pool, site, now);
  return pick.source ? s.source(*pick.source).name : "-";
}

TEST(ShaperTest, SourcesAreChosenBySmoothWeightedRoundRobin) {
  Shaper s(TwoSources(), kStart);
  std::string order;
  for (int i = 0; i < 6; ++i) order += PickName(s, 0, "gmail", kStart);
  EXPECT_EQ(order, "abaaba");
  EXPECT_EQ(PickName(s, 1, "gmail", kStart), "b");  // a pool only uses its own sources
  EXPECT_TRUE(s.PoolContains(0, 0));
  EXPECT_FALSE(s.PoolContains(1, 0));
}

TEST(ShaperTest, PerSourceConnectionCapSendsTheNextConnectionElsewhere) {
  ShaperConfig c = TwoSources(1, 1);
  c.limits.sites["docomo"].flow.max_connections = 2;
  Shaper s(std::move(c), kStart);
  std::map<std::string, int> opened;
  for (int i = 0; i < 10; ++i) {
    auto pick = s.PickSource(0, "docomo", kStart);
    if (!pick.source) {
      EXPECT_NE(pick.why_not.find("holds 2 of 2 connections"), std::string::npos) << pick.why_not;
      break;
    }
    s.Opened(*pick.source, "docomo", kStart);
    ++opened[s.source(*pick.source).name];
  }
  EXPECT_EQ(opened["a"], 2);
  EXPECT_EQ(opened["b"], 2);
  // Another site is not affected by docomo's cap, and a closed connection frees a slot.
  EXPECT_NE(PickName(s, 0, "other", kStart), "-");
  s.Closed(0, "docomo");
  EXPECT_EQ(PickName(s, 0, "docomo", kStart), "a");
}

TEST(ShaperTest, WarmupCapSpillsToTheOtherSourceThenWaitsForTheNextHour) {
  ShaperConfig c = TwoSources(1, 1);
  c.sources[0].warmup = "new";
  c.sources[0].warmup_start = kStart - hours(8);  // day 1
  c.warmups["new"].schedule = {"new", {{1, 1000, 10}}};
  Shaper s(std::move(c), kStart);
  EXPECT_TRUE(s.MaySend(0, "gmail", "", 10, kStart));
  s.Sent(0, "gmail", 10, kStart);
  EXPECT_FALSE(s.MaySend(0, "gmail", "", 1, kStart));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(PickName(s, 0, "gmail", kStart), "b");
  auto sources = s.Sources(kStart);
  EXPECT_EQ(sources[0].warmup_progress.sent_this_hour, 10u);
  EXPECT_EQ(sources[0].warmup_progress.cap_this_hour, 10u);
  // The pool of only the capped source has nothing, and says until when.
  ShaperConfig only_a = TwoSources();
  only_a.pools = {{"a-only", {{"a", 1}}}};
  only_a.sources[0].warmup = "new";
  only_a.sources[0].warmup_start = kStart - hours(8);
  only_a.warmups["new"].schedule = {"new", {{1, 1000, 10}}};
  s.Configure(std::move(only_a), kStart);  // the counts survive a reload
  auto pick = s.PickSource(0, "gmail", kStart);
  EXPECT_FALSE(pick.source);
  EXPECT_NE(pick.why_not.find("warm-up cap"), std::string::npos);
  EXPECT_EQ(pick.retry_at, kStart + hours(1));
  EXPECT_EQ(PickName(s, 0, "gmail", kStart + hours(1)), "a");
}

TEST(ShaperTest, SuspensionsOfSiteSourcePairAndTenant) {
  Shaper s(TwoSources(1, 1), kStart);
  auto id = s.suspensions().Add({"docomo", "", ""}, kStart + minutes(10), "maintenance", kStart);
  EXPECT_TRUE(s.SiteSuspended("docomo", kStart));
  auto pick = s.PickSource(0, "docomo", kStart);
  EXPECT_FALSE(pick.source);
  EXPECT_EQ(pick.why_not, "site suspended");
  EXPECT_NE(PickName(s, 0, "gmail", kStart), "-");
  EXPECT_TRUE(s.suspensions().Remove(id));
  EXPECT_FALSE(s.SiteSuspended("docomo", kStart));

  s.suspensions().Add({"", "a", ""}, TimePoint::max(), "listed", kStart);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(PickName(s, 0, "docomo", kStart), "b");
  EXPECT_FALSE(s.MaySend(0, "gmail", "", 1, kStart));

  s.suspensions().Add({"gmail", "b", ""}, TimePoint::max(), "pair", kStart);
  EXPECT_EQ(PickName(s, 0, "gmail", kStart), "-");
  EXPECT_EQ(PickName(s, 0, "docomo", kStart), "b");

  s.suspensions().Add({"", "", "acme"}, kStart + minutes(5), "complaints", kStart);
  EXPECT_TRUE(s.TenantBlocked("acme", "docomo", kStart));
  EXPECT_FALSE(s.TenantBlocked("other", "docomo", kStart));
  EXPECT_FALSE(s.MaySend(1, "docomo", "acme", 1, kStart));
  EXPECT_TRUE(s.MaySend(1, "docomo", "other", 1, kStart));
  EXPECT_FALSE(s.SiteSuspended("docomo", kStart));  // a tenant hold is no site hold
  // It ends by itself, with an event.
  s.Tick(kStart + minutes(6));
  EXPECT_FALSE(s.TenantBlocked("acme", "docomo", kStart + minutes(6)));
  auto events = s.TakeEvents();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().type, "suspension_ended");
}

TEST(ShaperTest, ConnectionSignalLowersThePairWithAnEventAndReloadKeepsIt) {
  Shaper s(TwoSources(1, 1), kStart);
  for (int i = 0; i < 4; ++i) s.Opened(0, "carrier", kStart);
  s.OnSignal(0, "carrier", Signal::kTooManyConnections, "421 4.7.0 too many connections", kStart);
  auto events = s.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, "shaping");
  EXPECT_EQ(events[0].source, "a");
  EXPECT_EQ(events[0].site, "carrier");
  EXPECT_EQ(events[0].new_connections, 3u);
  EXPECT_FALSE(events[0].reason.empty());
  s.Closed(0, "carrier");  // the refused one
  EXPECT_FALSE(s.PickSource(1, "carrier", kStart).source == std::optional<SourceId>(0));
  // a holds 3 of its learned 3: the main pool picks b.
  EXPECT_EQ(PickName(s, 0, "carrier", kStart), "b");

  // A reload keeps what was learned; a lower configured cap wins at once.
  ShaperConfig c = TwoSources(1, 1);
  s.Configure(c, kStart + seconds(1));
  EXPECT_EQ(s.Pairs(kStart).front().flow.connections, 3u);
  c.limits.sites["carrier"].flow.max_connections = 2;
  s.Configure(c, kStart + seconds(2));
  auto pairs = s.Pairs(kStart + seconds(2));
  ASSERT_FALSE(pairs.empty());
  EXPECT_EQ(pairs.front().source, "a");
  EXPECT_EQ(pairs.front().flow.connections, 2u);
  EXPECT_EQ(pairs.front().open_connections, 3u);  // open ones are not cut; no new one until below 2
  EXPECT_EQ(PickName(s, 0, "carrier", kStart + seconds(2)), "b");
}

TEST(ShaperTest, PerSourceOverrideAndCurrentRate) {
  ShaperConfig c = TwoSources(1, 1);
  c.limits.sites["gmail"].flow.max_connections = 5;
  c.limits.pairs[{"gmail", "b"}].flow.max_connections = 1;
  Shaper s(std::move(c), kStart);
  EXPECT_EQ(s.LimitsFor(0, "gmail").flow.max_connections, 5u);
  EXPECT_EQ(s.LimitsFor(1, "gmail").flow.max_connections, 1u);
  EXPECT_EQ(s.LimitsFor(1, "other").flow.max_connections, 0u);
  for (int i = 0; i < 30; ++i) s.Accepted(0, "gmail", 2, kStart + seconds(i));
  auto pairs = s.Pairs(kStart + seconds(30));
  ASSERT_EQ(pairs.size(), 1u);
  EXPECT_NEAR(pairs[0].current_rate, 1.0, 0.05);  // 60 recipients in the last minute
  EXPECT_EQ(pairs[0].accepted, 60u);
  EXPECT_NEAR(s.Pairs(kStart + minutes(5))[0].current_rate, 0.0, 1e-9);
}

}  // namespace
}  // namespace hikyaku::shaping
