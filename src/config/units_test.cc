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

TEST(ParseRateTest, AcceptsEachUnitSpelling) {
  EXPECT_EQ(ParseRate("300/min").value(), (Rate{300, minutes(1)}));
  EXPECT_EQ(ParseRate("300/minute").value(), (Rate{300, minutes(1)}));
  EXPECT_EQ(ParseRate("5/s").value(), (Rate{5, seconds(1)}));
  EXPECT_EQ(ParseRate("5/sec").value(), (Rate{5, seconds(1)}));
  EXPECT_EQ(ParseRate("10000/h").value(), (Rate{10000, hours(1)}));
  EXPECT_EQ(ParseRate("10000/hour").value(), (Rate{10000, hours(1)}));
  EXPECT_EQ(ParseRate("200000/d").value(), (Rate{200000, hours(24)}));
  EXPECT_EQ(ParseRate("200000/day").value(), (Rate{200000, hours(24)}));
}

TEST(ParseRateTest, PerSecondAndFormat) {
  EXPECT_DOUBLE_EQ(ParseRate("300/min")->PerSecond(), 5.0);
  EXPECT_DOUBLE_EQ(ParseRate("7200/h")->PerSecond(), 2.0);
  EXPECT_DOUBLE_EQ(Rate{}.PerSecond(), 0.0);
  EXPECT_EQ(FormatRate(ParseRate("300/minute").value()), "300/min");
  EXPECT_EQ(FormatRate(ParseRate("2/day").value()), "2/d");
}

TEST(ParseRateTest, ErrorsNameTheBadPart) {
  EXPECT_EQ(ParseRate("300").error().message(),
            "\"300\" is not a rate: missing \"/UNIT\"; write e.g. \"300/min\"");
  EXPECT_EQ(ParseRate("300/mn").error().message(),
            "\"300/mn\" is not a rate: unknown unit \"mn\" (use s, sec, min, minute, h, hour, d "
            "or day)");
  EXPECT_EQ(ParseRate("3x/min").error().message(),
            "\"3x/min\" is not a rate: the count \"3x\" is not a whole number from 1 to "
            "1000000000000");
  EXPECT_EQ(ParseRate("0/min").error().message(),
            "\"0/min\" is not a rate: the count must be at least 1 (leave the key out for no "
            "limit)");
  for (std::string_view text : {"/min", "300/", "300 /min", "300/ min", "1.5/s", "-1/s", "300/MIN",
                                "300/m", "99999999999999999999/s"}) {
    EXPECT_FALSE(ParseRate(text).has_value()) << text;
  }
}

}  // namespace
}  // namespace hikyaku::config
