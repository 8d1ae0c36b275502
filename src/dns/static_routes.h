// Router: the Resolver that applies [[route]] entries (config.h RouteConfig,
// like Postfix transport maps) before asking DNS.
//
// Matching: an exact domain entry wins; otherwise the longest "*.suffix"
// entry whose suffix ends the domain ("*.example.test" matches
// "a.b.example.test", not "example.test"); otherwise the inner resolver's
// MX lookup. Among duplicates the first in file order wins. Case and a
// trailing dot are ignored.
//
// A routed domain gets one host, preference 0, on the route's port:
//   - host is an IP literal ("192.0.2.1", "2001:db8::1", "[2001:db8::1]"):
//     that address, no DNS, never expires;
//   - host is a name: its A/AAAA through inner.ResolveHost(). Failures are
//     reported transient (kUnavailable/kTimeout) even when DNS says the name
//     does not exist: a broken route is the operator's to fix, and mail
//     should wait for the fix, not bounce.
//
// Thread-safety: immutable after construction; callable from any thread.
// Callbacks for IP literal routes are posted to `executor`; the others run
// where the inner resolver runs them. `inner` must outlive the router.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "dns/resolver.h"

namespace hikyaku::dns {

class Router final : public Resolver {
 public:
  Router(boost::asio::any_io_executor executor, Resolver& inner,
         const std::vector<config::RouteConfig>& routes);

  void ResolveMx(const std::string& domain, MxCallback done) override;
  // Not routed: host names are the inner resolver's.
  void ResolveHost(const std::string& name, HostCallback done) override;

  // The route for `domain`, if one matches; nullptr otherwise.
  const config::RouteConfig* FindRoute(std::string_view domain) const;
  // The route's site name, when a route matches and names one.
  std::optional<std::string> RouteSite(std::string_view domain) const;

 private:
  struct Route {
    config::RouteConfig config;
    std::optional<boost::asio::ip::address> address;  // when config.host is an IP literal
  };
  const Route* Find(const std::string& normalized) const;

  boost::asio::any_io_executor executor_;
  Resolver& inner_;
  std::unordered_map<std::string, Route> exact_;
  std::unordered_map<std::string, Route> suffixes_;  // ".example.test" for "*.example.test"
};

}  // namespace hikyaku::dns
