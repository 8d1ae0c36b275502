#include "queue/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

namespace hikyaku::queue {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

QueuedRecipient Rcpt(uint64_t message, uint32_t index, TimePoint received_at) {
  QueuedRecipient r;
  r.message = MessageId(message);
  r.index = index;
  r.received_at = received_at;
  return r;
}

SiteLimits Limits(uint32_t max_connections, double retry_share = 0.25, uint32_t max_rcpt = 50) {
  SiteLimits l;
  l.max_connections = max_connections;
  l.retry_share = retry_share;
  l.max_recipients_per_transaction = max_rcpt;
  return l;
}

class SchedulerTest : public ::testing::Test {
 protected:
  static SchedulerOptions Options(uint32_t rate = 1000) {
    SchedulerOptions o;
    o.retry.initial = minutes(5);
    o.retry.max = hours(4);
    o.retry.max_age = days(3);
    o.retry.jitter = 0.2;
    o.retry.reactivation_rate = rate;
    o.seed = 1;
    return o;
  }

  // Opens connections as the dispatcher would until the scheduler says no.
  std::pair<int, int> OpenAll(Scheduler& s, SiteId site, bool reachable = true) {
    int fresh = 0, retry = 0;
    while (auto lane = s.ConnectionWanted(site, reachable)) {
      s.ConnectionOpened(site, *lane);
      (*lane == Lane::kFresh ? fresh : retry)++;
      if (fresh + retry > 10000) break;
    }
    return {fresh, retry};
  }

  // Puts `n` single-recipient messages straight into the retry lane.
  void FillRetryLane(Scheduler& s, SiteId site, uint64_t first_message, int n) {
    for (int i = 0; i < n; ++i) {
      s.EnqueueRetry(site, Rcpt(first_message + i, 0, clock_.Now()), clock_.Now());
    }
    ASSERT_EQ(s.Tick(clock_.Now()), static_cast<size_t>(n));
  }

