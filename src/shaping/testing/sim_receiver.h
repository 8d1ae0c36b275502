// A simulated receiver and sender for FlowController tests: the receiver
// plays `hikyaku sink --rate-per-ip N` (one token bucket for the source IP,
// N tokens a minute, burst N, starting full; a transaction beyond it gets
// "450 4.7.1 rate limited"), refuses connections beyond max_connections with
// 421 at connect, can greylist the first transaction and answer a random
// fraction with 451 4.3.0 (neither reported as throttling: the caller's
// outcome classification filters them), and can add stray "slow down"
// replies that ARE reported as kThrottled. The sender keeps up to K
// connections, each sending 1-recipient transactions back to back as fast as
// the controller allows, with a random round trip per transaction.
//
// Discrete-event, driven by simulated time only (no clock, no sleeps); every
// run is bounded by its duration and an event budget.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <queue>
#include <random>
#include <vector>

#include "base/check.h"
#include "base/clock.h"
#include "shaping/flow_controller.h"
#include "shaping/token_bucket.h"

namespace hikyaku::shaping::testing {

struct SimReceiverOptions {
  double per_minute = 0;         // 0 = no rate limit
  double burst_seconds = 60;     // the bucket holds this much of the rate (the sink: one minute)
  uint32_t max_connections = 0;  // 0 = no limit
  bool greylist_first = true;
  double random_tempfail = 0.01;  // 451 4.3.0, not reported as throttled
  double stray_throttle = 0;      // reported as kThrottled although under the limit
  uint64_t seed = 1;
};

class SimReceiver {
 public:
  enum class Reply : uint8_t { kAccepted, kRateLimited, kStrayThrottle, kGreylisted, kTempfail };

  SimReceiver(const SimReceiverOptions& o, TimePoint start)
      : options_(o), bucket_(o.per_minute / 60.0, Burst(o), start), rng_(o.seed) {}

  Reply Transaction(TimePoint now) {
    if (options_.greylist_first && !greylisted_) {
      greylisted_ = true;
      return Reply::kGreylisted;
    }
    if (options_.per_minute > 0 && !bucket_.TryTake(1, now)) return Reply::kRateLimited;
    double u = uniform_(rng_);
    if (u < options_.random_tempfail) {
      tempfails_++;
      return Reply::kTempfail;
    }
    if (u < options_.random_tempfail + options_.stray_throttle) return Reply::kStrayThrottle;
    return Reply::kAccepted;
  }
  // Whether a new connection is accepted while `open` are established.
  bool Connect(uint32_t open) const {
    return options_.max_connections == 0 || open < options_.max_connections;
  }

  // The receiver changes its limit (the sink restarted with another --rate-per-ip).
  void SetPerMinute(double per_minute, TimePoint now) {
    options_.per_minute = per_minute;
    bucket_.SetRate(per_minute / 60.0, Burst(options_), now);
  }
  double per_second() const { return options_.per_minute / 60.0; }
  uint64_t tempfails() const { return tempfails_; }

 private:
  static double Burst(const SimReceiverOptions& o) {
    return std::max(1.0, o.per_minute / 60.0 * o.burst_seconds);
  }

  SimReceiverOptions options_;
  TokenBucket bucket_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  bool greylisted_ = false;
  uint64_t tempfails_ = 0;
};

struct SimSenderOptions {
  uint32_t connections = 3;  // K: how many the sender would like
  Duration rtt_min = std::chrono::milliseconds(5);
  Duration rtt_max = std::chrono::milliseconds(20);
  uint64_t seed = 2;
};

// Per-second counters of what the sender saw.
struct SimSecond {
  uint32_t attempts = 0;  // replies received
  uint32_t accepted = 0;
  uint32_t throttled = 0;  // replies reported as kThrottled (rate limited + stray)
  uint32_t refused_connections = 0;
  uint32_t opened = 0;
  uint32_t max_open = 0;
  double max_rate = 0;  // highest controller.rate() seen (0 = unlimited)
  double min_rate = 0;  // lowest controller.rate() seen; 0 = none seen or unlimited
  bool rate_unlimited = false;
  uint32_t max_allowed_connections = 0;
};

// Controller: FlowController, or anything with its admission, pacing and
// feedback calls (the tests compare a plain AIMD loop).
template <typename Controller>
class Simulation {
 public:
  Simulation(Controller& controller, SimReceiver& receiver, const SimSenderOptions& o, TimePoint start)
      : controller_(controller),
        receiver_(receiver),
        options_(o),
        start_(start),
        rng_(o.seed),
        slots_(o.connections) {
    for (uint32_t i = 0; i < o.connections; ++i) Push(start, i, Kind::kReady);
  }

  // Runs until `until`; `at_second` is called once per simulated second
  // (for changing the receiver or the limits mid-run).
  void RunUntil(TimePoint until, const std::function<void(int64_t second)>& at_second = {}) {
    uint64_t budget = 50'000'000;
    while (!events_.empty() && events_.top().at < until) {
      HIKYAKU_CHECK(--budget > 0);
      Event e = events_.top();
      events_.pop();
      while (next_second_call_ <= Second(e.at)) {
        if (at_second) at_second(next_second_call_);
        ++next_second_call_;
      }
      Handle(e);
    }
  }

  const std::vector<SimSecond>& seconds() const { return seconds_; }

