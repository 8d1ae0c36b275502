#include "spool/codec.h"

#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "spool/base64_runs.h"

namespace hikyaku::spool {

namespace {

constexpr size_t kMaxVarintBytes = 10;  // ceil(64 / 7)
// zstd level 1: on ~5 KB mail bodies it reaches nearly the ratio of level 3
// at about twice the speed, and compression runs on the injecting thread.
constexpr int kZstdLevel = 1;
// Base64 packing pays off for real attachments, not for a few base64-looking
// lines in a letter: below these sizes the text is compressed as a whole.
constexpr size_t kMinPackedContent = 2048;
constexpr size_t kMinBase64Run = 1024;
// The text around the runs (headers, MIME boundaries, a short text part) is
// compressed only from this size on: zstd costs ~4 µs per call even for a
// few hundred bytes, more than the couple of hundred bytes it would save.
constexpr size_t kMinCompressedPlain = 1024;
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

template <typename T>
void EncodeFixed(char* p, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<char>(value >> (8 * i));
}
template <typename T>
T DecodeFixed(const char* p) {
  T value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) value |= static_cast<T>(static_cast<unsigned char>(p[i])) << (8 * i);
  return value;
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

void EncodeFixed32(char* p, uint32_t value) { EncodeFixed(p, value); }
void EncodeFixed64(char* p, uint64_t value) { EncodeFixed(p, value); }
uint32_t DecodeFixed32(const char* p) { return DecodeFixed<uint32_t>(p); }
uint64_t DecodeFixed64(const char* p) { return DecodeFixed<uint64_t>(p); }

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
  const bool flow = !meta.tenant.empty() || meta.priority != 0;
  std::string out;
  out.reserve(1 + 10 + meta.sender.size() + 10 + 10 + meta.origin.size() + 5 + 10 + (flow ? 6 + meta.tenant.size() : 0));
  out.push_back(static_cast<char>(flow ? kMetaFlowVersion : kRecordVersion));
  PutLengthPrefixed(out, meta.sender);
  PutSignedVarint(out, ToUnixMillis(meta.received_at));
  PutLengthPrefixed(out, meta.origin);
  PutVarint(out, meta.recipient_count);
  PutVarint(out, meta.content_size);
  if (flow) {
    PutLengthPrefixed(out, meta.tenant);
    out.push_back(static_cast<char>(meta.priority));
  }
  return out;
}

Result<MessageMeta> DecodeMeta(std::string_view value) {
  RecordReader in(value);
  auto version = in.Byte();
  if (!version) return Corrupt("meta", "empty");
  if (*version != kRecordVersion && *version != kMetaFlowVersion)
    return Corrupt("meta", "unknown version " + std::to_string(*version));
  auto sender = in.LengthPrefixed();
  auto received = sender ? in.SignedVarint() : std::nullopt;
  auto origin = received ? in.LengthPrefixed() : std::nullopt;
  auto count = origin ? in.Varint() : std::nullopt;
  auto size = count ? in.Varint() : std::nullopt;
  if (!size) return Corrupt("meta", "truncated");
  std::optional<std::string_view> tenant;
  std::optional<uint8_t> priority;
  if (*version == kMetaFlowVersion) {
    tenant = in.LengthPrefixed();
    priority = tenant ? in.Byte() : std::nullopt;
    if (!priority) return Corrupt("meta", "truncated");
    if (*priority > 1) return Corrupt("meta", "priority out of range");
  }
  if (!in.AtEnd()) return Corrupt("meta", "trailing bytes");
  if (*count > std::numeric_limits<uint32_t>::max()) return Corrupt("meta", "recipient count out of range");
  MessageMeta meta;
  meta.sender = std::string(*sender);
  meta.received_at = FromUnixMillis(*received);
  meta.origin = std::string(*origin);
  meta.recipient_count = static_cast<uint32_t>(*count);
  meta.content_size = *size;
  if (tenant) meta.tenant = std::string(*tenant);
  if (priority) meta.priority = *priority;
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

namespace {

// zstd-compresses `text` into `out` after the header already there; false
// (and `out` unchanged) when that would not save 1/8 of the size.
bool AppendCompressed(std::string_view text, std::string& out) {
  if (text.size() < 64) return false;
  const size_t offset = out.size();
  const size_t bound = ZSTD_compressBound(text.size());
  out.resize(offset + bound);
  const size_t n = ZSTD_compressCCtx(CompressionContext(), out.data() + offset, bound, text.data(), text.size(),
                                     kZstdLevel);
  // Keep the compressed form only when it pays for the decompression on
  // every delivery attempt.
  if (ZSTD_isError(n) || n > text.size() - text.size() / 8) {
    out.resize(offset);
    return false;
  }
  out.resize(offset + n);
  return true;
}

Result<std::string> Decompress(std::string_view frame, uint64_t size) {
  // The declared size bounds the allocation; a frame that claims more
  // than it has is refused before allocating.
  const unsigned long long declared = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR || declared == ZSTD_CONTENTSIZE_UNKNOWN || declared != size)
    return Corrupt("content", "bad zstd frame header");
  if (size > kMaxContentSize) return Corrupt("content", "declared size too large");
  std::string out(static_cast<size_t>(size), '\0');
  const size_t n = ZSTD_decompressDCtx(DecompressionContext(), out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n) || n != out.size()) return Corrupt("content", "bad zstd frame");
  return out;
}

// kBase64Packed: after version, encoding and size,
//   varint run count, per run: varint gap (plain characters since the end of
//   the previous run), varint line length, varint decoded size;
//   byte plain encoding (0 raw, 1 zstd), varint stored plain size, the plain
//   text (everything outside the runs, in order), stored that way;
//   the rest: the decoded bytes of the runs, one after the other.
std::optional<std::string> EncodePacked(std::string_view content) {
  std::string decoded;
  const std::vector<Base64Run> runs = FindBase64Runs(content, kMinBase64Run, decoded);
  if (runs.empty()) return std::nullopt;
  std::string plain;
  plain.reserve(content.size() - decoded.size() * 4 / 3);
  std::string out;
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(ContentEncoding::kBase64Packed));
  PutVarint(out, content.size());
  PutVarint(out, runs.size());
  size_t at = 0;
  for (const Base64Run& run : runs) {
    plain.append(content.substr(at, run.offset - at));
    PutVarint(out, run.offset - at);
    PutVarint(out, run.line_length);
    PutVarint(out, run.decoded_size);
    at = run.offset + run.length;
  }
  plain.append(content.substr(at));
  std::string stored;
  const bool compressed = plain.size() >= kMinCompressedPlain && AppendCompressed(plain, stored);
  out.push_back(compressed ? 1 : 0);
  PutVarint(out, compressed ? stored.size() : plain.size());
  out.append(compressed ? std::string_view(stored) : std::string_view(plain));
  out.append(decoded);
  return out;
}

