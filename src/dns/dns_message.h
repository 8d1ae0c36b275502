// Reading what c-ares does not hand us from a raw DNS answer (RFC 1035 4.1):
// the TTLs of the answer section. c-ares' ares_parse_mx_reply drops them, and
// an MX answer must not be cached longer than its records live.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace hikyaku::dns {

// The smallest TTL (seconds) among the answer-section records of `message`
// whose type is `rr_type` or CNAME (an alias chain lives no longer than its
// shortest link). nullopt when there is no such record or the message is
// malformed (truncated, bad name compression).
std::optional<uint32_t> MinAnswerTtl(std::span<const uint8_t> message, uint16_t rr_type);

}  // namespace hikyaku::dns
