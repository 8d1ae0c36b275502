// SmoothWrr: smooth weighted round robin over a fixed list of (id, weight),
// the algorithm nginx uses for upstream peers. It chooses which source IP of
// a pool sends the next transaction so that weights 5:1:1 give
// a a b a c a a, not a a a a a b c: each source's traffic is spread evenly in
// time instead of arriving in clumps a receiver would notice.
//
// The rule, for one Pick over the eligible entries E:
//   for e in E: e.current += e.weight;   total = sum of weights over E
//   chosen = the e in E with the largest current (first in list order on ties)
//   chosen.current -= total
// Entries that are not eligible (no headroom: at their connection or rate
// limit, warm-up cap reached) take no part: their credit neither grows nor
// shrinks, so an entry that was ineligible for an hour does not come back
// with an hour of credit and monopolise the picks. Weight 0 is never picked.
// Every credit stays within (-total weight, total weight].
//
// Thread-safety: not synchronised; one owner.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace hikyaku::shaping {

struct WrrEntry {
  std::string id;  // e.g. the source IP
  uint32_t weight = 1;
};

class SmoothWrr {
 public:
  explicit SmoothWrr(std::vector<WrrEntry> entries);

  // The index (into entries()) of the next entry among those for which
  // eligible(index) is true; nullopt when none is eligible with weight > 0.
  std::optional<size_t> Pick(const std::function<bool(size_t)>& eligible);
  std::optional<size_t> Pick() {
    return Pick([](size_t) { return true; });
  }

  // Reload: the new list replaces the old. Entries whose id is kept keep
  // their credit (clamped to the new bounds); new entries start at zero.
  void SetWeights(std::vector<WrrEntry> entries);

  const std::vector<WrrEntry>& entries() const { return entries_; }
  int64_t credit(size_t index) const { return current_[index]; }

 private:
  void ClampCredit();

  std::vector<WrrEntry> entries_;
  std::vector<int64_t> current_;
};

}  // namespace hikyaku::shaping
