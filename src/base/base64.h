// Base64 (RFC 4648 section 4: standard alphabet, '=' padding), the one
// codec every module shares: SMTP AUTH challenges and responses (RFC 4954),
// MIME bodies and encoded-words built by message/, and the spool's storage
// of attachments as the bytes they encode (spool/base64_runs.h).
//
// Thread-safety: pure functions and constant tables.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace hikyaku {

inline constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Value of every octet as a base64 digit: 0..63, or kNotBase64Digit (a value
// with the high bit set, so several lookups can be checked with one OR)
// for anything outside the alphabet, '=' included.
inline constexpr uint8_t kNotBase64Digit = 0x80;
inline constexpr std::array<uint8_t, 256> kBase64DigitValues = [] {
  std::array<uint8_t, 256> values{};
  for (auto& v : values) v = kNotBase64Digit;
  for (uint8_t i = 0; i < 64; ++i) values[static_cast<unsigned char>(kBase64Alphabet[i])] = i;
  return values;
}();

inline uint8_t Base64DigitValue(char c) { return kBase64DigitValues[static_cast<unsigned char>(c)]; }

// With '=' padding, no line breaks.
std::string Base64Encode(std::string_view bytes);

// Strict decoding: the length must be a multiple of 4, padding only at the
// end (at most two '='), no whitespace, and the unused bits of the last
// group must be zero (RFC 4648 section 3.5), so every input has one meaning.
// The empty string decodes to the empty string. Anything else is
// kInvalidArgument.
[[nodiscard]] Result<std::string> Base64Decode(std::string_view text);

}  // namespace hikyaku
