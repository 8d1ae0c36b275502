#include "config/units.h"

#include <gtest/gtest.h>

namespace hikyaku::config {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

TEST(ParseDurationTest, AcceptsEachUnit) {
  EXPECT_EQ(ParseDuration("250ms").value(), milliseconds(250));
  EXPECT_EQ(ParseDuration("30s").value(), seconds(30));
  EXPECT_EQ(ParseDuration("5m").value(), minutes(5));
  EXPECT_EQ(ParseDuration("4h").value(), hours(4));
  EXPECT_EQ(ParseDuration("3d").value(), hours(72));
  EXPECT_EQ(ParseDuration("0s").value(), milliseconds(0));
}

TEST(ParseDurationTest, AcceptsSums) {
  EXPECT_EQ(ParseDuration("1h30m").value(), minutes(90));
  EXPECT_EQ(ParseDuration("1m500ms").value(), milliseconds(60'500));
}

TEST(ParseDurationTest, RejectsMissingOrUnknownUnits) {
  for (std::string_view text :
       {"", "30", "s", "5 m", "5min", "1.5h", "-5s", "5S", "1w", "30s ", "h1"}) {
    auto parsed = ParseDuration(text);
    EXPECT_FALSE(parsed) << text;
    if (!parsed) {
      EXPECT_EQ(parsed.error().code(), ErrorCode::kInvalidArgument);
    }
  }
  EXPECT_NE(ParseDuration("30").error().message().find("no unit"), std::string::npos);
}

TEST(ParseDurationTest, RejectsOverflow) {
  EXPECT_FALSE(ParseDuration("99999999999999999999d"));
  EXPECT_FALSE(ParseDuration("999999999999999d"));
}

TEST(ParseSizeTest, UnitsAreBinary) {
  EXPECT_EQ(ParseSize("100B").value(), 100u);
  EXPECT_EQ(ParseSize("512KB").value(), 512u * 1024);
  EXPECT_EQ(ParseSize("25MB").value(), 25u * 1024 * 1024);
  EXPECT_EQ(ParseSize("1GB").value(), 1ull << 30);
  EXPECT_EQ(ParseSize("2TB").value(), 2ull << 40);
  EXPECT_EQ(ParseSize("25MiB").value(), ParseSize("25MB").value());
  EXPECT_EQ(ParseSize("4096").value(), 4096u);
}

TEST(ParseSizeTest, RejectsOtherSpellings) {
  for (std::string_view text :
       {"", "MB", "25mb", "25 MB", "25M", "1.5GB", "-1KB", "25MBs", "0x10"}) {
    EXPECT_FALSE(ParseSize(text)) << text;
  }
  EXPECT_FALSE(ParseSize("99999999999TB"));  // overflows 64 bits
}

TEST(FormatTest, RoundTrips) {
  EXPECT_EQ(FormatSize(25ull << 20), "25MB");
  EXPECT_EQ(FormatSize(1536), "1536B");  // 1.5KB is not a whole number of KB
  EXPECT_EQ(FormatSize(3072), "3KB");
  EXPECT_EQ(FormatSize(1500), "1500B");
  EXPECT_EQ(FormatSize(0), "0B");
  EXPECT_EQ(FormatDuration(seconds(90)), "1m30s");
  EXPECT_EQ(FormatDuration(hours(2)), "2h");
  EXPECT_EQ(FormatDuration(milliseconds(1250)), "1s250ms");
  for (uint64_t bytes : {0ull, 1ull, 1023ull, 1024ull, 5ull << 30, 12345678ull}) {
    EXPECT_EQ(ParseSize(FormatSize(bytes)).value(), bytes);
  }
  for (int64_t ms : {0, 1, 999, 1000, 86'400'000 + 61'001}) {
    EXPECT_EQ(ParseDuration(FormatDuration(milliseconds(ms))).value(), milliseconds(ms));
  }
}

}  // namespace
}  // namespace hikyaku::config
