// Warm-up schedules: a new source IP (or a source towards one provider)
// builds reputation by sending little at first and more each day. A
// WarmupSchedule says how much per day and per hour on day N; a
// WarmupCounter counts what one source has sent against it.
//
// Rules:
//   - Day 1 is the UTC calendar day that starts at `start` (the UTC midnight
//     of warmup_start); day N is the (N-1)th UTC day after it. Before the
//     start, day 1's caps apply (DayNumber says 1).
//   - The caps of day N are those of the last listed day <= N; days before
//     the first listed day use the first listed day. After the last listed
//     day the warm-up is done: no cap at all (progress().done).
//   - per_day / per_hour 0 means no cap for that field.
//   - Counters are per UTC calendar day and per UTC calendar hour: they start
//     again from 0 at each midnight / full hour (windows, not sliding).
//   - A null schedule caps nothing.
// Allows(n) is true when n more recipients fit under both of today's caps;
// the caller counts what it actually sent with Count(n) (so a refused
// transaction costs nothing). Room() tells how many fit, for sizing a
// batch, and NextOpening() when room reappears, for a timer.
//
// Thread-safety: not synchronised; one owner.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/clock.h"

namespace hikyaku::shaping {

struct WarmupDay {
  uint32_t day = 1;       // 1 = the start date
  uint64_t per_day = 0;   // 0 = no cap
  uint64_t per_hour = 0;  // 0 = no cap
};

struct WarmupSchedule {
  std::string name;
  std::vector<WarmupDay> days;  // sorted by day, strictly increasing
};

class WarmupCounter {
 public:
  // `schedule` must outlive the counter (null: no caps). `start`: UTC
  // midnight of the warm-up start date.
  WarmupCounter(const WarmupSchedule* schedule, TimePoint start);

  uint32_t DayNumber(TimePoint now) const;  // 1-based
  bool Allows(uint32_t n, TimePoint now) const;
  void Count(uint32_t n, TimePoint now);
  // Recipients that still fit this hour and today (UINT64_MAX: no cap).
  uint64_t Room(TimePoint now) const;
  // When Room() becomes > 0 again if it is 0 now (the next full hour or
  // midnight); `now` when there is room.
  TimePoint NextOpening(TimePoint now) const;

  struct Progress {
    uint32_t day = 1;
    uint64_t sent_today = 0;
    uint64_t cap_today = 0;  // 0 = no cap
    uint64_t sent_this_hour = 0;
    uint64_t cap_this_hour = 0;  // 0 = no cap
    bool done = false;           // past the last listed day (or no schedule)
  };
  Progress progress(TimePoint now) const;

  // After a restart: the counts the caller persisted for the day and hour
  // that contain `now`.
  void Restore(uint64_t sent_today, uint64_t sent_this_hour, TimePoint now);

  void SetSchedule(const WarmupSchedule* schedule, TimePoint start);

 private:
  const WarmupDay* Caps(uint32_t day) const;  // null: no cap (done)
  uint64_t SentToday(TimePoint now) const;
  uint64_t SentThisHour(TimePoint now) const;

  const WarmupSchedule* schedule_;
  TimePoint start_;
  int64_t day_index_ = -1;   // UTC days since the epoch of sent_today_
  int64_t hour_index_ = -1;  // UTC hours since the epoch of sent_this_hour_
  uint64_t sent_today_ = 0;
  uint64_t sent_this_hour_ = 0;
};

}  // namespace hikyaku::shaping
