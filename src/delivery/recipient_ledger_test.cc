#include "delivery/recipient_ledger.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "events/event_log.h"
#include "testing/temp_dir.h"

namespace hikyaku::delivery {
namespace {

using spool::RecipientState;

// Records what the ledger asks of the spool; commits succeed at once.
class RecordingSpool final : public spool::Spool {
 public:
  void Append(spool::IncomingMessage, spool::CommitCallback done) override { done({}); }
  Result<void> ForEachPending(const std::function<void(const spool::RecipientRecord&)>&) override { return {}; }
  Result<spool::IncomingMessage> ReadMessage(MessageId id) override {
    ++reads;
    if (!stored || stored->id != id) return Fail(ErrorCode::kNotFound, "no such message");
    return *stored;
  }
  void UpdateRecipient(const spool::RecipientRecord& r, spool::CommitCallback done) override {
    updates.push_back(r);
    done({});
  }
  void RemoveMessage(MessageId id, uint32_t count, spool::CommitCallback done) override {
    removed.emplace_back(id, count);
    done({});
  }
  spool::SpoolStats Stats() const override { return {}; }
  void Close() override {}

  std::optional<spool::IncomingMessage> stored;
  int reads = 0;
  std::vector<spool::RecipientRecord> updates;
  std::vector<std::pair<MessageId, uint32_t>> removed;
};

class LedgerTest : public ::testing::Test {
 protected:
  LedgerTest() : events_(*events::EventLog::Open(dir_.path() / "events.jsonl")), ledger_(spool_, *events_, clock_) {}

  queue::QueuedRecipient Rcpt(uint64_t message, uint32_t index, uint16_t attempts = 1) {
    queue::QueuedRecipient q;
    q.message = MessageId(message);
    q.index = index;
    q.attempts = attempts;
    q.received_at = clock_.Now();
    return q;
  }
  std::vector<nlohmann::json> Events() {
    EXPECT_TRUE(events_->Flush());
    std::vector<nlohmann::json> out;
    std::ifstream in(dir_.path() / "events.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }

  TempDir dir_;
  ManualClock clock_;
  RecordingSpool spool_;
  std::unique_ptr<events::EventLog> events_;
  RecipientLedger ledger_;
};

Outcome Delivered() {
  Outcome o;
  o.kind = Outcome::Kind::kDelivered;
  o.code = 250;
  o.enhanced = "2.0.0";
  o.text = "ok";
  return o;
}

TEST_F(LedgerTest, LastFinalRecipientRemovesTheMessageOthersAreUpdated) {
  ledger_.Track(MessageId(7), 2, 2);
  EXPECT_EQ(ledger_.Stats().queued, 2u);
  AttemptContext where;
  where.site = "s";
  where.recipient = "a@x.test";
  where.source = "ip1";
  where.pool = "default";
  ledger_.Final(Rcpt(7, 0), RecipientState::kDelivered, Delivered(), where);
  ASSERT_EQ(spool_.updates.size(), 1u);
  EXPECT_EQ(spool_.updates[0].state, RecipientState::kDelivered);
  EXPECT_TRUE(spool_.removed.empty());

  Outcome deferred;
  deferred.code = 450;
  deferred.enhanced = "4.7.1";
  deferred.throttled = true;
  where.recipient = "b@x.test";
  ledger_.Deferred(Rcpt(7, 1), clock_.Now() + std::chrono::minutes(5), deferred, where);
  ASSERT_EQ(spool_.updates.size(), 2u);
  EXPECT_EQ(spool_.updates[1].state, RecipientState::kQueued);
  EXPECT_EQ(spool_.updates[1].next_attempt, clock_.Now() + std::chrono::minutes(5));

  ledger_.Final(Rcpt(7, 1, 2), RecipientState::kBounced, Outcome{}, where);
  ASSERT_EQ(spool_.removed.size(), 1u);
  EXPECT_EQ(spool_.removed[0].second, 2u);
  EXPECT_EQ(spool_.updates.size(), 2u);  // the last state is not written first
  EXPECT_EQ(spool_.reads, 0);            // the count was known

  auto events = Events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["type"], "delivered");
  EXPECT_EQ(events[0]["source"], "ip1");
  EXPECT_EQ(events[0]["pool"], "default");
  EXPECT_EQ(events[1]["type"], "deferred");
  EXPECT_EQ(events[1]["throttled"], true);
  EXPECT_EQ(events[2]["type"], "bounced");
  EXPECT_EQ(events[2]["attempt"], 2);
  const auto stats = ledger_.Stats();
  EXPECT_EQ(stats.delivered, 1u);
  EXPECT_EQ(stats.deferred, 1u);
  EXPECT_EQ(stats.bounced, 1u);
  EXPECT_EQ(stats.queued, 0u);
}

TEST_F(LedgerTest, RecoveredMessageIsReadBackForItsCountAndUnknownRecipients) {
  spool::IncomingMessage m;
  m.id = MessageId(9);
  m.sender = "from@x.test";
  m.recipients = {"r0@y.test", "r1@y.test", "r2@y.test"};
  spool_.stored = m;
  ledger_.Track(MessageId(9), 1, 0);  // recovery: one pending, total unknown
  AttemptContext where;  // no recipient: decided without a transaction
  where.domain = "y.test";
  ledger_.Final(Rcpt(9, 2), RecipientState::kExpired, Outcome{}, where);
  ASSERT_EQ(spool_.removed.size(), 1u);
  EXPECT_EQ(spool_.removed[0].second, 3u);
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["recipient"], "r2@y.test");
  EXPECT_EQ(events[0]["sender"], "from@x.test");
}

}  // namespace
}  // namespace hikyaku::delivery
