// Scheduler: decides which recipient goes out next, on which kind of
// connection, and when a deferred recipient is tried again. Pure logic, no
// I/O, no threads, no clock reads: every time-dependent call takes `now`,
// which the dispatcher reads from its Clock (tests use ManualClock).
//
// The dispatcher's loop, in short:
//   - Recovery/injection: GetOrCreateSite(key, limits); EnqueueFresh, or
//     EnqueueRetry(due) for recipients with attempts > 0.
//   - On wake-up (NextWakeup()) and regularly: Tick(now), then for every site
//     in TakeActivatedSites() (and every site whose connection closed):
//       while (auto lane = ConnectionWanted(site, reachable)) {
//         ConnectionOpened(site, *lane); start a connection;
//       }
//   - An open connection between transactions: lane = WorkFor(site, lane);
//     if none: idle or QUIT (then ConnectionClosed). Otherwise
//     TakeBatch(site, lane, max) gives the recipients of ONE transaction.
//   - Every recipient taken gets exactly one outcome: Delivered, Bounced,
//     Defer (attempt counted, back to the wheel or expired) or Requeue (no
//     attempt made: connection lost before MAIL FROM, host turned out down).
//   - A site whose hosts are all down (HostHealth): ConnectionWanted says no;
//     the dispatcher may DeferLane() its queued recipients (Postfix's "host
//     down" deferral) so they count an attempt and eventually expire.
//
// Lane rules (what ConnectionWanted enforces):
//   - connections of a site <= max_connections; of all sites <=
//     options.max_connections (0: no global cap);
//   - retry connections <= SiteLimits::RetryConnectionCap() (25% of 20 = 5);
//   - a lane gets another connection only while it has more runs (waiting
//     transactions, see RecipientQueue) than connections: one queued
//     recipient never opens a second connection;
//   - fresh first, except that while the retry lane has work and no
//     connection, the last free connection is kept for it (max >= 2), so a
//     steady flood of fresh mail cannot stop retries entirely.
// Each connection serves its own lane (TakeBatch), and WorkFor moves an idle
// connection to the other lane only within these budgets.
//
// Fairness (README.md, "Fairness"): a lane holds one FIFO per flow
// (tenant, priority; flows() interns them). TakeBatch serves high-priority
// flows strictly first, then normal flows by weighted round robin counted in
// recipients (tenant weight). Runs, and so ConnectionWanted, are sums over
// the flows that are not paused. Paused flows (SetFlowPaused) and paused
// sites (SetSitePaused) keep their recipients queued but hold no
// connection. Drain/DrainWaiting remove queued or waiting recipients for an
// operator bounce.
//
// Pacing: due retries leave the wheel at most options.retry.reactivation_rate
// per second (token bucket holding one second's worth), oldest first, so a
// million retries that fall due together trickle in: no "flush" herd.
//
// Thread-safety: not synchronised; one owner thread (the dispatcher's).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "queue/flow_table.h"
#include "queue/queued_recipient.h"
#include "queue/retry_policy.h"
#include "queue/site.h"
#include "queue/timer_wheel.h"

namespace hikyaku::queue {

struct SchedulerOptions {
  config::RetryConfig retry;
  uint64_t seed = 0;                        // jitter seed (RetryPolicy)
  uint32_t max_connections = 0;             // all sites together; 0 = no global cap
  Duration tick = std::chrono::seconds(1);  // retry wheel resolution

  static SchedulerOptions FromConfig(const config::Config& config, uint64_t seed);
};

struct DeferResult {
  enum class Kind : uint8_t {
    kScheduled,  // in the wheel, due at next_attempt
    kExpired,    // past retry.max_age: the caller bounces it (removed here)
  };
  Kind kind = Kind::kScheduled;
  TimePoint next_attempt;     // kScheduled only
  QueuedRecipient recipient;  // with the attempt counted, for the spool update
};

struct SiteStats {
  std::string key;
  size_t fresh = 0;    // in the fresh lane
  size_t retry = 0;    // in the retry lane
  size_t waiting = 0;  // in the retry wheel
  size_t in_flight = 0;
  uint32_t connections_fresh = 0;
  uint32_t connections_retry = 0;
  SiteCounters counters;
  std::string last_reply;
};

struct SchedulerTotals {
  size_t sites = 0;
  size_t fresh = 0;
  size_t retry = 0;
  size_t waiting = 0;
  size_t in_flight = 0;
  uint32_t connections_fresh = 0;
  uint32_t connections_retry = 0;
};

class Scheduler {
 public:
  // Which flows a connection may serve (a connection bound to a source
  // serves only tenants whose pool contains that source). An empty
  // std::function means every flow.
  using FlowFilter = std::function<bool(FlowId)>;

