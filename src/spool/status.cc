#include "spool/status.h"

#include <string>

namespace hikyaku::spool {

Error ToError(const rocksdb::Status& s, std::string_view what) {
  std::string message = "spool: ";
  message += what;
  message += ": ";
  message += s.ToString();
  if (s.IsNoSpace() || s.subcode() == rocksdb::Status::kNoSpace)
    return Error(ErrorCode::kNoSpace, std::move(message));
  if (s.IsCorruption()) return Error(ErrorCode::kCorruption, std::move(message));
  if (s.IsShutdownInProgress()) return Error(ErrorCode::kUnavailable, std::move(message));
  return Error(ErrorCode::kIo, std::move(message));
}

}  // namespace hikyaku::spool
