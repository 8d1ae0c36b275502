// The RocksDB spool. Format, group commit and the recovery argument are
// specified in docs/spool.md; this file says why each durability step is
// where it is.
#include "spool/rocksdb_spool.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <optional>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "spool/codec.h"
#include "spool/crc32c.h"
#include "spool/journal.h"
#include "spool/status.h"

namespace hikyaku::spool {

namespace {

constexpr char kContentFamily[] = "content";
constexpr char kMetaFamily[] = "meta";
constexpr char kRecipientsFamily[] = "recipients";
// In the default column family: the spool format version, written once when
// the spool is created. A spool written by a newer, incompatible hikyaku is
// refused instead of being misread.
constexpr char kFormatKey[] = "hikyaku-spool-format";
// 2: writes go through the spool's journal (journal/), RocksDB's WAL is off.
// 1: RocksDB's WAL; opening one upgrades it (RocksDB replays and flushes its
// WAL while opening, after which nothing lives only in a log).
constexpr char kFormatVersion[] = "2";
constexpr char kFormatVersionWal[] = "1";
// In the default column family: the LSN of the last journal record whose
// writes the database holds. Every group's batch sets it, so the flushed
// (persisted) value is the journal's checkpoint (docs/spool.md).
constexpr char kJournalLsnKey[] = "hikyaku-journal-lsn";

// Bodies at least this large go to blob files; smaller values (and all keys)
// stay in the LSM tree. 512 bytes: below it the 30-odd bytes of blob index
// plus a random read per delivery cost more than compacting the value.
constexpr uint64_t kMinBlobSize = 512;
// After a failed commit (disk full) the spool refuses writes until it has
// recovered; recovering flushes, so on a still-full disk it is expensive and
// pointless: try at most this often.
constexpr auto kResumeInterval = std::chrono::seconds(1);

Error Unavailable() { return Error(ErrorCode::kUnavailable, "spool: closed"); }

std::string EncodeLsn(uint64_t lsn) {
  std::string out(8, '\0');
  EncodeFixed64(out.data(), lsn);
  return out;
}

// The journal checkpoint as the database holds it; with kPersistedTier only
// what flushes made durable (the memtables, written with the WAL off, are
// skipped). 0 when never written.
Result<uint64_t> ReadCheckpoint(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family, rocksdb::ReadTier tier) {
  rocksdb::ReadOptions read;
  read.read_tier = tier;
  std::string value;
  rocksdb::Status s = db->Get(read, family, kJournalLsnKey, &value);
  if (s.IsNotFound()) return 0;
  if (!s.ok()) return tl::unexpected(ToError(s, "reading the journal checkpoint"));
  if (value.size() != 8) return Fail(ErrorCode::kCorruption, "spool: malformed journal checkpoint");
  return DecodeFixed64(value.data());
}

// Journal segments: a few per memtable, so segments free up at every flush.
uint64_t SegmentSize(const SpoolOptions& options) {
  return std::clamp<uint64_t>(options.memtable_size / 4, 1ull << 20, 32ull << 20);
}

Error Reopening() {
  return Error(ErrorCode::kUnavailable, "spool: database is being reopened after a write error");
}

// An open RocksDB instance, its column family handles (in the order
// default, content, meta, recipients) and the journal in front of it.
struct Database {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::unique_ptr<Journal> journal;

  void Close() {
    journal.reset();  // its checkpoint function reads db
    if (!db) return;
    for (auto* handle : handles) db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    handles.clear();
    db->Close().PermitUncheckedError();
    db.reset();
  }
};

rocksdb::ColumnFamilyOptions FamilyOptions(const SpoolOptions& options, bool blobs) {
  rocksdb::ColumnFamilyOptions cf;
  // Equal memtables for all families: with atomic_flush they are flushed
  // together anyway, and the content memtable is the one that fills.
  cf.write_buffer_size = options.memtable_size;
  cf.max_write_buffer_number = 3;  // one filling, up to two flushing: no stall on a burst
  cf.compression = rocksdb::kLZ4Compression;
  cf.level_compaction_dynamic_level_bytes = true;
  rocksdb::BlockBasedTableOptions table;
  // Bloom filters make the duplicate-id check and recipient lookups miss in
  // memory instead of reading a block per table file.
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  if (blobs) {
    // Bodies are written once, to a blob file, by the flush; compaction then
    // moves only the ~20-byte blob index, never the body (docs/spool.md).
    cf.enable_blob_files = true;
    cf.min_blob_size = kMinBlobSize;
    cf.blob_compression_type = rocksdb::kNoCompression;  // already zstd-compressed by the codec
    cf.enable_blob_garbage_collection = false;           // GC would rewrite live bodies
  }
  return cf;
}

// Opens the database and brings it up to date from the journal: every
// record above the database's checkpoint is replayed (up to
// `replay_limit`, the last LSN acknowledged, when the spool reopens after a
// failure: later records were refused), then the checkpoint is moved past
// every record in the journal and flushed, so that nothing is replayed
// twice and writing can start a new round.
Result<Database> OpenDatabase(const SpoolOptions& options, rocksdb::Env* env,
                              const std::shared_ptr<rocksdb::Statistics>& statistics,
                              uint64_t replay_limit = std::numeric_limits<uint64_t>::max()) {
  std::error_code ec;
  std::filesystem::create_directories(options.path, ec);
  if (ec) return Fail(ErrorCode::kIo, "spool: cannot create " + options.path.string() + ": " + ec.message());

  rocksdb::DBOptions db;
  if (env != nullptr) db.env = env;
  db.create_if_missing = true;
  db.create_missing_column_families = true;
  // The spool writes with RocksDB's WAL off (its journal is the log), so a
  // flush is what makes writes durable in the database: atomic_flush keeps
  // the families' flushed states one consistent prefix of the groups, the
  // checkpoint key (default family) included.
  db.atomic_flush = true;
  db.max_background_jobs = 2;
  // Memtables are not flushed at shutdown: the journal holds them and the
  // next open replays it, so a flush now would only move the same table
  // writes earlier.
  db.avoid_flush_during_shutdown = true;
  // For a format-1 spool's WAL: a torn last record belonged to a write that
  // was never acknowledged; stop replay there rather than refusing to open.
  db.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  db.bytes_per_sync = 1 << 20;  // smooth write-back of table and blob files
  db.keep_log_file_num = 4;
  db.max_log_file_size = 8 << 20;
  db.statistics = statistics;

  std::vector<rocksdb::ColumnFamilyDescriptor> families = {
      {rocksdb::kDefaultColumnFamilyName, FamilyOptions(options, false)},
      {kContentFamily, FamilyOptions(options, true)},
      {kMetaFamily, FamilyOptions(options, false)},
      {kRecipientsFamily, FamilyOptions(options, false)},
  };
  Database out;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db, options.path.string(), families, &out.handles, &raw);
  if (!s.ok()) return tl::unexpected(ToError(s, "opening " + options.path.string()));
  out.db.reset(raw);
  auto close_on_error = [&](Error error) {
    out.Close();
    return tl::unexpected(std::move(error));
  };

