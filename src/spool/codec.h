// Record codec of the RocksDB spool: keys and values, byte by byte as
// specified in docs/spool.md.
//
// Every value starts with a version byte. Decoding is strict: truncated
// input, trailing bytes, an unknown version, an out-of-range field or a
// non-canonical varint all return ErrorCode::kCorruption, never a half-filled
// record. Encoding cannot fail.
//
// Thread-safety: free functions on values; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/error.h"
#include "base/message_id.h"
#include "spool/spool.h"

namespace hikyaku::spool {

// --- Primitives ------------------------------------------------------------

// Unsigned LEB128: 7 bits per byte, low bits first, high bit = "more".
void PutVarint(std::string& out, uint64_t value);
// ZigZag-mapped signed varint (times may in principle precede the epoch).
void PutSignedVarint(std::string& out, int64_t value);
void PutLengthPrefixed(std::string& out, std::string_view bytes);
// Fixed-width little-endian integers at `p` (journal record headers, the
// journal checkpoint value): 4 or 8 bytes, no bounds checks.
void EncodeFixed32(char* p, uint32_t value);
void EncodeFixed64(char* p, uint64_t value);
uint32_t DecodeFixed32(const char* p);
uint64_t DecodeFixed64(const char* p);

// Consumes a record from the front; every accessor returns nullopt (and
// leaves the reader in an unspecified position) when the input is
// truncated or not canonical.
class RecordReader {
 public:
  explicit RecordReader(std::string_view in) : in_(in) {}

  std::optional<uint8_t> Byte();
  std::optional<uint64_t> Varint();
  std::optional<int64_t> SignedVarint();
  std::optional<std::string_view> LengthPrefixed();
  std::optional<std::string_view> Bytes(size_t n);
  std::string_view Rest() { return std::exchange(in_, std::string_view()); }
  bool AtEnd() const { return in_.empty(); }

 private:
  std::string_view in_;
};

// --- Keys -------------------------------------------------------------------

// content and meta column families: the 8-byte big-endian message id.
std::string MessageKey(MessageId id);
Result<MessageId> DecodeMessageKey(std::string_view key);

// recipients column family: message key + 4-byte big-endian index, so a
// message's recipients are contiguous and in list order.
std::string RecipientKey(MessageId id, uint32_t index);
struct RecipientKeyParts {
  MessageId message;
  uint32_t index = 0;
};
Result<RecipientKeyParts> DecodeRecipientKey(std::string_view key);

// --- Values -----------------------------------------------------------------

inline constexpr uint8_t kRecordVersion = 1;
// Meta records of mail with a tenant or a priority are version 2: version
// 1's fields, then the tenant and the priority. Mail with neither is still
// written as version 1 (two bytes fewer), and both versions decode.
inline constexpr uint8_t kMetaFlowVersion = 2;

// The small per-message record in the meta column family.
struct MessageMeta {
  std::string sender;
  TimePoint received_at;
  std::string origin;
  uint32_t recipient_count = 0;
  uint64_t content_size = 0;  // uncompressed bytes
  std::string tenant;         // "" = none
  uint8_t priority = 0;       // 0 normal, 1 high

  bool operator==(const MessageMeta&) const = default;
};

std::string EncodeMeta(const MessageMeta& meta);
Result<MessageMeta> DecodeMeta(std::string_view value);

// The per-recipient value. `record.message` and `record.index` live in the
// key and are not encoded; DecodeRecipient fills them from the key.
std::string EncodeRecipient(const RecipientRecord& record);
Result<RecipientRecord> DecodeRecipient(std::string_view key, std::string_view value);

// The message text in the content column family. With `compress`, base64
// blocks of the text (attachments) are stored as the bytes they encode
// (base64_runs.h) and the rest is zstd-compressed when that saves at least
// 1/8 of its size; otherwise the text is stored as is. Every form records
// the size of the text and decodes to it byte for byte.
enum class ContentEncoding : uint8_t { kRaw = 0, kZstd = 1, kBase64Packed = 2 };
std::string EncodeContent(std::string_view content, bool compress);
Result<std::string> DecodeContent(std::string_view value);

}  // namespace hikyaku::spool
