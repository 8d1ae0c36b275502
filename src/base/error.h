// Error values for everything the outside world can cause (network, disk,
// bad input). A broken invariant is not an Error: it is a bug (HIKYAKU_CHECK).
//
// Thread-safety: plain values.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace hikyaku {

enum class ErrorCode {
  kInvalidArgument,  // input that will never succeed as given
  kNotFound,
  kNoSpace,          // disk full / quota: transient, the operator can fix it
  kIo,               // other I/O failures
  kCorruption,       // stored data that does not decode
  kTimeout,
  kUnavailable,      // the component is shutting down or not ready
  kInternal,
};

std::string_view ToString(ErrorCode code);

// An Error says what went wrong and whether trying again later can succeed.
class Error {
 public:
  Error(ErrorCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // Transient errors may succeed on retry (disk full, timeouts, I/O).
  bool transient() const {
    return code_ == ErrorCode::kNoSpace || code_ == ErrorCode::kIo ||
           code_ == ErrorCode::kTimeout || code_ == ErrorCode::kUnavailable;
  }
  // "no-space: spool write failed: ..." — for logs and operator output.
  std::string ToString() const;

 private:
  ErrorCode code_;
  std::string message_;
};

template <typename T>
using Result = tl::expected<T, Error>;

// Shorthand for `return Fail(ErrorCode::kIo, "...")` in functions returning Result<T>.
inline tl::unexpected<Error> Fail(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error(code, std::move(message)));
}

}  // namespace hikyaku
