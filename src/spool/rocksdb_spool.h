// RocksDbSpool: the Spool on an embedded RocksDB, with group commit.
//
// Only code that needs the RocksDB seam includes this header (tests that
// inject disk faults, benchmarks); everything else uses spool.h.
//
// Thread-safety: as Spool.
#pragma once

#include <memory>

#include <rocksdb/env.h>

#include "spool/spool.h"

namespace hikyaku::spool {

// As OpenRocksDbSpool(options), with every file operation going through
// `env` (not owned; must outlive the spool). Used to inject I/O faults such
// as ENOSPC in tests.
Result<std::unique_ptr<Spool>> OpenRocksDbSpool(const SpoolOptions& options, rocksdb::Env* env);

}  // namespace hikyaku::spool
