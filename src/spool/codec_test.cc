#include "spool/codec.h"

#include "spool/base64_runs.h"

#include <gtest/gtest.h>

#include <limits>
#include <random>

namespace hikyaku::spool {
namespace {

MessageMeta SampleMeta() {
  MessageMeta meta;
  meta.sender = "bounce+42@example.jp";
  meta.received_at = FromUnixMillis(1'700'000'123'456);
  meta.origin = "smtp 127.0.0.1";
  meta.recipient_count = 3;
  meta.content_size = 5120;
  return meta;
}

RecipientRecord SampleRecipient() {
  RecipientRecord r;
  r.message = MessageId(0x018c2f9a3b40001aULL);
  r.index = 70000;
  r.recipient = "taro@docomo.ne.jp";
  r.state = RecipientState::kBounced;
  r.attempts = 7;
  r.next_attempt = FromUnixMillis(1'700'000'999'000);
  return r;
}

std::string MailBody(size_t size) {
  std::string body;
  while (body.size() < size) body += "Subject: sale\r\nDear customer, our prices are low this week.\r\n";
  body.resize(size);
  return body;
}

TEST(VarintTest, RoundTripsBoundaries) {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{127}, uint64_t{128}, uint64_t{16383}, uint64_t{16384},
                     uint64_t{0xffffffff}, std::numeric_limits<uint64_t>::max()}) {
    std::string s;
    PutVarint(s, v);
    RecordReader in(s);
    EXPECT_EQ(in.Varint(), v);
    EXPECT_TRUE(in.AtEnd());
  }
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{1}, std::numeric_limits<int64_t>::min(),
                    std::numeric_limits<int64_t>::max()}) {
    std::string s;
    PutSignedVarint(s, v);
    RecordReader in(s);
    EXPECT_EQ(in.SignedVarint(), v);
  }
}

TEST(VarintTest, RefusesNonCanonicalAndOverlong) {
  EXPECT_FALSE(RecordReader(std::string("\x80\x00", 2)).Varint());  // 0 spelled in two bytes
  EXPECT_FALSE(RecordReader(std::string("\x80", 1)).Varint());      // truncated
  // 11 continuation bytes: longer than any uint64.
  EXPECT_FALSE(RecordReader(std::string(11, '\xff')).Varint());
  // 10th byte carrying more than the one remaining bit overflows.
  std::string overflow(9, '\xff');
  overflow.push_back('\x02');
  EXPECT_FALSE(RecordReader(overflow).Varint());
}

TEST(KeyTest, RecipientKeysSortByMessageThenIndex) {
  EXPECT_LT(RecipientKey(MessageId(1), 300), RecipientKey(MessageId(2), 0));
  EXPECT_LT(RecipientKey(MessageId(1), 255), RecipientKey(MessageId(1), 256));
  auto parts = DecodeRecipientKey(RecipientKey(MessageId(0xabcdef), 0x01020304));
  ASSERT_TRUE(parts);
  EXPECT_EQ(parts->message, MessageId(0xabcdef));
  EXPECT_EQ(parts->index, 0x01020304u);
  EXPECT_EQ(DecodeRecipientKey("short").error().code(), ErrorCode::kCorruption);
  EXPECT_EQ(DecodeMessageKey("1234567").error().code(), ErrorCode::kCorruption);
}

TEST(MetaCodecTest, RoundTrip) {
  MessageMeta meta = SampleMeta();
  auto decoded = DecodeMeta(EncodeMeta(meta));
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(*decoded, meta);

  MessageMeta null_sender;  // empty strings, zero counts
  auto decoded_null = DecodeMeta(EncodeMeta(null_sender));
  ASSERT_TRUE(decoded_null);
  EXPECT_EQ(*decoded_null, null_sender);
}

TEST(MetaCodecTest, IsCompact) {
  // version + 1+20 sender + 6 time + 1+14 origin + 1 count + 2 size
  EXPECT_EQ(EncodeMeta(SampleMeta()).size(), 46u);
}

