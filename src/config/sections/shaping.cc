// The traffic-shaping tables of issue 11: [[source]], [[pool]], [[tenant]],
// [[reply_rule]] and [[warmup]]. References between them (and to [[site]])
// are recorded with Reader::Refer while reading, and checked in
// ResolveShaping once the whole file and the provider file are merged, so
// that a table may name one defined further down or in the other file.
#include <algorithm>
#include <regex>

#include "config/sections/sections.h"

namespace hikyaku::config::detail {
namespace {

using Seen = std::vector<std::pair<std::string, std::string>>;

// "YYYY-MM-DD", as a string or a TOML local date; a real calendar date.
std::optional<std::chrono::year_month_day> ReadDate(Reader& r, const Node& n, const Path& p) {
  int year = 0;
  unsigned month = 0;
  unsigned day = 0;
  if (const auto* date = n.as_date()) {
    year = date->get().year;
    month = date->get().month;
    day = date->get().day;
  } else if (const auto* text = n.as_string()) {
    const std::string& s = text->get();
    bool shape = s.size() == 10 && s[4] == '-' && s[7] == '-';
    for (size_t i = 0; shape && i < s.size(); ++i) {
      if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) shape = false;
    }
    if (!shape) {
      r.Report(n, p, "\"" + s + "\" is not a date: write \"YYYY-MM-DD\", e.g. \"2026-12-01\"");
      return std::nullopt;
    }
    year = std::stoi(s.substr(0, 4));
    month = static_cast<unsigned>(std::stoi(s.substr(5, 2)));
    day = static_cast<unsigned>(std::stoi(s.substr(8, 2)));
  } else {
    r.ReportType(n, p, "a date \"YYYY-MM-DD\"");
    return std::nullopt;
  }
  std::chrono::year_month_day date{std::chrono::year(year), std::chrono::month(month),
                                   std::chrono::day(day)};
  if (!date.ok()) {
    r.Report(n, p, "no such date in the calendar");
    return std::nullopt;
  }
  return date;
}

std::optional<IpAddress> ReadAddress(Reader& r, const Node& n, const Path& p) {
  auto text = r.String(n, p);
  if (!text) return std::nullopt;
  auto address = IpAddress::Parse(*text);
  if (!address) {
    r.Report(n, p,
             "\"" + *text +
                 "\" is not an IP address (write it without brackets or port, "
                 "e.g. \"192.0.2.10\" or \"2001:db8::10\")");
  }
  return address;
}

// ---- [[source]]

constexpr std::array<Field<SourceConfig>, 5> kSourceFields{{
    {"name",
     [](Reader& r, const Node& n, const Path& p, SourceConfig& c) {
       if (auto name = r.Name(n, p, "source")) c.name = *name;
     }},
    {"address",
     [](Reader& r, const Node& n, const Path& p, SourceConfig& c) {
       c.address = ReadAddress(r, n, p);
     }},
    {"helo_name",
     [](Reader& r, const Node& n, const Path& p, SourceConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (auto problem = HostnameProblem(*text)) {
         r.Report(n, p, *problem);
         return;
       }
       c.helo_name = *text;
     }},
    {"warmup",
     [](Reader& r, const Node& n, const Path& p, SourceConfig& c) {
       if (auto name = r.Name(n, p, "warmup")) {
         c.warmup = *name;
         r.Refer("warmup", *name, n, p);
       }
     }},
    {"warmup_start",
     [](Reader& r, const Node& n, const Path& p, SourceConfig& c) {
       c.warmup_start = ReadDate(r, n, p);
     }},
}};

// ---- [[pool]]

constexpr std::array<Field<PoolMember>, 2> kPoolMemberFields{{
    {"source",
     [](Reader& r, const Node& n, const Path& p, PoolMember& c) {
       if (auto name = r.Name(n, p, "source")) {
         c.source = *name;
         r.Refer("source", *name, n, p);
       }
     }},
    {"weight", ReadCount<&PoolMember::weight, 1, 1000>},
}};

constexpr std::array<Field<PoolConfig>, 2> kPoolFields{{
    {"name",
     [](Reader& r, const Node& n, const Path& p, PoolConfig& c) {
       if (auto name = r.Name(n, p, "pool")) c.name = *name;
     }},
    {"sources",
     [](Reader& r, const Node& n, const Path& p, PoolConfig& c) {
       if (const toml::array* array = n.as_array(); array != nullptr && array->empty()) {
         r.Report(n, p, "must list at least one source, e.g. [{ source = \"a\" }]");
         return;
       }
       Seen seen;
       for (auto& read : r.ReadTables<PoolMember>(n, p, kPoolMemberFields,
                                                  "{ source = \"NAME\", weight = N }",
                                                  {"source"})) {
         if (IsDuplicate(r, seen, read.value.source, *read.table, read.path, "source",
                         "source")) {
           continue;
         }
         c.sources.push_back(std::move(read.value));
       }
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kPoolMemberFields, path, out);
     }},
}};

