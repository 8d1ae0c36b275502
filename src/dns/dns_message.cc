#include "dns/dns_message.h"

#include <algorithm>
#include <cstddef>

namespace hikyaku::dns {
namespace {

constexpr size_t kHeaderSize = 12;
constexpr uint16_t kTypeCname = 5;

uint16_t ReadU16(std::span<const uint8_t> m, size_t at) {
  return static_cast<uint16_t>((m[at] << 8) | m[at + 1]);
}

uint32_t ReadU32(std::span<const uint8_t> m, size_t at) {
  return (uint32_t{m[at]} << 24) | (uint32_t{m[at + 1]} << 16) | (uint32_t{m[at + 2]} << 8) |
         uint32_t{m[at + 3]};
}

// Advances `at` past the (possibly compressed, RFC 1035 4.1.4) name there.
// Only the bytes in place are skipped: a pointer ends the name, and where it
// points is irrelevant for walking the records.
bool SkipName(std::span<const uint8_t> m, size_t& at) {
  while (at < m.size()) {
    uint8_t len = m[at];
    if ((len & 0xC0) == 0xC0) {
      if (at + 2 > m.size()) return false;
      at += 2;
      return true;
    }
    if ((len & 0xC0) != 0) return false;  // 0x40/0x80: extended label types, obsolete (RFC 6891 5)
    ++at;
    if (len == 0) return true;
    at += len;
  }
  return false;
}

}  // namespace

std::optional<uint32_t> MinAnswerTtl(std::span<const uint8_t> m, uint16_t rr_type) {
  if (m.size() < kHeaderSize) return std::nullopt;
  uint16_t qdcount = ReadU16(m, 4);
  uint16_t ancount = ReadU16(m, 6);
  size_t at = kHeaderSize;
  for (uint16_t i = 0; i < qdcount; ++i) {
    if (!SkipName(m, at) || at + 4 > m.size()) return std::nullopt;
    at += 4;  // QTYPE, QCLASS
  }
  std::optional<uint32_t> min_ttl;
  for (uint16_t i = 0; i < ancount; ++i) {
    if (!SkipName(m, at) || at + 10 > m.size()) return std::nullopt;
    uint16_t type = ReadU16(m, at);
    // RFC 2181 8: a TTL with the top bit set is treated as zero.
    uint32_t ttl = ReadU32(m, at + 4);
    if (ttl & 0x80000000u) ttl = 0;
    uint16_t rdlength = ReadU16(m, at + 8);
    at += 10;
    if (at + rdlength > m.size()) return std::nullopt;
    at += rdlength;
    if (type == rr_type || type == kTypeCname) min_ttl = std::min(ttl, min_ttl.value_or(ttl));
  }
  return min_ttl;
}

}  // namespace hikyaku::dns