  rocksdb::WriteOptions unlogged;
  unlogged.disableWAL = true;
  bool changed = false;  // something only in memtables that must be flushed
  std::string format;
  s = out.db->Get(rocksdb::ReadOptions(), out.handles[0], kFormatKey, &format);
  if (s.IsNotFound()) {
    // A new spool, unless it already holds messages: then the marker was
    // lost and guessing the format would risk misreading every record.
    std::unique_ptr<rocksdb::Iterator> it(out.db->NewIterator(rocksdb::ReadOptions(), out.handles[2]));
    it->SeekToFirst();
    const bool has_messages = it->Valid() || !it->status().ok();
    it.reset();
    if (has_messages)
      return close_on_error(Error(ErrorCode::kCorruption,
                                  "spool: " + options.path.string() + " holds messages but no format marker"));
    changed = true;
  } else if (!s.ok()) {
    return close_on_error(ToError(s, "reading the format marker"));
  } else if (format == kFormatVersionWal) {
    // Upgrade: make sure what the WAL replay recovered is in table files
    // before the WAL stops being written.
    rocksdb::FlushOptions flush;
    s = out.db->Flush(flush, out.handles);
    if (!s.ok()) return close_on_error(ToError(s, "flushing a format-1 spool"));
    changed = true;
  } else if (format != kFormatVersion) {
    return close_on_error(Error(ErrorCode::kCorruption,
                                "spool: " + options.path.string() + " has unknown format version '" + format + "'"));
  }
  if (changed) {
    s = out.db->Put(unlogged, out.handles[0], kFormatKey, kFormatVersion);
    if (!s.ok()) return close_on_error(ToError(s, "writing the format marker"));
  }

  auto checkpoint = ReadCheckpoint(out.db.get(), out.handles[0], rocksdb::kReadAllTier);
  if (!checkpoint) return close_on_error(checkpoint.error());
  JournalOptions journal;
  journal.dir = options.path / "journal";
  journal.segment_size = SegmentSize(options);
  if (env != nullptr) journal.fs = env->GetFileSystem().get();
  journal.checkpoint = [db = out.db.get(), family = out.handles[0]] {
    auto lsn = ReadCheckpoint(db, family, rocksdb::kPersistedTier);
    return lsn ? *lsn : 0;  // unreadable: overwrite nothing
  };
  auto replay = [&](uint64_t lsn, std::string_view payload) -> Result<void> {
    if (lsn > replay_limit) return {};
    rocksdb::WriteBatch batch{std::string(payload)};
    rocksdb::Status w = out.db->Write(unlogged, &batch);
    if (!w.ok()) return tl::unexpected(ToError(w, "replaying journal record " + std::to_string(lsn)));
    return {};
  };
  auto recovered = Journal::Recover(std::move(journal), *checkpoint, replay);
  if (!recovered) return close_on_error(recovered.error());
  out.journal = std::move(*recovered);

