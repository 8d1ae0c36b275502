#include "delivery/dispatcher.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <future>

#include "delivery/destinations.h"
#include "delivery/outcome.h"
#include "delivery/recipient_ledger.h"
#include "delivery/shaping_options.h"
#include "delivery/smtp_connection.h"
#include "dns/resolver.h"
#include "events/event_log.h"
#include "queue/domain_table.h"
#include "queue/host_health.h"
#include "queue/site_assignment.h"
#include "shaping/shaper.h"

namespace hikyaku::delivery {

namespace asio = boost::asio;
using queue::Lane;
using queue::QueuedRecipient;
using queue::SiteId;
using spool::RecipientState;

namespace {

std::string DomainOf(std::string_view address) {
  auto at = address.rfind('@');
  return dns::NormalizeName(at == std::string_view::npos ? std::string_view() : address.substr(at + 1));
}

// HostHealth is keyed by host and port: static routes may point several
// sites at one address with different ports, and one of them being dead
// says nothing about the others.
std::string HealthKey(const dns::MxHost& host) { return host.name + ":" + std::to_string(host.port); }

}  // namespace

class Dispatcher::Impl : public std::enable_shared_from_this<Impl>, public Destinations::Handler {
 public:
  Impl(asio::io_context& io, const config::Config& config, spool::Spool& spool, events::EventLog& events,
       dns::Resolver& resolver, const Clock& clock)
      : io_(io),
        hold_(config.delivery.hold),
        idle_timeout_(config.delivery.idle_timeout),
        delivery_(config.delivery),
        clock_(clock),
        scheduler_(queue::SchedulerOptions::FromConfig(config, std::random_device{}()), clock.Now()),
        health_(config.delivery),
        shaper_(ShaperConfigFrom(config), clock.Now()),
        ledger_(spool, events, clock),
        spool_(spool),
        events_(events),
        wake_(io) {
    destinations_ = std::make_shared<Destinations>(resolver, domains_, scheduler_.retry_policy(), *this, clock);
    if (config.delivery.starttls == config::StartTlsPolicy::kOpportunistic) tls_ = MakeOpportunisticTlsContext();
    ApplyTables(config);
    // Beside the spool directory: the operator's holds, tenant moves and
    // warm-up counts (docs/delivery.md, "Operator state").
    SetStatePath(config.spool.path.parent_path() / "shaping-state.json");
    LoadState();
  }

  // The parts of a configuration that may change at run time (reload):
  // site assignment and limits, sources and their bind addresses, pools,
  // tenants, reply rules. Learned shaping state is kept by name.
  void ApplyTables(const config::Config& config) {
    std::vector<queue::NamedSite> named;
    site_configs_.clear();
    for (const auto& site : config.sites) {
      named.push_back({site.name, site.mx_patterns});
      site_configs_.emplace(site.name, site);
    }
    assignment_ = queue::SiteAssignment(std::move(named));
    options_ = ConnectionOptions::FromConfig(config.delivery, config.server.hostname, tls_.get());
    source_options_.clear();
    for (const auto& source : config.sources) {
      ConnectionOptions o = options_;
      o.helo_name = source.helo_name.empty() ? options_.helo_name : source.helo_name;
      o.source_address.reset();
      if (source.address) {
        boost::system::error_code ec;
        auto address = asio::ip::make_address(source.address->ToString(), ec);
        if (!ec) o.source_address = address;  // config validated it already
      }
      source_options_.push_back(std::move(o));
    }
    reply_rules_ = ReplyRulesFrom(config);
    tenant_pools_.clear();
    tenant_weights_.clear();
    for (const auto& t : config.tenants) {
      tenant_pools_[t.name] = t.pool;
      tenant_weights_[t.name] = t.weight;
    }
    default_pool_name_ = config.delivery.pool.empty() ? "default" : config.delivery.pool;
    flow_pools_.clear();
    for (const auto& [tenant, weight] : tenant_weights_) scheduler_.flows().SetTenantWeight(tenant, weight);
  }

  void Apply(std::shared_ptr<const config::Config> config) {
    delivery_ = config->delivery;
    idle_timeout_ = config->delivery.idle_timeout;
    shaper_.Configure(ShaperConfigFrom(*config), clock_.Now());
    ApplyTables(*config);
    // Existing sites take their new limits; new ones are made with them.
    scheduler_.ForEachSite([&](const queue::Site& site) {
      const config::SiteConfig* sc = nullptr;
      if (auto it = site_configs_.find(site.key()); it != site_configs_.end()) sc = &it->second;
      pending_limits_.emplace_back(site.id(), queue::SiteLimits::FromConfig(delivery_, sc));
    });
    for (const auto& [id, limits] : pending_limits_) scheduler_.SetLimits(id, limits);
    pending_limits_.clear();
    for (auto& [id, info] : sites_) starved_.insert(id);  // look at every site again
    DrainShapingEvents();
    SchedulePump();
  }

  // --- Arrival ---------------------------------------------------------------

  void Recover(const spool::RecipientRecord& record, std::string_view tenant, uint8_t priority) {
    if (hold_) return ledger_.CountHeld(1);  // held mail stays in the spool only
    QueuedRecipient q;
    q.message = record.message;
    q.received_at = record.message.ArrivalTime();
    q.index = record.index;
    q.domain = domains_.Intern(DomainOf(record.recipient));
    q.attempts = static_cast<uint16_t>(std::min<uint32_t>(record.attempts, queue::kMaxAttempts));
    q.flow = FlowOf(tenant, priority);
    ledger_.Track(record.message, 1, 0);
    destinations_->Enqueue(q, record.next_attempt);
  }

  void Accept(MessageId id, TimePoint received_at, const std::vector<std::string>& recipients,
              std::string_view tenant, uint8_t priority) {
    if (hold_) return ledger_.CountHeld(recipients.size());
    const auto count = static_cast<uint32_t>(recipients.size());
    ledger_.Track(id, count, count);
    const TimePoint now = clock_.Now();
    const queue::FlowId flow = FlowOf(tenant, priority);
    for (uint32_t i = 0; i < count; ++i) {
      QueuedRecipient q;
      q.message = id;
      q.received_at = received_at;
      q.index = i;
      q.domain = domains_.Intern(DomainOf(recipients[i]));
      q.flow = flow;
      destinations_->Enqueue(q, now);
    }
  }

