#include "queue/flow_table.h"

#include "base/check.h"

namespace hikyaku::queue {

namespace {
uint64_t Key(uint32_t tenant, Priority priority) {
  return (uint64_t{tenant} << 1) | static_cast<uint64_t>(priority);
}
}  // namespace

FlowTable::FlowTable() {
  const FlowId id = Intern("", Priority::kNormal);
  HIKYAKU_CHECK(id == kDefaultFlow);
}

uint32_t FlowTable::TenantIndex(std::string_view tenant) {
  if (auto it = tenant_ids_.find(tenant); it != tenant_ids_.end()) return it->second;
  const auto index = static_cast<uint32_t>(tenants_.size());
  tenants_.push_back(Tenant{std::string(tenant), 1});
  tenant_ids_.emplace(tenants_.back().name, index);
  return index;
}

FlowId FlowTable::Intern(std::string_view tenant, Priority priority) {
  const uint32_t t = TenantIndex(tenant);
  if (auto it = flow_ids_.find(Key(t, priority)); it != flow_ids_.end()) return it->second;
  HIKYAKU_CHECK(flows_.size() <= UINT16_MAX);
  const auto id = static_cast<FlowId>(flows_.size());
  flows_.push_back(Flow{t, priority});
  flow_ids_.emplace(Key(t, priority), id);
  return id;
}

void FlowTable::SetTenantWeight(std::string_view tenant, uint32_t weight) {
  HIKYAKU_CHECK(weight >= 1);
  tenants_[TenantIndex(tenant)].weight = weight;
}

uint32_t FlowTable::TenantWeight(std::string_view tenant) const {
  auto it = tenant_ids_.find(tenant);
  return it == tenant_ids_.end() ? 1 : tenants_[it->second].weight;
}

std::string_view FlowTable::tenant(FlowId id) const {
  HIKYAKU_CHECK(id < flows_.size());
  return tenants_[flows_[id].tenant].name;
}

Priority FlowTable::priority(FlowId id) const {
  HIKYAKU_CHECK(id < flows_.size());
  return flows_[id].priority;
}

uint32_t FlowTable::weight(FlowId id) const {
  HIKYAKU_CHECK(id < flows_.size());
  return tenants_[flows_[id].tenant].weight;
}

}  // namespace hikyaku::queue
