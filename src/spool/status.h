// RocksDB status -> hikyaku Error, for the spool's RocksDB and journal code.
#pragma once

#include <rocksdb/status.h>

#include <string_view>

#include "base/error.h"

namespace hikyaku::spool {

// "spool: <what>: <RocksDB's message>", with the code a caller acts on:
// kNoSpace for ENOSPC (RocksDB reports it as IOError/kNoSpace, both directly
// and when it replays the background error that stopped writes),
// kCorruption, kUnavailable while RocksDB shuts down, kIo for the rest.
Error ToError(const rocksdb::Status& s, std::string_view what);

}  // namespace hikyaku::spool
