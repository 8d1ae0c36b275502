// FlowController: the adaptive limits of ONE (source IP, site) pair — how
// many connections it may hold and how many recipients a second it may send —
// learned from the receiver's replies, never above the configured caps.
// Pure logic: no I/O, no threads, no clock reads; every call takes `now`.
//
// Why not AIMD. Halving on a throttle and adding a little per quiet interval
// oscillates between 50 % and 100 % of what the receiver allows (77-86 % on
// average in README.md's simulation, unless the receiver's own bucket absorbs
// the sawtooth). The receiver tells us more than "too fast": while it
// throttles, what it still accepts IS its limit. So:
//
//   open       No learned rate: send at the configured cap (or unlimited).
//   measuring  A throttle (kThrottled) arrived. From that moment the receiver
//              is saturated, so the recipients it accepts per second are its
//              sustained rate; its burst (a token bucket that started full
//              lets the first minute through at double speed) is already
//              spent and cannot fool the estimate. Pacing stays where it was
//              for the first second, then drops to 1.5 x the rate accepted so
//              far (enough to keep the receiver saturated, so the measurement
//              stays valid, without flooding it). The measurement concludes
//              after >= measure_min and >= measure_accepted recipients (or
//              measure_patience) if >= min_throttles throttles arrived and
//              they are >= min_throttle_fraction of the transactions sent:
//              estimate E = accepted / elapsed, both counted from one second
//              after the first throttle (replies already in flight then were
//              sent before the receiver was saturated). Otherwise, when
//              throttles stop (no throttle for noise_quiet, longer at low
//              rates) it was noise — a stray 450 — and is cancelled without
//              any change.
//   holding    Rate = hold_fraction x E (96 %). After hold_wait without a
//              throttle, while the limit was actually in use (the accepted
//              rate was >= 80 % of it), start probing.
//   probing    + probe_step (3 %) per probe_interval of quiet use. Beyond
//              fast_probe_above x E the steps double (up to probe_step_max)
//              so a receiver that relaxed is found within minutes. At a
//              small probe (rate <= revert_above x E) the first throttle
//              stops the stepping up; probe_fail_throttles (3) throttles
//              that are >= probe_fail_fraction (2 %) of the transactions
//              since that first one fail the probe: straight back to holding
//              at 96 % of E, and hold_wait doubles (up to hold_wait_max, or
//              the time of probe_spacing_transactions at E if longer: 300 s
//              at 1/s) — about three throttled replies per failed probe,
//              spaced so that they stay a small share of the transactions.
//              When the throttles stop instead (noise_quiet), they were
//              strays and probing resumes. A throttle far above E means the
//              receiver changed: measure again.
//
// Stray throttles (a few per thousand at a rate well under the limit) thus
// do not change the rate: they cannot reach min_throttle_fraction (3 %) nor
// probe_fail_fraction (2 %); a rare cluster that does only cuts to 96 % of
// the rate the receiver was accepting (which is the rate we sent at), and
// probing restores it.
//
// Connections: kTooManyConnections and kClosedIdle lower connections() to
// (open - 1), at least 1, where `open` counts this pair's connections when
// the signal came INCLUDING the one that received it (the refused 4th
// connection: open = 4, limit 3). kConnectRefused lowers gently (by 10 %, at
// least 1, at most once per refused_spacing): a refusal may be the network.
// The learned limit grows by +1 per conn_recover_quiet (5 min) without a
// connection signal, and is forgotten when it reaches the configured cap.
//
// Caps: FlowLimits are hard caps. rate() and connections() never exceed them,
// also right after SetLimits lowered them (learned state is kept, clamped).
// Every change of (connections(), rate()) is recorded as a Change with a
// human reason for the event log (TakeChanges). Time-driven transitions
// (hold -> probe, probe steps, connection recovery, the end of a
// measurement) happen in the non-const calls and Tick(now); the const
// queries report the state as of the last of those.
//
// Units: rates count recipients (one accepted RCPT = one message) per second;
// kThrottled is reported once per throttled transaction; TrySend counts the
// transactions sent.
//
// Thread-safety: not synchronised; one owner (the dispatcher's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "shaping/token_bucket.h"

namespace hikyaku::shaping {

struct FlowLimits {  // configured hard caps; 0 = not configured
  uint32_t max_connections = 0;
  double max_message_rate = 0;     // recipients per second
  double max_connection_rate = 0;  // new connections per second
};

enum class Signal : uint8_t {
  kThrottled,           // a 4yz "slow down" to MAIL/RCPT/DATA (450 4.7.1 rate limited)
  kTooManyConnections,  // 421 at connect / in the banner, or "too many connections"
  kConnectRefused,      // TCP connect refused or timed out (a connection signal only)
  kClosedIdle,          // an unsolicited 421 on an idle connection
};
std::string_view SignalName(Signal s);

// The algorithm's constants; the defaults are what the README's simulation
// measured. Tests may shorten them.
struct FlowTuning {
  double hold_fraction = 0.96;
  Duration measure_min = std::chrono::seconds(10);
  uint32_t measure_accepted = 100;
  Duration measure_patience = std::chrono::seconds(60);  // conclude with fewer accepted
  Duration measure_max = std::chrono::minutes(5);        // an inconclusive window restarts
  uint32_t min_throttles = 6;
  double min_throttle_fraction = 0.03;
  uint32_t probe_fail_throttles = 3;  // throttles since a probe's first one, that are
  double probe_fail_fraction = 0.02;  // at least this share of its transactions
  Duration noise_quiet = std::chrono::seconds(10);
  double measure_pacing_factor = 1.5;
  double measure_start_rate = 20;  // recipients/s from the first throttle until the first checkpoint
  Duration hold_wait = std::chrono::seconds(30);
  Duration hold_wait_max = std::chrono::seconds(120);
  double probe_spacing_transactions = 300;  // hold_wait may grow to this many / E seconds
  Duration probe_interval = std::chrono::seconds(15);
  double probe_step = 0.03;
  double probe_step_max = 0.25;
  double fast_probe_above = 1.25;
  double revert_above = 1.50;
  double binding_fraction = 0.8;
  double min_rate = 0.05;           // recipients/s: never stop completely
  // The pacing bucket holds this much of the rate, at least 1 and at most
  // send_burst_max recipients: over any stretch T a pair sends at most
  // rate x T + the burst + one transaction (token_bucket.h), so a
  // "1000/s" cap lets at most 1020 + one transaction through in a second.
  double send_burst_seconds = 1.0;
  double send_burst_max = 20;
  Duration conn_recover_quiet = std::chrono::minutes(5);
  Duration refused_spacing = std::chrono::seconds(10);
};

class FlowController {
 public:
  FlowController(const FlowLimits& limits, TimePoint now, const FlowTuning& tuning = {});

