// Suspensions: the operator's "stop sending there for a while". A
// suspension names any combination of a site, a source and a tenant (at
// least one; an empty field matches everything) and lasts until a time (or
// until it is removed). It blocks every delivery whose (site, source,
// tenant) it matches:
//   site only          the site gets no connection at all;
//   source only        the source is used for no site;
//   source + site      that pair only (the site's other sources go on);
//   tenant (+ site)    that tenant's mail waits (its other mail, and every
//                      other tenant's, goes on).
// A suspended queue holds no connection: connection-level questions
// (Blocks with tenant = "") only count suspensions without a tenant.
//
// Persistence is the caller's: List() and Restore() carry the whole table.
//
// Thread-safety: not synchronised; one owner.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"

namespace hikyaku::shaping {

struct SuspensionScope {
  std::string site;
  std::string source;
  std::string tenant;
  bool empty() const { return site.empty() && source.empty() && tenant.empty(); }
};

struct Suspension {
  uint64_t id = 0;
  SuspensionScope scope;
  TimePoint created;
  TimePoint until;  // TimePoint::max(): until removed
  std::string reason;
};

class Suspensions {
 public:
  // A new suspension (scope must not be empty); returns its id.
  uint64_t Add(SuspensionScope scope, TimePoint until, std::string reason, TimePoint now);
  // False if there is no such (unexpired) suspension.
  bool Remove(uint64_t id);
  // Drops the suspensions that ended by `now`; returns them (for events).
  std::vector<Suspension> Expire(TimePoint now);

  // Does an active suspension block (site, source, tenant)? Empty `source`
  // or `tenant` in the question means "any connection-level decision":
  // only suspensions that leave that field open match.
  bool Blocks(std::string_view site, std::string_view source, std::string_view tenant, TimePoint now) const;
  // Tenants suspended for `site` (or everywhere): their flows are paused.
  bool TenantBlocked(std::string_view tenant, std::string_view site, TimePoint now) const;

  const std::vector<Suspension>& List() const { return active_; }
  void Restore(std::vector<Suspension> suspensions);
  std::optional<TimePoint> NextExpiry() const;

 private:
  std::vector<Suspension> active_;
  uint64_t next_id_ = 1;
};

}  // namespace hikyaku::shaping
