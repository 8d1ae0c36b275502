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

#include "delivery/outcome.h"
#include "delivery/smtp_connection.h"
#include "dns/resolver.h"
#include "dns/static_routes.h"
#include "events/event_log.h"
#include "queue/domain_table.h"
#include "queue/host_health.h"
#include "queue/scheduler.h"

namespace hikyaku::delivery {

namespace asio = boost::asio;
using queue::Lane;
using queue::QueuedRecipient;
using queue::SiteId;
using spool::RecipientState;

namespace {

// MessageIds carry their arrival time (base/message_id.h): recovery needs no
// extra read to know a recipient's age.
TimePoint ArrivalOf(MessageId id) { return FromUnixMillis(static_cast<int64_t>(id.value() >> 22)); }

std::string DomainOf(std::string_view address) {
  auto at = address.rfind('@');
  return dns::NormalizeName(at == std::string_view::npos ? std::string_view() : address.substr(at + 1));
}

// HostHealth is keyed by host and port: static routes may point several
// sites at one address with different ports, and one of them being dead
// says nothing about the others.
std::string HealthKey(const dns::MxHost& host) { return host.name + ":" + std::to_string(host.port); }

bool MatchesPattern(std::string_view host, std::string_view pattern) {
  if (pattern.starts_with("*.")) {
    std::string_view suffix = pattern.substr(1);  // ".example.jp"
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  return host == pattern;
}

}  // namespace

class Dispatcher::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(asio::io_context& io, const config::Config& config, spool::Spool& spool, events::EventLog& events,
       dns::Resolver& resolver, const Clock& clock)
      : io_(io),
        config_(config),
        spool_(spool),
        events_(events),
        resolver_(resolver),
        router_(dynamic_cast<dns::Router*>(&resolver)),
        clock_(clock),
        scheduler_(queue::SchedulerOptions::FromConfig(config, std::random_device{}()), clock.Now()),
        health_(config.delivery),
        wake_(io) {
    if (config.delivery.starttls == config::StartTlsPolicy::kOpportunistic) tls_ = MakeOpportunisticTlsContext();
    options_ = ConnectionOptions::FromConfig(config.delivery, config.server.hostname, tls_.get());
  }

  // --- Arrival ---------------------------------------------------------------

  void Recover(const spool::RecipientRecord& record) {
    ++queued_;
    if (config_.delivery.hold) return;  // held mail stays in the spool only
    QueuedRecipient q;
    q.message = record.message;
    q.received_at = ArrivalOf(record.message);
    q.index = record.index;
    q.domain = domains_.Intern(DomainOf(record.recipient));
    q.attempts = static_cast<uint16_t>(std::min<uint32_t>(record.attempts, queue::kMaxAttempts));
    ++messages_[record.message.value()].remaining;
    Enqueue(q, record.next_attempt);
  }

