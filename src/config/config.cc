#include "config/config.h"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "config/reader.h"
#include "config/sections/sections.h"
#include "config/units.h"

namespace hikyaku::config {
namespace {

using namespace detail;  // NOLINT(google-build-using-namespace): config/'s own internals

std::string SystemHostName() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0') return "localhost";
  return buffer;
}
// A root section that is one table read into the Config member `kMember`
// through the field table `kFields()`.
template <auto kMember, auto kFields>
constexpr Field<Config> Section(std::string_view name) {
  return {name,
          [](Reader& r, const Node& n, const Path& p, Config& c) {
            r.ReadTable(n, p, kFields(), c.*kMember);
          },
          [](const std::string& path, std::vector<std::string>& out) {
            AppendKeys(kFields(), path, out);
          }};
}

// A root section read by its own function (arrays of tables, [tls.NAME]).
template <auto kKeys>
constexpr Field<Config> Custom(std::string_view name,
                               void (*read)(Reader&, const Node&, const Path&, Config&)) {
  return {name, read,
          [](const std::string& path, std::vector<std::string>& out) { kKeys(path, out); }};
}

template <auto kFields>
void KeysOf(const std::string& path, std::vector<std::string>& out) {
  AppendKeys(kFields(), path, out);
}

// ---- the root: one entry per section

// Only the path here: the file is read once the operator's file is
// (ParseConfig), since its tables merge into what that file defines.
void ReadProvidersPath(Reader& r, const Node& n, const Path& p, Config& c) {
  if (auto path = ReadPath(r, n, p)) c.providers = *path;
}

constexpr std::array<Field<Config>, 17> kSections{{
    Section<&Config::server, ServerFields>("server"),
    Section<&Config::spool, SpoolFields>("spool"),
    Section<&Config::smtp_in, SmtpInFields>("smtp_in"),
    Custom<TlsKeys>("tls", ReadTlsProfiles),
    Section<&Config::http, HttpFields>("http"),
    Section<&Config::events, EventsFields>("events"),
    Section<&Config::delivery, DeliveryFields>("delivery"),
    Section<&Config::retry, RetryFields>("retry"),
    Section<&Config::dns, DnsFields>("dns"),
    Custom<KeysOf<RouteFields>>("route", ReadRoutes),
    Custom<KeysOf<SiteFields>>("site", ReadSites),
    {"providers", ReadProvidersPath},
    Custom<SourceKeys>("source", ReadSources),
    Custom<PoolKeys>("pool", ReadPools),
    Custom<TenantKeys>("tenant", ReadTenants),
    Custom<ReplyRuleKeys>("reply_rule", ReadReplyRules),
    Custom<WarmupKeys>("warmup", ReadWarmups),
}};

// The provider file may hold only what describes receivers, never what
// describes this installation (sources, pools, listeners).
constexpr std::array<Field<Config>, 3> kProviderSections{{
    Custom<KeysOf<SiteFields>>("site", ReadSites),
    Custom<ReplyRuleKeys>("reply_rule", ReadReplyRules),
    Custom<WarmupKeys>("warmup", ReadWarmups),
}};

// The whole file as text, or why it cannot be read. An ifstream opens a
// directory and reads nothing: that would load as an empty file, i.e. all
// defaults, which is exactly the silent failure to avoid.
tl::expected<std::string, std::string> ReadFileText(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return tl::unexpected(std::string("is a directory"));
  std::ifstream in(path, std::ios::binary);
  if (!in) return tl::unexpected(std::string(std::strerror(errno)));
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) return tl::unexpected(std::string("I/O error"));
  return contents.str();
}

// Reads the provider file named by `providers` (already resolved) into
// `provider_root` and merges its tables into `c`. Returns false when there
// is no provider file to use (none named, or it could not be read or
// parsed: then that is reported).
bool LoadProviders(Reader& r, const toml::table& root, Config& c, toml::table& provider_root) {
  const Node* key = root.get("providers");
  if (key == nullptr || c.providers.empty()) return false;
  const std::string file = c.providers.string();
  auto text = ReadFileText(c.providers);
  if (!text) {
    r.Report(*key, "providers", "cannot read \"" + file + "\": " + text.error());
    return false;
  }
  try {
    provider_root = toml::parse(*text, file);
  } catch (const toml::parse_error& error) {
    const auto& begin = error.source().begin;
    r.ReportAt(ConfigError{file, begin.line, begin.column, "",
                           "syntax error: " + std::string(error.description())});
    return false;
  }
  Config provided;
  r.ReadTable(provider_root, "", kProviderSections, provided);
  if (const toml::array* sites = provider_root.get_as<toml::array>("site")) {
    for (size_t i = 0; i < sites->size(); ++i) {
      const toml::table* table = sites->get(i)->as_table();
      if (table == nullptr || !table->contains("source")) continue;
      r.Report(*table->get("source"), "site[" + std::to_string(i) + "].source",
               "per-source overrides belong in the operator's file: a provider file does not "
               "know this installation's sources");
    }
  }
  MergeProviderSites(r, root, std::move(provided.sites), file, c);
  // The operator's rules come first: the first matching rule decides.
  for (ReplyRule& rule : provided.reply_rules) c.reply_rules.push_back(std::move(rule));
  for (WarmupConfig& warmup : provided.warmups) {
    bool replaced = std::any_of(c.warmups.begin(), c.warmups.end(),
                                [&](const WarmupConfig& own) { return own.name == warmup.name; });
    if (!replaced) c.warmups.push_back(std::move(warmup));
  }
  return true;
}

