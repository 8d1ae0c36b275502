#include "sink/rules.h"

#include <algorithm>

#include "base/check.h"

namespace hikyaku::sink {
namespace {

// Tables are swept at most this often, and only once they are big enough
// for the sweep to be worth its cost.
constexpr Duration kPruneInterval = std::chrono::seconds(10);
constexpr size_t kPruneAbove = 4096;

// SplitMix64's finaliser: a well-mixed 64-bit hash of a counter, so
// consecutive positions give independent-looking draws.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

RateLimiter::RateLimiter(double per_minute, double burst) : per_ms_(per_minute / 60000.0), burst_(burst) {
  HIKYAKU_CHECK(per_minute > 0 && burst >= 1);
}

bool RateLimiter::Allow(std::string_view key, TimePoint now) {
  std::lock_guard lock(mutex_);
  Prune(now);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    it = buckets_.emplace(std::string(key), Bucket{burst_, now}).first;
  } else {
    Bucket& b = it->second;
    double elapsed = static_cast<double>(std::max<int64_t>(0, (now - b.updated).count()));
    b.tokens = std::min(burst_, b.tokens + elapsed * per_ms_);
    b.updated = std::max(now, b.updated);
  }
  if (it->second.tokens < 1.0) return false;
  it->second.tokens -= 1.0;
  return true;
}

void RateLimiter::Prune(TimePoint now) {
  if (buckets_.size() < kPruneAbove || now - last_prune_ < kPruneInterval) return;
  last_prune_ = now;
  // A bucket that would be full again is indistinguishable from a new one.
  std::erase_if(buckets_, [&](const auto& entry) {
    const Bucket& b = entry.second;
    return b.tokens + static_cast<double>((now - b.updated).count()) * per_ms_ >= burst_;
  });
}

size_t RateLimiter::tracked_keys() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

Greylist::Greylist(Duration delay, Duration expiry) : delay_(delay), expiry_(std::max(expiry, delay)) {}

std::optional<Duration> Greylist::Check(std::string_view client, std::string_view sender,
                                        std::string_view recipient, TimePoint now) {
  std::string key;
  key.reserve(client.size() + sender.size() + recipient.size() + 2);
  key.append(client).push_back('\0');
  key.append(sender).push_back('\0');
  key.append(recipient);
  std::lock_guard lock(mutex_);
  Prune(now);
  auto [it, inserted] = first_seen_.try_emplace(std::move(key), now);
  if (!inserted && now - it->second >= expiry_) it->second = now;  // expired: a first attempt again
  Duration waited = now - it->second;
  if (waited >= delay_) return std::nullopt;
  return std::max(Duration(1), delay_ - waited);
}

void Greylist::Prune(TimePoint now) {
  if (first_seen_.size() < kPruneAbove || now - last_prune_ < kPruneInterval) return;
  last_prune_ = now;
  std::erase_if(first_seen_, [&](const auto& entry) { return now - entry.second >= expiry_; });
}

size_t Greylist::tracked_triples() const {
  std::lock_guard lock(mutex_);
  return first_seen_.size();
}

TempfailInjector::TempfailInjector(double rate, uint64_t seed) : rate_(rate), seed_(seed) {}

bool TempfailInjector::Fail() {
  if (rate_ <= 0) return false;
  if (rate_ >= 1) return true;
  uint64_t n = next_.fetch_add(1, std::memory_order_relaxed);
  // The top 53 bits as a double in [0, 1).
  double draw = static_cast<double>(Mix(Mix(seed_) ^ n) >> 11) * 0x1.0p-53;
  return draw < rate_;
}

Result<UnknownUsers> UnknownUsers::Compile(const std::string& pattern) {
  try {
    return UnknownUsers(std::regex(pattern, std::regex::ECMAScript | std::regex::optimize));
  } catch (const std::regex_error& e) {
    return Fail(ErrorCode::kInvalidArgument, "bad regular expression '" + pattern + "': " + e.what());
  }
}

bool UnknownUsers::Matches(std::string_view address) const {
  if (std::regex_match(address.begin(), address.end(), regex_)) return true;
  size_t at = address.rfind('@');
  if (at == std::string_view::npos) return false;
  std::string_view local = address.substr(0, at);
  return std::regex_match(local.begin(), local.end(), regex_);
}

}  // namespace hikyaku::sink
