#include "sink/record.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace hikyaku::sink {
namespace {

const char kHeader[] =
    "From: <a@example.com>\r\n"
    "message-id:   <m1@test.example>  \r\n"
    "X-Hikyaku-Test: case-7\r\n"
    "Subject: folded\r\n"
    " over two lines\r\n"
    "\r\n";

TEST(HeaderFieldValueTest, FindsFieldsCaseInsensitivelyAndTrims) {
  EXPECT_EQ(HeaderFieldValue(kHeader, "Message-ID"), "<m1@test.example>");
  EXPECT_EQ(HeaderFieldValue(kHeader, "x-hikyaku-test"), "case-7");
  EXPECT_EQ(HeaderFieldValue(kHeader, "Subject"), "folded over two lines");
  EXPECT_EQ(HeaderFieldValue(kHeader, "To"), std::nullopt);
}

TEST(HeaderFieldValueTest, StopsAtTheEndOfTheHeaderSection) {
  EXPECT_EQ(HeaderFieldValue("Subject: x\r\n\r\nMessage-ID: <in-body@x>\r\n", "Message-ID"), std::nullopt);
  EXPECT_EQ(HeaderFieldValue("\r\nMessage-ID: <in-body@x>\r\n", "Message-ID"), std::nullopt);
}

TEST(HeaderFieldValueTest, FirstOccurrenceAndObsoleteSpaceBeforeColon) {
  EXPECT_EQ(HeaderFieldValue("Message-ID : <a@x>\r\nMessage-ID: <b@x>\r\n", "Message-ID"), "<a@x>");
  EXPECT_EQ(HeaderFieldValue("Message-IDs: <a@x>\r\n", "Message-ID"), std::nullopt);
  EXPECT_EQ(HeaderFieldValue("X-Hikyaku-Test:\r\n", "X-Hikyaku-Test"), "");
  // A header section cut at the kept limit, without its final CRLF.
  EXPECT_EQ(HeaderFieldValue("Subject: a\r\nMessage-ID: <cut", "Message-ID"), "<cut");
}

TEST(JsonTest, EscapesWhatJsonRequires) {
  std::string out;
  AppendJsonString(out, std::string("a\"b\\c\r\n\t\x01 \xe3\x81\x82", 13));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\r\\n\\t\\u0001 \xe3\x81\x82\"");
  EXPECT_EQ(nlohmann::json::parse(out).get<std::string>(), std::string("a\"b\\c\r\n\t\x01 \xe3\x81\x82", 13));
}

TEST(JsonTest, Rfc3339Millis) {
  std::string out;
  AppendRfc3339Millis(out, FromUnixMillis(1'700'000'000'123));
  EXPECT_EQ(out, "2023-11-14T22:13:20.123Z");
  out.clear();
  AppendRfc3339Millis(out, FromUnixMillis(5));
  EXPECT_EQ(out, "1970-01-01T00:00:00.005Z");
}

