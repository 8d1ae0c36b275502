// Measures what a queued recipient costs in memory, heap included, so the
// figures in README.md are facts about this code, not estimates.
#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <cstdio>

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
