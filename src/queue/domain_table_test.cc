#include "queue/domain_table.h"

#include <gtest/gtest.h>

namespace hikyaku::queue {
namespace {

TEST(DomainTableTest, InternsCaseInsensitivelyWithDenseIds) {
  DomainTable table;
  const uint32_t a = table.Intern("Example.COM");
  const uint32_t b = table.Intern("docomo.ne.jp");
  EXPECT_EQ(a, 0u);
  EXPECT_EQ(b, 1u);
  EXPECT_EQ(table.Intern("example.com"), a);
  EXPECT_EQ(table.Name(a), "example.com");
  EXPECT_EQ(table.Name(b), "docomo.ne.jp");
  EXPECT_EQ(table.size(), 2u);
}

}  // namespace
}  // namespace hikyaku::queue
