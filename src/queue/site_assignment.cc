#include "queue/site_assignment.h"

#include <algorithm>

namespace hikyaku::queue {

bool MatchesSitePattern(std::string_view host, std::string_view pattern) {
  if (pattern.starts_with("*.")) {
    std::string_view suffix = pattern.substr(1);  // ".example.jp"
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  return host == pattern;
}

SiteAssignmentResult SiteAssignment::Assign(std::string_view route_site, std::span<const SiteHost> hosts) const {
  if (!route_site.empty()) return {std::string(route_site), true};
  for (const auto& site : sites_)
    for (const auto& host : hosts)
      for (const auto& pattern : site.mx_patterns)
        if (MatchesSitePattern(host.name, pattern)) return {site.name, true};
  std::vector<std::string> names;
  names.reserve(hosts.size());
  for (const auto& host : hosts)
    names.push_back(host.port == 25 ? std::string(host.name) : std::string(host.name) + ":" + std::to_string(host.port));
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  SiteAssignmentResult result;
  for (const auto& n : names) {
    if (!result.key.empty()) result.key += ',';
    result.key += n;
  }
  return result;
}

}  // namespace hikyaku::queue