  void Accept(MessageId id, TimePoint received_at, const std::vector<std::string>& recipients) {
    if (config_.delivery.hold) {
      queued_ += recipients.size();
      return;
    }
    auto& entry = messages_[id.value()];
    entry.remaining += static_cast<uint32_t>(recipients.size());
    entry.recipient_count = static_cast<uint32_t>(recipients.size());
    const TimePoint now = clock_.Now();
    for (uint32_t i = 0; i < recipients.size(); ++i) {
      QueuedRecipient q;
      q.message = id;
      q.received_at = received_at;
      q.index = i;
      q.domain = domains_.Intern(DomainOf(recipients[i]));
      ++queued_;
      Enqueue(q, now);
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

  // --- Domains and sites -----------------------------------------------------

  struct Waiting {
    QueuedRecipient recipient;
    TimePoint due;
  };

  struct DomainState {
    enum class Status { kUnknown, kResolving, kResolved, kRetryWait };
    Status status = Status::kUnknown;
    SiteId site;
    TimePoint expires;
    TimePoint retry_at;
    std::vector<Waiting> waiting;
  };

  struct SiteInfo {
    std::vector<dns::MxHost> hosts;
    std::vector<asio::steady_timer*> idle;  // connections waiting for work
    bool proven = false;   // a connection got through since the last total failure
    uint32_t opening = 0;  // connections between connect and EHLO
    std::string last_failure;
  };

  DomainState& Domain(uint32_t id) {
    if (id >= domain_states_.size()) domain_states_.resize(id + 1);
    return domain_states_[id];
  }

  void Enqueue(const QueuedRecipient& q, TimePoint due) {
    DomainState& d = Domain(q.domain);
    const TimePoint now = clock_.Now();
    if (d.status == DomainState::Status::kResolved) {
      Place(d.site, q, due, now);
      // Stale answer: keep delivering with it and refresh in the background.
      if (d.expires <= now) Resolve(q.domain);
      return;
    }
    d.waiting.push_back({q, due});
    if (d.status == DomainState::Status::kUnknown) Resolve(q.domain);
  }

  void Place(SiteId site, QueuedRecipient q, TimePoint due, TimePoint now) {
    if (q.attempts == 0 && due <= now)
      scheduler_.EnqueueFresh(site, q);
    else
      scheduler_.EnqueueRetry(site, q, due);
    WakeIdle(site);
    SchedulePump();
  }

  void Resolve(uint32_t domain_id) {
    DomainState& d = Domain(domain_id);
    if (d.status == DomainState::Status::kResolving) return;
    const bool refresh = d.status == DomainState::Status::kResolved;
    if (!refresh) d.status = DomainState::Status::kResolving;
    std::string name(domains_.Name(domain_id));
    resolver_.ResolveMx(name, [self = shared_from_this(), domain_id, refresh](Result<dns::Destination> r) {
      self->OnResolved(domain_id, std::move(r), refresh);
    });
  }

  void OnResolved(uint32_t domain_id, Result<dns::Destination> result, bool refresh) {
    DomainState& d = Domain(domain_id);
    const TimePoint now = clock_.Now();
    if (result) {
      auto [key, site_config] = SiteKeyFor(domains_.Name(domain_id), *result);
      SiteId site = scheduler_.GetOrCreateSite(key, queue::SiteLimits::FromConfig(config_.delivery, site_config));
      sites_[site.value].hosts = result->hosts;
      d.status = DomainState::Status::kResolved;
      d.site = site;
      d.expires = result->expires;
      auto waiting = std::move(d.waiting);
      d.waiting.clear();
      for (const auto& w : waiting) Place(site, w.recipient, w.due, now);
      return;
    }
    if (refresh) return;  // keep using the stale answer; the next arrival tries again
    const Error& error = result.error();
    Outcome outcome;
    outcome.code = 0;
    outcome.text = error.message();
    if (!error.transient()) {
      // NXDOMAIN, null MX (RFC 7505), no address at all: the domain takes no mail.
      outcome.kind = Outcome::Kind::kBounced;
      outcome.enhanced = "5.1.2";  // RFC 3463: bad destination system address
      auto waiting = std::move(d.waiting);
      d.waiting.clear();
      d.status = DomainState::Status::kUnknown;
      for (auto w : waiting) {
        ++w.recipient.attempts;
        Final(w.recipient, RecipientState::kBounced, outcome, "", nullptr, nullptr);
      }
      return;
    }
    outcome.kind = Outcome::Kind::kDeferred;
    outcome.enhanced = "4.4.3";  // RFC 3463: directory server failure
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
      auto due = scheduler_.retry_policy().NextAttempt(now, w.recipient.received_at, w.recipient.attempts,
                                                       w.recipient.message.value() ^ w.recipient.index);
      if (!due) {
        Final(w.recipient, RecipientState::kExpired, outcome, "", nullptr, nullptr);
        continue;
      }
      Deferred(w.recipient, *due, outcome, "", nullptr, nullptr);
      w.due = *due;
      kept.push_back(w);
      next = std::min(next, *due);
    }
    d.waiting = std::move(kept);
    d.retry_at = next;
    if (!d.waiting.empty()) retry_domains_.insert(domain_id);
    else d.status = DomainState::Status::kUnknown;
    SchedulePump();
  }

  // The site a destination belongs to: a route's site, a [[site]] whose
  // mx_patterns match one of the MX hosts, else the MX host set itself.
  std::pair<std::string, const config::SiteConfig*> SiteKeyFor(std::string_view domain, const dns::Destination& d) {
    auto find_site = [&](std::string_view name) -> const config::SiteConfig* {
      for (const auto& s : config_.sites)
        if (s.name == name) return &s;
      return nullptr;
    };
    if (router_) {
      if (auto site = router_->RouteSite(domain)) return {*site, find_site(*site)};
    }
    for (const auto& s : config_.sites)
      for (const auto& host : d.hosts)
        for (const auto& pattern : s.mx_patterns)
          if (MatchesPattern(host.name, pattern)) return {s.name, &s};
    std::vector<std::string> names;
    for (const auto& host : d.hosts)
      names.push_back(host.port == 25 ? host.name : host.name + ":" + std::to_string(host.port));
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    std::string key;
    for (const auto& n : names) key += (key.empty() ? "" : ",") + n;
    return {key, nullptr};
  }

  // --- Outcomes --------------------------------------------------------------

  struct Where {
    std::string mx;
    std::string mx_ip;
    std::string source;
  };

  void WriteEvent(std::string_view type, const QueuedRecipient& q, std::string_view recipient,
                  std::string_view sender, const Outcome& o, const Where* where) {
    const TimePoint now = clock_.Now();
    const DomainState& d = Domain(q.domain);
    const std::string site = d.status == DomainState::Status::kResolved ? scheduler_.site(d.site).key()
                                                                         : std::string(domains_.Name(q.domain));
    const std::string code_text = o.code ? std::to_string(o.code) : std::string();
    const int64_t queue_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - q.received_at).count();
    static const std::string kEmpty;
    const std::string& mx = where ? where->mx : kEmpty;
    const std::string& mx_ip = where ? where->mx_ip : kEmpty;
    const std::string& source = where ? where->source : kEmpty;
    const std::string domain(domains_.Name(q.domain));
    events::EventField extra[] = {
        {"site", site},           {"mx", mx},
        {"mx_ip", mx_ip},         {"source", source},
        {"code", o.code},         {"enhanced", o.enhanced},
        {"reply", o.text},        {"attempt", static_cast<uint32_t>(q.attempts)},
        {"queue_time_ms", queue_ms}, {"index", q.index},
    };
    std::string recipient_text(recipient);
    std::string_view sender_text = sender;
    if (recipient_text.empty()) {
      // Outcomes decided without a transaction (DNS, all hosts down) know the
      // recipient only by index: read the address back (rare paths; the
      // last message read is kept for its siblings).
      if (!event_message_ || event_message_->id != q.message) {
        auto m = spool_.ReadMessage(q.message);
        event_message_ = m ? std::optional<spool::IncomingMessage>(std::move(*m)) : std::nullopt;
        if (event_message_) event_message_->content.clear();
      }
      if (event_message_ && q.index < event_message_->recipients.size()) {
        recipient_text = event_message_->recipients[q.index];
        sender_text = event_message_->sender;
      } else {
        recipient_text = "(index " + std::to_string(q.index) + ")@" + domain;
      }
    }
    events_.Write(events::Event{now, type, q.message, sender_text, recipient_text, extra});
  }

