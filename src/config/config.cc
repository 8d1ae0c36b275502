#include "config/config.h"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <sstream>
#include <system_error>
#include <tuple>
#include <utility>

#include "config/units.h"

namespace hikyaku::config {
namespace {

// The design rule is "report everything, stop at nothing": each reader below
// records a ConfigError and returns, leaving the default in place, so one run
// of `hikyaku config check` lists every mistake in the file at once.

std::string_view TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::none:
      return "nothing";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
  }
  return "an unknown type";
}

// Levenshtein distance, for "did you mean" on unknown keys. Key names are
// short, so the quadratic table is a few hundred cells at most.
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// A syntactically valid domain name (RFC 1035 2.3.1 as relaxed by RFC 1123
// 2.1: labels of letters, digits and hyphens, not starting or ending with a
// hyphen, at most 63 octets; at most 253 in all). An all-numeric last label
// is refused: "192.0.2.1" is an address, and EHLO wants a name (RFC 5321
// 4.1.4).
std::optional<std::string> HostnameProblem(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (name.size() > 253) return "is longer than 253 characters";
  std::string_view rest = name;
  std::string_view last;
  while (true) {
    size_t dot = rest.find('.');
    std::string_view label = rest.substr(0, dot);
    if (label.empty())
      return "\"" + std::string(name) + "\" has an empty label (a leading, trailing or double dot)";
    if (label.size() > 63)
      return "label \"" + std::string(label) + "\" is longer than 63 characters";
    for (char c : label) {
      bool ok =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) {
        return "\"" + std::string(name) +
               "\" is not a valid domain name: only letters, digits, '-' and '.' are allowed";
      }
    }
    if (label.front() == '-' || label.back() == '-') {
      return "label \"" + std::string(label) + "\" starts or ends with '-'";
    }
    last = label;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return "\"" + std::string(name) + "\" is an address, not a domain name";
  }
  return std::nullopt;
}

std::string SystemHostName() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0') return "localhost";
  return buffer;
}

// Standard base64 (RFC 4648 4), padding optional (hikyaku hash-password omits
// it) but exact when present, that decodes to `min`..`max` bytes.
bool IsBase64OfSize(std::string_view text, size_t min, size_t max) {
  size_t padding = 0;
  while (!text.empty() && text.back() == '=') {
    text.remove_suffix(1);
    ++padding;
  }
  if (text.empty() || padding > 2) return false;
  if (padding > 0 && (text.size() + padding) % 4 != 0) return false;
  if (text.size() % 4 == 1) return false;  // one leftover character cannot encode a byte
  for (char c : text) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/';
    if (!ok) return false;
  }
  size_t bytes = text.size() * 3 / 4;
  return bytes >= min && bytes <= max;
}

