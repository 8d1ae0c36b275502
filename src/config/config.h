// Config: the validated configuration of one hikyaku process.
//
// Contract: LoadConfig either returns a Config in which every value has been
// checked (ranges, addresses, references), or the complete list of problems
// found, each with file, line and column. Nothing half-valid escapes.
// This header is the only one other modules include; toml++ stays in config/.
//
// Thread-safety: Config is an immutable value once loaded.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "base/clock.h"
#include "config/net.h"

namespace hikyaku::config {

enum class SyncMode {
  kGroup,  // acknowledge after the shared fdatasync of the journal that covers the write
  kNone,   // acknowledge after the write reached the OS page cache (survives a process crash, not a power loss)
};

struct ServerConfig {
  std::string hostname;  // EHLO name and Message-ID domain; default: the system host name
};

struct SpoolConfig {
  std::filesystem::path path = "var/spool";
  SyncMode sync = SyncMode::kGroup;
  uint64_t memtable_size = 64ull << 20;  // bytes held in memory before a flush to disk tables
  // sync = group: how long a small commit group may wait for more writers
  // before its fdatasync (fewer syncs per message under load).
  Duration commit_delay = std::chrono::milliseconds(1);
  // sync = group: a group of this many writes syncs without waiting out
  // commit_delay; under load at most one sync per commit_group messages.
  uint32_t commit_group = 32;
};

// A certificate and private key pair, defined once under [tls.NAME] and
// referenced by name from listeners.
struct TlsProfile {
  std::string name;
  std::filesystem::path certificate;  // PEM chain
  std::filesystem::path key;          // PEM private key
};

struct SmtpUser {
  std::string name;
  std::string password_hash;  // "$pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>" (auth/password.h)
  std::string tenant;         // the [[tenant]] its mail belongs to; empty: none (checked to exist)
};

struct SmtpInConfig {
  std::vector<Endpoint> listen = {Endpoint::Loopback(2525)};
  // Clients that may inject without AUTH; default 127.0.0.0/8 and ::1/128.
  std::vector<Cidr> relay_networks = {
      Cidr{IpAddress::V4(127, 0, 0, 0), 8},
      Cidr{IpAddress{.v6 = true, .bytes = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}, 128}};
  uint64_t max_message_size = 25ull << 20;  // bytes, advertised with SIZE
  uint32_t max_recipients = 1000;           // per message
  uint32_t max_connections = 10000;         // concurrent, all listeners together
  uint32_t max_errors = 10;                 // bad commands before the session is closed
  Duration command_timeout = std::chrono::minutes(5);  // RFC 5321 4.5.3.2.7
  Duration data_timeout = std::chrono::minutes(10);
  std::optional<TlsProfile> tls;             // resolved from smtp_in.tls = "NAME"
  std::vector<SmtpUser> users;               // AUTH PLAIN/LOGIN, offered only over TLS
};

struct HttpConfig {
  Endpoint listen = Endpoint::Loopback(8025);
  uint64_t max_body_size = 30ull << 20;
};

struct EventsConfig {
  std::filesystem::path path = "var/log/events.jsonl";
};

// --- Delivery (issue 3) ----------------------------------------------------

// A rate limit such as "300/min": at most `count` events per `per`.
// Parsed from "COUNT/UNIT" with UNIT s|sec, min|minute, h|hour, d|day;
// count >= 1 (a missing key means "not limited").
struct Rate {
  uint64_t count = 0;
  Duration per{};
  double PerSecond() const;  // count / per in seconds; 0 when per is zero
  bool operator==(const Rate&) const = default;
};

enum class StartTlsPolicy {
  kOpportunistic,  // use STARTTLS when offered; on handshake failure retry that host in clear
  kNever,
};

// How the outbound SMTP client behaves, per site unless a [[site]] overrides it.
struct DeliveryConfig {
  bool hold = false;  // accept and keep mail, deliver nothing (maintenance, injection benchmarks)
  uint32_t max_connections_per_site = 20;
  double retry_share = 0.25;                  // at most this share of a site's connections serve the retry lane
  uint32_t max_connections = 2000;            // all sites together
  uint32_t max_messages_per_connection = 100; // then QUIT and reconnect
  uint32_t max_recipients_per_transaction = 50;  // RCPTs per MAIL when the content is identical
  Duration idle_timeout = std::chrono::seconds(5);  // keep an idle connection this long for more mail
  // Per-phase client timeouts (RFC 5321 4.5.3.2 gives the upper bounds).
  Duration connect_timeout = std::chrono::seconds(30);
  Duration banner_timeout = std::chrono::seconds(60);
  Duration ehlo_timeout = std::chrono::seconds(60);
  Duration mail_timeout = std::chrono::seconds(60);
  Duration rcpt_timeout = std::chrono::seconds(60);
  Duration data_timeout = std::chrono::seconds(120);      // the 354 after DATA
  Duration data_end_timeout = std::chrono::seconds(600);  // the reply after the final dot
  std::optional<IpAddress> source_address;    // bind outgoing connections to this local IP
  std::string helo_name;                      // default: server.hostname
  StartTlsPolicy starttls = StartTlsPolicy::kOpportunistic;
  // Dead hosts (circuit breaker): a host that refuses, times out on connect or
  // never sends a banner is "down" for host_down_initial, doubling per failed
  // probe up to host_down_max.
  Duration host_down_initial = std::chrono::seconds(60);
  Duration host_down_max = std::chrono::minutes(30);
  // The [[pool]] mail uses when its tenant names none. Always set after
  // loading: "default" (the implicit pool) unless the file names another.
  std::string pool;
  // Defaults for every (source, site) pair; a [[site]] or [[site.source]]
  // overrides them. nullopt: not limited (the file may say 0 for that).
  std::optional<uint32_t> max_connections_per_source;
  std::optional<uint32_t> max_recipients_per_message;
  std::optional<Rate> max_message_rate_per_source;
  std::optional<Rate> max_connection_rate_per_source;
};

struct RetryConfig {
  Duration initial = std::chrono::minutes(5);   // first retry after this
  Duration max = std::chrono::hours(4);         // the backoff doubles up to this cap
  Duration max_age = std::chrono::days(3);      // then the recipient expires (bounce event)
  double jitter = 0.2;                          // +-20% random spread of each delay
  uint32_t reactivation_rate = 1000;            // due retries entering the retry lanes, per second at most
};

struct DnsConfig {
  std::vector<Endpoint> servers;                // empty: the system resolver (/etc/resolv.conf)
  Duration timeout = std::chrono::seconds(5);
  uint32_t attempts = 2;
  Duration negative_ttl = std::chrono::minutes(5);  // cache of NXDOMAIN / no data
  Duration max_ttl = std::chrono::hours(1);          // TTLs above this are clamped
};

// A static route, like Postfix's transport maps: mail for `domain` goes to
// `to` without an MX lookup. "*.example.test" matches every subdomain (not the
// parent); an exact entry wins over a wildcard.
struct RouteConfig {
  std::string domain;
  std::string host;     // IP literal or host name
  uint16_t port = 25;
  std::string site;     // optional: the site (rollup) name these recipients join
};

// A named site (rollup): every destination whose MX host name matches one of
// `mx_patterns` ("*.mail.example.jp", exact names too) shares one queue and
// one set of limits.
// [[site.source]]: limits of one source at one site, overriding the site's.
struct SiteSourceLimits {
  std::string source;  // a [[source]] name (checked to exist)
  std::optional<uint32_t> max_connections_per_source;
  std::optional<uint32_t> max_messages_per_connection;
  std::optional<uint32_t> max_recipients_per_message;
  std::optional<Rate> max_message_rate_per_source;
  std::optional<Rate> max_connection_rate_per_source;
};

struct SiteConfig {
  std::string name;
  std::vector<std::string> mx_patterns;
  std::optional<uint32_t> max_connections;  // overrides delivery.max_connections_per_site
  std::optional<uint32_t> max_messages_per_connection;
  // Per (source, site) limits; unset ones fall back to [delivery]'s.
  std::optional<uint32_t> max_connections_per_source;
  std::optional<uint32_t> max_recipients_per_message;
  std::optional<Rate> max_message_rate_per_source;
  std::optional<Rate> max_connection_rate_per_source;
  std::vector<SiteSourceLimits> sources;  // [[site.source]], in file order, one per source
};

// --- Traffic shaping (issue 11) --------------------------------------------

// [[source]]: one local address outgoing connections are bound to.
struct SourceConfig {
  std::string name;
  // nullopt only for the implicit source "default" without
  // delivery.source_address: the OS picks the address.
  std::optional<IpAddress> address;
  std::string helo_name;  // always set: the file's value or delivery.helo_name
  std::string warmup;     // a [[warmup]] name; empty: the source is warm
  std::optional<std::chrono::year_month_day> warmup_start;  // set exactly when warmup is
};

struct PoolMember {
  std::string source;  // a SourceConfig name
  uint32_t weight = 1;  // share in the smooth weighted round robin, >= 1
};

// [[pool]]: the sources a tenant's mail may leave from.
struct PoolConfig {
  std::string name;
  std::vector<PoolMember> sources;  // never empty, each source once
};

// [[tenant]]: whose mail it is, for the pool and for fairness.
struct TenantConfig {
  std::string name;
  std::string pool;     // always set: the file's value or delivery.pool
  uint32_t weight = 1;  // share within a site lane against other tenants
};

enum class ReplyAction {
  kThrottle,  // lower that (source, site)'s rate and connections, retry later
  kPause,     // stop sending from that source to that site for `duration`
  kBounce,    // fail the recipient permanently
  kDefer,     // retry later, no change to the limits
  kIgnore,    // no signal: handle the reply as if no rule matched
};

// [[reply_rule]]: what a receiver's reply means. Rules are tried in order
// (the operator's first, then the provider file's); the first whose every
// given condition holds decides.
struct ReplyRule {
  std::optional<uint16_t> code;  // 400..599, exact match
  std::string enhanced;          // "4.7.28" exact, or a prefix ending in '.' ("4.7.")
  std::string match;             // ECMAScript regex on the reply text, case-insensitive (compiles)
  std::string site;              // only replies from this site; empty: any
  ReplyAction action = ReplyAction::kDefer;
  std::optional<Duration> duration;  // pause/throttle only; nullopt: the shaper's own choice
  std::string origin;                // "FILE:LINE" of the rule, for events and logs
};

// One step of a warm-up schedule: from `day` (1 = the warmup_start date)
// until the day before the next step, at most these many messages.
struct WarmupDay {
  uint32_t day = 1;
  std::optional<uint64_t> per_day;   // at least one of the two is set
  std::optional<uint64_t> per_hour;
};

struct WarmupSite {
  std::string site;  // a [[site]] name
  std::vector<WarmupDay> days;
};

// [[warmup]]: a schedule; after its last day the source is warm (no cap).
struct WarmupConfig {
  std::string name;
  std::vector<WarmupDay> days;    // day 1 first, days strictly increasing
  std::vector<WarmupSite> sites;  // [[warmup.site]]: per-site schedules replacing `days` there
};

struct Config {
  std::filesystem::path source;  // the file it was loaded from
  ServerConfig server;
  SpoolConfig spool;
  SmtpInConfig smtp_in;
  HttpConfig http;
  EventsConfig events;
  DeliveryConfig delivery;
  RetryConfig retry;
  DnsConfig dns;
  std::vector<RouteConfig> routes;  // [[route]], in file order
  // [[site]]: the operator's in file order (a same-named provider site
  // merged in key by key), then the provider file's other sites in its order.
  std::vector<SiteConfig> sites;
  std::vector<TlsProfile> tls;  // every [tls.NAME] table, sorted by name, used or not
  // The provider file named by `providers`, resolved against the directory
  // of `source`; empty when none is used. Its [[site]], [[reply_rule]] and
  // [[warmup]] tables are merged into the vectors here (see docs).
  std::filesystem::path providers;
  // Never empty after loading: without [[source]] there is one source
  // "default" (delivery.source_address or the OS's choice); without
  // [[pool]] one pool "default" holds every source with weight 1.
  std::vector<SourceConfig> sources;
  std::vector<PoolConfig> pools;
  std::vector<TenantConfig> tenants;    // [[tenant]], in file order
  std::vector<ReplyRule> reply_rules;   // operator's rules first, then the provider file's
  std::vector<WarmupConfig> warmups;    // [[warmup]], operator's replacing same-named provider ones
};

// One problem in a configuration file. ToString() gives the operator-facing
// form "FILE:LINE:COL: key.path: message"; without a key (syntax errors)
// "FILE:LINE:COL: message"; without a position (file unreadable, line 0)
// "FILE: message".
struct ConfigError {
  std::string file;
  uint32_t line = 0;
  uint32_t column = 0;
  std::string key;  // dotted path, e.g. "smtp_in.relay_networks[1]"; empty for syntax errors
  std::string message;
  std::string ToString() const;
};

using ConfigErrors = std::vector<ConfigError>;

// Reads and validates `path`. On failure, every problem found is returned,
// sorted by line and column (a TOML syntax error stops parsing, so it comes
// alone, as "syntax error: ..."); the errors of the provider file (which
// carry its name) follow those of `path`. Relative paths inside the file
// (spool.path, events.path, tls.*) are kept as written: they resolve against
// the working directory of the process, as documented in
// docs/configuration.md. Only `providers` resolves against the directory of
// `path`, so that a configuration and its provider file move together.
tl::expected<Config, ConfigErrors> LoadConfig(const std::filesystem::path& path);
// An immutable, shareable configuration: what a long-lived component holds
// instead of a `const Config&`, so that a reload (SIGHUP) can publish a new
// snapshot while connections still finish with the old one.
using ConfigSnapshot = std::shared_ptr<const Config>;
// LoadConfig, wrapped in a snapshot; the same errors on failure.
tl::expected<ConfigSnapshot, ConfigErrors> LoadSnapshot(const std::filesystem::path& path);
// Same as LoadConfig, from text already in memory; `file_name` is used in
// error messages and its directory to find the provider file.
tl::expected<Config, ConfigErrors> ParseConfig(std::string_view text, const std::string& file_name);

// Every dotted key name the parser accepts, e.g. "smtp_in.max_message_size",
// "smtp_in.users.name", "tls.NAME.certificate" (NAME stands for any profile
// name). Built from the same tables the parser uses to reject unknown keys;
// a test checks each is documented in docs/configuration.md.
std::vector<std::string> KnownKeys();

}  // namespace hikyaku::config
