// FlowController against the simulated receiver (testing/sim_receiver.h):
// the acceptance criteria, measured in simulated time. The numbers
// are printed (and quoted in README.md).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

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
  double achieved = 0;       // accepted/s over [60 s, end)
  double fraction = 0;       // of the receiver's rate
  double throttled = 0;      // share of attempts throttled over [60 s, end)
  int64_t reached90_at = -1; // first second from which the 10 s average stays >= 90 %
};

Converged Measure(const Simulation& sim, double receiver_rate, int64_t from, int64_t to) {
  Converged c;
  SimSecond s = sim.Sum(from, to);
  c.achieved = static_cast<double>(s.accepted) / static_cast<double>(to - from);
  c.fraction = c.achieved / receiver_rate;
  c.throttled = s.attempts ? static_cast<double>(s.throttled) / s.attempts : 0;
  for (int64_t t = 0; t + 10 <= to; ++t) {
    bool ok = true;
    for (int64_t u = t; u + 10 <= to && ok; u += 10) {
      ok = sim.Sum(u, u + 10).accepted >= 0.9 * receiver_rate * 10;
    }
    if (ok) {
      c.reached90_at = t;
      break;
    }
  }
  return c;
}

void ConvergesBelowAnUnknownLimit(double per_minute, uint32_t connections) {
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  SimReceiverOptions ro;
  ro.per_minute = per_minute;
  SimReceiver receiver(ro, kStart);
  SimSenderOptions so;
  so.connections = connections;
  Simulation sim(fc, receiver, so, kStart);
  sim.RunUntil(kStart + minutes(10));
  double r = per_minute / 60.0;
  Converged c = Measure(sim, r, 60, 600);
  std::printf("[ numbers  ] %g/min, %u connections: %.3f/s = %.1f %% of the limit over 60s-10min, %.2f %% throttled "
              "after 60s (%u of %u), 90 %% sustained from %llds, estimate %.3f/s, holding %.3f/s\n",
              per_minute, connections, c.achieved, 100 * c.fraction, 100 * c.throttled, sim.Sum(60, 600).throttled,
              sim.Sum(60, 600).attempts, static_cast<long long>(c.reached90_at), fc.view().estimate, fc.rate());
  EXPECT_GE(c.fraction, 0.90);
  EXPECT_LE(c.throttled, 0.02);
  EXPECT_LE(c.fraction, 1.0);
  EXPECT_GE(c.reached90_at, 0);
  EXPECT_LE(c.reached90_at, 60);
  for (const auto& ch : fc.TakeChanges()) {
    EXPECT_FALSE(ch.reason.empty());
  }
}

TEST(FlowControllerSimTest, ConvergesBelowAnUnknownLimitOf300PerMinute) { ConvergesBelowAnUnknownLimit(300, 3); }
TEST(FlowControllerSimTest, ConvergesBelowAnUnknownLimitOf60PerMinute) { ConvergesBelowAnUnknownLimit(60, 3); }
TEST(FlowControllerSimTest, ConvergesBelowAnUnknownLimitOf3000PerMinute) { ConvergesBelowAnUnknownLimit(3000, 3); }

}  // namespace
}  // namespace hikyaku::shaping
namespace hikyaku::shaping {
TEST(FlowControllerSimDebug, DISABLED_Timeline) {
  double per_minute = std::getenv("PM") ? std::atof(std::getenv("PM")) : 300;
  FlowController fc(FlowLimits{20, 0, 0}, kStart);
  SimReceiverOptions ro;
  ro.per_minute = per_minute;
  SimReceiver receiver(ro, kStart);
  SimSenderOptions so;
  Simulation sim(fc, receiver, so, kStart);
  sim.RunUntil(kStart + minutes(10), [&](int64_t s) {
    for (auto& ch : fc.TakeChanges())
      std::printf("%6.1fs  %.3f -> %.3f  %s\n", (ch.at - kStart).count() / 1000.0, ch.old_rate, ch.new_rate, ch.reason.c_str());
    if (s % 10 == 0 && s > 0) { auto x = sim.Sum(s - 10, s); std::printf("  [%lld] acc %u thr %u att %u\n", (long long)s, x.accepted, x.throttled, x.attempts); }
  });
}
}  // namespace hikyaku::shaping
