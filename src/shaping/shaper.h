// Shaper: decides HOW FAST and FROM WHERE mail goes out — which source IP of
// a pool opens the next connection to a site, whether a connection may send
// its next transaction now, and how the replies move each (source, site)
// pair's limits. The scheduler (queue/) keeps deciding WHAT goes next; the
// dispatcher asks both, and does the I/O.
//
// Parts (each its own file, each tested alone):
//   FlowController   adaptive connections and rate of one (source, site) pair
//   SmoothWrr        the order in which a pool's sources are used
//   WarmupCounter    a new source's daily and hourly caps
//   Suspensions      the operator's holds on sites, sources, pairs, tenants
//
// Source choice (PickSource): smooth weighted round robin over the pool's
// sources that have headroom for the site now: not suspended (nor the site,
// nor the pair), below the pair's connection limit and connection rate, and
// with warm-up room left (the source's schedule, or its per-site schedule
// where one is given for this site: it replaces the general one there). A source without headroom is skipped, so
// a capped source's mail flows to the pool's others; when none has room the
// answer says when to ask again, and the mail waits holding no connection.
//
// Sending (MaySend / TrySend): a transaction of n recipients needs the pair
// (and site) unsuspended, warm-up room for n, and n pacing tokens of the
// pair's FlowController.
//
// Limits: SiteShaping per (site, source) comes from the configuration
// ([delivery] defaults, [[site]], [[site.source]]; the wiring merges them).
// Configured maxima are hard caps (FlowController never exceeds them).
//
// Reload (Configure): sources, pools, limits and schedules are replaced;
// learned state (flow controllers, open connection counts, warm-up counts,
// suspensions) is kept by name, so a reload drops nothing.
//
// Time: pure logic; every call takes `now`. Thread-safety: not
// synchronised; one owner (the dispatcher's thread).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "shaping/flow_controller.h"
#include "shaping/smooth_wrr.h"
#include "shaping/suspensions.h"
#include "shaping/warmup.h"

namespace hikyaku::shaping {

using SourceId = uint32_t;  // index into ShaperConfig::sources, stable until the next Configure
using PoolId = uint32_t;    // index into ShaperConfig::pools

struct SourceSpec {
  std::string name;
  std::string address;     // for the operator view; binding is the dispatcher's
  std::string warmup;      // schedule name; "" = no warm-up
  TimePoint warmup_start;  // UTC midnight of the first warm-up day
};

struct PoolSpec {
  std::string name;
  std::vector<WrrEntry> sources;  // id = source name
};

// Per (site, source) limits; 0 = not configured.
struct SiteShaping {
  FlowLimits flow;
  uint32_t max_messages_per_connection = 0;
  uint32_t max_recipients_per_message = 0;
};

struct LimitTable {
  SiteShaping defaults;                          // sites without their own entry
  std::map<std::string, SiteShaping, std::less<>> sites;
  // (site, source) overrides, complete (already merged with the site's own).
  std::map<std::pair<std::string, std::string>, SiteShaping, std::less<>> pairs;
  SiteShaping For(std::string_view site, std::string_view source) const;
};

struct WarmupPlan {
  WarmupSchedule schedule;                                      // every site without its own
  std::map<std::string, WarmupSchedule, std::less<>> per_site;  // replaces `schedule` for one site
};

struct ShaperConfig {
  std::vector<SourceSpec> sources;  // at least one
  std::vector<PoolSpec> pools;      // at least one; each names existing sources
  std::map<std::string, WarmupPlan, std::less<>> warmups;
  LimitTable limits;
  FlowTuning tuning;
};

// Something operators should see: a change of a pair's effective limits,
// a suspension that ended, a source that could not be bound.
struct ShapingEvent {
  TimePoint at;
  std::string type;  // "shaping", "suspension_ended"
  std::string source;
  std::string site;
  uint32_t old_connections = 0, new_connections = 0;
  double old_rate = 0, new_rate = 0;
  std::string reason;
};

class Shaper {
 public:
  Shaper(ShaperConfig config, TimePoint now);
  void Configure(ShaperConfig config, TimePoint now);

  // --- Tables ----------------------------------------------------------------
  size_t source_count() const { return config_.sources.size(); }
  const SourceSpec& source(SourceId id) const { return config_.sources[id]; }
  std::optional<SourceId> FindSource(std::string_view name) const;
  size_t pool_count() const { return config_.pools.size(); }
  const std::string& pool_name(PoolId id) const { return config_.pools[id].name; }
  std::optional<PoolId> FindPool(std::string_view name) const;
  bool PoolContains(PoolId pool, SourceId source) const;
  SiteShaping LimitsFor(SourceId source, std::string_view site) const;