Result<std::string> DecodePacked(RecordReader& in, uint64_t size) {
  if (size > kMaxContentSize) return Corrupt("content", "declared size too large");
  auto count = in.Varint();
  if (!count) return Corrupt("content", "truncated");
  // Every run takes at least 6 characters ("AAAA" CRLF), so a count above
  // size / 6 cannot be true and must not size an allocation.
  if (*count == 0 || *count > size / 6) return Corrupt("content", "bad run count");
  struct Run {
    uint64_t gap, line_length, decoded_size;
  };
  std::vector<Run> runs(static_cast<size_t>(*count));
  uint64_t run_chars = 0, gaps = 0, decoded_total = 0;
  for (Run& run : runs) {
    auto gap = in.Varint();
    auto line_length = gap ? in.Varint() : std::nullopt;
    auto decoded_size = line_length ? in.Varint() : std::nullopt;
    if (!decoded_size) return Corrupt("content", "truncated");
    if (*line_length < 4 || *line_length > kMaxBase64LineLength || *line_length % 4 != 0 || *decoded_size == 0 ||
        *decoded_size > size || *gap > size)
      return Corrupt("content", "bad base64 run");
    run = {*gap, *line_length, *decoded_size};
    run_chars += Base64RunLength(static_cast<size_t>(run.decoded_size), static_cast<uint32_t>(run.line_length));
    gaps += run.gap;
    decoded_total += run.decoded_size;
    if (run_chars + gaps > size) return Corrupt("content", "runs exceed the size");
  }
  auto plain_encoding = in.Byte();
  auto stored_size = plain_encoding ? in.Varint() : std::nullopt;
  auto stored = stored_size ? in.Bytes(static_cast<size_t>(std::min<uint64_t>(*stored_size, SIZE_MAX)))
                            : std::nullopt;
  if (!stored) return Corrupt("content", "truncated");
  const uint64_t plain_size = size - run_chars;
  std::string plain;
  if (*plain_encoding == 0) {
    if (stored->size() != plain_size) return Corrupt("content", "plain length mismatch");
    plain = std::string(*stored);
  } else if (*plain_encoding == 1) {
    auto decompressed = Decompress(*stored, plain_size);
    if (!decompressed) return tl::unexpected(decompressed.error());
    plain = std::move(*decompressed);
  } else {
    return Corrupt("content", "unknown plain encoding");
  }
  const std::string_view binary = in.Rest();
  if (binary.size() != decoded_total) return Corrupt("content", "base64 bytes mismatch");

  std::string out;
  out.reserve(static_cast<size_t>(size));
  size_t from_plain = 0, from_binary = 0;
  for (const Run& run : runs) {
    out.append(plain, from_plain, static_cast<size_t>(run.gap));
    from_plain += static_cast<size_t>(run.gap);
    ExpandBase64Run(binary.substr(from_binary, static_cast<size_t>(run.decoded_size)),
                    static_cast<uint32_t>(run.line_length), out);
    from_binary += static_cast<size_t>(run.decoded_size);
  }
  out.append(plain, from_plain);
  if (out.size() != size) return Corrupt("content", "length mismatch");
  return out;
}

}  // namespace

std::string EncodeContent(std::string_view content, bool compress) {
  if (compress && content.size() >= kMinPackedContent) {
    if (auto packed = EncodePacked(content)) return std::move(*packed);
  }
  std::string out;
  out.reserve(1 + 1 + kMaxVarintBytes + content.size());
  out.push_back(static_cast<char>(kRecordVersion));
  out.push_back(static_cast<char>(ContentEncoding::kZstd));
  PutVarint(out, content.size());
  if (compress && AppendCompressed(content, out)) return out;
  out.clear();
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
    case ContentEncoding::kZstd:
      return Decompress(payload, *size);
    case ContentEncoding::kBase64Packed: {
      RecordReader packed(payload);
      return DecodePacked(packed, *size);
    }
  }
  return Corrupt("content", "unknown encoding " + std::to_string(*encoding));
}

}  // namespace hikyaku::spool
