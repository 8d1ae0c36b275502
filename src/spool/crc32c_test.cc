#include "spool/crc32c.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "testing/temp_dir.h"

#if defined(__x86_64__)
// With ld --wrap, __real_SYMBOL is librocksdb's own definition.
uint32_t LibrocksdbOwnExtend(uint32_t crc, const char* data, size_t size) __asm__(
    "__real__ZN7rocksdb6crc32c6ExtendEjPKcm");
#endif

namespace hikyaku::spool {
namespace {

uint32_t Value(const std::string& s) { return Crc32cExtend(0, s.data(), s.size()); }

// RFC 3720 B.4 and the customary check value.
TEST(Crc32c, KnownValues) {
  std::string zeros(32, '\0'), ones(32, '\xff'), up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  for (auto* f : {&Crc32cExtend, &Crc32cExtendPortable}) {
    EXPECT_EQ(f(0, zeros.data(), 32), 0x8A9136AAu);
    EXPECT_EQ(f(0, ones.data(), 32), 0x62A8AB43u);
    EXPECT_EQ(f(0, up.data(), 32), 0x46DD794Eu);
    EXPECT_EQ(f(0, down.data(), 32), 0x113FDB5Cu);
    EXPECT_EQ(f(0, "123456789", 9), 0xE3069283u);
    EXPECT_EQ(f(0, "", 0), 0u);
  }
}

// Extending piece by piece gives the CRC of the whole, at any split and any
// alignment: RocksDB extends a record's CRC across its header and payload.
TEST(Crc32c, ExtendingEqualsWholeAtEverySplitAndAlignment) {
  std::mt19937 rng(7);
  std::string buffer(300, '\0');
  for (auto& c : buffer) c = static_cast<char>(rng());
  for (size_t start = 0; start < 9; ++start) {
    const std::string whole = buffer.substr(start, 200);
    const uint32_t expected = Crc32cExtendPortable(0, whole.data(), whole.size());
    EXPECT_EQ(Value(whole), expected);
    for (size_t split = 0; split <= whole.size(); split += 7) {
      uint32_t crc = Crc32cExtend(0, whole.data(), split);
      crc = Crc32cExtend(crc, whole.data() + split, whole.size() - split);
      ASSERT_EQ(crc, expected) << "start " << start << " split " << split;
    }
  }
}

#if defined(__x86_64__)
// The override must compute exactly what librocksdb's own code computes:
// files written by one are read by the other (a tool such as ldb linked
// without the override, a format-1 spool's WAL).
TEST(Crc32c, AgreesWithLibrocksdbOwnImplementation) {
  std::mt19937 rng(11);
  std::vector<char> data(70'000);
  for (auto& c : data) c = static_cast<char>(rng());
  for (int i = 0; i < 500; ++i) {
    const size_t offset = rng() % 64;
    const size_t size = rng() % (i < 400 ? 600 : data.size() - 64);
    const uint32_t seed = i % 3 == 0 ? 0 : static_cast<uint32_t>(rng());
    ASSERT_EQ(Crc32cExtend(seed, data.data() + offset, size), LibrocksdbOwnExtend(seed, data.data() + offset, size))
        << "offset " << offset << " size " << size;
  }
}

// librocksdb's checksums go through the override: a RocksDB write's WAL
// checksum (computed on the writing thread) is the easiest to observe.
// Fails if the wrap leaves the link.
TEST(Crc32c, RocksDbWalWritesUseTheOverride) {
  const TempDir dir("crc32c_test");
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, (dir.path() / "db").string(), &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  const uint64_t before = Crc32cOverrideCallsOnThisThread();
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "key", std::string(4096, 'x')).ok());
  EXPECT_GT(Crc32cOverrideCallsOnThisThread(), before);
  std::string value;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), "key", &value).ok());
  EXPECT_EQ(value.size(), 4096u);
}
#endif

}  // namespace
}  // namespace hikyaku::spool
