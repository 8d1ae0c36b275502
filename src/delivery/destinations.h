// Destinations: where each recipient domain's mail goes — the state of its
// MX lookup (unknown, resolving, resolved, waiting to retry) and the
// recipients that wait for it. The dispatcher hands it every recipient;
// Destinations hands them back through `Handler` once their domain has a
// site, or with a verdict (outcome.cc's D1) when the lookup failed.
//
// Rules:
//   - A resolved domain's recipients go straight to its site. An answer past
//     its TTL keeps being used while a refresh runs in the background; a
//     failed refresh keeps the stale answer.
//   - While a lookup runs, recipients of the domain wait here (in memory
//     only: the spool has them).
//   - Permanent failure (NXDOMAIN, null MX): each waiting recipient is
//     bounced (an attempt counted).
//   - Transient failure: each waiting recipient that was due counts an
//     attempt and is deferred with the retry time of queue::RetryPolicy
//     (NextAttemptFor: the one place retry times are computed, so recipients
//     of one message come back together), or expires; the domain is looked
//     up again when the earliest of them is due.
//
// Threading: not synchronised; the dispatcher's thread. The resolver's
// callbacks must run on that thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/clock.h"
#include "delivery/outcome.h"
#include "dns/resolver.h"
#include "queue/domain_table.h"
#include "queue/queued_recipient.h"
#include "queue/retry_policy.h"

namespace hikyaku::delivery {

class Destinations : public std::enable_shared_from_this<Destinations> {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // The domain resolved (or was refreshed): the site its recipients join.
    virtual queue::SiteId SiteFor(uint32_t domain, const dns::Destination& destination) = 0;
    // A recipient is ready for its site: due now (fresh) or later (retry).
    virtual void Place(queue::SiteId site, const queue::QueuedRecipient& q, TimePoint due) = 0;
    // The lookup failed for a recipient. `q.attempts` counts this attempt;
    // `next` is its retry time, nullopt when it is final (bounced or expired:
    // `o.kind` tells which, kBounced for a permanent failure).
    virtual void LookupFailed(const queue::QueuedRecipient& q, const Outcome& o,
                              std::optional<TimePoint> next) = 0;
  };

  Destinations(dns::Resolver& resolver, queue::DomainTable& domains, const queue::RetryPolicy& retry,
               Handler& handler, const Clock& clock)
      : resolver_(resolver), domains_(domains), retry_(retry), handler_(handler), clock_(clock) {}

  // A recipient to deliver, due at `due`.
  void Enqueue(const queue::QueuedRecipient& q, TimePoint due);
  // Looks up again the domains whose retry time has come.
  void Tick(TimePoint now);
  // The earliest retry time of a waiting domain, if any.
  std::optional<TimePoint> NextWakeup() const;
  // The site of a resolved domain.
  std::optional<queue::SiteId> SiteOf(uint32_t domain) const;
  // Recipients waiting for a lookup (or its retry).
  size_t waiting() const;

 private:
  struct Waiting {
    queue::QueuedRecipient recipient;
    TimePoint due;
  };
  struct DomainState {
    enum class Status { kUnknown, kResolving, kResolved, kRetryWait };
    Status status = Status::kUnknown;
    queue::SiteId site;
    TimePoint expires;
    TimePoint retry_at;
    std::vector<Waiting> waiting;
  };

  DomainState& Domain(uint32_t id);
  void Resolve(uint32_t domain);
  void OnResolved(uint32_t domain, Result<dns::Destination> result, bool refresh);

  dns::Resolver& resolver_;
  queue::DomainTable& domains_;
  const queue::RetryPolicy& retry_;
  Handler& handler_;
  const Clock& clock_;
  std::vector<DomainState> states_;
  std::unordered_set<uint32_t> retry_domains_;
};

}  // namespace hikyaku::delivery
