// The spool's journal (format and recovery argument in journal.h and
// docs/spool.md).
#include "spool/journal.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>

#include "spool/crc32c.h"

namespace hikyaku::spool {

namespace {

constexpr char kSuffix[] = ".journal";
// A record's payload is one commit group; anything claiming more than this
// is a damaged length field, not a record.
constexpr uint64_t kMaxPayload = 1ull << 31;

// Masked as RocksDB and LevelDB do, so that a CRC stored inside data that is
// itself checksummed does not make the outer checksum degenerate.
uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

void PutFixed32(char* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(v >> (8 * i));
}
void PutFixed64(char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(v >> (8 * i));
}
uint32_t GetFixed32(const char* in) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}
uint64_t GetFixed64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

Error ToError(const rocksdb::IOStatus& s, std::string_view what) {
  std::string message = "spool: journal: ";
  message += what;
  message += ": ";
  message += s.ToString();
  if (s.IsNoSpace() || s.subcode() == rocksdb::Status::kNoSpace)
    return Error(ErrorCode::kNoSpace, std::move(message));
  return Error(ErrorCode::kIo, std::move(message));
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
    const uint64_t length = GetFixed32(header + 4);
    const uint64_t lsn = GetFixed64(header + 8);
    const uint64_t record_round = GetFixed64(header + 16);
    if (length > kMaxPayload || length > data.size() - offset - Journal::kHeaderSize) break;
    if (lsn == 0 || (out.count > 0 && (record_round != round || lsn != out.last_lsn + 1))) break;
    const uint32_t crc = Crc32cExtend(0, header + 4, Journal::kHeaderSize - 4 + length);
    if (Mask(crc) != GetFixed32(header)) break;
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

Result<std::string> ReadWhole(rocksdb::FileSystem& fs, const std::string& path) {
  uint64_t size = 0;
  rocksdb::IOStatus s = fs.GetFileSize(path, rocksdb::IOOptions(), &size, nullptr);
  if (!s.ok()) return tl::unexpected(ToError(s, "size of " + path));
  std::unique_ptr<rocksdb::FSRandomAccessFile> file;
  s = fs.NewRandomAccessFile(path, rocksdb::FileOptions(), &file, nullptr);
  if (!s.ok()) return tl::unexpected(ToError(s, "opening " + path));
  std::string data(size, '\0');
  size_t done = 0;
  while (done < size) {
    rocksdb::Slice got;
    s = file->Read(done, size - done, rocksdb::IOOptions(), &got, data.data() + done, nullptr);
    if (!s.ok()) return tl::unexpected(ToError(s, "reading " + path));
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
  char expected[32];
  std::snprintf(expected, sizeof expected, "%08llu%s", static_cast<unsigned long long>(id), kSuffix);
  if (name != expected) return std::nullopt;
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

std::string Journal::SegmentPath(uint64_t id) const {
  char name[32];
  std::snprintf(name, sizeof name, "%08llu%s", static_cast<unsigned long long>(id), kSuffix);
  return (options_.dir / name).string();
}

Result<std::unique_ptr<Journal>> Journal::Recover(JournalOptions options, uint64_t checkpoint, const Replay& replay) {
  std::unique_ptr<Journal> journal(new Journal(std::move(options)));
  rocksdb::FileSystem& fs = *journal->options_.fs;
  const std::string dir = journal->options_.dir.string();
  rocksdb::IOStatus s = fs.CreateDirIfMissing(dir, rocksdb::IOOptions(), nullptr);
  if (!s.ok()) return tl::unexpected(ToError(s, "creating " + dir));
  s = fs.NewDirectory(dir, rocksdb::IOOptions(), &journal->dir_, nullptr);
  if (!s.ok()) return tl::unexpected(ToError(s, "opening " + dir));
  std::vector<std::string> children;
  s = fs.GetChildren(dir, rocksdb::IOOptions(), &children, nullptr);
  if (!s.ok()) return tl::unexpected(ToError(s, "listing " + dir));

  // Pass 1: what each segment holds.
  struct Found {
    uint64_t id;
    ScanResult scan;
  };
  std::vector<Found> found;
  uint64_t highest = checkpoint;
  for (const auto& name : children) {
    auto id = SegmentId(name);
    if (!id) continue;
    auto data = ReadWhole(fs, journal->SegmentPath(*id));
    if (!data) return tl::unexpected(data.error());
    Found f{*id, ScanSegment(*data, [](uint64_t, std::string_view) {})};
    highest = std::max(highest, f.scan.last_lsn);
    found.push_back(f);
    journal->segments_.push_back(Segment{*id, f.scan.last_lsn});
  }
  std::sort(journal->segments_.begin(), journal->segments_.end(),
            [](const Segment& a, const Segment& b) { return a.id < b.id; });

  // Pass 2: the segments with records above the checkpoint, in LSN order,
  // must continue one another exactly.
  std::vector<Found> live;
  for (const auto& f : found)
    if (f.scan.count > 0 && f.scan.last_lsn > checkpoint) live.push_back(f);
  std::sort(live.begin(), live.end(),
            [](const Found& a, const Found& b) { return a.scan.first_lsn < b.scan.first_lsn; });
  uint64_t expected = checkpoint + 1;
  for (const auto& f : live) {
    const std::string path = journal->SegmentPath(f.id);
    if (f.scan.first_lsn > expected)
      return Fail(ErrorCode::kCorruption, "spool: journal: records " + std::to_string(expected) + " to " +
                                              std::to_string(f.scan.first_lsn - 1) + " are missing (before " +
                                              path + ")");
    if (f.scan.first_lsn < expected && f.scan.first_lsn > checkpoint)
      return Fail(ErrorCode::kCorruption, "spool: journal: " + path + " repeats records from " +
                                              std::to_string(f.scan.first_lsn));
    auto data = ReadWhole(fs, path);
    if (!data) return tl::unexpected(data.error());
    std::optional<Error> failed;
    uint64_t replayed_to = expected - 1;
    ScanSegment(*data, [&](uint64_t lsn, std::string_view payload) {
      if (failed || lsn < expected) return;
      if (auto r = replay(lsn, payload); !r) {
        failed = r.error();
        return;
      }
      replayed_to = lsn;
      ++journal->stats_.replayed;
    });
    if (failed) return tl::unexpected(*failed);
    if (replayed_to != f.scan.last_lsn)  // the file changed between the passes
      return Fail(ErrorCode::kIo, "spool: journal: " + path + " changed while it was being recovered");
    expected = f.scan.last_lsn + 1;
  }
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
    if (!s.ok()) return tl::unexpected(ToError(s, "closing " + SegmentPath(current_id)));
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
    if (!s.ok()) return tl::unexpected(ToError(s, "creating " + path));
  }
  s = fs().NewRandomRWFile(path, rocksdb::FileOptions(), &file_, nullptr);
  if (!s.ok()) return tl::unexpected(ToError(s, "opening " + path));
  if (created) {
    // The new name must survive a crash as much as the records synced into
    // the file will.
    s = dir_->Fsync(rocksdb::IOOptions(), nullptr);
    if (!s.ok()) return tl::unexpected(ToError(s, "syncing " + options_.dir.string()));
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
  PutFixed32(header + 4, static_cast<uint32_t>(payload.size()));
  PutFixed64(header + 8, next_lsn_);
  PutFixed64(header + 16, round_);
  std::memcpy(header + kHeaderSize, payload.data(), payload.size());
  PutFixed32(header, Mask(Crc32cExtend(0, header + 4, size - 4)));
  last_record_ = offset_;
  rocksdb::IOStatus s = file_->Write(offset_, rocksdb::Slice(buffer_), rocksdb::IOOptions(), nullptr);
  if (!s.ok()) {
    failed_ = true;
    (void)Retract();  // part of it may be in the file
    return tl::unexpected(ToError(s, "writing " + SegmentPath(segments_[current_].id)));
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
    return tl::unexpected(ToError(s, "syncing " + SegmentPath(segments_[current_].id)));
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
  if (!s.ok()) return tl::unexpected(ToError(s, "retracting a record in " + path));
  s = file_->Sync(rocksdb::IOOptions(), nullptr);
  if (!s.ok()) return tl::unexpected(ToError(s, "syncing " + path));
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
