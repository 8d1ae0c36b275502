#include "queue/scheduler.h"

#include <algorithm>
#include <limits>

#include "base/check.h"

namespace hikyaku::queue {

namespace {
constexpr uint64_t kMilli = 1000;  // thousandths of a token per token
// Pass units per recipient at weight 1: divisible by every weight 1..16, so
// small weights share exactly.
constexpr uint64_t kPassPerRecipient = 720720;
}  // namespace

SchedulerOptions SchedulerOptions::FromConfig(const config::Config& config, uint64_t seed) {
  SchedulerOptions options;
  options.retry = config.retry;
  options.seed = seed;
  options.max_connections = config.delivery.max_connections;
  return options;
}

Scheduler::Scheduler(const SchedulerOptions& options, TimePoint start)
    : options_(options),
      policy_(options.retry, options.seed),
      wheel_(start, options.tick),
      tokens_milli_(uint64_t{options.retry.reactivation_rate} * kMilli),
      last_refill_(start) {}

// --- Sites -------------------------------------------------------------------

SiteId Scheduler::GetOrCreateSite(std::string key, const SiteLimits& limits) {
  if (auto it = by_key_.find(key); it != by_key_.end()) return it->second;
  HIKYAKU_CHECK(sites_.size() < UINT32_MAX);
  const SiteId id{static_cast<uint32_t>(sites_.size())};
  sites_.push_back(std::make_unique<Site>(id, std::move(key), limits));
  by_key_.emplace(sites_.back()->key(), id);
  return id;
}

std::optional<SiteId> Scheduler::FindSite(std::string_view key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  return it->second;
}

void Scheduler::SetLimits(SiteId site, const SiteLimits& limits) { At(site).limits_ = limits; }

const Site& Scheduler::site(SiteId id) const {
  HIKYAKU_CHECK(id.value < sites_.size());
  return *sites_[id.value];
}

Site& Scheduler::At(SiteId id) {
  HIKYAKU_CHECK(id.value < sites_.size());
  return *sites_[id.value];
}

void Scheduler::ForEachSite(const std::function<void(const Site&)>& visit) const {
  for (const auto& s : sites_) visit(*s);
}

void Scheduler::Activate(Site& site) {
  if (site.activated_) return;
  site.activated_ = true;
  activated_.push_back(site.id());
}

std::vector<SiteId> Scheduler::TakeActivatedSites() {
  std::vector<SiteId> out;
  out.swap(activated_);
  for (SiteId id : out) sites_[id.value]->activated_ = false;
  return out;
}

// --- Queueing ----------------------------------------------------------------

void Scheduler::EnqueueFresh(SiteId id, QueuedRecipient r) {
  Site& s = At(id);
  r.site = id;
  s.lanes_[Site::Index(Lane::kFresh)].PushBack(r, High(r.flow));
  ++s.counters_.enqueued_fresh;
  Activate(s);
}

void Scheduler::EnqueueRetry(SiteId id, QueuedRecipient r, TimePoint due) {
  Site& s = At(id);
  r.site = id;
  (void)flows_.priority(r.flow);  // checks the flow exists before it waits for days
  wheel_.Insert(due, r);
  ++s.waiting_;
}

// --- Connections -------------------------------------------------------------

bool Scheduler::Usable(FlowId flow, const FlowFilter* eligible) const {
  if (paused_count_ != 0 && flow < paused_flows_.size() && paused_flows_[flow]) return false;
  return eligible == nullptr || !*eligible || (*eligible)(flow);
}

size_t Scheduler::Runs(const FlowLane& lane, const FlowFilter* eligible) const {
  // Fast path: no pause anywhere and no filter, the lane's cached total.
  if (paused_count_ == 0 && (eligible == nullptr || !*eligible)) return lane.runs();
  size_t runs = 0;
  for (const auto& e : lane.flows()) {
    if (Usable(e.flow, eligible)) runs += e.queue.runs();
  }
  return runs;
}

bool Scheduler::HasWork(const FlowLane& lane, const FlowFilter* eligible) const {
  if (paused_count_ == 0 && (eligible == nullptr || !*eligible)) return !lane.empty();
  for (const auto& e : lane.flows()) {
    if (Usable(e.flow, eligible)) return true;  // entries are never empty
  }
  return false;
}

std::optional<Lane> Scheduler::ConnectionWanted(SiteId id, bool site_reachable) const {
  return ConnectionWantedImpl(id, site_reachable, nullptr);
}

std::optional<Lane> Scheduler::ConnectionWanted(SiteId id, bool site_reachable,
                                                const FlowFilter& eligible) const {
  return ConnectionWantedImpl(id, site_reachable, &eligible);
}

std::optional<Lane> Scheduler::ConnectionWantedImpl(SiteId id, bool site_reachable,
                                                    const FlowFilter* eligible) const {
  // Waiting for a dead site must not occupy a slot: the Postfix failure mode
  // where every delivery agent sits in a 30 s connect timeout.
  if (!site_reachable) return std::nullopt;
  if (options_.max_connections != 0 && total_connections_ >= options_.max_connections) {
    return std::nullopt;
  }
  const Site& s = site(id);
  if (s.paused_) return std::nullopt;  // a suspended site holds no connection
  const uint32_t max = s.limits_.max_connections;
  const uint32_t fresh_conns = s.connections(Lane::kFresh);
  const uint32_t retry_conns = s.connections(Lane::kRetry);
  const uint32_t total = fresh_conns + retry_conns;
  if (total >= max) return std::nullopt;

  const bool fresh_wants = Runs(s.lane(Lane::kFresh), eligible) > fresh_conns;
  const bool retry_wants = retry_conns < s.limits_.RetryConnectionCap() &&
                           Runs(s.lane(Lane::kRetry), eligible) > retry_conns;
  const uint32_t reserve = (retry_wants && retry_conns == 0 && max >= 2) ? 1 : 0;
  if (fresh_wants && total + reserve < max) return Lane::kFresh;
  if (retry_wants) return Lane::kRetry;
  return std::nullopt;
}

void Scheduler::ConnectionOpened(SiteId id, Lane lane) {
  Site& s = At(id);
  ++s.connections_[Site::Index(lane)];
  ++total_connections_;
}

void Scheduler::ConnectionClosed(SiteId id, Lane lane) {
  Site& s = At(id);
  HIKYAKU_CHECK(s.connections_[Site::Index(lane)] > 0);
  --s.connections_[Site::Index(lane)];
  --total_connections_;
}

std::optional<Lane> Scheduler::WorkFor(SiteId id, Lane current) {
  return WorkForImpl(id, current, nullptr);
}

std::optional<Lane> Scheduler::WorkFor(SiteId id, Lane current, const FlowFilter& eligible) {
  return WorkForImpl(id, current, &eligible);
}

std::optional<Lane> Scheduler::WorkForImpl(SiteId id, Lane current, const FlowFilter* eligible) {
  Site& s = At(id);
  HIKYAKU_CHECK(s.connections_[Site::Index(current)] > 0);
  if (s.paused_) return std::nullopt;
  const bool fresh_has = HasWork(s.lane(Lane::kFresh), eligible);
  const bool retry_has = HasWork(s.lane(Lane::kRetry), eligible);
  auto relabel = [&s](Lane from, Lane to) {
    --s.connections_[Site::Index(from)];
    ++s.connections_[Site::Index(to)];
    return to;
  };
  if (current == Lane::kFresh) {
    if (fresh_has) return Lane::kFresh;
    if (retry_has && s.connections(Lane::kRetry) < s.limits_.RetryConnectionCap()) {
      return relabel(Lane::kFresh, Lane::kRetry);
    }
    return std::nullopt;
  }
  const bool fresh_short = Runs(s.lane(Lane::kFresh), eligible) > s.connections(Lane::kFresh);
  const bool keep_for_retry = retry_has && s.connections(Lane::kRetry) == 1;
  if (fresh_short && !keep_for_retry) return relabel(Lane::kRetry, Lane::kFresh);
  if (retry_has) return Lane::kRetry;
  if (fresh_has) return relabel(Lane::kRetry, Lane::kFresh);
  return std::nullopt;
}

std::vector<QueuedRecipient> Scheduler::TakeBatch(SiteId id, Lane lane, size_t max_recipients) {
  return TakeBatchImpl(id, lane, max_recipients, nullptr);
}

std::vector<QueuedRecipient> Scheduler::TakeBatch(SiteId id, Lane lane, size_t max_recipients,
                                                  const FlowFilter& eligible) {
  return TakeBatchImpl(id, lane, max_recipients, &eligible);
}

std::vector<QueuedRecipient> Scheduler::TakeBatchImpl(SiteId id, Lane lane,
                                                      size_t max_recipients,
                                                      const FlowFilter* eligible) {
  Site& s = At(id);
  FlowLane& fl = s.lanes_[Site::Index(lane)];
  std::vector<QueuedRecipient> batch;
  if (fl.empty() || s.paused_) return batch;
  // The next flow: high priority strictly first (urgent mail must not wait
  // behind a campaign), then the smallest pass; ties go to the flow that
  // arrived first. Linear in the lane's flows, which are few.
  size_t best = fl.entries().size();
  bool best_high = false;
  for (size_t i = 0; i < fl.entries().size(); ++i) {
    const FlowLane::Entry& e = fl.entries()[i];
    if (!Usable(e.flow, eligible)) continue;
    const bool high = High(e.flow);
    if (best == fl.entries().size() || (high && !best_high) ||
        (high == best_high && e.pass < fl.entries()[best].pass)) {
      best = i;
      best_high = high;
    }
  }
  if (best == fl.entries().size()) return batch;
  FlowLane::Entry& e = fl.entries()[best];
  const size_t limit = std::max<size_t>(
      1, std::min<size_t>(max_recipients, s.limits_.max_recipients_per_transaction));
  batch.reserve(std::min(limit, e.queue.size()));
  batch.push_back(fl.PopFront(best));
  // Only the contiguous run: recipients of one message are enqueued together
  // and deferred siblings come back together (same jitter), so scanning
  // further would cost O(lane) for little gain.
  while (batch.size() < limit && !e.queue.empty() &&
         e.queue.Front().message == batch.front().message) {
    batch.push_back(fl.PopFront(best));
  }
  e.pass += batch.size() * (kPassPerRecipient / flows_.weight(e.flow) +
                            (kPassPerRecipient % flows_.weight(e.flow) != 0 ? 1 : 0));
  fl.Prune(best);
  s.in_flight_ += batch.size();
  s.counters_.taken += batch.size();
  return batch;
}

// --- Outcomes ----------------------------------------------------------------

void Scheduler::Delivered(SiteId id, uint32_t count) {
  Site& s = At(id);
  // Two outcomes for one recipient would be a dispatcher bug that could
  // deliver mail twice: stop rather than count on.
  HIKYAKU_CHECK(s.in_flight_ >= count);
  s.in_flight_ -= count;
  s.counters_.delivered += count;
}

void Scheduler::Bounced(SiteId id, uint32_t count) {
  Site& s = At(id);
  HIKYAKU_CHECK(s.in_flight_ >= count);
  s.in_flight_ -= count;
  s.counters_.bounced += count;
}

DeferResult Scheduler::Defer(SiteId id, QueuedRecipient r, TimePoint now) {
  Site& s = At(id);
  HIKYAKU_CHECK(s.in_flight_ > 0);
  --s.in_flight_;
  return DeferTaken(s, r, now);
}

DeferResult Scheduler::DeferTaken(Site& s, QueuedRecipient r, TimePoint now) {
  if (r.attempts < kMaxAttempts) ++r.attempts;
  r.site = s.id();
  DeferResult result;
  const auto next = policy_.NextAttemptFor(r, now);
  if (!next) {
    result.kind = DeferResult::Kind::kExpired;
    ++s.counters_.expired;
  } else {
    result.kind = DeferResult::Kind::kScheduled;
    result.next_attempt = *next;
    wheel_.Insert(*next, r);
    ++s.waiting_;
    ++s.counters_.deferred;
  }
  result.recipient = r;
  return result;
}

void Scheduler::Requeue(SiteId id, const QueuedRecipient& r, Lane lane) {
  Requeue(id, std::span<const QueuedRecipient>(&r, 1), lane);
}

void Scheduler::Requeue(SiteId id, std::span<const QueuedRecipient> batch, Lane lane) {
  Site& s = At(id);
  HIKYAKU_CHECK(s.in_flight_ >= batch.size());
  FlowLane& q = s.lanes_[Site::Index(lane)];
  for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
    QueuedRecipient r = *it;
    r.site = id;
    q.PushFront(r, High(r.flow));
  }
  s.in_flight_ -= batch.size();
  s.counters_.requeued += batch.size();
  if (!batch.empty()) Activate(s);
}

