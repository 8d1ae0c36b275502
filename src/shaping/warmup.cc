#include "shaping/warmup.h"

#include <algorithm>
#include <limits>

namespace hikyaku::shaping {
namespace {

constexpr int64_t kHourMs = 3'600'000;
constexpr int64_t kDayMs = 24 * kHourMs;

// Floor division: times before 1970 still fall into the right window.
int64_t FloorDiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
int64_t DayIndex(TimePoint t) { return FloorDiv(ToUnixMillis(t), kDayMs); }
int64_t HourIndex(TimePoint t) { return FloorDiv(ToUnixMillis(t), kHourMs); }

uint64_t Left(uint64_t cap, uint64_t sent) {
  if (cap == 0) return std::numeric_limits<uint64_t>::max();
  return cap > sent ? cap - sent : 0;
}

}  // namespace

WarmupCounter::WarmupCounter(const WarmupSchedule* schedule, TimePoint start)
    : schedule_(schedule), start_(start) {}

void WarmupCounter::SetSchedule(const WarmupSchedule* schedule, TimePoint start) {
  schedule_ = schedule;
  start_ = start;
}

uint32_t WarmupCounter::DayNumber(TimePoint now) const {
  if (now < start_) return 1;
  int64_t days = DayIndex(now) - DayIndex(start_);
  return static_cast<uint32_t>(std::min<int64_t>(days + 1, std::numeric_limits<uint32_t>::max()));
}

const WarmupDay* WarmupCounter::Caps(uint32_t day) const {
  if (schedule_ == nullptr || schedule_->days.empty()) return nullptr;
  const auto& days = schedule_->days;
  if (day > days.back().day) return nullptr;
  // The last listed day <= `day`; before the first listed day, the first.
  auto it = std::upper_bound(days.begin(), days.end(), day,
                             [](uint32_t d, const WarmupDay& w) { return d < w.day; });
  return it == days.begin() ? &days.front() : &*std::prev(it);
}

uint64_t WarmupCounter::SentToday(TimePoint now) const {
  return DayIndex(now) == day_index_ ? sent_today_ : 0;
}
uint64_t WarmupCounter::SentThisHour(TimePoint now) const {
  return HourIndex(now) == hour_index_ ? sent_this_hour_ : 0;
}

uint64_t WarmupCounter::Room(TimePoint now) const {
  const WarmupDay* caps = Caps(DayNumber(now));
  if (caps == nullptr) return std::numeric_limits<uint64_t>::max();
  return std::min(Left(caps->per_day, SentToday(now)), Left(caps->per_hour, SentThisHour(now)));
}

bool WarmupCounter::Allows(uint32_t n, TimePoint now) const { return Room(now) >= n; }

void WarmupCounter::Count(uint32_t n, TimePoint now) {
  int64_t day = DayIndex(now), hour = HourIndex(now);
  if (day != day_index_) {
    day_index_ = day;
    sent_today_ = 0;
  }
  if (hour != hour_index_) {
    hour_index_ = hour;
    sent_this_hour_ = 0;
  }
  sent_today_ += n;
  sent_this_hour_ += n;
}

void WarmupCounter::Restore(uint64_t sent_today, uint64_t sent_this_hour, TimePoint now) {
  day_index_ = DayIndex(now);
  hour_index_ = HourIndex(now);
  sent_today_ = sent_today;
  sent_this_hour_ = sent_this_hour;
}

TimePoint WarmupCounter::NextOpening(TimePoint now) const {
  if (Room(now) > 0) return now;
  const WarmupDay* caps = Caps(DayNumber(now));
  // Room is 0, so caps exist. The day cap, when exhausted, outranks the hour.
  if (caps->per_day != 0 && SentToday(now) >= caps->per_day)
    return FromUnixMillis((DayIndex(now) + 1) * kDayMs);
  return FromUnixMillis((HourIndex(now) + 1) * kHourMs);
}

WarmupCounter::Progress WarmupCounter::progress(TimePoint now) const {
  Progress p;
  p.day = DayNumber(now);
  p.sent_today = SentToday(now);
  p.sent_this_hour = SentThisHour(now);
  const WarmupDay* caps = Caps(p.day);
  p.done = caps == nullptr;
  if (caps != nullptr) {
    p.cap_today = caps->per_day;
    p.cap_this_hour = caps->per_hour;
  }
  return p;
}

}  // namespace hikyaku::shaping
