// The decisions a difficult receiver makes, as pure logic driven by a Clock:
// per-IP token buckets (RateLimiter), greylisting of (client IP, sender,
// recipient) triples (Greylist), seeded random temporary failures
// (TempfailInjector) and the unknown-user pattern (UnknownUsers). The sink
// asks them from its connection coroutines; they do no I/O and keep no
// message content.
//
// Thread-safety: every class here is safe to call from any thread (the
// sink runs one io_context per thread and shares one instance of each).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/clock.h"
#include "base/error.h"

namespace hikyaku::sink {

// Lets the tables below be searched with a string_view (no allocation per lookup).
struct StringKeyHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A token bucket per key (the client IP): `per_minute` tokens a minute, at
// most `burst` saved up; a bucket starts full. Idle buckets that have
// refilled completely are forgotten, so memory follows the number of
// recently active clients.
class RateLimiter {
 public:
  // per_minute > 0; burst >= 1.
  RateLimiter(double per_minute, double burst);

  // Takes one token from `key`'s bucket; false if it was empty.
  bool Allow(std::string_view key, TimePoint now);
  size_t tracked_keys() const;

 private:
  struct Bucket {
    double tokens;
    TimePoint updated;
  };
  void Prune(TimePoint now);  // with mutex_ held

  const double per_ms_;
  const double burst_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Bucket, StringKeyHash, std::equal_to<>> buckets_;
  TimePoint last_prune_{};
};

// Greylisting (as in Postfix's postgrey): the first attempt of a triple is
// refused; a retry is accepted once `delay` has passed since the first
// attempt, and so is every later one until the entry expires `expiry`
// after it was first seen (then the triple starts over).
class Greylist {
 public:
  explicit Greylist(Duration delay, Duration expiry = std::chrono::hours(24));

  // std::nullopt: accept. Otherwise how long the client must still wait
  // (at least 1 ms).
  std::optional<Duration> Check(std::string_view client, std::string_view sender, std::string_view recipient,
                                TimePoint now);
  size_t tracked_triples() const;

 private:
  void Prune(TimePoint now);  // with mutex_ held

  const Duration delay_;
  const Duration expiry_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, TimePoint, StringKeyHash, std::equal_to<>> first_seen_;
  TimePoint last_prune_{};
};

// Fails a fraction `rate` (0..1) of the decisions it is asked for. The
// n-th call (counted from 0 across all threads) fails iff a hash of
// (seed, n) falls below the rate, so a given seed fails the same positions
// in the sequence every run: a single client sees the same failures
// whenever it replays the same traffic.
class TempfailInjector {
 public:
  TempfailInjector(double rate, uint64_t seed);
  bool Fail();

 private:
  const double rate_;
  const uint64_t seed_;
  std::atomic<uint64_t> next_{0};
};

// Recipients refused as unknown: those whose local part or whole address
// matches the ECMAScript regular expression entirely (std::regex_match;
// write ".*x.*" to match "x" anywhere). The domain is compared as given.
class UnknownUsers {
 public:
  // kInvalidArgument naming the problem when `pattern` is not a valid regex.
  static Result<UnknownUsers> Compile(const std::string& pattern);
  bool Matches(std::string_view address) const;

 private:
  explicit UnknownUsers(std::regex regex) : regex_(std::move(regex)) {}
  std::regex regex_;
};

}  // namespace hikyaku::sink
