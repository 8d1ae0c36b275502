#include "delivery/destinations.h"

#include <algorithm>

namespace hikyaku::delivery {

using queue::QueuedRecipient;

Destinations::DomainState& Destinations::Domain(uint32_t id) {
  if (id >= states_.size()) states_.resize(id + 1);
  return states_[id];
}

void Destinations::Enqueue(const QueuedRecipient& q, TimePoint due) {
  DomainState& d = Domain(q.domain);
  if (d.status == DomainState::Status::kResolved) {
    handler_.Place(d.site, q, due);
    // Stale answer: keep delivering with it and refresh in the background.
    if (d.expires <= clock_.Now()) Resolve(q.domain);
    return;
  }
  d.waiting.push_back({q, due});
  if (d.status == DomainState::Status::kUnknown) Resolve(q.domain);
}

void Destinations::Resolve(uint32_t domain) {
  DomainState& d = Domain(domain);
  if (d.status == DomainState::Status::kResolving) return;
  const bool refresh = d.status == DomainState::Status::kResolved;
  if (!refresh) d.status = DomainState::Status::kResolving;
  std::string name(domains_.Name(domain));
  // The resolver may outlive a lookup's caller only through this pointer.
  resolver_.ResolveMx(name, [self = weak_from_this(), domain, refresh](Result<dns::Destination> r) {
    if (auto s = self.lock()) s->OnResolved(domain, std::move(r), refresh);
  });
}

void Destinations::OnResolved(uint32_t domain, Result<dns::Destination> result, bool refresh) {
  DomainState& d = Domain(domain);
  const TimePoint now = clock_.Now();
  if (result) {
    d.site = handler_.SiteFor(domain, *result);
    d.status = DomainState::Status::kResolved;
    d.expires = result->expires;
    auto waiting = std::move(d.waiting);
    d.waiting.clear();
    for (const auto& w : waiting) handler_.Place(d.site, w.recipient, w.due);
    return;
  }
  if (refresh) return;  // keep using the stale answer; the next arrival tries again
  const Outcome outcome = ClassifyDnsFailure(result.error());
  if (outcome.kind == Outcome::Kind::kBounced) {
    auto waiting = std::move(d.waiting);
    d.waiting.clear();
    d.status = DomainState::Status::kUnknown;
    for (auto w : waiting) {
      w.recipient.attempts = static_cast<uint16_t>(std::min<uint32_t>(w.recipient.attempts + 1, queue::kMaxAttempts));
      handler_.LookupFailed(w.recipient, outcome, std::nullopt);
    }
    return;
  }
  d.status = DomainState::Status::kRetryWait;
  std::vector<Waiting> kept;
  TimePoint next = TimePoint::max();
  for (auto w : d.waiting) {
    if (w.due > now) {  // not yet due: no attempt was made for it
      kept.push_back(w);
      next = std::min(next, w.due);
      continue;
    }
    w.recipient.attempts = static_cast<uint16_t>(std::min<uint32_t>(w.recipient.attempts + 1, queue::kMaxAttempts));
    auto due = retry_.NextAttemptFor(w.recipient, now);
    handler_.LookupFailed(w.recipient, outcome, due);
    if (!due) continue;  // expired
    w.due = *due;
    kept.push_back(w);
    next = std::min(next, *due);
  }
  d.waiting = std::move(kept);
  d.retry_at = next;
  if (!d.waiting.empty()) retry_domains_.insert(domain);
  else d.status = DomainState::Status::kUnknown;
}

void Destinations::Tick(TimePoint now) {
  // Collected first: a lookup may answer at once and change the set.
  std::vector<uint32_t> due;
  for (uint32_t id : retry_domains_) {
    const DomainState& d = states_[id];
    if (d.status == DomainState::Status::kRetryWait && d.retry_at <= now) due.push_back(id);
  }
  for (uint32_t id : due) {
    retry_domains_.erase(id);
    Domain(id).status = DomainState::Status::kUnknown;
    Resolve(id);
  }
}

std::optional<TimePoint> Destinations::NextWakeup() const {
  std::optional<TimePoint> next;
  for (uint32_t id : retry_domains_) {
    const TimePoint at = states_[id].retry_at;
    if (!next || at < *next) next = at;
  }
  return next;
}

std::optional<queue::SiteId> Destinations::SiteOf(uint32_t domain) const {
  if (domain >= states_.size() || states_[domain].status != DomainState::Status::kResolved) return std::nullopt;
  return states_[domain].site;
}

size_t Destinations::waiting() const {
  size_t n = 0;
  for (const auto& d : states_) n += d.waiting.size();
  return n;
}

}  // namespace hikyaku::delivery
