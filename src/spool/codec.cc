#include "spool/codec.h"

#include <zstd.h>

#include <limits>
#include <memory>
#include <utility>

namespace hikyaku::spool {

namespace {

constexpr size_t kMaxVarintBytes = 10;  // ceil(64 / 7)
// zstd level 1: on ~5 KB mail bodies it reaches nearly the ratio of level 3
// at about twice the speed, and compression runs on the injecting thread.
constexpr int kZstdLevel = 1;
// Far above any configurable message size; stops a corrupt header from
// asking for an absurd allocation.
constexpr uint64_t kMaxContentSize = uint64_t{1} << 30;

tl::unexpected<Error> Corrupt(std::string_view what, std::string_view why) {
  std::string message = "spool record: ";
  message += what;
  message += ": ";
  message += why;
  return Fail(ErrorCode::kCorruption, std::move(message));
}

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

void PutBigEndian32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

// Thread-local contexts: creating a zstd context costs more than compressing
// one mail body, and Append runs on many injector threads at once.
ZSTD_CCtx* CompressionContext() {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> ctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  return ctx.get();
}
ZSTD_DCtx* DecompressionContext() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  return ctx.get();
}

}  // namespace

// --- Primitives ------------------------------------------------------------

void PutVarint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void PutSignedVarint(std::string& out, int64_t value) { PutVarint(out, ZigZag(value)); }

void PutLengthPrefixed(std::string& out, std::string_view bytes) {
  PutVarint(out, bytes.size());
  out.append(bytes);
}

std::optional<uint8_t> RecordReader::Byte() {
  if (in_.empty()) return std::nullopt;
  uint8_t b = static_cast<uint8_t>(in_.front());
  in_.remove_prefix(1);
  return b;
}

std::optional<uint64_t> RecordReader::Varint() {
  uint64_t value = 0;
  for (size_t i = 0; i < kMaxVarintBytes; ++i) {
    if (in_.empty()) return std::nullopt;
    const uint8_t b = static_cast<uint8_t>(in_.front());
    in_.remove_prefix(1);
    // The 10th byte may only carry the single remaining bit of a uint64.
    if (i == kMaxVarintBytes - 1 && b > 1) return std::nullopt;
    value |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      // One spelling per value: a trailing zero group ("0x80 0x00") is refused.
      if (i > 0 && b == 0) return std::nullopt;
      return value;
    }
  }
  return std::nullopt;
}

std::optional<int64_t> RecordReader::SignedVarint() {
  auto v = Varint();
  if (!v) return std::nullopt;
  return UnZigZag(*v);
}

std::optional<std::string_view> RecordReader::Bytes(size_t n) {
  if (in_.size() < n) return std::nullopt;
  std::string_view out = in_.substr(0, n);
  in_.remove_prefix(n);
  return out;
}

std::optional<std::string_view> RecordReader::LengthPrefixed() {
  auto n = Varint();
  if (!n || *n > in_.size()) return std::nullopt;
  return Bytes(static_cast<size_t>(*n));
}

// --- Keys -------------------------------------------------------------------

std::string MessageKey(MessageId id) { return id.ToKeyBytes(); }

Result<MessageId> DecodeMessageKey(std::string_view key) {
  auto id = MessageId::FromKeyBytes(key);
  if (!id) return Corrupt("message key", "not 8 bytes");
  return *id;
}

std::string RecipientKey(MessageId id, uint32_t index) {
  std::string key = id.ToKeyBytes();
  PutBigEndian32(key, index);
  return key;
}

Result<RecipientKeyParts> DecodeRecipientKey(std::string_view key) {
  if (key.size() != 12) return Corrupt("recipient key", "not 12 bytes");
  RecipientKeyParts parts;
  parts.message = *MessageId::FromKeyBytes(key.substr(0, 8));
  for (unsigned char c : key.substr(8)) parts.index = (parts.index << 8) | c;
  return parts;
}

// --- Values -----------------------------------------------------------------

std::string EncodeMeta(const MessageMeta& meta) {
  std::string out;
  out.reserve(1 + 10 + meta.sender.size() + 10 + 10 + meta.origin.size() + 5 + 10);
  out.push_back(static_cast<char>(kRecordVersion));
  PutLengthPrefixed(out, meta.sender);
  PutSignedVarint(out, ToUnixMillis(meta.received_at));
  PutLengthPrefixed(out, meta.origin);
  PutVarint(out, meta.recipient_count);
  PutVarint(out, meta.content_size);
  return out;
}

