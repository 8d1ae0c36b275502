// The spool's journal (format and recovery argument in journal.h and
// docs/spool.md).
#include "spool/journal.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <random>

#include "spool/codec.h"
#include "spool/crc32c.h"
#include "spool/status.h"

namespace hikyaku::spool {

namespace {

constexpr char kSuffix[] = ".journal";
// A record's payload is one commit group; anything claiming more than this
// is a damaged length field, not a record.
constexpr uint64_t kMaxPayload = 1ull << 31;

// Masked as RocksDB and LevelDB do, so that a CRC stored inside data that is
// itself checksummed does not make the outer checksum degenerate.
uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

Error JournalError(const rocksdb::Status& s, const std::string& what) { return ToError(s, "journal: " + what); }

std::string SegmentName(uint64_t id) {
  char name[32];
  std::snprintf(name, sizeof name, "%08llu%s", static_cast<unsigned long long>(id), kSuffix);
  return name;
}

// The valid prefix of one segment's bytes (see journal.h): calls `visit`
// for each record and returns how many there were and their LSN range.
struct ScanResult {
  uint64_t count = 0;
  uint64_t first_lsn = 0;
  uint64_t last_lsn = 0;
};
template <typename Visit>
ScanResult ScanSegment(std::string_view data, Visit&& visit) {
  ScanResult out;
  uint64_t round = 0;
  size_t offset = 0;
  while (data.size() - offset >= Journal::kHeaderSize) {
    const char* header = data.data() + offset;
    const uint64_t length = DecodeFixed32(header + 4);
    const uint64_t lsn = DecodeFixed64(header + 8);
    const uint64_t record_round = DecodeFixed64(header + 16);
    if (length > kMaxPayload || length > data.size() - offset - Journal::kHeaderSize) break;
    if (lsn == 0 || (out.count > 0 && (record_round != round || lsn != out.last_lsn + 1))) break;
    const uint32_t crc = Crc32cExtend(0, header + 4, Journal::kHeaderSize - 4 + length);
    if (Mask(crc) != DecodeFixed32(header)) break;
    if (out.count == 0) {
      round = record_round;
      out.first_lsn = lsn;
    }
    out.last_lsn = lsn;
    ++out.count;
    visit(lsn, std::string_view(header + Journal::kHeaderSize, length));
    offset += Journal::kHeaderSize + length;
  }
  return out;
}

// Up to `length` bytes of the file from `offset`: fewer where it ends.
Result<std::string> ReadRange(rocksdb::FileSystem& fs, const std::string& path, uint64_t offset,
                              uint64_t length = std::numeric_limits<uint64_t>::max()) {
  uint64_t size = 0;
  rocksdb::IOStatus s = fs.GetFileSize(path, rocksdb::IOOptions(), &size, nullptr);
  if (!s.ok()) return tl::unexpected(JournalError(s, "size of " + path));
  std::unique_ptr<rocksdb::FSRandomAccessFile> file;
  s = fs.NewRandomAccessFile(path, rocksdb::FileOptions(), &file, nullptr);
  if (!s.ok()) return tl::unexpected(JournalError(s, "opening " + path));
  std::string data(offset < size ? std::min(length, size - offset) : 0, '\0');
  size_t done = 0;
  while (done < data.size()) {
    rocksdb::Slice got;
    s = file->Read(offset + done, data.size() - done, rocksdb::IOOptions(), &got, data.data() + done, nullptr);
    if (!s.ok()) return tl::unexpected(JournalError(s, "reading " + path));
    if (got.empty()) break;  // shorter than its size said: the rest is not there
    if (got.data() != data.data() + done) std::memmove(data.data() + done, got.data(), got.size());
    done += got.size();
  }
  data.resize(done);
  return data;
}

// "00000042.journal" -> 42; nullopt for any other name.
std::optional<uint64_t> SegmentId(std::string_view name) {
  const size_t suffix = sizeof kSuffix - 1;
  if (name.size() <= suffix || name.substr(name.size() - suffix) != kSuffix) return std::nullopt;
  uint64_t id = 0;
  const char* end = name.data() + name.size() - suffix;
  auto [ptr, ec] = std::from_chars(name.data(), end, id);
  if (ec != std::errc() || ptr != end || id == 0) return std::nullopt;
  // Only the name the journal itself writes for that id: "1.journal" next
  // to "00000001.journal" is not a second copy of segment 1.
  if (name != SegmentName(id)) return std::nullopt;
  return id;
}

uint64_t NewRound() {
  static thread_local std::mt19937_64 engine{std::random_device{}()};
  return engine();
}

}  // namespace

Journal::Journal(JournalOptions options) : options_(std::move(options)) {
  if (options_.fs == nullptr) options_.fs = rocksdb::FileSystem::Default().get();
}

Journal::~Journal() {
  if (file_) file_->Close(rocksdb::IOOptions(), nullptr).PermitUncheckedError();
}

std::string Journal::SegmentPath(uint64_t id) const { return (options_.dir / SegmentName(id)).string(); }

Result<std::unique_ptr<Journal>> Journal::Recover(JournalOptions options, uint64_t checkpoint, const Replay& replay) {
  std::unique_ptr<Journal> journal(new Journal(std::move(options)));
  rocksdb::FileSystem& fs = *journal->options_.fs;
  const std::string dir = journal->options_.dir.string();
  rocksdb::IOStatus s = fs.CreateDirIfMissing(dir, rocksdb::IOOptions(), nullptr);
  if (!s.ok()) return tl::unexpected(JournalError(s, "creating " + dir));
  s = fs.NewDirectory(dir, rocksdb::IOOptions(), &journal->dir_, nullptr);
  if (!s.ok()) return tl::unexpected(JournalError(s, "opening " + dir));
  std::vector<std::string> children;
  s = fs.GetChildren(dir, rocksdb::IOOptions(), &children, nullptr);
  if (!s.ok()) return tl::unexpected(JournalError(s, "listing " + dir));

  // Segments in the order of their first records' LSNs (each file's first
  // record only), so that one read of each file replays the run in order.
  struct Found {
    uint64_t id;
    uint64_t first_lsn;  // 0: no valid first record, nothing to read
  };
  std::vector<Found> found;
  for (const auto& name : children) {
    auto id = SegmentId(name);
    if (!id) continue;
    const std::string path = journal->SegmentPath(*id);
    auto header = ReadRange(fs, path, 0, kHeaderSize);
    if (!header) return tl::unexpected(header.error());
    uint64_t first_lsn = 0;
    if (header->size() == kHeaderSize) {
      auto first = ReadRange(fs, path, 0, kHeaderSize + DecodeFixed32(header->data() + 4));
      if (!first) return tl::unexpected(first.error());
      first_lsn = ScanSegment(*first, [](uint64_t, std::string_view) {}).first_lsn;
    }
    found.push_back(Found{*id, first_lsn});
  }
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.first_lsn < b.first_lsn; });

  // The records above the checkpoint must continue one another exactly.
  uint64_t highest = checkpoint;
  uint64_t expected = checkpoint + 1;
  for (const auto& f : found) {
    Segment segment{f.id, 0};
    if (f.first_lsn != 0) {
      const std::string path = journal->SegmentPath(f.id);
      auto data = ReadRange(fs, path, 0);
      if (!data) return tl::unexpected(data.error());
      std::optional<Error> failed;
      segment.last_lsn = ScanSegment(*data, [&](uint64_t lsn, std::string_view payload) {
                           if (failed || lsn <= checkpoint) return;
                           if (lsn > expected) {
                             failed = Error(ErrorCode::kCorruption,
                                            "spool: journal: records " + std::to_string(expected) + " to " +
                                                std::to_string(lsn - 1) + " are missing (before " + path + ")");
                           } else if (lsn < expected) {
                             failed = Error(ErrorCode::kCorruption, "spool: journal: " + path +
                                                                        " repeats records from " + std::to_string(lsn));
                           } else if (auto r = replay(lsn, payload); !r) {
                             failed = r.error();
                           } else {
                             expected = lsn + 1;
                             ++journal->stats_.replayed;
                           }
                         }).last_lsn;
      if (failed) return tl::unexpected(*failed);
      highest = std::max(highest, segment.last_lsn);
    }
    journal->segments_.push_back(segment);
  }
  std::sort(journal->segments_.begin(), journal->segments_.end(),
            [](const Segment& a, const Segment& b) { return a.id < b.id; });
  journal->next_lsn_ = highest + 1;
  return journal;
}