// `upper` (e.g. retry.max) must not be shorter than `lower` (retry.initial).
// The error goes where the operator has to act: at `upper` if the file sets
// it, else at `lower`, whose value then clashes with upper's default.
void CheckDurationOrder(Reader& r, const toml::table& root, const std::string& lower_key,
                        Duration lower, const std::string& upper_key, Duration upper) {
  if (upper >= lower || r.HasErrorAt(lower_key) || r.HasErrorAt(upper_key)) return;
  if (const Node* node = root.at_path(upper_key).node()) {
    r.Report(*node, upper_key,
             "must be at least " + lower_key + " (" + FormatDuration(lower) + "), got " +
                 FormatDuration(upper));
  } else if (const Node* node = root.at_path(lower_key).node()) {
    r.Report(*node, lower_key,
             "must be at most " + upper_key + " (" + FormatDuration(upper) +
                 ", its default), got " + FormatDuration(lower) + "; raise " + upper_key +
                 " as well");
  }
}

// Checks that span sections: references by name, and combinations.
void ResolveReferences(Reader& r, const toml::table& root, const toml::table* provider_root,
                       Config& c) {
  CheckDurationOrder(r, root, "delivery.host_down_initial", c.delivery.host_down_initial,
                     "delivery.host_down_max", c.delivery.host_down_max);
  CheckDurationOrder(r, root, "retry.initial", c.retry.initial, "retry.max", c.retry.max);
  CheckDurationOrder(r, root, "retry.initial", c.retry.initial, "retry.max_age", c.retry.max_age);
  ResolveSites(r, root, provider_root, c);
  // The EHLO name of outgoing sessions is the server's name unless set:
  // filled in here so that delivery code never has to know the fallback.
  if (c.delivery.helo_name.empty()) c.delivery.helo_name = c.server.hostname;
  ResolveShaping(r, root, c);

  const Node* tls_ref = root.at_path("smtp_in.tls").node();
  if (tls_ref != nullptr && c.smtp_in.tls.has_value()) {
    const std::string& name = c.smtp_in.tls->name;
    auto profile = std::find_if(c.tls.begin(), c.tls.end(),
                                [&](const TlsProfile& t) { return t.name == name; });
    if (profile != c.tls.end()) {
      c.smtp_in.tls = *profile;
    } else {
      std::string defined;
      for (const TlsProfile& t : c.tls) defined += (defined.empty() ? "" : ", ") + t.name;
      r.Report(*tls_ref, "smtp_in.tls",
               "no [tls." + name + "] table is defined" +
                   (defined.empty() ? std::string(" (no TLS profiles are defined)")
                                    : " (defined: " + defined + ")"));
      c.smtp_in.tls.reset();
    }
  }
  // RFC 4954 4: a server should not offer plaintext mechanisms without a
  // protected channel, so users without TLS could never log in.
  const Node* users = root.at_path("smtp_in.users").node();
  if (users != nullptr && !c.smtp_in.users.empty() && tls_ref == nullptr) {
    r.Report(*users, "smtp_in.users", "AUTH is only offered over TLS; set smtp_in.tls");
  }
}

}  // namespace

std::string ConfigError::ToString() const {
  std::string out = file + ":";
  if (line != 0) out += std::to_string(line) + ":" + std::to_string(column) + ":";
  out += " ";
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

tl::expected<Config, ConfigErrors> ParseConfig(std::string_view text,
                                               const std::string& file_name) {
  toml::table root;
  try {
    root = toml::parse(text, file_name);
  } catch (const toml::parse_error& error) {
    const auto& begin = error.source().begin;
    return tl::unexpected(
        ConfigErrors{ConfigError{file_name, begin.line, begin.column, "",
                                 "syntax error: " + std::string(error.description())}});
  }
  Reader reader(file_name);
  Config config;
  config.source = file_name;
  config.server.hostname = SystemHostName();
  reader.ReadTable(root, "", kSections, config);
  // `providers` is relative to the directory of the file that names it, so
  // that a configuration and its provider file move together.
  if (!config.providers.empty() && config.providers.is_relative()) {
    config.providers = std::filesystem::path(file_name).parent_path() / config.providers;
  }
  toml::table provider_root;
  bool has_providers = LoadProviders(reader, root, config, provider_root);
  ResolveReferences(reader, root, has_providers ? &provider_root : nullptr, config);
  if (reader.HasErrors()) return tl::unexpected(reader.TakeErrors());
  return config;
}

tl::expected<Config, ConfigErrors> LoadConfig(const std::filesystem::path& path) {
  auto text = ReadFileText(path);
  if (!text) {
    return tl::unexpected(
        ConfigErrors{ConfigError{path.string(), 0, 0, "", "cannot read: " + text.error()}});
  }
  auto config = ParseConfig(*text, path.string());
  if (config) config->source = path;
  return config;
}

tl::expected<ConfigSnapshot, ConfigErrors> LoadSnapshot(const std::filesystem::path& path) {
  return LoadConfig(path).map(
      [](Config&& config) { return std::make_shared<const Config>(std::move(config)); });
}

std::vector<std::string> KnownKeys() {
  std::vector<std::string> out;
  for (const Field<Config>& section : kSections) {
    if (section.nested != nullptr) {
      section.nested(std::string(section.name), out);
    } else {
      out.emplace_back(section.name);
    }
  }
  return out;
}

}  // namespace hikyaku::config