  // Sums over [from, to) seconds since the start.
  SimSecond Sum(int64_t from, int64_t to) const {
    SimSecond s;
    for (int64_t i = std::max<int64_t>(0, from); i < to && i < static_cast<int64_t>(seconds_.size()); ++i) {
      const SimSecond& x = seconds_[i];
      s.attempts += x.attempts;
      s.accepted += x.accepted;
      s.throttled += x.throttled;
      s.refused_connections += x.refused_connections;
      s.opened += x.opened;
      s.max_open = std::max(s.max_open, x.max_open);
      s.max_rate = std::max(s.max_rate, x.max_rate);
      if (x.min_rate > 0) s.min_rate = s.min_rate > 0 ? std::min(s.min_rate, x.min_rate) : x.min_rate;
      s.rate_unlimited = s.rate_unlimited || x.rate_unlimited;
      s.max_allowed_connections = std::max(s.max_allowed_connections, x.max_allowed_connections);
    }
    return s;
  }
  uint32_t open() const { return open_; }

 private:
  enum class Kind : uint8_t { kReady, kReply, kConnected };
  struct Event {
    TimePoint at;
    uint64_t seq;
    uint32_t slot;
    Kind kind;
    SimReceiver::Reply reply;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  enum class SlotState : uint8_t { kClosed, kConnecting, kOpen, kBusy };

  int64_t Second(TimePoint t) const { return (t - start_).count() / 1000; }
  SimSecond& At(TimePoint t) {
    auto s = static_cast<size_t>(std::max<int64_t>(0, Second(t)));
    if (seconds_.size() <= s) seconds_.resize(s + 1);
    return seconds_[s];
  }
  void Push(TimePoint at, uint32_t slot, Kind kind,
            SimReceiver::Reply reply = SimReceiver::Reply::kAccepted) {
    events_.push(Event{at, seq_++, slot, kind, reply});
  }
  Duration Rtt() {
    std::uniform_int_distribution<int64_t> d(options_.rtt_min.count(), options_.rtt_max.count());
    return Duration(d(rng_));
  }
  void Observe(TimePoint t) {
    SimSecond& s = At(t);
    s.max_open = std::max(s.max_open, open_);
    double r = controller_.rate();
    if (r <= 0) s.rate_unlimited = true;
    s.max_rate = std::max(s.max_rate, r);
    if (r > 0) s.min_rate = s.min_rate > 0 ? std::min(s.min_rate, r) : r;
    s.max_allowed_connections = std::max(s.max_allowed_connections, controller_.connections());
  }

  void Handle(const Event& e) {
    SlotState& st = slots_[e.slot];
    TimePoint now = e.at;
    switch (e.kind) {
      case Kind::kReady:
        if (st == SlotState::kClosed) {
          if (!controller_.MayOpen(open_ + connecting_, now)) {
            Push(std::max(now + std::chrono::seconds(1), controller_.NextOpen(now)), e.slot, Kind::kReady);
            return;
          }
          controller_.Opened(now);
          At(now).opened++;
          st = SlotState::kConnecting;
          connecting_++;
          Push(now + Rtt(), e.slot, Kind::kConnected);
          return;
        }
        if (st != SlotState::kOpen) return;
        // Over a lowered limit: this connection closes between transactions.
        if (uint32_t limit = controller_.connections(); limit > 0 && open_ > limit) {
          st = SlotState::kClosed;
          open_--;
          Push(now + std::chrono::seconds(1), e.slot, Kind::kReady);
          return;
        }
        if (!controller_.TrySend(1, now)) {
          Push(std::max(now + Duration(1), controller_.NextSend(1, now)), e.slot, Kind::kReady);
          return;
        }
        st = SlotState::kBusy;
        Push(now + Rtt(), e.slot, Kind::kReply, receiver_.Transaction(now));
        Observe(now);
        return;
      case Kind::kConnected:
        connecting_--;
        if (!receiver_.Connect(open_)) {
          At(now).refused_connections++;
          controller_.OnSignal(Signal::kTooManyConnections, open_ + 1, now, "421 4.7.0 too many connections");
          st = SlotState::kClosed;
          Push(now + std::chrono::seconds(1), e.slot, Kind::kReady);
          return;
        }
        open_++;
        st = SlotState::kOpen;
        Observe(now);
        Push(now, e.slot, Kind::kReady);
        return;
      case Kind::kReply: {
        SimSecond& s = At(now);
        s.attempts++;
        switch (e.reply) {
          case SimReceiver::Reply::kAccepted:
            s.accepted++;
            controller_.OnAccepted(1, now);
            break;
          case SimReceiver::Reply::kRateLimited:
          case SimReceiver::Reply::kStrayThrottle:
            s.throttled++;
            controller_.OnSignal(Signal::kThrottled, open_, now, "450 4.7.1 rate limited, slow down");
            break;
          case SimReceiver::Reply::kGreylisted:
          case SimReceiver::Reply::kTempfail:
            break;  // filtered by outcome classification: not a throttle
        }
        st = SlotState::kOpen;
        Observe(now);
        Push(now, e.slot, Kind::kReady);
        return;
      }
    }
  }

  Controller& controller_;
  SimReceiver& receiver_;
  SimSenderOptions options_;
  TimePoint start_;
  std::mt19937_64 rng_;
  std::vector<SlotState> slots_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t seq_ = 0;
  uint32_t open_ = 0;
  uint32_t connecting_ = 0;
  int64_t next_second_call_ = 0;
  std::vector<SimSecond> seconds_;
};

}  // namespace hikyaku::shaping::testing