  const uint64_t sealed = out.journal->next_lsn() - 1;
  if (changed || sealed != *checkpoint) {
    s = out.db->Put(unlogged, out.handles[0], kJournalLsnKey, EncodeLsn(sealed));
    if (!s.ok()) return close_on_error(ToError(s, "writing the journal checkpoint"));
    rocksdb::FlushOptions flush;
    s = out.db->Flush(flush, out.handles);
    if (!s.ok()) return close_on_error(ToError(s, "flushing the recovered journal"));
  }
  return out;
}

struct Request {
  enum class Kind { kAppend, kUpdate, kRemove };
  Kind kind = Kind::kAppend;
  MessageId id;
  std::optional<Error> rejected;  // failed validation before reaching the commit thread
  // kAppend: encoded values.
  std::string content;
  std::string meta;
  std::vector<std::string> recipients;
  // kUpdate
  RecipientRecord update;
  // kRemove
  uint32_t recipient_count = 0;
  CommitCallback done;
};

class RocksDbSpool final : public Spool {
 public:
  RocksDbSpool(const SpoolOptions& options, rocksdb::Env* env, Database database,
               std::shared_ptr<rocksdb::Statistics> statistics)
      : options_(options),
        env_(env),
        sync_(options.sync),
        compress_(options.compress_content),
        database_(std::move(database)),
        statistics_(std::move(statistics)) {
    highest_id_ = HighestStoredId();
    committed_lsn_ = database_.journal->next_lsn() - 1;
    commit_thread_ = std::thread([this] { CommitLoop(); });
    reclaim_thread_ = std::thread([this] { ReclaimLoop(); });
  }

  ~RocksDbSpool() override { Close(); }

  // The meta record of `id`; the caller holds db_mu_ (shared) and has
  // checked that the database is open.
  Result<MessageMeta> ReadMetaLocked(MessageId id) {
    rocksdb::PinnableSlice value;
    rocksdb::Status s = db()->Get(rocksdb::ReadOptions(), meta(), MessageKey(id), &value);
    if (s.IsNotFound()) return Fail(ErrorCode::kNotFound, "spool: no message " + id.ToString());
    if (!s.ok()) return tl::unexpected(ToError(s, "reading meta of " + id.ToString()));
    return DecodeMeta(std::string_view(value.data(), value.size()));
  }

  // The decoded content of `id`, checked against its meta record's size;
  // the caller holds db_mu_ (shared).
  Result<std::string> ReadContentLocked(MessageId id, const MessageMeta& meta) {
    rocksdb::PinnableSlice value;
    rocksdb::Status s = db()->Get(rocksdb::ReadOptions(), content(), MessageKey(id), &value);
    if (s.IsNotFound()) return Fail(ErrorCode::kCorruption, "spool: message " + id.ToString() + " has no content");
    if (!s.ok()) return tl::unexpected(ToError(s, "reading content of " + id.ToString()));
    auto text = DecodeContent(std::string_view(value.data(), value.size()));
    if (!text) return tl::unexpected(text.error());
    if (text->size() != meta.content_size)
      return Fail(ErrorCode::kCorruption, "spool: content size of " + id.ToString() + " disagrees with meta");
    return text;
  }

  static MessageEnvelope EnvelopeOf(MessageId id, MessageMeta meta) {
    return MessageEnvelope{id, std::move(meta.sender), meta.received_at, std::move(meta.origin),
                           meta.recipient_count, std::move(meta.tenant), meta.priority};
  }


  void Append(IncomingMessage message, CommitCallback done) override {
    Request request;
    request.kind = Request::Kind::kAppend;
    request.id = message.id;
    request.done = std::move(done);
    if (message.recipients.empty()) {
      request.rejected = Error(ErrorCode::kInvalidArgument, "spool: message has no recipients");
    } else if (message.recipients.size() > std::numeric_limits<uint32_t>::max()) {
      request.rejected = Error(ErrorCode::kInvalidArgument, "spool: too many recipients");
    } else {
      // Encoding (and compressing) here spreads the CPU work over the
      // injecting threads; the commit thread only concatenates.
      MessageMeta meta;
      meta.sender = std::move(message.sender);
      meta.received_at = message.received_at;
      meta.origin = std::move(message.origin);
      meta.recipient_count = static_cast<uint32_t>(message.recipients.size());
      meta.content_size = message.content.size();
      meta.tenant = std::move(message.tenant);
      meta.priority = message.priority;
      request.meta = EncodeMeta(meta);
      request.content = EncodeContent(message.content, compress_);
      request.recipients.reserve(message.recipients.size());
      RecipientRecord record;
      record.state = RecipientState::kQueued;
      record.next_attempt = message.received_at;  // due at once
      for (auto& recipient : message.recipients) {
        record.recipient = std::move(recipient);
        request.recipients.push_back(EncodeRecipient(record));
      }
    }
    Enqueue(std::move(request));
  }

  void UpdateRecipient(const RecipientRecord& record, CommitCallback done) override {
    Request request;
    request.kind = Request::Kind::kUpdate;
    request.id = record.message;
    request.update = record;
    request.update.recipient.clear();
    request.done = std::move(done);
    Enqueue(std::move(request));
  }

  void RemoveMessage(MessageId id, uint32_t recipient_count, CommitCallback done) override {
    Request request;
    request.kind = Request::Kind::kRemove;
    request.id = id;
    request.recipient_count = recipient_count;
    request.done = std::move(done);
    Enqueue(std::move(request));
  }