// ---- [[tenant]]

constexpr std::array<Field<TenantConfig>, 3> kTenantFields{{
    {"name",
     [](Reader& r, const Node& n, const Path& p, TenantConfig& c) {
       if (auto name = r.Name(n, p, "tenant")) c.name = *name;
     }},
    {"pool",
     [](Reader& r, const Node& n, const Path& p, TenantConfig& c) {
       if (auto name = r.Name(n, p, "pool")) {
         c.pool = *name;
         r.Refer("pool", *name, n, p);
       }
     }},
    {"weight", ReadCount<&TenantConfig::weight, 1, 1000>},
}};

// ---- [[reply_rule]]

// RFC 3463 2: class.subject.detail, class 2, 4 or 5, subject and detail 1 to
// 3 digits. A rule gives the whole code or a prefix that ends at a dot, so
// "4.7." is unambiguous where "4.7.2" would also match "4.7.28".
bool IsEnhancedPattern(std::string_view text) {
  static const std::regex kShape(R"(^[245]\.([0-9]{1,3}\.([0-9]{1,3})?)?$)");
  return std::regex_match(text.begin(), text.end(), kShape);
}

constexpr std::array<Field<ReplyRule>, 6> kReplyRuleFields{{
    {"code",
     [](Reader& r, const Node& n, const Path& p, ReplyRule& c) {
       if (auto v = r.Integer(n, p, 400, 599)) c.code = static_cast<uint16_t>(*v);
     }},
    {"enhanced",
     [](Reader& r, const Node& n, const Path& p, ReplyRule& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (!IsEnhancedPattern(*text)) {
         r.Report(n, p,
                  "\"" + *text +
                      "\" is not an enhanced status code or prefix: write the whole code, "
                      "e.g. \"4.7.28\", or a prefix ending in '.', e.g. \"4.7.\"");
         return;
       }
       c.enhanced = *text;
     }},
    {"match",
     [](Reader& r, const Node& n, const Path& p, ReplyRule& c) {
       auto text = r.String(n, p);
       if (!text) return;
       try {
         std::regex compiled(*text, std::regex::ECMAScript | std::regex::icase);
       } catch (const std::regex_error& error) {
         r.Report(n, p, "invalid regular expression \"" + *text + "\": " + error.what());
         return;
       }
       c.match = *text;
     }},
    {"site",
     [](Reader& r, const Node& n, const Path& p, ReplyRule& c) {
       if (auto name = r.Name(n, p, "site")) {
         c.site = *name;
         r.Refer("site", *name, n, p);
       }
     }},
    {"action",
     [](Reader& r, const Node& n, const Path& p, ReplyRule& c) {
       auto text = r.String(n, p);
       if (!text) return;
       static constexpr std::array<std::pair<std::string_view, ReplyAction>, 5> kActions{{
           {"throttle", ReplyAction::kThrottle},
           {"pause", ReplyAction::kPause},
           {"bounce", ReplyAction::kBounce},
           {"defer", ReplyAction::kDefer},
           {"ignore", ReplyAction::kIgnore},
       }};
       for (const auto& [name, action] : kActions) {
         if (name == *text) {
           c.action = action;
           return;
         }
       }
       r.Report(n, p,
                "must be \"throttle\", \"pause\", \"bounce\", \"defer\" or \"ignore\", got \"" +
                    *text + "\"");
     }},
    {"duration", ReadDuration<&ReplyRule::duration, kSecond, 7 * kDay>},
}};

