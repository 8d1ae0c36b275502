// Base64 (RFC 4648 section 4, standard alphabet, with padding) for the SMTP
// AUTH exchange (RFC 4954 section 4: challenges and responses are base64).
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace hikyaku::smtp {

std::string Base64Encode(std::string_view bytes);

// Strict decoding: the length must be a multiple of 4, padding only at the
// end (at most two '='), no whitespace, and the unused bits of the last
// group must be zero (RFC 4648 section 3.5), so every input has one meaning.
// The empty string decodes to the empty string. Anything else is
// kInvalidArgument.
[[nodiscard]] Result<std::string> Base64Decode(std::string_view text);

}  // namespace hikyaku::smtp
