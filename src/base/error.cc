#include "base/error.h"

namespace hikyaku {

std::string_view ToString(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid-argument";
    case ErrorCode::kNotFound: return "not-found";
    case ErrorCode::kNoSpace: return "no-space";
    case ErrorCode::kIo: return "io";
    case ErrorCode::kCorruption: return "corruption";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kInternal: return "internal";
  }
  return "unknown";
}

std::string Error::ToString() const {
  std::string out(hikyaku::ToString(code_));
  out += ": ";
  out += message_;
  return out;
}

}  // namespace hikyaku
