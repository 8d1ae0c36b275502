#include "spool/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace hikyaku::spool {
namespace {

// Reflected Castagnoli polynomial (RFC 3720 B.4).
constexpr uint32_t kPolynomial = 0x82F63B78u;

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPolynomial : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kTable = MakeTable();

// Calls that came through the wrap, per thread (Crc32cOverrideCallsOnThisThread).
thread_local uint64_t override_calls = 0;

#if defined(__x86_64__)
// 8 bytes per instruction once aligned. The instruction works on the raw
// register; the pre- and post-inversion of the CRC32C definition are done
// around it, as in the portable path.
__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc, const char* data, size_t size) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  uint64_t state = ~crc;
  while (size > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    state = _mm_crc32_u8(static_cast<uint32_t>(state), *p++);
    --size;
  }
  while (size >= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    state = _mm_crc32_u64(state, word);
    p += 8;
    size -= 8;
  }
  while (size > 0) {
    state = _mm_crc32_u8(static_cast<uint32_t>(state), *p++);
    --size;
  }
  return ~static_cast<uint32_t>(state);
}

bool CpuHasSse42() {
  // Also called from RocksDB before main() may have run every constructor.
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}
#endif

}  // namespace

uint32_t Crc32cExtendPortable(uint32_t crc, const char* data, size_t size) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  uint32_t state = ~crc;
  for (size_t i = 0; i < size; ++i) state = kTable[(state ^ p[i]) & 0xFF] ^ (state >> 8);
  return ~state;
}

bool Crc32cInHardware() {
#if defined(__x86_64__)
  static const bool hardware = CpuHasSse42();
  return hardware;
#else
  return false;
#endif
}

uint32_t Crc32cExtend(uint32_t crc, const char* data, size_t size) {
#if defined(__x86_64__)
  if (Crc32cInHardware()) return ExtendSse42(crc, data, size);
#endif
  return Crc32cExtendPortable(crc, data, size);
}

uint64_t Crc32cOverrideCallsOnThisThread() { return override_calls; }

}  // namespace hikyaku::spool

// The override (see crc32c.h): with ld --wrap=SYMBOL, librocksdb's
// references to SYMBOL resolve to __wrap_SYMBOL.
uint32_t HikyakuWrappedRocksDbCrc32cExtend(uint32_t crc, const char* data, size_t size) __asm__(
    "__wrap__ZN7rocksdb6crc32c6ExtendEjPKcm");
uint32_t HikyakuWrappedRocksDbCrc32cExtend(uint32_t crc, const char* data, size_t size) {
  ++hikyaku::spool::override_calls;
  return hikyaku::spool::Crc32cExtend(crc, data, size);
}
