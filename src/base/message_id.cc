#include "base/message_id.h"

#include <charconv>

namespace hikyaku {

namespace {
constexpr int kSequenceBits = 22;
constexpr uint64_t kSequenceMask = (uint64_t{1} << kSequenceBits) - 1;
}  // namespace

std::string MessageId::ToString() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) out[15 - i] = kHex[(value_ >> (i * 4)) & 0xf];
  return out;
}

std::optional<MessageId> MessageId::Parse(std::string_view text) {
  if (text.size() != 16) return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 16);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  for (char c : text)
    if (c >= 'A' && c <= 'F') return std::nullopt;  // one canonical spelling
  return MessageId(v);
}

std::string MessageId::ToKeyBytes() const {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value_ >> (56 - 8 * i)) & 0xff);
  return out;
}

std::optional<MessageId> MessageId::FromKeyBytes(std::string_view bytes) {
  if (bytes.size() != 8) return std::nullopt;
  uint64_t v = 0;
  for (unsigned char c : bytes) v = (v << 8) | c;
  return MessageId(v);
}

MessageId MessageIdGenerator::Next() {
  const uint64_t now_part = static_cast<uint64_t>(ToUnixMillis(clock_.Now())) << kSequenceBits;
  uint64_t last = last_.load(std::memory_order_relaxed);
  for (;;) {
    // Same millisecond (or clock stepped back): continue the sequence, which
    // borrows from the next millisecond when 4M ids per ms are exceeded.
    uint64_t next = now_part > last ? now_part : last + 1;
    if (last_.compare_exchange_weak(last, next, std::memory_order_relaxed)) return MessageId(next);
  }
}

}  // namespace hikyaku