Result<void> Journal::StartRound() {
  const uint64_t checkpoint = options_.checkpoint ? options_.checkpoint() : 0;
  const uint64_t current_id = file_ ? segments_[current_].id : 0;
  if (file_) {
    // Records appended since the last Sync must not depend on it being
    // this file's: recovery takes a missing record before a later segment
    // for a lost synced one.
    rocksdb::IOStatus s = unsynced_ ? file_->Sync(rocksdb::IOOptions(), nullptr) : rocksdb::IOStatus::OK();
    if (s.ok()) s = file_->Close(rocksdb::IOOptions(), nullptr);
    file_.reset();
    if (!s.ok()) return tl::unexpected(JournalError(s, "closing " + SegmentPath(current_id)));
  }

  // Free: every record in it is durable in the database. The lowest ids are
  // kept (and reused first); spares beyond the allowance are deleted.
  std::optional<uint64_t> chosen;
  size_t spares = 0;
  std::vector<uint64_t> excess;
  for (const auto& segment : segments_) {
    if (segment.id == current_id || segment.last_lsn > checkpoint) continue;
    if (!chosen) {
      chosen = segment.id;
    } else if (++spares > options_.spare_segments) {
      excess.push_back(segment.id);
    }
  }
  for (uint64_t id : excess) {
    // A deleted segment that comes back after a crash only holds records at
    // or below the checkpoint, which recovery skips.
    fs().DeleteFile(SegmentPath(id), rocksdb::IOOptions(), nullptr).PermitUncheckedError();
    std::erase_if(segments_, [id](const Segment& s) { return s.id == id; });
  }

  bool created = false;
  if (!chosen) {
    chosen = 1;
    for (const auto& segment : segments_) chosen = std::max(*chosen, segment.id + 1);
    created = true;
  }
  const std::string path = SegmentPath(*chosen);
  rocksdb::IOStatus s;
  if (created) {
    // RocksDB's POSIX NewRandomRWFile opens only existing files.
    std::unique_ptr<rocksdb::FSWritableFile> creating;
    s = fs().NewWritableFile(path, rocksdb::FileOptions(), &creating, nullptr);
    if (s.ok()) s = creating->Close(rocksdb::IOOptions(), nullptr);
    if (!s.ok()) return tl::unexpected(JournalError(s, "creating " + path));
  }
  s = fs().NewRandomRWFile(path, rocksdb::FileOptions(), &file_, nullptr);
  if (!s.ok()) return tl::unexpected(JournalError(s, "opening " + path));
  if (created) {
    // The new name must survive a crash as much as the records synced into
    // the file will.
    s = dir_->Fsync(rocksdb::IOOptions(), nullptr);
    if (!s.ok()) return tl::unexpected(JournalError(s, "syncing " + options_.dir.string()));
    segments_.push_back(Segment{*chosen, 0});
    ++stats_.segments_created;
  } else {
    ++stats_.segments_reused;
  }
  for (size_t i = 0; i < segments_.size(); ++i)
    if (segments_[i].id == *chosen) current_ = i;
  segments_[current_].last_lsn = 0;
  offset_ = 0;
  last_record_.reset();
  round_ = NewRound();
  return {};
}

