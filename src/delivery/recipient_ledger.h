// RecipientLedger: the one owner of "a recipient's state changed" — it
// writes the event, updates the spool record, keeps the delivery counters,
// and removes a message from the spool once every one of its recipients is
// final. The dispatcher decides WHAT happened (through outcome.cc and the
// scheduler); the ledger records it, always the same way.
//
// Message lifecycle: Track() is told how many recipients of a message are
// pending in this process (and the message's total recipient count when
// known). When the last pending one becomes final the whole message is
// removed (RemoveMessage with the total; a recovered message whose total is
// not known is read back once for it). Otherwise each final or deferred
// recipient is one UpdateRecipient through the spool's group commit.
//
// Crash safety: both writes go through the spool's group commit, after the
// reply that decided them; a crash in between re-delivers (the documented
// duplicate window).
//
// Threading: not synchronised; the dispatcher's thread. Stats() counters are
// atomics, readable from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/clock.h"
#include "delivery/outcome.h"
#include "queue/queued_recipient.h"
#include "spool/spool.h"

namespace hikyaku::events {
class EventLog;
}

namespace hikyaku::delivery {

// Where and how an attempt was made, for the event. Views: they must
// outlive the call. Empty fields are written as "" (no connection: DNS,
// all hosts down).
struct AttemptContext {
  std::string_view site;       // site key, or the domain while it has no site
  std::string_view domain;     // recipient domain
  std::string_view recipient;  // "" = unknown here: the ledger reads it back from the spool
  std::string_view sender;
  std::string_view mx;
  std::string_view mx_ip;
  std::string_view source;     // source name
  std::string_view source_ip;  // the bound local address
  std::string_view pool;
  std::string_view tenant;
};

struct LedgerStats {
  uint64_t delivered = 0;
  uint64_t deferred = 0;
  uint64_t bounced = 0;
  uint64_t expired = 0;
  uint64_t queued = 0;  // recipients known and not final
};

class RecipientLedger {
 public:
  RecipientLedger(spool::Spool& spool, events::EventLog& events, const Clock& clock)
      : spool_(spool), events_(events), clock_(clock) {}

  // `pending` more recipients of `message` are queued in this process;
  // `recipient_count` is the message's total (0: not known, e.g. recovery).
  void Track(MessageId message, uint32_t pending, uint32_t recipient_count);
  // Recipients that are counted as queued but will never be delivered from
  // here (held mail): they only show in the queued count.
  void CountHeld(uint64_t n) { queued_ += n; }
  // The total became known (a transaction read the message).
  void SetRecipientCount(MessageId message, uint32_t recipient_count);
  // A taken recipient whose message is already gone from the spool (removed
  // by an earlier outcome): it leaves the queued count, nothing is written.
  void Forget(uint64_t n) { queued_ -= std::min<uint64_t>(queued_.load(), n); }

  // `q.attempts` already counts the attempt that decided it.
  void Final(const queue::QueuedRecipient& q, spool::RecipientState state, const Outcome& o,
             const AttemptContext& where);
  void Deferred(const queue::QueuedRecipient& q, TimePoint next_attempt, const Outcome& o,
                const AttemptContext& where);

  // A throttled attempt whose recipient goes straight back to its lane
  // (the pace was wrong, not the recipient): the "deferred" event only. The
  // spool keeps its record as it was: after a crash it is simply tried again.
  void Requeued(const queue::QueuedRecipient& q, const Outcome& o, const AttemptContext& where);

  LedgerStats Stats() const {
    return {delivered_.load(), deferred_.load(), bounced_.load(), expired_.load(), queued_.load()};
  }

 private:
  struct MessageEntry {
    uint32_t remaining = 0;
    uint32_t recipient_count = 0;  // 0: not known yet (recovered, not read)
  };

  void WriteEvent(std::string_view type, const queue::QueuedRecipient& q, const Outcome& o,
                  const AttemptContext& where);
  void LogSpoolError(const Result<void>& r);

  spool::Spool& spool_;
  events::EventLog& events_;
  const Clock& clock_;
  std::unordered_map<uint64_t, MessageEntry> messages_;
  // Outcomes decided without a transaction know the recipient only by
  // index: the last message read back is kept for its siblings.
  std::optional<spool::MessageEnvelope> event_message_;
  std::atomic<uint64_t> delivered_{0}, deferred_{0}, bounced_{0}, expired_{0}, queued_{0};
};

}  // namespace hikyaku::delivery
