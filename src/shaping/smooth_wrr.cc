#include "shaping/smooth_wrr.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

namespace hikyaku::shaping {

SmoothWrr::SmoothWrr(std::vector<WrrEntry> entries)
    : entries_(std::move(entries)), current_(entries_.size(), 0) {}

std::optional<size_t> SmoothWrr::Pick(const std::function<bool(size_t)>& eligible) {
  int64_t total = 0;
  std::optional<size_t> best;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].weight == 0 || !eligible(i)) continue;
    current_[i] += entries_[i].weight;
    total += entries_[i].weight;
    if (!best || current_[i] > current_[*best]) best = i;
  }
  if (best) current_[*best] -= total;
  return best;
}

void SmoothWrr::SetWeights(std::vector<WrrEntry> entries) {
  std::unordered_map<std::string, int64_t> kept;
  for (size_t i = 0; i < entries_.size(); ++i) kept.emplace(entries_[i].id, current_[i]);
  entries_ = std::move(entries);
  current_.assign(entries_.size(), 0);
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (auto it = kept.find(entries_[i].id); it != kept.end()) current_[i] = it->second;
  }
  ClampCredit();
}

// After a reload the old credits may exceed what the new weights can ever
// produce; the bound keeps the first picks after a reload smooth as well.
void SmoothWrr::ClampCredit() {
  int64_t total = 0;
  for (const WrrEntry& e : entries_) total += e.weight;
  for (int64_t& c : current_) c = std::clamp<int64_t>(c, -total, total);
}

}  // namespace hikyaku::shaping
