// HostHealth: a circuit breaker per MX host, so that no delivery slot waits
// on a host already known to be dead (a connect timeout costs 30 s or more;
// Postfix's lesson: retries to dead hosts otherwise fill every slot).
//
// Key: the host as the dispatcher connects to it (an IP address string, or
// a host name); the breaker does not interpret it.
//
// States (HostState):
//   up       no recent failure; any number of connections may be opened.
//   down     a connection failed (refused, connect timeout, no banner). No
//            connection until DownUntil(host); then exactly one caller of
//            Usable() gets `true` and becomes the probe.
//   probing  the probe is in flight; everyone else is told `false`.
// The probe ends with Success (up, failure count reset), Failure (down
// again for twice as long), or ProbeAbandoned (the probe never tested the
// host, e.g. shutdown or no work left: still down, the next Usable() after
// the down period becomes the probe).
//
// Backoff: down for host_down_initial after the first failure, doubling per
// further failed probe up to host_down_max. A Failure reported while the
// host is down and no probe is running comes from a connection opened before
// the host went down (many connections see one outage): it does not double
// the backoff, it only pushes DownUntil to at least now + the current period.
//
// Only hosts that are not up take memory; Success forgets the host.
//
// Thread-safety: not synchronised; owned by the dispatcher's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "config/config.h"

namespace hikyaku::queue {

enum class HostState : uint8_t { kUp, kDown, kProbing };
const char* ToString(HostState state);

struct HostStatus {
  std::string host;
  HostState state = HostState::kUp;
  TimePoint down_until;   // meaningful unless up
  uint32_t failures = 0;  // consecutive failures (the outage's length in probes)
};

class HostHealth {
 public:
  HostHealth(Duration down_initial, Duration down_max);
  explicit HostHealth(const config::DeliveryConfig& config)
      : HostHealth(config.host_down_initial, config.host_down_max) {}

  // May the caller open a connection to `host` now? true when up; when
  // down and the period is over, true for exactly one caller (the probe:
  // the caller must later report Success, Failure or ProbeAbandoned).
  bool Usable(std::string_view host, TimePoint now);
  // Like Usable but without claiming the probe: would Usable say true?
  // The dispatcher uses it to decide whether a site is reachable at all.
  bool Available(std::string_view host, TimePoint now) const;

  // A connection reached the host and it spoke SMTP (a banner, even a 4xx
  // or 5xx one: the host is alive; replies are the shaper's business).
  void Success(std::string_view host);
  // Connection refused, connect timeout, or no banner.
  void Failure(std::string_view host, TimePoint now);
  void ProbeAbandoned(std::string_view host);

  HostState State(std::string_view host) const;
  // nullopt when up.
  std::optional<TimePoint> DownUntil(std::string_view host) const;
  uint32_t Failures(std::string_view host) const;
  // Every host that is not up, sorted by name (operator view).
  std::vector<HostStatus> Snapshot() const;
  size_t down_count() const { return hosts_.size(); }

 private:
  struct Entry {
    TimePoint down_until;
    uint32_t failures = 0;
    bool probing = false;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  Duration Backoff(uint32_t failures) const;
  const Entry* Find(std::string_view host) const;

  Duration down_initial_;
  Duration down_max_;
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> hosts_;
};

}  // namespace hikyaku::queue