// ---- [[warmup]]

constexpr std::array<Field<WarmupDay>, 3> kWarmupDayFields{{
    {"day", ReadCount<&WarmupDay::day, 1, 3650>},
    {"per_day",
     [](Reader& r, const Node& n, const Path& p, WarmupDay& c) {
       if (auto v = r.Integer(n, p, 1, 1'000'000'000)) c.per_day = static_cast<uint64_t>(*v);
     }},
    {"per_hour",
     [](Reader& r, const Node& n, const Path& p, WarmupDay& c) {
       if (auto v = r.Integer(n, p, 1, 1'000'000'000)) c.per_hour = static_cast<uint64_t>(*v);
     }},
}};

// A schedule: day 1 first, then strictly increasing days, each step with a
// cap, and an hourly cap no larger than the daily one.
std::vector<WarmupDay> ReadDays(Reader& r, const Node& n, const Path& p) {
  std::vector<WarmupDay> days;
  if (const toml::array* array = n.as_array(); array != nullptr && array->empty()) {
    r.Report(n, p, "must list at least one day, e.g. [{ day = 1, per_day = 200 }]");
    return days;
  }
  for (auto& read : r.ReadTables<WarmupDay>(n, p, kWarmupDayFields,
                                            "{ day = N, per_day = N, per_hour = N }", {"day"})) {
    const WarmupDay& day = read.value;
    const toml::table& table = *read.table;
    if (!day.per_day && !day.per_hour && !table.contains("per_day") &&
        !table.contains("per_hour")) {
      r.Report(table, read.path, "needs per_day, per_hour or both");
    }
    if (day.per_day && day.per_hour && *day.per_hour > *day.per_day) {
      r.Report(*table.get("per_hour"), read.path + ".per_hour",
               "must not exceed per_day (" + std::to_string(*day.per_day) + "), got " +
                   std::to_string(*day.per_hour));
    }
    if (const toml::node* at = table.get("day"); at != nullptr && at->is_integer() &&
                                                 !r.HasErrorAt(read.path + ".day")) {
      if (days.empty() && day.day != 1) {
        r.Report(*at, read.path + ".day",
                 "the first step must be day 1 (the warmup_start date), got " +
                     std::to_string(day.day));
      } else if (!days.empty() && day.day <= days.back().day) {
        r.Report(*at, read.path + ".day",
                 "must be greater than the day before it (" + std::to_string(days.back().day) +
                     "), got " + std::to_string(day.day));
      }
    }
    days.push_back(day);
  }
  return days;
}

constexpr std::array<Field<WarmupSite>, 2> kWarmupSiteFields{{
    {"site",
     [](Reader& r, const Node& n, const Path& p, WarmupSite& c) {
       if (auto name = r.Name(n, p, "site")) {
         c.site = *name;
         r.Refer("site", *name, n, p);
       }
     }},
    {"days",
     [](Reader& r, const Node& n, const Path& p, WarmupSite& c) { c.days = ReadDays(r, n, p); },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kWarmupDayFields, path, out);
     }},
}};

constexpr std::array<Field<WarmupConfig>, 3> kWarmupFields{{
    {"name",
     [](Reader& r, const Node& n, const Path& p, WarmupConfig& c) {
       if (auto name = r.Name(n, p, "warmup")) c.name = *name;
     }},
    {"days",
     [](Reader& r, const Node& n, const Path& p, WarmupConfig& c) { c.days = ReadDays(r, n, p); },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kWarmupDayFields, path, out);
     }},
    {"site",
     [](Reader& r, const Node& n, const Path& p, WarmupConfig& c) {
       Seen seen;
       for (auto& read : r.ReadTables<WarmupSite>(n, p, kWarmupSiteFields, "[[warmup.site]]",
                                                  {"site", "days"})) {
         if (IsDuplicate(r, seen, read.value.site, *read.table, read.path, "schedule for site",
                         "site")) {
           continue;
         }
         c.sites.push_back(std::move(read.value));
       }
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kWarmupSiteFields, path, out);
     }},
}};

