#include "delivery/recipient_ledger.h"

#include <spdlog/spdlog.h>

#include "events/event_log.h"

namespace hikyaku::delivery {

using spool::RecipientState;

void RecipientLedger::Track(MessageId message, uint32_t pending, uint32_t recipient_count) {
  auto& entry = messages_[message.value()];
  entry.remaining += pending;
  if (recipient_count) entry.recipient_count = recipient_count;
  queued_ += pending;
}

void RecipientLedger::SetRecipientCount(MessageId message, uint32_t recipient_count) {
  if (auto it = messages_.find(message.value()); it != messages_.end()) it->second.recipient_count = recipient_count;
}

void RecipientLedger::LogSpoolError(const Result<void>& r) {
  if (!r) spdlog::error("spool update failed: {}", r.error().ToString());
}

void RecipientLedger::WriteEvent(std::string_view type, const queue::QueuedRecipient& q, const Outcome& o,
                                 const AttemptContext& where) {
  const TimePoint now = clock_.Now();
  const int64_t queue_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - q.received_at).count();
  std::string recipient(where.recipient);
  std::string sender(where.sender);
  if (recipient.empty()) {
    // The envelope (cached per message: a batch's events come together)
    // and this one address, not the whole recipient list.
    if (!event_message_ || event_message_->id != q.message) {
      auto m = spool_.ReadEnvelope(q.message);
      event_message_ = m ? std::optional<spool::MessageEnvelope>(std::move(*m)) : std::nullopt;
    }
    const uint32_t index = q.index;
    auto address = event_message_ ? spool_.ReadRecipients(q.message, std::span<const uint32_t>(&index, 1))
                                  : Result<std::vector<std::string>>(tl::unexpected(Error(ErrorCode::kNotFound, "")));
    if (address) {
      recipient = std::move(address->front());
      sender = event_message_->sender;
    } else {
      recipient = "(index " + std::to_string(q.index) + ")@" + std::string(where.domain);
    }
  }
  events::EventField extra[] = {
      {"site", where.site},       {"mx", where.mx},
      {"mx_ip", where.mx_ip},     {"source", where.source},
      {"source_ip", where.source_ip}, {"pool", where.pool},
      {"tenant", where.tenant},   {"code", o.code},
      {"enhanced", o.enhanced},   {"reply", o.text},
      {"throttled", o.throttled}, {"attempt", static_cast<uint32_t>(q.attempts)},
      {"queue_time_ms", queue_ms}, {"index", q.index},
  };
  events_.Write(events::Event{now, type, q.message, sender, recipient, extra});
}

void RecipientLedger::Final(const queue::QueuedRecipient& q, RecipientState state, const Outcome& o,
                            const AttemptContext& where) {
  const char* type = state == RecipientState::kDelivered ? "delivered"
                     : state == RecipientState::kBounced ? "bounced"
                                                         : "expired";
  WriteEvent(type, q, o, where);
  (state == RecipientState::kDelivered ? delivered_ : state == RecipientState::kBounced ? bounced_ : expired_)++;
  if (queued_ > 0) --queued_;
  auto it = messages_.find(q.message.value());
  if (it != messages_.end() && it->second.remaining > 0 && --it->second.remaining == 0) {
    uint32_t count = it->second.recipient_count;
    messages_.erase(it);
    if (count == 0) {
      auto m = spool_.ReadEnvelope(q.message);
      count = m ? m->recipient_count : 0;
    }
    if (count > 0) {
      // Every recipient is final: the whole message goes (no need to
      // record this last state first; the event log has the history).
      spool_.RemoveMessage(q.message, count, [this](Result<void> r) { LogSpoolError(r); });
      return;
    }
  }
  spool::RecipientRecord record{q.message, q.index, "", state, q.attempts, clock_.Now(), {}, 0};
  spool_.UpdateRecipient(record, [this](Result<void> r) { LogSpoolError(r); });
}

void RecipientLedger::Deferred(const queue::QueuedRecipient& q, TimePoint next_attempt, const Outcome& o,
                               const AttemptContext& where) {
  WriteEvent("deferred", q, o, where);
  ++deferred_;
  spool::RecipientRecord record{q.message, q.index, "", RecipientState::kQueued, q.attempts, next_attempt, {}, 0};
  spool_.UpdateRecipient(record, [this](Result<void> r) { LogSpoolError(r); });
}

void RecipientLedger::Requeued(const queue::QueuedRecipient& q, const Outcome& o, const AttemptContext& where) {
  WriteEvent("deferred", q, o, where);
  ++deferred_;
}

}  // namespace hikyaku::delivery
