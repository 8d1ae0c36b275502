// FlowController against the simulated receiver (testing/sim_receiver.h):
// the acceptance criteria, measured in simulated time. The numbers
// are printed (and quoted in README.md).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "shaping/flow_controller.h"
#include "shaping/testing/sim_receiver.h"

namespace hikyaku::shaping {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;
using testing::SimReceiver;
using testing::SimReceiverOptions;
using testing::SimSecond;
using testing::SimSenderOptions;
using testing::Simulation;

const TimePoint kStart = FromUnixMillis(1'796'601'600'000);

struct Converged {
  double achieved = 0;        // accepted/s over [60 s, end)
  double fraction = 0;        // of the receiver's rate
  double throttled = 0;       // share of attempts throttled over [60 s, end)
  int64_t reached90_at = -1;  // first second from which the 10 s average stays >= 90 %
};

// "Sustained" is judged over one-minute windows: at 1/s a shorter window
// holds so few recipients that one random tempfail is 2 %.
int64_t WindowFor(double rate) { return 60; }

// The first second from which every one-minute window up to `to` has >= 90 % of
// `rate` accepted; -1 if none.
template <typename C>
int64_t Sustained90From(const Simulation<C>& sim, double rate, int64_t from, int64_t to) {
  int64_t w = WindowFor(rate);
  for (int64_t t = from; t + w <= to; ++t) {
    bool ok = true;
    for (int64_t u = t; u + w <= to && ok; u += w)
      ok = sim.Sum(u, u + w).accepted >= 0.9 * rate * static_cast<double>(w);
    if (ok) return t;
  }
  return -1;
}

template <typename C>
Converged Measure(const Simulation<C>& sim, double receiver_rate, int64_t from, int64_t to) {
  Converged c;
  SimSecond s = sim.Sum(from, to);
  c.achieved = static_cast<double>(s.accepted) / static_cast<double>(to - from);
  c.fraction = c.achieved / receiver_rate;
  c.throttled = s.attempts ? static_cast<double>(s.throttled) / s.attempts : 0;
  c.reached90_at = Sustained90From(sim, receiver_rate, 0, to);
  return c;
}

// Runs 10 minutes against an unknown limit for each of `seeds` (round trips,
// tempfails) and checks the acceptance criteria on every run; prints the
// worst run.
void ConvergesBelowAnUnknownLimit(double per_minute, uint32_t connections, int seeds = 24,
                                  double burst_seconds = 60) {
  double worst_fraction = 2, worst_throttled = 0;
  int64_t worst_reached = 0;
  for (int seed = 1; seed <= seeds; ++seed) {
    FlowController fc(FlowLimits{20, 0, 0}, kStart);
    SimReceiverOptions ro;
    ro.per_minute = per_minute;
    ro.burst_seconds = burst_seconds;
    ro.seed = static_cast<uint64_t>(seed);
    SimReceiver receiver(ro, kStart);
    SimSenderOptions so;
    so.connections = connections;
    so.seed = static_cast<uint64_t>(seed) + 100;
    Simulation sim(fc, receiver, so, kStart);
    sim.RunUntil(kStart + minutes(10));
    double r = per_minute / 60.0;
    Converged c = Measure(sim, r, 60, 600);
    EXPECT_GE(c.fraction, 0.90) << "seed " << seed;
    EXPECT_LE(c.throttled, 0.02) << "seed " << seed;
    EXPECT_LE(c.fraction, 1.0) << "seed " << seed;
    EXPECT_GE(c.reached90_at, 0) << "seed " << seed;
    EXPECT_LE(c.reached90_at, 60) << "seed " << seed;
    for (const auto& ch : fc.TakeChanges()) EXPECT_FALSE(ch.reason.empty());
    worst_fraction = std::min(worst_fraction, c.fraction);
    worst_throttled = std::max(worst_throttled, c.throttled);
    worst_reached = std::max(worst_reached, c.reached90_at);
  }
  std::printf(
      "[ numbers  ] %g/min, receiver burst %gs, %u connections, worst of %d runs: %.1f %% of the limit "
      "accepted over 60s-10min, "
      "%.2f %% of attempts throttled after 60s, 90 %% sustained from %llds\n",
      per_minute, burst_seconds, connections, seeds, 100 * worst_fraction, 100 * worst_throttled,
      static_cast<long long>(worst_reached));
}

TEST(FlowControllerSimTest, ConvergesBelowAnUnknownLimitOf300PerMinute) {
  ConvergesBelowAnUnknownLimit(300, 3);
}
TEST(FlowControllerSimTest, ConvergesBelowAnUnknownLimitOf60PerMinute) {
  ConvergesBelowAnUnknownLimit(60, 3);
}
TEST(FlowControllerSimTest, ConvergesBelowAnUnknownLimitOf3000PerMinute) {
  ConvergesBelowAnUnknownLimit(3000, 3);
}
// A receiver whose bucket holds two seconds instead of the sink's minute:
// every probe above its limit is refused at once.
TEST(FlowControllerSimTest, ConvergesBelowAnUnknownLimitWithASmallReceiverBurst) {
  for (double per_minute : {60.0, 300.0, 3000.0}) ConvergesBelowAnUnknownLimit(per_minute, 3, 24, 2);
}

TEST(FlowControllerSimTest, RecoversWithinMinutesWhenTheReceiverDoublesItsLimit) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  SimReceiverOptions ro;
  ro.per_minute = 300;
  SimReceiver receiver(ro, kStart);
  Simulation sim(fc, receiver, SimSenderOptions{}, kStart);
  // 15 minutes at 300/min (long enough for hold_wait to reach its maximum),
  // then the receiver allows 600/min.
  constexpr int64_t kRelax = 900;
  sim.RunUntil(kStart + minutes(30), [&](int64_t s) {
    if (s == kRelax) receiver.SetPerMinute(600, kStart + seconds(s));
  });
  ASSERT_GT(Sustained90From(sim, 5, 60, kRelax), 0);
  int64_t back = Sustained90From(sim, 10, kRelax, 1800);
  SimSecond after = sim.Sum(back, 1800);
  double throttled = static_cast<double>(after.throttled) / after.attempts;
  std::printf(
      "[ numbers  ] 300/min -> 600/min at %llds: >= 90 %% of 10/s sustained %llds later; then %.3f/s, %.2f "
      "%% "
      "throttled (%u of %u)\n",
      static_cast<long long>(kRelax), static_cast<long long>(back - kRelax),
      static_cast<double>(after.accepted) / static_cast<double>(1800 - back), 100 * throttled,
      after.throttled, after.attempts);
  ASSERT_GT(back, 0);
  EXPECT_LE(back - kRelax, 300);  // within five minutes
  EXPECT_LE(throttled, 0.02);
}

