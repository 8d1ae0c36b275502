// The sections of the configuration file, one file per group of tables.
//
// Each section file exports the field table of its TOML table(s) (the
// schema, see config/reader.h) and, for tables that are not a single plain
// table ([tls.NAME], arrays of tables), the function that reads them into
// the Config and lists their keys. config.cc assembles the root from these
// and resolves the references between sections once everything is read.
//
// Internal to config/. Thread-safety: the tables are immutable.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "config/reader.h"

namespace hikyaku::config::detail {

// server_spool.cc: [server], [spool]
Fields<ServerConfig> ServerFields();
Fields<SpoolConfig> SpoolFields();

// tls_users.cc: [tls.NAME] and [[smtp_in.users]]
void ReadTlsProfiles(Reader& r, const Node& n, const Path& p, Config& c);
void TlsKeys(const std::string& path, std::vector<std::string>& out);
void ReadUsers(Reader& r, const Node& n, const Path& p, SmtpInConfig& c);
Fields<SmtpUser> SmtpUserFields();

// smtp_in.cc: [smtp_in]
Fields<SmtpInConfig> SmtpInFields();

// http_events.cc: [http], [events]
Fields<HttpConfig> HttpFields();
Fields<EventsConfig> EventsFields();

// delivery_retry_dns.cc: [delivery], [retry], [dns]
Fields<DeliveryConfig> DeliveryFields();
Fields<RetryConfig> RetryFields();
Fields<DnsConfig> DnsFields();

// sites_routes.cc: [[site]], [[route]], and the checks between them that
// need the whole file (route.site references, sites no mail could join).
void ReadSites(Reader& r, const Node& n, const Path& p, Config& c);
void ReadRoutes(Reader& r, const Node& n, const Path& p, Config& c);
void ResolveSites(Reader& r, const toml::table& root, Config& c);
Fields<SiteConfig> SiteFields();
Fields<RouteConfig> RouteFields();

}  // namespace hikyaku::config::detail
