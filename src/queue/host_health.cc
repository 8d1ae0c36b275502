#include "queue/host_health.h"

#include <algorithm>

namespace hikyaku::queue {

const char* ToString(HostState state) {
  switch (state) {
    case HostState::kUp:
      return "up";
    case HostState::kDown:
      return "down";
    case HostState::kProbing:
      return "probing";
  }
  return "?";
}

HostHealth::HostHealth(Duration down_initial, Duration down_max)
    : down_initial_(std::max(down_initial, Duration(1))),
      down_max_(std::max(down_max, std::max(down_initial, Duration(1)))) {}

Duration HostHealth::Backoff(uint32_t failures) const {
  Duration d = down_initial_;
  for (uint32_t n = 1; n < failures && d < down_max_; ++n) {
    d = d > down_max_ / 2 ? down_max_ : d * 2;
  }
  return d;
}

const HostHealth::Entry* HostHealth::Find(std::string_view host) const {
  auto it = hosts_.find(host);
  return it == hosts_.end() ? nullptr : &it->second;
}

bool HostHealth::Usable(std::string_view host, TimePoint now) {
  auto it = hosts_.find(host);
  if (it == hosts_.end()) return true;
  Entry& e = it->second;
  if (e.probing || now < e.down_until) return false;
  e.probing = true;
  return true;
}

bool HostHealth::Available(std::string_view host, TimePoint now) const {
  const Entry* e = Find(host);
  return e == nullptr || (!e->probing && now >= e->down_until);
}

void HostHealth::Success(std::string_view host) {
  auto it = hosts_.find(host);
  if (it != hosts_.end()) hosts_.erase(it);
}

void HostHealth::Failure(std::string_view host, TimePoint now) {
  auto it = hosts_.find(host);
  if (it == hosts_.end()) {
    hosts_.emplace(std::string(host), Entry{now + Backoff(1), 1, false});
    return;
  }
  Entry& e = it->second;
  if (e.probing) {
    e.probing = false;
    if (e.failures < UINT32_MAX) ++e.failures;
    e.down_until = now + Backoff(e.failures);
  } else {
    // A straggler from before the outage was noticed: same outage, no doubling.
    e.down_until = std::max(e.down_until, now + Backoff(e.failures));
  }
}

void HostHealth::ProbeAbandoned(std::string_view host) {
  auto it = hosts_.find(host);
  if (it != hosts_.end()) it->second.probing = false;
}

HostState HostHealth::State(std::string_view host) const {
  const Entry* e = Find(host);
  if (e == nullptr) return HostState::kUp;
  return e->probing ? HostState::kProbing : HostState::kDown;
}

std::optional<TimePoint> HostHealth::DownUntil(std::string_view host) const {
  const Entry* e = Find(host);
  if (e == nullptr) return std::nullopt;
  return e->down_until;
}

uint32_t HostHealth::Failures(std::string_view host) const {
  const Entry* e = Find(host);
  return e == nullptr ? 0 : e->failures;
}

std::vector<HostStatus> HostHealth::Snapshot() const {
  std::vector<HostStatus> out;
  out.reserve(hosts_.size());
  for (const auto& [host, e] : hosts_) {
    out.push_back(HostStatus{host, e.probing ? HostState::kProbing : HostState::kDown, e.down_until,
                             e.failures});
  }
  std::sort(out.begin(), out.end(),
            [](const HostStatus& a, const HostStatus& b) { return a.host < b.host; });
  return out;
}

}  // namespace hikyaku::queue
