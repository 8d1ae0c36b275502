// Reader: the machinery every section of the configuration is read with.
//
// A section is a table of Field<T>: a key name, a function that reads the
// key's value into a T, and, for nested tables, a function that lists the
// keys below it. ReadTable rejects any key not in the table (with an
// edit-distance suggestion) and KnownKeys() lists exactly those tables, so
// the parser and the documentation test agree by construction.
//
// The design rule is "report everything, stop at nothing": each reader
// records a ConfigError and returns, leaving the default in place, so one run
// of `hikyaku config check` lists every mistake in the file at once.
//
// Internal to config/ (it exposes toml++ types); other modules include
// config/config.h only. Thread-safety: a Reader is used by one thread.
#pragma once

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "config/config.h"
#include "config/units.h"

namespace hikyaku::config::detail {

std::string_view TypeName(toml::node_type type);

// Levenshtein distance, for "did you mean" on unknown keys.
size_t EditDistance(std::string_view a, std::string_view b);

// A syntactically valid domain name (RFC 1035 2.3.1 as relaxed by RFC 1123
// 2.1); nullopt when it is one, else what is wrong with it.
std::optional<std::string> HostnameProblem(std::string_view name);

// A domain name, or "*." and a domain name: the wildcard stands for one or
// more whole labels in front of the suffix, never for the suffix itself.
std::optional<std::string> DomainPatternProblem(std::string_view pattern);

// Why `path` cannot be read as a regular file, or nullopt if it can.
std::optional<std::string> ReadableFileProblem(const std::filesystem::path& path);

// The shortest text that reads back as the same double: 0.25, 1, 0.01.
std::string FormatNumber(double number);

std::string Lowercase(std::string_view text);

// Names of sites (and the other named tables) appear in metrics labels, logs
// and event records, hence the conservative alphabet: a-z, 0-9, '_' and '-'.
bool IsSiteName(std::string_view name);

class Reader;

// One accepted key: how to read its value into a T, and, for tables and
// arrays of tables, how to list the keys nested under it. The tables of
// Fields are the schema: ReadTable rejects any key not in them and
// KnownKeys() lists exactly them, so parser and documentation test agree.
template <typename T>
struct Field {
  std::string_view name;
  void (*read)(Reader& reader, const toml::node& node, const std::string& path, T& target);
  void (*nested)(const std::string& path, std::vector<std::string>& out) = nullptr;
};

// The schema of one table, as the section files export it.
template <typename T>
using Fields = std::span<const Field<T>>;

template <typename FieldRange>
void AppendKeys(const FieldRange& fields, const std::string& prefix,
                std::vector<std::string>& out) {
  for (const auto& field : fields) {
    std::string path = prefix + "." + std::string(field.name);
    out.push_back(path);
    if (field.nested != nullptr) field.nested(path, out);
  }
}

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  // The error names the file the node was parsed from (the main file or
  // the provider file), falling back to the Reader's file.
  void Report(const toml::source_region& where, std::string key, std::string message) {
    std::string file = where.path != nullptr && !where.path->empty() ? *where.path : file_;
    errors_.push_back(ConfigError{std::move(file), where.begin.line, where.begin.column,
                                  std::move(key), std::move(message)});
  }
  // An error with a position but no node (a syntax error in another file).
  void ReportAt(ConfigError error) { errors_.push_back(std::move(error)); }
  void Report(const toml::node& node, std::string key, std::string message) {
    Report(node.source(), std::move(key), std::move(message));
  }
  void ReportType(const toml::node& node, const std::string& key, std::string_view expected) {
    Report(node, key,
           "expected " + std::string(expected) + ", got " + std::string(TypeName(node.type())));
  }

