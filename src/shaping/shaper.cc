#include "shaping/shaper.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>

namespace hikyaku::shaping {

namespace {
int64_t EpochSecond(TimePoint t) { return ToUnixMillis(t) / 1000; }
}  // namespace

SiteShaping LimitTable::For(std::string_view site, std::string_view source) const {
  if (auto it = pairs.find(std::pair<std::string, std::string>(site, source)); it != pairs.end()) return it->second;
  if (auto it = sites.find(site); it != sites.end()) return it->second;
  return defaults;
}

void Shaper::RateWindow::Add(uint32_t n, TimePoint now) {
  const int64_t s = EpochSecond(now);
  if (s - last >= 60) {
    seconds.fill(0);
  } else {
    for (int64_t t = last + 1; t <= s; ++t) seconds[static_cast<size_t>(t % 60)] = 0;
  }
  if (s > last) last = s;
  seconds[static_cast<size_t>(s % 60)] += n;
}

double Shaper::RateWindow::PerSecond(TimePoint now) const {
  const int64_t s = EpochSecond(now);
  uint64_t sum = 0;
  for (int64_t t = std::max(last - 59, s - 59); t <= last && t <= s; ++t) sum += seconds[static_cast<size_t>(t % 60)];
  return static_cast<double>(sum) / 60.0;
}

Shaper::Shaper(ShaperConfig config, TimePoint now) { Configure(std::move(config), now); }

std::string Shaper::Key(std::string_view source, std::string_view site) {
  std::string key(source);
  key += '\n';
  key += site;
  return key;
}

void Shaper::Configure(ShaperConfig config, TimePoint now) {
  // Credits of the old round robins, kept by pool name.
  std::map<std::string, SmoothWrr> old_wrr;
  for (size_t i = 0; i < pool_wrr_.size(); ++i) old_wrr.emplace(config_.pools[i].name, std::move(pool_wrr_[i]));
  config_ = std::move(config);
  pool_wrr_.clear();
  pool_members_.clear();
  for (const auto& pool : config_.pools) {
    std::vector<SourceId> members;
    for (const auto& e : pool.sources) members.push_back(FindSource(e.id).value_or(0));
    pool_members_.push_back(std::move(members));
    if (auto it = old_wrr.find(pool.name); it != old_wrr.end()) {
      it->second.SetWeights(pool.sources);
      pool_wrr_.push_back(std::move(it->second));
    } else {
      pool_wrr_.emplace_back(pool.sources);
    }
  }
  RebuildIndexes(now);
}

void Shaper::RebuildIndexes(TimePoint now) {
  // Warm-up counters: kept by source name, re-pointed at the new schedules.
  for (SourceId id = 0; id < config_.sources.size(); ++id) {
    const SourceSpec& spec = config_.sources[id];
    SourceState& state = sources_[spec.name];
    const WarmupPlan* plan = PlanOf(id);
    const WarmupSchedule* schedule = plan ? &plan->schedule : nullptr;
    if (!state.overall) state.overall = std::make_unique<WarmupCounter>(schedule, spec.warmup_start);
    else state.overall->SetSchedule(schedule, spec.warmup_start);
    for (auto it = state.per_site.begin(); it != state.per_site.end();) {
      const WarmupSchedule* site_schedule = nullptr;
      if (plan)
        if (auto s = plan->per_site.find(it->first); s != plan->per_site.end()) site_schedule = &s->second;
      if (!site_schedule) {
        it = state.per_site.erase(it);
        continue;
      }
      it->second->SetSchedule(site_schedule, spec.warmup_start);
      ++it;
    }
    if (plan)
      for (const auto& [site, schedule_for_site] : plan->per_site)
        if (!state.per_site.count(site))
          state.per_site.emplace(site, std::make_unique<WarmupCounter>(&schedule_for_site, spec.warmup_start));
  }
  // Pairs keep what they learned; their caps follow the new configuration.
  for (auto& [key, pair] : pairs_) {
    const auto nl = key.find('\n');
    const std::string source = key.substr(0, nl), site = key.substr(nl + 1);
    pair.configured = config_.limits.For(site, source);
    pair.flow.SetLimits(pair.configured.flow, now);
    CollectChanges(source, site, pair);
  }
}

std::optional<SourceId> Shaper::FindSource(std::string_view name) const {
  for (SourceId i = 0; i < config_.sources.size(); ++i)
    if (config_.sources[i].name == name) return i;
  return std::nullopt;
}

std::optional<PoolId> Shaper::FindPool(std::string_view name) const {
  for (PoolId i = 0; i < config_.pools.size(); ++i)
    if (config_.pools[i].name == name) return i;
  return std::nullopt;
}

bool Shaper::PoolContains(PoolId pool, SourceId source) const {
  if (pool >= pool_members_.size()) return false;
  const auto& m = pool_members_[pool];
  return std::find(m.begin(), m.end(), source) != m.end();
}

SiteShaping Shaper::LimitsFor(SourceId source, std::string_view site) const {
  return config_.limits.For(site, config_.sources[source].name);
}

const WarmupPlan* Shaper::PlanOf(SourceId source) const {
  const std::string& name = config_.sources[source].warmup;
  if (name.empty()) return nullptr;
  auto it = config_.warmups.find(name);
  return it == config_.warmups.end() ? nullptr : &it->second;
}

Shaper::Pair& Shaper::PairOf(SourceId source, std::string_view site, TimePoint now) {
  const std::string key = Key(config_.sources[source].name, site);
  auto it = pairs_.find(key);
  if (it == pairs_.end())
    it = pairs_.emplace(key, Pair(LimitsFor(source, site), now, config_.tuning)).first;
  return it->second;
}

const Shaper::Pair* Shaper::FindPair(SourceId source, std::string_view site) const {
  auto it = pairs_.find(Key(config_.sources[source].name, site));
  return it == pairs_.end() ? nullptr : &it->second;
}

uint64_t Shaper::WarmupRoom(SourceId source, std::string_view site, TimePoint now) const {
  auto it = sources_.find(config_.sources[source].name);
  if (it == sources_.end()) return UINT64_MAX;
  // A per-site schedule replaces the source's own for that site.
  if (auto s = it->second.per_site.find(site); s != it->second.per_site.end()) return s->second->Room(now);
  return it->second.overall ? it->second.overall->Room(now) : UINT64_MAX;
}

TimePoint Shaper::WarmupOpening(SourceId source, std::string_view site, TimePoint now) const {
  auto it = sources_.find(config_.sources[source].name);
  if (it == sources_.end()) return now;
  if (auto s = it->second.per_site.find(site); s != it->second.per_site.end()) return s->second->NextOpening(now);
  return it->second.overall ? it->second.overall->NextOpening(now) : now;
}

bool Shaper::SiteSuspended(std::string_view site, TimePoint now) const {
  return suspensions_.Blocks(site, "", "", now);
}

Shaper::Pick Shaper::PickSource(PoolId pool, std::string_view site, TimePoint now) {
  Pick pick;
  if (pool >= pool_wrr_.size()) {
    pick.why_not = "no such pool";
    return pick;
  }
  if (SiteSuspended(site, now)) {
    pick.why_not = "site suspended";
    return pick;
  }
  const auto& members = pool_members_[pool];
  auto consider = [&](size_t index) {
    const SourceId source = members[index];
    const std::string& name = config_.sources[source].name;
    if (suspensions_.Blocks(site, name, "", now)) {
      if (pick.why_not.empty()) pick.why_not = "source " + name + " suspended";
      return false;
    }
    if (WarmupRoom(source, site, now) == 0) {
      if (pick.why_not.empty()) pick.why_not = "source " + name + " reached its warm-up cap";
      pick.retry_at = std::min(pick.retry_at, WarmupOpening(source, site, now));
      return false;
    }
    Pair& pair = PairOf(source, site, now);
    pair.flow.Tick(now);
    if (!pair.flow.MayOpen(pair.open, now)) {
      const uint32_t limit = pair.flow.connections();
      if (limit != 0 && pair.open >= limit) {
        if (pick.why_not.empty())
          pick.why_not = "source " + name + " holds " + std::to_string(pair.open) + " of " + std::to_string(limit) +
                         " connections";
      } else {
        if (pick.why_not.empty()) pick.why_not = "source " + name + " at its connection rate";
        pick.retry_at = std::min(pick.retry_at, pair.flow.NextOpen(now));
      }
      return false;
    }
    return true;
  };
  if (auto index = pool_wrr_[pool].Pick(consider)) pick.source = members[*index];
  return pick;
}

void Shaper::Opened(SourceId source, std::string_view site, TimePoint now) {
  Pair& pair = PairOf(source, site, now);
  ++pair.open;
  pair.flow.Opened(now);
}

void Shaper::Closed(SourceId source, std::string_view site) {
  auto it = pairs_.find(Key(config_.sources[source].name, site));
  if (it != pairs_.end() && it->second.open > 0) --it->second.open;
}

uint32_t Shaper::open_connections(SourceId source, std::string_view site) const {
  const Pair* pair = FindPair(source, site);
  return pair ? pair->open : 0;
}

bool Shaper::MaySend(SourceId source, std::string_view site, std::string_view tenant, uint32_t n,
                     TimePoint now) const {
  const std::string& name = config_.sources[source].name;
  if (suspensions_.Blocks(site, name, "", now)) return false;
  if (!tenant.empty() && suspensions_.Blocks(site, name, tenant, now)) return false;
  return WarmupRoom(source, site, now) >= n;
}

bool Shaper::TrySend(SourceId source, std::string_view site, uint32_t n, TimePoint now) {
  return PairOf(source, site, now).flow.TrySend(n, now);
}

TimePoint Shaper::NextSend(SourceId source, std::string_view site, uint32_t n, TimePoint now) const {
  const Pair* pair = FindPair(source, site);
  return pair ? pair->flow.NextSend(n, now) : now;
}

void Shaper::Sent(SourceId source, std::string_view site, uint32_t n, TimePoint now) {
  auto it = sources_.find(config_.sources[source].name);
  if (it == sources_.end()) return;
  if (auto s = it->second.per_site.find(site); s != it->second.per_site.end())
    s->second->Count(n, now);
  else if (it->second.overall)
    it->second.overall->Count(n, now);
}

void Shaper::Accepted(SourceId source, std::string_view site, uint32_t n, TimePoint now) {
  Pair& pair = PairOf(source, site, now);
  pair.flow.OnAccepted(n, now);
  pair.window.Add(n, now);
  pair.accepted += n;
  CollectChanges(config_.sources[source].name, std::string(site), pair);
}

void Shaper::OnSignal(SourceId source, std::string_view site, Signal signal, std::string_view reply, TimePoint now) {
  Pair& pair = PairOf(source, site, now);
  if (signal == Signal::kThrottled) ++pair.throttled;
  // The connection that met the signal is counted in `open` (FlowController
  // expects it so): a refused 4th connection is open = 4, limit 3.
  pair.flow.OnSignal(signal, pair.open, now, reply);
  CollectChanges(config_.sources[source].name, std::string(site), pair);
}

void Shaper::CollectChanges(const std::string& source, const std::string& site, Pair& pair) {
  for (auto& c : pair.flow.TakeChanges()) {
    pair.last_change = c.at;
    pair.last_change_reason = c.reason;
    ShapingEvent e;
    e.at = c.at;
    e.type = "shaping";
    e.source = source;
    e.site = site;
    e.old_connections = c.old_connections;
    e.new_connections = c.new_connections;
    e.old_rate = c.old_rate;
    e.new_rate = c.new_rate;
    e.reason = std::move(c.reason);
    events_.push_back(std::move(e));
  }
}

void Shaper::Tick(TimePoint now) {
  for (auto& [key, pair] : pairs_) {
    pair.flow.Tick(now);
    const auto nl = key.find('\n');
    CollectChanges(key.substr(0, nl), key.substr(nl + 1), pair);
  }
  for (auto& s : suspensions_.Expire(now)) {
    ShapingEvent e;
    e.at = now;
    e.type = "suspension_ended";
    e.source = s.scope.source;
    e.site = s.scope.site;
    e.reason = "suspension " + std::to_string(s.id) + " ended" + (s.reason.empty() ? "" : " (" + s.reason + ")");
    events_.push_back(std::move(e));
  }
}

std::optional<TimePoint> Shaper::NextWakeup(TimePoint now) const {
  std::optional<TimePoint> next = suspensions_.NextExpiry();
  (void)now;
  return next;
}

std::vector<ShapingEvent> Shaper::TakeEvents() { return std::exchange(events_, {}); }

std::vector<Shaper::PairView> Shaper::Pairs(TimePoint now) const {
  std::vector<PairView> out;
  out.reserve(pairs_.size());
  for (const auto& [key, pair] : pairs_) {
    const auto nl = key.find('\n');
    PairView v;
    v.source = key.substr(0, nl);
    v.site = key.substr(nl + 1);
    v.open_connections = pair.open;
    v.configured = pair.configured;
    v.flow = pair.flow.view();
    v.current_rate = pair.window.PerSecond(now);
    v.accepted = pair.accepted;
    v.throttled = pair.throttled;
    v.last_change = pair.last_change;
    v.last_change_reason = pair.last_change_reason;
    out.push_back(std::move(v));
  }
  std::sort(out.begin(), out.end(),
            [](const PairView& a, const PairView& b) { return std::tie(a.site, a.source) < std::tie(b.site, b.source); });
  return out;
}

std::vector<Shaper::SourceView> Shaper::Sources(TimePoint now) const {
  std::vector<SourceView> out;
  for (SourceId id = 0; id < config_.sources.size(); ++id) {
    const SourceSpec& spec = config_.sources[id];
    SourceView v;
    v.name = spec.name;
    v.address = spec.address;
    v.warmup = spec.warmup;
    if (auto it = sources_.find(spec.name); it != sources_.end() && it->second.overall)
      v.warmup_progress = it->second.overall->progress(now);
    v.suspended = suspensions_.Blocks("", spec.name, "", now);
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<Shaper::WarmupCount> Shaper::WarmupCounts(TimePoint now) const {
  std::vector<WarmupCount> out;
  for (const auto& [name, state] : sources_) {
    if (state.overall) {
      auto p = state.overall->progress(now);
      if (p.sent_today || p.sent_this_hour) out.push_back({name, "", p.sent_today, p.sent_this_hour});
    }
    for (const auto& [site, counter] : state.per_site) {
      auto p = counter->progress(now);
      if (p.sent_today || p.sent_this_hour) out.push_back({name, site, p.sent_today, p.sent_this_hour});
    }
  }
  return out;
}

void Shaper::RestoreWarmup(const std::vector<WarmupCount>& counts, TimePoint now) {
  for (const auto& c : counts) {
    auto it = sources_.find(c.source);
    if (it == sources_.end()) continue;
    if (c.site.empty()) {
      if (it->second.overall) it->second.overall->Restore(c.sent_today, c.sent_this_hour, now);
    } else if (auto s = it->second.per_site.find(c.site); s != it->second.per_site.end()) {
      s->second->Restore(c.sent_today, c.sent_this_hour, now);
    }
  }
}

}  // namespace hikyaku::shaping
