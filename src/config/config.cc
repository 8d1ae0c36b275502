#include "config/config.h"

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
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

// The shortest text that reads back as the same double: 0.25, 1, 0.01.
std::string FormatNumber(double number) {
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, number);
  if (ec != std::errc()) return "?";  // cannot happen: 32 bytes hold any double
  return std::string(buffer, end);
}

std::string Lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// A domain name, or "*." and a domain name: the wildcard stands for one or
// more whole labels in front of the suffix, never for the suffix itself.
std::optional<std::string> DomainPatternProblem(std::string_view pattern) {
  std::string_view name = pattern;
  if (name.substr(0, 2) == "*.") name.remove_prefix(2);
  if (name.find('*') != std::string_view::npos) {
    return "\"" + std::string(pattern) +
           "\": a wildcard is only allowed as a whole first label, as in \"*.example.com\"";
  }
  return HostnameProblem(name);
}

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

// A [dns] server: "IP", "[IPv6]" (port 53, RFC 1035 4.2) or an endpoint
// with an explicit port. Names are refused: they would need a resolver to
// find the resolver.
tl::expected<Endpoint, std::string> ParseDnsServer(std::string_view text) {
  constexpr uint16_t kDnsPort = 53;
  if (auto address = IpAddress::Parse(text)) return Endpoint{*address, kDnsPort};
  if (text.size() > 2 && text.front() == '[' && text.back() == ']') {
    auto address = IpAddress::Parse(text.substr(1, text.size() - 2));
    if (address && address->v6) return Endpoint{*address, kDnsPort};
  }
  if (text.find_first_of(":[") == std::string_view::npos) {
    return tl::unexpected("\"" + std::string(text) +
                          "\" is not an IP address (host names are not accepted)");
  }
  auto endpoint = Endpoint::ParseOrError(text);
  if (!endpoint) return tl::unexpected(endpoint.error().message());
  if (endpoint->port == 0) return tl::unexpected(std::string("port 0 is not a DNS server port"));
  return *endpoint;
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

  // A float; an integer is accepted too (`retry_share = 1` means 1.0). TOML's
  // nan and inf are refused: no limit or share can be either.
  std::optional<double> Number(const toml::node& node, const std::string& path) {
    double number = 0;
    if (const auto* floating = node.as_floating_point()) {
      number = floating->get();
    } else if (const auto* integer = node.as_integer()) {
      number = static_cast<double>(integer->get());
    } else {
      ReportType(node, path, "a number");
      return std::nullopt;
    }
    if (!std::isfinite(number)) {
      Report(node, path, "must be a finite number, got " + FormatNumber(number));
      return std::nullopt;
    }
    return number;
  }

  std::optional<double> NumberIn(const toml::node& node, const std::string& path, double min,
                                 double max) {
    auto number = Number(node, path);
    if (!number) return std::nullopt;
    if (*number < min || *number > max) {
      Report(node, path,
             "must be between " + FormatNumber(min) + " and " + FormatNumber(max) + ", got " +
                 FormatNumber(*number));
      return std::nullopt;
    }
    return number;
  }

  std::optional<bool> Bool(const toml::node& node, const std::string& path) {
    if (const auto* b = node.as_boolean()) return b->get();
    ReportType(node, path, "a boolean (true or false)");
    return std::nullopt;
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
  // True if a problem was already reported for exactly `key`; cross-key
  // checks use it so that one bad value does not cause a second, derived error.
  bool HasErrorAt(std::string_view key) const {
    return std::any_of(errors_.begin(), errors_.end(),
                       [key](const ConfigError& e) { return e.key == key; });
  }

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

constexpr std::array<Field<SpoolConfig>, 5> kSpoolFields{{
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
    {"commit_delay",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       if (auto d = r.DurationIn(n, p, Duration(0), std::chrono::milliseconds(100))) c.commit_delay = *d;
     }},
    {"commit_group",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       if (auto v = r.Integer(n, p, 1, 10'000)) c.commit_group = static_cast<uint32_t>(*v);
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

// ---- readers shared by the tables below, parameterised by the member they
// fill (ranges as template arguments keep each table entry one line)

constexpr int64_t kMillisecond = 1;
constexpr int64_t kSecond = 1000 * kMillisecond;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

template <auto kMember, int64_t kMin, int64_t kMax, typename T>
void ReadCount(Reader& r, const Node& n, const Path& p, T& c) {
  if (auto v = r.Integer(n, p, kMin, kMax)) c.*kMember = static_cast<uint32_t>(*v);
}

template <auto kMember, int64_t kMinMillis, int64_t kMaxMillis, typename T>
void ReadDuration(Reader& r, const Node& n, const Path& p, T& c) {
  if (auto d = r.DurationIn(n, p, Duration(kMinMillis), Duration(kMaxMillis))) c.*kMember = *d;
}

// RFC 5321 4.5.3.2 gives floors (5 minutes for most replies, 10 for the
// final dot) that bulk senders routinely shorten; 1s..1h keeps both a
// too-eager and a never-firing timer out.
template <auto kMember>
void ReadPhaseTimeout(Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
  ReadDuration<kMember, kSecond, kHour>(r, n, p, c);
}

// ---- [delivery]

constexpr std::array<Field<DeliveryConfig>, 19> kDeliveryFields{{
    {"max_connections_per_site", ReadCount<&DeliveryConfig::max_connections_per_site, 1, 10'000>},
    {"retry_share",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       auto share = r.Number(n, p);
       if (!share) return;
       // The retry lane gets at most this share; below 1% a site with the
       // usual connection limits would round its retry lane to no
       // connection at all.
       if (*share < 0.01) {
         r.Report(n, p,
                  "must be at least 0.01, got " + FormatNumber(*share) +
                      ": the retry lane would get no connection, so retries would never run");
         return;
       }
       if (*share > 1.0) {
         r.Report(n, p, "must be between 0.01 and 1, got " + FormatNumber(*share));
         return;
       }
       c.retry_share = *share;
     }},
    {"hold",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       if (auto b = r.Bool(n, p)) c.hold = *b;
     }},
    {"max_connections", ReadCount<&DeliveryConfig::max_connections, 1, 1'000'000>},
    {"max_messages_per_connection",
     ReadCount<&DeliveryConfig::max_messages_per_connection, 1, 100'000>},
    {"max_recipients_per_transaction",
     ReadCount<&DeliveryConfig::max_recipients_per_transaction, 1, 1'000>},
    {"idle_timeout", ReadDuration<&DeliveryConfig::idle_timeout, 0, kHour>},
    {"connect_timeout", ReadPhaseTimeout<&DeliveryConfig::connect_timeout>},
    {"banner_timeout", ReadPhaseTimeout<&DeliveryConfig::banner_timeout>},
    {"ehlo_timeout", ReadPhaseTimeout<&DeliveryConfig::ehlo_timeout>},
    {"mail_timeout", ReadPhaseTimeout<&DeliveryConfig::mail_timeout>},
    {"rcpt_timeout", ReadPhaseTimeout<&DeliveryConfig::rcpt_timeout>},
    {"data_timeout", ReadPhaseTimeout<&DeliveryConfig::data_timeout>},
    {"data_end_timeout", ReadPhaseTimeout<&DeliveryConfig::data_end_timeout>},
    {"source_address",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       auto address = IpAddress::Parse(*text);
       if (!address) {
         r.Report(n, p,
                  "\"" + *text +
                      "\" is not an IP address (write it without brackets or port, "
                      "e.g. \"192.0.2.10\" or \"2001:db8::10\")");
         return;
       }
       c.source_address = *address;
     }},
    {"helo_name",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (auto problem = HostnameProblem(*text)) {
         r.Report(n, p, *problem);
         return;
       }
       c.helo_name = *text;
     }},
    {"starttls",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (*text == "opportunistic") {
         c.starttls = StartTlsPolicy::kOpportunistic;
       } else if (*text == "never") {
         c.starttls = StartTlsPolicy::kNever;
       } else {
         r.Report(n, p, "must be \"opportunistic\" or \"never\", got \"" + *text + "\"");
       }
     }},
    {"host_down_initial", ReadDuration<&DeliveryConfig::host_down_initial, kSecond, kDay>},
    // The lower bound host_down_initial is checked in CheckDurationOrder.
    {"host_down_max", ReadDuration<&DeliveryConfig::host_down_max, kSecond, 7 * kDay>},
}};

// ---- [retry]

constexpr std::array<Field<RetryConfig>, 5> kRetryFields{{
    {"initial", ReadDuration<&RetryConfig::initial, kSecond, kDay>},
    // max and max_age must also be at least initial: CheckDurationOrder.
    {"max", ReadDuration<&RetryConfig::max, kSecond, 7 * kDay>},
    {"max_age", ReadDuration<&RetryConfig::max_age, kSecond, 30 * kDay>},
    {"jitter",
     [](Reader& r, const Node& n, const Path& p, RetryConfig& c) {
       if (auto v = r.NumberIn(n, p, 0.0, 0.5)) c.jitter = *v;
     }},
    {"reactivation_rate", ReadCount<&RetryConfig::reactivation_rate, 1, 1'000'000>},
}};

// ---- [dns]

constexpr std::array<Field<DnsConfig>, 5> kDnsFields{{
    {"servers",
     [](Reader& r, const Node& n, const Path& p, DnsConfig& c) {
       const toml::array* array = r.Array(n, p);
       if (array == nullptr) return;
       std::vector<Endpoint> servers;
       for (size_t i = 0; i < array->size(); ++i) {
         const Node& element = *array->get(i);
         std::string path = p + "[" + std::to_string(i) + "]";
         auto text = r.String(element, path);
         if (!text) continue;
         auto server = ParseDnsServer(*text);
         if (!server) {
           r.Report(element, path, "invalid DNS server \"" + *text + "\": " + server.error());
           continue;
         }
         if (std::find(servers.begin(), servers.end(), *server) != servers.end()) {
           r.Report(element, path, "duplicate of " + server->ToString() + " listed before");
           continue;
         }
         servers.push_back(*server);
       }
       c.servers = std::move(servers);
     }},
    {"timeout", ReadDuration<&DnsConfig::timeout, 100 * kMillisecond, kMinute>},
    {"attempts", ReadCount<&DnsConfig::attempts, 1, 10>},
    {"negative_ttl", ReadDuration<&DnsConfig::negative_ttl, 0, kDay>},
    {"max_ttl", ReadDuration<&DnsConfig::max_ttl, kSecond, 7 * kDay>},
}};

// ---- [[site]]

// Site names appear in metrics labels, logs and event records, hence the
// conservative alphabet.
bool IsSiteName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

constexpr std::array<Field<SiteConfig>, 4> kSiteFields{{
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
}};

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

// ---- the root: one entry per section

constexpr std::array<Field<Config>, 11> kSections{{
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
    {"delivery",
     [](Reader& r, const Node& n, const Path& p, Config& c) {
       r.ReadTable(n, p, kDeliveryFields, c.delivery);
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kDeliveryFields, path, out);
     }},
    {"retry",
     [](Reader& r, const Node& n, const Path& p, Config& c) {
       r.ReadTable(n, p, kRetryFields, c.retry);
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kRetryFields, path, out);
     }},
    {"dns",
     [](Reader& r, const Node& n, const Path& p, Config& c) {
       r.ReadTable(n, p, kDnsFields, c.dns);
     },
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kDnsFields, path, out);
     }},
    {"route", ReadRoutes,
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kRouteFields, path, out);
     }},
    {"site", ReadSites,
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(kSiteFields, path, out);
     }},
}};

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

