#include "queue/site_assignment.h"

#include <gtest/gtest.h>

namespace hikyaku::queue {
namespace {

SiteAssignment Sites() {
  return SiteAssignment({{"docomo", {"*.docomo.test"}}, {"gmail", {"*.google.test", "mx.gmail.test"}}});
}

TEST(SiteAssignmentTest, RouteSiteWinsOverPatterns) {
  SiteHost hosts[] = {{"mx1.docomo.test", 25}};
  auto r = Sites().Assign("carrier", hosts);
  EXPECT_EQ(r.key, "carrier");
  EXPECT_TRUE(r.named);
}

TEST(SiteAssignmentTest, WildcardMatchesSubdomainsOnly) {
  SiteHost sub[] = {{"mx1.docomo.test", 25}};
  EXPECT_EQ(Sites().Assign("", sub).key, "docomo");
  SiteHost parent[] = {{"docomo.test", 25}};
  auto r = Sites().Assign("", parent);
  EXPECT_EQ(r.key, "docomo.test");
  EXPECT_FALSE(r.named);
}

TEST(SiteAssignmentTest, AnyHostMatchingAnExactPatternJoinsTheSite) {
  SiteHost hosts[] = {{"backup.other.test", 25}, {"mx.gmail.test", 25}};
  EXPECT_EQ(Sites().Assign("", hosts).key, "gmail");
}

TEST(SiteAssignmentTest, SitesAreTriedInConfigurationOrder) {
  SiteAssignment sites({{"first", {"*.both.test"}}, {"second", {"mx.both.test"}}});
  SiteHost hosts[] = {{"mx.both.test", 25}};
  EXPECT_EQ(sites.Assign("", hosts).key, "first");
}

TEST(SiteAssignmentTest, UnnamedKeyIsTheSortedUniqueHostSetWithPorts) {
  SiteHost hosts[] = {{"mx2.example.test", 25}, {"mx1.example.test", 2525}, {"mx2.example.test", 25}};
  auto r = Sites().Assign("", hosts);
  EXPECT_EQ(r.key, "mx1.example.test:2525,mx2.example.test");
  EXPECT_FALSE(r.named);
}

}  // namespace
}  // namespace hikyaku::queue
