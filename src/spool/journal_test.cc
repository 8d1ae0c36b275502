// Tests of the spool journal (journal.h): what was appended comes back after a
// restart, what was synced after a crash too, in LSN order, and nothing else.
#include "spool/journal.h"

#include <gtest/gtest.h>
#include <rocksdb/file_system.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "testing/temp_dir.h"

namespace hikyaku::spool {
namespace {

namespace fs = std::filesystem;

using Records = std::vector<std::pair<uint64_t, std::string>>;  // (lsn, payload)

// Reproducible bytes that differ from one seed to another, so a record
// replayed in the wrong place (or from an older round) shows.
std::string Payload(uint64_t seed, size_t size) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  for (char& c : out) c = static_cast<char>(rng());
  return out;
}

JournalOptions Options(const fs::path& dir, uint64_t segment_size = 1 << 20) {
  JournalOptions options;
  options.dir = dir / "journal";
  options.segment_size = segment_size;
  return options;
}

template <typename T>
std::string Why(const Result<T>& r) {
  return r ? "ok" : r.error().ToString();
}

struct Recovery {
  Result<std::unique_ptr<Journal>> journal;
  Records replayed;
};

Recovery Recover(const JournalOptions& options, uint64_t checkpoint) {
  Records replayed;
  auto journal = Journal::Recover(options, checkpoint, [&](uint64_t lsn, std::string_view payload) -> Result<void> {
    replayed.emplace_back(lsn, std::string(payload));
    return {};
  });
  return Recovery{std::move(journal), std::move(replayed)};
}

// What recovery at `checkpoint` replays (the journal is closed again); a
// failure shows as one record at LSN 0 holding the error.
Records Replay(const JournalOptions& options, uint64_t checkpoint) {
  auto r = Recover(options, checkpoint);
  if (!r.journal) return {{0, Why(r.journal)}};
  return r.replayed;
}

// Appends `payload` and adds it, with the LSN it was given, to `model`.
testing::AssertionResult Append(Journal& journal, Records& model, std::string payload) {
  const uint64_t lsn = journal.next_lsn();
  if (auto r = journal.Append(payload); !r) return testing::AssertionFailure() << "lsn " << lsn << ": " << Why(r);
  if (journal.next_lsn() != lsn + 1) return testing::AssertionFailure() << "next_lsn did not advance past " << lsn;
  model.emplace_back(lsn, std::move(payload));
  return testing::AssertionSuccess();
}

// A new journal holding one record of each size (payloads seeded from `seed`
// up), synced and closed.
Records WriteJournal(const JournalOptions& options, const std::vector<size_t>& sizes, uint64_t seed = 0) {
  Records model;
  auto r = Recover(options, 0);
  EXPECT_TRUE(r.journal) << Why(r.journal);
  if (!r.journal) return model;
  for (size_t size : sizes) {
    if (auto appended = Append(**r.journal, model, Payload(seed++, size)); !appended) {
      ADD_FAILURE() << appended.message();
      return model;
    }
  }
  EXPECT_TRUE((*r.journal)->Sync());
  return model;
}

Records Above(const Records& model, uint64_t checkpoint) {
  Records out;
  for (const auto& record : model)
    if (record.first > checkpoint) out.push_back(record);
  return out;
}

std::vector<fs::path> SegmentFiles(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".journal") out.push_back(entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream data;
  data << in.rdbuf();
  return data.str();
}

void WriteFile(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  if (!out) ADD_FAILURE() << "cannot write " << path;
}

// Changes one byte of the record whose payload is `payload` (unique in the
// test), at `offset` from the record's start.
void Corrupt(const fs::path& dir, const std::string& payload, size_t offset) {
  for (const auto& path : SegmentFiles(dir)) {
    std::string data = ReadFile(path);
    const size_t at = data.find(payload);
    if (at == std::string::npos) continue;
    data.at(at - Journal::kHeaderSize + offset) ^= 0x20;
    return WriteFile(path, data);
  }
  ADD_FAILURE() << "record not found";
}

// A file system whose segment writes and syncs fail with ENOSPC while told
// to, and which simulates a power loss: Crash() drops every write not yet
// synced or, given an rng, keeps, tears or drops each one at random.
class CrashableFileSystem : public rocksdb::FileSystemWrapper {
 public:
  CrashableFileSystem() : rocksdb::FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "CrashableFileSystem"; }

