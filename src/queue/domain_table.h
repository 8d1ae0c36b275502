// DomainTable: interns recipient domain names as dense 32-bit ids, so a
// QueuedRecipient can name its domain in 4 bytes. Names are compared
// case-insensitively (RFC 5321 2.4: domain names are not case-sensitive) and
// stored lower-cased. Ids are assigned from 0 in first-seen order and never
// reused; the table only grows (one entry per distinct domain ever seen).
//
// Thread-safety: not synchronised; owned by the dispatcher's thread.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>

namespace hikyaku::queue {

class DomainTable {
 public:
  DomainTable() = default;
  DomainTable(const DomainTable&) = delete;
  DomainTable& operator=(const DomainTable&) = delete;

  // The id of `domain`, adding it if new.
  uint32_t Intern(std::string_view domain);
  // The lower-cased name of an id returned by Intern. `id` must be valid.
  std::string_view Name(uint32_t id) const;
  size_t size() const { return names_.size(); }

 private:
  std::deque<std::string> names_;  // deque: stable addresses for the map's keys
  std::unordered_map<std::string_view, uint32_t> ids_;
};

}  // namespace hikyaku::queue
