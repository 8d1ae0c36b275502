#include "delivery/shaping_options.h"

#include <chrono>

namespace hikyaku::delivery {

namespace {

double PerSecond(const std::optional<config::Rate>& r) { return r ? r->PerSecond() : 0.0; }

shaping::SiteShaping SiteShapingOf(const config::DeliveryConfig& d, const config::SiteConfig* site,
                                   const config::SiteSourceLimits* pair) {
  shaping::SiteShaping s;
  auto pick = [](const auto& pair_value, const auto& site_value, const auto& delivery_value) {
    if (pair_value) return pair_value;
    if (site_value) return site_value;
    return delivery_value;
  };
  using U = std::optional<uint32_t>;
  using R = std::optional<config::Rate>;
  static const U kNoCount;
  static const R kNoRate;
  const U& pair_conns = pair ? pair->max_connections_per_source : kNoCount;
  const U& pair_msgs = pair ? pair->max_messages_per_connection : kNoCount;
  const U& pair_rcpts = pair ? pair->max_recipients_per_message : kNoCount;
  const R& pair_rate = pair ? pair->max_message_rate_per_source : kNoRate;
  const R& pair_crate = pair ? pair->max_connection_rate_per_source : kNoRate;
  s.flow.max_connections =
      pick(pair_conns, site ? site->max_connections_per_source : kNoCount, d.max_connections_per_source).value_or(0);
  s.flow.max_message_rate =
      PerSecond(pick(pair_rate, site ? site->max_message_rate_per_source : kNoRate, d.max_message_rate_per_source));
  s.flow.max_connection_rate = PerSecond(
      pick(pair_crate, site ? site->max_connection_rate_per_source : kNoRate, d.max_connection_rate_per_source));
  s.max_recipients_per_message =
      pick(pair_rcpts, site ? site->max_recipients_per_message : kNoCount, d.max_recipients_per_message).value_or(0);
  // A pair override of messages per connection; the site's own is the
  // scheduler's SiteLimits (the site total), so only the pair's goes here.
  s.max_messages_per_connection = pair_msgs.value_or(0);
  return s;
}

shaping::WarmupSchedule ScheduleOf(const std::string& name, const std::vector<config::WarmupDay>& days) {
  shaping::WarmupSchedule schedule;
  schedule.name = name;
  for (const auto& d : days) schedule.days.push_back({d.day, d.per_day.value_or(0), d.per_hour.value_or(0)});
  return schedule;
}

}  // namespace

shaping::ShaperConfig ShaperConfigFrom(const config::Config& config) {
  shaping::ShaperConfig out;
  for (const auto& s : config.sources) {
    shaping::SourceSpec spec;
    spec.name = s.name;
    spec.address = s.address ? s.address->ToString() : "";
    spec.warmup = s.warmup;
    if (s.warmup_start) spec.warmup_start = TimePoint(std::chrono::sys_days(*s.warmup_start).time_since_epoch());
    out.sources.push_back(std::move(spec));
  }
  for (const auto& p : config.pools) {
    shaping::PoolSpec pool;
    pool.name = p.name;
    for (const auto& m : p.sources) pool.sources.push_back({m.source, m.weight});
    out.pools.push_back(std::move(pool));
  }
  for (const auto& w : config.warmups) {
    shaping::WarmupPlan plan;
    plan.schedule = ScheduleOf(w.name, w.days);
    for (const auto& site : w.sites) plan.per_site.emplace(site.site, ScheduleOf(w.name + "@" + site.site, site.days));
    out.warmups.emplace(w.name, std::move(plan));
  }
  out.limits.defaults = SiteShapingOf(config.delivery, nullptr, nullptr);
  for (const auto& site : config.sites) {
    out.limits.sites[site.name] = SiteShapingOf(config.delivery, &site, nullptr);
    for (const auto& pair : site.sources)
      out.limits.pairs[{site.name, pair.source}] = SiteShapingOf(config.delivery, &site, &pair);
  }
  return out;
}

ReplyRules ReplyRulesFrom(const config::Config& config) {
  ReplyRules rules;
  for (const auto& r : config.reply_rules) {
    ReplyRule rule;
    if (r.code) rule.code = *r.code;
    rule.enhanced = r.enhanced;
    if (!r.match.empty()) rule.match.emplace(r.match, std::regex::ECMAScript | std::regex::icase);
    rule.site = r.site;
    switch (r.action) {
      case config::ReplyAction::kThrottle: rule.action = ReplyRule::Action::kThrottle; break;
      case config::ReplyAction::kPause: rule.action = ReplyRule::Action::kPause; break;
      case config::ReplyAction::kBounce: rule.action = ReplyRule::Action::kBounce; break;
      case config::ReplyAction::kDefer: rule.action = ReplyRule::Action::kDefer; break;
      case config::ReplyAction::kIgnore: rule.action = ReplyRule::Action::kIgnore; break;
    }
    rule.duration = r.duration.value_or(Duration{});
    rule.description = r.origin;
    rules.push_back(std::move(rule));
  }
  return rules;
}

}  // namespace hikyaku::delivery
