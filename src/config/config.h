// Config: the validated configuration of one hikyaku process.
//
// Contract: LoadConfig either returns a Config in which every value has been
// checked (ranges, addresses, references), or the complete list of problems
// found, each with file, line and column. Nothing half-valid escapes.
// This header is the only one other modules include; toml++ stays in config/.
//
// Thread-safety: Config is an immutable value once loaded.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "base/clock.h"
#include "config/net.h"

namespace hikyaku::config {

enum class SyncMode {
  kGroup,  // acknowledge after the shared fdatasync of the WAL that covers the write
  kNone,   // acknowledge after the write reached the OS page cache (survives a process crash, not a power loss)
};

struct ServerConfig {
  std::string hostname;  // EHLO name and Message-ID domain; default: the system host name
};

struct SpoolConfig {
  std::filesystem::path path = "var/spool";
  SyncMode sync = SyncMode::kGroup;
  uint64_t memtable_size = 64ull << 20;  // bytes held in memory before a flush to disk tables
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

struct Config {
  std::filesystem::path source;  // the file it was loaded from
  ServerConfig server;
  SpoolConfig spool;
  SmtpInConfig smtp_in;
  HttpConfig http;
  EventsConfig events;
  std::vector<TlsProfile> tls;  // every [tls.NAME] table, sorted by name, used or not
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
// alone, as "syntax error: ..."). Relative paths inside the file (spool.path,
// events.path, tls.*) are kept as written: they resolve against the working
// directory of the process, as documented in docs/configuration.md.
tl::expected<Config, ConfigErrors> LoadConfig(const std::filesystem::path& path);
// Same, from text already in memory; `file_name` is used in error messages.
tl::expected<Config, ConfigErrors> ParseConfig(std::string_view text, const std::string& file_name);

// Every dotted key name the parser accepts, e.g. "smtp_in.max_message_size",
// "smtp_in.users.name", "tls.NAME.certificate" (NAME stands for any profile
// name). Built from the same tables the parser uses to reject unknown keys;
// a test checks each is documented in docs/configuration.md.
std::vector<std::string> KnownKeys();

}  // namespace hikyaku::config
