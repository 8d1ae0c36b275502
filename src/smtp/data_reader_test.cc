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

}  // namespace
}  // namespace hikyaku::smtp