TEST(FlowControllerSimTest, StrayThrottlesUnderTheLimitDoNotCollapseTheRate) {
  // Configured at 10/s; the receiver has no limit but answers one in 200
  // transactions with a "slow down" that is reported as kThrottled.
  FlowController fc(FlowLimits{20, 10, 0}, kStart);
  SimReceiverOptions ro;
  ro.stray_throttle = 0.005;
  SimReceiver receiver(ro, kStart);
  Simulation sim(fc, receiver, SimSenderOptions{}, kStart);
  sim.RunUntil(kStart + minutes(30));
  SimSecond all = sim.Sum(0, 1800);
  double achieved = static_cast<double>(all.accepted) / 1800;
  std::printf(
      "[ numbers  ] stray throttles 1/200 at a 10/s cap: %.3f/s accepted, rate() never below %.2f/s, %u "
      "throttled of %u\n",
      achieved, all.min_rate, all.throttled, all.attempts);
  EXPECT_GT(all.throttled, 30u);     // the strays were there
  EXPECT_GE(achieved, 9.5 * 0.985);  // minus the 1 % tempfails and the strays themselves
  EXPECT_GE(all.min_rate, 9.0);
}

TEST(FlowControllerSimTest, StrayThrottlesWithoutAnyCapLeaveTheSenderUnlimited) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  SimReceiverOptions ro;
  ro.stray_throttle = 0.005;
  SimReceiver receiver(ro, kStart);
  SimSenderOptions so;
  so.connections = 1;
  so.rtt_min = std::chrono::milliseconds(90);
  so.rtt_max = std::chrono::milliseconds(110);  // ~10/s from one connection
  Simulation sim(fc, receiver, so, kStart);
  sim.RunUntil(kStart + minutes(30));
  SimSecond all = sim.Sum(0, 1800);
  double achieved = static_cast<double>(all.accepted) / 1800;
  std::printf(
      "[ numbers  ] stray throttles 1/200, no cap, one connection: %.3f/s accepted (of ~10/s), %u "
      "throttled\n",
      achieved, all.throttled);
  EXPECT_GT(all.throttled, 30u);
  EXPECT_GE(achieved, 0.95 * 10 * 0.985);
}