TEST(JsonTest, OneLinePerRecipientWithAllFields) {
  ReceivedRecord record{
      FromUnixMillis(1'700'000'000'000), "192.0.2.7", "s@example.com", 1234, "<id@x>", std::nullopt};
  std::string out = "previous\n";
  AppendJsonLines(out, record, {"r1@example.net", "r\"2@example.net"});
  ASSERT_EQ(out.substr(0, 9), "previous\n");
  std::string lines = out.substr(9);
  size_t nl = lines.find('\n');
  ASSERT_NE(nl, std::string::npos);
  auto first = nlohmann::json::parse(lines.substr(0, nl));
  auto second = nlohmann::json::parse(lines.substr(nl + 1, lines.size() - nl - 2));
  EXPECT_EQ(lines.back(), '\n');
  EXPECT_EQ(first["ts"], "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(first["client"], "192.0.2.7");
  EXPECT_EQ(first["sender"], "s@example.com");
  EXPECT_EQ(first["recipient"], "r1@example.net");
  EXPECT_EQ(first["size"], 1234);
  EXPECT_EQ(first["message_id"], "<id@x>");
  EXPECT_TRUE(first["test"].is_null());
  EXPECT_EQ(second["recipient"], "r\"2@example.net");
}

TEST(SinkCountersTest, JsonSumsTheRejectionReasons) {
  SinkCounters c;
  c.connections = 3;
  c.messages = 2;
  c.recipients = 5;
  c.bytes = 999;
  c.unknown_user = 1;
  c.greylisted = 2;
  c.tempfail_recipients = 4;
  c.rate_limited = 6;
  auto j = nlohmann::json::parse(c.ToJson());
  EXPECT_EQ(j["connections"], 3);
  EXPECT_EQ(j["messages"], 2);
  EXPECT_EQ(j["recipients"], 5);
  EXPECT_EQ(j["bytes"], 999);
  EXPECT_EQ(j["rejected_recipients"], 7);
  EXPECT_EQ(j["rejected"]["greylisted"], 2);
  EXPECT_EQ(j["rate_limited"], 6);
}

TEST(PerIpCountersTest, PeakIsTheMostOpenAtOnceAndMinutesCountFromStart) {
  TimePoint start = FromUnixMillis(1'700'000'000'000);
  PerIpCounters c(start);
  c.Connected("10.0.0.1");
  c.Connected("10.0.0.1");
  c.Disconnected("10.0.0.1");
  c.Connected("10.0.0.1");  // two open again, never three
  c.Connected("10.0.0.2");
  c.RefusedConnection("10.0.0.1");
  c.RateLimited("10.0.0.2");
  c.RateLimited("10.0.0.2");
  c.AcceptedRecipients("10.0.0.1", 3, start + std::chrono::seconds(59));
  c.AcceptedRecipients("10.0.0.1", 1, start + std::chrono::seconds(60));
  c.AcceptedRecipients("10.0.0.2", 2, start + std::chrono::minutes(3));
  c.AcceptedRecipients("10.0.0.2", 1, start - std::chrono::seconds(1));  // before start: minute 0
  auto j = nlohmann::json::parse(c.ToJson());
  EXPECT_EQ(j["10.0.0.1"]["connections"], 3);
  EXPECT_EQ(j["10.0.0.1"]["peak_connections"], 2);
  EXPECT_EQ(j["10.0.0.1"]["refused_connections"], 1);
  EXPECT_EQ(j["10.0.0.1"]["recipients"], 4);
  EXPECT_EQ(j["10.0.0.1"]["per_minute"], nlohmann::json::parse("[3,1,0,0]"));
  EXPECT_EQ(j["10.0.0.2"]["rate_limited"], 2);
  EXPECT_EQ(j["10.0.0.2"]["recipients"], 3);
  EXPECT_EQ(j["10.0.0.2"]["per_minute"], nlohmann::json::parse("[1,0,0,2]"));
  EXPECT_EQ(c.untracked_events(), 0u);
}

TEST(PerIpCountersTest, MemoryIsBoundedInAddressesAndMinutes) {
  TimePoint start = FromUnixMillis(0);
  PerIpCounters c(start);
  for (size_t i = 0; i < PerIpCounters::kMaxIps + 5; ++i) c.Connected("10.1." + std::to_string(i));
  EXPECT_EQ(c.untracked_events(), 5u);
  auto j = nlohmann::json::parse(c.ToJson());
  EXPECT_EQ(j.size(), PerIpCounters::kMaxIps);
  c.AcceptedRecipients("10.1.0", 1, start + std::chrono::minutes(PerIpCounters::kMaxMinutes - 1));
  c.AcceptedRecipients("10.1.0", 7, start + std::chrono::minutes(PerIpCounters::kMaxMinutes));
  j = nlohmann::json::parse(c.ToJson());
  EXPECT_EQ(j["10.1.0"]["recipients"], 8);  // counted, but past the last minute kept
  EXPECT_EQ(j["10.1.0"]["per_minute"].size(), PerIpCounters::kMaxMinutes);
  EXPECT_EQ(j["10.1.0"]["per_minute"].back(), 1);
}

}  // namespace
}  // namespace hikyaku::sink
