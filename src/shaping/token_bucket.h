// TokenBucket: `rate` tokens a second, at most `burst` saved up, starting
// full. The shaper's pacing primitive (message rate, connection rate).
// Pure logic: no clock reads, every call takes `now`; `now` going backwards
// is treated as no time passing.
//
// Contract:
//   - rate 0 means unlimited: TryTake always succeeds, WhenAvailable is now.
//   - A request for more than `burst` tokens waits for a full bucket only,
//     so a transaction larger than the burst is never starved, and then
//     takes all it asked for: the bucket goes into debt, and the requests
//     after it wait until the debt is paid off. Over any stretch of time T
//     the tokens taken are at most burst + rate x T + one request, however
//     large the requests are.
//   - WhenAvailable(n, now) is the first millisecond at which TryTake(n)
//     succeeds if nothing else takes tokens meanwhile.
//   - SetRate keeps the fill proportional: a bucket 40 % full stays 40 % full
//     of the new burst. Leaving "unlimited" starts full.
//
// Thread-safety: not synchronised; one owner.
#pragma once

#include "base/clock.h"

namespace hikyaku::shaping {

class TokenBucket {
 public:
  // rate: tokens per second (0 = unlimited); burst <= 0 means max(1, rate).
  TokenBucket(double rate, double burst, TimePoint now);

  bool TryTake(double n, TimePoint now);
  TimePoint WhenAvailable(double n, TimePoint now) const;
  void SetRate(double rate, double burst, TimePoint now);

  double Available(TimePoint now) const;  // tokens there now, negative in debt (burst when unlimited)
  double rate() const { return rate_; }
  double burst() const { return burst_; }
  bool unlimited() const { return rate_ <= 0; }

 private:
  void Refill(TimePoint now);
  double Clamp(double n) const;

  double rate_ = 0;
  double burst_ = 1;
  double tokens_ = 1;
  TimePoint updated_;
};

}  // namespace hikyaku::shaping