TEST(FlowControllerSimTest, ConfiguredMaximaAreNeverExceededAlsoAfterAReloadLowersThem) {
  FlowController fc(FlowLimits{2, 3, 0.5}, kStart);
  SimReceiverOptions ro;  // a receiver that allows anything
  SimReceiver receiver(ro, kStart);
  SimSenderOptions so;
  so.connections = 5;
  Simulation sim(fc, receiver, so, kStart);
  sim.RunUntil(kStart + seconds(300), [&](int64_t s) {
    if (s == 200) fc.SetLimits(FlowLimits{1, 1, 0.2}, kStart + seconds(s));
  });
  SimSecond before = sim.Sum(0, 200);
  EXPECT_LE(before.max_open, 2u);
  EXPECT_LE(before.max_allowed_connections, 2u);
  EXPECT_FALSE(before.rate_unlimited);
  EXPECT_LE(before.max_rate, 3.0);
  for (int64_t t = 0; t + 10 <= 200; t += 10) {
    EXPECT_LE(sim.Sum(t, t + 10).accepted, 3 * 10 + 3) << t;  // rate x window + one burst
    EXPECT_LE(sim.Sum(t, t + 10).opened, 5u + 1) << t;
  }
  EXPECT_GE(before.accepted, 0.95 * 3 * 200 * 0.99 - 3);  // the cap, not less
  SimSecond after = sim.Sum(201, 300);
  EXPECT_LE(after.max_open, 1u);
  EXPECT_LE(after.max_allowed_connections, 1u);
  EXPECT_LE(after.max_rate, 1.0);
  EXPECT_LE(after.accepted, 1 * 99 + 1);
  std::printf(
      "[ numbers  ] caps 2 conns/3 per s: %.2f/s with at most %u open; after reload to 1/1: %.2f/s with %u "
      "open\n",
      before.accepted / 200.0, before.max_open, after.accepted / 99.0, after.max_open);
}

TEST(FlowControllerSimTest, ALearnedRateNeverExceedsTheConfiguredCapWhileProbing) {
  // The receiver allows 600/min = 10/s, the configuration 4/s; and a receiver
  // of 150/min = 2.5/s under the same cap is learned below it.
  for (double per_minute : {600.0, 150.0}) {
    FlowController fc(FlowLimits{20, 4, 0}, kStart);
    SimReceiverOptions ro;
    ro.per_minute = per_minute;
    SimReceiver receiver(ro, kStart);
    Simulation sim(fc, receiver, SimSenderOptions{}, kStart);
    sim.RunUntil(kStart + minutes(20));
    SimSecond all = sim.Sum(0, 1200);
    EXPECT_FALSE(all.rate_unlimited);
    EXPECT_LE(all.max_rate, 4.0) << per_minute;
    double expected = std::min(4.0, per_minute / 60);
    EXPECT_GE(sim.Sum(60, 1200).accepted / 1140.0, 0.9 * expected) << per_minute;
  }
}

TEST(FlowControllerSimTest, LearnsTheReceiversConnectionLimit) {
  // The sender would like 20 connections; the receiver answers 421 beyond 3.
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  SimReceiverOptions ro;
  ro.max_connections = 3;
  SimReceiver receiver(ro, kStart);
  SimSenderOptions so;
  so.connections = 20;
  Simulation sim(fc, receiver, so, kStart);
  sim.RunUntil(kStart + seconds(10));
  EXPECT_EQ(fc.connections(), 3u);
  EXPECT_EQ(sim.open(), 3u);
  sim.RunUntil(kStart + minutes(30));
  SimSecond all = sim.Sum(0, 1800);
  std::printf(
      "[ numbers  ] receiver allows 3 connections, sender wants 20: limit %u after 10s, %u refused "
      "connections "
      "in 30 min, at most %u open\n",
      fc.connections(), all.refused_connections, all.max_open);
  EXPECT_LE(all.max_open, 3u);
  // The first burst of refusals, then one probe of a 4th connection per
  // five quiet minutes.
  EXPECT_LE(sim.Sum(10, 1800).refused_connections, 1800 / 300 + 1);
  EXPECT_GE(sim.Sum(10, 1800).refused_connections, 3u);  // it did keep probing
  EXPECT_LE(sim.Sum(0, 10).refused_connections, 17u);
  EXPECT_GE(fc.connections(), 3u);
  EXPECT_LE(fc.connections(), 4u);
}

// The loop the issue rejects, for comparison: halve the rate on a throttle
// (at most once per 2 s, so one burst of refusals is one decrease) and add
// 0.5/s per 10 quiet seconds, starting at 20/s. Same receiver, same sender.
class AimdBaseline {
 public:
  explicit AimdBaseline(TimePoint now) : bucket_(20, 20, now), last_change_(now) {}
  bool MayOpen(uint32_t open, TimePoint) const { return open < 20; }
  TimePoint NextOpen(TimePoint now) const { return now; }
  void Opened(TimePoint) {}
  bool TrySend(uint32_t n, TimePoint now) {
    if (now - last_change_ >= seconds(10)) Set(rate_ + 0.5, now);
    return bucket_.TryTake(n, now);
  }
  TimePoint NextSend(uint32_t n, TimePoint now) const { return bucket_.WhenAvailable(n, now); }
  void OnAccepted(uint32_t, TimePoint) {}
  void OnSignal(Signal s, uint32_t, TimePoint now, std::string_view = {}) {
    if (s == Signal::kThrottled && now - last_decrease_ >= seconds(2)) {
      last_decrease_ = now;
      Set(std::max(0.1, rate_ / 2), now);
    }
  }
  double rate() const { return rate_; }
  uint32_t connections() const { return 20; }