  // --- Tenants, flows and pools ------------------------------------------------

  queue::FlowId FlowOf(std::string_view tenant, uint8_t priority) {
    auto& flows = scheduler_.flows();
    const queue::FlowId flow = flows.Intern(tenant, priority ? queue::Priority::kHigh : queue::Priority::kNormal);
    if (!tenant.empty())
      if (auto it = tenant_weights_.find(std::string(tenant)); it != tenant_weights_.end())
        flows.SetTenantWeight(tenant, it->second);
    return flow;
  }

  // The pool a flow's mail leaves from: its tenant's (an operator move wins
  // over the configuration), else delivery.pool. Looked up when a
  // connection takes work, so a move applies to mail already queued.
  shaping::PoolId PoolOfFlow(queue::FlowId flow) {
    if (flow < flow_pools_.size() && flow_pools_[flow] >= 0) return static_cast<shaping::PoolId>(flow_pools_[flow]);
    const std::string tenant(scheduler_.flows().tenant(flow));
    std::string name = default_pool_name_;
    if (!tenant.empty()) {
      if (auto it = tenant_moves_.find(tenant); it != tenant_moves_.end()) name = it->second;
      else if (auto it = tenant_pools_.find(tenant); it != tenant_pools_.end()) name = it->second;
    }
    auto pool = shaper_.FindPool(name);
    if (!pool) pool = shaper_.FindPool(default_pool_name_);
    const shaping::PoolId id = pool.value_or(0);
    if (flow >= flow_pools_.size()) flow_pools_.resize(flow + 1, -1);
    flow_pools_[flow] = static_cast<int32_t>(id);
    return id;
  }

  // Flows whose mail a connection from `source` may carry to `site` now.
  queue::Scheduler::FlowFilter SourceFilter(shaping::SourceId source, const std::string& site, TimePoint now) {
    return [this, source, &site, now](queue::FlowId flow) {
      return shaper_.PoolContains(PoolOfFlow(flow), source) &&
             !shaper_.TenantBlocked(scheduler_.flows().tenant(flow), site, now);
    };
  }
  queue::Scheduler::FlowFilter PoolFilter(shaping::PoolId pool, const std::string& site, TimePoint now) {
    return [this, pool, &site, now](queue::FlowId flow) {
      return PoolOfFlow(flow) == pool && !shaper_.TenantBlocked(scheduler_.flows().tenant(flow), site, now);
    };
  }

  void Start() { SchedulePump(); }
  asio::any_io_executor io_executor() { return io_.get_executor(); }

  void Stop() {
    SaveState();  // the warm-up counts of this run
    stopped_ = true;
    wake_.cancel();
    for (auto& [id, info] : sites_)
      for (auto* conn : info.idle) conn->CancelIdle();
  }


  // --- Operator controls (on this thread; Dispatcher:: waits for them) ---------

  bool KnownTenant(const std::string& tenant) const { return tenant_pools_.count(tenant) > 0; }

  Result<uint64_t> Suspend(shaping::SuspensionScope scope, Duration duration, std::string reason) {
    if (scope.empty()) return Fail(ErrorCode::kInvalidArgument, "a suspension names a site, a source or a tenant");
    if (!scope.source.empty() && !shaper_.FindSource(scope.source))
      return Fail(ErrorCode::kInvalidArgument, "no such source: " + scope.source);
    if (!scope.tenant.empty() && !KnownTenant(scope.tenant))
      return Fail(ErrorCode::kInvalidArgument, "no such tenant: " + scope.tenant);
    const TimePoint now = clock_.Now();
    const TimePoint until = duration.count() > 0 ? now + duration : TimePoint::max();
    const uint64_t id = shaper_.suspensions().Add(scope, until, reason, now);
    events::EventField extra[] = {{"suspension", id},         {"site", scope.site}, {"source", scope.source},
                                  {"tenant", scope.tenant},   {"reason", reason},
                                  {"until", until == TimePoint::max() ? int64_t{0} : ToUnixMillis(until)}};
    events_.Write(events::Event{now, "suspended", MessageId(), "", "", extra});
    spdlog::info("operator: suspension {} (site '{}', source '{}', tenant '{}'): {}", id, scope.site, scope.source,
                 scope.tenant, reason);
    SaveState();
    // Idle connections look again now: one the suspension covers closes,
    // so a suspended queue holds no connection (the others wait on).
    for (auto& [site_id, info] : sites_)
      for (auto* conn : info.idle) conn->CancelIdle();
    return id;
  }

  Result<void> Resume(uint64_t id) {
    if (!shaper_.suspensions().Remove(id)) return Fail(ErrorCode::kNotFound, "no such suspension: " + std::to_string(id));
    events::EventField extra[] = {{"suspension", id}};
    events_.Write(events::Event{clock_.Now(), "resumed", MessageId(), "", "", extra});
    SaveState();
    LookAgainAtEverySite();
    return {};
  }

  Result<size_t> BounceQueued(const std::string& site, const std::string& tenant, const std::string& reason) {
    if (site.empty() && tenant.empty()) return Fail(ErrorCode::kInvalidArgument, "name a site or a tenant to bounce");
    if (!tenant.empty() && !KnownTenant(tenant)) return Fail(ErrorCode::kInvalidArgument, "no such tenant: " + tenant);
    auto& flows = scheduler_.flows();
    auto of_tenant = [&](queue::FlowId f) { return tenant.empty() || flows.tenant(f) == tenant; };
    Outcome o;
    o.kind = Outcome::Kind::kBounced;
    o.enhanced = "5.0.0";
    o.text = "bounced by the operator" + (reason.empty() ? std::string() : ": " + reason);
    size_t n = 0;
    std::vector<SiteId> targets;
    if (!site.empty()) {
      if (auto id = scheduler_.FindSite(site)) targets.push_back(*id);
      else return 0;
    } else {
      scheduler_.ForEachSite([&](const queue::Site& s) { targets.push_back(s.id()); });
    }
    for (SiteId id : targets) {
      for (const auto& q : scheduler_.Drain(id, of_tenant)) Apply(id, q, o, ContextFor(id, q, "", "", nullptr)), ++n;
    }
    auto waiting = site.empty() ? scheduler_.DrainWaiting([&](SiteId, queue::FlowId f) { return of_tenant(f); })
                                : scheduler_.DrainWaiting(targets.front(), of_tenant);
    for (const auto& q : waiting) Apply(q.site, q, o, ContextFor(q.site, q, "", "", nullptr)), ++n;
    spdlog::info("operator: bounced {} recipients (site '{}', tenant '{}'): {}", n, site, tenant, reason);
    return n;
  }

