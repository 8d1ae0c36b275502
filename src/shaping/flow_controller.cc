#include "shaping/flow_controller.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

namespace hikyaku::shaping {
namespace {

double Seconds(Duration d) { return static_cast<double>(d.count()) / 1000.0; }

// A measured rate: 0 is 0.
std::string PerSecond(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, r < 10 ? "%.2f/s" : "%.1f/s", r);
  return buf;
}

// A limit: 0 means none.
std::string Rate(double r) { return r <= 0 ? "unlimited" : PerSecond(r); }

std::string Secs(Duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(d.count() / 1000));
  return buf;
}

std::string Quote(std::string_view reply) {
  if (reply.empty()) return "throttled";
  return "throttled: " + std::string(reply.substr(0, 120));
}

// See OnAccepted: replies in flight when the first throttle came.
constexpr Duration kInFlightGrace = std::chrono::seconds(1);

// A pacing bucket holds `seconds` of the rate, at least 1 and at most
// `most` tokens: at high rates a second's worth would let twice the rate
// through in the second after a pause.
double BucketBurst(double rate, double seconds, double most) {
  return rate <= 0 ? 0 : std::max(1.0, std::min(rate * seconds, most));
}

}  // namespace

std::string_view SignalName(Signal s) {
  switch (s) {
    case Signal::kThrottled:
      return "throttled";
    case Signal::kTooManyConnections:
      return "too many connections";
    case Signal::kConnectRefused:
      return "connect refused";
    case Signal::kClosedIdle:
      return "closed idle connection";
  }
  return "?";
}

FlowController::FlowController(const FlowLimits& limits, TimePoint now, const FlowTuning& tuning)
    : limits_(limits),
      tuning_(tuning),
      hold_wait_(tuning.hold_wait),
      quiet_since_(now),
      next_probe_at_(now),
      period_start_(now),
      m_start_(now),
      m_last_throttle_(now),
      m_window_start_(now),
      last_connection_signal_(now),
      last_refused_(now),
      send_bucket_(limits.max_message_rate,
                   BucketBurst(limits.max_message_rate, tuning.send_burst_seconds, tuning.send_burst_max), now),
      connection_bucket_(limits.max_connection_rate, BucketBurst(limits.max_connection_rate, 1.0, 1e9), now) {
  reported_connections_ = connections();
  reported_rate_ = rate();
}

double FlowController::Capped(double learned) const {
  double cap = limits_.max_message_rate;
  if (cap > 0) return learned > 0 ? std::min(learned, cap) : cap;
  return learned;
}

uint32_t FlowController::connections() const {
  uint32_t cap = limits_.max_connections;
  if (cap > 0) return learned_connections_ > 0 ? std::min(learned_connections_, cap) : cap;
  return learned_connections_;
}

double FlowController::rate() const {
  return Capped(state_ == State::kMeasuring ? m_pacing_ : learned_rate_);
}

void FlowController::Report(TimePoint now, std::string reason) {
  uint32_t c = connections();
  double r = rate();
  if (c == reported_connections_ && r == reported_rate_) return;
  changes_.push_back(Change{now, reported_connections_, c, reported_rate_, r, std::move(reason)});
  if (r != reported_rate_)
    send_bucket_.SetRate(r, BucketBurst(r, tuning_.send_burst_seconds, tuning_.send_burst_max), now);
  reported_connections_ = c;
  reported_rate_ = r;
}

std::vector<FlowController::Change> FlowController::TakeChanges() { return std::exchange(changes_, {}); }

void FlowController::SetLimits(const FlowLimits& limits, TimePoint now) {
  limits_ = limits;
  // Learned state above a cap would be meaningless: clamp it.
  if (limits_.max_message_rate > 0 && learned_rate_ > limits_.max_message_rate)
    learned_rate_ = limits_.max_message_rate;
  if (limits_.max_connections > 0 && learned_connections_ >= limits_.max_connections)
    learned_connections_ = 0;
  connection_bucket_.SetRate(limits_.max_connection_rate, BucketBurst(limits_.max_connection_rate, 1.0, 1e9), now);
  Report(now, "configuration reloaded: caps " + std::to_string(limits_.max_connections) + " connections, " +
                  Rate(limits_.max_message_rate));
}