  ManualClock clock_;
};

TEST_F(SchedulerTest, SitesAreFoundByKeyAndKeepTheirLimits) {
  Scheduler s(Options(), clock_.Now());
  const SiteId a = s.GetOrCreateSite("gmail", Limits(20));
  const SiteId b = s.GetOrCreateSite("docomo", Limits(3));
  EXPECT_NE(a, b);
  EXPECT_EQ(s.GetOrCreateSite("gmail", Limits(1)), a);
  EXPECT_EQ(s.site(a).limits().max_connections, 20u);
  EXPECT_EQ(s.FindSite("docomo"), b);
  EXPECT_FALSE(s.FindSite("yahoo"));
  std::vector<std::string> keys;
  s.ForEachSite([&](const Site& site) { keys.push_back(site.key()); });
  EXPECT_EQ(keys, (std::vector<std::string>{"gmail", "docomo"}));
  s.SetLimits(a, Limits(2));
  EXPECT_EQ(s.site(a).limits().max_connections, 2u);
}

TEST_F(SchedulerTest, LimitsComeFromDeliveryConfigAndSiteOverrides) {
  config::DeliveryConfig delivery;
  delivery.max_connections_per_site = 20;
  delivery.retry_share = 0.25;
  delivery.max_recipients_per_transaction = 40;
  config::SiteConfig docomo;
  docomo.max_connections = 3;
  docomo.max_messages_per_connection = 10;
  const SiteLimits plain = SiteLimits::FromConfig(delivery);
  const SiteLimits site = SiteLimits::FromConfig(delivery, &docomo);
  EXPECT_EQ(plain.max_connections, 20u);
  EXPECT_EQ(plain.RetryConnectionCap(), 5u);
  EXPECT_EQ(plain.max_recipients_per_transaction, 40u);
  EXPECT_EQ(site.max_connections, 3u);
  EXPECT_EQ(site.max_messages_per_connection, 10u);
  EXPECT_EQ(site.RetryConnectionCap(), 1u);  // ceil(0.75), at least one
  EXPECT_EQ(Limits(30, 0.1).RetryConnectionCap(), 3u);
  EXPECT_EQ(Limits(20, 0).RetryConnectionCap(), 0u);
  EXPECT_EQ(Limits(4, 1.0).RetryConnectionCap(), 4u);
}

TEST_F(SchedulerTest, RetryBacklogGetsAtMostItsShareAndFreshGetsTheRest) {
  Scheduler s(Options(0), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20, 0.25));
  FillRetryLane(s, site, 1'000'000, 100'000);
  // Retries alone: 5 connections, not 20, although 15 slots are free.
  EXPECT_EQ(OpenAll(s, site), std::make_pair(0, 5));
  for (uint64_t m = 1; m <= 100'000; ++m) s.EnqueueFresh(site, Rcpt(m, 0, clock_.Now()));
  EXPECT_EQ(OpenAll(s, site), std::make_pair(15, 0));
  EXPECT_EQ(s.site(site).connections(Lane::kRetry), 5u);
  EXPECT_EQ(s.site(site).connections(), 20u);
  EXPECT_FALSE(s.ConnectionWanted(site, true));
}

TEST_F(SchedulerTest, FreshFloodLeavesOneConnectionForWaitingRetries) {
  Scheduler s(Options(0), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20, 0.25));
  for (uint64_t m = 1; m <= 100'000; ++m) s.EnqueueFresh(site, Rcpt(m, 0, clock_.Now()));
  FillRetryLane(s, site, 1'000'000, 100'000);
  auto [fresh, retry] = OpenAll(s, site);
  EXPECT_EQ(fresh, 19);
  EXPECT_EQ(retry, 1);
}

TEST_F(SchedulerTest, FreshIsNeverStarvedByAHugeRetryBacklog) {
  Scheduler s(Options(0), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20, 0.25));
  FillRetryLane(s, site, 1'000'000, 100'000);
  OpenAll(s, site);
  // Retry connections finishing transactions keep serving retries ...
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(s.WorkFor(site, Lane::kRetry), Lane::kRetry);
    auto batch = s.TakeBatch(site, Lane::kRetry, 50);
    ASSERT_EQ(batch.size(), 1u);
    s.Defer(site, batch[0], clock_.Now());
  }
  // ... and one fresh recipient still gets a connection at once.
  s.EnqueueFresh(site, Rcpt(1, 0, clock_.Now()));
  EXPECT_EQ(s.ConnectionWanted(site, true), Lane::kFresh);
}

TEST_F(SchedulerTest, QueuedWorkBoundsTheConnections) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("example.com", Limits(20));
  EXPECT_FALSE(s.ConnectionWanted(site, true));  // nothing queued
  s.EnqueueFresh(site, Rcpt(1, 0, clock_.Now()));
  // A single queued recipient never opens a second connection.
  EXPECT_EQ(OpenAll(s, site), std::make_pair(1, 0));
  ASSERT_EQ(s.TakeBatch(site, Lane::kFresh, 50).size(), 1u);  // the connection is busy
  // One message with 30 recipients is one transaction: the busy connection
  // takes it next; no second connection.
  for (uint32_t i = 0; i < 30; ++i) s.EnqueueFresh(site, Rcpt(2, i, clock_.Now()));
  EXPECT_FALSE(s.ConnectionWanted(site, true));
  // Three more messages: three more transactions can run in parallel.
  for (uint64_t m = 3; m <= 5; ++m) s.EnqueueFresh(site, Rcpt(m, 0, clock_.Now()));
  EXPECT_EQ(OpenAll(s, site), std::make_pair(3, 0));
}

TEST_F(SchedulerTest, UnreachableSiteWantsNoConnection) {
  Scheduler s(Options(0), clock_.Now());
  const SiteId site = s.GetOrCreateSite("dead.example", Limits(20));
  for (uint64_t m = 1; m <= 100; ++m) s.EnqueueFresh(site, Rcpt(m, 0, clock_.Now()));
  FillRetryLane(s, site, 1000, 100);
  EXPECT_FALSE(s.ConnectionWanted(site, false));
  EXPECT_EQ(OpenAll(s, site, false), std::make_pair(0, 0));
  EXPECT_EQ(s.Totals().connections_fresh + s.Totals().connections_retry, 0u);
}

TEST_F(SchedulerTest, GlobalConnectionCapSpansSites) {
  SchedulerOptions o = Options();
  o.max_connections = 7;
  Scheduler s(o, clock_.Now());
  const SiteId a = s.GetOrCreateSite("a", Limits(5));
  const SiteId b = s.GetOrCreateSite("b", Limits(5));
  for (uint64_t m = 1; m <= 10; ++m) {
    s.EnqueueFresh(a, Rcpt(m, 0, clock_.Now()));
    s.EnqueueFresh(b, Rcpt(100 + m, 0, clock_.Now()));
  }
  EXPECT_EQ(OpenAll(s, a).first, 5);
  EXPECT_EQ(OpenAll(s, b).first, 2);
  s.ConnectionClosed(a, Lane::kFresh);
  EXPECT_EQ(s.ConnectionWanted(b, true), Lane::kFresh);
}

TEST_F(SchedulerTest, TakeBatchGroupsRecipientsOfOneMessageUpToTheLimit) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20, 0.25, /*max_rcpt=*/4));
  for (uint32_t i = 0; i < 6; ++i) s.EnqueueFresh(site, Rcpt(1, i, clock_.Now()));
  s.EnqueueFresh(site, Rcpt(2, 0, clock_.Now()));
  s.EnqueueFresh(site, Rcpt(1, 9, clock_.Now()));  // same message, not adjacent

  auto b1 = s.TakeBatch(site, Lane::kFresh, 100);  // capped by the site's 4
  ASSERT_EQ(b1.size(), 4u);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(b1[i].message, MessageId(1));
    EXPECT_EQ(b1[i].index, i);
    EXPECT_EQ(b1[i].site, site);
  }
  auto b2 = s.TakeBatch(site, Lane::kFresh, 100);
  ASSERT_EQ(b2.size(), 2u);  // the rest of message 1's run, not message 2
  EXPECT_EQ(b2[1].index, 5u);
  auto b3 = s.TakeBatch(site, Lane::kFresh, 1);
  ASSERT_EQ(b3.size(), 1u);
  EXPECT_EQ(b3[0].message, MessageId(2));
  auto b4 = s.TakeBatch(site, Lane::kFresh, 100);
  ASSERT_EQ(b4.size(), 1u);
  EXPECT_EQ(b4[0].index, 9u);
  EXPECT_TRUE(s.TakeBatch(site, Lane::kFresh, 100).empty());
  EXPECT_EQ(s.site(site).in_flight(), 8u);
  s.Delivered(site, 8);
  EXPECT_EQ(s.site(site).in_flight(), 0u);
  EXPECT_EQ(s.site(site).counters().delivered, 8u);
}

