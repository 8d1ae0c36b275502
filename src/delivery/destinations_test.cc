#include "delivery/destinations.h"

#include <gtest/gtest.h>

#include <map>

#include "dns/fake_resolver.h"

namespace hikyaku::delivery {
namespace {

using queue::QueuedRecipient;
using queue::SiteId;
using std::chrono::minutes;

struct Recorder : Destinations::Handler {
  struct Placed {
    SiteId site;
    QueuedRecipient q;
    TimePoint due;
  };
  struct Failed {
    QueuedRecipient q;
    Outcome o;
    std::optional<TimePoint> next;
  };
  SiteId SiteFor(uint32_t domain, const dns::Destination& d) override {
    sites_asked.push_back(d.hosts.at(0).name);
    return SiteId{domain + 100};
  }
  void Place(SiteId site, const QueuedRecipient& q, TimePoint due) override { placed.push_back({site, q, due}); }
  void LookupFailed(const QueuedRecipient& q, const Outcome& o, std::optional<TimePoint> next) override {
    failed.push_back({q, o, next});
  }
  std::vector<std::string> sites_asked;
  std::vector<Placed> placed;
  std::vector<Failed> failed;
};

class DestinationsTest : public ::testing::Test {
 protected:
  DestinationsTest() : retry_(RetryConfig(), 7) {
    destinations_ = std::make_shared<Destinations>(resolver_, domains_, retry_, handler_, clock_);
  }
  static config::RetryConfig RetryConfig() {
    config::RetryConfig c;
    c.initial = minutes(5);
    c.jitter = 0.5;  // wide, so different keys would almost surely differ
    return c;
  }
  QueuedRecipient Rcpt(uint64_t message, uint32_t index, std::string_view domain) {
    QueuedRecipient q;
    q.message = MessageId(message);
    q.index = index;
    q.received_at = clock_.Now();
    q.domain = domains_.Intern(domain);
    return q;
  }

  ManualClock clock_{FromUnixMillis(1'800'000'000'000)};
  dns::FakeResolver resolver_;
  queue::DomainTable domains_;
  queue::RetryPolicy retry_;
  Recorder handler_;
  std::shared_ptr<Destinations> destinations_;
};

TEST_F(DestinationsTest, RecipientsWaitForTheLookupThenJoinTheSite) {
  resolver_.SetMxHosts("a.test", {dns::MxHost{"mx.a.test", 10, {boost::asio::ip::make_address("127.0.0.1")}}});
  destinations_->Enqueue(Rcpt(1, 0, "a.test"), clock_.Now());
  destinations_->Enqueue(Rcpt(1, 1, "a.test"), clock_.Now());
  EXPECT_TRUE(handler_.placed.empty());
  EXPECT_EQ(destinations_->waiting(), 2u);
  EXPECT_EQ(resolver_.mx_requests().size(), 1u);  // one lookup for both
  resolver_.RunPending();
  ASSERT_EQ(handler_.placed.size(), 2u);
  EXPECT_EQ(handler_.placed[0].site.value, 100u);
  EXPECT_EQ(destinations_->waiting(), 0u);
  // Known now: the next one goes straight to the site, without a lookup.
  destinations_->Enqueue(Rcpt(2, 0, "a.test"), clock_.Now());
  EXPECT_EQ(handler_.placed.size(), 3u);
  EXPECT_EQ(resolver_.mx_requests().size(), 1u);
  EXPECT_EQ(destinations_->SiteOf(domains_.Intern("a.test"))->value, 100u);
}

TEST_F(DestinationsTest, PermanentFailureBouncesEveryWaitingRecipient) {
  destinations_->Enqueue(Rcpt(1, 0, "nowhere.test"), clock_.Now());
  destinations_->Enqueue(Rcpt(1, 1, "nowhere.test"), clock_.Now());
  resolver_.RunPending();  // no answer set: NXDOMAIN
  ASSERT_EQ(handler_.failed.size(), 2u);
  for (const auto& f : handler_.failed) {
    EXPECT_EQ(f.o.kind, Outcome::Kind::kBounced);
    EXPECT_EQ(f.o.enhanced, "5.1.2");
    EXPECT_FALSE(f.next);
    EXPECT_EQ(f.q.attempts, 1);
  }
}

// The defect the review found: DNS deferrals used their own jitter key
// (message ^ index), so recipients of one message came back at different
// times and lost their shared transaction.
TEST_F(DestinationsTest, TransientFailureDefersSiblingsToTheSameRetryTime) {
  resolver_.SetMx("slow.test", Fail(ErrorCode::kTimeout, "slow.test: timeout"));
  for (uint32_t i = 0; i < 5; ++i) destinations_->Enqueue(Rcpt(42, i, "slow.test"), clock_.Now());
  resolver_.RunPending();
  ASSERT_EQ(handler_.failed.size(), 5u);
  for (const auto& f : handler_.failed) {
    EXPECT_EQ(f.o.kind, Outcome::Kind::kDeferred);
    EXPECT_EQ(f.o.enhanced, "4.4.3");
    ASSERT_TRUE(f.next);
    EXPECT_EQ(*f.next, *handler_.failed[0].next);
    EXPECT_EQ(f.q.attempts, 1);
  }
  // ... and exactly where the scheduler would put them after a reply.
  QueuedRecipient tried = handler_.failed[0].q;
  EXPECT_EQ(*handler_.failed[0].next, *retry_.NextAttemptFor(tried, clock_.Now()));

  // At the retry time the domain is looked up again; now it answers, and
  // the recipients join the site due at their retry time (the retry lane).
  resolver_.SetMxHosts("slow.test", {dns::MxHost{"mx.slow.test", 10, {boost::asio::ip::make_address("127.0.0.1")}}});
  EXPECT_EQ(destinations_->NextWakeup(), handler_.failed[0].next);
  clock_.Advance(minutes(20));
  destinations_->Tick(clock_.Now());
  resolver_.RunPending();
  ASSERT_EQ(handler_.placed.size(), 5u);
  for (const auto& p : handler_.placed) {
    EXPECT_EQ(p.due, *handler_.failed[0].next);
    EXPECT_EQ(p.q.attempts, 1);
  }
  EXPECT_FALSE(destinations_->NextWakeup());
}

}  // namespace
}  // namespace hikyaku::delivery