  bool full_writes = false;
  bool full_syncs = false;

  rocksdb::IOStatus NewRandomRWFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    auto s = target()->NewRandomRWFile(name, options, result, dbg);
    if (s.ok()) *result = std::make_unique<File>(std::move(*result), this, name);
    return s;
  }
  rocksdb::IOStatus DeleteFile(const std::string& name, const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override {
    unsynced_.erase(name);
    return target()->DeleteFile(name, options, dbg);
  }

  void Crash(std::mt19937_64* rng = nullptr) {
    for (auto& [name, state] : unsynced_) {
      std::string data = state.synced;
      for (const auto& [offset, bytes] : state.writes) {
        size_t keep = 0;
        if (rng != nullptr && (*rng)() % 3 != 0) keep = (*rng)() % 2 ? bytes.size() : (*rng)() % (bytes.size() + 1);
        if (keep == 0) continue;
        if (data.size() < offset + keep) data.resize(offset + keep, '\0');
        data.replace(offset, keep, bytes, 0, keep);
      }
      WriteFile(name, data);
    }
    unsynced_.clear();
  }

 private:
  struct Unsynced {
    std::string synced;  // the file as the last sync left it
    std::vector<std::pair<uint64_t, std::string>> writes;
  };

  class File : public rocksdb::FSRandomRWFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSRandomRWFile> target, CrashableFileSystem* fs, std::string name)
        : rocksdb::FSRandomRWFileOwnerWrapper(std::move(target)), fs_(fs), name_(std::move(name)) {}
    rocksdb::IOStatus Write(uint64_t offset, const rocksdb::Slice& data, const rocksdb::IOOptions& o,
                            rocksdb::IODebugContext* dbg) override {
      if (fs_->full_writes) return rocksdb::IOStatus::NoSpace("injected: disk full");
      auto [it, first] = fs_->unsynced_.try_emplace(name_);
      if (first) it->second.synced = ReadFile(name_);
      it->second.writes.emplace_back(offset, data.ToString());
      return target()->Write(offset, data, o, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      return Synced(target()->Sync(o, dbg));
    }

   private:
    rocksdb::IOStatus Synced(rocksdb::IOStatus s) {
      if (fs_->full_syncs) return rocksdb::IOStatus::NoSpace("injected: disk full");
      if (s.ok()) fs_->unsynced_.erase(name_);
      return s;
    }
    CrashableFileSystem* fs_;
    const std::string name_;
  };

  std::map<std::string, Unsynced> unsynced_;
};

// --- Replay -------------------------------------------------------------------

// Every record, of any size (empty included), comes back byte for byte in LSN
// order, and the LSNs continue where they stopped.
TEST(JournalTest, RecoverReplaysEveryRecordInOrder) {
  TempDir dir;
  const JournalOptions options = Options(dir.path());
  const std::vector<size_t> sizes = {0, 1, 23, 24, 25, 100, 4095, 4096, 70'000, 7, 0, 300'000, 12};
  Records model;
  {
    auto r = Recover(options, 0);
    ASSERT_TRUE(r.journal) << Why(r.journal);
    Journal& journal = **r.journal;
    EXPECT_TRUE(r.replayed.empty());
    EXPECT_EQ(journal.next_lsn(), 1u);
    ASSERT_TRUE(journal.Sync());  // nothing appended yet: nothing to do
    uint64_t bytes = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      ASSERT_TRUE(Append(journal, model, Payload(i, sizes[i])));
      bytes += Journal::kHeaderSize + sizes[i];
    }
    ASSERT_TRUE(journal.Sync());
    EXPECT_EQ(journal.stats().records, sizes.size());
    EXPECT_EQ(journal.stats().bytes, bytes);
    EXPECT_EQ(journal.stats().segments_created, 1u);
  }
  auto r = Recover(options, 0);
  ASSERT_TRUE(r.journal) << Why(r.journal);
  EXPECT_EQ(r.replayed, model);
  EXPECT_EQ((*r.journal)->next_lsn(), sizes.size() + 1);
  EXPECT_EQ((*r.journal)->stats().replayed, sizes.size());
}