void ResolveSites(Reader& r, const toml::table& root, Config& c) {
  auto defined = [&c](const std::string& name) {
    return std::any_of(c.sites.begin(), c.sites.end(),
                       [&](const SiteConfig& s) { return s.name == name; });
  };
  // Names of [[site]] tables whose definition was itself in error: a route
  // naming one of those has no second problem worth reporting.
  std::vector<std::string> broken;
  const toml::array* sites = root.get_as<toml::array>("site");
  if (sites != nullptr) {
    for (const toml::node& element : *sites) {
      const toml::table* table = element.as_table();
      if (table == nullptr) continue;
      if (const auto* name = table->get_as<std::string>("name"); name != nullptr) {
        if (!defined(name->get())) broken.push_back(name->get());
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
      if (site == nullptr || site->get().empty() || defined(site->get())) continue;
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
  // probably meant for this site: the error above says enough.
  if (sites != nullptr && !unresolved) {
    for (size_t i = 0; i < sites->size(); ++i) {
      const toml::table* table = sites->get(i)->as_table();
      if (table == nullptr || table->contains("mx_patterns")) continue;
      const auto* name = table->get_as<std::string>("name");
      if (name == nullptr || !defined(name->get())) continue;
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

// Checks that span sections: references by name, and combinations.
void ResolveReferences(Reader& r, const toml::table& root, Config& c) {
  CheckDurationOrder(r, root, "delivery.host_down_initial", c.delivery.host_down_initial,
                     "delivery.host_down_max", c.delivery.host_down_max);
  CheckDurationOrder(r, root, "retry.initial", c.retry.initial, "retry.max", c.retry.max);
  CheckDurationOrder(r, root, "retry.initial", c.retry.initial, "retry.max_age", c.retry.max_age);
  ResolveSites(r, root, c);
  // The EHLO name of outgoing sessions is the server's name unless set:
  // filled in here so that delivery code never has to know the fallback.
  if (c.delivery.helo_name.empty()) c.delivery.helo_name = c.server.hostname;

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