// "$pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>"; only the shape is
// checked here (auth/ verifies passwords against it). The limits are those of
// auth/password.h (IsWellFormedPasswordHash), so a hash accepted here is one
// the AUTH code can use; config cannot link auth, hence the copy.
bool IsPasswordHash(std::string_view text) {
  constexpr uint64_t kMaxIterations = 10'000'000;
  constexpr std::string_view kPrefix = "$pbkdf2-sha256$";
  if (text.substr(0, kPrefix.size()) != kPrefix) return false;
  text.remove_prefix(kPrefix.size());
  std::array<std::string_view, 3> parts;
  for (size_t i = 0; i < parts.size(); ++i) {
    size_t dollar = text.find('$');
    if ((i < 2) == (dollar == std::string_view::npos)) return false;
    parts[i] = text.substr(0, dollar);
    text = dollar == std::string_view::npos ? std::string_view() : text.substr(dollar + 1);
  }
  const std::string_view iterations = parts[0];
  if (iterations.empty() || iterations.size() > 8 || iterations[0] == '0') return false;
  if (!std::all_of(iterations.begin(), iterations.end(),
                   [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  if (std::stoull(std::string(iterations)) > kMaxIterations) return false;
  return IsBase64OfSize(parts[1], 8, 64) && IsBase64OfSize(parts[2], 16, 64);
}

// Relative paths resolve against the working directory (docs/configuration.md);
// the message says which directory that was, since that is the usual surprise.
std::optional<std::string> ReadableFileProblem(const std::filesystem::path& path) {
  std::error_code ec;
  auto status = std::filesystem::status(path, ec);
  std::string where = "\"" + path.string() + "\"";
  if (path.is_relative()) {
    where +=
        " (relative to the working directory " + std::filesystem::current_path(ec).string() + ")";
  }
  if (!std::filesystem::exists(status)) return where + " does not exist";
  if (!std::filesystem::is_regular_file(status)) return where + " is not a regular file";
  if (access(path.c_str(), R_OK) != 0) return where + " cannot be read: " + std::strerror(errno);
  return std::nullopt;
}

class Reader;

// One accepted key: how to read its value into a T, and, for tables and
// arrays of tables, how to list the keys nested under it. The arrays of
// Fields below are the schema: ReadTable rejects any key not in them and
// KnownKeys() lists exactly them, so parser and documentation test agree.
template <typename T>
struct Field {
  std::string_view name;
  void (*read)(Reader& reader, const toml::node& node, const std::string& path, T& target);
  void (*nested)(const std::string& path, std::vector<std::string>& out) = nullptr;
};

template <typename T, size_t N>
void AppendKeys(const std::array<Field<T>, N>& fields, const std::string& prefix,
                std::vector<std::string>& out) {
  for (const Field<T>& field : fields) {
    std::string path = prefix + "." + std::string(field.name);
    out.push_back(path);
    if (field.nested != nullptr) field.nested(path, out);
  }
}

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  void Report(const toml::source_region& where, std::string key, std::string message) {
    errors_.push_back(ConfigError{file_, where.begin.line, where.begin.column, std::move(key),
                                  std::move(message)});
  }
  void Report(const toml::node& node, std::string key, std::string message) {
    Report(node.source(), std::move(key), std::move(message));
  }
  void ReportType(const toml::node& node, const std::string& key, std::string_view expected) {
    Report(node, key,
           "expected " + std::string(expected) + ", got " + std::string(TypeName(node.type())));
  }

  // Reads every key of `node` (which must be a table) through `fields`;
  // `path` is the dotted path of the table itself, empty for the root.
  template <typename T, size_t N>
  void ReadTable(const toml::node& node, const std::string& path,
                 const std::array<Field<T>, N>& fields, T& target) {
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      ReportType(node, path, "a table");
      return;
    }
    for (auto&& [key, value] : *table) {
      const std::string_view name = key.str();  // clang < 16 cannot capture a structured binding
      std::string key_path = path.empty() ? std::string(name) : path + "." + std::string(name);
      auto field = std::find_if(fields.begin(), fields.end(),
                                [name](const Field<T>& f) { return f.name == name; });
      if (field == fields.end()) {
        Report(key.source(), key_path, UnknownKeyMessage(key.str(), fields));
        continue;
      }
      field->read(*this, value, key_path, target);
    }
  }

  // Reports each of `keys` missing from `table` at the table's position.
  void RequireKeys(const toml::table& table, const std::string& path,
                   std::initializer_list<std::string_view> keys) {
    for (std::string_view key : keys) {
      if (!table.contains(key))
        Report(table, path + "." + std::string(key), "required key is missing");
    }
  }

  std::optional<std::string> String(const toml::node& node, const std::string& path) {
    const auto* value = node.as_string();
    if (value == nullptr) {
      ReportType(node, path, "a string");
      return std::nullopt;
    }
    if (value->get().empty()) {
      Report(node, path, "must not be empty");
      return std::nullopt;
    }
    return value->get();
  }

  std::optional<int64_t> Integer(const toml::node& node, const std::string& path, int64_t min,
                                 int64_t max) {
    const auto* value = node.as_integer();
    if (value == nullptr) {
      ReportType(node, path, "an integer");
      return std::nullopt;
    }
    int64_t number = value->get();
    if (number < min || number > max) {
      Report(node, path,
             "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                 std::to_string(number));
      return std::nullopt;
    }
    return number;
  }

  std::optional<uint64_t> Size(const toml::node& node, const std::string& path, uint64_t min,
                               uint64_t max) {
    uint64_t bytes = 0;
    if (const auto* integer = node.as_integer()) {
      if (integer->get() < 0) {
        Report(node, path, "must not be negative");
        return std::nullopt;
      }
      bytes = static_cast<uint64_t>(integer->get());
    } else if (const auto* text = node.as_string()) {
      auto parsed = ParseSize(text->get());
      if (!parsed) {
        Report(node, path, parsed.error().message());
        return std::nullopt;
      }
      bytes = *parsed;
    } else {
      ReportType(node, path, "a size such as \"25MB\" or a byte count");
      return std::nullopt;
    }
    if (bytes < min || bytes > max) {
      Report(node, path,
             "must be between " + FormatSize(min) + " and " + FormatSize(max) + ", got " +
                 FormatSize(bytes));
      return std::nullopt;
    }
    return bytes;
  }

  std::optional<Duration> DurationIn(const toml::node& node, const std::string& path, Duration min,
                                     Duration max) {
    const auto* text = node.as_string();
    if (text == nullptr) {
      ReportType(node, path, "a duration such as \"30s\" or \"5m\"");
      return std::nullopt;
    }
    auto parsed = ParseDuration(text->get());
    if (!parsed) {
      Report(node, path, parsed.error().message());
      return std::nullopt;
    }
    if (*parsed < min || *parsed > max) {
      Report(node, path,
             "must be between " + FormatDuration(min) + " and " + FormatDuration(max) + ", got " +
                 FormatDuration(*parsed));
      return std::nullopt;
    }
    return *parsed;
  }

  std::optional<Endpoint> EndpointValue(const toml::node& node, const std::string& path) {
    auto text = String(node, path);
    if (!text) return std::nullopt;
    auto parsed = Endpoint::ParseOrError(*text);
    if (!parsed) {
      Report(node, path, "invalid address \"" + *text + "\": " + parsed.error().message());
      return std::nullopt;
    }
    return *parsed;
  }

  const toml::array* Array(const toml::node& node, const std::string& path) {
    const toml::array* array = node.as_array();
    if (array == nullptr) ReportType(node, path, "an array");
    return array;
  }

  ConfigErrors TakeErrors() {
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const ConfigError& a, const ConfigError& b) {
                       return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                     });
    return std::move(errors_);
  }
  bool HasErrors() const { return !errors_.empty(); }

 private:
  template <typename T, size_t N>
  static std::string UnknownKeyMessage(std::string_view key,
                                       const std::array<Field<T>, N>& fields) {
    const Field<T>* best = nullptr;
    size_t best_distance = std::numeric_limits<size_t>::max();
    for (const Field<T>& field : fields) {
      size_t distance = EditDistance(key, field.name);
      if (distance < best_distance) {
        best = &field;
        best_distance = distance;
      }
    }
    if (best != nullptr && best_distance <= 2) {
      return "unknown key; did you mean \"" + std::string(best->name) + "\"?";
    }
    std::string known;
    for (const Field<T>& field : fields) {
      if (!known.empty()) known += ", ";
      known += field.name;
    }
    return "unknown key (expected one of: " + known + ")";
  }

  std::string file_;
  ConfigErrors errors_;
};