// Records at or below the checkpoint are skipped, wherever it falls among the
// segments; a checkpoint beyond the journal is where the LSNs continue.
TEST(JournalTest, RecoverSkipsRecordsAtOrBelowTheCheckpoint) {
  TempDir dir;
  const JournalOptions options = Options(dir.path(), 1024);
  std::vector<size_t> sizes;
  for (size_t i = 0; i < 40; ++i) sizes.push_back(100 + i * 5);
  const Records model = WriteJournal(options, sizes);
  ASSERT_FALSE(HasFailure());
  ASSERT_GE(SegmentFiles(options.dir).size(), 5u);
  for (uint64_t checkpoint = 0; checkpoint <= model.size() + 3; ++checkpoint) {
    auto r = Recover(options, checkpoint);
    ASSERT_TRUE(r.journal) << checkpoint << ": " << Why(r.journal);
    EXPECT_EQ(r.replayed, Above(model, checkpoint)) << checkpoint;
    EXPECT_EQ((*r.journal)->stats().replayed, r.replayed.size());
    EXPECT_EQ((*r.journal)->next_lsn(), std::max<uint64_t>(model.size(), checkpoint) + 1) << checkpoint;
  }
}

// Replay's error ends recovery: nothing after the failing record is replayed.
TEST(JournalTest, ReplayErrorFailsRecovery) {
  TempDir dir;
  const JournalOptions options = Options(dir.path());
  WriteJournal(options, std::vector<size_t>(5, 10));
  ASSERT_FALSE(HasFailure());
  std::vector<uint64_t> seen;
  auto r = Journal::Recover(options, 0, [&](uint64_t lsn, std::string_view) -> Result<void> {
    seen.push_back(lsn);
    if (lsn == 3) return Fail(ErrorCode::kInternal, "replay failed");
    return {};
  });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kInternal);
  EXPECT_EQ(seen, (std::vector<uint64_t>{1, 2, 3}));
}

// --- Damage -------------------------------------------------------------------

// A last record cut short (file truncated, or its tail zeroed as a crash can
// leave it) anywhere in its header or payload ends replay before it; records
// appended after recovery follow on cleanly, with no stale bytes revived.
TEST(JournalTest, TornTailEndsReplayAndIsNeverExtended) {
  TempDir dir;
  const JournalOptions options = Options(dir.path());
  const Records model = WriteJournal(options, {40, 40, 40, 40, 40, 40, 60});
  ASSERT_FALSE(HasFailure());
  const Records before(model.begin(), model.end() - 1);
  ASSERT_EQ(SegmentFiles(options.dir).size(), 1u);
  const fs::path segment = SegmentFiles(options.dir)[0];
  const std::string pristine = ReadFile(segment);
  ASSERT_EQ(pristine.size(), 7 * Journal::kHeaderSize + 6 * 40 + 60);
  for (bool zeroed : {false, true}) {
    for (size_t cut = pristine.size() - Journal::kHeaderSize - 60; cut < pristine.size(); ++cut) {
      SCOPED_TRACE(testing::Message() << (zeroed ? "zeroed" : "truncated") << " at " << cut);
      fs::remove_all(options.dir);
      fs::create_directories(options.dir);
      std::string data = pristine.substr(0, cut);
      if (zeroed) data.resize(pristine.size(), '\0');
      WriteFile(segment, data);
      Records after = before;
      {
        auto r = Recover(options, 0);
        ASSERT_TRUE(r.journal) << Why(r.journal);
        EXPECT_EQ(r.replayed, before);
        ASSERT_EQ((*r.journal)->next_lsn(), 7u);
        for (uint64_t i = 0; i < 2; ++i) ASSERT_TRUE(Append(**r.journal, after, Payload(1000 * cut + i, 60)));
      }
      EXPECT_EQ(Replay(options, 0), after);
    }
  }
}

