// QueuedRecipient: the in-memory record of one recipient waiting for a
// delivery attempt. The message body, the envelope addresses and the merge
// data stay in the spool; the scheduler holds only this fixed 32-byte value
// per queued recipient (see README.md, "Memory", for the measured cost
// including the containers: ~33 bytes in a lane, 48 bytes in the retry wheel).
//
// Also the vocabulary shared by the queue module: SiteId and Lane.
//
// Thread-safety: plain values.
#pragma once

#include <compare>
#include <cstdint>
#include <type_traits>

#include "base/clock.h"
#include "base/message_id.h"
#include "queue/flow_table.h"

namespace hikyaku::queue {

// Index of a Site inside one Scheduler. Ids are dense, assigned in creation
// order from 0, and never reused (sites are never removed).
struct SiteId {
  uint32_t value = 0;
  constexpr auto operator<=>(const SiteId&) const = default;
};

// The two queues of a site. Fresh: recipients never tried. Retry: recipients
// whose earlier attempt was deferred and whose retry time has come. They
// have separate connection budgets so that a backlog of retries (often to
// slow or dead hosts) cannot take the slots fresh mail needs.
enum class Lane : uint8_t { kFresh = 0, kRetry = 1 };

inline constexpr const char* ToString(Lane lane) {
  return lane == Lane::kFresh ? "fresh" : "retry";
}

struct QueuedRecipient {
  MessageId message;      // spool key of the content and of the recipient list
  TimePoint received_at;  // when the message was accepted; max_age counts from here
  uint32_t index = 0;     // position in the message's recipient list
  uint32_t domain = 0;    // interned recipient domain (DomainTable); opaque to the scheduler
  SiteId site;            // set by the Scheduler when the recipient is enqueued
  uint16_t attempts = 0;  // delivery attempts so far; saturates at 65535
  FlowId flow = kDefaultFlow;  // (tenant, priority), FlowTable; 0 = no tenant, normal

  friend constexpr bool operator==(const QueuedRecipient&, const QueuedRecipient&) = default;
};

// The size is a budget: the scheduler of a 10-million-recipient campaign
// holds this many of them. Grow it only with a reason and update README.md.
static_assert(sizeof(QueuedRecipient) == 32, "QueuedRecipient must stay 32 bytes");
static_assert(std::is_trivially_copyable_v<QueuedRecipient>);

inline constexpr uint16_t kMaxAttempts = UINT16_MAX;

}  // namespace hikyaku::queue
