#include "message/encoding.h"

#include <gtest/gtest.h>

#include <random>

namespace hikyaku::message {
namespace {

bool AllLinesWithin(std::string_view s, size_t limit) {
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find("\r\n", start);
    if (nl == std::string_view::npos) nl = s.size();
    if (nl - start > limit) return false;
    start = nl + 2;
  }
  return true;
}

TEST(QuotedPrintableTest, Basics) {
  EXPECT_EQ(QuotedPrintableEncode("plain text"), "plain text");
  EXPECT_EQ(QuotedPrintableEncode("a=b"), "a=3Db");
  EXPECT_EQ(QuotedPrintableEncode("caf\xc3\xa9"), "caf=C3=A9");
  // Trailing whitespace before a line break or at the end is encoded (rule 3).
  EXPECT_EQ(QuotedPrintableEncode("end \nnext\t"), "end=20\r\nnext=09");
  EXPECT_EQ(QuotedPrintableEncode("a\r\nb\rc\nd"), "a\r\nb\r\nc\r\nd");
}

TEST(QuotedPrintableTest, SoftBreaksKeepLinesAt76) {
  std::string line(200, 'x');
  std::string enc = QuotedPrintableEncode(line);
  EXPECT_TRUE(AllLinesWithin(enc, 76)) << enc;
  EXPECT_NE(enc.find("=\r\n"), std::string::npos);
  EXPECT_EQ(QuotedPrintableDecode(enc), line);
  // An escape is never split by a soft break.
  std::string utf8;
  for (int i = 0; i < 60; ++i) utf8 += "\xe3\x81\x82";  // あ
  enc = QuotedPrintableEncode(utf8);
  EXPECT_TRUE(AllLinesWithin(enc, 76));
  EXPECT_EQ(QuotedPrintableDecode(enc), utf8);
}

TEST(QuotedPrintableTest, RandomRoundTrip) {
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::string s;
    int len = rng() % 400;
    for (int i = 0; i < len; ++i) {
      int r = rng() % 20;
      s += r == 0 ? '\n' : r == 1 ? ' ' : r == 2 ? '=' : r == 3 ? '\t' : static_cast<char>(rng() % 256);
    }
    // The encoder turns every line break into CRLF; compare against that form.
    std::string expected;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\r') {
        expected += "\r\n";
        if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
      } else if (s[i] == '\n') {
        expected += "\r\n";
      } else {
        expected += s[i];
      }
    }
    std::string enc = QuotedPrintableEncode(s);
    ASSERT_TRUE(AllLinesWithin(enc, 76));
    for (unsigned char c : enc) ASSERT_TRUE(c == '\r' || c == '\n' || c == '\t' || (c >= 32 && c < 127));
    ASSERT_EQ(QuotedPrintableDecode(enc), expected) << "round " << round;
  }
}

TEST(QuotedPrintableTest, DecodeRejectsBadEscapes) {
  EXPECT_FALSE(QuotedPrintableDecode("a=G1"));
  EXPECT_FALSE(QuotedPrintableDecode("a=4"));
  EXPECT_EQ(QuotedPrintableDecode("a=3d"), "a=");
  EXPECT_EQ(QuotedPrintableDecode("soft=  \r\nbreak"), "softbreak");
}

TEST(Utf8Test, Validation) {
  EXPECT_TRUE(IsValidUtf8("ascii"));
  EXPECT_TRUE(IsValidUtf8("日本語 émoji 😀"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xff"));
}

TEST(EncodeWordsTest, WordsAreShortAndDoNotSplitCharacters) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "日本語";
  std::string enc = EncodeWords(text, 9);
  size_t start = 0;
  std::string decoded_lengths;
  while (start < enc.size()) {
    size_t end = enc.find("\r\n ", start);
    if (end == std::string::npos) end = enc.size();
    std::string_view word(enc.data() + start, end - start);
    EXPECT_LE(word.size(), 75u);
    EXPECT_TRUE(word.starts_with("=?UTF-8?B?") && word.ends_with("?="));
    // Each word carries whole characters: 3 octets each -> base64 length multiple of 4 of 3k octets.
    size_t b64 = word.size() - 12;
    EXPECT_EQ(b64 % 4, 0u);
    EXPECT_EQ((b64 / 4 * 3) % 3, 0u);
    start = end == enc.size() ? end : end + 3;
  }
  // First line "Subject: " + first word stays within 78.
  EXPECT_LE(9 + enc.find("\r\n"), 78u);
}

TEST(EncodeWordsTest, KnownValue) {
  EXPECT_EQ(EncodeWords("café", 9), "=?UTF-8?B?Y2Fmw6k=?=");
  EXPECT_EQ(EncodeWords("", 9), "");
}

}  // namespace
}  // namespace hikyaku::message