// One changed byte anywhere in a record (checksum, length, LSN, round or
// payload) ends replay before that record.
TEST(JournalTest, CorruptByteEndsReplayBeforeItsRecord) {
  TempDir dir;
  const JournalOptions options = Options(dir.path());
  const Records model = WriteJournal(options, std::vector<size_t>(8, 40));
  ASSERT_FALSE(HasFailure());
  const fs::path segment = SegmentFiles(options.dir).at(0);
  const std::string pristine = ReadFile(segment);
  for (uint64_t lsn : {1, 5, 8}) {
    for (size_t i = 0; i < Journal::kHeaderSize + 40; ++i) {
      WriteFile(segment, pristine);
      Corrupt(options.dir, model[lsn - 1].second, i);
      auto r = Recover(options, 0);
      ASSERT_TRUE(r.journal) << Why(r.journal);
      EXPECT_EQ(r.replayed, Records(model.begin(), model.begin() + lsn - 1)) << "lsn " << lsn << " byte " << i;
      EXPECT_EQ((*r.journal)->next_lsn(), lsn);
    }
  }
}

// Records lost in an earlier segment while a later one holds records above the
// checkpoint are acknowledged data gone: recovery fails rather than skip them,
// unless the checkpoint covers everything that was lost.
TEST(JournalTest, LostRecordsBeforeLaterSegmentsFailRecovery) {
  TempDir dir;
  const JournalOptions options = Options(dir.path(), 512);  // four 124-byte records a segment
  const Records model = WriteJournal(options, std::vector<size_t>(12, 100));
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(SegmentFiles(options.dir).size(), 3u);
  ASSERT_NE(ReadFile(SegmentFiles(options.dir)[0]).find(model[3].second), std::string::npos);
  Corrupt(options.dir, model[1].second, Journal::kHeaderSize + 7);  // lsn 2, in the first segment
  for (uint64_t checkpoint : {0, 1, 3}) {
    auto r = Recover(options, checkpoint);
    ASSERT_FALSE(r.journal) << checkpoint;
    EXPECT_EQ(r.journal.error().code(), ErrorCode::kCorruption) << checkpoint;
  }
  for (uint64_t checkpoint : {4, 9}) {
    auto r = Recover(options, checkpoint);
    ASSERT_TRUE(r.journal) << checkpoint << ": " << Why(r.journal);
    EXPECT_EQ(r.replayed, Above(model, checkpoint));
  }
}

// --- Segment reuse ------------------------------------------------------------

// Segments wholly at or below the checkpoint are overwritten rather than new
// files made; spares beyond the allowance are deleted; recovery at the last
// checkpoint replays exactly what lies above it.
TEST(JournalTest, SegmentsAreReusedOnceTheCheckpointPassesThem) {
  TempDir dir;
  uint64_t checkpoint = 0;
  JournalOptions options = Options(dir.path(), 4096);
  options.spare_segments = 2;
  options.checkpoint = [&checkpoint] { return checkpoint; };
  std::mt19937_64 rng(42);
  Records model;
  auto r = Recover(options, 0);
  ASSERT_TRUE(r.journal) << Why(r.journal);
  Journal& journal = **r.journal;
  // At most 40 records of at most 274 bytes above the checkpoint: 3 segments,
  // plus the one being filled, the one being started, and the spares.
  const size_t bound = options.spare_segments + 5;
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(Append(journal, model, Payload(rng(), 50 + rng() % 201)));
    if (i % 5 == 0) {
      ASSERT_TRUE(journal.Sync());
    }
    if (i % 10 == 0 && model.back().first > 30) checkpoint = model.back().first - 30;
    ASSERT_LE(SegmentFiles(options.dir).size(), bound) << i;
  }
  EXPECT_GT(journal.stats().segments_reused, 50u);
  EXPECT_LE(journal.stats().segments_created, bound);
  // With the checkpoint stuck, segments pile up; once it passes them all, the
  // next round keeps only the segment it leaves, the one it takes and spares.
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(Append(journal, model, Payload(rng(), 200)));
  EXPECT_GT(SegmentFiles(options.dir).size(), bound);
  checkpoint = model.back().first;
  for (uint64_t rounds = journal.stats().segments_reused; journal.stats().segments_reused == rounds;)
    ASSERT_TRUE(Append(journal, model, Payload(rng(), 200)));
  EXPECT_LE(SegmentFiles(options.dir).size(), options.spare_segments + 2);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(Append(journal, model, Payload(rng(), 50 + rng() % 201)));
  ASSERT_TRUE(journal.Sync());
  r.journal->reset();

  auto recovered = Recover(options, checkpoint);
  ASSERT_TRUE(recovered.journal) << Why(recovered.journal);
  EXPECT_EQ(recovered.replayed, Above(model, checkpoint));
  EXPECT_EQ((*recovered.journal)->next_lsn(), model.size() + 1);
  recovered.journal->reset();
  // The first records were overwritten: asking for them is a loss, not a skip.
  auto from_zero = Recover(options, 0);
  ASSERT_FALSE(from_zero.journal);
  EXPECT_EQ(from_zero.journal.error().code(), ErrorCode::kCorruption);
}

