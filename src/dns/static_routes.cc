#include "dns/static_routes.h"

#include <boost/asio/post.hpp>
#include <utility>

namespace hikyaku::dns {
namespace {

std::optional<boost::asio::ip::address> ParseIp(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(std::string(host), ec);
  if (ec) return std::nullopt;
  return address;
}

}  // namespace

Router::Router(boost::asio::any_io_executor executor, Resolver& inner,
               const std::vector<config::RouteConfig>& routes)
    : executor_(std::move(executor)), inner_(inner) {
  for (const config::RouteConfig& config : routes) {
    Route route{config, ParseIp(config.host)};
    std::string domain = NormalizeName(config.domain);
    if (domain.starts_with("*.")) {
      suffixes_.try_emplace(domain.substr(1), std::move(route));
    } else {
      exact_.try_emplace(domain, std::move(route));
    }
  }
}

const Router::Route* Router::Find(const std::string& domain) const {
  if (auto it = exact_.find(domain); it != exact_.end()) return &it->second;
  if (suffixes_.empty()) return nullptr;
  // Suffixes from the longest (".b.example.test") to the shortest (".test").
  for (size_t dot = domain.find('.'); dot != std::string::npos; dot = domain.find('.', dot + 1)) {
    if (auto it = suffixes_.find(domain.substr(dot)); it != suffixes_.end()) return &it->second;
  }
  return nullptr;
}

const config::RouteConfig* Router::FindRoute(std::string_view domain) const {
  const Route* route = Find(NormalizeName(domain));
  return route == nullptr ? nullptr : &route->config;
}

std::optional<std::string> Router::RouteSite(std::string_view domain) const {
  const config::RouteConfig* route = FindRoute(domain);
  if (route == nullptr || route->site.empty()) return std::nullopt;
  return route->site;
}

void Router::ResolveMx(const std::string& raw, MxCallback done) {
  std::string domain = NormalizeName(raw);
  const Route* route = Find(domain);
  if (route == nullptr) return inner_.ResolveMx(raw, std::move(done));
  uint16_t port = route->config.port;
  if (route->address) {
    Destination dest{domain, {MxHost{route->config.host, 0, {*route->address}, port}}, false,
                     TimePoint::max(), route->config.site};
    boost::asio::post(executor_, [done = std::move(done), dest = std::move(dest)]() mutable {
      done(std::move(dest));
    });
    return;
  }
  std::string host = NormalizeName(route->config.host);
  inner_.ResolveHost(host, [domain, host, port, site = route->config.site,
                            done = std::move(done)](Result<HostAddresses> result) {
    if (!result) {
      ErrorCode code = result.error().transient() ? result.error().code() : ErrorCode::kUnavailable;
      return done(
          Fail(code, domain + ": static route to " + host + ": " + result.error().message()));
    }
    done(Destination{domain, {MxHost{host, 0, std::move(result->addresses), port}}, false,
                     result->expires, site});
  });
}

void Router::ResolveHost(const std::string& name, HostCallback done) {
  inner_.ResolveHost(name, std::move(done));
}

}  // namespace hikyaku::dns