std::vector<DeferResult> Scheduler::DeferLane(SiteId id, Lane lane, TimePoint now,
                                              size_t max_count) {
  Site& s = At(id);
  FlowLane& q = s.lanes_[Site::Index(lane)];
  std::vector<DeferResult> out;
  out.reserve(std::min(max_count, q.size()));
  // Every flow, paused or not: the site is unreachable for all of them.
  while (out.size() < max_count && !q.empty()) {
    out.push_back(DeferTaken(s, q.PopFront(0), now));
    q.Prune(0);
  }
  return out;
}

void Scheduler::SetLastReply(SiteId id, std::string_view reply) {
  At(id).last_reply_.assign(reply);
}

// --- Flows, suspensions, operator bounces ------------------------------------

void Scheduler::SetFlowPaused(FlowId flow, bool paused) {
  HIKYAKU_CHECK(flow < flows_.size());
  if (paused_flows_.size() <= flow) paused_flows_.resize(size_t{flow} + 1, false);
  if (paused_flows_[flow] == paused) return;
  paused_flows_[flow] = paused;
  if (paused) {
    ++paused_count_;
    return;
  }
  --paused_count_;
  // Resumed: the sites holding its work must be reconsidered by the
  // dispatcher. A scan of all sites, once per operator action.
  for (const auto& s : sites_) {
    if (s->lane(Lane::kFresh).Find(flow) || s->lane(Lane::kRetry).Find(flow)) Activate(*s);
  }
}

