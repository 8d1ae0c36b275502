// Password hashes for SMTP AUTH users: PBKDF2-HMAC-SHA256 (RFC 8018 5.2)
// computed by OpenSSL, stored in the configuration as one string:
//
//   $pbkdf2-sha256$<iterations>$<salt>$<hash>
//
// <iterations> is a decimal number without leading zeros (1 .. 10,000,000);
// <salt> and <hash> are standard base64 (RFC 4648 section 4, alphabet
// A-Z a-z 0-9 + /) WITHOUT '=' padding, so the whole string matches
// ^\$pbkdf2-sha256\$[0-9]+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$ (the shape the
// config module checks). VerifyPassword also accepts padded base64, so hashes
// produced by other tools that pad still verify. HashPassword uses a random
// 16-byte salt and a 32-byte derived key; verification uses the length of the
// stored hash (16 .. 64 bytes).
//
// Thread-safety: all functions are thread-safe (OpenSSL 3 RNG and KDF are).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace hikyaku::auth {

inline constexpr uint32_t kDefaultPbkdf2Iterations = 100'000;
inline constexpr uint32_t kMaxPbkdf2Iterations = 10'000'000;

// Returns the encoded hash of `password`.
// Fails with kInvalidArgument if iterations is 0 or above kMaxPbkdf2Iterations,
// and with kInternal if OpenSSL's RNG or KDF fails.
Result<std::string> HashPassword(std::string_view password,
                                 uint32_t iterations = kDefaultPbkdf2Iterations);

// True if `encoded` is well-formed and was computed from `password`.
// A malformed `encoded` string is simply "does not match" (false); use
// IsWellFormedPasswordHash to tell an operator that the config is wrong.
// The comparison of derived keys is constant-time (CRYPTO_memcmp).
bool VerifyPassword(std::string_view password, std::string_view encoded);

// True if `encoded` has the format above with decodable salt and hash of
// acceptable sizes (salt 8..64 bytes, hash 16..64 bytes).
bool IsWellFormedPasswordHash(std::string_view encoded);

}  // namespace hikyaku::auth