TEST(MetaCodecTest, EveryTruncationIsCorruption) {
  const std::string full = EncodeMeta(SampleMeta());
  for (size_t n = 0; n < full.size(); ++n) {
    auto r = DecodeMeta(std::string_view(full).substr(0, n));
    ASSERT_FALSE(r) << "accepted a prefix of length " << n;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorruption);
  }
}

TEST(MetaCodecTest, TrailingBytesAndUnknownVersionAreCorruption) {
  std::string v = EncodeMeta(SampleMeta());
  EXPECT_EQ(DecodeMeta(v + "x").error().code(), ErrorCode::kCorruption);
  v[0] = 3;
  auto r = DecodeMeta(v);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kCorruption);
  EXPECT_NE(r.error().message().find("version"), std::string::npos);
}

TEST(MetaCodecTest, TenantAndPriorityRoundTripAsVersion2) {
  MessageMeta meta = SampleMeta();
  meta.tenant = "acme";
  meta.priority = 1;
  const std::string v = EncodeMeta(meta);
  EXPECT_EQ(static_cast<uint8_t>(v[0]), kMetaFlowVersion);
  EXPECT_EQ(v.size(), 46u + 1 + 4 + 1);  // + bytes "acme" + priority
  auto decoded = DecodeMeta(v);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(*decoded, meta);
  // A tenant alone or a priority alone is version 2 too.
  MessageMeta urgent = SampleMeta();
  urgent.priority = 1;
  EXPECT_EQ(static_cast<uint8_t>(EncodeMeta(urgent)[0]), kMetaFlowVersion);
  EXPECT_EQ(*DecodeMeta(EncodeMeta(urgent)), urgent);
  // Mail with neither stays version 1, readable by older releases.
  EXPECT_EQ(static_cast<uint8_t>(EncodeMeta(SampleMeta())[0]), kRecordVersion);
}

TEST(MetaCodecTest, Version2TruncationsAndBadPriorityAreCorruption) {
  MessageMeta meta = SampleMeta();
  meta.tenant = "acme";
  const std::string full = EncodeMeta(meta);
  for (size_t n = 0; n < full.size(); ++n) {
    auto r = DecodeMeta(std::string_view(full).substr(0, n));
    ASSERT_FALSE(r) << "accepted a prefix of length " << n;
    EXPECT_EQ(r.error().code(), ErrorCode::kCorruption);
  }
  EXPECT_EQ(DecodeMeta(full + "x").error().code(), ErrorCode::kCorruption);
  std::string bad = full;
  bad.back() = 2;  // priorities are 0 and 1
  EXPECT_EQ(DecodeMeta(bad).error().code(), ErrorCode::kCorruption);
}

TEST(MetaCodecTest, RecipientCountAboveUint32IsCorruption) {
  std::string v(1, static_cast<char>(kRecordVersion));
  PutLengthPrefixed(v, "");
  PutSignedVarint(v, 0);
  PutLengthPrefixed(v, "");
  PutVarint(v, uint64_t{1} << 32);
  PutVarint(v, 0);
  EXPECT_EQ(DecodeMeta(v).error().code(), ErrorCode::kCorruption);
}

TEST(RecipientCodecTest, RoundTripTakesIdAndIndexFromKey) {
  RecipientRecord r = SampleRecipient();
  const std::string key = RecipientKey(r.message, r.index);
  auto decoded = DecodeRecipient(key, EncodeRecipient(r));
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  EXPECT_EQ(decoded->message, r.message);
  EXPECT_EQ(decoded->index, r.index);
  EXPECT_EQ(decoded->recipient, r.recipient);
  EXPECT_EQ(decoded->state, r.state);
  EXPECT_EQ(decoded->attempts, r.attempts);
  EXPECT_EQ(decoded->next_attempt, r.next_attempt);
}

