#include "shaping/smooth_wrr.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace hikyaku::shaping {
namespace {

std::string Sequence(SmoothWrr& wrr, int picks, const std::function<bool(size_t)>& eligible) {
  std::string out;
  for (int i = 0; i < picks; ++i) {
    auto p = wrr.Pick(eligible);
    out += p ? wrr.entries()[*p].id : "-";
  }
  return out;
}

std::string Sequence(SmoothWrr& wrr, int picks) {
  return Sequence(wrr, picks, [](size_t) { return true; });
}

TEST(SmoothWrrTest, InterleavesInsteadOfClumping) {
  SmoothWrr five_one_one({{"a", 5}, {"b", 1}, {"c", 1}});
  EXPECT_EQ(Sequence(five_one_one, 14), "aabacaaaabacaa");
  SmoothWrr two_one({{"a", 2}, {"b", 1}});
  std::string s = Sequence(two_one, 30);
  EXPECT_EQ(s.find("bb"), std::string::npos) << s;
  EXPECT_EQ(s.find("aaa"), std::string::npos) << s;
  for (size_t i = 0; i + 3 <= s.size(); i += 3)
    EXPECT_EQ(std::count(s.begin() + i, s.begin() + i + 3, 'a'), 2) << s;
}

TEST(SmoothWrrTest, DistributionOver3000PicksMatchesTheWeights) {
  SmoothWrr wrr({{"a", 5}, {"b", 3}, {"c", 2}});
  std::vector<int> count(3, 0);
  for (int i = 0; i < 3000; ++i) count[*wrr.Pick()]++;
  EXPECT_EQ(count[0], 1500);
  EXPECT_EQ(count[1], 900);
  EXPECT_EQ(count[2], 600);
}

TEST(SmoothWrrTest, IneligibleEntriesAreSkippedAndDoNotHoardCredit) {
  SmoothWrr wrr({{"a", 1}, {"b", 1}, {"c", 2}});
  // c has no headroom for a long time: a and b share the picks evenly.
  auto not_c = [](size_t i) { return i != 2; };
  std::string s = Sequence(wrr, 1000, not_c);
  EXPECT_EQ(s.find('c'), std::string::npos);
  EXPECT_EQ(std::count(s.begin(), s.end(), 'a'), 500);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_LE(std::abs(wrr.credit(i)), 4) << i;
  }
  // When c comes back it gets its 2/4 share at once, not a backlog of 1000.
  std::string back = Sequence(wrr, 8);
  EXPECT_EQ(std::count(back.begin(), back.end(), 'c'), 4) << back;
  EXPECT_EQ(back.find("ccc"), std::string::npos) << back;
}

TEST(SmoothWrrTest, NothingEligibleOrZeroWeightGivesNothing) {
  SmoothWrr wrr({{"a", 0}, {"b", 3}});
  EXPECT_EQ(Sequence(wrr, 3), "bbb");
  EXPECT_FALSE(wrr.Pick([](size_t) { return false; }));
  SmoothWrr empty({});
  EXPECT_FALSE(empty.Pick());
}

TEST(SmoothWrrTest, SetWeightsKeepsCreditByIdAndAppliesNewWeights) {
  SmoothWrr wrr({{"a", 1}, {"b", 1}});
  EXPECT_EQ(Sequence(wrr, 1), "a");  // a: -1, b: +1
  wrr.SetWeights({{"b", 1}, {"c", 3}, {"a", 1}});
  ASSERT_EQ(wrr.entries().size(), 3u);
  EXPECT_EQ(wrr.credit(0), 1);   // b kept its credit
  EXPECT_EQ(wrr.credit(1), 0);   // c is new
  EXPECT_EQ(wrr.credit(2), -1);  // a kept its debt
  std::vector<int> count(3, 0);
  for (int i = 0; i < 500; ++i) count[*wrr.Pick()]++;
  EXPECT_EQ(count[0], 100);
  EXPECT_EQ(count[1], 300);
  EXPECT_EQ(count[2], 100);
}

}  // namespace
}  // namespace hikyaku::shaping