// A corrupt first record leaves its segment free; the next round overwrites it
// with same-size records, so the older round's records that follow carry the
// very LSNs the new round would use next. Only the round tells them apart.
TEST(JournalTest, OlderRoundWithMatchingLsnsIsNeverReplayed) {
  TempDir dir;
  const JournalOptions options = Options(dir.path());
  const Records old_round = WriteJournal(options, std::vector<size_t>(6, 80));
  ASSERT_FALSE(HasFailure());
  Corrupt(options.dir, old_round[0].second, Journal::kHeaderSize + 3);
  Records model;
  {
    auto r = Recover(options, 0);
    ASSERT_TRUE(r.journal) << Why(r.journal);
    EXPECT_TRUE(r.replayed.empty());
    ASSERT_EQ((*r.journal)->next_lsn(), 1u);
    for (uint64_t i = 0; i < 2; ++i) ASSERT_TRUE(Append(**r.journal, model, Payload(100 + i, 80)));
    ASSERT_TRUE((*r.journal)->Sync());
    EXPECT_EQ((*r.journal)->stats().segments_reused, 1u);  // written over the old round
  }
  auto r = Recover(options, 0);
  ASSERT_TRUE(r.journal) << Why(r.journal);
  EXPECT_EQ(r.replayed, model);
  EXPECT_EQ((*r.journal)->next_lsn(), 3u);
}

// A record torn mid-segment strands the intact records after it. Whether the
// next round goes to a new segment (checkpoint 0) or over this one (checkpoint
// = what was replayed), only the records before the tear and those appended
// since come back, never the stranded ones.
TEST(JournalTest, RecordsStrandedBehindATearAreNeverReplayed) {
  for (uint64_t checkpoint : {0, 3}) {
    SCOPED_TRACE(checkpoint);
    TempDir dir;
    JournalOptions options = Options(dir.path());
    options.checkpoint = [checkpoint] { return checkpoint; };
    Records model = WriteJournal(options, std::vector<size_t>(8, 80));
    ASSERT_FALSE(HasFailure());
    Corrupt(options.dir, model[3].second, 9);  // the LSN of record 4
    model.resize(3);
    {
      auto r = Recover(options, checkpoint);
      ASSERT_TRUE(r.journal) << Why(r.journal);
      EXPECT_EQ(r.replayed, Above(model, checkpoint));
      for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(Append(**r.journal, model, Payload(100 + i, 80)));
      ASSERT_TRUE((*r.journal)->Sync());
      EXPECT_EQ((*r.journal)->stats().segments_reused, checkpoint == 0 ? 0u : 1u);
    }
    auto r = Recover(options, checkpoint);
    ASSERT_TRUE(r.journal) << Why(r.journal);
    EXPECT_EQ(r.replayed, Above(model, checkpoint));
    EXPECT_EQ((*r.journal)->next_lsn(), 10u);
  }
}