TEST(RecipientCodecTest, EveryTruncationIsCorruption) {
  RecipientRecord r = SampleRecipient();
  const std::string key = RecipientKey(r.message, r.index);
  const std::string full = EncodeRecipient(r);
  for (size_t n = 0; n < full.size(); ++n) {
    auto d = DecodeRecipient(key, std::string_view(full).substr(0, n));
    ASSERT_FALSE(d) << "accepted a prefix of length " << n;
    EXPECT_EQ(d.error().code(), ErrorCode::kCorruption);
  }
}

TEST(RecipientCodecTest, UnknownVersionOrStateIsCorruption) {
  RecipientRecord r = SampleRecipient();
  const std::string key = RecipientKey(r.message, r.index);
  std::string v = EncodeRecipient(r);
  std::string bad_version = v;
  bad_version[0] = 0;
  EXPECT_EQ(DecodeRecipient(key, bad_version).error().code(), ErrorCode::kCorruption);
  std::string bad_state = v;
  bad_state[1] = 4;
  EXPECT_EQ(DecodeRecipient(key, bad_state).error().code(), ErrorCode::kCorruption);
  EXPECT_EQ(DecodeRecipient(key, v + '\0').error().code(), ErrorCode::kCorruption);
  EXPECT_EQ(DecodeRecipient("bad key", v).error().code(), ErrorCode::kCorruption);
}

TEST(ContentCodecTest, RoundTripRawAndCompressed) {
  for (bool compress : {false, true}) {
    for (size_t size : {size_t{0}, size_t{1}, size_t{63}, size_t{64}, size_t{5000}, size_t{300000}}) {
      const std::string body = MailBody(size);
      auto decoded = DecodeContent(EncodeContent(body, compress));
      ASSERT_TRUE(decoded) << decoded.error().ToString();
      EXPECT_EQ(*decoded, body) << "size " << size << " compress " << compress;
    }
  }
}

TEST(ContentCodecTest, CompressesMailAndKeepsIncompressibleRaw) {
  const std::string body = MailBody(5000);
  const std::string packed = EncodeContent(body, true);
  EXPECT_EQ(static_cast<ContentEncoding>(packed[1]), ContentEncoding::kZstd);
  EXPECT_LT(packed.size(), body.size() / 4);

  std::mt19937 rng(7);
  std::string noise(5000, '\0');
  for (char& c : noise) c = static_cast<char>(rng());
  const std::string stored = EncodeContent(noise, true);
  EXPECT_EQ(static_cast<ContentEncoding>(stored[1]), ContentEncoding::kRaw);
  EXPECT_EQ(stored.size(), noise.size() + 4);  // version, encoding, 2-byte size
  EXPECT_EQ(*DecodeContent(stored), noise);
}