TEST_F(SchedulerTest, RequeueKeepsOrderAndCountsNoAttempt) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20));
  for (uint32_t i = 0; i < 3; ++i) s.EnqueueFresh(site, Rcpt(1, i, clock_.Now()));
  s.EnqueueFresh(site, Rcpt(2, 0, clock_.Now()));
  auto batch = s.TakeBatch(site, Lane::kFresh, 50);
  ASSERT_EQ(batch.size(), 3u);
  s.TakeActivatedSites();
  s.Requeue(site, batch, Lane::kFresh);  // connection lost before MAIL FROM
  EXPECT_EQ(s.TakeActivatedSites(), std::vector<SiteId>{site});
  auto again = s.TakeBatch(site, Lane::kFresh, 50);
  EXPECT_EQ(again, batch);
  EXPECT_EQ(again[0].attempts, 0u);
  // Single requeue goes to the head too.
  s.Requeue(site, again[2], Lane::kFresh);
  auto one = s.TakeBatch(site, Lane::kFresh, 50);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].index, 2u);
  EXPECT_EQ(s.site(site).counters().requeued, 4u);
}

TEST_F(SchedulerTest, DeferSchedulesARetryThatComesBackAfterTheBackoff) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20));
  s.EnqueueFresh(site, Rcpt(1, 0, clock_.Now()));
  auto batch = s.TakeBatch(site, Lane::kFresh, 50);
  const DeferResult d = s.Defer(site, batch[0], clock_.Now());
  ASSERT_EQ(d.kind, DeferResult::Kind::kScheduled);
  EXPECT_EQ(d.recipient.attempts, 1u);
  EXPECT_GE(d.next_attempt, clock_.Now() + minutes(4));
  EXPECT_LE(d.next_attempt, clock_.Now() + minutes(6));
  EXPECT_EQ(s.Stats(site).waiting, 1u);

  clock_.Set(d.next_attempt - seconds(1));
  EXPECT_EQ(s.Tick(clock_.Now()), 0u);
  EXPECT_EQ(s.Stats(site).retry, 0u);
  EXPECT_LE(*s.NextWakeup(), d.next_attempt + seconds(1));
  clock_.Set(d.next_attempt + seconds(1));
  EXPECT_EQ(s.Tick(clock_.Now()), 1u);
  EXPECT_EQ(s.Stats(site).retry, 1u);
  EXPECT_EQ(s.Stats(site).waiting, 0u);
  EXPECT_EQ(s.ConnectionWanted(site, true), Lane::kRetry);
  auto retry = s.TakeBatch(site, Lane::kRetry, 50);
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_EQ(retry[0].attempts, 1u);
  EXPECT_FALSE(s.NextWakeup());
}