void FlowController::Tick(TimePoint now) {
  RecoverConnections(now);
  switch (state_) {
    case State::kOpen:
      break;
    case State::kMeasuring:
      AdvanceMeasurement(now);
      break;
    case State::kHolding:
      if (now - quiet_since_ >= hold_wait_) {
        if (Binding(now)) {
          ProbeStep(now);
        } else {
          // The limit was not in use: a quiet period proves nothing.
          quiet_since_ = now;
          ResetPeriod(now);
        }
      }
      break;
    case State::kProbing:
      if (pr_suspect_) {
        if (now - pr_last_throttle_ < NoiseQuiet()) break;
        pr_suspect_ = false;  // the throttles stopped: strays
        next_probe_at_ = now + tuning_.probe_interval;
        ResetPeriod(now);
        break;
      }
      if (now >= next_probe_at_) {
        if (Binding(now)) {
          ProbeStep(now);
        } else {
          next_probe_at_ = now + tuning_.probe_interval;
          ResetPeriod(now);
        }
      }
      break;
  }
}

// --- connections -------------------------------------------------------------

bool FlowController::MayOpen(uint32_t open_connections, TimePoint now) const {
  uint32_t limit = connections();
  if (limit > 0 && open_connections >= limit) return false;
  return connection_bucket_.Available(now) + 1e-9 >= 1.0;
}

TimePoint FlowController::NextOpen(TimePoint now) const { return connection_bucket_.WhenAvailable(1, now); }

void FlowController::Opened(TimePoint now) {
  Tick(now);
  (void)connection_bucket_.TryTake(1, now);
}

void FlowController::RecoverConnections(TimePoint now) {
  if (learned_connections_ == 0 || now - last_connection_signal_ < tuning_.conn_recover_quiet) return;
  learned_connections_ += 1;
  last_connection_signal_ = now;
  std::string reason = "no connection signal for " + Secs(tuning_.conn_recover_quiet) + ": allowing " +
                       std::to_string(learned_connections_) + " connections";
  if (limits_.max_connections > 0 && learned_connections_ >= limits_.max_connections)
    learned_connections_ = 0;
  Report(now, std::move(reason));
}

// --- sending -----------------------------------------------------------------

bool FlowController::TrySend(uint32_t n, TimePoint now) {
  Tick(now);
  if (!send_bucket_.TryTake(n, now)) return false;
  if (state_ == State::kMeasuring) m_transactions_++;
  if (state_ == State::kProbing) pr_transactions_++;
  return true;
}

TimePoint FlowController::NextSend(uint32_t n, TimePoint now) const {
  return send_bucket_.WhenAvailable(n, now);
}

void FlowController::OnAccepted(uint32_t n, TimePoint now) {
  Tick(now);
  period_accepted_ += n;
  if (state_ == State::kMeasuring) {
    m_accepted_all_ += n;
    // Replies to transactions sent before the first throttle are still
    // arriving in the first moments; counting them would overestimate the
    // receiver. After a second every reply is to a transaction sent while it
    // was saturated.
    if (now >= m_window_start_) m_accepted_ += n;
    AdvanceMeasurement(now);
  }
}