using Node = toml::node;
using Path = std::string;

std::optional<std::filesystem::path> ReadPath(Reader& r, const Node& n, const Path& p) {
  auto text = r.String(n, p);
  if (!text) return std::nullopt;
  return std::filesystem::path(*text);
}

// ---- [server]

constexpr std::array<Field<ServerConfig>, 1> kServerFields{{
    {"hostname",
     [](Reader& r, const Node& n, const Path& p, ServerConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (auto problem = HostnameProblem(*text)) {
         r.Report(n, p, *problem);
         return;
       }
       c.hostname = *text;
     }},
}};

// ---- [spool]

constexpr std::array<Field<SpoolConfig>, 3> kSpoolFields{{
    {"path",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       if (auto path = ReadPath(r, n, p)) c.path = *path;
     }},
    {"sync",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (*text == "group") {
         c.sync = SyncMode::kGroup;
       } else if (*text == "none") {
         c.sync = SyncMode::kNone;
       } else {
         r.Report(n, p, "must be \"group\" or \"none\", got \"" + *text + "\"");
       }
     }},
    {"memtable_size",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       if (auto size = r.Size(n, p, 1ull << 20, 4ull << 30)) c.memtable_size = *size;
     }},
}};

// ---- [tls.NAME]

constexpr std::array<Field<TlsProfile>, 2> kTlsProfileFields{{
    {"certificate",
     [](Reader& r, const Node& n, const Path& p, TlsProfile& c) {
       auto path = ReadPath(r, n, p);
       if (!path) return;
       if (auto problem = ReadableFileProblem(*path)) {
         r.Report(n, p, *problem);
         return;
       }
       c.certificate = *path;
     }},
    {"key",
     [](Reader& r, const Node& n, const Path& p, TlsProfile& c) {
       auto path = ReadPath(r, n, p);
       if (!path) return;
       if (auto problem = ReadableFileProblem(*path)) {
         r.Report(n, p, *problem);
         return;
       }
       c.key = *path;
     }},
}};

