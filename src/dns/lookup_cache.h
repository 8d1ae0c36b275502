// LookupCache: the answers of past DNS lookups until they expire, and the
// callers waiting for lookups still in flight, so that many requests for one
// name cost one query.
//
// Contract: Find() returns a stored answer only while it is fresh by the
// injected Clock. Join() queues a caller for a key and says whether it is the
// first (then the caller starts the lookup). Complete() stores the answer and
// hands back every queued caller, which the owner then calls (the cache never
// calls out, so it holds no lock and cannot re-enter itself). What is stored:
//   success            until min(value.expires, now + max_ttl); the clamped
//                      expiry is written into the value itself;
//   permanent failure  for negative_ttl (NXDOMAIN, no data: RFC 2308 style);
//   transient failure  not at all: the next request asks again.
// Expired entries are swept when the map has doubled since the last sweep,
// so memory follows the number of live names, not of names ever seen.
//
// T is a value with a `TimePoint expires` member (Destination, HostAddresses).
//
// Thread-safety: none; the owner serialises calls (CaresResolver: its strand).
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/error.h"

namespace hikyaku::dns {

template <typename T>
class LookupCache {
 public:
  using Callback = std::function<void(Result<T>)>;

  LookupCache(const Clock& clock, Duration negative_ttl, Duration max_ttl)
      : clock_(clock), negative_ttl_(negative_ttl), max_ttl_(max_ttl) {}

  // The stored answer for `key` if it has not expired.
  std::optional<Result<T>> Find(const std::string& key) const {
    auto it = answers_.find(key);
    if (it == answers_.end() || it->second.expires <= clock_.Now()) return std::nullopt;
    return it->second.result;
  }

  // Queues `done` for the answer to `key`. True when no lookup for `key` was
  // in flight: the caller must start one and later call Complete(key, ...).
  bool Join(const std::string& key, Callback done) {
    auto [it, first] = waiting_.try_emplace(key);
    it->second.push_back(std::move(done));
    return first;
  }

  // Records the answer to the lookup of `key` (see the header comment for
  // what is kept) and returns it, clamped, with the callers that waited.
  std::pair<Result<T>, std::vector<Callback>> Complete(const std::string& key, Result<T> result) {
    TimePoint now = clock_.Now();
    std::optional<TimePoint> keep_until;
    if (result) {
      result->expires = std::min(result->expires, now + max_ttl_);
      keep_until = result->expires;
    } else if (!result.error().transient()) {
      keep_until = now + negative_ttl_;
    }
    if (keep_until && *keep_until > now) {
      answers_.insert_or_assign(key, Entry{result, *keep_until});
      if (answers_.size() >= sweep_at_) Sweep(now);
    } else {
      answers_.erase(key);  // a stale answer must not outlive a newer failure
    }
    std::vector<Callback> waiters;
    if (auto it = waiting_.find(key); it != waiting_.end()) {
      waiters = std::move(it->second);
      waiting_.erase(it);
    }
    return {std::move(result), std::move(waiters)};
  }

  size_t cached() const { return answers_.size(); }
  size_t in_flight() const { return waiting_.size(); }

 private:
  struct Entry {
    Result<T> result;
    TimePoint expires;
  };
  static constexpr size_t kMinSweep = 1024;

  void Sweep(TimePoint now) {
    std::erase_if(answers_, [now](const auto& kv) { return kv.second.expires <= now; });
    sweep_at_ = std::max(kMinSweep, answers_.size() * 2);
  }

  const Clock& clock_;
  Duration negative_ttl_;
  Duration max_ttl_;
  size_t sweep_at_ = kMinSweep;
  std::unordered_map<std::string, Entry> answers_;
  std::unordered_map<std::string, std::vector<Callback>> waiting_;
};

}  // namespace hikyaku::dns
