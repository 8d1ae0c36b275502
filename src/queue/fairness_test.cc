// Fairness inside a site lane: flows (tenant, priority), weighted round
// robin, eligibility, paused flows and sites, operator drains. Manual clock.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "queue/scheduler.h"

namespace hikyaku::queue {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

SiteLimits Limits(uint32_t max_connections = 20, uint32_t max_rcpt = 50) {
  SiteLimits l;
  l.max_connections = max_connections;
  l.retry_share = 0.25;
  l.max_recipients_per_transaction = max_rcpt;
  return l;
}

class FairnessTest : public ::testing::Test {
 protected:
  static SchedulerOptions Options() {
    SchedulerOptions o;
    o.retry.initial = minutes(5);
    o.retry.max = std::chrono::hours(4);
    o.retry.max_age = std::chrono::days(3);
    o.retry.jitter = 0.2;
    o.retry.reactivation_rate = 0;
    o.seed = 1;
    return o;
  }

  QueuedRecipient Rcpt(uint64_t message, uint32_t index, FlowId flow) {
    QueuedRecipient r;
    r.message = MessageId(message);
    r.index = index;
    r.received_at = clock_.Now();
    r.flow = flow;
    return r;
  }

  // `messages` messages of `per_message` recipients each, ids from `first`.
  void Enqueue(Scheduler& s, SiteId site, FlowId flow, uint64_t first, int messages,
               int per_message = 1) {
    for (int m = 0; m < messages; ++m) {
      for (int i = 0; i < per_message; ++i) {
        s.EnqueueFresh(site, Rcpt(first + m, static_cast<uint32_t>(i), flow));
      }
    }
  }

  ManualClock clock_;
};

// The number of batches taken until every recipient of `flow` was taken.
int BatchesUntilDone(Scheduler& s, SiteId site, FlowId flow, size_t count) {
  size_t taken = 0;
  for (int batches = 1; batches <= 100'000; ++batches) {
    auto batch = s.TakeBatch(site, Lane::kFresh, 50);
    if (batch.empty()) return -1;
    s.Delivered(site, static_cast<uint32_t>(batch.size()));
    for (const auto& r : batch) taken += r.flow == flow ? 1 : 0;
    if (taken == count) return batches;
  }
  return -1;
}

TEST_F(FairnessTest, NewsletterDoesNotBuryAnotherTenantsPasswordResets) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits());
  const FlowId news = s.flows().Intern("newsletter-co", Priority::kNormal);
  const FlowId bank = s.flows().Intern("bank", Priority::kNormal);
  // Worst case for the resets: a million single-recipient messages, so each
  // newsletter batch is as cheap as a reset batch.
  Enqueue(s, site, news, 1, 1'000'000);
  Enqueue(s, site, bank, 2'000'000, 50);
  const int batches = BatchesUntilDone(s, site, bank, 50);
  ASSERT_GT(batches, 0);
  EXPECT_LE(batches, 100);  // alternating: the 50th reset is batch 100 at the latest
  EXPECT_EQ(s.Stats(site).fresh, 1'000'000u - static_cast<size_t>(batches - 50));
}

TEST_F(FairnessTest, NewsletterOfBigMessagesCountsRecipientsNotBatches) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits());
  const FlowId news = s.flows().Intern("newsletter-co", Priority::kNormal);
  const FlowId bank = s.flows().Intern("bank", Priority::kNormal);
  Enqueue(s, site, news, 1, 20'000, 50);  // 1 000 000 recipients, 50 per batch
  Enqueue(s, site, bank, 2'000'000, 50);
  // One newsletter batch of 50 recipients buys the bank 50 batches of one.
  EXPECT_LE(BatchesUntilDone(s, site, bank, 50), 51);
}

TEST_F(FairnessTest, HighPriorityFlowIsServedStrictlyFirst) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits());
  const FlowId news = s.flows().Intern("newsletter-co", Priority::kNormal);
  const FlowId urgent = s.flows().Intern("bank", Priority::kHigh);
  Enqueue(s, site, news, 1, 200'000);
  Enqueue(s, site, urgent, 2'000'000, 50);
  EXPECT_EQ(BatchesUntilDone(s, site, urgent, 50), 50);
  // Then the normal flow goes on.
  auto batch = s.TakeBatch(site, Lane::kFresh, 50);
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].flow, news);
}

