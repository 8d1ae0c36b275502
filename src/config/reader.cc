#include "config/reader.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

namespace hikyaku::config::detail {

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

// Key names are short, so the quadratic table is a few hundred cells at most.
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

// An all-numeric last label is refused: "192.0.2.1" is an address, and EHLO
// wants a name (RFC 5321 4.1.4).
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

std::optional<std::string> DomainPatternProblem(std::string_view pattern) {
  std::string_view name = pattern;
  if (name.substr(0, 2) == "*.") name.remove_prefix(2);
  if (name.find('*') != std::string_view::npos) {
    return "\"" + std::string(pattern) +
           "\": a wildcard is only allowed as a whole first label, as in \"*.example.com\"";
  }
  return HostnameProblem(name);
}

bool IsSiteName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::optional<std::filesystem::path> ReadPath(Reader& r, const Node& n, const Path& p) {
  auto text = r.String(n, p);
  if (!text) return std::nullopt;
  return std::filesystem::path(*text);
}

bool IsDuplicate(Reader& r, std::vector<std::pair<std::string, std::string>>& seen,
                 const std::string& name, const toml::table& table, const std::string& path,
                 std::string_view kind, std::string_view key) {
  if (name.empty()) return false;
  for (const auto& [earlier, first_path] : seen) {
    if (earlier != name) continue;
    const toml::node* at = table.get(key);
    r.Report(at != nullptr ? *at : static_cast<const toml::node&>(table),
             path + "." + std::string(key),
             "duplicate " + std::string(kind) + " \"" + name + "\" (first defined at " +
                 first_path + ")");
    return true;
  }
  seen.emplace_back(name, path);
  return false;
}

}  // namespace hikyaku::config::detail