  // Reload: keeps the learned state, clamped to the new caps.
  void SetLimits(const FlowLimits& limits, TimePoint now);
  const FlowLimits& limits() const { return limits_; }

  // Runs the time-driven transitions due by `now` (every non-const call does).
  void Tick(TimePoint now);

  // Admission of a new connection: open_connections (established plus being
  // established, for this pair) < connections() when limited, and the
  // connection-rate bucket has a token.
  bool MayOpen(uint32_t open_connections, TimePoint now) const;
  // When the connection-rate bucket next has a token (for a timer).
  TimePoint NextOpen(TimePoint now) const;
  void Opened(TimePoint now);  // takes a connection-rate token

  // Sending `n` recipients in one transaction: TrySend takes the tokens or
  // returns false; NextSend says when it would succeed. n larger than the
  // pacing burst waits for a full bucket (never starves).
  bool TrySend(uint32_t n, TimePoint now);
  TimePoint NextSend(uint32_t n, TimePoint now) const;

  // Feedback. OnAccepted: recipients the receiver took (2yz to RCPT and
  // DATA). OnSignal: see Signal; `open_connections` as described above
  // (ignored for kThrottled); `reply` is quoted in the Change reason.
  void OnAccepted(uint32_t n, TimePoint now);
  void OnSignal(Signal s, uint32_t open_connections, TimePoint now, std::string_view reply = {});

  // Effective limits now; 0 = unlimited. Never above the configured caps.
  uint32_t connections() const;
  double rate() const;

  struct Change {
    TimePoint at;
    uint32_t old_connections = 0, new_connections = 0;
    double old_rate = 0, new_rate = 0;
    std::string reason;
  };
  std::vector<Change> TakeChanges();

  // Operator view.
  struct View {
    std::string_view state;            // "open", "measuring", "holding", "probing"
    TimePoint last_signal;             // epoch if none
    std::string last_reply;            // of the last kThrottled
    double estimate = 0;               // last measured accepted rate while throttled; 0 = none
    uint32_t learned_connections = 0;  // 0 = none
    uint32_t connections = 0;
    double rate = 0;
    Duration hold_wait{};
  };
  View view() const;

 private:
  enum class State : uint8_t { kOpen, kMeasuring, kHolding, kProbing };

  double Capped(double learned) const;
  void Report(TimePoint now, std::string reason);
  void RecoverConnections(TimePoint now);
  void StartMeasurement(TimePoint now);
  void AdvanceMeasurement(TimePoint now);
  bool Conclusive(TimePoint now) const;
  void Conclude(TimePoint now);
  void Cancel(TimePoint now);
  void ProbeStep(TimePoint now);
  bool Binding(TimePoint now) const;
  void ResetPeriod(TimePoint now);
  void EnterHolding(TimePoint now);
  Duration NoiseQuiet() const;
  Duration MaxHoldWait() const;

  FlowLimits limits_;
  FlowTuning tuning_;
  State state_ = State::kOpen;
  State before_measuring_ = State::kOpen;

  double learned_rate_ = 0;  // 0 = none
  double estimate_ = 0;
  Duration hold_wait_;
  double last_step_ = 0;
  TimePoint quiet_since_;    // holding: since the last throttle
  TimePoint next_probe_at_;  // probing
  TimePoint period_start_;   // accepted since then, for Binding()
  uint64_t period_accepted_ = 0;
  bool pr_suspect_ = false;  // a throttle came at this probe: no stepping up
  TimePoint pr_last_throttle_;
  uint64_t pr_transactions_ = 0;  // since the probe's first throttle
  uint64_t pr_throttles_ = 0;

  // The current measurement.
  TimePoint m_start_;
  TimePoint m_last_throttle_;
  Duration m_checkpoint_{};
  TimePoint m_window_start_;     // accepted counted from here (1 s after m_start_)
  uint64_t m_accepted_ = 0;      // since m_window_start_: the estimate
  uint64_t m_accepted_all_ = 0;  // since m_start_: for pacing only
  uint64_t m_transactions_ = 0;
  uint64_t m_throttles_ = 0;
  double m_pacing_ = 0;  // 0 = unlimited

  uint32_t learned_connections_ = 0;  // 0 = none
  TimePoint last_connection_signal_;
  TimePoint last_refused_;
  bool refused_seen_ = false;

  TokenBucket send_bucket_;
  TokenBucket connection_bucket_;
  uint32_t reported_connections_ = 0;
  double reported_rate_ = 0;
  std::vector<Change> changes_;
  TimePoint last_signal_{};
  std::string last_reply_;
};

}  // namespace hikyaku::shaping
