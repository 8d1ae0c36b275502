#include "admin/shaping_view.h"

#include <cmath>

namespace hikyaku::admin {

namespace {

// Rates as recipients per minute, rounded to 0.1: what operators configure.
double PerMinute(double per_second) { return std::round(per_second * 600.0) / 10.0; }

nlohmann::json Time(TimePoint t) {
  if (t == TimePoint::max() || t.time_since_epoch().count() == 0) return nullptr;
  return ToUnixMillis(t);
}

}  // namespace

nlohmann::json ShapingJson(const delivery::ShapingSnapshot& s) {
  nlohmann::json pairs = nlohmann::json::array();
  for (const auto& p : s.pairs) {
    const auto& c = p.configured;
    pairs.push_back({
        {"source", p.source},
        {"site", p.site},
        {"state", std::string(p.flow.state)},
        {"connections", p.open_connections},
        {"max_connections", p.flow.connections},  // effective; 0 = not limited
        {"configured_max_connections", c.flow.max_connections},
        {"rate_per_minute", PerMinute(p.flow.rate)},  // effective pacing; 0 = not limited
        {"configured_rate_per_minute", PerMinute(c.flow.max_message_rate)},
        {"current_rate_per_minute", PerMinute(p.current_rate)},
        {"estimate_per_minute", PerMinute(p.flow.estimate)},
        {"accepted", p.accepted},
        {"throttled", p.throttled},
        {"last_throttle_reply", p.flow.last_reply},
        {"last_signal", Time(p.flow.last_signal)},
        {"last_change", Time(p.last_change)},
        {"last_change_reason", p.last_change_reason},
    });
  }
  nlohmann::json sources = nlohmann::json::array();
  for (const auto& v : s.sources) {
    nlohmann::json source = {{"name", v.name}, {"address", v.address}, {"suspended", v.suspended}};
    if (!v.warmup.empty()) {
      const auto& w = v.warmup_progress;
      source["warmup"] = {{"schedule", v.warmup},     {"day", w.day},
                          {"sent_today", w.sent_today}, {"cap_today", w.cap_today},
                          {"sent_this_hour", w.sent_this_hour}, {"cap_this_hour", w.cap_this_hour},
                          {"done", w.done}};
    }
    sources.push_back(std::move(source));
  }
  nlohmann::json suspensions = nlohmann::json::array();
  for (const auto& x : s.suspensions)
    suspensions.push_back({{"id", x.id},
                           {"site", x.scope.site},
                           {"source", x.scope.source},
                           {"tenant", x.scope.tenant},
                           {"reason", x.reason},
                           {"created", Time(x.created)},
                           {"until", Time(x.until)}});
  nlohmann::json tenants = nlohmann::json::array();
  for (const auto& t : s.tenants) tenants.push_back({{"name", t.name}, {"pool", t.pool}, {"moved", t.moved}});
  return {{"pairs", std::move(pairs)},
          {"sources", std::move(sources)},
          {"suspensions", std::move(suspensions)},
          {"tenants", std::move(tenants)}};
}

}  // namespace hikyaku::admin