  Result<void> MoveTenant(const std::string& tenant, const std::string& pool) {
    if (!KnownTenant(tenant)) return Fail(ErrorCode::kNotFound, "no such tenant: " + tenant);
    if (!shaper_.FindPool(pool)) return Fail(ErrorCode::kInvalidArgument, "no such pool: " + pool);
    tenant_moves_[tenant] = pool;
    flow_pools_.clear();
    events::EventField extra[] = {{"tenant", tenant}, {"pool", pool}};
    events_.Write(events::Event{clock_.Now(), "tenant_moved", MessageId(), "", "", extra});
    spdlog::info("operator: tenant {} now sends from pool {}", tenant, pool);
    SaveState();
    LookAgainAtEverySite();
    return {};
  }

  void LookAgainAtEverySite() {
    scheduler_.ForEachSite([&](const queue::Site& s) { starved_.insert(s.id().value); });
    SchedulePump();
  }

  // --- Persisted operator state --------------------------------------------------

  void SetStatePath(std::filesystem::path path) { state_path_ = std::move(path); }

  void SaveState() {
    if (state_path_.empty()) return;
    const TimePoint now = clock_.Now();
    nlohmann::json suspensions = nlohmann::json::array();
    for (const auto& s : shaper_.suspensions().List())
      suspensions.push_back({{"id", s.id},
                             {"site", s.scope.site},
                             {"source", s.scope.source},
                             {"tenant", s.scope.tenant},
                             {"created", ToUnixMillis(s.created)},
                             {"until", s.until == TimePoint::max() ? int64_t{0} : ToUnixMillis(s.until)},
                             {"reason", s.reason}});
    nlohmann::json warmup = nlohmann::json::array();
    for (const auto& c : shaper_.WarmupCounts(now))
      warmup.push_back({{"source", c.source}, {"site", c.site}, {"today", c.sent_today}, {"hour", c.sent_this_hour}});
    nlohmann::json state = {{"version", 1}, {"saved", ToUnixMillis(now)}, {"suspensions", suspensions},
                            {"tenant_pools", tenant_moves_}, {"warmup", warmup}};
    const auto tmp = state_path_.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << state.dump(2) << "\n";
      if (!out) {
        spdlog::error("cannot write the shaping state {}", tmp);
        return;
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, state_path_, ec);
    if (ec) spdlog::error("cannot replace the shaping state {}: {}", state_path_.string(), ec.message());
    last_state_save_ = now;
  }

  // At start-up, before Start(). A missing file is a first start; a broken
  // one is reported and ignored (holds are an operator's convenience: the
  // spool, not this file, is what must never be lost).
  void LoadState() {
    if (state_path_.empty() || !std::filesystem::exists(state_path_)) return;
    try {
      std::ifstream in(state_path_);
      const auto state = nlohmann::json::parse(in);
      const TimePoint now = clock_.Now();
      std::vector<shaping::Suspension> list;
      static const nlohmann::json kNone = nlohmann::json::array();
      auto member = [&](const char* name) -> const nlohmann::json& {
        auto it = state.find(name);
        return it == state.end() ? kNone : *it;
      };
      for (const auto& j : member("suspensions")) {
        shaping::Suspension s;
        s.id = j.at("id").get<uint64_t>();
        s.scope = {j.value("site", ""), j.value("source", ""), j.value("tenant", "")};
        s.created = FromUnixMillis(j.value("created", int64_t{0}));
        const int64_t until = j.value("until", int64_t{0});
        s.until = until == 0 ? TimePoint::max() : FromUnixMillis(until);
        s.reason = j.value("reason", "");
        if (s.until > now) list.push_back(std::move(s));
      }
      shaper_.suspensions().Restore(std::move(list));
      const nlohmann::json& moves = member("tenant_pools");
      if (moves.is_object())
        for (auto it = moves.begin(); it != moves.end(); ++it)
          if (KnownTenant(it.key()) && shaper_.FindPool(it.value().get<std::string>()))
            tenant_moves_[it.key()] = it.value().get<std::string>();
      std::vector<shaping::Shaper::WarmupCount> counts;
      for (const auto& j : member("warmup"))
        counts.push_back({j.value("source", ""), j.value("site", ""), j.value("today", uint64_t{0}),
                          j.value("hour", uint64_t{0})});
      // Counts of another day or hour than now's are stale: Restore keeps
      // them only for the day/hour containing the save time.
      const TimePoint saved = FromUnixMillis(state.value("saved", int64_t{0}));
      if (std::chrono::floor<std::chrono::days>(saved) == std::chrono::floor<std::chrono::days>(now)) {
        auto today_only = counts;
        if (std::chrono::floor<std::chrono::hours>(saved) != std::chrono::floor<std::chrono::hours>(now))
          for (auto& c : today_only) c.sent_this_hour = 0;
        shaper_.RestoreWarmup(today_only, now);
      }
      flow_pools_.clear();
    } catch (const std::exception& e) {
      spdlog::error("ignoring the unreadable shaping state {}: {}", state_path_.string(), e.what());
    }
  }

  // --- Destinations::Handler ---------------------------------------------------

  SiteId SiteFor(uint32_t /*domain*/, const dns::Destination& destination) override {
    std::vector<queue::SiteHost> hosts;
    hosts.reserve(destination.hosts.size());
    for (const auto& h : destination.hosts) hosts.push_back({h.name, h.port});
    auto assigned = assignment_.Assign(destination.site, hosts);
    const config::SiteConfig* site_config = nullptr;
    if (assigned.named)
      if (auto it = site_configs_.find(assigned.key); it != site_configs_.end()) site_config = &it->second;
    SiteId site = scheduler_.GetOrCreateSite(assigned.key, queue::SiteLimits::FromConfig(delivery_, site_config));
    sites_[site.value].hosts = destination.hosts;
    return site;
  }

