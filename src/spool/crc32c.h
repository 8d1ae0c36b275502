// CRC32C (Castagnoli) for RocksDB, in hardware where the CPU has it.
//
// Why: every byte of every accepted message is checksummed with CRC32C on
// the commit thread (the spool's journal records, and before the journal
// RocksDB's WAL records), and again in RocksDB's table and blob blocks when
// they are written and read. Debian builds librocksdb portably (no SSE 4.2),
// and its runtime choice then always falls back to a table-driven loop: ~6 %
// of all CPU time of the injection benchmark when it computed the WAL's
// checksums on the thread every acknowledgement waits for
// (docs/adr/0002-hardware-crc32c.md).
//
// How: the link wraps rocksdb::crc32c::Extend (ld --wrap, set in
// src/spool/CMakeLists.txt on x86-64), the one function through which
// librocksdb's other parts compute CRC32C: their calls land in crc32c.cc,
// which answers with the CPU's CRC32 instruction. It is the same
// mathematical function, so files written either way read back either way;
// only the speed differs.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hikyaku::spool {

// CRC32C of `size` bytes at `data`, continuing `crc` (the CRC32C of what
// came before; 0 to start), as rocksdb::crc32c::Extend defines it.
uint32_t Crc32cExtend(uint32_t crc, const char* data, size_t size);

// The portable byte-at-a-time computation: the reference the hardware path
// is tested against, and the fallback on CPUs without SSE 4.2.
uint32_t Crc32cExtendPortable(uint32_t crc, const char* data, size_t size);

// True when Crc32cExtend uses the CPU's CRC32 instruction.
bool Crc32cInHardware();

// How many of librocksdb's CRC32C computations on the calling thread went
// through the override: lets a test prove the wrap is in the link.
uint64_t Crc32cOverrideCallsOnThisThread();

}  // namespace hikyaku::spool
