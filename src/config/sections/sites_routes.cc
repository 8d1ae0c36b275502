#include "config/sections/sections.h"

#include <algorithm>
#include <charconv>

namespace hikyaku::config::detail {
namespace {

// A port number 1-65535, decimal, without sign or leading zeros.
std::optional<uint16_t> ParsePort(std::string_view text) {
  if (text.empty() || text.size() > 5 || text[0] == '0') return std::nullopt;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

// A [[route]] destination: "host", "host:port", "[ipv6]" or "[ipv6]:port",
// the host an IPv4 literal or a domain name; the port defaults to 25, where
// MX hosts listen. An IPv6 literal needs brackets, since "2001:db8::1:25"
// could end in a port or not.
struct RouteTarget {
  std::string host;  // lower-cased name, or the address in canonical text
  uint16_t port = 25;
};

tl::expected<RouteTarget, std::string> ParseRouteTarget(std::string_view text) {
  RouteTarget target;
  std::string_view host = text;
  std::string_view port;
  bool has_port = false;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos)
      return tl::unexpected(std::string("missing ']' after the IPv6 address"));
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':')
        return tl::unexpected(std::string("expected ':PORT' or nothing after ']'"));
      port = rest.substr(1);
      has_port = true;
    }
    auto address = IpAddress::Parse(host);
    if (!address || !address->v6) {
      return tl::unexpected("\"" + std::string(host) + "\" is not an IPv6 address");
    }
    target.host = address->ToString();
  } else {
    size_t colon = text.find(':');
    if (colon != std::string_view::npos) {
      if (text.find(':', colon + 1) != std::string_view::npos) {
        return tl::unexpected(
            std::string("an IPv6 address must be in brackets, e.g. \"[2001:db8::1]:25\""));
      }
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
      has_port = true;
    }
    if (auto address = IpAddress::Parse(host)) {
      target.host = address->ToString();
    } else if (!host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
                 return (c >= '0' && c <= '9') || c == '.';
               })) {
      return tl::unexpected("\"" + std::string(host) + "\" is not a valid IPv4 address");
    } else if (auto problem = HostnameProblem(host)) {
      return tl::unexpected("host " + *problem);
    } else {
      target.host = Lowercase(host);
    }
  }
  if (has_port) {
    auto number = ParsePort(port);
    if (!number) {
      return tl::unexpected("\"" + std::string(port) + "\" is not a port number (1-65535)");
    }
    target.port = *number;
  }
  return target;
}

// ---- [[site]]

// Site names appear in metrics labels, logs and event records, hence the
// ---- [[site.source]]

