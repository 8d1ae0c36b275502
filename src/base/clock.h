// Clock: the only source of "now" for logic that must be testable without
// sleeping. SystemClock reads the OS; ManualClock is advanced by tests.
//
// Thread-safety: SystemClock is safe from any thread; ManualClock is not
// synchronised (tests drive it from one thread).
#pragma once

#include <chrono>
#include <cstdint>

namespace hikyaku {

using Duration = std::chrono::milliseconds;
// Milliseconds since the Unix epoch: the spool's and the event log's time unit.
using TimePoint = std::chrono::time_point<std::chrono::system_clock, Duration>;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimePoint Now() const override {
    return std::chrono::time_point_cast<Duration>(std::chrono::system_clock::now());
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint(Duration(1'700'000'000'000))) : now_(start) {}
  TimePoint Now() const override { return now_; }
  void Advance(Duration d) { now_ += d; }
  void Set(TimePoint t) { now_ = t; }

 private:
  TimePoint now_;
};

inline int64_t ToUnixMillis(TimePoint t) { return t.time_since_epoch().count(); }
inline TimePoint FromUnixMillis(int64_t ms) { return TimePoint(Duration(ms)); }

}  // namespace hikyaku