  // `start`: the current time (the wheel and the pacing bucket start here).
  Scheduler(const SchedulerOptions& options, TimePoint start);
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // --- Sites ---------------------------------------------------------------
  // The site named `key`, created with `limits` if new (an existing site
  // keeps its limits: use SetLimits on reload).
  SiteId GetOrCreateSite(std::string key, const SiteLimits& limits);
  std::optional<SiteId> FindSite(std::string_view key) const;
  void SetLimits(SiteId site, const SiteLimits& limits);
  const Site& site(SiteId id) const;
  size_t site_count() const { return sites_.size(); }
  // Visits every site in id order (operator view).
  void ForEachSite(const std::function<void(const Site&)>& visit) const;

  // --- Queueing ------------------------------------------------------------
  // Appends to the fresh lane. Sets r.site.
  void EnqueueFresh(SiteId site, QueuedRecipient r);
  // Puts r into the retry wheel, due at `due` (after Defer, and at recovery
  // for recipients with attempts > 0). Sets r.site.
  void EnqueueRetry(SiteId site, QueuedRecipient r, TimePoint due);

  // --- Connections ---------------------------------------------------------
  // Should the dispatcher open another connection for `site`, and for which
  // lane? nullopt when the site is unreachable (all its hosts down), when a
  // limit is reached, or when open connections suffice for the queued work.
  // Also nullopt for a paused site. Runs of paused flows do not count (a
  // suspended tenant holds no connection).
  std::optional<Lane> ConnectionWanted(SiteId site, bool site_reachable) const;
  // The same, counting only the runs of flows `eligible` accepts: "does a
  // connection from this source have work here?".
  std::optional<Lane> ConnectionWanted(SiteId site, bool site_reachable,
                                       const FlowFilter& eligible) const;
  void ConnectionOpened(SiteId site, Lane lane);
  void ConnectionClosed(SiteId site, Lane lane);
  // For an open connection of `current` between transactions: the lane it
  // should take its next batch from (re-labelling the connection when it
  // differs), or nullopt when it has nothing to do (idle or QUIT). A fresh
  // connection takes retry work only while the retry lane is under its cap;
  // a retry connection turns fresh when fresh work is short of connections
  // (but the last one stays while retries wait).
  // nullopt for a paused site (QUIT). With `eligible`, only work of the
  // flows it accepts counts (the connection's source may serve only some
  // tenants); paused flows never count.
  std::optional<Lane> WorkFor(SiteId site, Lane current);
  std::optional<Lane> WorkFor(SiteId site, Lane current, const FlowFilter& eligible);

  // The recipients of ONE transaction: the head of `lane` and the recipients
  // directly behind it that belong to the same message, at most
  // min(max_recipients, max_recipients_per_transaction) (and at least one if
  // the lane is not empty). Empty when the lane is empty. Each recipient
  // returned must later get exactly one outcome call.
  //
  // Which flow: the high-priority flows of the lane strictly first, then
  // the normal ones; within a class, the flow with the smallest pass
  // (weighted round robin counted in recipients: taking n recipients adds
  // n / weight to the flow's pass). Paused flows are skipped; an empty
  // batch for a paused site or when only paused flows have recipients.
  std::vector<QueuedRecipient> TakeBatch(SiteId site, Lane lane, size_t max_recipients);
  // The same, taking only from flows `eligible` accepts.
  std::vector<QueuedRecipient> TakeBatch(SiteId site, Lane lane, size_t max_recipients,
                                         const FlowFilter& eligible);

  // --- Outcomes ------------------------------------------------------------
  void Delivered(SiteId site, uint32_t count = 1);
  void Bounced(SiteId site, uint32_t count = 1);
  // Counts an attempt and schedules the retry (RetryPolicy, jittered per
  // message so siblings stay together), or reports expiry.
  DeferResult Defer(SiteId site, QueuedRecipient r, TimePoint now);
  // Back to the head of its flow's queue in `lane`, no attempt counted. The span form keeps the
  // order: after Requeue(batch) the lane starts with batch[0], batch[1], ...
  void Requeue(SiteId site, const QueuedRecipient& r, Lane lane);
  void Requeue(SiteId site, std::span<const QueuedRecipient> batch, Lane lane);
  // Defers up to `max_count` recipients waiting in `lane` (not taken) with
  // an attempt counted, as if each had been tried: for a site whose hosts
  // are all down. Results in lane order.
  std::vector<DeferResult> DeferLane(SiteId site, Lane lane, TimePoint now, size_t max_count);
  void SetLastReply(SiteId site, std::string_view reply);