// A record larger than a segment gets a segment grown to fit; when that
// segment is reused for small records, its old tail is not replayed.
TEST(JournalTest, RecordLargerThanASegmentIsKeptWhole) {
  TempDir dir;
  uint64_t checkpoint = 0;
  JournalOptions options = Options(dir.path(), 4096);
  options.checkpoint = [&checkpoint] { return checkpoint; };
  Records model = WriteJournal(options, {20'000, 100, 10'000, 100, 100});
  ASSERT_FALSE(HasFailure());
  EXPECT_GE(fs::file_size(SegmentFiles(options.dir).at(0)), 20'000 + Journal::kHeaderSize);
  {
    auto r = Recover(options, 0);
    ASSERT_TRUE(r.journal) << Why(r.journal);
    EXPECT_EQ(r.replayed, model);
    checkpoint = model.back().first;
    for (uint64_t i = 0; i < 50; ++i) ASSERT_TRUE(Append(**r.journal, model, Payload(1000 + i, 100)));
    ASSERT_TRUE((*r.journal)->Sync());
    EXPECT_GT((*r.journal)->stats().segments_reused, 0u);
  }
  EXPECT_EQ(Replay(options, checkpoint), Above(model, checkpoint));
}

// --- The directory ------------------------------------------------------------

// Segments full of garbage (random bytes, or a valid header whose length
// points past the end) hold no records: recovery replays nothing, fails
// nothing, and overwrites them like any free segment.
TEST(JournalTest, GarbageSegmentsHoldNoRecords) {
  TempDir dir;
  const JournalOptions options = Options(dir.path());
  fs::create_directories(options.dir);
  std::mt19937_64 rng(7);
  for (int id = 1; id <= 20; ++id) {
    std::string bytes(rng() % 5000, '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    if (id % 4 == 0 && bytes.size() >= Journal::kHeaderSize) {
      for (int i = 4; i < 8; ++i) bytes[i] = '\xff';  // length far beyond the file
      bytes[8] = 1;                                      // lsn 1
      for (int i = 9; i < 16; ++i) bytes[i] = 0;
    }
    char name[32];
    std::snprintf(name, sizeof name, "%08d.journal", id);
    WriteFile(options.dir / name, bytes);
  }
  Records model;
  {
    auto r = Recover(options, 0);
    ASSERT_TRUE(r.journal) << Why(r.journal);
    EXPECT_TRUE(r.replayed.empty());
    for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(Append(**r.journal, model, Payload(i, 300)));
    ASSERT_TRUE((*r.journal)->Sync());
    EXPECT_EQ((*r.journal)->stats().segments_created, 0u) << "a free garbage segment should be reused";
  }
  EXPECT_EQ(Replay(options, 0), model);
}

// Files not named as segments are neither read nor touched, even when they
// hold records that would pass every check.
TEST(JournalTest, FilesThatAreNotSegmentsAreIgnored) {
  TempDir dir;
  JournalOptions other = Options(dir.path());
  other.dir = dir.path() / "other";
  WriteJournal(other, std::vector<size_t>(5, 30), 500);
  ASSERT_FALSE(HasFailure());
  const std::string valid = ReadFile(SegmentFiles(other.dir).at(0));
  uint64_t checkpoint = 0;
  JournalOptions options = Options(dir.path(), 1024);
  options.spare_segments = 0;
  options.checkpoint = [&checkpoint] { return checkpoint; };
  fs::create_directories(options.dir);
  const std::vector<std::string> strays = {"notes.txt", "abc.journal", ".journal", "00000000.journal", "journal",
                                           "00000001.journal.old", "x00000002.journal", "-3.journal"};
  for (const auto& name : strays) WriteFile(options.dir / name, valid);
  Records model;
  {
    auto r = Recover(options, 0);
    ASSERT_TRUE(r.journal) << Why(r.journal);
    EXPECT_TRUE(r.replayed.empty());
    EXPECT_EQ((*r.journal)->next_lsn(), 1u);
    for (uint64_t i = 0; i < 100; ++i) {
      ASSERT_TRUE(Append(**r.journal, model, Payload(i, 100)));
      checkpoint = model.back().first - 10;  // so segments are reused and deleted
    }
  }
  auto r = Recover(options, checkpoint);
  ASSERT_TRUE(r.journal) << Why(r.journal);
  EXPECT_EQ(r.replayed, Above(model, checkpoint));
  for (const auto& name : strays) EXPECT_EQ(ReadFile(options.dir / name), valid) << name;
}

// Names the journal never writes ("1.journal", "000000009.journal") may parse
// to a segment id; recovery must not then read the segment of that id instead
// (a second time, or one that does not exist).
TEST(JournalTest, NamesThatOnlyParseAsSegmentIdsAreIgnored) {
  TempDir dir;
  const JournalOptions options = Options(dir.path());
  const Records model = WriteJournal(options, std::vector<size_t>(5, 30));
  ASSERT_FALSE(HasFailure());
  WriteFile(options.dir / "1.journal", "not a segment");
  WriteFile(options.dir / "000000009.journal", "not a segment");
  EXPECT_EQ(Replay(options, 0), model);
}

// --- Failures and crashes -----------------------------------------------------

// A write or sync that fails for lack of space fails with kNoSpace; the
// journal then refuses every append and sync until recovered. The record
// whose write or sync failed is retracted (its group was refused); nothing
// else is lost: a restart replays every other appended record, a crash at
// least the synced ones.
TEST(JournalTest, DiskFullFailsTheCallAndEveryLaterOne) {
  for (bool sync_fails : {false, true}) {
    SCOPED_TRACE(sync_fails ? "sync fails" : "write fails");
    TempDir dir;
    CrashableFileSystem fs;
    JournalOptions options = Options(dir.path());
    options.fs = &fs;
    Records synced, appended;
    {
      auto r = Recover(options, 0);
      ASSERT_TRUE(r.journal) << Why(r.journal);
      Journal& journal = **r.journal;
      for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(Append(journal, appended, Payload(i, 100)));
      ASSERT_TRUE(journal.Sync());
      synced = appended;
      for (uint64_t i = 10; i < 13; ++i) ASSERT_TRUE(Append(journal, appended, Payload(i, 100)));
      (sync_fails ? fs.full_syncs : fs.full_writes) = true;
      auto failed = sync_fails ? journal.Sync() : journal.Append(Payload(99, 100));
      ASSERT_FALSE(failed);
      EXPECT_EQ(failed.error().code(), ErrorCode::kNoSpace);
      if (sync_fails) appended.pop_back();  // the group the failed sync was for
      fs.full_syncs = fs.full_writes = false;
      EXPECT_FALSE(journal.Append(Payload(98, 100)));
      EXPECT_FALSE(journal.Sync());
      EXPECT_FALSE(journal.Append(Payload(97, 100)));
    }
    {
      auto r = Recover(options, 0);
      ASSERT_TRUE(r.journal) << Why(r.journal);
      EXPECT_EQ(r.replayed, appended);
      ASSERT_TRUE(Append(**r.journal, appended, Payload(14, 100)));  // usable again once recovered
    }
    fs.Crash();
    EXPECT_EQ(Replay(options, 0), synced);
  }
}

// A record whose group the caller could not apply after all is retracted,
// even once synced: no recovery replays it, the records before it stay, and
// the journal refuses appends until it is abandoned.
TEST(JournalTest, RetractedRecordIsNeverReplayed) {
  TempDir dir;
  const JournalOptions options = Options(dir.path());
  Records appended, kept;
  {
    auto r = Recover(options, 0);
    ASSERT_TRUE(r.journal) << Why(r.journal);
    Journal& journal = **r.journal;
    for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(Append(journal, appended, Payload(i, 200)));
    ASSERT_TRUE(journal.Sync());
    kept = appended;
    ASSERT_TRUE(Append(journal, appended, Payload(50, 200)));
    ASSERT_TRUE(journal.Sync());
    ASSERT_TRUE(journal.Retract());
    EXPECT_FALSE(journal.Append(Payload(51, 200)));
    const uint64_t checkpoint = journal.Abandon();
    EXPECT_EQ(checkpoint, 7u) << "covers the retracted LSN 6; the next record is 8";
  }
  EXPECT_EQ(Replay(options, 0), kept);
}

// After Sync, a power loss keeps every appended record, also those appended
// to a segment that filled before the sync.
TEST(JournalTest, SyncedRecordsSurviveACrash) {
  TempDir dir;
  CrashableFileSystem fs;
  JournalOptions options = Options(dir.path(), 4096);  // 12 records of 300 bytes a segment
  options.fs = &fs;
  Records synced, appended;
  {
    auto r = Recover(options, 0);
    ASSERT_TRUE(r.journal) << Why(r.journal);
    for (uint64_t i = 0; i < 40; ++i) {
      ASSERT_TRUE(Append(**r.journal, appended, Payload(i, 300)));
      if (i % 5 == 4) {
        ASSERT_TRUE((*r.journal)->Sync());
        synced = appended;
      }
    }
    ASSERT_TRUE(Append(**r.journal, appended, Payload(99, 300)));  // not synced: may be lost
  }
  fs.Crash();
  EXPECT_EQ(Replay(options, 0), synced);
}

// Random appends, syncs, checkpoints and restarts against a model. A clean
// restart replays every record above the checkpoint; a crash (each unsynced
// write kept, torn or lost) every synced one, then perhaps some of those
// appended since, each as appended: never a record of an older round or an
// older use of its LSN.
void RunRandomized(bool crashes) {
  TempDir dir;
  CrashableFileSystem fs;
  std::mt19937_64 rng(crashes ? 20240611 : 1337);
  uint64_t checkpoint = 0;
  JournalOptions options = Options(dir.path(), 2048);
  options.spare_segments = 1;
  options.fs = &fs;
  options.checkpoint = [&checkpoint] { return checkpoint; };
  Records durable, unsynced;
  auto r = Recover(options, 0);
  ASSERT_TRUE(r.journal) << Why(r.journal);
  std::unique_ptr<Journal> journal = std::move(*r.journal);
  for (int step = 0; step < 400; ++step) {
    SCOPED_TRACE(step);
    for (uint64_t n = rng() % 8; n > 0; --n) {
      const size_t size = rng() % 16 == 0 ? rng() % 5000 : rng() % 200;
      ASSERT_TRUE(Append(*journal, unsynced, Payload(rng(), size)));
    }
    if (rng() % 2) {
      ASSERT_TRUE(journal->Sync());
      durable.insert(durable.end(), unsynced.begin(), unsynced.end());
      unsynced.clear();
    }
    if (rng() % 4 == 0 && !durable.empty()) checkpoint = std::max(checkpoint, durable[rng() % durable.size()].first);
    if (rng() % 6 != 0) continue;
    journal.reset();
    if (crashes) fs.Crash(&rng);
    auto recovered = Recover(options, checkpoint);
    ASSERT_TRUE(recovered.journal) << Why(recovered.journal);
    const Records want = Above(durable, checkpoint);
    const Records& got = recovered.replayed;
    ASSERT_GE(got.size(), want.size());
    ASSERT_EQ(Records(got.begin(), got.begin() + want.size()), want);
    const Records extra(got.begin() + want.size(), got.end());
    ASSERT_LE(extra.size(), unsynced.size());
    ASSERT_EQ(extra, Records(unsynced.begin(), unsynced.begin() + extra.size()));
    if (!crashes) {
      ASSERT_EQ(extra, unsynced);
    }
    durable.insert(durable.end(), extra.begin(), extra.end());
    unsynced.clear();
    journal = std::move(*recovered.journal);
    ASSERT_EQ(journal->next_lsn(), std::max(durable.empty() ? 0 : durable.back().first, checkpoint) + 1);
  }
}

TEST(JournalTest, RandomizedRestartsAgreeWithTheModel) { RunRandomized(false); }
TEST(JournalTest, RandomizedCrashesAgreeWithTheModel) { RunRandomized(true); }

}  // namespace
}  // namespace hikyaku::spool