void FlowController::OnSignal(Signal s, uint32_t open_connections, TimePoint now, std::string_view reply) {
  Tick(now);
  last_signal_ = now;
  switch (s) {
    case Signal::kThrottled: {
      last_reply_ = std::string(reply);
      if (state_ == State::kProbing && estimate_ > 0 && learned_rate_ <= tuning_.revert_above * estimate_) {
        // A small probe: what was measured still holds if the probe fails.
        // The first throttle suspends the stepping up; the probe fails when
        // a few throttles are a real share of the transactions since that
        // first one, and is cleared when they stop (a stray 450).
        if (!pr_suspect_) {
          pr_suspect_ = true;
          pr_throttles_ = 0;
          pr_transactions_ = 0;
        }
        pr_throttles_++;
        pr_last_throttle_ = now;
        if (pr_throttles_ < tuning_.probe_fail_throttles ||
            static_cast<double>(pr_throttles_) <
                tuning_.probe_fail_fraction * static_cast<double>(pr_transactions_)) {
          if (static_cast<double>(pr_transactions_) * tuning_.probe_fail_fraction >
              2.0 * tuning_.probe_fail_throttles) {
            // Throttles keep trickling in below the share: count afresh.
            pr_throttles_ = 1;
            pr_transactions_ = 0;
          }
          return;
        }
        double probed = learned_rate_;
        char detail[64];
        std::snprintf(detail, sizeof detail, " (%llu of %llu transactions throttled)",
                      static_cast<unsigned long long>(pr_throttles_),
                      static_cast<unsigned long long>(pr_transactions_));
        hold_wait_ = std::min(hold_wait_ * 2, MaxHoldWait());
        learned_rate_ = std::max(tuning_.min_rate, tuning_.hold_fraction * estimate_);
        EnterHolding(now);
        Report(now, Quote(reply) + "; probe at " + Rate(probed) + " failed" + detail + "; back to holding " +
                        Rate(Capped(learned_rate_)) + " (accepted " + PerSecond(estimate_) +
                        " when last measured); next probe in " + Secs(hold_wait_));
        return;
      }
      if (state_ == State::kMeasuring) {
        m_throttles_++;
        m_last_throttle_ = now;
        AdvanceMeasurement(now);
      } else {
        StartMeasurement(now);
      }
      return;
    }
    case Signal::kTooManyConnections:
    case Signal::kClosedIdle: {
      uint32_t target = std::max<uint32_t>(1, open_connections > 0 ? open_connections - 1 : 1);
      if (uint32_t current = connections(); current > 0) target = std::min(target, current);
      learned_connections_ = target;
      last_connection_signal_ = now;
      Report(now, std::string(SignalName(s)) + " with " + std::to_string(open_connections) + " open" +
                      (reply.empty() ? "" : " (" + std::string(reply.substr(0, 120)) + ")") + ": at most " +
                      std::to_string(target) + " connections");
      return;
    }
    case Signal::kConnectRefused: {
      last_connection_signal_ = now;
      if (refused_seen_ && now - last_refused_ < tuning_.refused_spacing) return;
      refused_seen_ = true;
      last_refused_ = now;
      uint32_t current = connections();
      uint32_t base = current > 0 ? current : std::max<uint32_t>(1, open_connections);
      uint32_t target = std::max<uint32_t>(1, base - std::max<uint32_t>(1, base / 10));
      learned_connections_ = target;
      Report(now, "connect refused or timed out: at most " + std::to_string(target) + " connections");
      return;
    }
  }
}

// --- the rate ----------------------------------------------------------------

void FlowController::ResetPeriod(TimePoint now) {
  period_start_ = now;
  period_accepted_ = 0;
}

bool FlowController::Binding(TimePoint now) const {
  double limit = Capped(learned_rate_);
  if (limit <= 0) return false;
  double seconds = Seconds(now - period_start_);
  if (seconds <= 0) return false;
  return static_cast<double>(period_accepted_) / seconds >= tuning_.binding_fraction * limit;
}

void FlowController::EnterHolding(TimePoint now) {
  state_ = State::kHolding;
  pr_suspect_ = false;
  last_step_ = 0;
  quiet_since_ = now;
  ResetPeriod(now);
}