  Result<void> ForEachPending(const std::function<void(const RecipientRecord&)>& visit) override {
    std::shared_lock lock(db_mu_);
    if (db() == nullptr) return tl::unexpected(closed_ ? Unavailable() : Reopening());
    rocksdb::ReadOptions read;
    read.fill_cache = false;  // a one-off scan at start-up
    std::unique_ptr<rocksdb::Iterator> it(db()->NewIterator(read, recipients()));
    // Both families are in message-id order: the meta iterator walks along
    // with the recipients, one step per message, for tenant and priority.
    std::unique_ptr<rocksdb::Iterator> metas(db()->NewIterator(read, meta()));
    metas->SeekToFirst();
    MessageId current;
    bool have_meta = false;
    std::string tenant;
    uint8_t priority = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto record = DecodeRecipient(std::string_view(it->key().data(), it->key().size()),
                                    std::string_view(it->value().data(), it->value().size()));
      if (!record) return tl::unexpected(record.error());
      if (record->state != RecipientState::kQueued) continue;
      if (!have_meta || record->message != current) {
        const std::string key = MessageKey(record->message);
        while (metas->Valid() && metas->key().compare(key) < 0) metas->Next();
        if (!metas->Valid() || metas->key().compare(key) != 0) {
          if (!metas->status().ok()) return tl::unexpected(ToError(metas->status(), "scanning meta"));
          return Fail(ErrorCode::kCorruption, "spool: message " + record->message.ToString() + " has no meta record");
        }
        auto meta = DecodeMeta(std::string_view(metas->value().data(), metas->value().size()));
        if (!meta) return tl::unexpected(meta.error());
        current = record->message;
        have_meta = true;
        tenant = std::move(meta->tenant);
        priority = meta->priority;
      }
      record->tenant = tenant;
      record->priority = priority;
      visit(*record);
    }
    if (!it->status().ok()) return tl::unexpected(ToError(it->status(), "scanning recipients"));
    return {};
  }

  Result<IncomingMessage> ReadMessage(MessageId id) override {
    std::shared_lock lock(db_mu_);
    if (db() == nullptr) return tl::unexpected(closed_ ? Unavailable() : Reopening());
    const std::string key = MessageKey(id);
    auto meta = ReadMetaLocked(id);
    if (!meta) return tl::unexpected(meta.error());
    auto content = ReadContentLocked(id, *meta);
    if (!content) return tl::unexpected(content.error());

    IncomingMessage message;
    message.id = id;
    message.sender = std::move(meta->sender);
    message.content = std::move(*content);
    message.received_at = meta->received_at;
    message.origin = std::move(meta->origin);
    message.tenant = std::move(meta->tenant);
    message.priority = meta->priority;
    message.recipients.reserve(meta->recipient_count);
    std::unique_ptr<rocksdb::Iterator> it(db()->NewIterator(rocksdb::ReadOptions(), recipients()));
    for (it->Seek(RecipientKey(id, 0)); it->Valid() && it->key().starts_with(key); it->Next()) {
      auto record = DecodeRecipient(std::string_view(it->key().data(), it->key().size()),
                                    std::string_view(it->value().data(), it->value().size()));
      if (!record) return tl::unexpected(record.error());
      message.recipients.push_back(std::move(record->recipient));
    }
    if (!it->status().ok()) return tl::unexpected(ToError(it->status(), "reading recipients of " + id.ToString()));
    return message;
  }

  Result<MessageEnvelope> ReadEnvelope(MessageId id) override {
    std::shared_lock lock(db_mu_);
    if (db() == nullptr) return tl::unexpected(closed_ ? Unavailable() : Reopening());
    auto meta = ReadMetaLocked(id);
    if (!meta) return tl::unexpected(meta.error());
    return EnvelopeOf(id, std::move(*meta));
  }

  Result<MessageContent> ReadContent(MessageId id) override {
    std::shared_lock lock(db_mu_);
    if (db() == nullptr) return tl::unexpected(closed_ ? Unavailable() : Reopening());
    auto meta = ReadMetaLocked(id);
    if (!meta) return tl::unexpected(meta.error());
    auto text = ReadContentLocked(id, *meta);
    if (!text) return tl::unexpected(text.error());
    return MessageContent{EnvelopeOf(id, std::move(*meta)), std::move(*text)};
  }

