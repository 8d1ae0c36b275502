#include "queue/retry_policy.h"

#include <algorithm>
#include <cmath>

namespace hikyaku::queue {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double UnitInterval(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

RetryPolicy::RetryPolicy(const config::RetryConfig& config, uint64_t seed)
    : config_(config), seed_(seed), state_(seed) {}

Duration RetryPolicy::BaseDelay(uint32_t attempts_so_far) const {
  const int64_t cap = std::max<int64_t>(config_.max.count(), 1);
  int64_t delay = std::clamp<int64_t>(config_.initial.count(), 1, cap);
  // Doubling by loop, not by shift: attempts may reach 65535 and a shift
  // that large is undefined; the loop ends after log2(max/initial) steps.
  for (uint32_t n = 1; n < attempts_so_far && delay < cap; ++n) {
    delay = delay > cap / 2 ? cap : delay * 2;
  }
  return Duration(delay);
}

std::optional<TimePoint> RetryPolicy::NextAttempt(TimePoint now, TimePoint received_at,
                                                  uint32_t attempts_so_far) {
  return Finish(now, received_at, attempts_so_far, SplitMix64(state_));
}

std::optional<TimePoint> RetryPolicy::NextAttempt(TimePoint now, TimePoint received_at,
                                                  uint32_t attempts_so_far,
                                                  uint64_t jitter_key) const {
  // Mix the key and the attempt number into one seed so siblings (same
  // key, same attempt) agree and consecutive attempts of one key differ.
  uint64_t state =
      seed_ ^ (jitter_key * 0x9e3779b97f4a7c15ull) ^ (static_cast<uint64_t>(attempts_so_far) << 48);
  SplitMix64(state);
  return Finish(now, received_at, attempts_so_far, SplitMix64(state));
}

std::optional<TimePoint> RetryPolicy::Finish(TimePoint now, TimePoint received_at,
                                             uint32_t attempts, uint64_t random) const {
  const double base = static_cast<double>(BaseDelay(attempts).count());
  const double jitter = std::clamp(config_.jitter, 0.0, 1.0);
  const double factor = 1.0 + jitter * (2.0 * UnitInterval(random) - 1.0);
  const auto delay = std::max<int64_t>(std::llround(base * factor), 1);
  const TimePoint next = now + Duration(delay);
  if (next > ExpiresAt(received_at)) return std::nullopt;
  return next;
}

}  // namespace hikyaku::queue
