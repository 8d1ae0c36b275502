#include "inject/flow_headers.h"

#include <gtest/gtest.h>

namespace hikyaku::inject {
namespace {

// A FlowAuthority by position (GCC warns on designated initializers that
// leave members out).
FlowAuthority Authority(std::string tenant = "", std::string priority = "", bool relay_client = false,
                        bool authenticated = false) {
  FlowAuthority a;
  a.tenant = std::move(tenant);
  a.priority = std::move(priority);
  a.relay_client = relay_client;
  a.authenticated = authenticated;
  return a;
}

TEST(TakeFlowHeadersTest, RemovesBothFieldsAndKeepsEverythingElseByteForByte) {
  std::string content =
      "Received: from a\r\n"
      "X-Hikyaku-Tenant: acme\r\n"
      "Subject: hi\r\n"
      "x-hikyaku-priority:   High \r\n"
      "\r\n"
      "X-Hikyaku-Tenant: in the body stays\r\n";
  FlowHeaders h = TakeFlowHeaders(content);
  EXPECT_EQ(h.tenant, "acme");
  EXPECT_EQ(h.priority, "High");
  EXPECT_EQ(content,
            "Received: from a\r\n"
            "Subject: hi\r\n"
            "\r\n"
            "X-Hikyaku-Tenant: in the body stays\r\n");
}

TEST(TakeFlowHeadersTest, FoldedFieldsAreUnfoldedAndRemovedWithTheirContinuations) {
  std::string content =
      "X-Hikyaku-Tenant:\r\n"
      "  acme\r\n"
      "Subject: a\r\n"
      " folded subject\r\n"
      "\r\n"
      "body\r\n";
  FlowHeaders h = TakeFlowHeaders(content);
  EXPECT_EQ(h.tenant, "acme");
  EXPECT_FALSE(h.priority);
  EXPECT_EQ(content, "Subject: a\r\n folded subject\r\n\r\nbody\r\n");
}

TEST(TakeFlowHeadersTest, EveryCopyIsRemovedAndTheFirstCounts) {
  std::string content = "X-Hikyaku-Tenant: first\nX-Hikyaku-Tenant: second\nTo: x\n\nbody";
  FlowHeaders h = TakeFlowHeaders(content);
  EXPECT_EQ(h.tenant, "first");
  EXPECT_EQ(content, "To: x\n\nbody");
}

TEST(TakeFlowHeadersTest, MessageWithoutTheFieldsIsUntouched) {
  const std::string original = "Subject: X-Hikyaku-Tenant: no\r\nX-Hikyaku-Tenants: other field\r\n\r\nbody\r\n";
  std::string content = original;
  FlowHeaders h = TakeFlowHeaders(content);
  EXPECT_FALSE(h.tenant);
  EXPECT_FALSE(h.priority);
  EXPECT_EQ(content, original);
}

TEST(TakeFlowHeadersTest, HeaderSectionWithoutBodyAndLastFieldRemoved) {
  std::string content = "To: x\r\nX-Hikyaku-Priority: normal";
  FlowHeaders h = TakeFlowHeaders(content);
  EXPECT_EQ(h.priority, "normal");
  EXPECT_EQ(content, "To: x\r\n");
}

TEST(DecideFlowTest, TheSubmittersAuthorityBeatsHeaders) {
  FlowHeaders headers{"other", "high"};
  auto flow = DecideFlow(Authority("acme", "", true, false), headers);
  ASSERT_TRUE(flow);
  EXPECT_EQ(flow->tenant, "acme");
  EXPECT_EQ(flow->priority, MessagePriority::kHigh);
}

TEST(DecideFlowTest, TenantHeaderCountsFromRelayNetworksOnly) {
  FlowHeaders headers{"acme", std::nullopt};
  EXPECT_EQ(DecideFlow(Authority("", "", true, false), headers)->tenant, "acme");
  // An authenticated client outside the relay networks cannot pick a tenant.
  EXPECT_EQ(DecideFlow(Authority("", "", false, true), headers)->tenant, "");
  EXPECT_EQ(DecideFlow(Authority(), headers)->tenant, "");
}

TEST(DecideFlowTest, PriorityHeaderCountsFromRelayNetworksAndAuthenticatedUsers) {
  FlowHeaders headers{std::nullopt, "HIGH"};
  EXPECT_EQ(DecideFlow(Authority("", "", true, false), headers)->priority, MessagePriority::kHigh);
  EXPECT_EQ(DecideFlow(Authority("", "", false, true), headers)->priority, MessagePriority::kHigh);
  EXPECT_EQ(DecideFlow(Authority(), headers)->priority, MessagePriority::kNormal);
  // The HTTP field beats the header.
  EXPECT_EQ(DecideFlow(Authority("", "normal", true, false), headers)->priority, MessagePriority::kNormal);
}

TEST(DecideFlowTest, AnUnknownPriorityIsRefusedNamingWhereItCameFrom) {
  auto bad_header = DecideFlow(Authority("", "", true, false), FlowHeaders{std::nullopt, "urgent"});
  ASSERT_FALSE(bad_header);
  EXPECT_EQ(bad_header.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad_header.error().message(), "X-Hikyaku-Priority: expected high or normal, got \"urgent\"");
  auto bad_field = DecideFlow(Authority("", "asap", false, false), FlowHeaders{});
  ASSERT_FALSE(bad_field);
  EXPECT_EQ(bad_field.error().message(), "priority: expected high or normal, got \"asap\"");
  // An untrusted client's bad header is ignored, like its good ones.
  EXPECT_TRUE(DecideFlow(Authority(), FlowHeaders{std::nullopt, "urgent"}));
}

}  // namespace
}  // namespace hikyaku::inject