TEST_F(FairnessTest, WeightsShareRecipientsInProportion) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits());
  s.flows().SetTenantWeight("big", 2);
  const FlowId big = s.flows().Intern("big", Priority::kNormal);
  const FlowId small = s.flows().Intern("small", Priority::kNormal);
  // Different message sizes: the share is counted in recipients.
  Enqueue(s, site, big, 1, 2'000, 5);
  Enqueue(s, site, small, 100'000, 10'000, 1);
  std::map<FlowId, size_t> got;
  size_t total = 0;
  while (total < 3'000) {
    auto batch = s.TakeBatch(site, Lane::kFresh, 50);
    ASSERT_FALSE(batch.empty());
    for (const auto& r : batch) {
      ASSERT_EQ(r.flow, batch[0].flow);
      ASSERT_EQ(r.message, batch[0].message);  // still one message per batch
    }
    got[batch[0].flow] += batch.size();
    total += batch.size();
    s.Delivered(site, static_cast<uint32_t>(batch.size()));
  }
  EXPECT_NEAR(static_cast<double>(got[big]), 2'000.0, 6.0);
  EXPECT_NEAR(static_cast<double>(got[small]), 1'000.0, 6.0);
}

TEST_F(FairnessTest, AFlowThatWasIdleDoesNotCashInItsIdleTime) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits());
  const FlowId a = s.flows().Intern("a", Priority::kNormal);
  const FlowId b = s.flows().Intern("b", Priority::kNormal);
  Enqueue(s, site, a, 1, 10'000);
  for (int i = 0; i < 5'000; ++i) s.Delivered(site, static_cast<uint32_t>(s.TakeBatch(site, Lane::kFresh, 50).size()));
  // b arrives after a got 5 000: b must not now get 5 000 in a row.
  Enqueue(s, site, b, 100'000, 1'000);
  std::map<FlowId, int> got;
  for (int i = 0; i < 100; ++i) {
    auto batch = s.TakeBatch(site, Lane::kFresh, 50);
    ++got[batch.at(0).flow];
    s.Delivered(site, 1);
  }
  EXPECT_EQ(got[a], 50);
  EXPECT_EQ(got[b], 50);
}

TEST_F(FairnessTest, EligibilityFiltersTakeWorkAndConnections) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20));
  const FlowId a = s.flows().Intern("a", Priority::kNormal);
  const FlowId b = s.flows().Intern("b", Priority::kHigh);
  Enqueue(s, site, a, 1, 10);
  Enqueue(s, site, b, 100, 3);
  const Scheduler::FlowFilter only_a = [a](FlowId f) { return f == a; };
  // A connection that may serve only a never gets b, though b is urgent.
  for (int i = 0; i < 10; ++i) {
    auto batch = s.TakeBatch(site, Lane::kFresh, 50, only_a);
    ASSERT_EQ(batch.size(), 1u);
    EXPECT_EQ(batch[0].flow, a);
  }
  EXPECT_TRUE(s.TakeBatch(site, Lane::kFresh, 50, only_a).empty());
  EXPECT_EQ(s.Stats(site).fresh, 3u);
  EXPECT_FALSE(s.ConnectionWanted(site, true, only_a));
  ASSERT_EQ(s.ConnectionWanted(site, true), Lane::kFresh);
  s.ConnectionOpened(site, Lane::kFresh);
  EXPECT_FALSE(s.WorkFor(site, Lane::kFresh, only_a));
  EXPECT_EQ(s.WorkFor(site, Lane::kFresh), Lane::kFresh);
  // An empty std::function accepts every flow.
  EXPECT_EQ(s.TakeBatch(site, Lane::kFresh, 50, Scheduler::FlowFilter{}).size(), 1u);
  s.Delivered(site, 10 + 1);
}