void ReadTlsProfiles(Reader& r, const Node& n, const Path& p, Config& c) {
  const toml::table* table = n.as_table();
  if (table == nullptr) {
    r.ReportType(n, p, "a table of [tls.NAME] profiles");
    return;
  }
  for (auto&& [key, value] : *table) {
    std::string name(key.str());
    std::string path = p + "." + name;
    if (name.empty()) {
      r.Report(key.source(), path, "a TLS profile name must not be empty");
      continue;
    }
    if (!value.is_table()) {
      r.ReportType(value, path, "a table [tls." + name + "] with certificate and key");
      continue;
    }
    TlsProfile profile;
    profile.name = name;
    r.ReadTable(value, path, kTlsProfileFields, profile);
    r.RequireKeys(*value.as_table(), path, {"certificate", "key"});
    c.tls.push_back(std::move(profile));
  }
  std::sort(c.tls.begin(), c.tls.end(),
            [](const TlsProfile& a, const TlsProfile& b) { return a.name < b.name; });
}

// ---- [[smtp_in.users]]

constexpr std::array<Field<SmtpUser>, 2> kSmtpUserFields{{
    {"name",
     [](Reader& r, const Node& n, const Path& p, SmtpUser& c) {
       if (auto text = r.String(n, p)) c.name = *text;
     }},
    {"password_hash",
     [](Reader& r, const Node& n, const Path& p, SmtpUser& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (!IsPasswordHash(*text)) {
         r.Report(n, p,
                  "not a password hash: expected \"$pbkdf2-sha256$ITERATIONS$SALT$HASH\" "
                  "with ITERATIONS 1..10000000, base64 SALT (8-64 bytes) and HASH (16-64 bytes); "
                  "make one with `hikyaku hash-password`");
         return;
       }
       c.password_hash = *text;
     }},
}};

void ReadUsers(Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
  const toml::array* array = r.Array(n, p);
  if (array == nullptr) return;
  std::vector<SmtpUser> users;
  std::vector<std::string> first_paths;  // parallel to users, for the duplicate message
  for (size_t i = 0; i < array->size(); ++i) {
    const Node& element = *array->get(i);
    std::string path = p + "[" + std::to_string(i) + "]";
    if (!element.is_table()) {
      r.ReportType(element, path, "a table ([[smtp_in.users]] with name and password_hash)");
      continue;
    }
    SmtpUser user;
    r.ReadTable(element, path, kSmtpUserFields, user);
    r.RequireKeys(*element.as_table(), path, {"name", "password_hash"});
    if (!user.name.empty()) {
      auto same = std::find_if(users.begin(), users.end(),
                               [&](const SmtpUser& u) { return u.name == user.name; });
      if (same != users.end()) {
        r.Report(*element.as_table()->get("name"), path + ".name",
                 "duplicate user \"" + user.name + "\" (first defined at " +
                     first_paths[static_cast<size_t>(same - users.begin())] + ")");
        continue;
      }
    }
    users.push_back(std::move(user));
    first_paths.push_back(path);
  }
  c.users = std::move(users);
}

// ---- [smtp_in]

constexpr std::array<Field<SmtpInConfig>, 10> kSmtpInFields{{
    {"listen",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       const toml::array* array = r.Array(n, p);
       if (array == nullptr) return;
       if (array->empty()) {
         r.Report(n, p, "must list at least one address (IP:PORT)");
         return;
       }
       std::vector<Endpoint> endpoints;
       bool ok = true;
       for (size_t i = 0; i < array->size(); ++i) {
         std::string path = p + "[" + std::to_string(i) + "]";
         auto endpoint = r.EndpointValue(*array->get(i), path);
         if (!endpoint) {
           ok = false;
           continue;
         }
         auto same = std::find(endpoints.begin(), endpoints.end(), *endpoint);
         if (same != endpoints.end()) {
           r.Report(*array->get(i), path,
                    "duplicate of " + endpoint->ToString() + " listed before");
           ok = false;
           continue;
         }
         endpoints.push_back(*endpoint);
       }
       if (ok) c.listen = std::move(endpoints);
     }},
    {"relay_networks",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       const toml::array* array = r.Array(n, p);
       if (array == nullptr) return;
       std::vector<Cidr> networks;
       for (size_t i = 0; i < array->size(); ++i) {
         std::string path = p + "[" + std::to_string(i) + "]";
         auto text = r.String(*array->get(i), path);
         if (!text) continue;
         auto cidr = Cidr::ParseOrError(*text);
         if (!cidr) {
           r.Report(*array->get(i), path,
                    "invalid network \"" + *text + "\": " + cidr.error().message());
           continue;
         }
         networks.push_back(*cidr);
       }
       c.relay_networks = std::move(networks);
     }},
    {"max_message_size",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto size = r.Size(n, p, 1ull << 10, 1ull << 30)) c.max_message_size = *size;
     }},
    {"max_recipients",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto v = r.Integer(n, p, 1, 100'000)) c.max_recipients = static_cast<uint32_t>(*v);
     }},
    {"max_connections",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto v = r.Integer(n, p, 1, 1'000'000)) c.max_connections = static_cast<uint32_t>(*v);
     }},
    {"max_errors",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto v = r.Integer(n, p, 1, 1'000)) c.max_errors = static_cast<uint32_t>(*v);
     }},
    {"command_timeout",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto d = r.DurationIn(n, p, std::chrono::seconds(1), std::chrono::hours(1)))
         c.command_timeout = *d;
     }},
    {"data_timeout",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto d = r.DurationIn(n, p, std::chrono::seconds(1), std::chrono::hours(2)))
         c.data_timeout = *d;
     }},
    {"tls",
     // Only the name here: [tls.NAME] may come later in the file, so the
     // reference is resolved once everything is read (ResolveReferences).
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto name = r.String(n, p)) c.tls = TlsProfile{*name, {}, {}};
     }},
    {"users", ReadUsers,
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kSmtpUserFields, path, out);
     }},
}};

