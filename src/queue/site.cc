#include "queue/site.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "base/check.h"

namespace hikyaku::queue {

SiteLimits SiteLimits::FromConfig(const config::DeliveryConfig& delivery,
                                  const config::SiteConfig* site) {
  SiteLimits limits;
  limits.max_connections = delivery.max_connections_per_site;
  limits.retry_share = delivery.retry_share;
  limits.max_messages_per_connection = delivery.max_messages_per_connection;
  limits.max_recipients_per_transaction = delivery.max_recipients_per_transaction;
  if (site != nullptr) {
    if (site->max_connections) limits.max_connections = *site->max_connections;
    if (site->max_messages_per_connection) {
      limits.max_messages_per_connection = *site->max_messages_per_connection;
    }
  }
  return limits;
}

uint32_t SiteLimits::RetryConnectionCap() const {
  if (!(retry_share > 0) || max_connections == 0) return 0;
  // The epsilon keeps 0.1 * 30 (= 3.0000000000000004 in binary) at 3.
  const double share = std::min(retry_share, 1.0) * max_connections - 1e-9;
  const auto cap = static_cast<uint32_t>(std::ceil(share));
  return std::clamp<uint32_t>(cap, 1, max_connections);
}

void RecipientQueue::PushBack(const QueuedRecipient& r) {
  if (!items_) items_ = std::make_unique<std::deque<QueuedRecipient>>();
  if (items_->empty() || items_->back().message != r.message) ++runs_;
  items_->push_back(r);
}

void RecipientQueue::PushFront(const QueuedRecipient& r) {
  if (!items_) items_ = std::make_unique<std::deque<QueuedRecipient>>();
  if (items_->empty() || items_->front().message != r.message) ++runs_;
  items_->push_front(r);
}

QueuedRecipient RecipientQueue::PopFront() {
  HIKYAKU_CHECK(items_ && !items_->empty());
  const QueuedRecipient r = items_->front();
  items_->pop_front();
  if (items_->empty()) {
    --runs_;
    items_.reset();
  } else if (items_->front().message != r.message) {
    --runs_;
  }
  return r;
}

const QueuedRecipient& RecipientQueue::Front() const {
  HIKYAKU_CHECK(items_ && !items_->empty());
  return items_->front();
}

}  // namespace hikyaku::queue

// --- FlowLane ----------------------------------------------------------------

namespace hikyaku::queue {

const std::vector<FlowLane::Entry> FlowLane::kNoFlows;

const RecipientQueue* FlowLane::Find(FlowId flow) const {
  for (const Entry& e : flows()) {
    if (e.flow == flow) return &e.queue;
  }
  return nullptr;
}

FlowLane::Entry& FlowLane::Get(FlowId flow, bool high) {
  // Linear: a lane holds the flows of the tenants currently sending to this
  // site, usually one or a handful.
  if (!flows_) flows_ = std::make_unique<std::vector<Entry>>();
  std::optional<uint64_t> start;
  for (Entry& e : *flows_) {
    if (e.flow == flow) return e;
    // The class is read from the flow table by the caller; entries of the
    // other class do not bound this one's start.
    if (e.high == high) start = std::min(start.value_or(e.pass), e.pass);
  }
  Entry& e = flows_->emplace_back();
  e.flow = flow;
  e.high = high;
  e.pass = start.value_or(0);
  return e;
}

void FlowLane::PushBack(const QueuedRecipient& r, bool high) {
  RecipientQueue& q = Get(r.flow, high).queue;
  const size_t before = q.runs();
  q.PushBack(r);
  runs_ += q.runs() - before;
  ++size_;
}

void FlowLane::PushFront(const QueuedRecipient& r, bool high) {
  RecipientQueue& q = Get(r.flow, high).queue;
  const size_t before = q.runs();
  q.PushFront(r);
  runs_ += q.runs() - before;
  ++size_;
}

QueuedRecipient FlowLane::PopFront(size_t entry) {
  HIKYAKU_CHECK(flows_ && entry < flows_->size());
  RecipientQueue& q = (*flows_)[entry].queue;
  const size_t before = q.runs();
  const QueuedRecipient r = q.PopFront();
  runs_ -= before - q.runs();
  --size_;
  return r;
}

bool FlowLane::Prune(size_t i) {
  if (!(*flows_)[i].queue.empty()) return false;
  flows_->erase(flows_->begin() + static_cast<std::ptrdiff_t>(i));
  if (flows_->empty()) flows_.reset();  // an empty site must stay small
  return true;
}

}  // namespace hikyaku::queue