std::string Names(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

template <typename T>
std::vector<std::string> NamesOf(const std::vector<T>& tables) {
  std::vector<std::string> out;
  for (const T& table : tables) out.push_back(table.name);
  return out;
}

}  // namespace

void ReadSources(Reader& r, const Node& n, const Path& p, Config& c) {
  Seen names;
  std::vector<std::pair<IpAddress, std::string>> addresses;
  for (auto& read : r.ReadTables<SourceConfig>(n, p, kSourceFields, "[[source]]",
                                               {"name", "address"})) {
    SourceConfig& source = read.value;
    const toml::table& table = *read.table;
    if (IsDuplicate(r, names, source.name, table, read.path, "source")) continue;
    if (source.address) {
      auto same = std::find_if(addresses.begin(), addresses.end(),
                               [&](const auto& seen) { return seen.first == *source.address; });
      if (same != addresses.end()) {
        r.Report(*table.get("address"), read.path + ".address",
                 "address " + source.address->ToString() + " is already source " +
                     same->second + "'s; two sources cannot share one address");
        continue;
      }
      addresses.emplace_back(*source.address, source.name);
    }
    // A schedule needs a day 1, and a start date without a schedule would
    // silently do nothing.
    if (table.contains("warmup") && !table.contains("warmup_start")) {
      r.Report(*table.get("warmup"), read.path + ".warmup_start",
               "required with warmup: the date of day 1, \"YYYY-MM-DD\"");
    } else if (table.contains("warmup_start") && !table.contains("warmup")) {
      r.Report(*table.get("warmup_start"), read.path + ".warmup_start",
               "has no effect without warmup (the name of a [[warmup]] schedule)");
    }
    c.sources.push_back(std::move(source));
  }
}

void ReadPools(Reader& r, const Node& n, const Path& p, Config& c) {
  Seen names;
  for (auto& read : r.ReadTables<PoolConfig>(n, p, kPoolFields, "[[pool]]", {"name", "sources"})) {
    if (IsDuplicate(r, names, read.value.name, *read.table, read.path, "pool")) continue;
    c.pools.push_back(std::move(read.value));
  }
}

void ReadTenants(Reader& r, const Node& n, const Path& p, Config& c) {
  Seen names;
  for (auto& read : r.ReadTables<TenantConfig>(n, p, kTenantFields, "[[tenant]]", {"name"})) {
    if (IsDuplicate(r, names, read.value.name, *read.table, read.path, "tenant")) continue;
    c.tenants.push_back(std::move(read.value));
  }
}

void ReadReplyRules(Reader& r, const Node& n, const Path& p, Config& c) {
  for (auto& read : r.ReadTables<ReplyRule>(n, p, kReplyRuleFields, "[[reply_rule]]",
                                            {"action"})) {
    ReplyRule& rule = read.value;
    const toml::table& table = *read.table;
    if (!table.contains("code") && !table.contains("enhanced") && !table.contains("match")) {
      r.Report(table, read.path,
               "needs at least one of code, enhanced or match (a rule matching every reply "
               "would decide them all)");
    }
    if (rule.code && !rule.enhanced.empty() &&
        rule.enhanced.front() != static_cast<char>('0' + *rule.code / 100)) {
      r.Report(*table.get("enhanced"), read.path + ".enhanced",
               "class " + rule.enhanced.substr(0, 1) + " contradicts code " +
                   std::to_string(*rule.code) + " (RFC 3463 3.1: both give the same class)");
    }
    if (table.contains("duration") && rule.action != ReplyAction::kPause &&
        rule.action != ReplyAction::kThrottle && table.contains("action") &&
        !r.HasErrorAt(read.path + ".action")) {
      r.Report(*table.get("duration"), read.path + ".duration",
               "only a \"pause\" or \"throttle\" rule takes a duration");
    }
    const auto& where = table.source();
    rule.origin = (where.path != nullptr ? *where.path : std::string()) + ":" +
                  std::to_string(where.begin.line);
    c.reply_rules.push_back(std::move(rule));
  }
}