// ---- [http]

constexpr std::array<Field<HttpConfig>, 2> kHttpFields{{
    {"listen",
     [](Reader& r, const Node& n, const Path& p, HttpConfig& c) {
       if (auto endpoint = r.EndpointValue(n, p)) c.listen = *endpoint;
     }},
    {"max_body_size",
     [](Reader& r, const Node& n, const Path& p, HttpConfig& c) {
       if (auto size = r.Size(n, p, 1ull << 10, 1ull << 30)) c.max_body_size = *size;
     }},
}};

// ---- [events]

constexpr std::array<Field<EventsConfig>, 1> kEventsFields{{
    {"path",
     [](Reader& r, const Node& n, const Path& p, EventsConfig& c) {
       if (auto path = ReadPath(r, n, p)) c.path = *path;
     }},
}};

// ---- the root: one entry per section

constexpr std::array<Field<Config>, 6> kSections{{
    {"server",
     [](Reader& r, const Node& n, const Path& p, Config& c) {
       r.ReadTable(n, p, kServerFields, c.server);
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kServerFields, path, out);
     }},
    {"spool",
     [](Reader& r, const Node& n, const Path& p, Config& c) {
       r.ReadTable(n, p, kSpoolFields, c.spool);
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kSpoolFields, path, out);
     }},
    {"smtp_in",
     [](Reader& r, const Node& n, const Path& p, Config& c) {
       r.ReadTable(n, p, kSmtpInFields, c.smtp_in);
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kSmtpInFields, path, out);
     }},
    {"tls", ReadTlsProfiles,
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kTlsProfileFields, path + ".NAME", out);
     }},
    {"http",
     [](Reader& r, const Node& n, const Path& p, Config& c) {
       r.ReadTable(n, p, kHttpFields, c.http);
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kHttpFields, path, out);
     }},
    {"events",
     [](Reader& r, const Node& n, const Path& p, Config& c) {
       r.ReadTable(n, p, kEventsFields, c.events);
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kEventsFields, path, out);
     }},
}};

// Checks that span sections: references by name, and combinations.
void ResolveReferences(Reader& r, const toml::table& root, Config& c) {
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
  ResolveReferences(reader, root, config);
  if (reader.HasErrors()) return tl::unexpected(reader.TakeErrors());
  return config;
}

tl::expected<Config, ConfigErrors> LoadConfig(const std::filesystem::path& path) {
  // An ifstream opens a directory and reads nothing: that would load as an
  // empty file, i.e. all defaults, which is exactly the silent failure to avoid.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return tl::unexpected(
        ConfigErrors{ConfigError{path.string(), 0, 0, "", "cannot read: is a directory"}});
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    return tl::unexpected(ConfigErrors{
        ConfigError{path.string(), 0, 0, "", std::string("cannot read: ") + std::strerror(err)}});
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) {
    return tl::unexpected(
        ConfigErrors{ConfigError{path.string(), 0, 0, "", "cannot read: I/O error"}});
  }
  auto config = ParseConfig(contents.str(), path.string());
  if (config) config->source = path;
  return config;
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
