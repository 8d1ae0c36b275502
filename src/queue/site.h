// Site: the queue of one destination (an MX host set, or a named rollup such
// as "docomo" that several domains share) with its limits, connection
// counts and counters.
//
// A site has two lanes: the fresh lane (never tried) and the retry lane
// (deferred before, retry time reached). A lane holds one FIFO per flow
// (tenant, priority; see flow_table.h) that has recipients in it; the
// Scheduler picks which flow's FIFO the next batch comes from (README.md,
// "Fairness").
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
#include <vector>

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

// One lane of a site: a RecipientQueue per flow that has recipients in the
// lane, in the order the flows arrived. An idle flow has no entry (costs
// nothing), a lane with one flow costs one small vector more than a bare
// RecipientQueue, and an empty lane holds no heap memory at all (the vector
// is allocated only while the lane is non-empty: 100 000 sites).
//
// size() and runs() are totals over all flows (paused ones included); the
// Scheduler subtracts paused and ineligible flows where its rules need it.
// Each entry carries the flow's "pass" (virtual finish time of what it has
// been given, in recipients / weight) for the weighted round robin; see
// Scheduler::TakeBatch.
class FlowLane {
 public:
  struct Entry {
    RecipientQueue queue;
    uint64_t pass = 0;
    FlowId flow = kDefaultFlow;
    bool high = false;  // the flow's priority class when the entry was made
  };

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  size_t runs() const { return runs_; }
  // Flows with recipients in this lane, in arrival order.
  const std::vector<Entry>& flows() const { return flows_ ? *flows_ : kNoFlows; }
  // The queue of `flow`, or nullptr when the flow has nothing here.
  const RecipientQueue* Find(FlowId flow) const;

 private:
  friend class Scheduler;
  // The entry of `flow`, created when absent with the smallest pass of the
  // flows of its priority class here (0 if none), so a newcomer neither
  // jumps ahead of nor queues behind the others' history.
  Entry& Get(FlowId flow, bool high);
  void PushBack(const QueuedRecipient& r, bool high);
  void PushFront(const QueuedRecipient& r, bool high);
  QueuedRecipient PopFront(size_t entry);
  // Drops entry `i` if its queue is empty; releases the vector when the
  // whole lane is empty. Returns true if the entry was removed.
  bool Prune(size_t i);

  static const std::vector<Entry> kNoFlows;
  std::vector<Entry>& entries() { return *flows_; }  // must be non-empty

  std::unique_ptr<std::vector<Entry>> flows_;
  size_t size_ = 0;
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
  uint64_t drained = 0;      // removed by Drain/DrainWaiting (operator bounce)
};

class Site {
 public:
  Site(SiteId id, std::string key, const SiteLimits& limits)
      : id_(id), key_(std::move(key)), limits_(limits) {}

  SiteId id() const { return id_; }
  const std::string& key() const { return key_; }
  const SiteLimits& limits() const { return limits_; }
  const FlowLane& lane(Lane l) const { return lanes_[Index(l)]; }
  uint32_t connections(Lane l) const { return connections_[Index(l)]; }
  uint32_t connections() const { return connections_[0] + connections_[1]; }
  size_t waiting() const { return waiting_; }      // in the retry wheel
  size_t in_flight() const { return in_flight_; }  // taken, outcome not yet reported
  const std::string& last_reply() const { return last_reply_; }
  const SiteCounters& counters() const { return counters_; }
  bool paused() const { return paused_; }  // Scheduler::SetSitePaused

 private:
  friend class Scheduler;
  static size_t Index(Lane l) { return static_cast<size_t>(l); }

  SiteId id_;
  std::string key_;
  SiteLimits limits_;
  FlowLane lanes_[2];
  uint32_t connections_[2] = {0, 0};
  size_t waiting_ = 0;
  size_t in_flight_ = 0;
  bool activated_ = false;  // listed in Scheduler::activated_
  bool paused_ = false;
  std::string last_reply_;
  SiteCounters counters_;
};

}  // namespace hikyaku::queue
