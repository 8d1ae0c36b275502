#include "queue/domain_table.h"

#include "base/check.h"

namespace hikyaku::queue {

uint32_t DomainTable::Intern(std::string_view domain) {
  std::string lower(domain);
  for (char& c : lower) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (auto it = ids_.find(lower); it != ids_.end()) return it->second;
  HIKYAKU_CHECK(names_.size() < UINT32_MAX);
  const auto id = static_cast<uint32_t>(names_.size());
  names_.push_back(std::move(lower));
  ids_.emplace(names_.back(), id);
  return id;
}

std::string_view DomainTable::Name(uint32_t id) const {
  HIKYAKU_CHECK(id < names_.size());
  return names_[id];
}

}  // namespace hikyaku::queue