constexpr std::array<Field<SiteSourceLimits>, 6> kSiteSourceFields{{
    {"source",
     [](Reader& r, const Node& n, const Path& p, SiteSourceLimits& c) {
       if (auto name = r.Name(n, p, "source")) {
         c.source = *name;
         r.Refer("source", *name, n, p);
       }
     }},
    {"max_connections_per_source",
     ReadCount<&SiteSourceLimits::max_connections_per_source, 1, 10'000>},
    {"max_messages_per_connection",
     ReadCount<&SiteSourceLimits::max_messages_per_connection, 1, 100'000>},
    {"max_recipients_per_message",
     ReadCount<&SiteSourceLimits::max_recipients_per_message, 1, 100'000>},
    {"max_message_rate_per_source", ReadRate<&SiteSourceLimits::max_message_rate_per_source>},
    {"max_connection_rate_per_source",
     ReadRate<&SiteSourceLimits::max_connection_rate_per_source>},
}};

void ReadSiteSources(Reader& r, const Node& n, const Path& p, SiteConfig& c) {
  std::vector<std::pair<std::string, std::string>> seen;
  for (auto& read : r.ReadTables<SiteSourceLimits>(n, p, kSiteSourceFields, "[[site.source]]",
                                                   {"source"})) {
    if (IsDuplicate(r, seen, read.value.source, *read.table, read.path, "override for source",
                    "source")) {
      continue;
    }
    c.sources.push_back(std::move(read.value));
  }
}

constexpr std::array<Field<SiteConfig>, 9> kSiteFields{{
    {"name",
     [](Reader& r, const Node& n, const Path& p, SiteConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (!IsSiteName(*text)) {
         r.Report(
             n, p,
             "\"" + *text + "\" is not a site name: use lower-case letters, digits, '_' and '-'");
         return;
       }
       c.name = *text;
     }},
    {"mx_patterns",
     [](Reader& r, const Node& n, const Path& p, SiteConfig& c) {
       const toml::array* array = r.Array(n, p);
       if (array == nullptr) return;
       if (array->empty()) {
         r.Report(n, p, "must list at least one MX host name or \"*.suffix\" pattern");
         return;
       }
       std::vector<std::string> patterns;
       for (size_t i = 0; i < array->size(); ++i) {
         const Node& element = *array->get(i);
         std::string path = p + "[" + std::to_string(i) + "]";
         auto text = r.String(element, path);
         if (!text) continue;
         if (auto problem = DomainPatternProblem(*text)) {
           r.Report(element, path, *problem);
           continue;
         }
         std::string pattern = Lowercase(*text);
         if (std::find(patterns.begin(), patterns.end(), pattern) != patterns.end()) {
           r.Report(element, path, "duplicate pattern \"" + pattern + "\" listed before");
           continue;
         }
         patterns.push_back(std::move(pattern));
       }
       c.mx_patterns = std::move(patterns);
     }},
    {"max_connections", ReadCount<&SiteConfig::max_connections, 1, 10'000>},
    {"max_messages_per_connection",
     ReadCount<&SiteConfig::max_messages_per_connection, 1, 100'000>},
    {"max_connections_per_source", ReadCount<&SiteConfig::max_connections_per_source, 1, 10'000>},
    {"max_recipients_per_message",
     ReadCount<&SiteConfig::max_recipients_per_message, 1, 100'000>},
    {"max_message_rate_per_source", ReadRate<&SiteConfig::max_message_rate_per_source>},
    {"max_connection_rate_per_source", ReadRate<&SiteConfig::max_connection_rate_per_source>},
    {"source", ReadSiteSources,
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kSiteSourceFields, path, out);
     }},
}};

// ---- [[route]]

constexpr std::array<Field<RouteConfig>, 3> kRouteFields{{
    {"domain",
     [](Reader& r, const Node& n, const Path& p, RouteConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (auto problem = DomainPatternProblem(*text)) {
         r.Report(n, p, *problem);
         return;
       }
       c.domain = Lowercase(*text);
     }},
    {"to",
     [](Reader& r, const Node& n, const Path& p, RouteConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       auto target = ParseRouteTarget(*text);
       if (!target) {
         r.Report(n, p, "invalid destination \"" + *text + "\": " + target.error());
         return;
       }
       c.host = std::move(target->host);
       c.port = target->port;
     }},
    // Only the name here: [[site]] tables may come later in the file, so the
    // reference is resolved once everything is read (ResolveReferences).
    {"site",
     [](Reader& r, const Node& n, const Path& p, RouteConfig& c) {
       if (auto text = r.String(n, p)) c.site = *text;
     }},
}};

}  // namespace

void ReadSites(Reader& r, const Node& n, const Path& p, Config& c) {
  const toml::array* array = n.as_array();
  if (array == nullptr) {
    r.ReportType(n, p, "an array of tables ([[site]])");
    return;
  }
  for (size_t i = 0; i < array->size(); ++i) {
    const Node& element = *array->get(i);
    std::string path = p + "[" + std::to_string(i) + "]";
    if (!element.is_table()) {
      r.ReportType(element, path, "a table ([[site]] with name and mx_patterns)");
      continue;
    }
    SiteConfig site;
    r.ReadTable(element, path, kSiteFields, site);
    r.RequireKeys(*element.as_table(), path, {"name"});
    if (!site.name.empty()) {
      auto same = std::find_if(c.sites.begin(), c.sites.end(),
                               [&](const SiteConfig& s) { return s.name == site.name; });
      if (same != c.sites.end()) {
        r.Report(*element.as_table()->get("name"), path + ".name",
                 "duplicate site \"" + site.name + "\" (first defined at site[" +
                     std::to_string(same - c.sites.begin()) + "])");
        continue;
      }
    }
    // One MX host must lead to one site, or its queue and limits would
    // depend on table order.
    if (const toml::array* patterns = element.as_table()->get_as<toml::array>("mx_patterns")) {
      std::vector<std::string> seen;
      for (size_t k = 0; k < patterns->size(); ++k) {
        const auto* text = patterns->get(k)->as_string();
        if (text == nullptr || DomainPatternProblem(text->get())) continue;  // reported already
        std::string pattern = Lowercase(text->get());
        if (std::find(seen.begin(), seen.end(), pattern) != seen.end()) continue;
        seen.push_back(pattern);
        for (const SiteConfig& other : c.sites) {
          if (std::find(other.mx_patterns.begin(), other.mx_patterns.end(), pattern) !=
              other.mx_patterns.end()) {
            r.Report(*patterns->get(k), path + ".mx_patterns[" + std::to_string(k) + "]",
                     "pattern \"" + pattern + "\" already belongs to site \"" + other.name + "\"");
            break;
          }
        }
      }
    }
    c.sites.push_back(std::move(site));
  }
}

void ReadRoutes(Reader& r, const Node& n, const Path& p, Config& c) {
  const toml::array* array = n.as_array();
  if (array == nullptr) {
    r.ReportType(n, p, "an array of tables ([[route]])");
    return;
  }
  std::vector<std::string> first_paths;  // parallel to c.routes, for the duplicate message
  for (size_t i = 0; i < array->size(); ++i) {
    const Node& element = *array->get(i);
    std::string path = p + "[" + std::to_string(i) + "]";
    if (!element.is_table()) {
      r.ReportType(element, path, "a table ([[route]] with domain and to)");
      continue;
    }
    RouteConfig route;
    r.ReadTable(element, path, kRouteFields, route);
    r.RequireKeys(*element.as_table(), path, {"domain", "to"});
    if (!route.domain.empty()) {
      auto same = std::find_if(c.routes.begin(), c.routes.end(),
                               [&](const RouteConfig& o) { return o.domain == route.domain; });
      if (same != c.routes.end()) {
        r.Report(*element.as_table()->get("domain"), path + ".domain",
                 "duplicate route for \"" + route.domain + "\" (first defined at " +
                     first_paths[static_cast<size_t>(same - c.routes.begin())] + ")");
        continue;
      }
    }
    c.routes.push_back(std::move(route));
    first_paths.push_back(path);
  }
}

void ResolveSites(Reader& r, const toml::table& root, const toml::table* provider_root,
                  Config& c) {
  auto find = [&c](const std::string& name) -> const SiteConfig* {
    auto it = std::find_if(c.sites.begin(), c.sites.end(),
                           [&](const SiteConfig& s) { return s.name == name; });
    return it == c.sites.end() ? nullptr : &*it;
  };
  std::vector<const toml::array*> site_arrays = {root.get_as<toml::array>("site")};
  if (provider_root != nullptr) site_arrays.push_back(provider_root->get_as<toml::array>("site"));
  // Names of [[site]] tables whose definition was itself in error: a route
  // naming one of those has no second problem worth reporting.
  std::vector<std::string> broken;
  for (const toml::array* sites : site_arrays) {
    if (sites == nullptr) continue;
    for (const toml::node& element : *sites) {
      const toml::table* table = element.as_table();
      if (table == nullptr) continue;
      if (const auto* name = table->get_as<std::string>("name"); name != nullptr) {
        if (find(name->get()) == nullptr) broken.push_back(name->get());
      }
    }
  }
  bool unresolved = false;
  const toml::array* routes = root.get_as<toml::array>("route");
  if (routes != nullptr) {
    for (size_t i = 0; i < routes->size(); ++i) {
      const toml::table* table = routes->get(i)->as_table();
      if (table == nullptr) continue;
      const auto* site = table->get_as<std::string>("site");
      if (site == nullptr || site->get().empty() || find(site->get()) != nullptr) continue;
      unresolved = true;
      if (std::find(broken.begin(), broken.end(), site->get()) != broken.end()) continue;
      std::string names;
      for (const SiteConfig& s : c.sites) names += (names.empty() ? "" : ", ") + s.name;
      r.Report(*site, "route[" + std::to_string(i) + "].site",
               "no [[site]] named \"" + site->get() + "\" is defined" +
                   (names.empty() ? std::string(" (no sites are defined)")
                                  : " (defined: " + names + ")"));
    }
  }
  // A site joins mail through its MX patterns or through routes naming it;
  // with neither, its limits could never apply, which is surely a mistake.
  // While some route names a site that is not defined, that route was
  // probably meant for this site: the error above says enough. A site of
  // the operator's file may leave mx_patterns to the provider file's site
  // of the same name.
  if (unresolved) return;
  for (const toml::array* sites : site_arrays) {
    if (sites == nullptr) continue;
    for (size_t i = 0; i < sites->size(); ++i) {
      const toml::table* table = sites->get(i)->as_table();
      if (table == nullptr || table->contains("mx_patterns")) continue;
      const auto* name = table->get_as<std::string>("name");
      if (name == nullptr) continue;
      const SiteConfig* site = find(name->get());
      if (site == nullptr || !site->mx_patterns.empty()) continue;
      bool routed = std::any_of(c.routes.begin(), c.routes.end(), [&](const RouteConfig& route) {
        return route.site == name->get();
      });
      if (!routed) {
        r.Report(*table, "site[" + std::to_string(i) + "].mx_patterns",
                 "required key is missing: no [[route]] names site \"" + name->get() +
                     "\", so only mx_patterns could bring mail to it");
      }
    }
  }
}

void MergeProviderSites(Reader& r, const toml::table& root, std::vector<SiteConfig> provided,
                        const std::string& provider_file, Config& c) {
  // Key by key: what the operator sets wins, the rest comes from the provider.
  auto overlay = [](SiteConfig& base, const SiteConfig& own) {
    if (!own.mx_patterns.empty()) base.mx_patterns = own.mx_patterns;
    auto take = [](auto& to, const auto& from) {
      if (from) to = from;
    };
    take(base.max_connections, own.max_connections);
    take(base.max_messages_per_connection, own.max_messages_per_connection);
    take(base.max_connections_per_source, own.max_connections_per_source);
    take(base.max_recipients_per_message, own.max_recipients_per_message);
    take(base.max_message_rate_per_source, own.max_message_rate_per_source);
    take(base.max_connection_rate_per_source, own.max_connection_rate_per_source);
    if (!own.sources.empty()) base.sources = own.sources;
  };
  std::vector<SiteConfig> merged;
  std::vector<bool> used(provided.size(), false);
  // Patterns still owned by a provider site after the merge, by site name.
  for (const SiteConfig& own : c.sites) {
    auto same = std::find_if(provided.begin(), provided.end(), [&](const SiteConfig& s) {
      return !own.name.empty() && s.name == own.name;
    });
    if (same == provided.end()) {
      merged.push_back(own);
      continue;
    }
    used[static_cast<size_t>(same - provided.begin())] = true;
    SiteConfig site = *same;
    overlay(site, own);
    merged.push_back(std::move(site));
  }
  for (size_t i = 0; i < provided.size(); ++i) {
    if (!used[i]) merged.push_back(std::move(provided[i]));
  }
  // One MX host must lead to one site: an operator pattern that a provider
  // site (of another name, keeping its own patterns) already has is an error
  // at the operator's pattern; naming the site as the provider does merges.
  const toml::array* sites = root.get_as<toml::array>("site");
  if (sites != nullptr) {
    for (size_t i = 0; i < sites->size(); ++i) {
      const toml::table* table = sites->get(i)->as_table();
      if (table == nullptr) continue;
      const auto* name = table->get_as<std::string>("name");
      const toml::array* patterns = table->get_as<toml::array>("mx_patterns");
      if (name == nullptr || patterns == nullptr) continue;
      for (size_t k = 0; k < patterns->size(); ++k) {
        const auto* text = patterns->get(k)->as_string();
        if (text == nullptr) continue;
        std::string pattern = Lowercase(text->get());
        for (const SiteConfig& other : merged) {
          if (other.name == name->get()) continue;
          bool from_provider =
              std::none_of(c.sites.begin(), c.sites.end(), [&](const SiteConfig& own) {
                return own.name == other.name && !own.mx_patterns.empty();
              });
          if (from_provider && std::find(other.mx_patterns.begin(), other.mx_patterns.end(),
                                         pattern) != other.mx_patterns.end()) {
            r.Report(*patterns->get(k),
                     "site[" + std::to_string(i) + "].mx_patterns[" + std::to_string(k) + "]",
                     "pattern \"" + pattern + "\" already belongs to site \"" + other.name +
                         "\" of " + provider_file + "; name this site \"" + other.name +
                         "\" to override it");
            break;
          }
        }
      }
    }
  }
  c.sites = std::move(merged);
}

Fields<SiteConfig> SiteFields() { return kSiteFields; }
Fields<RouteConfig> RouteFields() { return kRouteFields; }

}  // namespace hikyaku::config::detail
