// RetryPolicy: when a deferred recipient is tried again, and when it expires.
//
// The n-th retry (n = attempts made so far, counting the one that was just
// deferred) comes initial * 2^(n-1) after `now`, the doubling capped at
// `max`; the delay is then spread by a factor drawn uniformly from
// [1 - jitter, 1 + jitter) (so a capped delay may reach max * (1 + jitter):
// the spread matters most exactly when many recipients sit at the cap).
// attempts_so_far == 0 is treated as 1. The result is never earlier than
// now + 1 ms.
//
// Expiry: when the next attempt would fall after received_at + max_age the
// answer is nullopt: the recipient expires now (a bounce), rather than being
// kept for an attempt the operator said not to make.
//
// Jitter source: without a key, a SplitMix64 stream seeded by `seed` (the
// same seed gives the same sequence on every platform). With a key, the
// spread is a pure function of (seed, key, attempts): the Scheduler passes
// the message id, so recipients of one message deferred together come back
// together and can share one SMTP transaction again.
//
// Thread-safety: not synchronised (the keyless form advances internal
// state); one instance per scheduler thread.
#pragma once

#include <cstdint>
#include <optional>

#include "base/clock.h"
#include "config/config.h"
#include "queue/queued_recipient.h"

namespace hikyaku::queue {

class RetryPolicy {
 public:
  RetryPolicy(const config::RetryConfig& config, uint64_t seed);

  std::optional<TimePoint> NextAttempt(TimePoint now, TimePoint received_at,
                                       uint32_t attempts_so_far);
  std::optional<TimePoint> NextAttempt(TimePoint now, TimePoint received_at,
                                       uint32_t attempts_so_far, uint64_t jitter_key) const;

  // THE place a recipient's retry time is computed (the scheduler's Defer
  // and the dispatcher's DNS deferrals both come here): the jitter key is
  // the message id, so recipients of one message deferred together come
  // back together and share a transaction again. `r.attempts` counts the
  // attempt just made.
  std::optional<TimePoint> NextAttemptFor(const QueuedRecipient& r, TimePoint now) const {
    return NextAttempt(now, r.received_at, r.attempts, r.message.value());
  }

  // The delay before jitter: initial * 2^(n-1), capped at max.
  Duration BaseDelay(uint32_t attempts_so_far) const;
  TimePoint ExpiresAt(TimePoint received_at) const { return received_at + config_.max_age; }
  const config::RetryConfig& config() const { return config_; }

 private:
  std::optional<TimePoint> Finish(TimePoint now, TimePoint received_at, uint32_t attempts,
                                  uint64_t random) const;

  config::RetryConfig config_;
  uint64_t seed_;
  uint64_t state_;  // SplitMix64 stream for the keyless form
};

// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed 64-bit generator
// whose output is the same on every platform, unlike the std distributions.
uint64_t SplitMix64(uint64_t& state);
// A uniform double in [0, 1) from the top 53 bits of `bits`.
double UnitInterval(uint64_t bits);

}  // namespace hikyaku::queue