  Result<std::vector<std::string>> ReadRecipients(MessageId id, std::span<const uint32_t> indices) override {
    std::shared_lock lock(db_mu_);
    if (db() == nullptr) return tl::unexpected(closed_ ? Unavailable() : Reopening());
    std::vector<std::string> keys;
    keys.reserve(indices.size());
    for (uint32_t i : indices) keys.push_back(RecipientKey(id, i));
    std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db()->MultiGet(rocksdb::ReadOptions(), recipients(), slices.size(), slices.data(), values.data(),
                   statuses.data());
    std::vector<std::string> out;
    out.reserve(keys.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].IsNotFound())
        return Fail(ErrorCode::kNotFound,
                    "spool: message " + id.ToString() + " has no recipient " + std::to_string(indices[i]));
      if (!statuses[i].ok()) return tl::unexpected(ToError(statuses[i], "reading recipients of " + id.ToString()));
      auto record = DecodeRecipient(keys[i], std::string_view(values[i].data(), values[i].size()));
      if (!record) return tl::unexpected(record.error());
      out.push_back(std::move(record->recipient));
    }
    return out;
  }

  SpoolStats Stats() const override {
    SpoolStats stats;
    stats.appends = appends_.load(std::memory_order_relaxed);
    stats.commit_groups = commit_groups_.load(std::memory_order_relaxed);
    stats.commit_micros = commit_micros_.load(std::memory_order_relaxed);
    stats.syncs = syncs_.load(std::memory_order_relaxed);
    stats.failed_appends = failed_appends_.load(std::memory_order_relaxed);
    stats.updates = updates_.load(std::memory_order_relaxed);
    stats.resumes = resumes_.load(std::memory_order_relaxed);
    // The journal is the spool's WAL now; RocksDB's own stays empty.
    stats.wal_bytes = journal_bytes_.load(std::memory_order_relaxed) + statistics_->getTickerCount(rocksdb::WAL_FILE_BYTES);
    stats.journal_segments_created = journal_segments_created_.load(std::memory_order_relaxed);
    stats.journal_segments_reused = journal_segments_reused_.load(std::memory_order_relaxed);
    stats.flush_bytes = statistics_->getTickerCount(rocksdb::FLUSH_WRITE_BYTES);
    stats.blob_bytes = statistics_->getTickerCount(rocksdb::BLOB_DB_BLOB_FILE_BYTES_WRITTEN);
    stats.compaction_bytes = statistics_->getTickerCount(rocksdb::COMPACT_WRITE_BYTES);
    stats.reclaims = reclaims_.load();
    // Also what pulls crc32c.o (the wrapped CRC32C) into every link that
    // uses this spool, ahead of librocksdb.a.
    stats.crc32c_in_hardware = Crc32cInHardware();
    return stats;
  }

  void Close() override {
    std::lock_guard close_lock(close_mu_);
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    cv_reclaim_.notify_all();
    // The commit thread drains every request queued before `closing_` was
    // set, so each of them gets its real outcome, not kUnavailable.
    if (commit_thread_.joinable()) commit_thread_.join();
    if (reclaim_thread_.joinable()) reclaim_thread_.join();

    std::unique_lock lock(db_mu_);
    closed_ = true;
    if (db() == nullptr) return;
    // sync = none acknowledged writes that are only in the page cache; a
    // clean shutdown should not leave them exposed to a power loss.
    if (sync_ == config::SyncMode::kNone && !needs_resume_) (void)database_.journal->Sync();
    // Memtables are not flushed at shutdown (avoid_flush_during_shutdown):
    // the synced journal already holds them and the next open replays it.
    database_.Close();
  }

 private:
  void Enqueue(Request request) {
    std::unique_lock lock(mu_);
    if (closing_) {
      lock.unlock();
      failed_appends_.fetch_add(request.kind == Request::Kind::kAppend ? 1 : 0, std::memory_order_relaxed);
      request.done(tl::unexpected(Unavailable()));
      return;
    }
    pending_.push_back(std::move(request));
    // Wake the commit thread only when this append changes its decision:
    // any other wake-up is a context switch for nothing, one per message
    // under load. One notify per decision is enough.
    const bool wake = pending_.size() >= wake_at_;
    if (wake) wake_at_ = std::numeric_limits<size_t>::max();
    lock.unlock();
    if (wake) cv_.notify_one();
  }

  void CommitLoop() {
    std::vector<Request> group;
    const size_t group_target = std::max<size_t>(1, options_.commit_group);
    for (;;) {
      {
        std::unique_lock lock(mu_);
        wake_at_ = 1;
        cv_.wait(lock, [this] { return !pending_.empty() || closing_; });
        if (pending_.empty()) return;  // closing and drained
        // Everything that arrived while the previous write and sync ran goes
        // into this one: that is what makes one fdatasync cover many writers.
        group.swap(pending_);
        // Commit delay (as PostgreSQL's commit_delay): under load many
        // writers are a round trip away from their next append; waiting a
        // moment lets one sync cover them too. Only a group smaller than
        // commit_group waits, and only with sync = group, where the sync is
        // the expensive part.
        if (sync_ == config::SyncMode::kGroup && options_.commit_delay.count() > 0 && group.size() < group_target &&
            !closing_) {
          wake_at_ = group_target - group.size();
          const auto deadline = std::chrono::steady_clock::now() + options_.commit_delay;
          cv_.wait_until(lock, deadline, [&] { return closing_ || group.size() + pending_.size() >= group_target; });
          for (auto& r : pending_) group.push_back(std::move(r));
          pending_.clear();
        }
        // Writing: appends queue up silently for the next group.
        wake_at_ = std::numeric_limits<size_t>::max();
      }
      Commit(group);
      group.clear();
    }
  }

  // Looks up the current value of a recipient record, as of this group:
  // updates staged earlier in the group, then appends in the group, then the
  // database.
  Result<RecipientRecord> CurrentRecipient(const std::string& key, const RecipientRecord& target,
                                           const std::unordered_map<std::string, std::string>& staged,
                                           const std::unordered_map<uint64_t, const Request*>& appended) {
    if (auto it = staged.find(key); it != staged.end()) return DecodeRecipient(key, it->second);
    if (auto it = appended.find(target.message.value()); it != appended.end()) {
      if (target.index >= it->second->recipients.size())
        return Fail(ErrorCode::kNotFound, "spool: no recipient " + std::to_string(target.index));
      return DecodeRecipient(key, it->second->recipients[target.index]);
    }
    std::string value;
    rocksdb::Status s = db()->Get(rocksdb::ReadOptions(), recipients(), key, &value);
    if (s.IsNotFound())
      return Fail(ErrorCode::kNotFound, "spool: no recipient " + target.message.ToString() + "/" +
                                            std::to_string(target.index));
    if (!s.ok()) return tl::unexpected(ToError(s, "reading recipient"));
    return DecodeRecipient(key, value);
  }

  void Commit(std::vector<Request>& group) {
    MaybeResume();
    if (db() == nullptr || needs_resume_) {
      // After a failed commit the spool has not recovered yet (disk still
      // full): nothing can be written.
      for (auto& r : group) {
        if (r.kind == Request::Kind::kAppend) failed_appends_.fetch_add(1, std::memory_order_relaxed);
        r.done(tl::unexpected(r.rejected ? *r.rejected : *last_failure_));
      }
      return;
    }

    // Sized up front: growing a batch of ~30 message bodies by doubling
    // would copy it several times.
    size_t batch_bytes = 64;
    for (const Request& r : group) {
      batch_bytes += r.content.size() + r.meta.size() + 64;
      for (const auto& recipient : r.recipients) batch_bytes += recipient.size() + 32;
    }
    rocksdb::WriteBatch batch(batch_bytes);

    std::vector<std::optional<Error>> outcome(group.size());
    std::unordered_map<uint64_t, const Request*> appended;
    std::unordered_map<std::string, std::string> staged;
    size_t appends = 0, updates = 0, removes = 0;
    for (size_t i = 0; i < group.size(); ++i) {
      Request& r = group[i];
      if (r.rejected) {
        outcome[i] = std::move(r.rejected);
        continue;
      }
      const std::string key = MessageKey(r.id);
      if (r.kind == Request::Kind::kAppend) {
        // MessageIds are unique by construction; a duplicate means a clock
        // step or a bug elsewhere, and overwriting would lose a message.
        // Ids only grow, so one above every id ever written cannot exist
        // and needs no lookup; only after a clock step does one cost a read.
        std::string ignored;
        bool exists = appended.count(r.id.value()) > 0;
        if (!exists && r.id.value() <= highest_id_) {
          rocksdb::Status s = db()->Get(rocksdb::ReadOptions(), meta(), key, &ignored);
          if (!s.ok() && !s.IsNotFound()) {
            outcome[i] = ToError(s, "checking for a duplicate id");
            continue;
          }
          exists = s.ok();
        }
        if (exists) {
          outcome[i] = Error(ErrorCode::kInvalidArgument, "spool: duplicate message id " + r.id.ToString());
          continue;
        }
        batch.Put(content(), key, r.content).PermitUncheckedError();
        batch.Put(meta(), key, r.meta).PermitUncheckedError();
        for (uint32_t j = 0; j < r.recipients.size(); ++j)
          batch.Put(recipients(), RecipientKey(r.id, j), r.recipients[j]).PermitUncheckedError();
        appended.emplace(r.id.value(), &r);
        highest_id_ = std::max(highest_id_, r.id.value());
        ++appends;
      } else if (r.kind == Request::Kind::kRemove) {
        batch.Delete(content(), key).PermitUncheckedError();
        batch.Delete(meta(), key).PermitUncheckedError();
        for (uint32_t j = 0; j < r.recipient_count; ++j) {
          const std::string rkey = RecipientKey(r.id, j);
          batch.Delete(recipients(), rkey).PermitUncheckedError();
          staged.erase(rkey);
        }
        ++updates;
        ++removes;
      } else {
        const std::string rkey = RecipientKey(r.id, r.update.index);
        auto current = CurrentRecipient(rkey, r.update, staged, appended);
        if (!current) {
          outcome[i] = current.error();
          continue;
        }
        current->state = r.update.state;
        current->attempts = r.update.attempts;
        current->next_attempt = r.update.next_attempt;
        std::string value = EncodeRecipient(*current);
        batch.Put(recipients(), rkey, value).PermitUncheckedError();
        staged[rkey] = std::move(value);
        ++updates;
      }
    }

    std::optional<Error> failure;
    if (batch.Count() > 0) {
      const auto started = std::chrono::steady_clock::now();
      failure = WriteGroup(batch);
      commit_micros_.fetch_add(
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count(),
          std::memory_order_relaxed);
      commit_groups_.fetch_add(1, std::memory_order_relaxed);
    }

    if (failure) {
      needs_resume_ = true;
      last_failure_ = failure;
      for (size_t i = 0; i < group.size(); ++i)
        if (!outcome[i]) outcome[i] = *failure;
    } else {
      appends_.fetch_add(appends, std::memory_order_relaxed);
      removes_since_reclaim_.fetch_add(removes, std::memory_order_relaxed);
      if (appends > 0 || removes > 0) last_write_ = std::chrono::steady_clock::now().time_since_epoch().count();
      updates_.fetch_add(updates, std::memory_order_relaxed);
    }

    // Acknowledge only now: the journal write (and, for sync = group, its
    // sync) returned, so every success below is durable as promised in
    // spool.h.
    for (size_t i = 0; i < group.size(); ++i) {
      if (outcome[i]) {
        if (group[i].kind == Request::Kind::kAppend) failed_appends_.fetch_add(1, std::memory_order_relaxed);
        group[i].done(tl::unexpected(std::move(*outcome[i])));
      } else {
        group[i].done({});
      }
    }
  }

  // One group: journal record, its sync, then the memtables (WAL off).
  // The order is the WAL rule: the database never holds a write the journal
  // could lose, and a failure before the memtables leaves the database as
  // it was (Seal makes sure the journal record is never replayed).
  std::optional<Error> WriteGroup(rocksdb::WriteBatch& batch) {
    Journal& journal = *database_.journal;
    const JournalStats before = journal.stats();
    const uint64_t lsn = journal.next_lsn();
    batch.Put(database_.handles[0], kJournalLsnKey, EncodeLsn(lsn)).PermitUncheckedError();
    auto appended = journal.Append(batch.Data());
    if (appended && sync_ == config::SyncMode::kGroup) {
      // sync = group: this one fdatasync covers every writer in the group.
      // sync = none: the record still gets its write() (a process crash
      // loses nothing), only the fdatasync is skipped.
      appended = journal.Sync();
      syncs_.fetch_add(1, std::memory_order_relaxed);
    }
    // Deltas: a reopen starts a new Journal with its own counters.
    const JournalStats& after = journal.stats();
    journal_bytes_.fetch_add(after.bytes - before.bytes, std::memory_order_relaxed);
    journal_segments_created_.fetch_add(after.segments_created - before.segments_created, std::memory_order_relaxed);
    journal_segments_reused_.fetch_add(after.segments_reused - before.segments_reused, std::memory_order_relaxed);
    if (!appended) return appended.error();
    rocksdb::WriteOptions write;
    write.disableWAL = true;
    rocksdb::Status s = db()->Write(write, &batch);
    if (!s.ok()) {
      // Refused, so it must not come back at the next open either.
      (void)journal.Retract();
      return ToError(s, "commit");
    }
    committed_lsn_ = lsn;
    return std::nullopt;
  }

  // After a failed commit. The disk may be full: until a reservation of the
  // space a flush and a journal segment need succeeds, nothing is touched,
  // so reads (deliveries) of accepted mail keep working. Then RocksDB's own
  // background error, if any, is cleared (Resume), and the journal is
  // sealed. When RocksDB cannot resume (7.8 escalates a failure during its
  // own recovery to a fatal error), the database is closed and reopened,
  // which replays the journal up to the last acknowledged group.
  void MaybeResume() {
    if (!needs_resume_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_resume_attempt_ < kResumeInterval) return;
    last_resume_attempt_ = now;
    if (auto room = HasRoom(); !room) {
      last_failure_ = room.error();
      return;
    }
    if (db() != nullptr) {
      const rocksdb::Status s = db()->Resume();  // OK at once without a background error
      if (s.ok()) {
        if (Seal()) {
          needs_resume_ = false;
          resumes_.fetch_add(1, std::memory_order_relaxed);
        }
        return;
      }
      if (s.severity() < rocksdb::Status::Severity::kFatalError) return;  // try again later
    }
    Reopen();
  }

  // Reserves (fallocate) and releases the space one flush and one journal
  // segment need, in the journal's directory, without writing it.
  Result<void> HasRoom() {
    rocksdb::FileSystem& fs = env_ != nullptr ? *env_->GetFileSystem() : *rocksdb::FileSystem::Default();
    const std::string path = (options_.path / "journal" / "space-probe").string();
    std::unique_ptr<rocksdb::FSWritableFile> file;
    rocksdb::IOStatus s = fs.NewWritableFile(path, rocksdb::FileOptions(), &file, nullptr);
    if (s.ok()) {
      s = file->Allocate(0, options_.memtable_size + SegmentSize(options_), rocksdb::IOOptions(), nullptr);
      file->Close(rocksdb::IOOptions(), nullptr).PermitUncheckedError();
    }
    fs.DeleteFile(path, rocksdb::IOOptions(), nullptr).PermitUncheckedError();
    // Only "no space" means no room: a file system without fallocate (or
    // another error) must not keep the spool from trying to recover.
    if (s.IsNoSpace() || s.subcode() == rocksdb::Status::kNoSpace)
      return tl::unexpected(ToError(s, "waiting for disk space"));
    return {};
  }

  // Makes the journal writable again after a failed group: moves the
  // checkpoint past every record the journal holds, the failed one
  // included, and flushes it, so that record is never replayed.
  bool Seal() {
    const uint64_t checkpoint = database_.journal->Abandon();
    rocksdb::WriteOptions write;
    write.disableWAL = true;
    rocksdb::Status s = db()->Put(write, database_.handles[0], kJournalLsnKey, EncodeLsn(checkpoint));
    if (s.ok()) s = db()->Flush(rocksdb::FlushOptions(), database_.handles);
    if (!s.ok()) {
      last_failure_ = ToError(s, "sealing the journal");
      return false;
    }
    return true;
  }

  // While the open fails, the database is absent and reads answer
  // kUnavailable; the next attempt comes with the next group.
  void Reopen() {
    std::unique_lock lock(db_mu_);
    database_.Close();
    auto reopened = OpenDatabase(options_, env_, statistics_, committed_lsn_);
    if (!reopened) {
      last_failure_ = reopened.error();
      return;
    }
    database_ = std::move(*reopened);
    committed_lsn_ = database_.journal->next_lsn() - 1;
    highest_id_ = std::max(highest_id_, HighestStoredId());
    needs_resume_ = false;
    resumes_.fetch_add(1, std::memory_order_relaxed);
  }

  // The largest message id in the meta family: 0 for an empty spool, the
  // largest possible id when it cannot be read (then every append is
  // checked by a lookup, as before this shortcut existed).
  uint64_t HighestStoredId() {
    if (db() == nullptr) return std::numeric_limits<uint64_t>::max();
    std::unique_ptr<rocksdb::Iterator> it(db()->NewIterator(rocksdb::ReadOptions(), meta()));
    it->SeekToLast();
    if (!it->Valid()) return it->status().ok() ? 0 : std::numeric_limits<uint64_t>::max();
    auto id = DecodeMessageKey(it->key().ToStringView());
    return id ? id->value() : std::numeric_limits<uint64_t>::max();
  }

  rocksdb::DB* db() const { return database_.db.get(); }
  rocksdb::ColumnFamilyHandle* content() const { return database_.handles[1]; }
  rocksdb::ColumnFamilyHandle* meta() const { return database_.handles[2]; }
  rocksdb::ColumnFamilyHandle* recipients() const { return database_.handles[3]; }

  const SpoolOptions options_;
  rocksdb::Env* const env_;
  const config::SyncMode sync_;
  const bool compress_;

  // database_ is replaced only by the commit thread (Reopen) and by Close
  // after the commit thread has stopped, both under an exclusive db_mu_.
  // Readers hold db_mu_ shared. database_.db is null after Close and while a
  // reopen keeps failing.
  std::shared_mutex db_mu_;
  Database database_;
  std::shared_ptr<rocksdb::Statistics> statistics_;

  std::mutex close_mu_;
  std::mutex mu_;  // guards pending_ and closing_
  std::condition_variable cv_;
  std::condition_variable cv_reclaim_;
  std::vector<Request> pending_;
  // Enqueue notifies cv_ once pending_ holds this many requests: 1 while
  // the commit thread waits for work, what completes the group while it
  // waits out the commit delay, never while it writes.
  size_t wake_at_ = 1;
  // Commit thread only: no message id above this is in the spool.
  uint64_t highest_id_ = 0;
  bool closing_ = false;
  std::thread commit_thread_;
  std::thread reclaim_thread_;
  std::atomic<uint64_t> removes_since_reclaim_{0};
  std::atomic<int64_t> last_write_{0};  // steady_clock ticks of the last committed append or removal
  std::atomic<uint64_t> reclaims_{0};

  // Deleted messages leave tombstones in the memtable and bodies in blob
  // files until compaction meets them; with no new writes, none would ever
  // run. When the spool has gone quiet after many removals, flush and
  // compact once, which drops the tombstoned keys and with them every blob
  // file no live key references.
  void ReclaimLoop() {
    const auto poll = std::min<std::chrono::steady_clock::duration>(options_.reclaim_idle / 2 + std::chrono::milliseconds(1),
                                                                      std::chrono::seconds(5));
    std::unique_lock lock(mu_);
    while (!closing_) {
      cv_reclaim_.wait_for(lock, poll, [this] { return closing_; });
      if (closing_) return;
      if (removes_since_reclaim_.load() < options_.reclaim_after_removes) continue;
      const auto idle = std::chrono::steady_clock::now().time_since_epoch().count() - last_write_.load();
      if (idle < std::chrono::duration_cast<std::chrono::steady_clock::duration>(options_.reclaim_idle).count())
        continue;
      lock.unlock();
      Reclaim();
      lock.lock();
    }
  }

  void Reclaim() {
    std::shared_lock db_lock(db_mu_);
    if (db() == nullptr) return;
    removes_since_reclaim_.store(0);
    rocksdb::FlushOptions flush;
    flush.wait = true;
    db()->Flush(flush, {content(), meta(), recipients()}).PermitUncheckedError();
    rocksdb::CompactRangeOptions compact;
    compact.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    for (auto* family : {content(), meta(), recipients()})
      db()->CompactRange(compact, family, nullptr, nullptr).PermitUncheckedError();
    reclaims_.fetch_add(1);
  }
  bool closed_ = false;  // guarded by db_mu_

  // Commit thread only.
  bool needs_resume_ = false;
  std::chrono::steady_clock::time_point last_resume_attempt_{};
  uint64_t committed_lsn_ = 0;  // the last journal record applied and acknowledged
  std::optional<Error> last_failure_;

  std::atomic<uint64_t> appends_{0};
  std::atomic<uint64_t> commit_groups_{0};
  std::atomic<uint64_t> commit_micros_{0};
  std::atomic<uint64_t> syncs_{0};
  std::atomic<uint64_t> failed_appends_{0};
  std::atomic<uint64_t> updates_{0};
  std::atomic<uint64_t> resumes_{0};
  std::atomic<uint64_t> journal_bytes_{0};
  std::atomic<uint64_t> journal_segments_created_{0};
  std::atomic<uint64_t> journal_segments_reused_{0};
};

}  // namespace

Result<std::unique_ptr<Spool>> OpenRocksDbSpool(const SpoolOptions& options, rocksdb::Env* env) {
  auto statistics = rocksdb::CreateDBStatistics();
  auto database = OpenDatabase(options, env, statistics);
  if (!database) return tl::unexpected(database.error());
  return std::unique_ptr<Spool>(std::make_unique<RocksDbSpool>(options, env, std::move(*database), statistics));
}

Result<std::unique_ptr<Spool>> OpenRocksDbSpool(const SpoolOptions& options) {
  return OpenRocksDbSpool(options, nullptr);
}

}  // namespace hikyaku::spool
