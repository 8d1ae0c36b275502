#include "shaping/warmup.h"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>

namespace hikyaku::shaping {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;

// 2026-12-07T00:00:00Z
const TimePoint kMidnight = FromUnixMillis(1'796'601'600'000);

WarmupSchedule Schedule() {
  return WarmupSchedule{"new-ip",
                        {
                            {1, 50, 10},
                            {2, 100, 20},
                            {4, 500, 0},  // day 3 uses day 2's caps; no hourly cap from day 4
                            {6, 0, 200},  // no daily cap, hourly only
                        }};
}

TEST(WarmupTest, DayNumbersFollowUtcCalendarDays) {
  WarmupSchedule s = Schedule();
  WarmupCounter c(&s, kMidnight);
  EXPECT_EQ(c.DayNumber(kMidnight - hours(5)), 1u);  // before the start: day 1
  EXPECT_EQ(c.DayNumber(kMidnight), 1u);
  EXPECT_EQ(c.DayNumber(kMidnight + hours(23) + minutes(59)), 1u);
  EXPECT_EQ(c.DayNumber(kMidnight + days(1)), 2u);
  EXPECT_EQ(c.DayNumber(kMidnight + days(9) + hours(3)), 10u);
}

TEST(WarmupTest, HourlyCapResetsAtTheFullHourAndDailyCapAtMidnight) {
  WarmupSchedule s = Schedule();
  WarmupCounter c(&s, kMidnight);
  TimePoint t = kMidnight + hours(9) + minutes(50);
  EXPECT_TRUE(c.Allows(10, t));
  EXPECT_FALSE(c.Allows(11, t));  // hourly cap 10 on day 1
  c.Count(7, t);
  EXPECT_EQ(c.Room(t), 3u);
  EXPECT_FALSE(c.Allows(4, t + minutes(9)));
  EXPECT_TRUE(c.Allows(3, t + minutes(9)));
  c.Count(3, t + minutes(9));
  EXPECT_FALSE(c.Allows(1, t + minutes(9) + milliseconds(59'999)));
  EXPECT_EQ(c.NextOpening(t + minutes(9)), kMidnight + hours(10));
  // 10:00 is a new hour window: 10 more.
  EXPECT_TRUE(c.Allows(10, kMidnight + hours(10)));
  // Fill the day: 50 in total by 14:xx.
  for (int h = 10; h < 14; ++h) c.Count(10, kMidnight + hours(h) + minutes(1));
  TimePoint late = kMidnight + hours(14) + minutes(30);
  auto p = c.progress(late);
  EXPECT_EQ(p.day, 1u);
  EXPECT_EQ(p.sent_today, 50u);
  EXPECT_EQ(p.cap_today, 50u);
  EXPECT_EQ(p.sent_this_hour, 0u);
  EXPECT_EQ(p.cap_this_hour, 10u);
  EXPECT_FALSE(p.done);
  EXPECT_FALSE(c.Allows(1, late));  // the day is full although the hour is not
  EXPECT_EQ(c.NextOpening(late), kMidnight + days(1));
  // Day 2: new caps, counters from zero.
  TimePoint day2 = kMidnight + days(1);
  EXPECT_TRUE(c.Allows(20, day2));
  EXPECT_FALSE(c.Allows(21, day2));
  EXPECT_EQ(c.progress(day2).sent_today, 0u);
  EXPECT_EQ(c.progress(day2).cap_today, 100u);
}

TEST(WarmupTest, UnlistedDaysUseTheLastListedDayBeforeThem) {
  WarmupSchedule s = Schedule();
  WarmupCounter c(&s, kMidnight);
  TimePoint day3 = kMidnight + days(2) + hours(1);
  EXPECT_EQ(c.progress(day3).cap_today, 100u);
  EXPECT_EQ(c.progress(day3).cap_this_hour, 20u);
  TimePoint day5 = kMidnight + days(4) + hours(1);
  EXPECT_EQ(c.progress(day5).cap_today, 500u);
  EXPECT_EQ(c.progress(day5).cap_this_hour, 0u);  // no hourly cap
  EXPECT_TRUE(c.Allows(500, day5));
  c.Count(499, day5);
  EXPECT_EQ(c.Room(day5 + hours(3)), 1u);  // the daily cap spans the hours
}

TEST(WarmupTest, AGapOfDaysStartsFromTheDayItIsNow) {
  WarmupSchedule s = Schedule();
  WarmupCounter c(&s, kMidnight);
  c.Count(40, kMidnight + hours(3));
  // Nothing sent on days 2-5: day 6 still has its own caps and a clean count.
  TimePoint day6 = kMidnight + days(5) + hours(3);
  auto p = c.progress(day6);
  EXPECT_EQ(p.day, 6u);
  EXPECT_EQ(p.sent_today, 0u);
  EXPECT_EQ(p.cap_today, 0u);
  EXPECT_EQ(p.cap_this_hour, 200u);
  EXPECT_TRUE(c.Allows(200, day6));
  EXPECT_FALSE(c.Allows(201, day6));
}

TEST(WarmupTest, AfterTheLastListedDayNothingIsCapped) {
  WarmupSchedule s = Schedule();
  WarmupCounter c(&s, kMidnight);
  TimePoint day7 = kMidnight + days(6);
  EXPECT_TRUE(c.progress(day7).done);
  EXPECT_TRUE(c.Allows(std::numeric_limits<uint32_t>::max(), day7));
  EXPECT_EQ(c.Room(day7), std::numeric_limits<uint64_t>::max());
  c.Count(1'000'000, day7);
  EXPECT_TRUE(c.Allows(1'000'000, day7));
  EXPECT_EQ(c.progress(day7).sent_today, 1'000'000u);  // still counted for the view
}

TEST(WarmupTest, NoScheduleCapsNothing) {
  WarmupCounter c(nullptr, kMidnight);
  EXPECT_TRUE(c.Allows(1'000'000, kMidnight));
  EXPECT_TRUE(c.progress(kMidnight).done);
  WarmupSchedule empty{"empty", {}};
  WarmupCounter d(&empty, kMidnight);
  EXPECT_TRUE(d.Allows(1'000'000, kMidnight));
}

TEST(WarmupTest, ScheduleStartingLaterThanDayOneCapsEarlyDaysLikeItsFirstDay) {
  WarmupSchedule s{"late", {{3, 30, 0}, {5, 60, 0}}};
  WarmupCounter c(&s, kMidnight);
  EXPECT_EQ(c.progress(kMidnight).cap_today, 30u);
  EXPECT_EQ(c.progress(kMidnight + days(4)).cap_today, 60u);
}

TEST(WarmupTest, RestoreContinuesTheCountsOfTheCurrentWindows) {
  WarmupSchedule s = Schedule();
  WarmupCounter c(&s, kMidnight);
  TimePoint t = kMidnight + days(1) + hours(15) + minutes(20);
  c.Restore(/*sent_today=*/90, /*sent_this_hour=*/15, t);
  EXPECT_EQ(c.Room(t), 5u);              // hour: 20 - 15
  EXPECT_EQ(c.Room(t + hours(1)), 10u);  // next hour: day has 100 - 90 left
  c.Count(10, t + hours(1));
  EXPECT_FALSE(c.Allows(1, t + hours(2)));
  EXPECT_EQ(c.NextOpening(t + hours(2)), kMidnight + days(2));
}

}  // namespace
}  // namespace hikyaku::shaping