  void Place(SiteId site, const QueuedRecipient& q, TimePoint due) override {
    if (q.attempts == 0 && due <= clock_.Now())
      scheduler_.EnqueueFresh(site, q);
    else
      scheduler_.EnqueueRetry(site, q, due);
    WakeIdle(site);
    SchedulePump();
  }

  void LookupFailed(const QueuedRecipient& q, const Outcome& o, std::optional<TimePoint> next) override {
    const std::string domain(domains_.Name(q.domain));
    AttemptContext where;
    where.site = domain;
    where.domain = domain;
    if (next)
      ledger_.Deferred(q, *next, o, where);
    else
      ledger_.Final(q, o.kind == Outcome::Kind::kBounced ? RecipientState::kBounced : RecipientState::kExpired, o,
                    where);
    SchedulePump();
  }

  // --- Outcomes --------------------------------------------------------------

  // The place of a connection, for events.
  struct Where {
    std::string mx;
    std::string mx_ip;
    std::string source;  // its name
    std::string source_ip;
    std::string pool;
    std::string tenant;
  };

  AttemptContext ContextFor(SiteId site, const QueuedRecipient& q, std::string_view recipient,
                            std::string_view sender, const Where* where) {
    AttemptContext c;
    c.site = scheduler_.site(site).key();
    c.domain = domains_.Name(q.domain);
    c.recipient = recipient;
    c.sender = sender;
    if (where) {
      c.mx = where->mx;
      c.mx_ip = where->mx_ip;
      c.source = where->source;
      c.pool = where->pool;
      c.tenant = where->tenant;
      c.source_ip = where->source_ip;
    }
    return c;
  }

  // One verdict for one taken recipient: the scheduler's outcome call and
  // the ledger's record of it.
  void Apply(SiteId site, const QueuedRecipient& q, const Outcome& o, const AttemptContext& where) {
    const TimePoint now = clock_.Now();
    QueuedRecipient tried = q;  // events and the spool count this attempt
    tried.attempts = static_cast<uint16_t>(std::min<uint32_t>(q.attempts + 1, queue::kMaxAttempts));
    switch (o.kind) {
      case Outcome::Kind::kDelivered:
        scheduler_.Delivered(site);
        ledger_.Final(tried, RecipientState::kDelivered, o, where);
        return;
      case Outcome::Kind::kBounced:
        scheduler_.Bounced(site);
        ledger_.Final(tried, RecipientState::kBounced, o, where);
        return;
      case Outcome::Kind::kDeferred: {
        auto result = scheduler_.Defer(site, q, now);
        if (result.kind == queue::DeferResult::Kind::kExpired)
          ledger_.Final(result.recipient, RecipientState::kExpired, o, where);
        else
          ledger_.Deferred(result.recipient, result.next_attempt, o, where);
        return;
      }
    }
  }

  // All hosts of a site are down: its queued recipients wait in the retry
  // wheel (an attempt counted, so they expire in time) instead of in a lane,
  // and hold no connection.
  void DeferUnreachable(SiteId site) {
    const TimePoint now = clock_.Now();
    auto& info = sites_[site.value];
    const Outcome o = ClassifyAllHostsDown(scheduler_.site(site).key(), info.last_failure);
    for (Lane lane : {Lane::kFresh, Lane::kRetry}) {
      for (const auto& r : scheduler_.DeferLane(site, lane, now, SIZE_MAX)) {
        const AttemptContext where = ContextFor(site, r.recipient, "", "", nullptr);
        if (r.kind == queue::DeferResult::Kind::kExpired)
          ledger_.Final(r.recipient, RecipientState::kExpired, o, where);
        else
          ledger_.Deferred(r.recipient, r.next_attempt, o, where);
      }
    }
  }

  // Every address of one attempt refused permanently (R6/D2): the batches
  // this connection would have carried bounce with that refusal.
  void BounceRefused(SiteId site, Lane lane, const Outcome& o) {
    const auto& limits = scheduler_.site(site).limits();
    for (uint32_t n = 0; n < limits.max_messages_per_connection; ++n) {
      auto batch = scheduler_.TakeBatch(site, lane, limits.max_recipients_per_transaction);
      if (batch.empty()) break;
      for (const auto& q : batch) Apply(site, q, o, ContextFor(site, q, "", "", nullptr));
    }
  }

  // --- Scheduling ------------------------------------------------------------

  void SchedulePump() {
    if (pump_posted_ || stopped_) return;
    pump_posted_ = true;
    asio::post(io_, [self = shared_from_this()] {
      self->pump_posted_ = false;
      self->Pump();
    });
  }

  void Pump() {
    if (stopped_) return;
    const TimePoint now = clock_.Now();
    scheduler_.Tick(now);
    destinations_->Tick(now);
    shaper_.Tick(now);
    DrainShapingEvents();
    std::unordered_set<uint32_t> seen;
    for (SiteId site : scheduler_.TakeActivatedSites())
      if (seen.insert(site.value).second) OpenConnections(site, now);
    // Sites that could not get all the connections they wanted last time
    // (global or slow-start limits) are looked at again on every pump.
    for (uint32_t id : std::vector<uint32_t>(starved_.begin(), starved_.end()))
      if (seen.insert(id).second) OpenConnections(SiteId{id}, now);
    RefreshSnapshot(now);
    ArmWake(now);
  }