bool Scheduler::FlowPaused(FlowId flow) const {
  return flow < paused_flows_.size() && paused_flows_[flow];
}

void Scheduler::SetSitePaused(SiteId id, bool paused) {
  Site& s = At(id);
  if (s.paused_ == paused) return;
  s.paused_ = paused;
  if (!paused && (!s.lane(Lane::kFresh).empty() || !s.lane(Lane::kRetry).empty())) Activate(s);
}

std::vector<QueuedRecipient> Scheduler::Drain(SiteId id, const FlowFilter& which) {
  Site& s = At(id);
  std::vector<QueuedRecipient> out;
  for (FlowLane& lane : s.lanes_) {
    for (size_t i = 0; i < lane.flows().size();) {
      if (!which(lane.entries()[i].flow)) {
        ++i;
        continue;
      }
      while (!lane.entries()[i].queue.empty()) out.push_back(lane.PopFront(i));
      lane.Prune(i);  // removes entry i; the next one moves into its place
    }
  }
  s.in_flight_ += out.size();
  s.counters_.drained += out.size();
  return out;
}

std::vector<QueuedRecipient> Scheduler::DrainWaiting(SiteId id, const FlowFilter& which) {
  At(id);  // checks the id
  return DrainWaiting([&](SiteId site, FlowId flow) { return site == id && which(flow); });
}

