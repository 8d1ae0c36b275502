// Site: the queue of one destination (an MX host set, or a named rollup such
// as "docomo" that several domains share) with its limits, connection
// counts and counters.
//
// A site has two lanes (FIFO queues of QueuedRecipient): the fresh lane
// (never tried) and the retry lane (deferred before, retry time reached).
// Each has its own connection budget: retries may use at most
// ceil(retry_share * max_connections) connections, so a backlog of deferred
// mail never takes the slots fresh mail needs (the Postfix "active queue full
// of dead destinations" failure, see README.md).
//
// Sites are created and mutated only by the Scheduler; everything here is a
// read-only view for the dispatcher and the operator.
//
// Thread-safety: not synchronised; owned by the Scheduler's thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "config/config.h"
#include "queue/queued_recipient.h"

namespace hikyaku::queue {

struct SiteLimits {
  uint32_t max_connections = 20;
  double retry_share = 0.25;  // 0: retries get no connection (only for tests/drain)
  uint32_t max_messages_per_connection = 100;
  uint32_t max_recipients_per_transaction = 50;

  // delivery.* defaults, overridden by a [[site]]'s own values when given.
  static SiteLimits FromConfig(const config::DeliveryConfig& delivery,
                               const config::SiteConfig* site = nullptr);
  // Connections the retry lane may hold: ceil(retry_share * max_connections),
  // at least 1 when retry_share > 0, at most max_connections.
  uint32_t RetryConnectionCap() const;
};

// A FIFO of recipients that also counts its "runs": maximal sequences of
// consecutive recipients of the same message. A run is what one SMTP
// transaction can carry (one MAIL FROM, several RCPT TO, one DATA), so the
// run count is the number of transactions waiting, which is what decides how
// many connections the lane can use.
//
// The underlying deque exists only while the queue is non-empty: an empty
// std::deque already costs ~600 bytes in libstdc++, and there may be
// 100 000 sites with empty lanes.
class RecipientQueue {
 public:
  void PushBack(const QueuedRecipient& r);
  void PushFront(const QueuedRecipient& r);
  QueuedRecipient PopFront();  // must not be empty
  const QueuedRecipient& Front() const;
  size_t size() const { return items_ ? items_->size() : 0; }
  bool empty() const { return size() == 0; }
  size_t runs() const { return runs_; }

 private:
  std::unique_ptr<std::deque<QueuedRecipient>> items_;
  size_t runs_ = 0;
};

struct SiteCounters {
  uint64_t enqueued_fresh = 0;  // EnqueueFresh calls
  uint64_t taken = 0;           // recipients handed out by TakeBatch
  uint64_t delivered = 0;
  uint64_t bounced = 0;
  uint64_t deferred = 0;     // Defer that scheduled a retry
  uint64_t expired = 0;      // Defer past max_age
  uint64_t requeued = 0;     // put back without an attempt counted
  uint64_t reactivated = 0;  // moved from the retry wheel into the retry lane
};

class Site {
 public:
  Site(SiteId id, std::string key, const SiteLimits& limits)
      : id_(id), key_(std::move(key)), limits_(limits) {}

  SiteId id() const { return id_; }
  const std::string& key() const { return key_; }
  const SiteLimits& limits() const { return limits_; }
  const RecipientQueue& lane(Lane l) const { return lanes_[Index(l)]; }
  uint32_t connections(Lane l) const { return connections_[Index(l)]; }
  uint32_t connections() const { return connections_[0] + connections_[1]; }
  size_t waiting() const { return waiting_; }      // in the retry wheel
  size_t in_flight() const { return in_flight_; }  // taken, outcome not yet reported
  const std::string& last_reply() const { return last_reply_; }
  const SiteCounters& counters() const { return counters_; }

 private:
  friend class Scheduler;
  static size_t Index(Lane l) { return static_cast<size_t>(l); }

  SiteId id_;
  std::string key_;
  SiteLimits limits_;
  RecipientQueue lanes_[2];
  uint32_t connections_[2] = {0, 0};
  size_t waiting_ = 0;
  size_t in_flight_ = 0;
  bool activated_ = false;  // listed in Scheduler::activated_
  std::string last_reply_;
  SiteCounters counters_;
};

}  // namespace hikyaku::queue
