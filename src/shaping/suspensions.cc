#include "shaping/suspensions.h"

#include <algorithm>

namespace hikyaku::shaping {

namespace {
bool FieldMatches(const std::string& field, std::string_view value) { return field.empty() || field == value; }
}  // namespace

uint64_t Suspensions::Add(SuspensionScope scope, TimePoint until, std::string reason, TimePoint now) {
  Suspension s;
  s.id = next_id_++;
  s.scope = std::move(scope);
  s.created = now;
  s.until = until;
  s.reason = std::move(reason);
  active_.push_back(std::move(s));
  return active_.back().id;
}

bool Suspensions::Remove(uint64_t id) {
  auto it = std::find_if(active_.begin(), active_.end(), [&](const Suspension& s) { return s.id == id; });
  if (it == active_.end()) return false;
  active_.erase(it);
  return true;
}

std::vector<Suspension> Suspensions::Expire(TimePoint now) {
  std::vector<Suspension> ended;
  auto it = std::stable_partition(active_.begin(), active_.end(), [&](const Suspension& s) { return s.until > now; });
  ended.assign(std::make_move_iterator(it), std::make_move_iterator(active_.end()));
  active_.erase(it, active_.end());
  return ended;
}

bool Suspensions::Blocks(std::string_view site, std::string_view source, std::string_view tenant,
                         TimePoint now) const {
  for (const auto& s : active_) {
    if (s.until <= now) continue;
    if (!FieldMatches(s.scope.site, site)) continue;
    if (source.empty() ? !s.scope.source.empty() : !FieldMatches(s.scope.source, source)) continue;
    if (tenant.empty() ? !s.scope.tenant.empty() : !FieldMatches(s.scope.tenant, tenant)) continue;
    return true;
  }
  return false;
}

bool Suspensions::TenantBlocked(std::string_view tenant, std::string_view site, TimePoint now) const {
  for (const auto& s : active_) {
    if (s.until <= now || s.scope.tenant.empty() || s.scope.tenant != tenant) continue;
    if (!s.scope.source.empty()) continue;  // source-scoped: decided per connection
    if (FieldMatches(s.scope.site, site)) return true;
  }
  return false;
}

void Suspensions::Restore(std::vector<Suspension> suspensions) {
  active_ = std::move(suspensions);
  for (const auto& s : active_) next_id_ = std::max(next_id_, s.id + 1);
}

std::optional<TimePoint> Suspensions::NextExpiry() const {
  std::optional<TimePoint> next;
  for (const auto& s : active_)
    if (s.until != TimePoint::max() && (!next || s.until < *next)) next = s.until;
  return next;
}

}  // namespace hikyaku::shaping
