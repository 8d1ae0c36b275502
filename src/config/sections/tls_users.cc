#include "config/sections/sections.h"

#include <algorithm>

namespace hikyaku::config::detail {
namespace {

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

// ---- [[smtp_in.users]]

constexpr std::array<Field<SmtpUser>, 3> kSmtpUserFields{{
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
    {"tenant",
     [](Reader& r, const Node& n, const Path& p, SmtpUser& c) {
       if (auto name = r.Name(n, p, "tenant")) {
         c.tenant = *name;
         r.Refer("tenant", *name, n, p);
       }
     }},
}};

}  // namespace

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

void TlsKeys(const std::string& path, std::vector<std::string>& out) {
  AppendKeys(kTlsProfileFields, path + ".NAME", out);
}

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

Fields<SmtpUser> SmtpUserFields() { return kSmtpUserFields; }

}  // namespace hikyaku::config::detail