  // Reads every key of `node` (which must be a table) through `fields`;
  // `path` is the dotted path of the table itself, empty for the root.
  template <typename Fields, typename T>
  void ReadTable(const toml::node& node, const std::string& path, const Fields& fields, T& target) {
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      ReportType(node, path, "a table");
      return;
    }
    for (auto&& [key, value] : *table) {
      const std::string_view name = key.str();  // clang < 16 cannot capture a structured binding
      std::string key_path = path.empty() ? std::string(name) : path + "." + std::string(name);
      auto field = std::find_if(fields.begin(), fields.end(),
                                [name](const auto& f) { return f.name == name; });
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

  // The errors of the main file first, then those of other files (the
  // provider file), each group by line and column.
  ConfigErrors TakeErrors() {
    std::stable_sort(errors_.begin(), errors_.end(),
                     [this](const ConfigError& a, const ConfigError& b) {
                       return std::make_tuple(a.file != file_, a.file, a.line, a.column) <
                              std::make_tuple(b.file != file_, b.file, b.line, b.column);
                     });
    return std::move(errors_);
  }
  size_t ErrorCount() const { return errors_.size(); }

  // A name of a [[site]], [[source]], [[pool]], [[tenant]] or [[warmup]]
  // (`kind`), in the alphabet of IsSiteName.
  std::optional<std::string> Name(const toml::node& node, const std::string& path,
                                  std::string_view kind) {
    auto text = String(node, path);
    if (!text) return std::nullopt;
    if (!IsSiteName(*text)) {
      Report(node, path,
             "\"" + *text + "\" is not a " + std::string(kind) +
                 " name: use lower-case letters, digits, '_' and '-'");
      return std::nullopt;
    }
    return text;
  }

  std::optional<Rate> RateValue(const toml::node& node, const std::string& path) {
    const auto* text = node.as_string();
    if (text == nullptr) {
      ReportType(node, path, "a rate such as \"300/min\"");
      return std::nullopt;
    }
    auto rate = ParseRate(text->get());
    if (!rate) {
      Report(node, path, rate.error().message());
      return std::nullopt;
    }
    return *rate;
  }

  // A reference by name to a table of `kind` ("site", "source", "pool",
  // "tenant", "warmup") that may be defined later in the file or in the
  // provider file; checked by ResolveNames once everything is read.
  struct Reference {
    std::string kind;
    std::string name;
    const toml::node* node;
    std::string key;
  };
  void Refer(std::string kind, std::string name, const toml::node& node, std::string key) {
    references_.push_back(Reference{std::move(kind), std::move(name), &node, std::move(key)});
  }
  const std::vector<Reference>& references() const { return references_; }

  // Reads an array of tables (`[[name]]`, or an array of inline tables):
  // each element through `fields`, reporting the `required` keys missing.
  // Returns each element read with its table, for the checks across
  // elements (duplicates) that the caller makes.
  template <typename T>
  struct TableRead {
    T value;
    const toml::table* table;
    std::string path;  // "source[2]"
  };
  template <typename T, typename FieldRange>
  std::vector<TableRead<T>> ReadTables(const toml::node& node, const std::string& path,
                                       const FieldRange& fields, std::string_view display,
                                       std::initializer_list<std::string_view> required) {
    std::vector<TableRead<T>> out;
    const toml::array* array = node.as_array();
    if (array == nullptr) {
      ReportType(node, path, "an array of tables (" + std::string(display) + ")");
      return out;
    }
    for (size_t i = 0; i < array->size(); ++i) {
      const toml::node& element = *array->get(i);
      std::string element_path = path + "[" + std::to_string(i) + "]";
      if (!element.is_table()) {
        ReportType(element, element_path, "a table (" + std::string(display) + ")");
        continue;
      }
      T value;
      ReadTable(element, element_path, fields, value);
      RequireKeys(*element.as_table(), element_path, required);
      out.push_back(TableRead<T>{std::move(value), element.as_table(), std::move(element_path)});
    }
    return out;
  }
  bool HasErrors() const { return !errors_.empty(); }
  // True if a problem was already reported for exactly `key`; cross-key
  // checks use it so that one bad value does not cause a second, derived error.
  bool HasErrorAt(std::string_view key) const {
    return std::any_of(errors_.begin(), errors_.end(),
                       [key](const ConfigError& e) { return e.key == key; });
  }

 private:
  template <typename Fields>
  static std::string UnknownKeyMessage(std::string_view key, const Fields& fields) {
    using FieldType = std::remove_cvref_t<decltype(*std::begin(fields))>;
    const FieldType* best = nullptr;
    size_t best_distance = std::numeric_limits<size_t>::max();
    for (const auto& field : fields) {
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
    for (const auto& field : fields) {
      if (!known.empty()) known += ", ";
      known += field.name;
    }
    return "unknown key (expected one of: " + known + ")";
  }

  std::string file_;
  ConfigErrors errors_;
  std::vector<Reference> references_;
};

using Node = toml::node;
using Path = std::string;

std::optional<std::filesystem::path> ReadPath(Reader& r, const Node& n, const Path& p);

// If an earlier entry of `seen` (name, path pairs) has `name`, reports
// "duplicate KIND "NAME" (first defined at PATH)" at the table's name key and
// returns true; else records the name and returns false.
bool IsDuplicate(Reader& r, std::vector<std::pair<std::string, std::string>>& seen,
                 const std::string& name, const toml::table& table, const std::string& path,
                 std::string_view kind, std::string_view key = "name");

template <auto kMember, typename T>
void ReadRate(Reader& r, const Node& n, const Path& p, T& c) {
  if (auto rate = r.RateValue(n, p)) c.*kMember = *rate;
}

// ---- readers shared by the section tables, parameterised by the member they
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

}  // namespace hikyaku::config::detail
