#include "smtp/reply_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace hikyaku::smtp {
namespace {

struct Parsed {
  std::vector<Reply> replies;
  std::vector<std::string> errors;
};

// Feeds `input` in chunks of `chunk` bytes and collects every event.
Parsed ParseAll(std::string_view input, size_t chunk, ReplyParser parser = ReplyParser()) {
  Parsed out;
  size_t pos = 0;
  while (pos < input.size()) {
    std::string_view piece = input.substr(pos, chunk);
    while (!piece.empty()) {
      auto event = parser.Consume(piece);
      EXPECT_GT(event.consumed, 0u);
      EXPECT_LE(event.consumed, piece.size());
      piece.remove_prefix(event.consumed);
      if (event.status == ReplyParser::Status::kReply) out.replies.push_back(parser.TakeReply());
      if (event.status == ReplyParser::Status::kError) out.errors.push_back(parser.error());
    }
    pos += chunk;
  }
  return out;
}

TEST(ReplyParserTest, SingleLineWithEnhancedCode) {
  auto p = ParseAll("250 2.1.5 Ok\r\n", 100);
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].code, 250);
  EXPECT_EQ(p.replies[0].enhanced, "2.1.5");
  EXPECT_EQ(p.replies[0].text, "Ok");
  EXPECT_TRUE(p.replies[0].Positive());
}

TEST(ReplyParserTest, MultiLineGmailStyleStripsRepeatedEnhancedCode) {
  std::string input =
      "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
      "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
      "550 5.1.1 https://support.google.com/mail/?p=NoSuchUser x1si\r\n";
  for (size_t chunk : {1u, 2u, 3u, 7u, 64u, 1000u}) {
    auto p = ParseAll(input, chunk);
    ASSERT_EQ(p.replies.size(), 1u) << chunk;
    EXPECT_TRUE(p.errors.empty());
    EXPECT_EQ(p.replies[0].code, 550);
    EXPECT_EQ(p.replies[0].enhanced, "5.1.1");
    EXPECT_EQ(p.replies[0].text,
              "The email account that you tried to reach does not exist. Please try\n"
              "double-checking the recipient's email address for typos or\n"
              "https://support.google.com/mail/?p=NoSuchUser x1si");
    EXPECT_EQ(p.replies[0].Summary().substr(0, 40), "550 5.1.1 The email account that you tri");
    EXPECT_EQ(p.replies[0].Summary().find('\n'), std::string::npos);
  }
}

TEST(ReplyParserTest, EhloReplyKeepsEveryLine) {
  auto p = ParseAll("250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n", 5);
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].enhanced, "");
  EXPECT_EQ(p.replies[0].text, "mx.test Hello\nPIPELINING\nSIZE 1000\n8BITMIME");
}

TEST(ReplyParserTest, SeveralRepliesInOneReadComeOneAtATime) {
  std::string input = "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n354 End data\r\n";
  ReplyParser parser;
  std::string_view rest = input;
  std::vector<int> codes;
  while (!rest.empty()) {
    auto event = parser.Consume(rest);
    ASSERT_EQ(event.status, ReplyParser::Status::kReply);
    codes.push_back(parser.reply().code);
    rest.remove_prefix(event.consumed);
  }
  EXPECT_EQ(codes, (std::vector<int>{250, 250, 550, 354}));
}

TEST(ReplyParserTest, BareCodeAndBareLfAreAccepted) {
  auto p = ParseAll("250\n220 mx ready\n", 100);
  ASSERT_EQ(p.replies.size(), 2u);
  EXPECT_EQ(p.replies[0].code, 250);
  EXPECT_EQ(p.replies[0].text, "");
  EXPECT_EQ(p.replies[1].text, "mx ready");
}

TEST(ReplyParserTest, EnhancedCodeMustMatchClassAndBeFollowedBySpace) {
  auto p = ParseAll(
      "250 5.1.1 odd\r\n220 2.1.0.example ESMTP\r\n451 4.7.500 Server busy\r\n421 4.7.0\r\n", 100);
  ASSERT_EQ(p.replies.size(), 4u);
  EXPECT_EQ(p.replies[0].enhanced, "");
  EXPECT_EQ(p.replies[0].text, "5.1.1 odd");
  EXPECT_EQ(p.replies[1].enhanced, "");
  EXPECT_EQ(p.replies[2].enhanced, "4.7.500");
  EXPECT_EQ(p.replies[2].text, "Server busy");
  EXPECT_EQ(p.replies[3].enhanced, "4.7.0");
  EXPECT_EQ(p.replies[3].text, "");
}

