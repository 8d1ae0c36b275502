#include "smtp/command_parser.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace hikyaku::smtp {
namespace {

// Feeds `input` in pieces of the given sizes (cycled) and records every
// line event, as "L:<text>" or "TOO-LONG".
std::vector<std::string> ReadLines(std::string_view input, const std::vector<size_t>& pieces,
                                   size_t max_line = kDefaultMaxCommandLine) {
  CommandLineReader reader(max_line);
  std::vector<std::string> events;
  size_t pos = 0, piece = 0;
  while (pos < input.size()) {
    size_t n = std::min(pieces[piece++ % pieces.size()], input.size() - pos);
    std::string_view chunk = input.substr(pos, n);
    pos += n;
    while (!chunk.empty()) {
      auto event = reader.Consume(chunk);
      EXPECT_LE(event.consumed, chunk.size());
      EXPECT_GT(event.consumed, 0u);
      chunk.remove_prefix(event.consumed);
      if (event.status == CommandLineReader::Status::kLine) {
        events.push_back("L:" + reader.line());
      } else if (event.status == CommandLineReader::Status::kTooLong) {
        events.push_back("TOO-LONG");
      } else {
        EXPECT_TRUE(chunk.empty());
      }
    }
  }
  return events;
}

const std::string kPipelined =
    "EHLO client.example\r\n"
    "MAIL FROM:<alice@example.com> SIZE=1234 BODY=8BITMIME\r\n"
    "RCPT TO:<bob@example.org>\r\n"
    "rcpt to: <\"carol x\"@[192.0.2.1]>\n"
    "DATA\r\n"
    "NOOP\r\r\n"
    "\r\n"
    "QUIT\r\n";

TEST(CommandLineReaderTest, SplitsCrlfAndBareLfLines) {
  auto events = ReadLines(kPipelined, {kPipelined.size()});
  std::vector<std::string> expected = {
      "L:EHLO client.example",
      "L:MAIL FROM:<alice@example.com> SIZE=1234 BODY=8BITMIME",
      "L:RCPT TO:<bob@example.org>",
      "L:rcpt to: <\"carol x\"@[192.0.2.1]>",
      "L:DATA",
      "L:NOOP\r",  // only the CR right before LF belongs to the line end
      "L:",
      "L:QUIT",
  };
  EXPECT_EQ(events, expected);
}

TEST(CommandLineReaderTest, SameResultWhateverTheReadBoundaries) {
  const auto whole = ReadLines(kPipelined, {kPipelined.size()});
  EXPECT_EQ(ReadLines(kPipelined, {1}), whole);
  // Every split into two reads.
  for (size_t cut = 1; cut < kPipelined.size(); ++cut) {
    EXPECT_EQ(ReadLines(kPipelined, {cut, kPipelined.size()}), whole) << "cut at " << cut;
  }
  std::mt19937 rng(20240607);
  for (int round = 0; round < 200; ++round) {
    std::vector<size_t> pieces;
    for (int i = 0; i < 16; ++i) pieces.push_back(1 + rng() % 23);
    EXPECT_EQ(ReadLines(kPipelined, pieces), whole) << "round " << round;
  }
}

TEST(CommandLineReaderTest, LineAtTheLimitIsAcceptedOneMoreIsTooLong) {
  const size_t max_line = 64;  // 62 octets of text + CRLF
  std::string ok(62, 'a');
  std::string too_long(63, 'b');
  std::string input = ok + "\r\n" + too_long + "\r\nNOOP\r\n" + ok + "\n";
  std::vector<std::string> expected = {"L:" + ok, "TOO-LONG", "L:NOOP", "L:" + ok};
  EXPECT_EQ(ReadLines(input, {input.size()}, max_line), expected);
  EXPECT_EQ(ReadLines(input, {1}, max_line), expected);
  EXPECT_EQ(ReadLines(input, {7, 3, 11}, max_line), expected);
}

TEST(CommandLineReaderTest, HugeLineIsDiscardedWithoutBufferingAndReaderRecovers) {
  std::string input = "MAIL FROM:<" + std::string(100000, 'x') + ">\r\nQUIT\r\n";
  std::vector<std::string> expected = {"TOO-LONG", "L:QUIT"};
  EXPECT_EQ(ReadLines(input, {4096}), expected);
  EXPECT_EQ(ReadLines(input, {1, 999}), expected);
}

TEST(CommandLineReaderTest, ResetForgetsPartialLine) {
  CommandLineReader reader;
  EXPECT_EQ(reader.Consume("MAIL FR").status, CommandLineReader::Status::kNeedMore);
  reader.Reset();
  auto event = reader.Consume("NOOP\r\n");
  ASSERT_EQ(event.status, CommandLineReader::Status::kLine);
  EXPECT_EQ(reader.line(), "NOOP");
}

Command Parse(std::string_view line) {
  auto command = ParseCommand(line);
  EXPECT_TRUE(command.has_value()) << line << ": " << command.error().detail;
  return command.value_or(Command{});
}

CommandErrorKind ParseError(std::string_view line) {
  auto command = ParseCommand(line);
  EXPECT_FALSE(command.has_value()) << line;
  return command ? CommandErrorKind::kUnknownCommand : command.error().kind;
}

TEST(ParseCommandTest, VerbsAreCaseInsensitive) {
  EXPECT_EQ(Parse("ehlo mx.example").verb, Verb::kEhlo);
  EXPECT_EQ(Parse("EhLo mx.example").argument, "mx.example");
  EXPECT_EQ(Parse("helo mx.example extra words").argument, "mx.example");
  EXPECT_EQ(Parse("data").verb, Verb::kData);
  EXPECT_EQ(Parse("Rset").verb, Verb::kRset);
  EXPECT_EQ(Parse("noop whatever").verb, Verb::kNoop);
  EXPECT_EQ(Parse("quit").verb, Verb::kQuit);
  EXPECT_EQ(Parse("vrfy bob").argument, "bob");
  EXPECT_EQ(Parse("help").verb, Verb::kHelp);
  EXPECT_EQ(Parse("starttls").verb, Verb::kStartTls);
  EXPECT_EQ(Parse("DATA  ").verb, Verb::kData);  // trailing spaces tolerated
}

TEST(ParseCommandTest, UnknownAndMalformedCommands) {
  EXPECT_EQ(ParseError("BDAT 100 LAST"), CommandErrorKind::kUnknownCommand);
  EXPECT_EQ(ParseError("GET / HTTP/1.1"), CommandErrorKind::kUnknownCommand);
  EXPECT_EQ(ParseError(""), CommandErrorKind::kUnknownCommand);
  EXPECT_EQ(ParseError("EHLO"), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("HELO   "), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("DATA now"), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("STARTTLS x"), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("VRFY"), CommandErrorKind::kSyntax);
}

TEST(ParseCommandTest, NulCrAndEightBitAreRejected) {
  EXPECT_EQ(ParseError(std::string_view("NOOP\0x", 6)), CommandErrorKind::kBadEncoding);
  EXPECT_EQ(ParseError("NOOP\rQUIT"), CommandErrorKind::kBadEncoding);
  EXPECT_EQ(ParseError("MAIL FROM:<j\xc3\xbcrgen@example.com>"), CommandErrorKind::kBadEncoding);
}

TEST(ParseCommandTest, MailFromPaths) {
  EXPECT_EQ(Parse("MAIL FROM:<alice@example.com>").path, "alice@example.com");
  EXPECT_EQ(Parse("mail from:<alice@example.com>").path, "alice@example.com");
  EXPECT_EQ(Parse("MAIL FROM: <alice@example.com>").path, "alice@example.com");
  EXPECT_EQ(Parse("MAIL FROM:<>").path, "");
  EXPECT_EQ(Parse("MAIL FROM:<@relay.example,@b.example:alice@example.com>").path,
            "alice@example.com");
  EXPECT_EQ(Parse("MAIL FROM:<\"john q\"@example.com>").path, "\"john q\"@example.com");
  EXPECT_EQ(Parse("MAIL FROM:<\"a>b\"@example.com>").path, "\"a>b\"@example.com");
  EXPECT_EQ(Parse("MAIL FROM:<\"a\\\"b\"@example.com>").path, "\"a\\\"b\"@example.com");
  EXPECT_EQ(Parse("MAIL FROM:<user+tag@[192.0.2.7]>").path, "user+tag@[192.0.2.7]");
  EXPECT_EQ(Parse("MAIL FROM:<u@[IPv6:2001:db8::1]>").path, "u@[IPv6:2001:db8::1]");
  EXPECT_EQ(Parse("MAIL FROM:<o'brien@sub-1.example.co.jp>").path, "o'brien@sub-1.example.co.jp");
}

TEST(ParseCommandTest, MailFromSyntaxErrors) {
  EXPECT_EQ(ParseError("MAIL FROM:alice@example.com"), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("MAIL alice@example.com"), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("MAIL FROM:<alice@example.com"), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("MAIL FROM:<a@b.example>SIZE=1"), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("MAIL TO:<a@b.example>"), CommandErrorKind::kSyntax);
  // An unterminated quote hides the closing bracket.
  EXPECT_EQ(ParseError("MAIL FROM:<\"unterminated@example.com>"), CommandErrorKind::kSyntax);
}

TEST(ParseCommandTest, BadMailboxes) {
  const char* bad[] = {
      "MAIL FROM:<alice>",                // no domain
      "MAIL FROM:<@example.com>",         // empty local part
      "MAIL FROM:<.alice@example.com>",   // leading dot
      "MAIL FROM:<al..ice@example.com>",  // empty atom
      "MAIL FROM:<alice.@example.com>",   // trailing dot
      "MAIL FROM:<alice@>",               // empty domain
      "MAIL FROM:<alice@-example.com>",   // label starts with hyphen
      "MAIL FROM:<alice@example-.com>",   // label ends with hyphen
      "MAIL FROM:<alice@example..com>",   // empty label
      "MAIL FROM:<alice@example.com.>",   // trailing dot
      "MAIL FROM:<alice@exa_mple.com>",   // underscore
      "MAIL FROM:<a b@example.com>",      // space outside quotes
      "MAIL FROM:<a@b@example.com>",      // two @
      "MAIL FROM:<alice@[300.1.1.1]>",    // bad IPv4 literal
      "MAIL FROM:<alice@[IPv6:zz::1]>",   // bad IPv6 literal
      "MAIL FROM:<alice@[]>",             // empty literal
      "MAIL FROM:<@relay.example:>",      // source route, no mailbox
      "MAIL FROM:<@relay.example alice@example.com>",
  };
  for (const char* line : bad) {
    EXPECT_EQ(ParseError(line), CommandErrorKind::kBadSenderAddress) << line;
  }
  EXPECT_EQ(ParseError("RCPT TO:<bob>"), CommandErrorKind::kBadRecipientAddress);
  EXPECT_EQ(ParseError("RCPT TO:<>"), CommandErrorKind::kBadRecipientAddress);
}

TEST(ParseCommandTest, MailboxLengthLimits) {
  std::string local64(64, 'l');
  std::string local65(65, 'l');
  EXPECT_TRUE(IsValidMailbox(local64 + "@example.com"));
  EXPECT_FALSE(IsValidMailbox(local65 + "@example.com"));
  std::string label63(63, 'd');
  std::string label64(64, 'd');
  EXPECT_TRUE(IsValidMailbox("a@" + label63 + ".example"));
  EXPECT_FALSE(IsValidMailbox("a@" + label64 + ".example"));
  // A 254-octet mailbox is the longest that fits a 256-octet path.
  std::string domain = label63 + "." + label63 + "." + label63 + "." + std::string(61, 'e');
  EXPECT_EQ(domain.size(), 253u);
  EXPECT_FALSE(IsValidMailbox("ab@" + domain));               // 256 octets
  EXPECT_TRUE(IsValidMailbox("a@" + domain.substr(0, 252)));  // 254 octets
}

TEST(ParseCommandTest, EsmtpParameters) {
  Command mail = Parse("MAIL FROM:<a@example.com> SIZE=1048576 BODY=8BITMIME");
  ASSERT_TRUE(mail.size.has_value());
  EXPECT_EQ(*mail.size, 1048576u);
  EXPECT_EQ(mail.body, BodyType::k8BitMime);
  EXPECT_EQ(Parse("MAIL FROM:<a@example.com> body=7bit").body, BodyType::k7Bit);
  EXPECT_EQ(Parse("MAIL FROM:<a@example.com>  size=10   ").size, 10u);
  EXPECT_EQ(Parse("MAIL FROM:<a@example.com> AUTH=<>").path, "a@example.com");
  EXPECT_EQ(Parse("MAIL FROM:<a@example.com> SIZE=99999999999999999999").size,
            UINT64_MAX);  // saturates, so it is over any limit
  EXPECT_FALSE(Parse("MAIL FROM:<a@example.com>").size.has_value());

  EXPECT_EQ(ParseError("MAIL FROM:<a@example.com> SMTPUTF8"), CommandErrorKind::kUnknownParameter);
  EXPECT_EQ(ParseError("MAIL FROM:<a@example.com> BODY=BINARYMIME"),
            CommandErrorKind::kUnknownParameter);
  EXPECT_EQ(ParseError("RCPT TO:<b@example.com> NOTIFY=NEVER"),
            CommandErrorKind::kUnknownParameter);
  EXPECT_EQ(ParseError("RCPT TO:<b@example.com> SIZE=1"), CommandErrorKind::kUnknownParameter);
  EXPECT_EQ(ParseError("MAIL FROM:<a@example.com> SIZE=12x"), CommandErrorKind::kBadParameterValue);
  EXPECT_EQ(ParseError("MAIL FROM:<a@example.com> SIZE="), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("MAIL FROM:<a@example.com> SIZE"), CommandErrorKind::kBadParameterValue);
  EXPECT_EQ(ParseError("MAIL FROM:<a@example.com> SIZE=1 SIZE=2"),
            CommandErrorKind::kBadParameterValue);
  EXPECT_EQ(ParseError("MAIL FROM:<a@example.com> =x"), CommandErrorKind::kSyntax);
}

TEST(ParseCommandTest, Auth) {
  Command plain = Parse("auth plain AGFsaWNlAHNlY3JldA==");
  EXPECT_EQ(plain.verb, Verb::kAuth);
  EXPECT_EQ(plain.argument, "PLAIN");
  ASSERT_TRUE(plain.initial_response.has_value());
  EXPECT_EQ(*plain.initial_response, "AGFsaWNlAHNlY3JldA==");
  Command login = Parse("AUTH LOGIN");
  EXPECT_EQ(login.argument, "LOGIN");
  EXPECT_FALSE(login.initial_response.has_value());
  EXPECT_EQ(*Parse("AUTH PLAIN =").initial_response, "=");
  EXPECT_EQ(ParseError("AUTH"), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("AUTH PL/AIN"), CommandErrorKind::kSyntax);
  EXPECT_EQ(ParseError("AUTH PLAIN a b"), CommandErrorKind::kSyntax);
}

}  // namespace
}  // namespace hikyaku::smtp
