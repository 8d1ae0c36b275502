#include "base/message_id.h"

#include <gtest/gtest.h>

#include <set>

namespace hikyaku {
namespace {

TEST(MessageIdTest, TextRoundTrip) {
  MessageId id(0x018c2f9a3b40001aULL);
  EXPECT_EQ(id.ToString(), "018c2f9a3b40001a");
  EXPECT_EQ(MessageId::Parse("018c2f9a3b40001a"), id);
  EXPECT_FALSE(MessageId::Parse("018C2F9A3B40001A"));
  EXPECT_FALSE(MessageId::Parse("xyz"));
  EXPECT_FALSE(MessageId::Parse("018c2f9a3b40001g"));
}

TEST(MessageIdTest, KeyBytesSortLikeNumbers) {
  MessageId a(0x00000000000000ffULL), b(0x0000000000000100ULL);
  EXPECT_LT(a.ToKeyBytes(), b.ToKeyBytes());
  EXPECT_EQ(MessageId::FromKeyBytes(b.ToKeyBytes()), b);
}

TEST(MessageIdTest, GeneratorIsUniqueAndMonotonicWithinOneMillisecond) {
  ManualClock clock;
  MessageIdGenerator gen(clock);
  std::set<MessageId> seen;
  MessageId prev;
  for (int i = 0; i < 10000; ++i) {
    MessageId id = gen.Next();
    EXPECT_GT(id, prev);
    prev = id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 10000u);
}

TEST(MessageIdTest, GeneratorSurvivesClockSteppingBack) {
  ManualClock clock;
  MessageIdGenerator gen(clock);
  MessageId first = gen.Next();
  clock.Advance(Duration(-5000));
  EXPECT_GT(gen.Next(), first);
}

}  // namespace
}  // namespace hikyaku