void FlowController::StartMeasurement(TimePoint now) {
  before_measuring_ = state_;
  state_ = State::kMeasuring;
  m_start_ = now;
  m_last_throttle_ = now;
  // The first pacing checkpoint comes early: on a fast link an unpaced
  // sender can push hundreds of transactions into a throttling receiver in
  // one second, each one a refused attempt.
  m_checkpoint_ = std::chrono::milliseconds(250);
  m_window_start_ = now + kInFlightGrace;
  m_accepted_ = 0;
  m_accepted_all_ = 0;
  m_transactions_ = 0;
  m_throttles_ = 1;
  // Not unpaced until the first checkpoint: a sender on a fast link would
  // push hundreds of refused transactions in that time. Start from what was
  // learned, or from a modest rate the checkpoints raise 1.5x each while the
  // receiver accepts all of it.
  m_pacing_ = learned_rate_ > 0 ? learned_rate_ : tuning_.measure_start_rate;
}

// A failed probe costs about probe_fail_throttles throttled replies; at a
// low rate the probes must be spaced further apart in time to keep that a
// small share of all transactions.
Duration FlowController::MaxHoldWait() const {
  Duration max = tuning_.hold_wait_max;
  if (estimate_ > 0) {
    auto spacing = Duration(static_cast<int64_t>(1000.0 * tuning_.probe_spacing_transactions / estimate_));
    max = std::max(max, spacing);
  }
  return max;
}

Duration FlowController::NoiseQuiet() const {
  // At a low rate a genuine 2 % throttle fraction means long gaps between
  // throttles; wait for twice the expected gap before calling it noise.
  Duration quiet = tuning_.noise_quiet;
  double r = rate();
  if (r > 0) {
    auto gap = Duration(static_cast<int64_t>(2000.0 / (tuning_.min_throttle_fraction * r)));
    quiet = std::max(quiet, gap);
  }
  return quiet;
}

bool FlowController::Conclusive(TimePoint now) const {
  Duration elapsed = now - m_window_start_;
  if (elapsed < tuning_.measure_min) return false;
  if (m_accepted_ < tuning_.measure_accepted && elapsed < tuning_.measure_patience) return false;
  if (m_throttles_ < tuning_.min_throttles) return false;
  return static_cast<double>(m_throttles_) >=
         tuning_.min_throttle_fraction * static_cast<double>(m_transactions_);
}

void FlowController::AdvanceMeasurement(TimePoint now) {
  if (Conclusive(now)) {
    Conclude(now);
    return;
  }
  if (now - m_last_throttle_ >= NoiseQuiet()) {
    // Throttles stopped. Many of them (a real share of what was sent) is a
    // limit the sender stopped pushing against — it ran out of mail, say —
    // so what was accepted meanwhile is still the best estimate; a few is
    // noise.
    const Duration elapsed = now - m_window_start_;
    if (elapsed >= tuning_.measure_min && m_accepted_ > 0 && m_throttles_ >= tuning_.min_throttles &&
        static_cast<double>(m_throttles_) >= 0.25 * static_cast<double>(m_transactions_)) {
      Conclude(m_last_throttle_ > m_window_start_ ? m_last_throttle_ : now);
      return;
    }
    Cancel(now);
    return;
  }
  Duration elapsed = now - m_start_;
  if (elapsed >= tuning_.measure_max) {
    // Throttles keep trickling in but never reach the fraction: start a fresh
    // window rather than averaging over ever older history.
    m_start_ = now;
    m_window_start_ = now;
    m_accepted_ = 0;
    m_accepted_all_ = 0;
    m_transactions_ = 0;
    m_throttles_ = 0;
    return;
  }
  if (elapsed >= m_checkpoint_ && m_checkpoint_ <= std::chrono::seconds(32)) {
    // Keep the receiver saturated (so what it accepts is its limit) without
    // flooding it. +3 keeps a low count (a slow receiver's first seconds)
    // from pacing at or under its limit, which would bias the estimate low.
    double so_far = static_cast<double>(m_accepted_all_ + 3) / Seconds(elapsed);
    double pacing = std::max(tuning_.min_rate, tuning_.measure_pacing_factor * so_far);
    double before = Capped(learned_rate_);
    if (before > 0) pacing = std::min(pacing, before);
    m_pacing_ = pacing;
    m_checkpoint_ *= 2;
    Report(now, Quote(last_reply_) + "; measuring: accepted " +
                    PerSecond(static_cast<double>(m_accepted_all_) / Seconds(elapsed)) + " over " + Secs(elapsed) +
                    " while throttled; pacing " + Rate(Capped(pacing)));
  }
}