  void LogSpoolError(Result<void> r) {
    if (!r) spdlog::error("spool update failed: {}", r.error().ToString());
  }

  // A recipient reached a final state.
  void Final(const QueuedRecipient& q, RecipientState state, const Outcome& o, std::string_view recipient,
             const std::string* sender, const Where* where) {
    const char* type = state == RecipientState::kDelivered ? "delivered"
                       : state == RecipientState::kBounced ? "bounced"
                                                           : "expired";
    WriteEvent(type, q, recipient, sender ? *sender : std::string_view(), o, where);
    (state == RecipientState::kDelivered ? delivered_ : state == RecipientState::kBounced ? bounced_ : expired_)++;
    if (queued_ > 0) --queued_;
    auto it = messages_.find(q.message.value());
    if (it != messages_.end() && it->second.remaining > 0 && --it->second.remaining == 0) {
      uint32_t count = it->second.recipient_count;
      messages_.erase(it);
      if (count == 0) {
        auto m = spool_.ReadMessage(q.message);
        count = m ? static_cast<uint32_t>(m->recipients.size()) : 0;
      }
      if (count > 0) {
        // Every recipient is final: the whole message goes (no need to
        // record this last state first; the event log has the history).
        spool_.RemoveMessage(q.message, count, [this](Result<void> r) { LogSpoolError(std::move(r)); });
        return;
      }
    }
    spool::RecipientRecord record{q.message, q.index, "", state, q.attempts, clock_.Now()};
    spool_.UpdateRecipient(record, [this](Result<void> r) { LogSpoolError(std::move(r)); });
  }

