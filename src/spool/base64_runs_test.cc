#include "spool/base64_runs.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace hikyaku::spool {
namespace {

std::string RandomBytes(std::mt19937& rng, size_t n) {
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

// What a MIME encoder writes: `bytes` in base64 lines of `line_length`.
std::string Encoded(std::string_view bytes, uint32_t line_length) {
  std::string out;
  ExpandBase64Run(bytes, line_length, out);
  return out;
}

// Rebuilds the text from the runs found in it (what the codec's decoder does).
std::string Rebuild(std::string_view text, const std::vector<Base64Run>& runs, std::string_view decoded) {
  std::string out;
  size_t at = 0, from = 0;
  for (const Base64Run& run : runs) {
    out.append(text.substr(at, run.offset - at));
    std::string expanded;
    ExpandBase64Run(decoded.substr(from, run.decoded_size), run.line_length, expanded);
    EXPECT_EQ(expanded.size(), run.length);
    EXPECT_EQ(Base64RunLength(run.decoded_size, run.line_length), run.length);
    out += expanded;
    from += run.decoded_size;
    at = run.offset + run.length;
  }
  EXPECT_EQ(from, decoded.size());
  out.append(text.substr(at));
  return out;
}

TEST(Base64RunsTest, ExpandWritesMimeLines) {
  EXPECT_EQ(Encoded("Man", 76), "TWFu\r\n");
  EXPECT_EQ(Encoded("Ma", 76), "TWE=\r\n");
  EXPECT_EQ(Encoded("M", 76), "TQ==\r\n");
  EXPECT_EQ(Encoded("abcdefghi", 4), "YWJj\r\nZGVm\r\nZ2hp\r\n");
  EXPECT_EQ(Encoded("abcdefgh", 8), "YWJjZGVm\r\nZ2g=\r\n");
}

TEST(Base64RunsTest, FindsAnAttachmentBetweenMimeHeaders) {
  std::mt19937 rng(1);
  const std::string bytes = RandomBytes(rng, 4000);
  const std::string head =
      "Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n";
  const std::string tail = "\r\n--boundary--\r\n";
  const std::string text = head + Encoded(bytes, 76) + tail;
  std::string decoded;
  auto runs = FindBase64Runs(text, 512, decoded);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].offset, head.size());
  EXPECT_EQ(runs[0].line_length, 76u);
  EXPECT_EQ(decoded, bytes);
  EXPECT_EQ(Rebuild(text, runs, decoded), text);
}

TEST(Base64RunsTest, LeavesTextAndShortRunsAlone) {
  std::string decoded;
  // Lines that happen to be base64 (length a multiple of 4, alphabet only)
  // are too short to be a run.
  EXPECT_TRUE(FindBase64Runs("Hello\r\nabcd\r\nWXYZ\r\n\r\n", 512, decoded).empty());
  EXPECT_TRUE(decoded.empty());
  // Bare LF line ends, spaces, a longer line after the first: not runs.
  std::mt19937 rng(2);
  std::string lf = Encoded(RandomBytes(rng, 3000), 76);
  for (size_t p = lf.find("\r\n"); p != std::string::npos; p = lf.find("\r\n", p)) lf.erase(p, 1);
  EXPECT_TRUE(FindBase64Runs(lf, 512, decoded).empty());
  EXPECT_TRUE(FindBase64Runs(std::string(2000, ' ') + "\r\n", 512, decoded).empty());
  EXPECT_TRUE(decoded.empty());
}

TEST(Base64RunsTest, NonCanonicalPaddingIsNotARun) {
  // "TR==" decodes to "M" too, but re-encodes as "TQ==": not canonical, so
  // storing it as bytes would change the text. The full lines before it are
  // still a run.
  std::mt19937 rng(3);
  const std::string lines = Encoded(RandomBytes(rng, 57 * 20), 76);
  const std::string text = lines + "TR==\r\n";
  std::string decoded;
  auto runs = FindBase64Runs(text, 512, decoded);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].length, lines.size());
  EXPECT_EQ(Rebuild(text, runs, decoded), text);
}

TEST(Base64RunsTest, UnevenBlockSplitsIntoRunsThatRebuildExactly) {
  // 40 lines of 76, then lines of 64 (a PEM-like block) right after.
  std::mt19937 rng(4);
  const std::string text = Encoded(RandomBytes(rng, 57 * 40), 76) + Encoded(RandomBytes(rng, 1000), 64) + "end\r\n";
  std::string decoded;
  auto runs = FindBase64Runs(text, 512, decoded);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].line_length, 76u);
  EXPECT_EQ(runs[1].line_length, 64u);
  EXPECT_EQ(Rebuild(text, runs, decoded), text);
}

// Whatever the text, the runs found and their bytes rebuild it exactly.
TEST(Base64RunsTest, RandomTextsRebuildExactly) {
  std::mt19937 rng(20261128);
  size_t runs_found = 0;
  const std::string pieces[] = {"\r\n", "\n", "\r", "=", "==", "Subject: x\r\n", "AAAA", "QQ==\r\n", " ", "TR==\r\n"};
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    const int parts = std::uniform_int_distribution<int>(0, 12)(rng);
    for (int i = 0; i < parts; ++i) {
      if (rng() % 3 == 0) {
        const uint32_t line = 4 * std::uniform_int_distribution<uint32_t>(1, 30)(rng);
        std::string block = Encoded(RandomBytes(rng, std::uniform_int_distribution<size_t>(1, 3000)(rng)), line);
        if (rng() % 4 == 0 && !block.empty()) block.resize(rng() % block.size());  // cut anywhere
        if (rng() % 4 == 0 && !block.empty()) block[rng() % block.size()] = "A=\r\n.-"[rng() % 6];
        text += block;
      } else {
        text += pieces[rng() % std::size(pieces)];
      }
    }
    const size_t min_length = std::uniform_int_distribution<size_t>(1, 800)(rng);
    std::string decoded = "prefix";  // appends, never replaces
    auto runs = FindBase64Runs(text, min_length, decoded);
    runs_found += runs.size();
    ASSERT_EQ(decoded.substr(0, 6), "prefix");
    size_t last_end = 0;
    for (const auto& run : runs) {
      EXPECT_GE(run.offset, last_end);
      EXPECT_GE(run.length, min_length);
      last_end = run.offset + run.length;
    }
    ASSERT_EQ(Rebuild(text, runs, std::string_view(decoded).substr(6)), text) << "round " << round;
  }
  EXPECT_GT(runs_found, 1000u);  // the rounds did exercise runs, not only plain text
}

}  // namespace
}  // namespace hikyaku::spool
