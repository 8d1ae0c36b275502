#include "auth/password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <optional>
#include <vector>

namespace hikyaku::auth {

namespace {

constexpr std::string_view kPrefix = "$pbkdf2-sha256$";
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
constexpr size_t kMinSaltBytes = 8, kMaxSaltBytes = 64;
constexpr size_t kMinHashBytes = 16, kMaxHashBytes = 64;

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64NoPad(const unsigned char* data, size_t len) {
  std::string out;
  out.reserve((len + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= len; i += 3) {
    uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8) | data[i + 2];
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (len - i == 1) {
    uint32_t v = uint32_t{data[i]} << 16;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
  } else if (len - i == 2) {
    uint32_t v = (uint32_t{data[i]} << 16) | (uint32_t{data[i + 1]} << 8);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
  }
  return out;
}

int B64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict decoder: padding optional but, when present, must be exact; the
// unused low bits of the last symbol must be zero so one hash has exactly
// one spelling (a tampered trailing character cannot still verify).
std::optional<std::vector<unsigned char>> DecodeBase64(std::string_view text) {
  size_t pad = 0;
  while (!text.empty() && text.back() == '=') {
    text.remove_suffix(1);
    ++pad;
  }
  if (pad > 0 && (text.size() + pad) % 4 != 0) return std::nullopt;
  if (text.size() % 4 == 1) return std::nullopt;
  std::vector<unsigned char> out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = B64Value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<unsigned char>((acc >> bits) & 0xff));
    }
  }
  if ((acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

struct Parsed {
  uint32_t iterations;
  std::vector<unsigned char> salt;
  std::vector<unsigned char> hash;
};

std::optional<Parsed> Parse(std::string_view encoded) {
  if (!encoded.starts_with(kPrefix)) return std::nullopt;
  encoded.remove_prefix(kPrefix.size());
  size_t d1 = encoded.find('$');
  if (d1 == std::string_view::npos) return std::nullopt;
  size_t d2 = encoded.find('$', d1 + 1);
  if (d2 == std::string_view::npos) return std::nullopt;
  if (encoded.find('$', d2 + 1) != std::string_view::npos) return std::nullopt;
  std::string_view iter_text = encoded.substr(0, d1);
  if (iter_text.empty() || iter_text.size() > 8 || iter_text[0] == '0') return std::nullopt;
  uint32_t iterations = 0;
  auto [ptr, ec] = std::from_chars(iter_text.data(), iter_text.data() + iter_text.size(), iterations);
  if (ec != std::errc() || ptr != iter_text.data() + iter_text.size()) return std::nullopt;
  if (iterations == 0 || iterations > kMaxPbkdf2Iterations) return std::nullopt;
  auto salt = DecodeBase64(encoded.substr(d1 + 1, d2 - d1 - 1));
  auto hash = DecodeBase64(encoded.substr(d2 + 1));
  if (!salt || !hash) return std::nullopt;
  if (salt->size() < kMinSaltBytes || salt->size() > kMaxSaltBytes) return std::nullopt;
  if (hash->size() < kMinHashBytes || hash->size() > kMaxHashBytes) return std::nullopt;
  return Parsed{iterations, std::move(*salt), std::move(*hash)};
}

bool Derive(std::string_view password, const unsigned char* salt, size_t salt_len,
            uint32_t iterations, unsigned char* out, size_t out_len) {
  return PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt,
                           static_cast<int>(salt_len), static_cast<int>(iterations), EVP_sha256(),
                           static_cast<int>(out_len), out) == 1;
}

}  // namespace

Result<std::string> HashPassword(std::string_view password, uint32_t iterations) {
  if (iterations == 0 || iterations > kMaxPbkdf2Iterations)
    return Fail(ErrorCode::kInvalidArgument,
                "pbkdf2 iterations must be between 1 and " + std::to_string(kMaxPbkdf2Iterations));
  std::array<unsigned char, kSaltBytes> salt;
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1)
    return Fail(ErrorCode::kInternal, "RAND_bytes failed");
  std::array<unsigned char, kHashBytes> hash;
  if (!Derive(password, salt.data(), salt.size(), iterations, hash.data(), hash.size()))
    return Fail(ErrorCode::kInternal, "PKCS5_PBKDF2_HMAC failed");
  std::string out(kPrefix);
  out += std::to_string(iterations);
  out += '$';
  out += Base64NoPad(salt.data(), salt.size());
  out += '$';
  out += Base64NoPad(hash.data(), hash.size());
  OPENSSL_cleanse(hash.data(), hash.size());
  return out;
}

bool VerifyPassword(std::string_view password, std::string_view encoded) {
  std::optional<Parsed> parsed = Parse(encoded);
  if (!parsed) return false;
  std::array<unsigned char, kMaxHashBytes> derived;
  if (!Derive(password, parsed->salt.data(), parsed->salt.size(), parsed->iterations,
              derived.data(), parsed->hash.size()))
    return false;
  bool equal = CRYPTO_memcmp(derived.data(), parsed->hash.data(), parsed->hash.size()) == 0;
  OPENSSL_cleanse(derived.data(), derived.size());
  return equal;
}

bool IsWellFormedPasswordHash(std::string_view encoded) { return Parse(encoded).has_value(); }

}  // namespace hikyaku::auth
