// Measures what a queued recipient costs in memory, heap included, so the
// figures in README.md are facts about this code, not estimates.
#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "queue/scheduler.h"

namespace hikyaku::queue {
namespace {

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
size_t HeapInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;  // small blocks + mmap'ed large blocks
}
constexpr bool kCanMeasure = true;
#else
size_t HeapInUse() { return 0; }
constexpr bool kCanMeasure = false;
#endif

constexpr size_t kRecipients = 1'000'000;

SchedulerOptions Options() {
  SchedulerOptions o;
  o.retry.reactivation_rate = 0;
  return o;
}

QueuedRecipient Rcpt(uint64_t m) {
  QueuedRecipient r;
  r.message = MessageId(m);
  return r;
}

TEST(MemoryTest, MillionRecipientsInALane) {
  if (!kCanMeasure) GTEST_SKIP() << "needs glibc mallinfo2";
  const TimePoint t0 = FromUnixMillis(1'700'000'000'000);
  Scheduler s(Options(), t0);
  const SiteId site = s.GetOrCreateSite("gmail", SiteLimits{});
  const size_t before = HeapInUse();
  for (uint64_t m = 0; m < kRecipients; ++m) s.EnqueueFresh(site, Rcpt(m));
  const double per = static_cast<double>(HeapInUse() - before) / kRecipients;
  std::printf("lane: %.2f bytes per queued recipient\n", per);
  EXPECT_GE(per, 32.0);
  EXPECT_LE(per, 36.0);
}

TEST(MemoryTest, MillionRecipientsWaitingInTheRetryWheel) {
  if (!kCanMeasure) GTEST_SKIP() << "needs glibc mallinfo2";
  const TimePoint t0 = FromUnixMillis(1'700'000'000'000);
  Scheduler s(Options(), t0);
  const SiteId site = s.GetOrCreateSite("gmail", SiteLimits{});
  const size_t before = HeapInUse();
  for (uint64_t m = 0; m < kRecipients; ++m) {
    s.EnqueueRetry(site, Rcpt(m), t0 + std::chrono::seconds(static_cast<int64_t>(m % 14400)));
  }
  const double per = static_cast<double>(HeapInUse() - before) / kRecipients;
  std::printf("wheel: %.2f bytes per waiting recipient\n", per);
  EXPECT_GE(per, 48.0);
  EXPECT_LE(per, 52.0);
}

// A million recipients spread over 1 000 tenants in one lane: one
// RecipientQueue (and deque) per flow, so a little more than one flow's.
TEST(MemoryTest, MillionRecipientsOfAThousandTenantsInALane) {
  if (!kCanMeasure) GTEST_SKIP() << "needs glibc mallinfo2";
  const TimePoint t0 = FromUnixMillis(1'700'000'000'000);
  Scheduler s(Options(), t0);
  const SiteId site = s.GetOrCreateSite("gmail", SiteLimits{});
  constexpr int kTenants = 1'000;
  std::vector<FlowId> flows;
  for (int t = 0; t < kTenants; ++t) {
    flows.push_back(s.flows().Intern("tenant" + std::to_string(t), Priority::kNormal));
  }
  const size_t before = HeapInUse();
  for (uint64_t m = 0; m < kRecipients; ++m) {
    QueuedRecipient r = Rcpt(m);
    r.flow = flows[m % kTenants];
    s.EnqueueFresh(site, r);
  }
  const double per = static_cast<double>(HeapInUse() - before) / kRecipients;
  std::printf("lane, 1000 flows: %.2f bytes per queued recipient\n", per);
  EXPECT_GE(per, 32.0);
  EXPECT_LE(per, 38.0);
}

// What one flow costs a site while it has recipients there, beyond the
// recipients: the flow's entry and its deque's fixed part.
TEST(MemoryTest, ActiveFlowCostsOneSmallQueue) {
  if (!kCanMeasure) GTEST_SKIP() << "needs glibc mallinfo2";
  const TimePoint t0 = FromUnixMillis(1'700'000'000'000);
  Scheduler s(Options(), t0);
  constexpr int kSites = 10'000;
  std::vector<SiteId> sites;
  for (int i = 0; i < kSites; ++i) {
    sites.push_back(s.GetOrCreateSite("mx" + std::to_string(i) + ".example.com", SiteLimits{}));
  }
  const FlowId a = s.flows().Intern("a", Priority::kNormal);
  const FlowId b = s.flows().Intern("b", Priority::kNormal);
  auto one_recipient_per_site = [&](FlowId flow) {
    const size_t before = HeapInUse();
    for (SiteId site : sites) {
      QueuedRecipient r = Rcpt(site.value);
      r.flow = flow;
      s.EnqueueFresh(site, r);
    }
    return static_cast<double>(HeapInUse() - before) / kSites;
  };
  const double first = one_recipient_per_site(a);   // the lane's vector + a's queue
  const double second = one_recipient_per_site(b);  // b's queue (vector grows)
  std::printf("first flow of a site: %.0f bytes, second: %.0f bytes\n", first, second);
  EXPECT_LE(first, 850.0);
  EXPECT_LE(second, 800.0);
  // And an idle flow costs nothing: draining b gives its memory back.
  const size_t before = HeapInUse();
  for (SiteId site : sites) {
    auto drained = s.Drain(site, [b](FlowId f) { return f == b; });
    ASSERT_EQ(drained.size(), 1u);
    s.Bounced(site);
  }
  EXPECT_GE(static_cast<double>(before - HeapInUse()) / kSites, 0.9 * 600.0);
}

TEST(MemoryTest, EmptySiteIsSmall) {
  if (!kCanMeasure) GTEST_SKIP() << "needs glibc mallinfo2";
  const TimePoint t0 = FromUnixMillis(1'700'000'000'000);
  Scheduler s(Options(), t0);
  s.GetOrCreateSite("warm-up", SiteLimits{});
  const size_t before = HeapInUse();
  constexpr int kSites = 10'000;
  for (int i = 0; i < kSites; ++i) {
    s.GetOrCreateSite("mx" + std::to_string(i) + ".example.com", SiteLimits{});
  }
  const double per = static_cast<double>(HeapInUse() - before) / kSites;
  std::printf("site: %.0f bytes per empty site\n", per);
  EXPECT_LE(per, 400.0);
}

}  // namespace
}  // namespace hikyaku::queue
