#include "auth/password.h"

#include <gtest/gtest.h>

#include <regex>

namespace hikyaku::auth {
namespace {

// Computed independently (Python hashlib.pbkdf2_hmac) so a wrong PRF, salt
// handling or base64 alphabet in our code cannot agree with itself.
constexpr std::string_view kKnownHash =
    "$pbkdf2-sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M";

TEST(PasswordTest, RoundTripAndShape) {
  auto hash = HashPassword("s3cret!", 1000);
  ASSERT_TRUE(hash) << hash.error().ToString();
  EXPECT_TRUE(std::regex_match(
      *hash, std::regex(R"(\$pbkdf2-sha256\$1000\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43})")))
      << *hash;
  EXPECT_TRUE(VerifyPassword("s3cret!", *hash));
  EXPECT_TRUE(IsWellFormedPasswordHash(*hash));
}

TEST(PasswordTest, DefaultIterationsAreWrittenIntoTheHash) {
  auto hash = HashPassword("pw");
  ASSERT_TRUE(hash);
  EXPECT_TRUE(hash->starts_with("$pbkdf2-sha256$100000$"));
  EXPECT_TRUE(VerifyPassword("pw", *hash));
}

TEST(PasswordTest, SaltIsRandom) {
  auto a = HashPassword("same", 1000);
  auto b = HashPassword("same", 1000);
  ASSERT_TRUE(a && b);
  EXPECT_NE(*a, *b);
}

TEST(PasswordTest, WrongPasswordFails) {
  auto hash = HashPassword("s3cret!", 1000);
  ASSERT_TRUE(hash);
  EXPECT_FALSE(VerifyPassword("s3cret", *hash));
  EXPECT_FALSE(VerifyPassword("S3cret!", *hash));
  EXPECT_FALSE(VerifyPassword("", *hash));
}

TEST(PasswordTest, VerifiesHashComputedByAnotherImplementation) {
  EXPECT_TRUE(VerifyPassword("correct horse", kKnownHash));
  EXPECT_FALSE(VerifyPassword("correct horse battery", kKnownHash));
  // Padded base64, as some tools write it, verifies too.
  EXPECT_TRUE(VerifyPassword(
      "correct horse",
      "$pbkdf2-sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg==$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M="));
}

TEST(PasswordTest, TamperedHashFails) {
  std::string tampered(kKnownHash);
  tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(VerifyPassword("correct horse", tampered));
  // Different iteration count, same salt and hash.
  std::string iter(kKnownHash);
  iter.replace(iter.find("1000"), 4, "1001");
  EXPECT_FALSE(VerifyPassword("correct horse", iter));
  // Different salt.
  std::string salt(kKnownHash);
  salt.replace(salt.find("MDEy"), 4, "MDEz");
  EXPECT_FALSE(VerifyPassword("correct horse", salt));
  // Truncated hash (still valid base64 of >= 16 bytes) must not verify.
  std::string truncated(kKnownHash.substr(0, kKnownHash.size() - 4));
  EXPECT_FALSE(VerifyPassword("correct horse", truncated));
}

TEST(PasswordTest, MalformedStringsAreRejected) {
  const char* bad[] = {
      "",
      "plaintext",
      "$pbkdf2-sha256$",
      "$pbkdf2-sha1$1000$MDEyMzQ1Njc4OWFiY2RlZg$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M",
      "$pbkdf2-sha256$$MDEyMzQ1Njc4OWFiY2RlZg$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M",
      "$pbkdf2-sha256$0$MDEyMzQ1Njc4OWFiY2RlZg$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M",
      "$pbkdf2-sha256$01000$MDEyMzQ1Njc4OWFiY2RlZg$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M",
      "$pbkdf2-sha256$-5$MDEyMzQ1Njc4OWFiY2RlZg$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M",
      "$pbkdf2-sha256$99999999$MDEyMzQ1Njc4OWFiY2RlZg$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M",
      "$pbkdf2-sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg",
      "$pbkdf2-sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg$",
      "$pbkdf2-sha256$1000$MDEy!zQ1Njc4OWFiY2RlZg$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M",
      "$pbkdf2-sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M$x",
      "$pbkdf2-sha256$1000$MDEy$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M",  // salt too short
      "$pbkdf2-sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg$cBg8",                      // hash too short
      "$pbkdf2-sha256$1000$MDEyMzQ1Njc4OWFiY2RlZg=$cBg8D2DungRB9k76szThf5ehfyBz991ay6PT8Srwk4M",
  };
  for (const char* s : bad) {
    EXPECT_FALSE(IsWellFormedPasswordHash(s)) << s;
    EXPECT_FALSE(VerifyPassword("correct horse", s)) << s;
  }
  EXPECT_TRUE(IsWellFormedPasswordHash(kKnownHash));
}

TEST(PasswordTest, IterationLimits) {
  EXPECT_FALSE(HashPassword("x", 0));
  EXPECT_FALSE(HashPassword("x", kMaxPbkdf2Iterations + 1));
  EXPECT_EQ(HashPassword("x", 0).error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace hikyaku::auth
