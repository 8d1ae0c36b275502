#include "message/received.h"

#include <gtest/gtest.h>

#include "message/header.h"

namespace hikyaku::message {
namespace {

TimePoint At(int64_t unix_seconds, int64_t ms = 0) { return FromUnixMillis(unix_seconds * 1000 + ms); }

TEST(DateTest, Rfc5322Format) {
  EXPECT_EQ(FormatRfc5322Date(At(0)), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(FormatRfc5322Date(At(1'700'000'000, 999)), "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(FormatRfc5322Date(At(951'782'400)), "Tue, 29 Feb 2000 00:00:00 +0000");
  // 2026-11-28 15:54:59 UTC
  EXPECT_EQ(FormatRfc5322Date(At(1'795'881'299)), "Sat, 28 Nov 2026 15:54:59 +0000");
}

TEST(ReceivedTest, Esmtps) {
  ReceivedTrace t{.helo = "client.example",
                  .client_ip = "192.0.2.10",
                  .hostname = "mta.example.net",
                  .protocol = ReceivedProtocol::kEsmtps,
                  .queue_id = "018c2f9a3b40001a",
                  .for_recipient = "rcpt@example.org",
                  .date = At(1'795'881'299)};
  EXPECT_EQ(FormatReceived(t),
            "Received: from client.example ([192.0.2.10])\r\n"
            "\tby mta.example.net (hikyaku) with ESMTPS id 018c2f9a3b40001a\r\n"
            "\tfor <rcpt@example.org>; Sat, 28 Nov 2026 15:54:59 +0000\r\n");
}

TEST(ReceivedTest, HttpAndIpv6AndLocal) {
  ReceivedTrace http{.helo = "", .client_ip = "2001:db8::1", .hostname = "h", .protocol = ReceivedProtocol::kHttp,
                     .queue_id = "q", .for_recipient = "", .date = At(0)};
  EXPECT_EQ(FormatReceived(http),
            "Received: from [IPv6:2001:db8::1]\r\n\tby h (hikyaku) with HTTP id q; "
            "Thu, 01 Jan 1970 00:00:00 +0000\r\n");
  ReceivedTrace local{.helo = "", .client_ip = "", .hostname = "h", .protocol = ReceivedProtocol::kLocal, .queue_id = "q",
                      .for_recipient = "", .date = At(0)};
  EXPECT_EQ(FormatReceived(local),
            "Received: by h (hikyaku) with local id q; Thu, 01 Jan 1970 00:00:00 +0000\r\n");
}

TEST(ReceivedTest, HostileHeloCannotInjectLines) {
  ReceivedTrace t{.helo = "evil\r\nBcc: x@example.com (", .client_ip = "192.0.2.1", .hostname = "h",
                  .protocol = ReceivedProtocol::kEsmtp, .queue_id = "q", .for_recipient = "", .date = At(0)};
  std::string field = FormatReceived(t);
  std::string msg = field + "Subject: s\r\n\r\nbody";
  EXPECT_TRUE(ValidateHeaderBlock(msg)) << field;
  EXPECT_FALSE(HasHeader(msg, "Bcc"));
  EXPECT_NE(field.find("from evil??Bcc:?x@example.com??"), std::string::npos) << field;
}

}  // namespace
}  // namespace hikyaku::message