  void Deferred(const QueuedRecipient& q, TimePoint next, const Outcome& o, std::string_view recipient,
                const std::string* sender, const Where* where) {
    WriteEvent("deferred", q, recipient, sender ? *sender : std::string_view(), o, where);
    ++deferred_;
    spool::RecipientRecord record{q.message, q.index, "", RecipientState::kQueued, q.attempts, next};
    spool_.UpdateRecipient(record, [this](Result<void> r) { LogSpoolError(std::move(r)); });
  }

  void Apply(SiteId site, const QueuedRecipient& q, const Outcome& o, std::string_view recipient,
             const std::string& sender, const Where& where) {
    const TimePoint now = clock_.Now();
    QueuedRecipient tried = q;  // events and the spool count this attempt
    tried.attempts = static_cast<uint16_t>(std::min<uint32_t>(q.attempts + 1, queue::kMaxAttempts));
    switch (o.kind) {
      case Outcome::Kind::kDelivered:
        scheduler_.Delivered(site);
        Final(tried, RecipientState::kDelivered, o, recipient, &sender, &where);
        return;
      case Outcome::Kind::kBounced:
        scheduler_.Bounced(site);
        Final(tried, RecipientState::kBounced, o, recipient, &sender, &where);
        return;
      case Outcome::Kind::kDeferred: {
        auto result = scheduler_.Defer(site, q, now);
        if (result.kind == queue::DeferResult::Kind::kExpired)
          Final(result.recipient, RecipientState::kExpired, o, recipient, &sender, &where);
        else
          Deferred(result.recipient, result.next_attempt, o, recipient, &sender, &where);
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
    Outcome o;
    o.kind = Outcome::Kind::kDeferred;
    o.enhanced = "4.4.1";
    o.text = "all MX hosts of " + scheduler_.site(site).key() + " are down" +
             (info.last_failure.empty() ? "" : " (last: " + info.last_failure + ")");
    for (Lane lane : {Lane::kFresh, Lane::kRetry}) {
      for (const auto& r : scheduler_.DeferLane(site, lane, now, SIZE_MAX)) {
        if (r.kind == queue::DeferResult::Kind::kExpired)
          Final(r.recipient, RecipientState::kExpired, o, "", nullptr, nullptr);
        else
          Deferred(r.recipient, r.next_attempt, o, "", nullptr, nullptr);
      }
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
    for (auto it = retry_domains_.begin(); it != retry_domains_.end();) {
      DomainState& d = Domain(*it);
      if (d.status == DomainState::Status::kRetryWait && d.retry_at <= now) {
        d.status = DomainState::Status::kUnknown;
        Resolve(*it);
        it = retry_domains_.erase(it);
      } else {
        ++it;
      }
    }
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
    for (uint32_t id : retry_domains_) next = std::min(next, Domain(id).retry_at);
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
    for (const auto& host : hosts) {
      const std::string health_key = HealthKey(host);
      if (!health_.Usable(health_key, clock_.Now())) continue;
      bool opened = false;
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
          where.source = local.substr(0, local.rfind(':'));
          break;
        }
        info.last_failure = r.error().Summary();
        if (r.error().tls_failed) no_tls_.insert(address.to_string());  // opportunistic: next time in clear
        conn.reset();
      }
      if (opened) {
        health_.Success(health_key);
        break;
      }
      health_.Failure(health_key, clock_.Now());
    }
    --info.opening;
    if (!conn) {
      info.proven = false;
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
        idle.expires_after(config_.delivery.idle_timeout);
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
          // Already gone (removed by an earlier outcome): nothing left to send.
          scheduler_.Bounced(site, static_cast<uint32_t>(batch.size()));
          queued_ -= std::min<uint64_t>(queued_, batch.size());
          continue;
        }
        scheduler_.Requeue(site, batch, lane);
        break;
      }
      if (auto it = messages_.find(message->id.value()); it != messages_.end())
        it->second.recipient_count = static_cast<uint32_t>(message->recipients.size());
      SmtpConnection::Transaction tx;
      tx.sender = message->sender;
      tx.content = &message->content;
      for (const auto& q : batch) tx.recipients.push_back(message->recipients.at(q.index));
      auto outcomes = co_await conn->Send(tx);
      for (size_t i = 0; i < batch.size(); ++i) {
        Apply(site, batch[i], outcomes[i], tx.recipients[i], message->sender, where);
      }
      if (!outcomes.empty()) scheduler_.SetLastReply(site, outcomes.back().Summary());
      if (!conn->usable() || conn->transactions() >= limits.max_messages_per_connection) break;
    }
    if (conn->usable()) co_await conn->Quit();
  }

