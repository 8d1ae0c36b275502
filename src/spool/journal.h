// The spool's journal: its write-ahead log, in segment files that are
// overwritten in place once their records are durable elsewhere.
//
// Why not RocksDB's own WAL: every group commit ends in an fdatasync, and an
// fdatasync of a file that grows must also commit the new file size (and
// block allocation) through the file system's journal: on ext4 that doubles
// the cost of the sync that every acknowledgement waits for. Overwriting
// blocks a file already has needs no metadata. RocksDB 7.8 can reuse WAL
// files only in a recovery mode that skips corrupt records and crashes
// (docs/spool.md), so the spool keeps its own log and writes to RocksDB with
// the WAL disabled; RocksDB's flushes are its checkpoints.
//
// Format (little-endian): a segment is a sequence of records, each
//   crc32c(4, masked) | length(4) | lsn(8) | round(8) | payload(length)
// with the CRC over everything after itself. LSNs are consecutive, across
// segments and restarts. A segment is written from offset 0 in one *round*
// (a random 64-bit tag chosen when writing starts at offset 0); its valid
// records are the longest prefix whose checksums hold, whose round is the
// first record's and whose LSNs follow one another. Whatever lies beyond
// belongs to an older round, or to a write that never completed.
//
// Recovery (Recover): records up to `checkpoint` (the LSN the database holds
// durably) are skipped; the others must form one unbroken run starting at
// checkpoint + 1 and are replayed in order. A missing LSN in that run means
// a synced record was lost, and recovery fails rather than skip it.
// Writing then starts a new round (so a torn tail is never extended).
//
// A segment may be overwritten once all of its records are at or below the
// checkpoint: the caller provides the checkpoint (JournalOptions.checkpoint)
// and the journal asks for it only when a segment fills.
//
// Thread-safety: none; the spool's commit thread owns the journal.
#pragma once

#include <rocksdb/file_system.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace hikyaku::spool {

struct JournalOptions {
  std::filesystem::path dir;  // created if missing
  // A segment is filled up to this size before the next one is used; one
  // record larger than this gets a segment of its own, grown to fit it.
  uint64_t segment_size = 16ull << 20;
  // Free segments kept for reuse beyond the ones in use; more are deleted.
  size_t spare_segments = 4;
  // The highest LSN whose effects are durable outside the journal (the
  // database's flushed state). Asked when a segment fills; 0 if unknown.
  std::function<uint64_t()> checkpoint;
  rocksdb::FileSystem* fs = nullptr;  // nullptr: the default file system
};

struct JournalStats {
  uint64_t records = 0;   // appended since open
  uint64_t bytes = 0;     // written since open, headers included
  uint64_t syncs = 0;
  uint64_t segments_created = 0;  // new files (writes that grow a file)
  uint64_t segments_reused = 0;   // rounds started over an existing file
  uint64_t replayed = 0;          // records replayed by Recover
};

class Journal {
 public:
  // Called for each record to replay, in LSN order.
  using Replay = std::function<Result<void>(uint64_t lsn, std::string_view payload)>;

  // Reads every segment in options.dir and replays each record above
  // `checkpoint` (see the file comment). Fails with kCorruption if
  // acknowledged records are missing, kIo if a segment cannot be read, and
  // with replay's error if it fails.
  static Result<std::unique_ptr<Journal>> Recover(JournalOptions options, uint64_t checkpoint,
                                                  const Replay& replay);

  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // The LSN the next Append gives its record.
  uint64_t next_lsn() const { return next_lsn_; }

  // Writes `payload` as record next_lsn() to the file (not yet durable).
  // After a failure the journal refuses further appends until Abandon().
  Result<void> Append(std::string_view payload);

  // Makes every appended record durable (fdatasync). On failure the last
  // record is retracted (see Retract): the caller syncs after each group.
  Result<void> Sync();

  // The last appended record belongs to a group that failed after all (its
  // Append or Sync failed, or the caller could not apply it): overwrites its
  // header with zeroes and syncs, so that no recovery replays it, whatever
  // of it reached the disk. Append and Sync do this themselves when they
  // fail. Overwriting needs no new blocks, so it works on a full disk.
  Result<void> Retract();

  // After a failed Append or Sync: forgets the current segment, skips one
  // LSN and clears the failure. Returns the LSN the caller must make its
  // durable checkpoint before appending again: it is at or above every
  // record in the journal, so a record whose write failed half-way (or was
  // written but refused) is never replayed, and the next record, in a new
  // round, continues the run recovery expects.
  uint64_t Abandon();

  const JournalStats& stats() const { return stats_; }

  // The record header's size.
  static constexpr size_t kHeaderSize = 24;

 private:
  struct Segment {
    uint64_t id = 0;
    uint64_t last_lsn = 0;  // highest LSN it holds; 0 if none
  };

  explicit Journal(JournalOptions options);
  Result<void> StartRound();
  std::string SegmentPath(uint64_t id) const;
  rocksdb::FileSystem& fs() const { return *options_.fs; }

  JournalOptions options_;
  std::unique_ptr<rocksdb::FSDirectory> dir_;
  std::vector<Segment> segments_;  // every segment file, in id order
  size_t current_ = 0;             // index into segments_; valid when file_
  std::unique_ptr<rocksdb::FSRandomRWFile> file_;
  uint64_t offset_ = 0;  // where the next record goes in the current segment
  uint64_t round_ = 0;
  uint64_t next_lsn_ = 1;
  bool failed_ = false;
  bool unsynced_ = false;  // appended since the last Sync
  std::optional<uint64_t> last_record_;  // offset of the last record written in the current segment
  std::string buffer_;  // one record, header and payload, for one write
  JournalStats stats_;
};

}  // namespace hikyaku::spool