TEST_F(FairnessTest, PausedFlowStaysQueuedHoldsNoConnectionAndIsNotTaken) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20));
  const FlowId suspended = s.flows().Intern("spammy", Priority::kHigh);
  const FlowId other = s.flows().Intern("ok", Priority::kNormal);
  Enqueue(s, site, suspended, 1, 100);
  s.SetFlowPaused(suspended, true);
  EXPECT_TRUE(s.FlowPaused(suspended));
  EXPECT_FALSE(s.ConnectionWanted(site, true));
  EXPECT_TRUE(s.TakeBatch(site, Lane::kFresh, 50).empty());
  EXPECT_EQ(s.Stats(site).fresh, 100u);
  // Another tenant's single message gets exactly one connection, and that
  // connection, once done, has nothing left to do.
  Enqueue(s, site, other, 1'000, 1);
  ASSERT_EQ(s.ConnectionWanted(site, true), Lane::kFresh);
  s.ConnectionOpened(site, Lane::kFresh);
  EXPECT_FALSE(s.ConnectionWanted(site, true));
  auto batch = s.TakeBatch(site, Lane::kFresh, 50);
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].flow, other);
  s.Delivered(site);
  EXPECT_FALSE(s.WorkFor(site, Lane::kFresh));
  s.ConnectionClosed(site, Lane::kFresh);
  // Resuming brings the site back to the dispatcher's attention.
  s.TakeActivatedSites();
  s.SetFlowPaused(suspended, false);
  EXPECT_EQ(s.TakeActivatedSites(), std::vector<SiteId>{site});
  EXPECT_EQ(s.ConnectionWanted(site, true), Lane::kFresh);
  EXPECT_EQ(s.TakeBatch(site, Lane::kFresh, 50).size(), 1u);
  s.Delivered(site);
}

TEST_F(FairnessTest, PausedFlowInTheRetryWheelComesDueButIsNotTaken) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(20));
  const FlowId f = s.flows().Intern("t", Priority::kNormal);
  s.SetFlowPaused(f, true);
  s.EnqueueRetry(site, Rcpt(1, 0, f), clock_.Now() + seconds(10));
  clock_.Advance(seconds(11));
  EXPECT_EQ(s.Tick(clock_.Now()), 1u);
  EXPECT_EQ(s.Stats(site).retry, 1u);
  EXPECT_FALSE(s.ConnectionWanted(site, true));
  EXPECT_TRUE(s.TakeBatch(site, Lane::kRetry, 50).empty());
}

TEST_F(FairnessTest, PausedSiteHoldsNoConnectionAndKeepsItsRecipients) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("docomo", Limits(3));
  const SiteId other = s.GetOrCreateSite("gmail", Limits(3));
  Enqueue(s, site, kDefaultFlow, 1, 10);
  Enqueue(s, other, kDefaultFlow, 100, 10);
  ASSERT_EQ(s.ConnectionWanted(site, true), Lane::kFresh);
  s.ConnectionOpened(site, Lane::kFresh);
  s.SetSitePaused(site, true);
  EXPECT_TRUE(s.site(site).paused());
  EXPECT_FALSE(s.ConnectionWanted(site, true));
  EXPECT_FALSE(s.WorkFor(site, Lane::kFresh));  // the open one QUITs
  EXPECT_TRUE(s.TakeBatch(site, Lane::kFresh, 50).empty());
  s.ConnectionClosed(site, Lane::kFresh);
  EXPECT_EQ(s.Stats(site).fresh, 10u);
  EXPECT_EQ(s.ConnectionWanted(other, true), Lane::kFresh);  // others unaffected
  s.TakeActivatedSites();
  s.SetSitePaused(site, false);
  EXPECT_EQ(s.TakeActivatedSites(), std::vector<SiteId>{site});
  EXPECT_EQ(s.ConnectionWanted(site, true), Lane::kFresh);
}