  void ArmWake(TimePoint now) {
    TimePoint next = now + std::chrono::seconds(1);
    if (auto w = scheduler_.NextWakeup()) next = std::min(next, *w);
    if (auto w = destinations_->NextWakeup()) next = std::min(next, *w);
    if (auto w = shaper_.NextWakeup(now)) next = std::min(next, *w);
    if (shaping_retry_at_ > now) next = std::min(next, shaping_retry_at_);
    wake_.expires_after(std::max(Duration(1), next - now));
    wake_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->Pump();
    });
  }

  void OpenConnections(SiteId site, TimePoint now) {
    auto& info = sites_[site.value];
    const auto& s = scheduler_.site(site);
    const bool has_work = s.lane(Lane::kFresh).size() + s.lane(Lane::kRetry).size() > 0;
    if (!has_work || shaper_.SiteSuspended(s.key(), now)) {
      // A suspended site holds no connection; Resume looks at it again.
      starved_.erase(site.value);
      return;
    }
    bool reachable = std::any_of(info.hosts.begin(), info.hosts.end(),
                                 [&](const dns::MxHost& h) { return health_.Available(HealthKey(h), now); });
    if (!reachable) {
      if (info.opening == 0) DeferUnreachable(site);
      starved_.erase(site.value);
      return;
    }
    // Slow start: until one connection to the site got through, only one
    // tries — a blackhole costs one probing connection, not one per slot.
    bool shaped = false, wanted = false;
    const std::string& key = s.key();
    while (!(!info.proven && info.opening > 0)) {
      // For which pool's mail, and from which of its sources: the pools
      // are taken in turn, each asked whether its tenants' mail wants a
      // connection and whether one of its sources has headroom here.
      std::optional<Lane> lane;
      std::optional<shaping::SourceId> source;
      wanted = false;
      const size_t pools = shaper_.pool_count();
      for (size_t k = 0; k < pools && !source; ++k) {
        const auto pool = static_cast<shaping::PoolId>((info.pool_rotor + k) % pools);
        lane = scheduler_.ConnectionWanted(site, true, PoolFilter(pool, key, now));
        if (!lane) continue;
        wanted = true;
        source = PickSource(site, pool, now);
        if (source) info.pool_rotor = static_cast<uint32_t>(pool + 1);
      }
      if (!source) {
        shaped = wanted;
        break;
      }
      scheduler_.ConnectionOpened(site, *lane);
      shaper_.Opened(*source, key, now);
      ++info.opening;
      ++connections_opened_;
      asio::co_spawn(io_, RunConnection(shared_from_this(), site, *lane, *source), asio::detached);
    }
    if (shaped || (info.opening > 0 && !info.proven)) starved_.insert(site.value);
    else starved_.erase(site.value);
  }

  // A source of `pool` with headroom at the site, or none now.
  std::optional<shaping::SourceId> PickSource(SiteId site, shaping::PoolId pool, TimePoint now) {
    const std::string& key = scheduler_.site(site).key();
    auto pick = shaper_.PickSource(pool, key, now);
    if (pick.source) return pick.source;
    auto& info = sites_[site.value];
    if (info.shaped_reason != pick.why_not) {
      info.shaped_reason = pick.why_not;
      spdlog::debug("delivery: {}: no connection now: {}", key, pick.why_not);
    }
    if (pick.retry_at != TimePoint::max()) shaping_retry_at_ = std::min(std::max(shaping_retry_at_, now), pick.retry_at);
    return std::nullopt;
  }

  void DrainShapingEvents() {
    for (const auto& e : shaper_.TakeEvents()) {
      events::EventField extra[] = {
          {"source", e.source},
          {"site", e.site},
          {"connections", e.new_connections},
          {"old_connections", e.old_connections},
          {"rate", e.new_rate},
          {"old_rate", e.old_rate},
          {"reason", e.reason},
      };
      events_.Write(events::Event{e.at, e.type, MessageId(), "", "", extra});
      if (e.type == "shaping")
        spdlog::info("shaping: {} -> {}: connections {} -> {}, rate {:.2f}/s -> {:.2f}/s: {}", e.source, e.site,
                     e.old_connections, e.new_connections, e.old_rate, e.new_rate, e.reason);
    }
  }

  // A source whose address cannot be bound: skipped for a while, loudly.
  void SuspendSource(shaping::SourceId source, const Outcome& o) {
    const auto& spec = shaper_.source(source);
    const TimePoint now = clock_.Now();
    shaper_.suspensions().Add({"", spec.name, ""}, now + kUnbindableSourcePause, "cannot bind: " + o.text, now);
    events::EventField extra[] = {{"source", spec.name}, {"source_ip", spec.address}, {"reason", o.text}};
    events_.Write(events::Event{now, "source_suspended", MessageId(), "", "", extra});
    spdlog::error("delivery: source {} ({}) suspended for {}s: {}", spec.name, spec.address,
                  std::chrono::duration_cast<std::chrono::seconds>(kUnbindableSourcePause).count(), o.text);
  }

  void WakeIdle(SiteId site) {
    auto it = sites_.find(site.value);
    if (it == sites_.end()) return;
    for (auto* conn : it->second.idle) conn->CancelIdle();
  }

  // --- One connection --------------------------------------------------------

  static asio::awaitable<void> RunConnection(std::shared_ptr<Impl> self, SiteId site, Lane lane,
                                             shaping::SourceId source) {
    co_await self->Converse(site, lane, source);
    // Counted closed only now, with the socket gone: a per-source cap is
    // never exceeded, not even for a moment during a reconnect.
    self->scheduler_.ConnectionClosed(site, lane);
    self->shaper_.Closed(source, self->scheduler_.site(site).key());
    self->starved_.insert(site.value);  // a slot freed: look at the site again
    self->SchedulePump();
  }

  // The shaper's reading of one outcome of this (source, site) pair.
  void Feed(shaping::SourceId source, const std::string& key, const Outcome& o) {
    const TimePoint now = clock_.Now();
    switch (o.pace) {
      case Outcome::Pace::kNone:
      case Outcome::Pace::kLocal:
        break;
      case Outcome::Pace::kThrottle:
        shaper_.OnSignal(source, key, shaping::Signal::kThrottled, o.Summary(), now);
        break;
      case Outcome::Pace::kTooManyConnections:
        shaper_.OnSignal(source, key, shaping::Signal::kTooManyConnections, o.Summary(), now);
        break;
      case Outcome::Pace::kConnectFailed:
        shaper_.OnSignal(source, key, shaping::Signal::kConnectRefused, o.Summary(), now);
        break;
      case Outcome::Pace::kClosedIdle:
        shaper_.OnSignal(source, key, shaping::Signal::kClosedIdle, o.Summary(), now);
        break;
      case Outcome::Pace::kPause: {
        const auto& name = shaper_.source(source).name;
        const std::string reason = o.Summary();
        shaper_.suspensions().Add({key, name, ""}, now + o.pause_for, "reply rule: " + reason, now);
        events::EventField extra[] = {{"source", name}, {"site", key}, {"reason", reason},
                                      {"seconds", std::chrono::duration_cast<std::chrono::seconds>(o.pause_for).count()}};
        events_.Write(events::Event{now, "paused", MessageId(), "", "", extra});
        break;
      }
    }
    DrainShapingEvents();
  }

  asio::awaitable<void> Converse(SiteId site, Lane& lane, shaping::SourceId source) {
    SiteInfo& info = sites_[site.value];
    const std::string key = scheduler_.site(site).key();
    const auto hosts = info.hosts;  // the answer may be refreshed while we talk
    std::unique_ptr<SmtpConnection> conn;
    Where where;
    std::vector<Outcome> failures;  // of the addresses tried, for D2
    bool give_up = false;           // a reason not to try further hosts now
    for (const auto& host : hosts) {
      if (give_up) break;
      const std::string health_key = HealthKey(host);
      if (!health_.Usable(health_key, clock_.Now())) continue;
      bool opened = false, answered = false;
      for (const auto& address : host.addresses) {
        ConnectionOptions options = source_options_.at(source);
        if (no_tls_.count(address.to_string())) options.starttls = false;
        conn = std::make_unique<SmtpConnection>(io_.get_executor(), options);
        auto r = co_await conn->Open(asio::ip::tcp::endpoint(address, host.port));
        if (r) {
          opened = true;
          where.mx = host.name;
          where.mx_ip = address.to_string();
          auto local = conn->local_address();
          where.source_ip = local.substr(0, local.rfind(':'));
          break;
        }
        Outcome failure = std::move(r.error());
        conn.reset();
        ApplyReplyRules(reply_rules_, key, failure);
        Feed(source, key, failure);
        if (failure.pace == Outcome::Pace::kLocal) {
          // Our address, not their host: no host is to blame.
          SuspendSource(source, failure);
          give_up = answered = true;
          break;
        }
        info.last_failure = failure.Summary();
        if (failure.tls_failed) no_tls_.insert(address.to_string());  // opportunistic: next time in clear
        // A host that answered is alive: a permanent refusal (R6) or "too
        // many connections" from our source is no reason to stop probing it.
        if (failure.kind == Outcome::Kind::kBounced) answered = true;
        if (failure.pace == Outcome::Pace::kTooManyConnections || failure.pace == Outcome::Pace::kPause)
          give_up = answered = true;  // the receiver limits this source: wait, don't hop to its other MX
        failures.push_back(std::move(failure));
        if (give_up) break;
      }
      if (opened) {
        health_.Success(health_key);
        break;
      }
      if (answered) health_.Success(health_key);
      else health_.Failure(health_key, clock_.Now());
    }
    --info.opening;
    if (!conn) {
      if (!give_up) info.proven = false;
      if (!failures.empty() && !give_up) {
        const Outcome verdict = ClassifyNoUsableHost(failures);
        if (verdict.kind == Outcome::Kind::kBounced) BounceRefused(site, lane, verdict);
      }
      co_return;
    }
    info.proven = true;
    starved_.insert(site.value);
    SchedulePump();  // slow start is over: the site may open its other connections

    asio::steady_timer pace(io_);
    const shaping::SiteShaping pair_limits = shaper_.LimitsFor(source, key);
    where.source = shaper_.source(source).name;
    while (!stopped_) {
      const TimePoint now = clock_.Now();
      if (shaper_.SiteSuspended(key, now) || !shaper_.MaySend(source, key, "", 1, now)) break;
      const auto eligible = SourceFilter(source, key, now);
      auto work = scheduler_.WorkFor(site, lane, eligible);
      if (!work) {
        // Keep the connection a little for mail that is about to arrive,
        // listening: a receiver may close it with 421 meanwhile (P5).
        info.idle.push_back(conn.get());
        auto end = co_await conn->WaitIdle(idle_timeout_);
        auto& waiters = sites_[site.value].idle;
        waiters.erase(std::remove(waiters.begin(), waiters.end(), conn.get()), waiters.end());
        if (end.kind == SmtpConnection::IdleEnd::Kind::kClosed) {
          if (end.outcome.pace != Outcome::Pace::kNone) Feed(source, key, end.outcome);
          spdlog::debug("delivery: {} from {}: {}", key, where.source, end.outcome.Summary());
          break;
        }
        if (end.kind == SmtpConnection::IdleEnd::Kind::kTimedOut || stopped_) break;  // nothing came
        continue;
      }
      lane = *work;
      const auto& limits = scheduler_.site(site).limits();
      size_t max_rcpt = limits.max_recipients_per_transaction;
      if (pair_limits.max_recipients_per_message) max_rcpt = std::min<size_t>(max_rcpt, pair_limits.max_recipients_per_message);
      auto batch = scheduler_.TakeBatch(site, lane, max_rcpt, eligible);
      if (batch.empty()) break;
      const std::string tenant(scheduler_.flows().tenant(batch.front().flow));
      where.tenant = tenant;
      where.pool = shaper_.pool_name(PoolOfFlow(batch.front().flow));
      const auto n = static_cast<uint32_t>(batch.size());
      // How fast: the pair's pacing. A short wait keeps the connection; a
      // long one (or a warm-up cap) gives the batch back and closes it, so
      // waiting mail holds no connection.
      bool may_send = shaper_.MaySend(source, key, "", n, clock_.Now());
      while (may_send && !shaper_.TrySend(source, key, n, clock_.Now())) {
        const TimePoint at = shaper_.NextSend(source, key, n, clock_.Now());
        if (at - clock_.Now() > idle_timeout_ || stopped_) {
          may_send = false;
          break;
        }
        pace.expires_after(std::max(Duration(1), at - clock_.Now()));
        boost::system::error_code ec;
        co_await pace.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (stopped_) may_send = false;
      }
      if (!may_send) {
        scheduler_.Requeue(site, batch, lane);
        if (auto at = shaper_.NextSend(source, key, n, clock_.Now()); at > clock_.Now())
          shaping_retry_at_ = std::min(std::max(shaping_retry_at_, clock_.Now()), at);
        break;
      }
      // The content and just this batch's addresses: what a transaction
      // costs to read does not grow with the message's recipient list.
      const MessageId id = batch.front().message;
      std::vector<uint32_t> indices;
      indices.reserve(batch.size());
      for (const auto& q : batch) indices.push_back(q.index);
      auto message = spool_.ReadContent(id);
      Result<std::vector<std::string>> addresses =
          message ? spool_.ReadRecipients(id, indices) : Result<std::vector<std::string>>(tl::unexpected(message.error()));
      if (!addresses) {
        spdlog::error("delivery: cannot read message {}: {}", id.ToString(), addresses.error().ToString());
        if (addresses.error().code() == ErrorCode::kNotFound) {
          // Already gone (removed by an earlier outcome): nothing left to
          // send. The scheduler still needs an outcome for each taken one.
          scheduler_.Bounced(site, static_cast<uint32_t>(batch.size()));
          ledger_.Forget(batch.size());
          continue;
        }
        scheduler_.Requeue(site, batch, lane);
        break;
      }
      ledger_.SetRecipientCount(id, message->envelope.recipient_count);
      SmtpConnection::Transaction tx;
      tx.sender = message->envelope.sender;
      tx.content = &message->content;
      tx.recipients = std::move(*addresses);
      shaper_.Sent(source, key, n, clock_.Now());
      auto outcomes = co_await conn->Send(tx);
      uint32_t accepted = 0;
      const Outcome* signal = nullptr;  // one pace signal per transaction
      std::vector<QueuedRecipient> again;
      for (size_t i = 0; i < batch.size(); ++i) {
        Outcome& o = outcomes[i];
        ApplyReplyRules(reply_rules_, key, o);
        if (o.delivered()) ++accepted;
        if (o.pace != Outcome::Pace::kNone && !signal) signal = &o;
        const AttemptContext context = ContextFor(site, batch[i], tx.recipients[i], message->envelope.sender, &where);
        // Throttled: the pace was wrong, not the recipient. It goes back to
        // the head of its lane at once (the shaper slows the pair down), a
        // bounded number of times, instead of waiting out a retry delay.
        if (o.throttled && o.kind == Outcome::Kind::kDeferred && batch[i].attempts < kThrottleRequeues) {
          QueuedRecipient tried = batch[i];
          ++tried.attempts;
          ledger_.Requeued(tried, o, context);
          again.push_back(tried);
          continue;
        }
        Apply(site, batch[i], o, context);
      }
      if (!again.empty()) scheduler_.Requeue(site, again, lane);
      if (accepted) shaper_.Accepted(source, key, accepted, clock_.Now());
      if (signal) Feed(source, key, *signal);
      if (!outcomes.empty()) scheduler_.SetLastReply(site, outcomes.back().Summary());
      uint32_t max_messages = limits.max_messages_per_connection;
      if (pair_limits.max_messages_per_connection)
        max_messages = std::min(max_messages, pair_limits.max_messages_per_connection);
      if (!conn->usable() || conn->transactions() >= max_messages) break;
      if (signal && signal->pace == Outcome::Pace::kPause) break;
    }
    if (conn->usable()) co_await conn->Quit();
  }

  // --- Operator view ---------------------------------------------------------

  void RefreshSnapshot(TimePoint now) {
    if (now - last_snapshot_ < std::chrono::milliseconds(250)) return;
    last_snapshot_ = now;
    QueuesSnapshot snapshot;
    scheduler_.ForEachSite([&](const queue::Site& site) {
      SiteView view;
      view.stats = scheduler_.Stats(site.id());
      if (auto it = sites_.find(site.id().value); it != sites_.end()) {
        view.last_failure = it->second.last_failure;
        for (const auto& h : it->second.hosts) {
          const std::string key = HealthKey(h);
          HostView host{h.name, h.port, std::string(queue::ToString(health_.State(key))), std::nullopt};
          if (auto until = health_.DownUntil(key)) host.down_until = *until;
          view.hosts.push_back(std::move(host));
        }
      }
      snapshot.sites.push_back(std::move(view));
    });
    snapshot.resolving = destinations_->waiting();
    ShapingSnapshot shaping;
    shaping.pairs = shaper_.Pairs(now);
    shaping.sources = shaper_.Sources(now);
    shaping.suspensions = shaper_.suspensions().List();
    for (const auto& [tenant, pool] : tenant_pools_) {
      auto moved = tenant_moves_.find(tenant);
      shaping.tenants.push_back({tenant, moved != tenant_moves_.end() ? moved->second : pool, moved != tenant_moves_.end()});
    }
    std::sort(shaping.tenants.begin(), shaping.tenants.end(),
              [](const TenantView& a, const TenantView& b) { return a.name < b.name; });
    // Warm-up counts survive a restart: saved once a minute while sending.
    if (now - last_state_save_ > std::chrono::minutes(1) && !shaping.sources.empty()) {
      bool warming = std::any_of(shaping.sources.begin(), shaping.sources.end(),
                                 [](const auto& v) { return !v.warmup.empty(); });
      if (warming) SaveState();
    }
    std::lock_guard lock(snapshot_mu_);
    snapshot_ = std::move(snapshot);
    shaping_snapshot_ = std::move(shaping);
  }

  // --- State -----------------------------------------------------------------

  struct SiteInfo {
    std::vector<dns::MxHost> hosts;
    std::vector<SmtpConnection*> idle;  // connections waiting for work
    bool proven = false;   // a connection got through since the last total failure
    uint32_t opening = 0;  // connections between connect and EHLO
    std::string last_failure;
    std::string shaped_reason;  // why the shaper last gave no source (logged once)
    uint32_t pool_rotor = 0;    // the pool asked first for the next connection
  };

  // Throttled attempts a recipient may spend going straight back to its
  // lane before it is deferred like any other (retry wheel, backoff).
  static constexpr uint16_t kThrottleRequeues = 8;
  // How long a source whose address cannot be bound is left out.
  static constexpr Duration kUnbindableSourcePause = std::chrono::minutes(1);

  asio::io_context& io_;
  const bool hold_;
  Duration idle_timeout_;
  config::DeliveryConfig delivery_;  // site limit defaults
  const Clock& clock_;
  queue::Scheduler scheduler_;
  queue::HostHealth health_;
  shaping::Shaper shaper_;
  ReplyRules reply_rules_;
  std::vector<ConnectionOptions> source_options_;  // by shaping::SourceId
  std::unordered_map<std::string, std::string> tenant_pools_;  // tenant -> pool name
  std::unordered_map<std::string, uint32_t> tenant_weights_;
  std::string default_pool_name_;
  std::unordered_map<std::string, std::string> tenant_moves_;  // operator: tenant -> pool (persisted)
  std::vector<int32_t> flow_pools_;                            // flow -> PoolId cache; -1 = not known
  std::vector<std::pair<SiteId, queue::SiteLimits>> pending_limits_;
  queue::DomainTable domains_;
  queue::SiteAssignment assignment_;
  std::unordered_map<std::string, config::SiteConfig> site_configs_;
  RecipientLedger ledger_;
  spool::Spool& spool_;
  events::EventLog& events_;
  std::shared_ptr<Destinations> destinations_;
  std::unique_ptr<asio::ssl::context> tls_;
  ConnectionOptions options_;
  asio::steady_timer wake_;
  bool stopped_ = false;
  bool pump_posted_ = false;
  TimePoint shaping_retry_at_;  // the shaper said: a source may have room then
  std::filesystem::path state_path_;
  TimePoint last_state_save_;
  std::unordered_map<uint32_t, SiteInfo> sites_;
  std::unordered_set<uint32_t> starved_;
  std::unordered_set<std::string> no_tls_;
  TimePoint last_snapshot_;

 public:
  std::atomic<uint64_t> connections_opened_{0};
  // Accepted messages on their way from the spool's commit thread to this
  // one: a commit group hands over its messages with one post, not one each.
  struct Arrival {
    MessageId id;
    TimePoint received_at;
    std::vector<std::string> recipients;
    std::string tenant;
    uint8_t priority = 0;
  };
  std::mutex arrivals_mu_;
  std::vector<Arrival> arrivals_;
  mutable std::mutex snapshot_mu_;
  QueuesSnapshot snapshot_;
  ShapingSnapshot shaping_snapshot_;
  const RecipientLedger& ledger() const { return ledger_; }
};