// A newsletter with a PDF attachment, as a MIME mailer writes it.
std::string MailWithAttachment(size_t attachment_bytes, uint32_t seed, int text_lines = 1) {
  std::mt19937 rng(seed);
  std::string bytes(attachment_bytes, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  std::string encoded;
  ExpandBase64Run(bytes, 76, encoded);
  std::string text;
  for (int i = 0; i < text_lines; ++i) text += "Please find the report for region " + std::to_string(i) + " attached.\r\n";
  return "From: news@example.com\r\nTo: reader@example.net\r\nSubject: report\r\n"
         "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
         "--b1\r\nContent-Type: text/plain\r\n\r\n" + text + "\r\n"
         "--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
         encoded + "\r\n--b1--\r\n";
}

TEST(ContentCodecTest, AttachmentsAreStoredAsTheirBytes) {
  for (size_t bytes : {size_t{2000}, size_t{3819}, size_t{100000}}) {
    const std::string mail = MailWithAttachment(bytes, static_cast<uint32_t>(bytes));
    const std::string stored = EncodeContent(mail, true);
    EXPECT_EQ(static_cast<ContentEncoding>(stored[1]), ContentEncoding::kBase64Packed);
    // Random bytes do not compress: the attachment costs its bytes, 3/4 of
    // its base64 text, plus the ~290 bytes of headers (too few to compress).
    EXPECT_LT(stored.size(), bytes + 320) << bytes;
    auto decoded = DecodeContent(stored);
    ASSERT_TRUE(decoded) << decoded.error().ToString();
    EXPECT_EQ(*decoded, mail);
    // Without compression the text is stored as it is.
    EXPECT_EQ(static_cast<ContentEncoding>(EncodeContent(mail, false)[1]), ContentEncoding::kRaw);
  }
}

TEST(ContentCodecTest, LongTextAroundAnAttachmentIsCompressed) {
  const std::string mail = MailWithAttachment(3000, 8, 200);
  const std::string stored = EncodeContent(mail, true);
  EXPECT_EQ(static_cast<ContentEncoding>(stored[1]), ContentEncoding::kBase64Packed);
  EXPECT_LT(stored.size(), 3000u + 2000u);  // ~10 KB of text compressed well below 2 KB
  EXPECT_EQ(*DecodeContent(stored), mail);
}

// Flips a random byte at or after `from`, `count` times (seeded): each
// mutated record is refused or decodes to the declared size, never crashes
// or over-allocates.
void ExpectMutationsRefusedOrSized(const std::string& full, size_t from, size_t size, int count, unsigned seed) {
  std::mt19937 rng(seed);
  for (int i = 0; i < count; ++i) {
    std::string mutated = full;
    mutated[from + rng() % (mutated.size() - from)] ^= static_cast<char>(1 + rng() % 255);
    auto d = DecodeContent(mutated);
    if (d) {
      EXPECT_EQ(d->size(), size);
    }
  }
}

// Every proper prefix of an encoded record is refused as corrupt.
void ExpectEveryTruncationIsCorruption(const std::string& full) {
  for (size_t n = 0; n < full.size(); ++n) {
    auto d = DecodeContent(std::string_view(full).substr(0, n));
    ASSERT_FALSE(d) << "accepted a prefix of length " << n;
    EXPECT_EQ(d.error().code(), ErrorCode::kCorruption);
  }
}

TEST(ContentCodecTest, PackedTruncationsAndMutationsAreCorruption) {
  for (int text_lines : {1, 200}) {  // plain text stored raw, and zstd-compressed
    const std::string mail = MailWithAttachment(3000, 9, text_lines);
    const std::string full = EncodeContent(mail, true);
    ASSERT_EQ(static_cast<ContentEncoding>(full[1]), ContentEncoding::kBase64Packed);
    ExpectEveryTruncationIsCorruption(full);
    EXPECT_EQ(DecodeContent(full + "x").error().code(), ErrorCode::kCorruption);
    ExpectMutationsRefusedOrSized(full, 2, mail.size(), 5000, 5);
  }
}

TEST(ContentCodecTest, EveryTruncationIsCorruption) {
  for (bool compress : {false, true}) {
    SCOPED_TRACE(compress ? "compressed" : "raw");
    ExpectEveryTruncationIsCorruption(EncodeContent(MailBody(2000), compress));
  }
}

TEST(ContentCodecTest, GarbageIsCorruptionNotACrash) {
  std::string v = EncodeContent(MailBody(2000), true);
  EXPECT_EQ(DecodeContent(v + "junk").error().code(), ErrorCode::kCorruption);
  std::string unknown_encoding = v;
  unknown_encoding[1] = 9;
  EXPECT_EQ(DecodeContent(unknown_encoding).error().code(), ErrorCode::kCorruption);
  std::string unknown_version = v;
  unknown_version[0] = 2;
  EXPECT_EQ(DecodeContent(unknown_version).error().code(), ErrorCode::kCorruption);
  // Flip bytes inside the zstd frame: must be refused or decode to the
  // declared size, never crash or over-allocate.
  ExpectMutationsRefusedOrSized(v, 4, 2000, 2000, 1);
}

}  // namespace
}  // namespace hikyaku::spool