TEST_F(SchedulerTest, DeferPastMaxAgeExpires) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20));
  s.EnqueueFresh(site, Rcpt(1, 0, clock_.Now() - days(3) + minutes(1)));
  auto batch = s.TakeBatch(site, Lane::kFresh, 50);
  const DeferResult d = s.Defer(site, batch[0], clock_.Now());
  EXPECT_EQ(d.kind, DeferResult::Kind::kExpired);
  EXPECT_EQ(d.recipient.attempts, 1u);
  EXPECT_EQ(s.Stats(site).waiting, 0u);
  EXPECT_EQ(s.Stats(site).counters.expired, 1u);
  EXPECT_FALSE(s.NextWakeup());
}

TEST_F(SchedulerTest, RecipientsOfOneMessageDeferredTogetherRetryInOneTransaction) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20));
  for (uint64_t m = 1; m <= 20; ++m) {
    for (uint32_t i = 0; i < 5; ++i) s.EnqueueFresh(site, Rcpt(m, i, clock_.Now()));
  }
  for (int t = 0; t < 20; ++t) {
    for (const auto& r : s.TakeBatch(site, Lane::kFresh, 50)) s.Defer(site, r, clock_.Now());
  }
  s.Tick(clock_.Now() + hours(1));
  EXPECT_EQ(s.Stats(site).retry, 100u);
  EXPECT_EQ(s.site(site).lane(Lane::kRetry).runs(), 20u);  // one per message
  for (int t = 0; t < 20; ++t) EXPECT_EQ(s.TakeBatch(site, Lane::kRetry, 50).size(), 5u);
}