 private:
  void Set(double r, TimePoint now) {
    rate_ = r;
    bucket_.SetRate(r, std::max(1.0, r), now);
    last_change_ = now;
  }
  double rate_ = 20;
  TokenBucket bucket_;
  TimePoint last_change_;
  TimePoint last_decrease_{};
};

TEST(FlowControllerSimTest, APlainAimdLoopFallsShortAgainstASmallReceiverBurst) {
  for (double burst_seconds : {60.0, 2.0})
    for (double per_minute : {300.0, 3000.0}) {
      SimReceiverOptions ro;
      ro.per_minute = per_minute;
      ro.burst_seconds = burst_seconds;
      SimReceiver aimd_receiver(ro, kStart);
      AimdBaseline aimd(kStart);
      Simulation aimd_sim(aimd, aimd_receiver, SimSenderOptions{}, kStart);
      aimd_sim.RunUntil(kStart + minutes(30));
      SimReceiver receiver(ro, kStart);
      FlowController fc(FlowLimits{20, 0, 0}, kStart);
      Simulation sim(fc, receiver, SimSenderOptions{}, kStart);
      sim.RunUntil(kStart + minutes(30));
      double r = per_minute / 60;
      Converged a = Measure(aimd_sim, r, 60, 1800);
      Converged f = Measure(sim, r, 60, 1800);
      std::printf(
          "[ numbers  ] %g/min, receiver burst %gs, 30 min: AIMD %.1f %% of the limit, %.2f %% throttled; "
          "FlowController %.1f %%, %.2f %% throttled\n",
          per_minute, burst_seconds, 100 * a.fraction, 100 * a.throttled, 100 * f.fraction,
          100 * f.throttled);
      // Against the sink's one-minute burst a sawtooth is mostly absorbed by
      // the receiver's bucket, and AIMD does well at 300/min; with a small
      // burst every dip of the sawtooth is lost throughput.
      EXPECT_GE(f.fraction, 0.95) << per_minute << " " << burst_seconds;
      EXPECT_LE(f.throttled, 0.01) << per_minute << " " << burst_seconds;
      if (burst_seconds < 10) {
        EXPECT_GT(f.fraction, a.fraction + 0.05) << per_minute;
      }
    }
}
}  // namespace
}  // namespace hikyaku::shaping
namespace hikyaku::shaping {
// Not a check: prints one run's Changes and 10 s counters, for studying the
// algorithm (README.md shows how to run it). Environment: PM (receiver's
// per-minute limit, 0 = none), CAP (max_message_rate), STRAY, MAXC (receiver's
// connection limit), K (sender connections), MIN (minutes), SEED.
TEST(FlowControllerSimTimeline, DISABLED_Print) {
  double per_minute = std::getenv("PM") ? std::atof(std::getenv("PM")) : 300;
  double cap = std::getenv("CAP") ? std::atof(std::getenv("CAP")) : 0;
  FlowController fc(FlowLimits{20, cap, 0}, kStart);
  SimReceiverOptions ro;
  ro.per_minute = per_minute;
  ro.burst_seconds = std::getenv("BURST") ? std::atof(std::getenv("BURST")) : 60;
  ro.stray_throttle = std::getenv("STRAY") ? std::atof(std::getenv("STRAY")) : 0;
  ro.max_connections = std::getenv("MAXC") ? std::atoi(std::getenv("MAXC")) : 0;
  int seed = std::getenv("SEED") ? std::atoi(std::getenv("SEED")) : 1;
  ro.seed = seed;
  SimReceiver receiver(ro, kStart);
  SimSenderOptions so;
  so.seed = seed + 100;
  so.connections = std::getenv("K") ? std::atoi(std::getenv("K")) : 3;
  Simulation sim(fc, receiver, so, kStart);
  sim.RunUntil(kStart + minutes(std::getenv("MIN") ? std::atoi(std::getenv("MIN")) : 10), [&](int64_t s) {
    for (auto& ch : fc.TakeChanges())
      std::printf("%6.1fs [tf %llu] %.3f -> %.3f  c%u->%u %s\n", (ch.at - kStart).count() / 1000.0,
                  (unsigned long long)receiver.tempfails(), ch.old_rate, ch.new_rate, ch.old_connections,
                  ch.new_connections, ch.reason.c_str());
    if (s % 10 == 0 && s > 0) {
      auto x = sim.Sum(s - 10, s);
      std::printf("  [%lld] acc %u thr %u att %u\n", (long long)s, x.accepted, x.throttled, x.attempts);
    }
  });
}
}  // namespace hikyaku::shaping