Dispatcher::Dispatcher(asio::io_context& context, const config::Config& config, spool::Spool& spool,
                       events::EventLog& events, dns::Resolver& resolver, const Clock& clock)
    : impl_(std::make_shared<Impl>(context, config, spool, events, resolver, clock)) {}

Dispatcher::~Dispatcher() = default;

void Dispatcher::Recover(const spool::RecipientRecord& record, std::string_view tenant, uint8_t priority) {
  impl_->Recover(record, tenant, priority);
}

void Dispatcher::Accept(MessageId id, TimePoint received_at, std::vector<std::string> recipients,
                        std::string tenant, uint8_t priority) {
  // Runs on the spool's commit thread: hop to the dispatcher's thread. Only
  // the first arrival of a batch posts (and so wakes that thread); the ones
  // that come before it runs join the batch.
  bool first = false;
  {
    std::lock_guard lock(impl_->arrivals_mu_);
    first = impl_->arrivals_.empty();
    impl_->arrivals_.push_back({id, received_at, std::move(recipients), std::move(tenant), priority});
  }
  if (!first) return;
  asio::post(impl_->io_executor(), [impl = impl_] {
    std::vector<Impl::Arrival> batch;
    {
      std::lock_guard lock(impl->arrivals_mu_);
      batch.swap(impl->arrivals_);
    }
    for (const auto& a : batch) impl->Accept(a.id, a.received_at, a.recipients, a.tenant, a.priority);
  });
}

