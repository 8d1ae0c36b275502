#include "queue/timer_wheel.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <vector>

namespace hikyaku::queue {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

const TimePoint kT0 = FromUnixMillis(1'700'000'000'000);  // a whole second

// The fire time the wheel promises: the due time rounded up to a tick.
TimePoint RoundUp(TimePoint due) {
  const int64_t ms = ToUnixMillis(due);
  return FromUnixMillis((ms + 999) / 1000 * 1000);
}

TEST(TimerWheelTest, NeverEarlyAndAtMostOneTickLate) {
  TimerWheel<int> wheel(kT0);
  wheel.Insert(kT0 + milliseconds(1500), 7);
  EXPECT_TRUE(wheel.PopDue(kT0 + milliseconds(1499), 10).empty());
  EXPECT_TRUE(wheel.PopDue(kT0 + milliseconds(1999), 10).empty());
  EXPECT_EQ(wheel.PopDue(kT0 + milliseconds(2000), 10), std::vector<int>{7});
  EXPECT_TRUE(wheel.empty());
}

TEST(TimerWheelTest, PastDueIsReadyAtOnce) {
  TimerWheel<int> wheel(kT0);
  wheel.Insert(kT0 - hours(1), 1);
  EXPECT_EQ(wheel.NextDue(), kT0);
  EXPECT_EQ(wheel.PopDue(kT0, 10), std::vector<int>{1});
}

TEST(TimerWheelTest, ReturnsByDueTickThenInsertionOrderAndHonoursMaxCount) {
  TimerWheel<int> wheel(kT0);
  wheel.Insert(kT0 + seconds(3), 30);
  wheel.Insert(kT0 + seconds(1), 10);
  wheel.Insert(kT0 + seconds(3), 31);
  wheel.Insert(kT0 + seconds(2), 20);
  wheel.Insert(kT0 + seconds(1), 11);
  EXPECT_EQ(wheel.PopDue(kT0 + seconds(10), 3), (std::vector<int>{10, 11, 20}));
  EXPECT_EQ(wheel.ready(), 2u);
  EXPECT_EQ(wheel.PopDue(kT0 + seconds(10), 3), (std::vector<int>{30, 31}));
}

TEST(TimerWheelTest, FarFutureEntriesCascadeAndFireOnTime) {
  TimerWheel<int> wheel(kT0);
  // Level 0 (< 68 min), level 1 (< 194 days) and overflow, inserted out of order.
  const std::vector<TimePoint> dues = {kT0 + days(400) + milliseconds(1),
                                       kT0 + hours(5) + milliseconds(250),
                                       kT0 + minutes(3),
                                       kT0 + days(3),
                                       kT0 + days(200),
                                       kT0 + minutes(68) + seconds(17)};
  for (size_t i = 0; i < dues.size(); ++i) wheel.Insert(dues[i], static_cast<int>(i));
  std::vector<TimePoint> sorted = dues;
  std::sort(sorted.begin(), sorted.end());
  for (TimePoint due : sorted) {
    // The wheel may ask to be woken early (a cascade point), never late.
    auto wake = wheel.NextDue();
    ASSERT_TRUE(wake);
    EXPECT_LE(*wake, RoundUp(due));
    EXPECT_TRUE(wheel.PopDue(RoundUp(due) - milliseconds(1), 10).empty());
    auto got = wheel.PopDue(RoundUp(due), 10);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(dues[static_cast<size_t>(got[0])], due);
  }
  EXPECT_TRUE(wheel.empty());
  EXPECT_FALSE(wheel.NextDue());
}

TEST(TimerWheelTest, NextDueIsExactWithinTheFirstLevel) {
  TimerWheel<int> wheel(kT0);
  wheel.Insert(kT0 + minutes(10) + milliseconds(1), 1);
  wheel.Insert(kT0 + minutes(20), 2);
  EXPECT_EQ(wheel.NextDue(), kT0 + minutes(10) + seconds(1));
  wheel.PopDue(kT0 + minutes(11), 10);
  EXPECT_EQ(wheel.NextDue(), kT0 + minutes(20));
}

// Compares the wheel with an obviously correct model under random inserts
// and random time steps, including jumps across level-1 blocks and across
// whole level-1 revolutions (the cascade paths).
class TimerWheelModelTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(TimerWheelModelTest, MatchesReferenceModelUnderRandomUse) {
  std::mt19937_64 rng(GetParam());
  TimerWheel<uint64_t> wheel(kT0);
  std::multimap<int64_t, uint64_t> model;  // fire tick -> id
  TimePoint now = kT0;
  uint64_t next_id = 0;
  const std::vector<Duration> spans = {seconds(5), minutes(90), hours(30), days(250)};
  for (int round = 0; round < 1500; ++round) {
    const int inserts = static_cast<int>(rng() % 20);
    for (int i = 0; i < inserts; ++i) {
      const Duration span = spans[rng() % spans.size()];
      const TimePoint due =
          now + Duration(static_cast<int64_t>(rng() % static_cast<uint64_t>(span.count()))) -
          seconds(1);
      wheel.Insert(due, next_id);
      model.emplace((ToUnixMillis(due) + 999) / 1000, next_id);
      ++next_id;
    }
    const Duration step = spans[rng() % spans.size()] / static_cast<int64_t>(1 + rng() % 50);
    now += step;
    const int64_t now_tick = ToUnixMillis(now) / 1000;
    std::multiset<uint64_t> expected;
    while (!model.empty() && model.begin()->first <= now_tick) {
      expected.insert(model.begin()->second);
      model.erase(model.begin());
    }
    std::multiset<uint64_t> got;
    wheel.DrainDue(now, SIZE_MAX, [&](uint64_t&& id) { got.insert(id); });
    ASSERT_EQ(got, expected) << "round " << round;
    ASSERT_EQ(wheel.size(), model.size());
    if (!model.empty()) {
      auto wake = wheel.NextDue();
      ASSERT_TRUE(wake);
      ASSERT_LE(ToUnixMillis(*wake), model.begin()->first * 1000) << "round " << round;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, TimerWheelModelTest, ::testing::Values(1, 2, 3, 12345, 987654321));

// With a small max_count, what is left waits in the ready list and still
// comes out oldest first, before anything that falls due later.
TEST(TimerWheelTest, PartialDrainsKeepDueOrderAcrossCalls) {
  TimerWheel<int> wheel(kT0);
  for (int i = 0; i < 100; ++i) wheel.Insert(kT0 + seconds(1 + i % 10), i);
  std::vector<int> got;
  TimePoint now = kT0 + seconds(5);
  while (got.size() < 100) {
    for (int v : wheel.PopDue(now, 7)) got.push_back(v);
    now += seconds(1);
  }
  for (size_t i = 1; i < got.size(); ++i) {
    ASSERT_LE(got[i - 1] % 10, got[i] % 10) << i;
    if (got[i - 1] % 10 == got[i] % 10) {
      ASSERT_LT(got[i - 1], got[i]);  // FIFO within a tick
    }
  }
}

TEST(TimerWheelTest, MillionEntriesComeOutInDueOrderNeverEarly) {
  std::mt19937_64 rng(7);
  TimerWheel<uint32_t> wheel(kT0);
  constexpr uint32_t kCount = 1'000'000;
  std::vector<int64_t> due_ms(kCount);
  const auto spread = static_cast<uint64_t>(Duration(hours(4)).count());
  for (uint32_t i = 0; i < kCount; ++i) {
    due_ms[i] = ToUnixMillis(kT0) + static_cast<int64_t>(rng() % spread);
    wheel.Insert(FromUnixMillis(due_ms[i]), i);
  }
  ASSERT_EQ(wheel.size(), kCount);
  size_t seen = 0;
  int64_t last_tick = 0;
  for (TimePoint now = kT0; seen < kCount; now += seconds(37)) {
    const int64_t now_ms = ToUnixMillis(now);
    wheel.DrainDue(now, SIZE_MAX, [&](uint32_t&& i) {
      const int64_t tick = (due_ms[i] + 999) / 1000;
      ASSERT_LE(tick * 1000, now_ms);  // never early
      ASSERT_GE(tick, last_tick);      // due order
      last_tick = tick;
      ++seen;
    });
    ASSERT_LE(now, kT0 + hours(5));
  }
  EXPECT_TRUE(wheel.empty());
}

}  // namespace
}  // namespace hikyaku::queue