  // --- Operator view ---------------------------------------------------------

  void RefreshSnapshot(TimePoint now) {
    if (now - last_snapshot_ < std::chrono::milliseconds(250)) return;
    last_snapshot_ = now;
    nlohmann::json sites = nlohmann::json::array();
    scheduler_.ForEachSite([&](const queue::Site& site) {
      auto st = scheduler_.Stats(site.id());
      nlohmann::json hosts = nlohmann::json::array();
      auto it = sites_.find(site.id().value);
      if (it != sites_.end()) {
        for (const auto& h : it->second.hosts) {
          const std::string key = HealthKey(h);
          nlohmann::json host = {{"name", h.name}, {"port", h.port}, {"state", queue::ToString(health_.State(key))}};
          if (auto until = health_.DownUntil(key)) host["down_until"] = ToUnixMillis(*until);
          hosts.push_back(std::move(host));
        }
      }
      sites.push_back({{"site", st.key},
                       {"fresh", st.fresh},
                       {"retry", st.retry},
                       {"waiting", st.waiting},
                       {"in_flight", st.in_flight},
                       {"connections", {{"fresh", st.connections_fresh}, {"retry", st.connections_retry}}},
                       {"delivered", st.counters.delivered},
                       {"deferred", st.counters.deferred},
                       {"bounced", st.counters.bounced},
                       {"expired", st.counters.expired},
                       {"last_reply", st.last_reply},
                       {"last_failure", it != sites_.end() ? it->second.last_failure : ""},
                       {"hosts", std::move(hosts)}});
    });
    size_t dns_waiting = 0;
    for (const auto& d : domain_states_) dns_waiting += d.waiting.size();
    std::lock_guard lock(snapshot_mu_);
    snapshot_ = {{"sites", std::move(sites)}, {"resolving", dns_waiting}};
  }

  // --- State -----------------------------------------------------------------

  struct MessageEntry {
    uint32_t remaining = 0;
    uint32_t recipient_count = 0;  // 0: not known yet (recovered, not read)
  };

  asio::io_context& io_;
  const config::Config& config_;
  spool::Spool& spool_;
  events::EventLog& events_;
  dns::Resolver& resolver_;
  dns::Router* router_;
  const Clock& clock_;
  queue::Scheduler scheduler_;
  queue::HostHealth health_;
  queue::DomainTable domains_;
  std::unique_ptr<asio::ssl::context> tls_;
  ConnectionOptions options_;
  asio::steady_timer wake_;
  bool stopped_ = false;
  bool pump_posted_ = false;
  std::vector<DomainState> domain_states_;
  std::unordered_set<uint32_t> retry_domains_;
  std::unordered_map<uint32_t, SiteInfo> sites_;
  std::unordered_set<uint32_t> starved_;
  std::unordered_set<std::string> no_tls_;
  std::unordered_map<uint64_t, MessageEntry> messages_;
  TimePoint last_snapshot_;
  std::optional<spool::IncomingMessage> event_message_;  // WriteEvent's one-message cache

 public:
  std::atomic<uint64_t> delivered_{0}, deferred_{0}, bounced_{0}, expired_{0}, connections_opened_{0}, queued_{0};
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
  nlohmann::json snapshot_ = nlohmann::json::object();
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
  return {impl_->delivered_.load(), impl_->deferred_.load(), impl_->bounced_.load(),
          impl_->expired_.load(),   impl_->connections_opened_.load(), impl_->queued_.load()};
}

void Dispatcher::QueuesJson(nlohmann::json& out) const {
  std::lock_guard lock(impl_->snapshot_mu_);
  out = impl_->snapshot_;
}

}  // namespace hikyaku::delivery