TEST_F(FairnessTest, DrainReturnsExactlyTheMatchingRecipients) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits());
  const FlowId bad = s.flows().Intern("bad", Priority::kNormal);
  const FlowId bad_high = s.flows().Intern("bad", Priority::kHigh);
  const FlowId good = s.flows().Intern("good", Priority::kNormal);
  Enqueue(s, site, bad, 1, 30, 3);
  Enqueue(s, site, good, 1'000, 20, 2);
  Enqueue(s, site, bad_high, 2'000, 5);
  // Some of each in the retry lane too.
  for (uint64_t m = 0; m < 7; ++m) {
    s.EnqueueRetry(site, Rcpt(5'000 + m, 0, m % 2 ? bad : good), clock_.Now());
  }
  ASSERT_EQ(s.Tick(clock_.Now()), 7u);
  const std::string_view tenant = "bad";
  auto drained = s.Drain(site, [&](FlowId f) { return s.flows().tenant(f) == tenant; });
  EXPECT_EQ(drained.size(), 90u + 5u + 3u);
  for (const auto& r : drained) EXPECT_EQ(s.flows().tenant(r.flow), "bad");
  std::set<std::pair<uint64_t, uint32_t>> unique;
  for (const auto& r : drained) unique.insert({r.message.value(), r.index});
  EXPECT_EQ(unique.size(), drained.size());
  const SiteStats st = s.Stats(site);
  EXPECT_EQ(st.fresh, 40u);
  EXPECT_EQ(st.retry, 4u);
  EXPECT_EQ(st.in_flight, drained.size());
  EXPECT_EQ(st.counters.drained, drained.size());
  EXPECT_EQ(s.site(site).lane(Lane::kFresh).runs(), 20u);
  // The rest is untouched, in order.
  for (uint64_t m = 1'000; m < 1'020; ++m) {
    auto batch = s.TakeBatch(site, Lane::kFresh, 50);
    ASSERT_EQ(batch.size(), 2u);
    EXPECT_EQ(batch[0].message, MessageId(m));
    EXPECT_EQ(batch[0].flow, good);
  }
  // Each drained recipient takes one outcome, like a taken one.
  s.Bounced(site, static_cast<uint32_t>(drained.size()));
  s.Delivered(site, 40);
  EXPECT_EQ(s.Stats(site).in_flight, 0u);
}

TEST_F(FairnessTest, DrainWaitingTakesMatchingRecipientsOutOfTheWheel) {
  Scheduler s(Options(), clock_.Now());
  const SiteId x = s.GetOrCreateSite("x", Limits());
  const SiteId y = s.GetOrCreateSite("y", Limits());
  const FlowId bad = s.flows().Intern("bad", Priority::kNormal);
  const FlowId good = s.flows().Intern("good", Priority::kNormal);
  std::mt19937 rng(7);
  size_t expect_drained = 0;
  for (uint64_t m = 0; m < 2'000; ++m) {
    const SiteId site = m % 3 == 0 ? y : x;
    const FlowId flow = m % 2 == 0 ? bad : good;
    // Due from now (ready) up to far beyond level 1 (overflow).
    const auto due = clock_.Now() + seconds(static_cast<int64_t>(rng() % 40'000'000));
    s.EnqueueRetry(site, Rcpt(m, 0, flow), due);
    if (site == x && flow == bad) ++expect_drained;
  }
  auto drained = s.DrainWaiting(x, [&](FlowId f) { return f == bad; });
  EXPECT_EQ(drained.size(), expect_drained);
  for (const auto& r : drained) {
    EXPECT_EQ(r.site, x);
    EXPECT_EQ(r.flow, bad);
  }
  EXPECT_EQ(s.Stats(x).in_flight, expect_drained);
  EXPECT_EQ(s.Stats(x).waiting + s.Stats(y).waiting, 2'000u - expect_drained);
  s.Bounced(x, static_cast<uint32_t>(drained.size()));
  // All the others still come due; none of the drained ones does.
  clock_.Advance(std::chrono::days(500));
  EXPECT_EQ(s.Tick(clock_.Now()), 2'000u - expect_drained);
  for (SiteId site : {x, y}) {
    while (true) {
      auto batch = s.TakeBatch(site, Lane::kRetry, 50);
      if (batch.empty()) break;
      EXPECT_FALSE(site == x && batch[0].flow == bad);
      s.Delivered(site, static_cast<uint32_t>(batch.size()));
    }
  }
  // Across all sites in one scan.
  s.EnqueueRetry(y, Rcpt(9'000, 0, bad), clock_.Now() + minutes(5));
  s.EnqueueRetry(x, Rcpt(9'001, 0, good), clock_.Now() + minutes(5));
  auto all_bad = s.DrainWaiting([&](SiteId, FlowId f) { return f == bad; });
  ASSERT_EQ(all_bad.size(), 1u);
  EXPECT_EQ(all_bad[0].message, MessageId(9'000));
  EXPECT_EQ(s.Totals().waiting, 1u);
  s.Bounced(y);
}

// A model of the lanes (one deque per flow) against random operations: the
// run counts (what ConnectionWanted reads) stay the sum over flows.
TEST_F(FairnessTest, RunsStayCorrectUnderMixedOperations) {
  Scheduler s(Options(), clock_.Now());
  const SiteId site = s.GetOrCreateSite("gmail", Limits(1'000, 7));
  std::vector<FlowId> flows = {kDefaultFlow};
  for (const char* t : {"a", "b", "c"}) {
    flows.push_back(s.flows().Intern(t, Priority::kNormal));
    flows.push_back(s.flows().Intern(t, Priority::kHigh));
  }
  s.flows().SetTenantWeight("b", 3);
  std::map<FlowId, std::deque<QueuedRecipient>> model;
  auto model_runs = [&](const Scheduler::FlowFilter& usable) {
    size_t runs = 0;
    for (const auto& [flow, q] : model) {
      if (!usable(flow)) continue;
      for (size_t i = 0; i < q.size(); ++i) {
        if (i == 0 || q[i].message != q[i - 1].message) ++runs;
      }
    }
    return runs;
  };
  std::mt19937 rng(11);
  uint64_t next_message = 1;
  std::vector<std::vector<QueuedRecipient>> taken;
  size_t in_flight = 0;
  for (int step = 0; step < 20'000; ++step) {
    const uint32_t op = rng() % 10;
    if (op < 4) {
      const FlowId f = flows[rng() % flows.size()];
      const int n = 1 + static_cast<int>(rng() % 12);
      const uint64_t m = next_message++;
      for (int i = 0; i < n; ++i) {
        s.EnqueueFresh(site, Rcpt(m, static_cast<uint32_t>(i), f));
        model[f].push_back(Rcpt(m, static_cast<uint32_t>(i), f));
      }
    } else if (op < 7) {
      auto batch = s.TakeBatch(site, Lane::kFresh, 1 + rng() % 10);
      if (!batch.empty()) {
        auto& q = model[batch[0].flow];
        for (const auto& r : batch) {
          ASSERT_FALSE(q.empty());
          ASSERT_EQ(r, q.front());
          q.pop_front();
        }
        in_flight += batch.size();
        taken.push_back(std::move(batch));
      }
    } else if (op < 9 && !taken.empty()) {
      const size_t pick = rng() % taken.size();
      auto batch = std::move(taken[pick]);
      taken.erase(taken.begin() + static_cast<std::ptrdiff_t>(pick));
      in_flight -= batch.size();
      if (rng() % 2) {
        s.Requeue(site, batch, Lane::kFresh);
        auto& q = model[batch[0].flow];
        for (auto it = batch.rbegin(); it != batch.rend(); ++it) q.push_front(*it);
      } else {
        s.Delivered(site, static_cast<uint32_t>(batch.size()));
      }
    } else if (step % 50 == 9) {
      const FlowId f = flows[rng() % flows.size()];
      auto drained = s.Drain(site, [f](FlowId g) { return g == f; });
      ASSERT_EQ(drained.size(), model[f].size());
      model[f].clear();
      s.Bounced(site, static_cast<uint32_t>(drained.size()));
    } else {
      const FlowId f = flows[rng() % flows.size()];
      s.SetFlowPaused(f, !s.FlowPaused(f));
    }
    const auto& lane = s.site(site).lane(Lane::kFresh);
    ASSERT_EQ(lane.runs(), model_runs([](FlowId) { return true; })) << "step " << step;
    size_t size = 0;
    for (const auto& [f, q] : model) size += q.size();
    ASSERT_EQ(lane.size(), size);
    ASSERT_EQ(s.Stats(site).in_flight, in_flight);
    // With pauses: ConnectionWanted wants a connection iff an unpaused run waits.
    const size_t unpaused = model_runs([&](FlowId f) { return !s.FlowPaused(f); });
    ASSERT_EQ(s.ConnectionWanted(site, true).has_value(), unpaused > 0) << "step " << step;
  }
}

}  // namespace
}  // namespace hikyaku::queue
