// Spool: the durable store of accepted mail.
//
// A message is stored as one content record (the RFC 5322 text, once, however
// many recipients it has) plus one small record per recipient (envelope
// address, state, attempts, next attempt time). The on-disk format and the
// recovery argument are in docs/spool.md.
//
// Durability contract: Append() queues the writes for the next group commit.
// `done` is called exactly once: with success only after the writes are in
// the write-ahead log and (sync = group) that log has been fdatasync'ed by a
// sync that started after the writes were queued; with an Error otherwise
// (kNoSpace when the disk is full: injection answers 452 4.3.1 / HTTP 507).
// A failed Append never harms messages accepted before it, and the spool
// deletes what it may have left behind at its next successful commit; only
// a crash in between can let a failed (never acknowledged) message reappear,
// exactly like a message in flight at a crash (docs/spool.md, "Recovery").
//
// Thread-safety: all methods may be called from any thread. `done` runs on
// the spool's commit thread (after Close: on the caller's thread): it must be
// quick and must not call back into Append synchronously in a way that waits
// for completion.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/error.h"
#include "base/message_id.h"
#include "config/config.h"

namespace hikyaku::spool {

enum class RecipientState : uint8_t {
  kQueued = 0,     // waiting for (another) delivery attempt
  kDelivered = 1,  // final
  kBounced = 2,    // final
  kExpired = 3,    // final
};

struct IncomingMessage {
  MessageId id;
  std::string sender;                   // reverse-path without <>; empty for the null sender
  std::vector<std::string> recipients;  // forward-paths without <>
  std::string content;                  // the message as it will be sent: CRLF lines, not dot-stuffed
  TimePoint received_at;
  std::string origin;                   // how it came in, e.g. "smtp 127.0.0.1" or "http 127.0.0.1"
  // Whose mail it is and how urgent (inject/flow_headers.h decides both):
  // the [[tenant]] name ("" = none) and 0 normal / 1 high. Kept in the
  // meta record so a restart queues the mail in the same flow.
  std::string tenant;
  uint8_t priority = 0;
};

// A stored message without its content and recipient list: what an event
// or a transaction needs to know of it, cheap to read however long the
// message or its recipient list is.
struct MessageEnvelope {
  MessageId id;
  std::string sender;
  TimePoint received_at;
  std::string origin;
  uint32_t recipient_count = 0;
  std::string tenant;
  uint8_t priority = 0;
};

// The envelope and the content: what sending one transaction needs besides
// the addresses of its recipients (ReadRecipients).
struct MessageContent {
  MessageEnvelope envelope;
  std::string content;
};

// What recovery and (later) the scheduler see of one recipient.
struct RecipientRecord {
  MessageId message;
  uint32_t index = 0;  // position in the message's recipient list
  std::string recipient;
  RecipientState state = RecipientState::kQueued;
  uint32_t attempts = 0;
  TimePoint next_attempt;
  // The message's tenant and priority (IncomingMessage): filled in by
  // ForEachPending from the meta record; ignored by UpdateRecipient.
  std::string tenant;
  uint8_t priority = 0;
};

struct SpoolStats {
  uint64_t appends = 0;         // messages committed
  uint64_t commit_groups = 0;   // WriteBatch commits (one journal record each)
  uint64_t syncs = 0;           // journal fdatasyncs issued
  uint64_t commit_micros = 0;   // time spent in the groups' writes (and syncs): ÷ commit_groups = latency of one
  uint64_t failed_appends = 0;
  uint64_t updates = 0;         // recipient updates committed
  uint64_t reclaims = 0;        // flush + compaction runs that gave space back
  uint64_t resumes = 0;         // successful recoveries from a background error (e.g. disk full)
  // Byte counters since open (the disk-write budget, see docs/spool.md):
  // wal_bytes is the journal (the spool's write-ahead log). Bytes written ~
  // wal + flush + compaction; blob_bytes is the part of flush_bytes that
  // went to blob files, not an addition. The flush done while opening
  // (journal replay) is not counted. Zero for implementations without such
  // counters.
  uint64_t wal_bytes = 0;
  uint64_t flush_bytes = 0;
  uint64_t blob_bytes = 0;
  uint64_t compaction_bytes = 0;
  // Journal segment files started since open: new (the file grows) and
  // reused (overwritten in place, no file-system metadata to sync).
  uint64_t journal_segments_created = 0;
  uint64_t journal_segments_reused = 0;
  // Checksums computed with the CPU's CRC32 instruction rather than
  // librocksdb's portable code (spool/crc32c.h).
  bool crc32c_in_hardware = false;
};

using CommitCallback = std::function<void(Result<void>)>;

class Spool {
 public:
  virtual ~Spool() = default;