void Dispatcher::Start() { impl_->Start(); }

void Dispatcher::Stop() {
  asio::post(impl_->io_executor(), [impl = impl_] { impl->Stop(); });
}

DispatcherStats Dispatcher::Stats() const {
  const LedgerStats l = impl_->ledger().Stats();
  return {l.delivered, l.deferred, l.bounced, l.expired, impl_->connections_opened_.load(), l.queued};
}

namespace {
// Runs `fn` on the dispatcher's thread and waits for its result.
template <typename T, typename F>
Result<T> OnDeliveryThread(asio::any_io_executor executor, F fn) {
  auto task = std::make_shared<std::packaged_task<Result<T>()>>(std::move(fn));
  auto result = task->get_future();
  asio::post(executor, [task] { (*task)(); });
  if (result.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
    return Fail(ErrorCode::kTimeout, "the delivery thread did not answer in 5 s");
  return result.get();
}
}  // namespace

Result<uint64_t> Dispatcher::Suspend(shaping::SuspensionScope scope, Duration duration, std::string reason) {
  return OnDeliveryThread<uint64_t>(impl_->io_executor(), [impl = impl_, scope = std::move(scope), duration,
                                                          reason = std::move(reason)] {
    return impl->Suspend(scope, duration, reason);
  });
}

Result<void> Dispatcher::Resume(uint64_t id) {
  return OnDeliveryThread<void>(impl_->io_executor(), [impl = impl_, id] { return impl->Resume(id); });
}

Result<size_t> Dispatcher::BounceQueued(std::string site, std::string tenant, std::string reason) {
  return OnDeliveryThread<size_t>(impl_->io_executor(), [impl = impl_, site = std::move(site),
                                                        tenant = std::move(tenant), reason = std::move(reason)] {
    return impl->BounceQueued(site, tenant, reason);
  });
}

Result<void> Dispatcher::MoveTenant(std::string tenant, std::string pool) {
  return OnDeliveryThread<void>(impl_->io_executor(), [impl = impl_, tenant = std::move(tenant),
                                                      pool = std::move(pool)] { return impl->MoveTenant(tenant, pool); });
}

void Dispatcher::Apply(std::shared_ptr<const config::Config> config) {
  asio::post(impl_->io_executor(), [impl = impl_, config = std::move(config)] { impl->Apply(config); });
}

ShapingSnapshot Dispatcher::Shaping() const {
  std::lock_guard lock(impl_->snapshot_mu_);
  return impl_->shaping_snapshot_;
}

QueuesSnapshot Dispatcher::Queues() const {
  std::lock_guard lock(impl_->snapshot_mu_);
  return impl_->snapshot_;
}

}  // namespace hikyaku::delivery