void ReadWarmups(Reader& r, const Node& n, const Path& p, Config& c) {
  Seen names;
  for (auto& read : r.ReadTables<WarmupConfig>(n, p, kWarmupFields, "[[warmup]]",
                                               {"name", "days"})) {
    if (IsDuplicate(r, names, read.value.name, *read.table, read.path, "warmup")) continue;
    c.warmups.push_back(std::move(read.value));
  }
}

void SourceKeys(const std::string& path, std::vector<std::string>& out) {
  AppendKeys(kSourceFields, path, out);
}
void PoolKeys(const std::string& path, std::vector<std::string>& out) {
  AppendKeys(kPoolFields, path, out);
}
void TenantKeys(const std::string& path, std::vector<std::string>& out) {
  AppendKeys(kTenantFields, path, out);
}
void ReplyRuleKeys(const std::string& path, std::vector<std::string>& out) {
  AppendKeys(kReplyRuleFields, path, out);
}
void WarmupKeys(const std::string& path, std::vector<std::string>& out) {
  AppendKeys(kWarmupFields, path, out);
}

void ResolveShaping(Reader& r, const toml::table& root, Config& c) {
  constexpr std::string_view kDefault = "default";
  // Without [[source]], today's single source: delivery.source_address (or
  // the OS's choice) under the name "default". With sources, that key
  // would silently do nothing, so it is an error.
  if (!root.contains("source")) {
    c.sources.push_back(SourceConfig{std::string(kDefault), c.delivery.source_address, {}, {}, {}});
  } else if (const Node* address = root.at_path("delivery.source_address").node()) {
    r.Report(*address, "delivery.source_address",
             "is only used without [[source]] tables; give this address as a [[source]]");
  }
  for (SourceConfig& source : c.sources) {
    if (source.helo_name.empty()) source.helo_name = c.delivery.helo_name;
  }
  // Without [[pool]], one pool "default" of every source, weight 1.
  if (!root.contains("pool")) {
    PoolConfig pool{std::string(kDefault), {}};
    for (const SourceConfig& source : c.sources) pool.sources.push_back(PoolMember{source.name, 1});
    c.pools.push_back(std::move(pool));
  }
  auto has_pool = [&c](std::string_view name) {
    return std::any_of(c.pools.begin(), c.pools.end(),
                       [&](const PoolConfig& pool) { return pool.name == name; });
  };
  if (const Node* pool = root.at_path("delivery.pool").node()) {
    if (!c.delivery.pool.empty()) r.Refer("pool", c.delivery.pool, *pool, "delivery.pool");
  } else if (has_pool(kDefault)) {
    c.delivery.pool = kDefault;
  } else if (!c.pools.empty()) {
    const Node* at = root.get("delivery");
    if (at == nullptr) at = root.get("pool");
    r.Report(*at, "delivery.pool",
             "required key is missing: no [[pool]] is named \"default\", so delivery.pool must "
             "name the pool for mail without one (defined: " +
                 Names(NamesOf(c.pools)) + ")");
  }
  for (TenantConfig& tenant : c.tenants) {
    if (tenant.pool.empty()) tenant.pool = c.delivery.pool;
  }

  for (const Reader::Reference& ref : r.references()) {
    std::vector<std::string> defined;
    if (ref.kind == "site") defined = NamesOf(c.sites);
    if (ref.kind == "source") defined = NamesOf(c.sources);
    if (ref.kind == "pool") defined = NamesOf(c.pools);
    if (ref.kind == "tenant") defined = NamesOf(c.tenants);
    if (ref.kind == "warmup") defined = NamesOf(c.warmups);
    if (std::find(defined.begin(), defined.end(), ref.name) != defined.end()) continue;
    r.Report(*ref.node, ref.key,
             "no [[" + ref.kind + "]] named \"" + ref.name + "\" is defined" +
                 (defined.empty() ? " (no " + ref.kind + "s are defined)"
                                  : " (defined: " + Names(defined) + ")"));
  }
}

}  // namespace hikyaku::config::detail
