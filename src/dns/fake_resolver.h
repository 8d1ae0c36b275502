// FakeResolver: a scripted Resolver for other modules' tests. Answers come
// from maps set by the test; names without an answer get kNotFound
// "NAME: NXDOMAIN". Every request is recorded.
//
// Modes:
//   kDeferred (default)  callbacks wait until the test calls RunPending(),
//                        which answers from the maps as they are *then*, so a
//                        test can change an answer while a lookup is pending.
//                        This honours the Resolver contract (never inside
//                        ResolveMx).
//   kImmediate           the callback runs inside ResolveMx/ResolveHost; for
//                        tests of code that does not care about re-entrance.
//
// Thread-safety: all methods may be called from any thread; callbacks run on
// the thread that calls RunPending (kDeferred) or ResolveMx (kImmediate),
// never under the fake's lock.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "dns/resolver.h"

namespace hikyaku::dns {

class FakeResolver final : public Resolver {
 public:
  enum class Mode { kDeferred, kImmediate };

  explicit FakeResolver(Mode mode = Mode::kDeferred) : mode_(mode) {}

  void SetMx(const std::string& domain, Result<Destination> answer) {
    std::lock_guard lock(mu_);
    mx_.insert_or_assign(NormalizeName(domain), std::move(answer));
  }
  // Shorthand: a Destination of `hosts` (kept in the given order), expiring
  // at TimePoint::max().
  void SetMxHosts(const std::string& domain, std::vector<MxHost> hosts) {
    SetMx(domain, Destination{NormalizeName(domain), std::move(hosts), false, TimePoint::max(), {}});
  }
  void SetHost(const std::string& name, Result<HostAddresses> answer) {
    std::lock_guard lock(mu_);
    hosts_.insert_or_assign(NormalizeName(name), std::move(answer));
  }

  void ResolveMx(const std::string& domain, MxCallback done) override {
    std::string name = NormalizeName(domain);
    Enqueue([this, name, done = std::move(done)] { done(AnswerMx(name)); }, name, mx_requests_);
  }
  void ResolveHost(const std::string& host, HostCallback done) override {
    std::string name = NormalizeName(host);
    Enqueue([this, name, done = std::move(done)] { done(AnswerHost(name)); }, name, host_requests_);
  }

  // kDeferred: answers every request queued so far (and those queued by the
  // callbacks while it runs); returns how many callbacks ran.
  size_t RunPending() {
    size_t ran = 0;
    for (;;) {
      std::vector<std::function<void()>> batch;
      {
        std::lock_guard lock(mu_);
        batch.swap(pending_);
      }
      if (batch.empty()) return ran;
      for (auto& call : batch) call();
      ran += batch.size();
    }
  }

  size_t pending() const {
    std::lock_guard lock(mu_);
    return pending_.size();
  }
  // Normalised names, in request order.
  std::vector<std::string> mx_requests() const {
    std::lock_guard lock(mu_);
    return mx_requests_;
  }
  std::vector<std::string> host_requests() const {
    std::lock_guard lock(mu_);
    return host_requests_;
  }

 private:
  void Enqueue(std::function<void()> call, const std::string& name, std::vector<std::string>& log) {
    {
      std::lock_guard lock(mu_);
      log.push_back(name);
      if (mode_ == Mode::kDeferred) {
        pending_.push_back(std::move(call));
        return;
      }
    }
    call();
  }
  Result<Destination> AnswerMx(const std::string& name) const {
    std::lock_guard lock(mu_);
    if (auto it = mx_.find(name); it != mx_.end()) return it->second;
    return Fail(ErrorCode::kNotFound, name + ": NXDOMAIN");
  }
  Result<HostAddresses> AnswerHost(const std::string& name) const {
    std::lock_guard lock(mu_);
    if (auto it = hosts_.find(name); it != hosts_.end()) return it->second;
    return Fail(ErrorCode::kNotFound, name + ": NXDOMAIN");
  }

  const Mode mode_;
  mutable std::mutex mu_;
  std::map<std::string, Result<Destination>> mx_;
  std::map<std::string, Result<HostAddresses>> hosts_;
  std::vector<std::function<void()>> pending_;
  std::vector<std::string> mx_requests_;
  std::vector<std::string> host_requests_;
};

}  // namespace hikyaku::dns
