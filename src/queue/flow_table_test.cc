#include "queue/flow_table.h"

#include <gtest/gtest.h>

#include "queue/queued_recipient.h"

namespace hikyaku::queue {
namespace {

TEST(FlowTableTest, FlowZeroIsNoTenantNormal) {
  FlowTable t;
  EXPECT_EQ(t.Intern("", Priority::kNormal), kDefaultFlow);
  EXPECT_EQ(t.tenant(kDefaultFlow), "");
  EXPECT_EQ(t.priority(kDefaultFlow), Priority::kNormal);
  EXPECT_EQ(t.weight(kDefaultFlow), 1u);
  EXPECT_EQ(QueuedRecipient{}.flow, kDefaultFlow);
}

TEST(FlowTableTest, InternsTenantPriorityPairsAndSharesTheTenantWeight) {
  FlowTable t;
  const FlowId shop = t.Intern("shop", Priority::kNormal);
  const FlowId shop_urgent = t.Intern("shop", Priority::kHigh);
  const FlowId bank = t.Intern("bank", Priority::kNormal);
  EXPECT_NE(shop, shop_urgent);
  EXPECT_NE(shop, bank);
  EXPECT_EQ(t.Intern("shop", Priority::kNormal), shop);
  EXPECT_EQ(t.size(), 4u);
  EXPECT_EQ(t.tenant(shop_urgent), "shop");
  EXPECT_EQ(t.priority(shop_urgent), Priority::kHigh);
  t.SetTenantWeight("shop", 3);
  EXPECT_EQ(t.weight(shop), 3u);
  EXPECT_EQ(t.weight(shop_urgent), 3u);
  EXPECT_EQ(t.weight(bank), 1u);
  EXPECT_EQ(t.TenantWeight("shop"), 3u);
  EXPECT_EQ(t.TenantWeight("nobody"), 1u);
  // A weight set before the tenant's first flow applies to it.
  t.SetTenantWeight("later", 5);
  EXPECT_EQ(t.weight(t.Intern("later", Priority::kNormal)), 5u);
}

}  // namespace
}  // namespace hikyaku::queue