TEST(ReplyParserTest, ParseEnhancedCode) {
  EXPECT_EQ(ParseEnhancedCode("5.1.1 x"), 5u);
  EXPECT_EQ(ParseEnhancedCode("4.7.28"), 6u);
  EXPECT_EQ(ParseEnhancedCode("2.999.999 x"), 9u);
  EXPECT_EQ(ParseEnhancedCode("3.1.1 x"), 0u);
  EXPECT_EQ(ParseEnhancedCode("5.1234.1 x"), 0u);
  EXPECT_EQ(ParseEnhancedCode("5..1 x"), 0u);
  EXPECT_EQ(ParseEnhancedCode("5.1. x"), 0u);
  EXPECT_EQ(ParseEnhancedCode("5.1.1x"), 0u);
  EXPECT_EQ(ParseEnhancedCode(""), 0u);
}

TEST(ReplyParserTest, MalformedLinesAreErrorsAndParsingResumes) {
  auto p = ParseAll("hello\r\n25\r\n250x\r\n650 no\r\n250-a\r\n251 b\r\n250 ok\r\n", 3);
  EXPECT_EQ(p.errors.size(), 5u);
  ASSERT_EQ(p.replies.size(), 1u);
  EXPECT_EQ(p.replies[0].text, "ok");
}

TEST(ReplyParserTest, OverLongLineIsReportedBeforeItsEndAndDiscarded) {
  ReplyParser parser(64, 8);
  std::string input = "250 " + std::string(200, 'x');
  auto event = parser.Consume(input);
  EXPECT_EQ(event.status, ReplyParser::Status::kError);
  EXPECT_EQ(event.consumed, input.size());
  // The rest of the long line is dropped; the next reply parses.
  event = parser.Consume(std::string(1000, 'y') + "\r\n");
  EXPECT_EQ(event.status, ReplyParser::Status::kNeedMore);
  event = parser.Consume("250 ok\r\n");
  ASSERT_EQ(event.status, ReplyParser::Status::kReply);
  EXPECT_EQ(parser.reply().text, "ok");
}

TEST(ReplyParserTest, LineAtTheLimitIsAcceptedOneMoreIsNot) {
  std::string ok = "250 " + std::string(60, 'a') + "\r\n";  // 64 octets with CRLF
  auto p = ParseAll(ok, 1, ReplyParser(66, 8));
  EXPECT_EQ(p.replies.size(), 1u);
  p = ParseAll(ok, 1, ReplyParser(65, 8));
  EXPECT_EQ(p.replies.size(), 0u);
  EXPECT_EQ(p.errors.size(), 1u);
}

TEST(ReplyParserTest, TooManyLinesIsAnError) {
  std::string input;
  for (int i = 0; i < 10; ++i) input += "250-line\r\n";
  input += "250 end\r\n250 next\r\n";
  auto p = ParseAll(input, 1000, ReplyParser(128, 5));
  ASSERT_GE(p.errors.size(), 1u);
  EXPECT_NE(p.errors[0].find("5 lines"), std::string::npos);
  ASSERT_FALSE(p.replies.empty());
  EXPECT_EQ(p.replies.back().text, "next");
}

TEST(ReplyParserTest, ResetForgetsPartialReply) {
  ReplyParser parser;
  EXPECT_EQ(parser.Consume("250-partial\r\n250 ha").status, ReplyParser::Status::kNeedMore);
  parser.Reset();
  auto event = parser.Consume("220 fresh\r\n");
  ASSERT_EQ(event.status, ReplyParser::Status::kReply);
  EXPECT_EQ(parser.reply().code, 220);
  EXPECT_EQ(parser.reply().text, "fresh");
}

}  // namespace
}  // namespace hikyaku::smtp