TEST_F(SchedulerTest, DueRetriesAreReactivatedAtTheConfiguredRateOnly) {
  Scheduler s(Options(/*rate=*/1000), clock_.Now());
  const SiteId a = s.GetOrCreateSite("a", Limits(20));
  const SiteId b = s.GetOrCreateSite("b", Limits(20));
  const TimePoint due = clock_.Now() + minutes(1);
  for (uint64_t m = 0; m < 1'000'000; ++m) {
    s.EnqueueRetry(m % 2 ? a : b, Rcpt(m, 0, clock_.Now()), due);
  }
  EXPECT_EQ(s.NextWakeup(), due);
  clock_.Set(due);
  EXPECT_EQ(s.Tick(clock_.Now()), 1000u);
  EXPECT_EQ(s.Tick(clock_.Now()), 0u);  // bucket empty: no burst on repeated ticks
  // Held back by pacing: the next token comes in a millisecond.
  EXPECT_EQ(s.NextWakeup(), clock_.Now() + milliseconds(1));
  clock_.Advance(milliseconds(500));
  EXPECT_EQ(s.Tick(clock_.Now()), 500u);
  size_t total = 1500;
  for (int second = 0; second < 10; ++second) {
    clock_.Advance(seconds(1));
    const size_t moved = s.Tick(clock_.Now());
    EXPECT_EQ(moved, 1000u);
    total += moved;
  }
  // A long pause does not save up a burst larger than one second's worth.
  clock_.Advance(minutes(10));
  EXPECT_EQ(s.Tick(clock_.Now()), 1000u);
  total += 1000;
  const SchedulerTotals t = s.Totals();
  EXPECT_EQ(t.retry, total);
  EXPECT_EQ(t.waiting, 1'000'000u - total);
  EXPECT_EQ(s.Stats(a).retry + s.Stats(b).retry, total);
}

TEST_F(SchedulerTest, WorkForMovesIdleConnectionsBetweenLanesWithinBudgets) {
  Scheduler s(Options(0), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(4, 0.25));  // retry cap 1
  s.EnqueueFresh(site, Rcpt(1, 0, clock_.Now()));
  s.EnqueueFresh(site, Rcpt(2, 0, clock_.Now()));
  EXPECT_EQ(OpenAll(s, site), std::make_pair(2, 0));
  s.Delivered(site, static_cast<uint32_t>(s.TakeBatch(site, Lane::kFresh, 50).size()));
  s.Delivered(site, static_cast<uint32_t>(s.TakeBatch(site, Lane::kFresh, 50).size()));
  FillRetryLane(s, site, 100, 10);
  // The first idle fresh connection may serve retries (cap 1), the second not.
  EXPECT_EQ(s.WorkFor(site, Lane::kFresh), Lane::kRetry);
  EXPECT_EQ(s.WorkFor(site, Lane::kFresh), std::nullopt);
  EXPECT_EQ(s.site(site).connections(Lane::kRetry), 1u);
  EXPECT_EQ(s.site(site).connections(Lane::kFresh), 1u);
  // Fresh work arrives: the fresh connection takes it; the retry connection
  // stays on retries (the last one is kept while retries wait).
  s.EnqueueFresh(site, Rcpt(3, 0, clock_.Now()));
  s.EnqueueFresh(site, Rcpt(4, 0, clock_.Now()));
  EXPECT_EQ(s.WorkFor(site, Lane::kRetry), Lane::kRetry);
  EXPECT_EQ(s.WorkFor(site, Lane::kFresh), Lane::kFresh);
  // Retry lane drained: the retry connection turns fresh.
  while (!s.site(site).lane(Lane::kRetry).empty()) {
    s.Delivered(site, static_cast<uint32_t>(s.TakeBatch(site, Lane::kRetry, 50).size()));
  }
  EXPECT_EQ(s.WorkFor(site, Lane::kRetry), Lane::kFresh);
  EXPECT_EQ(s.site(site).connections(Lane::kFresh), 2u);
  s.ConnectionClosed(site, Lane::kFresh);
  s.ConnectionClosed(site, Lane::kFresh);
  EXPECT_EQ(s.Totals().connections_fresh, 0u);
}

