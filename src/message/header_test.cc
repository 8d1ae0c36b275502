#include "message/header.h"

#include <gtest/gtest.h>

namespace hikyaku::message {
namespace {

constexpr std::string_view kMessage =
    "Received: from a (b)\r\n"
    "\tby c; Sat, 28 Nov 2026 15:54:59 +0000\r\n"
    "From: Sender <sender@example.com>\r\n"
    "To: a@x.example,\r\n"
    " \"B, Bee\" <b@y.example>\r\n"
    "cc: c@z.example\r\n"
    "BCC: hidden@secret.example\r\n"
    "Subject: Hello\r\n"
    " world\r\n"
    "\r\n"
    "Body line\r\n"
    "To: not-a-header@body.example\r\n";

TEST(HeaderTest, FindHeaderEnd) {
  HeaderBounds b = FindHeaderEnd(kMessage);
  EXPECT_EQ(kMessage.substr(b.header_end, 2), "\r\n");
  EXPECT_EQ(kMessage.substr(b.body_start), "Body line\r\nTo: not-a-header@body.example\r\n");
  // No body separator: the whole input is header.
  EXPECT_EQ(FindHeaderEnd("Subject: x\r\n").header_end, 12u);
  EXPECT_EQ(FindHeaderEnd("Subject: x\r\n").body_start, 12u);
  EXPECT_EQ(FindHeaderEnd("Subject: x").header_end, 10u);
  // Bare LF input.
  HeaderBounds lf = FindHeaderEnd("A: 1\nB: 2\n\nbody\n");
  EXPECT_EQ(lf.header_end, 10u);
  EXPECT_EQ(lf.body_start, 11u);
  // Starts with the separator: empty header block.
  EXPECT_EQ(FindHeaderEnd("\r\nbody").header_end, 0u);
}

TEST(HeaderTest, GetValuesUnfoldsAndIgnoresCase) {
  EXPECT_EQ(GetHeaderValues(kMessage, "subject"), std::vector<std::string>{"Hello world"});
  EXPECT_EQ(GetHeaderValues(kMessage, "TO"),
            std::vector<std::string>{"a@x.example, \"B, Bee\" <b@y.example>"});
  EXPECT_EQ(GetHeaderValues(kMessage, "Received"),
            std::vector<std::string>{"from a (b)\tby c; Sat, 28 Nov 2026 15:54:59 +0000"});
  EXPECT_TRUE(GetHeaderValues(kMessage, "X-Missing").empty());
  EXPECT_TRUE(GetHeaderValues(kMessage, "Body line").empty());
  EXPECT_EQ(GetHeaderValues("X-A: 1\r\nX-B: 2\r\nx-a:3\r\n\r\n", "X-A"),
            (std::vector<std::string>{"1", "3"}));
  // obs-optional: space before the colon.
  EXPECT_EQ(GetHeaderValues("Subject : spaced\r\n\r\n", "Subject"), std::vector<std::string>{"spaced"});
  EXPECT_TRUE(HasHeader(kMessage, "bcc"));
  EXPECT_FALSE(HasHeader(kMessage, "Date"));
}

TEST(HeaderTest, RemoveHeaderKeepsEverythingElse) {
  std::string out = RemoveHeader(kMessage, "Bcc");
  EXPECT_EQ(out.find("hidden@secret.example"), std::string::npos);
  EXPECT_EQ(out.size(), kMessage.size() - std::string_view("BCC: hidden@secret.example\r\n").size());
  std::string no_to = RemoveHeader(kMessage, "to");
  EXPECT_EQ(no_to.find("b@y.example"), std::string::npos) << "continuation line left behind";
  EXPECT_NE(no_to.find("To: not-a-header@body.example"), std::string::npos) << "body was touched";
  EXPECT_EQ(RemoveHeader(kMessage, "X-Missing"), kMessage);
}

TEST(HeaderTest, PrependHeader) {
  auto out = PrependHeader("Subject: x\r\n\r\nbody", "X-Test", "1");
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, "X-Test: 1\r\nSubject: x\r\n\r\nbody");
  EXPECT_TRUE(PrependHeader("S: x\r\n\r\n", "X-Fold", "a\r\n b"));
  EXPECT_FALSE(PrependHeader("S: x\r\n\r\n", "X-Test", "1\r\nBcc: evil@example.com"));
  EXPECT_FALSE(PrependHeader("S: x\r\n\r\n", "X-Test", "1\nBcc: evil@example.com"));
  EXPECT_FALSE(PrependHeader("S: x\r\n\r\n", "X-Test", "1\r"));
  EXPECT_FALSE(PrependHeader("S: x\r\n\r\n", "X Test", "1"));
  EXPECT_FALSE(PrependHeader("S: x\r\n\r\n", "X:Test", "1"));
  EXPECT_FALSE(PrependHeader("S: x\r\n\r\n", "", "1"));
}

TEST(HeaderTest, ValidateHeaderBlock) {
  EXPECT_TRUE(ValidateHeaderBlock(kMessage));
  EXPECT_TRUE(ValidateHeaderBlock("Subject: no body"));
  EXPECT_FALSE(ValidateHeaderBlock("just a body line\r\n\r\n"));
  EXPECT_FALSE(ValidateHeaderBlock("\r\nbody only"));
  EXPECT_FALSE(ValidateHeaderBlock(""));
  EXPECT_FALSE(ValidateHeaderBlock(" continuation first: x\r\n\r\n"));
  EXPECT_FALSE(ValidateHeaderBlock("Subject: x\r\nnot a field\r\n\r\n"));
  EXPECT_FALSE(ValidateHeaderBlock("Subject: x\r\nBad Name: y\r\n\r\n"));
  EXPECT_FALSE(ValidateHeaderBlock("Subject: x\rBcc: y\r\n\r\n"));
  std::string long_line = "Subject: " + std::string(990, 'a') + "\r\n\r\n";
  auto r = ValidateHeaderBlock(long_line);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("line 1"), std::string::npos);
  // Long body lines are not the header's business.
  EXPECT_TRUE(ValidateHeaderBlock("Subject: x\r\n\r\n" + std::string(2000, 'b')));
}

