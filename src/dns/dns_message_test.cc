#include "dns/dns_message.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace hikyaku::dns {
namespace {

// A response builder for hand-made messages: header, one question for
// "example.test" at offset 12, answers whose owner is a pointer to it.
class Message {
 public:
  explicit Message(uint16_t answers) {
    bytes_ = {0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, static_cast<uint8_t>(answers), 0, 0, 0, 0};
    Name("example.test");
    U16(15);
    U16(1);
  }
  Message& Answer(uint16_t type, uint32_t ttl, std::vector<uint8_t> rdata) {
    U16(0xC00C);
    U16(type);
    U16(1);
    U16(static_cast<uint16_t>(ttl >> 16));
    U16(static_cast<uint16_t>(ttl));
    U16(static_cast<uint16_t>(rdata.size()));
    bytes_.insert(bytes_.end(), rdata.begin(), rdata.end());
    return *this;
  }
  // Owner written out in full rather than compressed.
  Message& AnswerNamed(const char* owner, uint16_t type, uint32_t ttl, std::vector<uint8_t> rdata) {
    Name(owner);
    U16(type);
    U16(1);
    U16(static_cast<uint16_t>(ttl >> 16));
    U16(static_cast<uint16_t>(ttl));
    U16(static_cast<uint16_t>(rdata.size()));
    bytes_.insert(bytes_.end(), rdata.begin(), rdata.end());
    return *this;
  }
  std::vector<uint8_t> bytes() const { return bytes_; }

 private:
  void U16(uint16_t v) {
    bytes_.push_back(static_cast<uint8_t>(v >> 8));
    bytes_.push_back(static_cast<uint8_t>(v));
  }
  void Name(std::string_view name) {
    size_t start = 0;
    while (start < name.size()) {
      size_t dot = name.find('.', start);
      if (dot == std::string_view::npos) dot = name.size();
      bytes_.push_back(static_cast<uint8_t>(dot - start));
      bytes_.insert(bytes_.end(), name.begin() + start, name.begin() + dot);
      start = dot + 1;
    }
    bytes_.push_back(0);
  }
  std::vector<uint8_t> bytes_;
};

// MX rdata: preference 10, target "mx.example.test" compressed as "mx" + pointer.
const std::vector<uint8_t> kMxRdata = {0, 10, 2, 'm', 'x', 0xC0, 0x0C};

TEST(MinAnswerTtl, SmallestMxTtlWins) {
  auto m = Message(3)
               .Answer(15, 3600, kMxRdata)
               .Answer(15, 300, kMxRdata)
               .Answer(15, 7200, kMxRdata)
               .bytes();
  EXPECT_EQ(MinAnswerTtl(m, 15), 300u);
}

TEST(MinAnswerTtl, OtherTypesIgnoredButCnameCounts) {
  auto m = Message(3)
               .Answer(16, 5, {3, 'a', 'b', 'c'})  // TXT: not part of the MX answer
               .Answer(5, 120, {0xC0, 0x0C})       // CNAME in the chain
               .Answer(15, 900, kMxRdata)
               .bytes();
  EXPECT_EQ(MinAnswerTtl(m, 15), 120u);
}

TEST(MinAnswerTtl, UncompressedOwnerNames) {
  auto m = Message(2)
               .AnswerNamed("example.test", 15, 42, kMxRdata)
               .AnswerNamed("example.test", 15, 43, kMxRdata)
               .bytes();
  EXPECT_EQ(MinAnswerTtl(m, 15), 42u);
}

TEST(MinAnswerTtl, NoMatchingRecordIsNullopt) {
  EXPECT_EQ(MinAnswerTtl(Message(0).bytes(), 15), std::nullopt);
  EXPECT_EQ(MinAnswerTtl(Message(1).Answer(1, 60, {1, 2, 3, 4}).bytes(), 15), std::nullopt);
}

TEST(MinAnswerTtl, TopBitTtlCountsAsZero) {  // RFC 2181 8
  auto m = Message(2).Answer(15, 0x80000001u, kMxRdata).Answer(15, 60, kMxRdata).bytes();
  EXPECT_EQ(MinAnswerTtl(m, 15), 0u);
}

TEST(MinAnswerTtl, MalformedMessagesAreNullopt) {
  auto full = Message(2).Answer(15, 60, kMxRdata).Answer(15, 30, kMxRdata).bytes();
  // Every truncation that cuts into the answers must be refused, never read past the end.
  for (size_t size = 0; size < full.size(); ++size) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(size));
    auto ttl = MinAnswerTtl(cut, 15);
    EXPECT_FALSE(ttl.has_value()) << "size " << size;
  }
  // A label length with the reserved 0x40 bits set.
  auto bad = full;
  bad[12] = 0x41;
  EXPECT_EQ(MinAnswerTtl(bad, 15), std::nullopt);
  // More answers announced than present.
  auto lying = full;
  lying[7] = 3;
  EXPECT_EQ(MinAnswerTtl(lying, 15), std::nullopt);
}

}  // namespace
}  // namespace hikyaku::dns