Result<MessageMeta> DecodeMeta(std::string_view value) {
  RecordReader in(value);
  auto version = in.Byte();
  if (!version) return Corrupt("meta", "empty");
  if (*version != kRecordVersion) return Corrupt("meta", "unknown version " + std::to_string(*version));
  auto sender = in.LengthPrefixed();
  auto received = sender ? in.SignedVarint() : std::nullopt;
  auto origin = received ? in.LengthPrefixed() : std::nullopt;
  auto count = origin ? in.Varint() : std::nullopt;
  auto size = count ? in.Varint() : std::nullopt;
  if (!size) return Corrupt("meta", "truncated");
  if (!in.AtEnd()) return Corrupt("meta", "trailing bytes");
  if (*count > std::numeric_limits<uint32_t>::max()) return Corrupt("meta", "recipient count out of range");
  MessageMeta meta;
  meta.sender = std::string(*sender);
  meta.received_at = FromUnixMillis(*received);
  meta.origin = std::string(*origin);
  meta.recipient_count = static_cast<uint32_t>(*count);
  meta.content_size = *size;
  return meta;
}

std::string EncodeRecipient(const RecipientRecord& record) {
  std::string out;
  out.reserve(1 + 1 + 5 + 10 + 10 + record.recipient.size());
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(record.state));
  PutVarint(out, record.attempts);
  PutSignedVarint(out, ToUnixMillis(record.next_attempt));
  PutLengthPrefixed(out, record.recipient);
  return out;
}

Result<RecipientRecord> DecodeRecipient(std::string_view key, std::string_view value) {
  auto parts = DecodeRecipientKey(key);
  if (!parts) return tl::unexpected(parts.error());
  RecordReader in(value);
  auto version = in.Byte();
  if (!version) return Corrupt("recipient", "empty");
  if (*version != kRecordVersion) return Corrupt("recipient", "unknown version " + std::to_string(*version));
  auto state = in.Byte();
  auto attempts = state ? in.Varint() : std::nullopt;
  auto next = attempts ? in.SignedVarint() : std::nullopt;
  auto recipient = next ? in.LengthPrefixed() : std::nullopt;
  if (!recipient) return Corrupt("recipient", "truncated");
  if (!in.AtEnd()) return Corrupt("recipient", "trailing bytes");
  if (*state > static_cast<uint8_t>(RecipientState::kExpired)) return Corrupt("recipient", "unknown state");
  if (*attempts > std::numeric_limits<uint32_t>::max()) return Corrupt("recipient", "attempts out of range");
  RecipientRecord record;
  record.message = parts->message;
  record.index = parts->index;
  record.recipient = std::string(*recipient);
  record.state = static_cast<RecipientState>(*state);
  record.attempts = static_cast<uint32_t>(*attempts);
  record.next_attempt = FromUnixMillis(*next);
  return record;
}

std::string EncodeContent(std::string_view content, bool compress) {
  std::string out;
  if (compress && content.size() >= 64) {
    const size_t bound = ZSTD_compressBound(content.size());
    out.resize(1 + 1 + kMaxVarintBytes + bound);
    out[0] = static_cast<char>(kRecordVersion);
    out[1] = static_cast<char>(ContentEncoding::kZstd);
    std::string header;
    PutVarint(header, content.size());
    std::copy(header.begin(), header.end(), out.begin() + 2);
    const size_t offset = 2 + header.size();
    const size_t n = ZSTD_compressCCtx(CompressionContext(), out.data() + offset, bound, content.data(),
                                       content.size(), kZstdLevel);
    // Keep the compressed form only when it pays for the decompression on
    // every delivery attempt.
    if (!ZSTD_isError(n) && n <= content.size() - content.size() / 8) {
      out.resize(offset + n);
      return out;
    }
    out.clear();
  }
  out.reserve(1 + 1 + kMaxVarintBytes + content.size());
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(ContentEncoding::kRaw));
  PutVarint(out, content.size());
  out.append(content);
  return out;
}

Result<std::string> DecodeContent(std::string_view value) {
  RecordReader in(value);
  auto version = in.Byte();
  if (!version) return Corrupt("content", "empty");
  if (*version != kRecordVersion) return Corrupt("content", "unknown version " + std::to_string(*version));
  auto encoding = in.Byte();
  auto size = encoding ? in.Varint() : std::nullopt;
  if (!size) return Corrupt("content", "truncated");
  std::string_view payload = in.Rest();
  switch (static_cast<ContentEncoding>(*encoding)) {
    case ContentEncoding::kRaw:
      if (payload.size() != *size) return Corrupt("content", "length mismatch");
      return std::string(payload);
    case ContentEncoding::kZstd: {
      // The declared size bounds the allocation; a frame that claims more
      // than it has is refused before allocating.
      const unsigned long long frame = ZSTD_getFrameContentSize(payload.data(), payload.size());
      if (frame == ZSTD_CONTENTSIZE_ERROR || frame == ZSTD_CONTENTSIZE_UNKNOWN || frame != *size)
        return Corrupt("content", "bad zstd frame header");
      if (*size > kMaxContentSize) return Corrupt("content", "declared size too large");
      std::string out(static_cast<size_t>(*size), '\0');
      const size_t n = ZSTD_decompressDCtx(DecompressionContext(), out.data(), out.size(), payload.data(),
                                           payload.size());
      if (ZSTD_isError(n) || n != out.size()) return Corrupt("content", "bad zstd frame");
      return out;
    }
  }
  return Corrupt("content", "unknown encoding " + std::to_string(*encoding));
}

}  // namespace hikyaku::spool