std::vector<QueuedRecipient> Scheduler::DrainWaiting(
    const std::function<bool(SiteId, FlowId)>& which) {
  std::vector<QueuedRecipient> out;
  wheel_.RemoveIf([&](const QueuedRecipient& r) { return which(r.site, r.flow); },
                  [&](QueuedRecipient&& r) {
                    Site& s = *sites_[r.site.value];
                    --s.waiting_;
                    ++s.in_flight_;
                    ++s.counters_.drained;
                    out.push_back(r);
                  });
  return out;
}

// --- Time --------------------------------------------------------------------

void Scheduler::Refill(TimePoint now) {
  if (now <= last_refill_) return;
  const uint64_t rate = options_.retry.reactivation_rate;
  const uint64_t capacity = rate * kMilli;  // one second's worth: the largest burst
  const auto elapsed = static_cast<uint64_t>((now - last_refill_).count());
  // elapsed ms * rate/s = elapsed * rate thousandths of a token; saturate
  // before multiplying after a long idle period.
  tokens_milli_ = elapsed >= kMilli ? capacity : std::min(capacity, tokens_milli_ + elapsed * rate);
  last_refill_ = now;
}

size_t Scheduler::Tick(TimePoint now) {
  const uint64_t rate = options_.retry.reactivation_rate;
  size_t budget = std::numeric_limits<size_t>::max();  // rate 0: not paced
  if (rate != 0) {
    Refill(now);
    budget = static_cast<size_t>(tokens_milli_ / kMilli);
  }
  const size_t moved = wheel_.DrainDue(now, budget, [this](QueuedRecipient&& r) {
    Site& s = *sites_[r.site.value];
    --s.waiting_;
    ++s.counters_.reactivated;
    s.lanes_[Site::Index(Lane::kRetry)].PushBack(r, High(r.flow));
    Activate(s);
  });
  if (rate != 0) tokens_milli_ -= moved * kMilli;
  return moved;
}

