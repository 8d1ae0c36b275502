#include "smtp/data_reader.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace hikyaku::smtp {
namespace {

struct Outcome {
  std::string content;
  DataReader::Verdict verdict;
  size_t consumed;  // bytes used, including the end marker
  bool done;
  bool eight_bit;
};

// Feeds `input` in pieces of the given sizes (cycled) until done.
Outcome Read(std::string_view input, const std::vector<size_t>& pieces, uint64_t max_size = 0) {
  DataReader reader(max_size);
  size_t pos = 0, piece = 0;
  while (pos < input.size() && !reader.done()) {
    size_t n = std::min(pieces[piece++ % pieces.size()], input.size() - pos);
    auto progress = reader.Consume(input.substr(pos, n));
    EXPECT_LE(progress.consumed, n);
    EXPECT_EQ(progress.done, reader.done());
    if (!progress.done) {
      EXPECT_EQ(progress.consumed, n);
    }
    pos += progress.consumed;
  }
  return {reader.TakeContent(), reader.verdict(), pos, reader.done(), reader.eight_bit()};
}

Outcome ReadWhole(std::string_view input, uint64_t max_size = 0) {
  return Read(input, {input.size() + 1}, max_size);
}

TEST(DataReaderTest, PlainMessage) {
  auto out = ReadWhole("Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
  EXPECT_TRUE(out.done);
  EXPECT_EQ(out.content, "Subject: hi\r\n\r\nbody\r\n");
  EXPECT_EQ(out.consumed, std::string("Subject: hi\r\n\r\nbody\r\n.\r\n").size());
  EXPECT_EQ(out.verdict, DataReader::Verdict::kOk);
  EXPECT_FALSE(out.eight_bit);
}

TEST(DataReaderTest, EndMarkerAsFirstLineGivesEmptyMessage) {
  auto out = ReadWhole(".\r\nRSET\r\n");
  EXPECT_TRUE(out.done);
  EXPECT_EQ(out.content, "");
  EXPECT_EQ(out.consumed, 3u);
}

TEST(DataReaderTest, DotUnstuffing) {
  auto out = ReadWhole("..\r\n...leading\r\n.x\r\nmid.dle\r\n. \r\n.\r\n");
  EXPECT_EQ(out.content, ".\r\n..leading\r\nx\r\nmid.dle\r\n \r\n");
}

TEST(DataReaderTest, NotEndOfDataWithoutFullMarker) {
  auto out = ReadWhole("a\r\n.\r");
  EXPECT_FALSE(out.done);
  out = ReadWhole("a\r\n.");
  EXPECT_FALSE(out.done);
  out = ReadWhole("a\r\n");
  EXPECT_FALSE(out.done);
}

TEST(DataReaderTest, EndMarkerSplitAtEveryBoundary) {
  const std::string input = "line 1\r\n..stuffed\r\n\r\nlast\r\n.\r\nNOOP\r\n";
  const auto whole = ReadWhole(input);
  ASSERT_TRUE(whole.done);
  EXPECT_EQ(whole.content, "line 1\r\n.stuffed\r\n\r\nlast\r\n");
  auto bytewise = Read(input, {1});
  EXPECT_EQ(bytewise.content, whole.content);
  EXPECT_EQ(bytewise.consumed, whole.consumed);
  for (size_t cut = 1; cut < input.size(); ++cut) {
    auto split = Read(input, {cut, input.size()});
    EXPECT_EQ(split.content, whole.content) << cut;
    EXPECT_EQ(split.consumed, whole.consumed) << cut;
  }
  std::mt19937 rng(7);
  for (int round = 0; round < 100; ++round) {
    std::vector<size_t> pieces;
    for (int i = 0; i < 8; ++i) pieces.push_back(1 + rng() % 9);
    auto random = Read(input, pieces);
    EXPECT_EQ(random.content, whole.content);
    EXPECT_EQ(random.consumed, whole.consumed);
  }
}

TEST(DataReaderTest, BareLfIsNormalisedButDoesNotEndData) {
  // A script writing "\n" line ends: lines become CRLF, ".." is unstuffed,
  // and "\n.\n" is not the end marker.
  auto out = ReadWhole("a\nb\n..c\n.\n.\r\nd\r\n.\r\n");
  EXPECT_TRUE(out.done);
  EXPECT_EQ(out.content, "a\r\nb\r\n.c\r\n.\r\n.\r\nd\r\n");
}

TEST(DataReaderTest, SmugglingSequencesAreContent) {
  // CVE-2023-51764 style: "\n.\r\n" and "\r\n.\n" must not end the data.
  auto out = ReadWhole("x\n.\r\nMAIL FROM:<evil@example.com>\r\n\r\n.\nRCPT\r\n.\r\n");
  EXPECT_TRUE(out.done);
  EXPECT_EQ(out.content, "x\r\n.\r\nMAIL FROM:<evil@example.com>\r\n\r\n.\r\nRCPT\r\n");
}

TEST(DataReaderTest, BareCrIsNormalised) {
  auto out = ReadWhole("a\rb\r\n.\r.\r\n\r\r\n.\r\n");
  EXPECT_TRUE(out.done);
  // "a" CR "b" -> two lines; "." CR -> a "." line, then "." CRLF after a
  // bare CR is content; CR CRLF -> two empty lines.
  EXPECT_EQ(out.content, "a\r\nb\r\n.\r\n.\r\n\r\n\r\n");
  EXPECT_EQ(Read("a\rb\r\n.\r.\r\n\r\r\n.\r\n", {1}).content, out.content);
}

TEST(DataReaderTest, SizeLimitStopsStoringButReadsToTheEnd) {
  std::string body;
  for (int i = 0; i < 100; ++i) body += "0123456789012345678\r\n";  // 21 octets a line
  auto out = ReadWhole(body + ".\r\nQUIT\r\n", 1000);
  EXPECT_TRUE(out.done);
  EXPECT_EQ(out.verdict, DataReader::Verdict::kTooBig);
  EXPECT_EQ(out.content, "");
  EXPECT_EQ(out.consumed, body.size() + 3);

  // Exactly at the limit is fine.
  auto exact = ReadWhole(body + ".\r\n", body.size());
  EXPECT_EQ(exact.verdict, DataReader::Verdict::kOk);
  EXPECT_EQ(exact.content, body);
  auto over = ReadWhole(body + ".\r\n", body.size() - 1);
  EXPECT_EQ(over.verdict, DataReader::Verdict::kTooBig);
}

TEST(DataReaderTest, SizeCountsUnstuffedOctets) {
  DataReader reader(0);
  reader.Consume("..ab\r\n.\r\n");
  EXPECT_EQ(reader.size(), 5u);  // ".ab" CRLF
}

TEST(DataReaderTest, LineLengthLimit) {
  std::string ok(998, 'a');
  auto out = ReadWhole(ok + "\r\n.\r\n");
  EXPECT_EQ(out.verdict, DataReader::Verdict::kOk);
  EXPECT_EQ(out.content, ok + "\r\n");
  // A stuffed dot does not count towards the line length.
  EXPECT_EQ(ReadWhole("." + ok + "\r\n.\r\n").verdict, DataReader::Verdict::kOk);
  std::string long_line(999, 'b');
  auto bad = ReadWhole("short\r\n" + long_line + "\r\n.\r\nNOOP\r\n");
  EXPECT_TRUE(bad.done);
  EXPECT_EQ(bad.verdict, DataReader::Verdict::kLineTooLong);
  EXPECT_EQ(Read("short\r\n" + long_line + "\r\n.\r\n", {1}).verdict,
            DataReader::Verdict::kLineTooLong);
  // Too big wins.
  EXPECT_EQ(ReadWhole(long_line + "\r\n.\r\n", 100).verdict, DataReader::Verdict::kTooBig);
}

TEST(DataReaderTest, EightBitDetected) {
  EXPECT_TRUE(ReadWhole("caf\xc3\xa9\r\n.\r\n").eight_bit);
  EXPECT_TRUE(Read("caf\xc3\xa9\r\n.\r\n", {1}).eight_bit);
}

TEST(DataReaderTest, ResetStartsANewMessage) {
  DataReader reader(0);
  auto p = reader.Consume("one\r\n.\r\ntwo\r\n.\r\n");
  EXPECT_TRUE(p.done);
  EXPECT_EQ(p.consumed, 8u);
  EXPECT_EQ(reader.Consume("more").consumed, 0u);
  EXPECT_EQ(reader.TakeContent(), "one\r\n");
  reader.Reset(0);
  p = reader.Consume("two\r\n.\r\n");
  EXPECT_TRUE(p.done);
  EXPECT_EQ(reader.TakeContent(), "two\r\n");
}


// The rules of data_reader.h, written as plainly as possible: split the
// input into lines (CRLF, bare LF and bare CR all end a line), stop at a
// "." line ended by CRLF whose previous line (if any) also ended by CRLF,
// unstuff, join with CRLF. Requires the end marker to be present.
struct Reference {
  std::string content;
  size_t consumed = 0;
  bool line_too_long = false;
  bool eight_bit = false;
};

Reference ReferenceRead(std::string_view input) {
  Reference ref;
  size_t pos = 0;
  bool after_crlf = true;  // the start of the data counts as after CRLF
  while (pos < input.size()) {
    size_t end = pos;
    while (end < input.size() && input[end] != '\r' && input[end] != '\n') ++end;
    if (end == input.size()) break;  // no line end: the marker is missing
    std::string_view text = input.substr(pos, end - pos);
    const bool crlf = input[end] == '\r' && end + 1 < input.size() && input[end + 1] == '\n';
    const size_t next = end + (crlf ? 2 : 1);
    if (text == "." && crlf && after_crlf) {
      ref.consumed = next;
      return ref;
    }
    if (text.size() > 1 && text[0] == '.') text.remove_prefix(1);
    if (text.size() > DataReader::kMaxLineLength) ref.line_too_long = true;
    for (char c : text) ref.eight_bit |= static_cast<unsigned char>(c) >= 0x80;
    ref.content.append(text).append("\r\n");
    after_crlf = crlf;
    pos = next;
  }
  ADD_FAILURE() << "reference input has no end marker";
  return ref;
}

// The reader copies plain lines in bulk and steps through everything else
// byte by byte; both paths, and every switch between them at any read
// boundary, must give what the rules say.
TEST(DataReaderTest, AgreesWithTheRulesOnRandomInput) {
  std::mt19937 rng(20261128);
  const std::string alphabet[] = {"a", "b", ".", "\r", "\n", "\r\n", "\r\n.", "\xc3\xa9", "..", "\r\n.\r"};
  for (int round = 0; round < 3000; ++round) {
    std::string body;
    const int parts = std::uniform_int_distribution<int>(0, 40)(rng);
    for (int i = 0; i < parts; ++i) {
      const auto& piece = alphabet[std::uniform_int_distribution<size_t>(0, std::size(alphabet) - 1)(rng)];
      if (piece == "a" && rng() % 8 == 0) {
        body.append(std::uniform_int_distribution<size_t>(1, 1100)(rng), 'a');  // long lines, some too long
      } else {
        body += piece;
      }
    }
    const std::string input = body + "\r\n.\r\ntrailing";
    const Reference ref = ReferenceRead(input);
    std::vector<size_t> pieces;
    for (int i = 0; i < 4; ++i) pieces.push_back(std::uniform_int_distribution<size_t>(1, 64)(rng));
    for (const auto& split : {std::vector<size_t>{input.size()}, std::vector<size_t>{1}, pieces}) {
      const Outcome out = Read(input, split);
      ASSERT_TRUE(out.done) << "round " << round;
      EXPECT_EQ(out.consumed, ref.consumed) << "round " << round;
      EXPECT_EQ(out.content, ref.content) << "round " << round;
      EXPECT_EQ(out.verdict == DataReader::Verdict::kLineTooLong, ref.line_too_long) << "round " << round;
      EXPECT_EQ(out.eight_bit, ref.eight_bit) << "round " << round;
    }
  }
}

}  // namespace
}  // namespace hikyaku::smtp
