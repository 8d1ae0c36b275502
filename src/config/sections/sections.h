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
// `provider_root` is the provider file's root, or null without one.
void ResolveSites(Reader& r, const toml::table& root, const toml::table* provider_root, Config& c);
// Merges the provider file's sites into c.sites (the operator's): a
// same-named operator site overrides the provider's key by key; operator
// sites keep their order, provider-only sites follow in theirs.
void MergeProviderSites(Reader& r, const toml::table& root, std::vector<SiteConfig> provided,
                        const std::string& provider_file, Config& c);
Fields<SiteConfig> SiteFields();
Fields<RouteConfig> RouteFields();

// shaping.cc: [[source]], [[pool]], [[tenant]], [[reply_rule]], [[warmup]]
void ReadSources(Reader& r, const Node& n, const Path& p, Config& c);
void ReadPools(Reader& r, const Node& n, const Path& p, Config& c);
void ReadTenants(Reader& r, const Node& n, const Path& p, Config& c);
void ReadReplyRules(Reader& r, const Node& n, const Path& p, Config& c);
void ReadWarmups(Reader& r, const Node& n, const Path& p, Config& c);
void SourceKeys(const std::string& path, std::vector<std::string>& out);
void PoolKeys(const std::string& path, std::vector<std::string>& out);
void TenantKeys(const std::string& path, std::vector<std::string>& out);
void ReplyRuleKeys(const std::string& path, std::vector<std::string>& out);
void WarmupKeys(const std::string& path, std::vector<std::string>& out);
// After every file is read and merged: the implicit source and pool,
// delivery.pool and the defaults that name it, then every reference made
// with Reader::Refer.
void ResolveShaping(Reader& r, const toml::table& root, Config& c);

}  // namespace hikyaku::config::detail