Result<void> Journal::Append(std::string_view payload) {
  if (failed_) return Fail(ErrorCode::kIo, "spool: journal: refused after an earlier write error");
  if (payload.size() > kMaxPayload) return Fail(ErrorCode::kInvalidArgument, "spool: journal: record too large");
  const uint64_t size = kHeaderSize + payload.size();
  if (!file_ || (offset_ > 0 && offset_ + size > options_.segment_size)) {
    if (auto r = StartRound(); !r) {
      failed_ = true;
      return r;
    }
  }
  buffer_.resize(size);
  char* header = buffer_.data();
  EncodeFixed32(header + 4, static_cast<uint32_t>(payload.size()));
  EncodeFixed64(header + 8, next_lsn_);
  EncodeFixed64(header + 16, round_);
  std::memcpy(header + kHeaderSize, payload.data(), payload.size());
  EncodeFixed32(header, Mask(Crc32cExtend(0, header + 4, size - 4)));
  last_record_ = offset_;
  rocksdb::IOStatus s = file_->Write(offset_, rocksdb::Slice(buffer_), rocksdb::IOOptions(), nullptr);
  if (!s.ok()) {
    failed_ = true;
    (void)Retract();  // part of it may be in the file
    return tl::unexpected(JournalError(s, "writing " + SegmentPath(segments_[current_].id)));
  }
  offset_ += size;
  unsynced_ = true;
  segments_[current_].last_lsn = next_lsn_++;
  ++stats_.records;
  stats_.bytes += size;
  return {};
}

Result<void> Journal::Sync() {
  if (failed_) return Fail(ErrorCode::kIo, "spool: journal: refused after an earlier write error");
  if (!file_) return {};
  rocksdb::IOStatus s = file_->Sync(rocksdb::IOOptions(), nullptr);
  if (!s.ok()) {
    failed_ = true;
    (void)Retract();  // the record is in the page cache, whole, and would survive a restart
    return tl::unexpected(JournalError(s, "syncing " + SegmentPath(segments_[current_].id)));
  }
  unsynced_ = false;
  ++stats_.syncs;
  return {};
}

Result<void> Journal::Retract() {
  failed_ = true;
  if (!file_ || !last_record_) return {};
  const std::string path = SegmentPath(segments_[current_].id);
  const char zeroes[kHeaderSize] = {};
  rocksdb::IOStatus s = file_->Write(*last_record_, rocksdb::Slice(zeroes, kHeaderSize), rocksdb::IOOptions(), nullptr);
  if (!s.ok()) return tl::unexpected(JournalError(s, "retracting a record in " + path));
  s = file_->Sync(rocksdb::IOOptions(), nullptr);
  if (!s.ok()) return tl::unexpected(JournalError(s, "syncing " + path));
  return {};
}

uint64_t Journal::Abandon() {
  if (file_) file_->Close(rocksdb::IOOptions(), nullptr).PermitUncheckedError();
  file_.reset();
  failed_ = false;
  unsynced_ = false;
  last_record_.reset();
  return next_lsn_++;
}

}  // namespace hikyaku::spool