  // --- Flows, suspensions, operator bounces --------------------------------
  FlowTable& flows() { return flows_; }
  const FlowTable& flows() const { return flows_; }
  // A paused flow's recipients stay queued (lanes and wheel) but are not
  // taken and count no runs. Resuming activates the sites holding its work.
  void SetFlowPaused(FlowId flow, bool paused);
  bool FlowPaused(FlowId flow) const;
  // A paused site wants no connection, WorkFor says QUIT, TakeBatch gives
  // nothing; its recipients stay, retries still come due into its lane.
  // Resuming activates the site if it has queued work.
  void SetSitePaused(SiteId site, bool paused);
  // Removes every recipient queued in the lanes of `site` whose flow `which`
  // accepts (paused or not), fresh lane first, each flow in its order.
  // Contract: the returned recipients count as in flight, like taken ones,
  // and each must get exactly one outcome (normally Bounced; Requeue puts
  // one back). Other flows keep their recipients and order.
  std::vector<QueuedRecipient> Drain(SiteId site, const FlowFilter& which);
  // The same for recipients waiting in the retry wheel (not yet due, or due
  // and held back by pacing): those of `site` whose flow `which` accepts.
  // Same contract as Drain. A full scan of the wheel: one call per operator
  // action, not per site in a loop; the second form selects across all
  // sites in one scan ("bounce everything of tenant T").
  std::vector<QueuedRecipient> DrainWaiting(SiteId site, const FlowFilter& which);
  std::vector<QueuedRecipient> DrainWaiting(
      const std::function<bool(SiteId, FlowId)>& which);

  // --- Time ----------------------------------------------------------------
  // Moves due retries into their sites' retry lanes, paced. Returns how many.
  size_t Tick(TimePoint now);
  // When Tick has something to do next: the next due retry, or when the
  // pacing bucket allows the next one. nullopt when nothing waits.
  std::optional<TimePoint> NextWakeup() const;
  // Sites that received work (fresh, reactivated retry, requeue) since the
  // last call, each once, in the order they became active.
  std::vector<SiteId> TakeActivatedSites();

  // --- Stats ---------------------------------------------------------------
  SiteStats Stats(SiteId site) const;
  SchedulerTotals Totals() const;
  const RetryPolicy& retry_policy() const { return policy_; }

 private:
  Site& At(SiteId id);
  void Activate(Site& site);
  DeferResult DeferTaken(Site& site, QueuedRecipient r, TimePoint now);
  void Refill(TimePoint now);
  bool Usable(FlowId flow, const FlowFilter* eligible) const;
  // Runs (or, for HasWork, recipients) of the lane's usable flows.
  size_t Runs(const FlowLane& lane, const FlowFilter* eligible) const;
  bool HasWork(const FlowLane& lane, const FlowFilter* eligible) const;
  bool High(FlowId flow) const { return flows_.priority(flow) == Priority::kHigh; }
  std::optional<Lane> ConnectionWantedImpl(SiteId site, bool site_reachable,
                                           const FlowFilter* eligible) const;
  std::optional<Lane> WorkForImpl(SiteId site, Lane current, const FlowFilter* eligible);
  std::vector<QueuedRecipient> TakeBatchImpl(SiteId site, Lane lane, size_t max_recipients,
                                             const FlowFilter* eligible);

  SchedulerOptions options_;
  RetryPolicy policy_;
  TimerWheel<QueuedRecipient> wheel_;
  std::vector<std::unique_ptr<Site>> sites_;
  // Keys point into each Site's own key_ (Sites are heap-allocated and
  // never removed, so the views stay valid).
  std::unordered_map<std::string_view, SiteId> by_key_;
  std::vector<SiteId> activated_;
  uint32_t total_connections_ = 0;
  FlowTable flows_;
  std::vector<bool> paused_flows_;  // indexed by FlowId; absent = not paused
  size_t paused_count_ = 0;
  // Token bucket in thousandths of a token (1000 = one reactivation).
  uint64_t tokens_milli_ = 0;
  TimePoint last_refill_;
};

}  // namespace hikyaku::queue
