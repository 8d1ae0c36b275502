// SiteAssignment: which site (queue and set of limits) a destination joins.
// Pure policy, no I/O: the dispatcher resolves a domain, then asks this.
//
// Rules, first match wins:
//   1. a static route that names a site ([[route]] site = "docomo"): that site;
//   2. a named site ([[site]]) one of whose mx_patterns matches one of the
//      destination's MX host names ("*.example.jp" matches every name
//      ending in ".example.jp", not the parent; other patterns match exactly;
//      sites are tried in configuration order, patterns in their order);
//   3. otherwise the MX host set itself: the sorted, de-duplicated host
//      names ("name" for port 25, "name:port" otherwise) joined by ",", so
//      domains hosted on the same MX hosts share one queue.
// Names compare as given: the resolver hands out lower-case names.
//
// Thread-safety: immutable after construction; safe from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hikyaku::queue {

struct NamedSite {
  std::string name;
  std::vector<std::string> mx_patterns;
};

struct SiteHost {
  std::string_view name;
  uint16_t port = 25;
};

struct SiteAssignmentResult {
  std::string key;
  bool named = false;  // rule 1 or 2: `key` is the name of a configured site
};

class SiteAssignment {
 public:
  SiteAssignment() = default;
  explicit SiteAssignment(std::vector<NamedSite> sites) : sites_(std::move(sites)) {}

  // `route_site`: the site a static route named for the domain, or empty.
  SiteAssignmentResult Assign(std::string_view route_site, std::span<const SiteHost> hosts) const;

 private:
  std::vector<NamedSite> sites_;
};

// True if `host` matches `pattern` ("*.example.jp" or an exact name).
bool MatchesSitePattern(std::string_view host, std::string_view pattern);

}  // namespace hikyaku::queue