std::optional<TimePoint> Scheduler::NextWakeup() const {
  const uint64_t rate = options_.retry.reactivation_rate;
  if (wheel_.ready() > 0 && rate != 0 && tokens_milli_ < kMilli) {
    // Due entries are held back by pacing: wake when the next token is there.
    const uint64_t missing = kMilli - tokens_milli_;
    return last_refill_ + Duration(static_cast<int64_t>((missing + rate - 1) / rate));
  }
  return wheel_.NextDue();
}

// --- Stats -------------------------------------------------------------------

SiteStats Scheduler::Stats(SiteId id) const {
  const Site& s = site(id);
  SiteStats st;
  st.key = s.key();
  st.fresh = s.lane(Lane::kFresh).size();
  st.retry = s.lane(Lane::kRetry).size();
  st.waiting = s.waiting();
  st.in_flight = s.in_flight();
  st.connections_fresh = s.connections(Lane::kFresh);
  st.connections_retry = s.connections(Lane::kRetry);
  st.counters = s.counters();
  st.last_reply = s.last_reply();
  return st;
}

SchedulerTotals Scheduler::Totals() const {
  SchedulerTotals t;
  t.sites = sites_.size();
  for (const auto& s : sites_) {
    t.fresh += s->lane(Lane::kFresh).size();
    t.retry += s->lane(Lane::kRetry).size();
    t.waiting += s->waiting();
    t.in_flight += s->in_flight();
    t.connections_fresh += s->connections(Lane::kFresh);
    t.connections_retry += s->connections(Lane::kRetry);
  }
  return t;
}

}  // namespace hikyaku::queue
