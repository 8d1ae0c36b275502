#include "shaping/token_bucket.h"

#include <algorithm>
#include <cmath>

namespace hikyaku::shaping {
namespace {

// Floating-point refill can land a hair below a whole token at the very
// millisecond WhenAvailable named; this tolerance keeps the two consistent.
constexpr double kEpsilon = 1e-9;

double EffectiveBurst(double rate, double burst) {
  if (burst > 0) return burst;
  return std::max(1.0, rate);
}

}  // namespace

TokenBucket::TokenBucket(double rate, double burst, TimePoint now)
    : rate_(std::max(0.0, rate)), burst_(EffectiveBurst(rate_, burst)), tokens_(burst_), updated_(now) {}

double TokenBucket::Clamp(double n) const { return std::min(std::max(0.0, n), burst_); }

void TokenBucket::Refill(TimePoint now) {
  if (now <= updated_) return;
  double seconds = static_cast<double>((now - updated_).count()) / 1000.0;
  tokens_ = std::min(burst_, tokens_ + seconds * rate_);
  updated_ = now;
}

double TokenBucket::Available(TimePoint now) const {
  if (unlimited()) return burst_;
  double seconds = now > updated_ ? static_cast<double>((now - updated_).count()) / 1000.0 : 0.0;
  return std::min(burst_, tokens_ + seconds * rate_);
}

bool TokenBucket::TryTake(double n, TimePoint now) {
  if (unlimited()) return true;
  Refill(now);
  if (tokens_ + kEpsilon < Clamp(n)) return false;
  tokens_ -= std::max(0.0, n);  // all of it: more than the burst leaves a debt
  if (std::abs(tokens_) < kEpsilon) tokens_ = 0;
  return true;
}

TimePoint TokenBucket::WhenAvailable(double n, TimePoint now) const {
  if (unlimited()) return now;
  double missing = Clamp(n) - Available(now);
  if (missing <= kEpsilon) return now;
  auto ms = static_cast<int64_t>(std::ceil(missing / rate_ * 1000.0));
  return now + Duration(std::max<int64_t>(1, ms));
}

void TokenBucket::SetRate(double rate, double burst, TimePoint now) {
  rate = std::max(0.0, rate);
  double new_burst = EffectiveBurst(rate, burst);
  if (unlimited()) {
    tokens_ = new_burst;
  } else {
    Refill(now);
    tokens_ = tokens_ / burst_ * new_burst;
  }
  rate_ = rate;
  burst_ = new_burst;
  tokens_ = std::min(tokens_, burst_);
  updated_ = std::max(updated_, now);
}

}  // namespace hikyaku::shaping
