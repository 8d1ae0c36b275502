// Dispatcher: turns queued recipients into SMTP transactions. It owns the
// delivery side's state — the Scheduler (site queues, fresh/retry lanes,
// retry wheel), HostHealth (dead hosts), the domain → site map — and drives
// SmtpConnections on its own io_context thread.
//
// Flow: Accept()/Recover() → resolve the recipient's domain (Router: static
// routes, then MX) → site → fresh lane (or retry wheel) → a connection of the
// site takes batches (one message, several RCPTs) → each recipient gets one
// Outcome (outcome.cc) → spool state + event → when every recipient of a
// message is final, the message is removed from the spool.
//
// Crash safety: a recipient's final state is written through the spool's
// group commit right after the reply; a crash between the 250 and that
// commit re-delivers it after restart (the documented duplicate window).
//
// Threading: every method runs on (or posts to) the dispatcher's executor.
// Accept() may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "base/clock.h"
#include "config/config.h"
#include "base/error.h"
#include "queue/scheduler.h"
#include "shaping/shaper.h"
#include "spool/spool.h"

namespace hikyaku::dns {
class Resolver;
}
namespace hikyaku::events {
class EventLog;
}

namespace hikyaku::delivery {

struct DispatcherStats {
  uint64_t delivered = 0;
  uint64_t deferred = 0;
  uint64_t bounced = 0;
  uint64_t expired = 0;
  uint64_t connections_opened = 0;
  uint64_t queued = 0;  // recipients known and not final
};

// The operator's view of the queues (admin/queues_view.h renders it).
struct HostView {
  std::string name;
  uint16_t port = 25;
  std::string state;  // HostHealth state: "up", "down", "probing"
  std::optional<TimePoint> down_until;
};
struct SiteView {
  queue::SiteStats stats;
  std::string last_failure;
  std::vector<HostView> hosts;
};
struct QueuesSnapshot {
  std::vector<SiteView> sites;  // in site id order
  size_t resolving = 0;         // recipients waiting for an MX lookup
};

// The operator's view of shaping (admin/shaping_view.h renders it).
struct TenantView {
  std::string name;
  std::string pool;
  bool moved = false;  // by the operator (API/CLI), not by the configuration
};
struct ShapingSnapshot {
  std::vector<shaping::Shaper::PairView> pairs;
  std::vector<shaping::Shaper::SourceView> sources;
  std::vector<shaping::Suspension> suspensions;
  std::vector<TenantView> tenants;
};

class Dispatcher {
 public:
  // `resolver` must deliver its callbacks on `context`'s thread.
  Dispatcher(boost::asio::io_context& context, const config::Config& config, spool::Spool& spool,
             events::EventLog& events, dns::Resolver& resolver, const Clock& clock);
  ~Dispatcher();

  // A recovered recipient (start-up, before Start()).
  // Its age (for retry.max_age) comes from the MessageId, which carries the
  // arrival time: recovery needs no extra read.
  void Recover(const spool::RecipientRecord& record, std::string_view tenant = {}, uint8_t priority = 0);
  // A newly accepted message; any thread.
  // `tenant` ("" = none) picks the pool and the fairness flow; priority 1 =
  // high (served before normal mail in its site lane).
  void Accept(MessageId id, TimePoint received_at, std::vector<std::string> recipients, std::string tenant = {},
              uint8_t priority = 0);

  void Start();
  // Stops opening connections; open ones finish their transaction and QUIT.
  void Stop();

  // Thread-safe snapshots for the HTTP API (refreshed by the dispatcher
  // at most every 250 ms).
  DispatcherStats Stats() const;
  QueuesSnapshot Queues() const;
  ShapingSnapshot Shaping() const;

  // Operator controls, from any thread: each runs on the dispatcher's thread
  // and is waited for (kTimeout if that thread does not answer in 5 s).
  // Suspensions, tenant moves and warm-up counts are persisted in
  // `state_path` (written whole, atomically) and restored at start-up.
  // duration 0: until resumed. kInvalidArgument names an unknown source,
  // tenant or pool, or an empty scope.
  Result<uint64_t> Suspend(shaping::SuspensionScope scope, Duration duration, std::string reason);
  Result<void> Resume(uint64_t id);  // kNotFound for no such suspension
  // Bounces every recipient queued (lanes and retry wheel) for `site` and/or
  // `tenant` (at least one) with `reason`; returns how many.
  Result<size_t> BounceQueued(std::string site, std::string tenant, std::string reason);
  // Mail of `tenant`, queued and future, leaves from `pool` from now on.
  Result<void> MoveTenant(std::string tenant, std::string pool);
  // Reload: the new snapshot's sources, pools, tenants, sites, reply rules
  // and warm-up, applied on the dispatcher's thread; connections and queued
  // mail stay.
  void Apply(std::shared_ptr<const config::Config> config);

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace hikyaku::delivery
