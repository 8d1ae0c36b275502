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
#include <spdlog/spdlog.h>

#include "delivery/destinations.h"
#include "delivery/outcome.h"
#include "delivery/recipient_ledger.h"
#include "delivery/smtp_connection.h"
#include "dns/resolver.h"
#include "queue/domain_table.h"
#include "queue/host_health.h"
#include "queue/site_assignment.h"

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
        ledger_(spool, events, clock),
        spool_(spool),
        wake_(io) {
    std::vector<queue::NamedSite> named;
    for (const auto& site : config.sites) {
      named.push_back({site.name, site.mx_patterns});
      site_configs_.emplace(site.name, site);
    }
    assignment_ = queue::SiteAssignment(std::move(named));
    destinations_ = std::make_shared<Destinations>(resolver, domains_, scheduler_.retry_policy(), *this, clock);
    if (config.delivery.starttls == config::StartTlsPolicy::kOpportunistic) tls_ = MakeOpportunisticTlsContext();
    options_ = ConnectionOptions::FromConfig(config.delivery, config.server.hostname, tls_.get());
  }

  // --- Arrival ---------------------------------------------------------------

  void Recover(const spool::RecipientRecord& record) {
    if (hold_) return ledger_.CountHeld(1);  // held mail stays in the spool only
    QueuedRecipient q;
    q.message = record.message;
    q.received_at = record.message.ArrivalTime();
    q.index = record.index;
    q.domain = domains_.Intern(DomainOf(record.recipient));
    q.attempts = static_cast<uint16_t>(std::min<uint32_t>(record.attempts, queue::kMaxAttempts));
    ledger_.Track(record.message, 1, 0);
    destinations_->Enqueue(q, record.next_attempt);
  }

  void Accept(MessageId id, TimePoint received_at, const std::vector<std::string>& recipients) {
    if (hold_) return ledger_.CountHeld(recipients.size());
    const auto count = static_cast<uint32_t>(recipients.size());
    ledger_.Track(id, count, count);
    const TimePoint now = clock_.Now();
    for (uint32_t i = 0; i < count; ++i) {
      QueuedRecipient q;
      q.message = id;
      q.received_at = received_at;
      q.index = i;
      q.domain = domains_.Intern(DomainOf(recipients[i]));
      destinations_->Enqueue(q, now);
    }
  }

  void Start() { SchedulePump(); }
  asio::any_io_executor io_executor() { return io_.get_executor(); }

  void Stop() {
    stopped_ = true;
    wake_.cancel();
    for (auto& [id, info] : sites_)
      for (auto* timer : info.idle) timer->cancel();
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
    std::string source_ip;
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
      c.source = "default";  // the implicit source until [[source]] (shaping) is wired
      c.pool = "default";
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
    wake_.expires_after(std::max(Duration(1), next - now));
    wake_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->Pump();
    });
  }

  void OpenConnections(SiteId site, TimePoint now) {
    auto& info = sites_[site.value];
    const auto& s = scheduler_.site(site);
    const bool has_work = s.lane(Lane::kFresh).size() + s.lane(Lane::kRetry).size() > 0;
    if (!has_work) {
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
    while (!(!info.proven && info.opening > 0)) {
      auto lane = scheduler_.ConnectionWanted(site, true);
      if (!lane) break;
      scheduler_.ConnectionOpened(site, *lane);
      ++info.opening;
      ++connections_opened_;
      asio::co_spawn(io_, RunConnection(shared_from_this(), site, *lane), asio::detached);
    }
    if (scheduler_.ConnectionWanted(site, true)) starved_.insert(site.value);
    else starved_.erase(site.value);
  }

  void WakeIdle(SiteId site) {
    auto it = sites_.find(site.value);
    if (it == sites_.end()) return;
    for (auto* timer : it->second.idle) timer->cancel();
  }

  // --- One connection --------------------------------------------------------

  static asio::awaitable<void> RunConnection(std::shared_ptr<Impl> self, SiteId site, Lane lane) {
    co_await self->Converse(site, lane);
    self->scheduler_.ConnectionClosed(site, lane);
    self->starved_.insert(site.value);  // a slot freed: look at the site again
    self->SchedulePump();
  }

  asio::awaitable<void> Converse(SiteId site, Lane& lane) {
    SiteInfo& info = sites_[site.value];
    const auto hosts = info.hosts;  // the answer may be refreshed while we talk
    std::unique_ptr<SmtpConnection> conn;
    Where where;
    std::vector<Outcome> failures;  // of the addresses tried, for D2
    for (const auto& host : hosts) {
      const std::string health_key = HealthKey(host);
      if (!health_.Usable(health_key, clock_.Now())) continue;
      bool opened = false, answered = false;
      for (const auto& address : host.addresses) {
        ConnectionOptions options = options_;
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
        info.last_failure = r.error().Summary();
        if (r.error().tls_failed) no_tls_.insert(address.to_string());  // opportunistic: next time in clear
        // A host that answered with a permanent refusal is alive: it only
        // refuses us (R6), which is no reason to stop probing it.
        if (r.error().kind == Outcome::Kind::kBounced) answered = true;
        failures.push_back(std::move(r.error()));
        conn.reset();
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
      info.proven = false;
      if (!failures.empty()) {
        const Outcome verdict = ClassifyNoUsableHost(failures);
        if (verdict.kind == Outcome::Kind::kBounced) BounceRefused(site, lane, verdict);
      }
      co_return;
    }
    info.proven = true;
    starved_.insert(site.value);
    SchedulePump();  // slow start is over: the site may open its other connections

    const auto& limits = scheduler_.site(site).limits();
    asio::steady_timer idle(io_);
    while (!stopped_) {
      auto work = scheduler_.WorkFor(site, lane);
      if (!work) {
        // Keep the connection a little for mail that is about to arrive.
        info.idle.push_back(&idle);
        idle.expires_after(idle_timeout_);
        boost::system::error_code ec;
        co_await idle.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        auto& waiters = sites_[site.value].idle;
        waiters.erase(std::remove(waiters.begin(), waiters.end(), &idle), waiters.end());
        if (!ec || stopped_) break;  // timed out: nothing came
        continue;
      }
      lane = *work;
      auto batch = scheduler_.TakeBatch(site, lane, limits.max_recipients_per_transaction);
      if (batch.empty()) break;
      auto message = spool_.ReadMessage(batch.front().message);
      if (!message) {
        spdlog::error("delivery: cannot read message {}: {}", batch.front().message.ToString(),
                      message.error().ToString());
        if (message.error().code() == ErrorCode::kNotFound) {
          // Already gone (removed by an earlier outcome): nothing left to
          // send. The scheduler still needs an outcome for each taken one.
          scheduler_.Bounced(site, static_cast<uint32_t>(batch.size()));
          ledger_.Forget(batch.size());
          continue;
        }
        scheduler_.Requeue(site, batch, lane);
        break;
      }
      ledger_.SetRecipientCount(message->id, static_cast<uint32_t>(message->recipients.size()));
      SmtpConnection::Transaction tx;
      tx.sender = message->sender;
      tx.content = &message->content;
      for (const auto& q : batch) tx.recipients.push_back(message->recipients.at(q.index));
      auto outcomes = co_await conn->Send(tx);
      for (size_t i = 0; i < batch.size(); ++i)
        Apply(site, batch[i], outcomes[i], ContextFor(site, batch[i], tx.recipients[i], message->sender, &where));
      if (!outcomes.empty()) scheduler_.SetLastReply(site, outcomes.back().Summary());
      if (!conn->usable() || conn->transactions() >= limits.max_messages_per_connection) break;
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
    std::lock_guard lock(snapshot_mu_);
    snapshot_ = std::move(snapshot);
  }

  // --- State -----------------------------------------------------------------

  struct SiteInfo {
    std::vector<dns::MxHost> hosts;
    std::vector<asio::steady_timer*> idle;  // connections waiting for work
    bool proven = false;   // a connection got through since the last total failure
    uint32_t opening = 0;  // connections between connect and EHLO
    std::string last_failure;
  };

  asio::io_context& io_;
  const bool hold_;
  const Duration idle_timeout_;
  const config::DeliveryConfig delivery_;  // site limit defaults
  const Clock& clock_;
  queue::Scheduler scheduler_;
  queue::HostHealth health_;
  queue::DomainTable domains_;
  queue::SiteAssignment assignment_;
  std::unordered_map<std::string, config::SiteConfig> site_configs_;
  RecipientLedger ledger_;
  spool::Spool& spool_;
  std::shared_ptr<Destinations> destinations_;
  std::unique_ptr<asio::ssl::context> tls_;
  ConnectionOptions options_;
  asio::steady_timer wake_;
  bool stopped_ = false;
  bool pump_posted_ = false;
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
  };
  std::mutex arrivals_mu_;
  std::vector<Arrival> arrivals_;
  mutable std::mutex snapshot_mu_;
  QueuesSnapshot snapshot_;
  const RecipientLedger& ledger() const { return ledger_; }
};

Dispatcher::Dispatcher(asio::io_context& context, const config::Config& config, spool::Spool& spool,
                       events::EventLog& events, dns::Resolver& resolver, const Clock& clock)
    : impl_(std::make_shared<Impl>(context, config, spool, events, resolver, clock)) {}

Dispatcher::~Dispatcher() = default;

void Dispatcher::Recover(const spool::RecipientRecord& record) { impl_->Recover(record); }

void Dispatcher::Accept(MessageId id, TimePoint received_at, std::vector<std::string> recipients) {
  // Runs on the spool's commit thread: hop to the dispatcher's thread. Only
  // the first arrival of a batch posts (and so wakes that thread); the ones
  // that come before it runs join the batch.
  bool first = false;
  {
    std::lock_guard lock(impl_->arrivals_mu_);
    first = impl_->arrivals_.empty();
    impl_->arrivals_.push_back({id, received_at, std::move(recipients)});
  }
  if (!first) return;
  asio::post(impl_->io_executor(), [impl = impl_] {
    std::vector<Impl::Arrival> batch;
    {
      std::lock_guard lock(impl->arrivals_mu_);
      batch.swap(impl->arrivals_);
    }
    for (const auto& arrival : batch) impl->Accept(arrival.id, arrival.received_at, arrival.recipients);
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

QueuesSnapshot Dispatcher::Queues() const {
  std::lock_guard lock(impl_->snapshot_mu_);
  return impl_->snapshot_;
}

}  // namespace hikyaku::delivery