TEST(HeaderTest, ExtractRecipientAddresses) {
  auto rcpts = ExtractRecipientAddresses(kMessage);
  ASSERT_TRUE(rcpts) << rcpts.error().ToString();
  EXPECT_EQ(*rcpts, (std::vector<std::string>{"a@x.example", "b@y.example", "c@z.example",
                                              "hidden@secret.example"}));
}

TEST(HeaderTest, ExtractRecipientsRealWorld) {
  std::string raw =
      "From: shop@example.com\n"
      "To: undisclosed-recipients:;\n"
      "Bcc: \"Tanaka, Ichiro\" <ichiro@docomo.example>, =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=\n"
      "  <yamada@ezweb.example> (mobile),\n"
      "  list: one@x.example, two@x.example;\n"
      "To: ichiro@docomo.example\n"
      "Resent-To: not-used@example.com\n"
      "\n"
      "Cc: body@example.com\n";
  auto rcpts = ExtractRecipientAddresses(raw);
  ASSERT_TRUE(rcpts) << rcpts.error().ToString();
  EXPECT_EQ(*rcpts, (std::vector<std::string>{"ichiro@docomo.example", "yamada@ezweb.example",
                                              "one@x.example", "two@x.example"}));
}

TEST(HeaderTest, ExtractRecipientsReportsTheBadField) {
  auto rcpts = ExtractRecipientAddresses("To: ok@example.com\r\nCc: John Smith\r\n\r\n");
  ASSERT_FALSE(rcpts);
  EXPECT_TRUE(rcpts.error().message().starts_with("Cc: ")) << rcpts.error().message();
  auto none = ExtractRecipientAddresses("Subject: x\r\n\r\n");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace hikyaku::message