TEST_F(SchedulerTest, DeferLaneCountsAnAttemptForEveryWaitingRecipient) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("dead.example", Limits(20));
  for (uint64_t m = 1; m <= 5; ++m) s.EnqueueFresh(site, Rcpt(m, 0, clock_.Now()));
  auto results = s.DeferLane(site, Lane::kFresh, clock_.Now(), 3);
  ASSERT_EQ(results.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(results[i].kind, DeferResult::Kind::kScheduled);
    EXPECT_EQ(results[i].recipient.message, MessageId(i + 1));
    EXPECT_EQ(results[i].recipient.attempts, 1u);
  }
  const SiteStats st = s.Stats(site);
  EXPECT_EQ(st.fresh, 2u);
  EXPECT_EQ(st.waiting, 3u);
  EXPECT_EQ(st.in_flight, 0u);
}

TEST_F(SchedulerTest, ActivatedSitesAreReportedOnceEach) {
  Scheduler s(Options(), clock_.Now());
  const SiteId a = s.GetOrCreateSite("a", Limits(20));
  const SiteId b = s.GetOrCreateSite("b", Limits(20));
  s.EnqueueFresh(b, Rcpt(1, 0, clock_.Now()));
  s.EnqueueFresh(a, Rcpt(2, 0, clock_.Now()));
  s.EnqueueFresh(b, Rcpt(3, 0, clock_.Now()));
  EXPECT_EQ(s.TakeActivatedSites(), (std::vector<SiteId>{b, a}));
  EXPECT_TRUE(s.TakeActivatedSites().empty());
  s.EnqueueRetry(a, Rcpt(4, 0, clock_.Now()), clock_.Now() + seconds(10));
  EXPECT_TRUE(s.TakeActivatedSites().empty());  // waiting in the wheel is not work yet
  s.Tick(clock_.Now() + seconds(10));
  EXPECT_EQ(s.TakeActivatedSites(), std::vector<SiteId>{a});
}

TEST_F(SchedulerTest, StatsShowLanesConnectionsAndLastReply) {
  Scheduler s(Options(0), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20));
  for (uint64_t m = 1; m <= 3; ++m) s.EnqueueFresh(site, Rcpt(m, 0, clock_.Now()));
  s.EnqueueRetry(site, Rcpt(9, 0, clock_.Now()), clock_.Now() + hours(1));
  s.ConnectionOpened(site, Lane::kFresh);
  auto batch = s.TakeBatch(site, Lane::kFresh, 50);
  s.Bounced(site);
  s.SetLastReply(site, "550 5.1.1 user unknown");
  const SiteStats st = s.Stats(site);
  EXPECT_EQ(st.key, "gmail");
  EXPECT_EQ(st.fresh, 2u);
  EXPECT_EQ(st.retry, 0u);
  EXPECT_EQ(st.waiting, 1u);
  EXPECT_EQ(st.connections_fresh, 1u);
  EXPECT_EQ(st.counters.bounced, 1u);
  EXPECT_EQ(st.last_reply, "550 5.1.1 user unknown");
  const SchedulerTotals t = s.Totals();
  EXPECT_EQ(t.sites, 1u);
  EXPECT_EQ(t.fresh, 2u);
  EXPECT_EQ(t.waiting, 1u);
  EXPECT_EQ(t.in_flight, 0u);
}

}  // namespace
}  // namespace hikyaku::queue