  // --- Connections -----------------------------------------------------------
  struct Pick {
    std::optional<SourceId> source;
    TimePoint retry_at = TimePoint::max();  // no source: when one may have room
    std::string why_not;                    // no source: the first reason met
  };
  Pick PickSource(PoolId pool, std::string_view site, TimePoint now);
  // Is the site (all of it, for every source and tenant) suspended?
  bool SiteSuspended(std::string_view site, TimePoint now) const;
  void Opened(SourceId source, std::string_view site, TimePoint now);
  void Closed(SourceId source, std::string_view site);
  uint32_t open_connections(SourceId source, std::string_view site) const;

  // --- Transactions ----------------------------------------------------------
  // Not suspended, warm-up room for n. False: close the connection (the
  // mail waits for another source or for later).
  bool MaySend(SourceId source, std::string_view site, std::string_view tenant, uint32_t n, TimePoint now) const;
  bool TrySend(SourceId source, std::string_view site, uint32_t n, TimePoint now);
  TimePoint NextSend(SourceId source, std::string_view site, uint32_t n, TimePoint now) const;
  // The transaction was sent: n recipients count against the warm-up caps.
  void Sent(SourceId source, std::string_view site, uint32_t n, TimePoint now);
  void Accepted(SourceId source, std::string_view site, uint32_t n, TimePoint now);
  void OnSignal(SourceId source, std::string_view site, Signal signal, std::string_view reply, TimePoint now);

  // --- Operator --------------------------------------------------------------
  Suspensions& suspensions() { return suspensions_; }
  const Suspensions& suspensions() const { return suspensions_; }
  bool TenantBlocked(std::string_view tenant, std::string_view site, TimePoint now) const {
    return suspensions_.TenantBlocked(tenant, site, now);
  }

  // --- Time ------------------------------------------------------------------
  void Tick(TimePoint now);
  std::optional<TimePoint> NextWakeup(TimePoint now) const;
  std::vector<ShapingEvent> TakeEvents();

  // --- Views -----------------------------------------------------------------
  struct PairView {
    std::string source;
    std::string site;
    uint32_t open_connections = 0;
    SiteShaping configured;
    FlowController::View flow;
    double current_rate = 0;  // recipients accepted per second over the last minute
    uint64_t accepted = 0, throttled = 0;
    TimePoint last_change;
    std::string last_change_reason;
  };
  std::vector<PairView> Pairs(TimePoint now) const;
  struct SourceView {
    std::string name;
    std::string address;
    std::string warmup;
    WarmupCounter::Progress warmup_progress;
    bool suspended = false;
  };
  std::vector<SourceView> Sources(TimePoint now) const;
  // Warm-up counts to persist across restarts: source -> (sent today, this hour).
  struct WarmupCount {
    std::string source;
    std::string site;  // "" = the source's overall counter
    uint64_t sent_today = 0, sent_this_hour = 0;
  };
  std::vector<WarmupCount> WarmupCounts(TimePoint now) const;
  void RestoreWarmup(const std::vector<WarmupCount>& counts, TimePoint now);

 private:
  // Recipients accepted per second over the last minute.
  struct RateWindow {
    std::array<uint32_t, 60> seconds{};
    int64_t last = 0;  // epoch second of the newest slot
    void Add(uint32_t n, TimePoint now);
    double PerSecond(TimePoint now) const;
  };
  struct Pair {
    Pair(const SiteShaping& limits, TimePoint now, const FlowTuning& tuning)
        : configured(limits), flow(limits.flow, now, tuning) {}
    SiteShaping configured;
    FlowController flow;
    uint32_t open = 0;
    RateWindow window;
    uint64_t accepted = 0, throttled = 0;
    TimePoint last_change;
    std::string last_change_reason;
  };
  struct SourceState {
    std::unique_ptr<WarmupCounter> overall;
    std::map<std::string, std::unique_ptr<WarmupCounter>, std::less<>> per_site;
  };

  Pair& PairOf(SourceId source, std::string_view site, TimePoint now);
  const Pair* FindPair(SourceId source, std::string_view site) const;
  const WarmupPlan* PlanOf(SourceId source) const;
  uint64_t WarmupRoom(SourceId source, std::string_view site, TimePoint now) const;
  TimePoint WarmupOpening(SourceId source, std::string_view site, TimePoint now) const;
  void CollectChanges(const std::string& source, const std::string& site, Pair& pair);
  void RebuildIndexes(TimePoint now);
  static std::string Key(std::string_view source, std::string_view site);

  ShaperConfig config_;
  std::vector<SmoothWrr> pool_wrr_;
  std::vector<std::vector<SourceId>> pool_members_;  // WRR index -> source id
  std::unordered_map<std::string, Pair> pairs_;      // by Key(source name, site)
  std::map<std::string, SourceState, std::less<>> sources_;  // by name; kept across reloads
  Suspensions suspensions_;
  std::vector<ShapingEvent> events_;
};

}  // namespace hikyaku::shaping