void FlowController::Conclude(TimePoint now) {
  double elapsed = Seconds(now - m_window_start_);
  double accepted = static_cast<double>(m_accepted_) / elapsed;
  double target = std::max(tuning_.min_rate, tuning_.hold_fraction * accepted);
  double before = Capped(learned_rate_);
  if (before > 0) target = std::min(target, before);
  // A confirmed estimate makes the next probe wait longer; a new one resets.
  bool confirmed = estimate_ > 0 && std::abs(accepted - estimate_) <= 0.05 * estimate_;
  hold_wait_ = confirmed ? std::min(hold_wait_ * 2, MaxHoldWait()) : tuning_.hold_wait;
  estimate_ = accepted;
  learned_rate_ = target;
  char detail[96];
  std::snprintf(detail, sizeof detail, " (%llu of %llu transactions throttled over %.0fs)",
                static_cast<unsigned long long>(m_throttles_),
                static_cast<unsigned long long>(m_transactions_), elapsed);
  EnterHolding(now);
  Report(now, Quote(last_reply_) + "; accepted " + PerSecond(accepted) + " while throttled" + detail +
                  "; holding " + Rate(rate()));
}

void FlowController::Cancel(TimePoint now) {
  char detail[96];
  std::snprintf(detail, sizeof detail, "%llu of %llu transactions throttled",
                static_cast<unsigned long long>(m_throttles_),
                static_cast<unsigned long long>(m_transactions_));
  state_ = before_measuring_;
  if (state_ == State::kHolding) quiet_since_ = m_last_throttle_;
  if (state_ == State::kProbing) next_probe_at_ = now + tuning_.probe_interval;
  ResetPeriod(now);
  Report(now, std::string("throttles stopped (") + detail + ": noise, not a limit); back to " + Rate(rate()));
}

void FlowController::ProbeStep(TimePoint now) {
  double current = learned_rate_;
  double cap = limits_.max_message_rate;
  if (cap > 0 && current >= cap) {
    // Already at the configured cap: nothing to learn above it.
    learned_rate_ = cap;
    EnterHolding(now);
    return;
  }
  bool fast = estimate_ > 0 && current >= tuning_.fast_probe_above * estimate_;
  double step = fast ? std::min(tuning_.probe_step_max, std::max(tuning_.probe_step, last_step_) * 2)
                     : tuning_.probe_step;
  last_step_ = step;
  learned_rate_ = current * (1 + step);
  if (cap > 0) learned_rate_ = std::min(learned_rate_, cap);
  Duration quiet = state_ == State::kHolding ? hold_wait_ : tuning_.probe_interval;
  state_ = State::kProbing;
  next_probe_at_ = now + tuning_.probe_interval;
  pr_transactions_ = 0;
  pr_throttles_ = 0;
  pr_suspect_ = false;
  ResetPeriod(now);
  Report(now,
         "quiet for " + Secs(quiet) + " at " + Rate(Capped(current)) + ": probing up to " + Rate(rate()));
}

FlowController::View FlowController::view() const {
  View v;
  switch (state_) {
    case State::kOpen:
      v.state = "open";
      break;
    case State::kMeasuring:
      v.state = "measuring";
      break;
    case State::kHolding:
      v.state = "holding";
      break;
    case State::kProbing:
      v.state = "probing";
      break;
  }
  v.last_signal = last_signal_;
  v.last_reply = last_reply_;
  v.estimate = estimate_;
  v.learned_connections = learned_connections_;
  v.connections = connections();
  v.rate = rate();
  v.hold_wait = hold_wait_;
  return v;
}

}  // namespace hikyaku::shaping
