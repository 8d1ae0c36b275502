#include "inject/intake.h"

#include <future>

#include <gtest/gtest.h>

#include "events/event_log.h"
#include "spool/spool.h"
#include "testing/temp_dir.h"

namespace hikyaku::inject {
namespace {

FlowAuthority FromRelayNetwork() {
  FlowAuthority a;
  a.relay_client = true;
  return a;
}

FlowAuthority OfTenant(std::string tenant) {
  FlowAuthority a;
  a.tenant = std::move(tenant);
  return a;
}

// Intake over a real RocksDB spool and event log in a scratch directory.
class IntakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spool::SpoolOptions options;
    options.path = dir_.path() / "spool";
    options.memtable_size = 4 << 20;
    auto spool = spool::OpenRocksDbSpool(options);
    ASSERT_TRUE(spool) << spool.error().ToString();
    spool_ = std::move(*spool);
    auto events = events::EventLog::Open(dir_.path() / "events.jsonl");
    ASSERT_TRUE(events) << events.error().ToString();
    events_ = std::move(*events);
    intake_.emplace(*spool_, *events_, clock_, "mx.test");
    intake_->SetTenants({"acme", "shop"});
    intake_->SetAcceptedListener([this](AcceptedMessage m) { accepted_.push_back(std::move(m)); });
  }

  Result<MessageId> Submit(std::string content, FlowAuthority flow) {
    Submission s;
    s.sender = "app@sender.test";
    s.recipients = {"user@rcpt.test"};
    s.content = std::move(content);
    s.client_address = "127.0.0.1";
    s.flow = std::move(flow);
    std::promise<Result<MessageId>> done;
    auto future = done.get_future();
    intake_->Submit(std::move(s), [&done](Result<MessageId> r) { done.set_value(std::move(r)); });
    return future.get();
  }

  TempDir dir_;
  SystemClock clock_;
  std::unique_ptr<spool::Spool> spool_;
  std::unique_ptr<events::EventLog> events_;
  std::optional<Intake> intake_;
  std::vector<AcceptedMessage> accepted_;  // on the commit thread, read after `done`
};

constexpr const char* kWithHeaders =
    "X-Hikyaku-Tenant: acme\r\nX-Hikyaku-Priority: high\r\nSubject: reset\r\n\r\nbody\r\n";

TEST_F(IntakeTest, RelayClientsHeadersSetTheFlowAndAreNotStored) {
  auto id = Submit(kWithHeaders, FromRelayNetwork());
  ASSERT_TRUE(id) << id.error().ToString();
  auto stored = spool_->ReadMessage(*id);
  ASSERT_TRUE(stored) << stored.error().ToString();
  EXPECT_EQ(stored->tenant, "acme");
  EXPECT_EQ(stored->priority, 1);
  EXPECT_EQ(stored->content.find("X-Hikyaku"), std::string::npos) << stored->content;
  EXPECT_NE(stored->content.find("Subject: reset\r\n\r\nbody\r\n"), std::string::npos);
  ASSERT_EQ(accepted_.size(), 1u);
  EXPECT_EQ(accepted_[0].tenant, "acme");
  EXPECT_EQ(accepted_[0].priority, MessagePriority::kHigh);
}

TEST_F(IntakeTest, AnUntrustedClientsHeadersAreRemovedAndIgnored) {
  auto id = Submit(kWithHeaders, FlowAuthority());
  ASSERT_TRUE(id) << id.error().ToString();
  auto stored = spool_->ReadMessage(*id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->tenant, "");
  EXPECT_EQ(stored->priority, 0);
  EXPECT_EQ(stored->content.find("X-Hikyaku"), std::string::npos);
}

TEST_F(IntakeTest, AUsersTenantWinsOverItsHeader) {
  FlowAuthority user = OfTenant("shop");  // an SMTP user of tenant shop, on a relay network
  user.relay_client = user.authenticated = true;
  auto id = Submit(kWithHeaders, user);
  ASSERT_TRUE(id);
  EXPECT_EQ(spool_->ReadMessage(*id)->tenant, "shop");
}

TEST_F(IntakeTest, UnknownTenantOrBadPriorityIsRefusedAndNothingIsStored) {
  auto unknown = Submit("X-Hikyaku-Tenant: nobody\r\n\r\nbody\r\n", FromRelayNetwork());
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(unknown.error().message(), "unknown tenant \"nobody\"");
  auto bad = Submit("X-Hikyaku-Priority: urgent\r\n\r\nbody\r\n", FromRelayNetwork());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(spool_->Stats().appends, 0u);
  EXPECT_EQ(intake_->Stats().refused, 2u);
  EXPECT_EQ(intake_->Stats().accepted, 0u);
  EXPECT_TRUE(accepted_.empty());
}

TEST_F(IntakeTest, ANewTenantListTakesEffectForTheNextMessage) {
  ASSERT_TRUE(Submit("Subject: a\r\n\r\nb\r\n", OfTenant("acme")));
  intake_->SetTenants({"shop", "newco"});  // a reload removed acme, added newco
  EXPECT_FALSE(Submit("Subject: a\r\n\r\nb\r\n", OfTenant("acme")));
  EXPECT_TRUE(Submit("Subject: a\r\n\r\nb\r\n", OfTenant("newco")));
  EXPECT_TRUE(intake_->KnownTenant("newco"));
  EXPECT_FALSE(intake_->KnownTenant("acme"));
}

}  // namespace
}  // namespace hikyaku::inject