  virtual void Append(IncomingMessage message, CommitCallback done) = 0;

  // Visits every recipient record not in a final state, in message-id order
  // (oldest first), with its message's tenant and priority. Used at
  // start-up to rebuild the in-memory queue.
  virtual Result<void> ForEachPending(const std::function<void(const RecipientRecord&)>& visit) = 0;

  // The stored message: id, sender, recipients (in list order, whatever
  // their state), content, received_at, origin, tenant and priority.
  // kNotFound if absent. Reads every recipient: for delivery use the three
  // reads below, whose cost does not grow with the recipient list.
  virtual Result<IncomingMessage> ReadMessage(MessageId id) = 0;

  // The meta record alone. kNotFound if absent. The defaults of these three
  // go through ReadMessage (for test doubles); the RocksDB spool reads only
  // what is asked for.
  virtual Result<MessageEnvelope> ReadEnvelope(MessageId id);
  // Meta and content, not the recipients. kNotFound if absent.
  virtual Result<MessageContent> ReadContent(MessageId id);
  // The addresses of the recipients at `indices`, in that order (any order,
  // repeats allowed). kNotFound if the message is absent or an index is not
  // below its recipient count.
  virtual Result<std::vector<std::string>> ReadRecipients(MessageId id, std::span<const uint32_t> indices);

  // Replaces the state, attempts and next attempt time of the recipient
  // (record.message, record.index), through the same group commit and with
  // the same durability contract as Append. `record.recipient` is ignored:
  // the address is immutable. kNotFound if the message or index does not
  // exist. Implementations that do not support updates answer kInternal.
  virtual void UpdateRecipient(const RecipientRecord& record, CommitCallback done) {
    done(Fail(ErrorCode::kInternal, "spool: UpdateRecipient not supported"));
  }

  // Deletes every record of a message whose recipients are all final
  // (delivered, bounced, expired): content, meta and the `recipient_count`
  // recipient records, in one group commit. The event log keeps the history.
  // Deleting soon after arrival is what keeps most bodies out of the on-disk
  // tables: RocksDB drops a Put and its Delete met in the same memtable.
  virtual void RemoveMessage(MessageId id, uint32_t recipient_count, CommitCallback done) {
    done(Fail(ErrorCode::kInternal, "spool: RemoveMessage not supported"));
  }

  virtual SpoolStats Stats() const = 0;

  // Stops accepting appends, completes (or fails) every queued append, and
  // flushes. Called once at shutdown; the destructor calls it if needed.
  // After Close, Append/UpdateRecipient call `done` with kUnavailable on the
  // calling thread, and reads answer kUnavailable.
  virtual void Close() = 0;
};

struct SpoolOptions {
  std::filesystem::path path;
  config::SyncMode sync = config::SyncMode::kGroup;
  uint64_t memtable_size = 64ull << 20;
  // sync = group: a group of `commit_group` writes is synced at once; a
  // smaller one waits up to `commit_delay` for more writers before its sync
  // (see docs/spool.md). Under load that bounds the syncs per write by
  // 1 / commit_group.
  Duration commit_delay = std::chrono::milliseconds(1);
  size_t commit_group = 32;
  // Space reclamation: once at least `reclaim_after_removes` messages were
  // removed and no message was appended or removed for `reclaim_idle`
  // (the spool is quiet: a reclaim in the middle of a delivery run would
  // leave the rest of the run's space for the next trigger), the spool
  // flushes and compacts, so the disk space of delivered mail comes back
  // after a campaign instead of waiting for the next one's writes.
  uint64_t reclaim_after_removes = 1000;
  Duration reclaim_idle = std::chrono::seconds(30);
  // zstd-compress message content before it is written (to the journal and to
  // the blob files). Costs CPU on the appending thread; halves the disk
  // bytes of typical mail. See docs/spool.md.
  bool compress_content = true;
};

// Opens (creating if needed) the RocksDB spool at options.path. Fails with
// kIo/kCorruption if the database cannot be opened; never silently discards
// an unreadable spool.
Result<std::unique_ptr<Spool>> OpenRocksDbSpool(const SpoolOptions& options);

}  // namespace hikyaku::spool