namespace hikyaku::queue {
namespace {

// A dispatcher-shaped random simulation: connections open and close, batches
// are delivered, bounced, deferred or requeued, time moves on. Whatever
// happens, no recipient is lost or duplicated, the retry lane never holds more
// than its share of connections, and the site limit holds.
TEST(SchedulerSimulationTest, RecipientsAreConservedAndBudgetsHold) {
  std::mt19937_64 rng(2024);
  ManualClock clock;
  SchedulerOptions o;
  o.retry.initial = std::chrono::seconds(30);
  o.retry.max = std::chrono::minutes(10);
  o.retry.max_age = std::chrono::minutes(5);  // short, so some recipients expire
  o.retry.reactivation_rate = 50;
  o.max_connections = 30;
  Scheduler s(o, clock.Now());
  std::vector<SiteId> sites;
  for (int i = 0; i < 4; ++i) {
    SiteLimits l;
    l.max_connections = 12;
    l.retry_share = 0.25;
    l.max_recipients_per_transaction = 5;
    sites.push_back(s.GetOrCreateSite("site" + std::to_string(i), l));
  }
  struct Connection {
    SiteId site;
    Lane lane;
  };
  std::vector<Connection> connections;
  uint64_t enqueued = 0, delivered = 0, bounced = 0, expired = 0, next_message = 1;
  for (int step = 0; step < 20000; ++step) {
    clock.Advance(std::chrono::milliseconds(rng() % 2000));
    if (rng() % 3 == 0) {
      const SiteId site = sites[rng() % sites.size()];
      const uint32_t rcpts = 1 + static_cast<uint32_t>(rng() % 8);
      for (uint32_t i = 0; i < rcpts; ++i) {
        QueuedRecipient r;
        r.message = MessageId(next_message);
        r.index = i;
        r.received_at = clock.Now();
        s.EnqueueFresh(site, r);
      }
      ++next_message;
      enqueued += rcpts;
    }
    s.Tick(clock.Now());
    for (SiteId site : s.TakeActivatedSites()) {
      const bool reachable = rng() % 10 != 0;
      while (auto lane = s.ConnectionWanted(site, reachable)) {
        s.ConnectionOpened(site, *lane);
        connections.push_back({site, *lane});
      }
    }
    if (connections.empty()) continue;
    const size_t c = rng() % connections.size();
    Connection& conn = connections[c];
    auto lane = s.WorkFor(conn.site, conn.lane);
    if (!lane || rng() % 20 == 0) {
      const SiteId site = conn.site;
      s.ConnectionClosed(site, lane.value_or(conn.lane));
      connections.erase(connections.begin() + static_cast<ptrdiff_t>(c));
      while (auto next = s.ConnectionWanted(site, true)) {  // a closed slot: look again
        s.ConnectionOpened(site, *next);
        connections.push_back({site, *next});
      }
      continue;
    }
    conn.lane = *lane;
    auto batch = s.TakeBatch(conn.site, conn.lane, 100);
    ASSERT_FALSE(batch.empty());
    for (const auto& r : batch) ASSERT_EQ(r.message, batch[0].message);
    switch (rng() % 4) {
      case 0:
        s.Delivered(conn.site, static_cast<uint32_t>(batch.size()));
        delivered += batch.size();
        break;
      case 1:
        s.Bounced(conn.site, static_cast<uint32_t>(batch.size()));
        bounced += batch.size();
        break;
      case 2:
        for (const auto& r : batch) {
          if (s.Defer(conn.site, r, clock.Now()).kind == DeferResult::Kind::kExpired) ++expired;
        }
        break;
      default:
        s.Requeue(conn.site, batch, conn.lane);
        break;
    }
    for (SiteId site : sites) {
      const Site& st = s.site(site);
      ASSERT_LE(st.connections(Lane::kRetry), st.limits().RetryConnectionCap());
      ASSERT_LE(st.connections(), st.limits().max_connections);
    }
    const SchedulerTotals t = s.Totals();
    ASSERT_LE(t.connections_fresh + t.connections_retry, o.max_connections);
    ASSERT_EQ(t.fresh + t.retry + t.waiting + t.in_flight + delivered + bounced + expired,
              enqueued)
        << "step " << step;
  }
  EXPECT_GT(delivered, 1000u);
  EXPECT_GT(expired, 0u);
}

}  // namespace
}  // namespace hikyaku::queue
