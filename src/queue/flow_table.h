// FlowTable: interns flows, the unit of fairness inside a site lane. A flow
// is a (tenant, priority) pair named by a dense 16-bit FlowId, which is what
// QueuedRecipient::flow carries (2 bytes, so the recipient stays 32 bytes).
// Each tenant has a weight (default 1): among normal-priority flows with
// backlog, a lane hands out recipients in proportion to their tenants'
// weights (see Scheduler::TakeBatch and README.md, "Fairness").
//
// Flow 0 is (no tenant "", kNormal): recipients whose flow is never set all
// share it, and a scheduler that only ever sees flow 0 behaves exactly as
// before flows existed. Ids are assigned in first-seen order and never
// reused; the table only grows (at most 65 536 flows, i.e. 32 768 tenants).
// Tenant names are compared exactly (the configuration's spelling).
//
// Parsing of X-Hikyaku-Priority / HTTP `priority` is not here: callers pass
// the parsed Priority.
//
// Thread-safety: not synchronised; owned by the Scheduler's thread.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hikyaku::queue {

using FlowId = uint16_t;
inline constexpr FlowId kDefaultFlow = 0;

// kHigh flows of a lane are served strictly before its kNormal flows.
enum class Priority : uint8_t { kNormal = 0, kHigh = 1 };

inline constexpr const char* ToString(Priority p) {
  return p == Priority::kHigh ? "high" : "normal";
}

class FlowTable {
 public:
  FlowTable();
  FlowTable(const FlowTable&) = delete;
  FlowTable& operator=(const FlowTable&) = delete;

  // The flow of (tenant, priority), adding it (and the tenant, weight 1) if
  // new. Aborts past 65 536 flows.
  FlowId Intern(std::string_view tenant, Priority priority);
  // Sets a tenant's weight (>= 1), adding the tenant if new. Takes effect at
  // the next TakeBatch for every flow of the tenant.
  void SetTenantWeight(std::string_view tenant, uint32_t weight);
  uint32_t TenantWeight(std::string_view tenant) const;  // 1 for unknown tenants

  // Lookups by id; `id` must come from Intern (or be kDefaultFlow).
  std::string_view tenant(FlowId id) const;
  Priority priority(FlowId id) const;
  uint32_t weight(FlowId id) const;
  size_t size() const { return flows_.size(); }

 private:
  struct Tenant {
    std::string name;
    uint32_t weight = 1;
  };
  struct Flow {
    uint32_t tenant = 0;  // index into tenants_
    Priority priority = Priority::kNormal;
  };
  uint32_t TenantIndex(std::string_view tenant);

  std::deque<Tenant> tenants_;  // deque: stable addresses for the map's keys
  std::unordered_map<std::string_view, uint32_t> tenant_ids_;
  std::vector<Flow> flows_;
  // (tenant index << 1 | priority) -> flow
  std::unordered_map<uint64_t, FlowId> flow_ids_;
};

}  // namespace hikyaku::queue
