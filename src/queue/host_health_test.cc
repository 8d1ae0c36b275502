#include "queue/host_health.h"

#include <gtest/gtest.h>

#include <chrono>

namespace hikyaku::queue {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

class HostHealthTest : public ::testing::Test {
 protected:
  ManualClock clock_;
  HostHealth health_{seconds(60), minutes(30)};
};

TEST_F(HostHealthTest, UnknownHostIsUpAndUsableByEveryone) {
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(health_.Usable("192.0.2.1", clock_.Now()));
  EXPECT_EQ(health_.State("192.0.2.1"), HostState::kUp);
  EXPECT_FALSE(health_.DownUntil("192.0.2.1"));
}

TEST_F(HostHealthTest, FailureMakesHostUnusableForTheDownPeriod) {
  health_.Failure("mx1", clock_.Now());
  EXPECT_EQ(health_.State("mx1"), HostState::kDown);
  EXPECT_EQ(health_.DownUntil("mx1"), clock_.Now() + seconds(60));
  clock_.Advance(seconds(59));
  EXPECT_FALSE(health_.Usable("mx1", clock_.Now()));
  EXPECT_FALSE(health_.Available("mx1", clock_.Now()));
  EXPECT_TRUE(health_.Usable("mx2", clock_.Now()));  // other hosts unaffected
}

TEST_F(HostHealthTest, AfterTheDownPeriodExactlyOneCallerProbes) {
  health_.Failure("mx1", clock_.Now());
  clock_.Advance(seconds(60));
  EXPECT_TRUE(health_.Available("mx1", clock_.Now()));  // does not claim the probe
  EXPECT_TRUE(health_.Usable("mx1", clock_.Now()));
  EXPECT_EQ(health_.State("mx1"), HostState::kProbing);
  // A blackhole costs one connection at a time, however long the probe hangs.
  for (int i = 0; i < 100; ++i) {
    clock_.Advance(seconds(10));
    EXPECT_FALSE(health_.Usable("mx1", clock_.Now()));
    EXPECT_FALSE(health_.Available("mx1", clock_.Now()));
  }
  health_.Success("mx1");
  EXPECT_EQ(health_.State("mx1"), HostState::kUp);
  EXPECT_TRUE(health_.Usable("mx1", clock_.Now()));
  EXPECT_TRUE(health_.Usable("mx1", clock_.Now()));
  EXPECT_EQ(health_.down_count(), 0u);
}

TEST_F(HostHealthTest, FailedProbesDoubleTheDownPeriodUpToTheCap) {
  health_.Failure("mx1", clock_.Now());
  const int expected_seconds[] = {120, 240, 480, 960, 1800, 1800};
  for (int expected : expected_seconds) {
    clock_.Set(*health_.DownUntil("mx1"));
    ASSERT_TRUE(health_.Usable("mx1", clock_.Now()));
    clock_.Advance(seconds(30));  // the probe's connect timeout
    health_.Failure("mx1", clock_.Now());
    EXPECT_EQ(*health_.DownUntil("mx1") - clock_.Now(), seconds(expected));
  }
  EXPECT_EQ(health_.Failures("mx1"), 7u);
}

TEST_F(HostHealthTest, SuccessResetsTheBackoff) {
  health_.Failure("mx1", clock_.Now());
  clock_.Set(*health_.DownUntil("mx1"));
  ASSERT_TRUE(health_.Usable("mx1", clock_.Now()));
  health_.Failure("mx1", clock_.Now());  // 120 s now
  clock_.Set(*health_.DownUntil("mx1"));
  ASSERT_TRUE(health_.Usable("mx1", clock_.Now()));
  health_.Success("mx1");
  health_.Failure("mx1", clock_.Now());
  EXPECT_EQ(*health_.DownUntil("mx1") - clock_.Now(), seconds(60));
  EXPECT_EQ(health_.Failures("mx1"), 1u);
}

TEST_F(HostHealthTest, FailuresOfConnectionsOpenedBeforeTheOutageDoNotDouble) {
  // Ten connections were open when the host died; all ten report.
  for (int i = 0; i < 10; ++i) {
    health_.Failure("mx1", clock_.Now());
    clock_.Advance(milliseconds(100));
  }
  EXPECT_EQ(health_.Failures("mx1"), 1u);
  // The last report extends the period by the current (not doubled) backoff.
  EXPECT_EQ(*health_.DownUntil("mx1"), clock_.Now() - milliseconds(100) + seconds(60));
}

TEST_F(HostHealthTest, AbandonedProbeLetsTheNextCallerProbe) {
  health_.Failure("mx1", clock_.Now());
  clock_.Advance(seconds(61));
  ASSERT_TRUE(health_.Usable("mx1", clock_.Now()));
  EXPECT_FALSE(health_.Usable("mx1", clock_.Now()));
  health_.ProbeAbandoned("mx1");
  EXPECT_EQ(health_.State("mx1"), HostState::kDown);
  EXPECT_EQ(health_.Failures("mx1"), 1u);
  EXPECT_TRUE(health_.Usable("mx1", clock_.Now()));
  EXPECT_FALSE(health_.Usable("mx1", clock_.Now()));
}

TEST_F(HostHealthTest, SnapshotListsHostsThatAreNotUpSortedByName) {
  health_.Failure("mx-b", clock_.Now());
  health_.Failure("mx-a", clock_.Now());
  health_.Failure("mx-c", clock_.Now());
  health_.Success("mx-c");
  clock_.Advance(seconds(60));
  ASSERT_TRUE(health_.Usable("mx-b", clock_.Now()));
  auto snapshot = health_.Snapshot();
  ASSERT_EQ(snapshot.size(), 2u);
  EXPECT_EQ(snapshot[0].host, "mx-a");
  EXPECT_EQ(snapshot[0].state, HostState::kDown);
  EXPECT_EQ(snapshot[1].host, "mx-b");
  EXPECT_EQ(snapshot[1].state, HostState::kProbing);
  EXPECT_STREQ(ToString(snapshot[1].state), "probing");
}

TEST_F(HostHealthTest, BuildsFromDeliveryConfig) {
  config::DeliveryConfig delivery;
  delivery.host_down_initial = seconds(10);
  delivery.host_down_max = seconds(15);
  HostHealth health(delivery);
  health.Failure("h", clock_.Now());
  EXPECT_EQ(*health.DownUntil("h"), clock_.Now() + seconds(10));
  clock_.Advance(seconds(10));
  ASSERT_TRUE(health.Usable("h", clock_.Now()));
  health.Failure("h", clock_.Now());
  EXPECT_EQ(*health.DownUntil("h"), clock_.Now() + seconds(15));
}

}  // namespace
}  // namespace hikyaku::queue
