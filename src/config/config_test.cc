#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "testing/temp_dir.h"

namespace hikyaku::config {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
using ::testing::HasSubstr;

constexpr char kFile[] = "test.toml";

ConfigErrors ErrorsOf(std::string_view text) {
  auto config = ParseConfig(text, kFile);
  EXPECT_FALSE(config.has_value()) << "expected errors for:\n" << text;
  if (config) return {};
  return config.error();
}

std::string Dump(const ConfigErrors& errors) {
  std::string out;
  for (const ConfigError& error : errors) out += error.ToString() + "\n";
  return out;
}

// Expects exactly one error, at `line`, for `key`, whose message contains `part`.
void ExpectOneError(std::string_view text, uint32_t line, const std::string& key,
                    const std::string& part) {
  ConfigErrors errors = ErrorsOf(text);
  ASSERT_EQ(errors.size(), 1u) << Dump(errors);
  EXPECT_EQ(errors[0].file, kFile);
  EXPECT_EQ(errors[0].line, line) << Dump(errors);
  EXPECT_EQ(errors[0].key, key) << Dump(errors);
  EXPECT_THAT(errors[0].message, HasSubstr(part)) << Dump(errors);
}

Config Parsed(std::string_view text) {
  auto config = ParseConfig(text, kFile);
  EXPECT_TRUE(config.has_value()) << (config ? "" : Dump(config.error()));
  return config.value_or(Config{});
}

TEST(ParseConfigTest, EmptyFileGivesDocumentedDefaults) {
  Config config = Parsed("");
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_EQ(config.server.hostname, host);
  EXPECT_EQ(config.spool.path, "var/spool");
  EXPECT_EQ(config.spool.sync, SyncMode::kGroup);
  EXPECT_EQ(config.spool.memtable_size, 64u << 20);
  EXPECT_EQ(config.smtp_in.listen, std::vector<Endpoint>{Endpoint::Loopback(2525)});
  ASSERT_EQ(config.smtp_in.relay_networks.size(), 2u);
  EXPECT_EQ(config.smtp_in.relay_networks[0].ToString(), "127.0.0.0/8");
  EXPECT_EQ(config.smtp_in.relay_networks[1].ToString(), "::1/128");
  EXPECT_EQ(config.smtp_in.max_message_size, 25u << 20);
  EXPECT_EQ(config.smtp_in.max_recipients, 1000u);
  EXPECT_EQ(config.smtp_in.max_connections, 10000u);
  EXPECT_EQ(config.smtp_in.max_errors, 10u);
  EXPECT_EQ(config.smtp_in.command_timeout, minutes(5));
  EXPECT_EQ(config.smtp_in.data_timeout, minutes(10));
  EXPECT_FALSE(config.smtp_in.tls.has_value());
  EXPECT_TRUE(config.smtp_in.users.empty());
  EXPECT_EQ(config.http.listen, Endpoint::Loopback(8025));
  EXPECT_EQ(config.http.max_body_size, 30u << 20);
  EXPECT_EQ(config.events.path, "var/log/events.jsonl");
  EXPECT_TRUE(config.tls.empty());
}

TEST(ParseConfigTest, FullConfigRoundTripsToStructValues) {
  TempDir dir;
  auto cert = dir.Write("cert.pem", "-----BEGIN CERTIFICATE-----\n");
  auto key = dir.Write("key.pem", "-----BEGIN PRIVATE KEY-----\n");
  std::string text = R"(
[server]
hostname = "mx1.mail.example.org"

[spool]
path = "/var/lib/hikyaku/spool"
sync = "none"
memtable_size = "128MB"

[smtp_in]
listen = ["0.0.0.0:25", "[::]:587", "127.0.0.1:0"]
relay_networks = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
max_message_size = 1048576
max_recipients = 50
max_connections = 200
max_errors = 3
command_timeout = "30s"
data_timeout = "1h30m"
tls = "main"

[[smtp_in.users]]
name = "app1"
password_hash = "$pbkdf2-sha256$600000$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"

[[smtp_in.users]]
name = "app2"
password_hash = "$pbkdf2-sha256$1000$MTIzNDU2Nzg=$MDEyMzQ1Njc4OWFiY2RlZg=="

[http]
listen = "[::1]:8080"
max_body_size = "2MB"

[events]
path = "events.jsonl"

[tls.main]
certificate = ")" + cert.string() +
                     R"("
key = ")" + key.string() +
                     R"("

[tls.spare]
certificate = ")" + cert.string() +
                     R"("
key = ")" + key.string() +
                     R"("
)";
  Config config = Parsed(text);
  EXPECT_EQ(config.source, kFile);
  EXPECT_EQ(config.server.hostname, "mx1.mail.example.org");
  EXPECT_EQ(config.spool.path, "/var/lib/hikyaku/spool");
  EXPECT_EQ(config.spool.sync, SyncMode::kNone);
  EXPECT_EQ(config.spool.memtable_size, 128u << 20);
  ASSERT_EQ(config.smtp_in.listen.size(), 3u);
  EXPECT_EQ(config.smtp_in.listen[0].ToString(), "0.0.0.0:25");
  EXPECT_EQ(config.smtp_in.listen[1].ToString(), "[::]:587");
  EXPECT_EQ(config.smtp_in.listen[2].port, 0);
  ASSERT_EQ(config.smtp_in.relay_networks.size(), 3u);
  EXPECT_EQ(config.smtp_in.relay_networks[0].ToString(), "10.0.0.0/8");
  EXPECT_EQ(config.smtp_in.relay_networks[1].ToString(), "2001:db8::/32");
  EXPECT_EQ(config.smtp_in.relay_networks[2].ToString(), "192.0.2.7/32");
  EXPECT_EQ(config.smtp_in.max_message_size, 1048576u);
  EXPECT_EQ(config.smtp_in.max_recipients, 50u);
  EXPECT_EQ(config.smtp_in.max_connections, 200u);
  EXPECT_EQ(config.smtp_in.max_errors, 3u);
  EXPECT_EQ(config.smtp_in.command_timeout, seconds(30));
  EXPECT_EQ(config.smtp_in.data_timeout, minutes(90));
  ASSERT_TRUE(config.smtp_in.tls.has_value());
  EXPECT_EQ(config.smtp_in.tls->name, "main");
  EXPECT_EQ(config.smtp_in.tls->certificate, cert);
  EXPECT_EQ(config.smtp_in.tls->key, key);
  ASSERT_EQ(config.smtp_in.users.size(), 2u);
  EXPECT_EQ(config.smtp_in.users[0].name, "app1");
  EXPECT_EQ(
      config.smtp_in.users[0].password_hash,
      "$pbkdf2-sha256$600000$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g");
  EXPECT_EQ(config.smtp_in.users[1].name, "app2");
  EXPECT_EQ(config.http.listen.ToString(), "[::1]:8080");
  EXPECT_EQ(config.http.max_body_size, 2u << 20);
  EXPECT_EQ(config.events.path, "events.jsonl");
  ASSERT_EQ(config.tls.size(), 2u);
  EXPECT_EQ(config.tls[0].name, "main");
  EXPECT_EQ(config.tls[1].name, "spare");
}

TEST(LoadConfigTest, ShippedDefaultConfigLoadsCleanly) {
  std::filesystem::path path = std::filesystem::path(HIKYAKU_SOURCE_DIR) / "etc" / "hikyaku.toml";
  auto config = LoadConfig(path);
  ASSERT_TRUE(config.has_value()) << Dump(config.error());
  EXPECT_EQ(config->source, path);
  EXPECT_EQ(config->server.hostname, "mta.example.com");
  EXPECT_EQ(config->spool.path, "var/spool");
  EXPECT_EQ(config->spool.sync, SyncMode::kGroup);
  EXPECT_EQ(config->smtp_in.listen,
            std::vector<Endpoint>{Endpoint::Parse("127.0.0.1:2525").value()});
  ASSERT_EQ(config->smtp_in.relay_networks.size(), 1u);
  EXPECT_EQ(config->smtp_in.relay_networks[0].ToString(), "127.0.0.0/8");
  EXPECT_EQ(config->smtp_in.max_message_size, 25u * 1024 * 1024);
  EXPECT_EQ(config->http.listen, Endpoint::Parse("127.0.0.1:8025").value());
  EXPECT_EQ(config->events.path, "var/log/events.jsonl");
  // The [delivery] and [retry] values it shows are the defaults, as it says.
  const DeliveryConfig delivery;
  EXPECT_EQ(config->delivery.max_connections_per_site, delivery.max_connections_per_site);
  EXPECT_EQ(config->delivery.retry_share, delivery.retry_share);
  EXPECT_EQ(config->delivery.max_connections, delivery.max_connections);
  EXPECT_EQ(config->delivery.max_messages_per_connection, delivery.max_messages_per_connection);
  EXPECT_EQ(config->delivery.starttls, delivery.starttls);
  EXPECT_EQ(config->delivery.helo_name, "mta.example.com");
  const RetryConfig retry;
  EXPECT_EQ(config->retry.initial, retry.initial);
  EXPECT_EQ(config->retry.max, retry.max);
  EXPECT_EQ(config->retry.max_age, retry.max_age);
  EXPECT_TRUE(config->routes.empty());
  EXPECT_TRUE(config->sites.empty());
}

TEST(LoadConfigTest, MissingFileAndDirectoryAreErrors) {
  auto missing = LoadConfig("/nonexistent/hikyaku.toml");
  ASSERT_FALSE(missing);
  ASSERT_EQ(missing.error().size(), 1u);
  EXPECT_EQ(missing.error()[0].ToString(),
            "/nonexistent/hikyaku.toml: cannot read: No such file or directory");

  TempDir dir;
  auto directory = LoadConfig(dir.path());
  ASSERT_FALSE(directory);
  EXPECT_THAT(directory.error()[0].message, HasSubstr("is a directory"));
}

TEST(LoadConfigTest, ErrorsNameTheLoadedFile) {
  TempDir dir;
  auto file = dir.Write("bad.toml", "[smtp_in]\nmax_errors = 0\n");
  auto config = LoadConfig(file);
  ASSERT_FALSE(config);
  ASSERT_EQ(config.error().size(), 1u);
  EXPECT_EQ(config.error()[0].ToString(),
            file.string() + ":2:14: smtp_in.max_errors: must be between 1 and 1000, got 0");
}

TEST(LoadConfigTest, SnapshotHoldsTheLoadedConfigOrTheSameErrors) {
  TempDir dir;
  auto good = dir.Write("good.toml", "[smtp_in]\nmax_errors = 4\n");
  auto snapshot = LoadSnapshot(good);
  ASSERT_TRUE(snapshot.has_value()) << Dump(snapshot.error());
  ASSERT_NE(*snapshot, nullptr);
  EXPECT_EQ((*snapshot)->smtp_in.max_errors, 4u);
  EXPECT_EQ((*snapshot)->source, good);
  auto bad = dir.Write("bad.toml", "[smtp_in]\nmax_errors = 0\n");
  auto failed = LoadSnapshot(bad);
  ASSERT_FALSE(failed.has_value());
  ASSERT_EQ(failed.error().size(), 1u);
  EXPECT_EQ(failed.error()[0].key, "smtp_in.max_errors");
}

TEST(ConfigErrorTest, ToStringFormats) {
  EXPECT_EQ((ConfigError{"a.toml", 3, 7, "smtp_in.tls", "boom"}).ToString(),
            "a.toml:3:7: smtp_in.tls: boom");
  EXPECT_EQ((ConfigError{"a.toml", 3, 7, "", "syntax error: x"}).ToString(),
            "a.toml:3:7: syntax error: x");
  EXPECT_EQ((ConfigError{"a.toml", 0, 0, "", "cannot read: y"}).ToString(),
            "a.toml: cannot read: y");
}

TEST(ParseConfigTest, SyntaxErrorIsReportedWithPosition) {
  ConfigErrors errors = ErrorsOf("[server]\nhostname = \"a.example\"\nhostname = \"b.example\"\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 3u);
  EXPECT_TRUE(errors[0].key.empty());
  EXPECT_THAT(errors[0].ToString(), ::testing::StartsWith("test.toml:3:"));
  EXPECT_THAT(errors[0].ToString(), HasSubstr(": syntax error: "));

  ConfigErrors unterminated = ErrorsOf("[spool]\npath = \"var/spool\n");
  ASSERT_EQ(unterminated.size(), 1u);
  EXPECT_EQ(unterminated[0].line, 2u);
  EXPECT_THAT(unterminated[0].message, ::testing::StartsWith("syntax error: "));
}

// ---- unknown keys

TEST(ParseConfigTest, UnknownKeyIsReportedAtTheKeyWithASuggestion) {
  ConfigErrors errors = ErrorsOf("[smtp_in]\nmax_recipients = 5\n  max_mesage_size = \"1MB\"\n");
  ASSERT_EQ(errors.size(), 1u) << Dump(errors);
  EXPECT_EQ(errors[0].line, 3u);
  EXPECT_EQ(errors[0].column, 3u);  // the key, not the value
  EXPECT_EQ(errors[0].key, "smtp_in.max_mesage_size");
  EXPECT_THAT(errors[0].message, HasSubstr("did you mean \"max_message_size\""));
}

TEST(ParseConfigTest, UnknownTableIsOneError) {
  ExpectOneError(
      "[server]\nhostname = \"a.example\"\n\n[smtpin]\nlisten = [\"1.2.3.4:25\"]\nmax_errors = 1\n",
      4, "smtpin", "did you mean \"smtp_in\"");
  ExpectOneError("[metrics]\nport = 9\n", 1, "metrics",
                 "expected one of: server, spool, smtp_in, tls, http, events, delivery, retry, "
                 "dns, route, site");
}

TEST(ParseConfigTest, UnknownKeysInNestedTablesAreReported) {
  TempDir dir;
  auto cert = dir.Write("c.pem", "x");
  ExpectOneError("[tls.main]\ncertificate = \"" + cert.string() + "\"\nkey = \"" + cert.string() +
                     "\"\npassphrase = \"x\"\n",
                 4, "tls.main.passphrase", "unknown key");
  ExpectOneError(
      "[smtp_in]\ntls = \"t\"\n[[smtp_in.users]]\nname = \"a\"\n"
      "password_hash = "
      "\"$pbkdf2-sha256$1$c2FsdHNhbHRzYWx0c2FsdA$"
      "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"\npasword = \"x\"\n"
      "[tls.t]\ncertificate = \"" +
          cert.string() + "\"\nkey = \"" + cert.string() + "\"\n",
      6, "smtp_in.users[0].pasword", "unknown key");
  ExpectOneError("spool.paht = \"x\"\n", 1, "spool.paht", "did you mean \"path\"");
}

// ---- wrong types

TEST(ParseConfigTest, WrongTypesAreReported) {
  ExpectOneError("[smtp_in]\nmax_recipients = \"10\"\n", 2, "smtp_in.max_recipients",
                 "expected an integer, got a string");
  ExpectOneError("[smtp_in]\nmax_recipients = 1.5\n", 2, "smtp_in.max_recipients",
                 "expected an integer, got a float");
  ExpectOneError("[spool]\npath = 3\n", 2, "spool.path", "expected a string, got an integer");
  ExpectOneError("[smtp_in]\nlisten = \"127.0.0.1:25\"\n", 2, "smtp_in.listen",
                 "expected an array, got a string");
  ExpectOneError("server = \"mx.example\"\n", 1, "server", "expected a table, got a string");
  ExpectOneError("[smtp_in]\nmax_message_size = true\n", 2, "smtp_in.max_message_size",
                 "got a boolean");
  ExpectOneError("[smtp_in]\ncommand_timeout = 30\n", 2, "smtp_in.command_timeout",
                 "expected a duration such as \"30s\"");
  ExpectOneError("[smtp_in]\nrelay_networks = [\"10.0.0.0/8\", 7]\n", 2,
                 "smtp_in.relay_networks[1]", "expected a string, got an integer");
  ExpectOneError("[tls]\nmain = \"cert.pem\"\n", 2, "tls.main", "expected a table [tls.main]");
  ExpectOneError("[spool]\npath = \"\"\n", 2, "spool.path", "must not be empty");
}

// ---- out of range

TEST(ParseConfigTest, OutOfRangeValuesAreReported) {
  ExpectOneError("[smtp_in]\nmax_recipients = 0\n", 2, "smtp_in.max_recipients",
                 "between 1 and 100000, got 0");
  ExpectOneError("[smtp_in]\nmax_recipients = 100001\n", 2, "smtp_in.max_recipients", "got 100001");
  ExpectOneError("[smtp_in]\nmax_connections = 1000001\n", 2, "smtp_in.max_connections",
                 "between 1 and 1000000");
  ExpectOneError("[smtp_in]\nmax_errors = -1\n", 2, "smtp_in.max_errors", "between 1 and 1000");
  ExpectOneError("[spool]\nmemtable_size = \"512KB\"\n", 2, "spool.memtable_size",
                 "must be between 1MB and 4GB, got 512KB");
  ExpectOneError("[spool]\nmemtable_size = \"5GB\"\n", 2, "spool.memtable_size", "got 5GB");
  ExpectOneError("[spool]\ncommit_delay = \"1s\"\n", 2, "spool.commit_delay", "");
  ExpectOneError("[spool]\ncommit_group = 0\n", 2, "spool.commit_group", "");
  ExpectOneError("[smtp_in]\nmax_message_size = 1023\n", 2, "smtp_in.max_message_size",
                 "between 1KB and 1GB, got 1023B");
  ExpectOneError("[smtp_in]\nmax_message_size = -5\n", 2, "smtp_in.max_message_size",
                 "must not be negative");
  ExpectOneError("[http]\nmax_body_size = \"2GB\"\n", 2, "http.max_body_size",
                 "between 1KB and 1GB");
  ExpectOneError("[smtp_in]\ncommand_timeout = \"2h\"\n", 2, "smtp_in.command_timeout",
                 "must be between 1s and 1h, got 2h");
  ExpectOneError("[smtp_in]\ndata_timeout = \"500ms\"\n", 2, "smtp_in.data_timeout",
                 "between 1s and 2h, got 500ms");
}

TEST(ParseConfigTest, RangeBoundsAreInclusive) {
  Config config = Parsed(
      "[spool]\nmemtable_size = \"1MB\"\n[smtp_in]\nmax_recipients = 100000\nmax_errors = 1\n"
      "command_timeout = \"1h\"\ndata_timeout = \"1s\"\nmax_message_size = \"1GB\"\n");
  EXPECT_EQ(config.spool.memtable_size, 1u << 20);
  EXPECT_EQ(config.smtp_in.max_recipients, 100000u);
  EXPECT_EQ(config.smtp_in.command_timeout, hours(1));
  EXPECT_EQ(config.smtp_in.data_timeout, seconds(1));
  EXPECT_EQ(config.smtp_in.max_message_size, 1u << 30);
}

// ---- units, addresses, names

TEST(ParseConfigTest, BadDurationsAndSizesAreReported) {
  ExpectOneError("[smtp_in]\ncommand_timeout = \"5 minutes\"\n", 2, "smtp_in.command_timeout",
                 "not a duration");
  ExpectOneError("[smtp_in]\ndata_timeout = \"30\"\n", 2, "smtp_in.data_timeout", "no unit");
  ExpectOneError("[smtp_in]\nmax_message_size = \"25mb\"\n", 2, "smtp_in.max_message_size",
                 "unknown unit \"mb\"");
}

TEST(ParseConfigTest, BadAddressesAreReported) {
  ExpectOneError("[smtp_in]\nlisten = [\"127.0.0.1:25\", \"localhost:26\"]\n", 2,
                 "smtp_in.listen[1]", "host names are not accepted");
  ExpectOneError("[http]\nlisten = \"127.0.0.1\"\n", 2, "http.listen",
                 "invalid address \"127.0.0.1\"");
  ExpectOneError("[http]\nlisten = \"::1:8025\"\n", 2, "http.listen", "brackets");
  ExpectOneError("[smtp_in]\nlisten = []\n", 2, "smtp_in.listen", "at least one");
  ExpectOneError("[smtp_in]\nlisten = [\"127.0.0.1:25\", \"127.0.0.1:25\"]\n", 2,
                 "smtp_in.listen[1]", "duplicate of 127.0.0.1:25");
}

TEST(ParseConfigTest, BadNetworksAreReported) {
  ExpectOneError("[smtp_in]\nrelay_networks = [\n  \"10.0.0.0/8\",\n  \"192.168.1.1/24\",\n]\n", 4,
                 "smtp_in.relay_networks[1]", "did you mean 192.168.1.0/24?");
  ExpectOneError("[smtp_in]\nrelay_networks = [\"10.0.0.0/33\"]\n", 2, "smtp_in.relay_networks[0]",
                 "not a prefix length");
  ExpectOneError("[smtp_in]\nrelay_networks = [\"office\"]\n", 2, "smtp_in.relay_networks[0]",
                 "not an IP address");
  EXPECT_TRUE(Parsed("[smtp_in]\nrelay_networks = []\n").smtp_in.relay_networks.empty());
}

TEST(ParseConfigTest, BadHostnamesAreReported) {
  ExpectOneError("[server]\nhostname = \"mta_1.example.com\"\n", 2, "server.hostname",
                 "not a valid domain name");
  ExpectOneError("[server]\nhostname = \"mta..example.com\"\n", 2, "server.hostname",
                 "empty label");
  ExpectOneError("[server]\nhostname = \"-mta.example.com\"\n", 2, "server.hostname",
                 "starts or ends with '-'");
  ExpectOneError("[server]\nhostname = \"192.0.2.1\"\n", 2, "server.hostname", "an address");
  ExpectOneError("[server]\nhostname = \"" + std::string(64, 'a') + ".example\"\n", 2,
                 "server.hostname", "longer than 63");
  EXPECT_EQ(Parsed("server.hostname = \"localhost\"\n").server.hostname, "localhost");
}

TEST(ParseConfigTest, BadSyncModeIsReported) {
  ExpectOneError("[spool]\nsync = \"always\"\n", 2, "spool.sync", "must be \"group\" or \"none\"");
}

// ---- references and TLS

TEST(ParseConfigTest, UndefinedTlsProfileIsReportedAtTheReference) {
  TempDir dir;
  auto cert = dir.Write("c.pem", "x");
  ExpectOneError("[smtp_in]\ntls = \"mian\"\n\n[tls.main]\ncertificate = \"" + cert.string() +
                     "\"\nkey = \"" + cert.string() + "\"\n",
                 2, "smtp_in.tls", "no [tls.mian] table is defined (defined: main)");
  ExpectOneError("[smtp_in]\ntls = \"main\"\n", 2, "smtp_in.tls", "no TLS profiles are defined");
}

TEST(ParseConfigTest, TlsProfileDefinedAfterItsUseIsResolved) {
  TempDir dir;
  auto cert = dir.Write("c.pem", "x");
  auto key = dir.Write("k.pem", "y");
  Config config = Parsed("[tls.late]\ncertificate = \"" + cert.string() + "\"\nkey = \"" +
                         key.string() + "\"\n[smtp_in]\ntls = \"late\"\n");
  ASSERT_TRUE(config.smtp_in.tls);
  EXPECT_EQ(config.smtp_in.tls->key, key);
}

TEST(ParseConfigTest, TlsFilesMustExistAndBeRegularFiles) {
  TempDir dir;
  auto cert = dir.Write("c.pem", "x");
  std::string text = "[tls.main]\ncertificate = \"" + cert.string() + "\"\nkey = \"" +
                     (dir.path() / "nope.pem").string() + "\"\n";
  ExpectOneError(text, 3, "tls.main.key", "does not exist");
  ExpectOneError("[tls.main]\ncertificate = \"" + dir.path().string() + "\"\nkey = \"" +
                     cert.string() + "\"\n",
                 2, "tls.main.certificate", "not a regular file");
}

TEST(ParseConfigTest, TlsFilesAreBothRequired) {
  TempDir dir;
  auto cert = dir.Write("c.pem", "x");
  ExpectOneError("[tls.main]\ncertificate = \"" + cert.string() + "\"\n", 1, "tls.main.key",
                 "required key is missing");
}

TEST(ParseConfigTest, RelativeTlsPathsResolveAgainstTheWorkingDirectory) {
  TempDir dir;
  dir.Write("c.pem", "x");
  std::filesystem::path before = std::filesystem::current_path();
  std::string text = "[tls.main]\ncertificate = \"c.pem\"\nkey = \"c.pem\"\n";
  ConfigErrors outside = ErrorsOf(text);
  EXPECT_EQ(outside.size(), 2u) << Dump(outside);
  if (!outside.empty()) {
    EXPECT_THAT(outside[0].message, HasSubstr("relative to the working directory"));
  }
  std::filesystem::current_path(dir.path());
  auto inside = ParseConfig(text, kFile);
  std::filesystem::current_path(before);
  ASSERT_TRUE(inside) << Dump(inside.error());
  EXPECT_EQ(inside->tls[0].certificate, "c.pem");  // kept as written
}

// ---- users

TEST(ParseConfigTest, UsersWithoutTlsAreAnError) {
  ExpectOneError(
      "[smtp_in]\nlisten = [\"127.0.0.1:2525\"]\n\n[[smtp_in.users]]\nname = \"app\"\n"
      "password_hash = "
      "\"$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA$"
      "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"\n",
      4, "smtp_in.users", "AUTH is only offered over TLS; set smtp_in.tls");
}

TEST(ParseConfigTest, UserEntriesAreChecked) {
  TempDir dir;
  auto cert = dir.Write("c.pem", "x");
  std::string tls =
      "[tls.t]\ncertificate = \"" + cert.string() + "\"\nkey = \"" + cert.string() + "\"\n";
  std::string text =
      "[smtp_in]\n"          // 1
      "tls = \"t\"\n"        // 2
      "[[smtp_in.users]]\n"  // 3
      "name = \"a\"\n"       // 4
      "password_hash = "
      "\"$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA$"
      "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"\n"  // 5
      "[[smtp_in.users]]\n"                              // 6
      "name = \"a\"\n"                                   // 7
      "password_hash = "
      "\"$pbkdf2-sha256$1000$c2FsdHNhbHRzYWx0c2FsdA$"
      "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"\n"  // 8
      "[[smtp_in.users]]\n"                              // 9
      "name = \"b\"\n"                                   // 10
      "password_hash = \"plaintext\"\n"                  // 11
      "[[smtp_in.users]]\n"                              // 12
      "name = \"c\"\n"                                   // 13
      "[[smtp_in.users]]\n"                              // 14
      "name = \"\"\n"                                    // 15
      "password_hash = "
      "\"$pbkdf2-sha256$01$c2FsdHNhbHRzYWx0c2FsdA$"
      "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g\"\n" +  // 16
      tls;
  ConfigErrors errors = ErrorsOf(text);
  ASSERT_EQ(errors.size(), 5u) << Dump(errors);
  EXPECT_EQ(errors[0].line, 7u);
  EXPECT_EQ(errors[0].key, "smtp_in.users[1].name");
  EXPECT_THAT(errors[0].message,
              HasSubstr("duplicate user \"a\" (first defined at smtp_in.users[0])"));
  EXPECT_EQ(errors[1].line, 11u);
  EXPECT_EQ(errors[1].key, "smtp_in.users[2].password_hash");
  EXPECT_THAT(errors[1].message, HasSubstr("$pbkdf2-sha256$ITERATIONS$SALT$HASH"));
  EXPECT_EQ(errors[2].line, 12u);
  EXPECT_EQ(errors[2].key, "smtp_in.users[3].password_hash");
  EXPECT_THAT(errors[2].message, HasSubstr("required key is missing"));
  EXPECT_EQ(errors[3].line, 15u);
  EXPECT_EQ(errors[3].key, "smtp_in.users[4].name");
  EXPECT_THAT(errors[3].message, HasSubstr("must not be empty"));
  EXPECT_EQ(errors[4].line, 16u);
  EXPECT_EQ(errors[4].key, "smtp_in.users[4].password_hash");
}

TEST(ParseConfigTest, PasswordHashShapes) {
  TempDir dir;
  auto cert = dir.Write("c.pem", "x");
  std::string head =
      "[tls.t]\ncertificate = \"" + cert.string() + "\"\nkey = \"" + cert.string() +
      "\"\n[smtp_in]\ntls = \"t\"\n[[smtp_in.users]]\nname = \"u\"\npassword_hash = ";
  const std::string salt = "c2FsdHNhbHRzYWx0c2FsdA";                       // 16 bytes
  const std::string hash = "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";  // 32 bytes
  for (std::string good :
       {"$pbkdf2-sha256$600000$" + salt + "$" + hash,
        std::string("$pbkdf2-sha256$1$MTIzNDU2Nzg=$MDEyMzQ1Njc4OWFiY2RlZg=="),  // minimum sizes
        "$pbkdf2-sha256$10000000$" + salt + "$" + hash,
        "$pbkdf2-sha256$1000$" + salt + "$" + hash + "="}) {  // exact padding
    auto config = ParseConfig(head + "'" + good + "'\n", kFile);
    EXPECT_TRUE(config) << good << "\n" << (config ? "" : Dump(config.error()));
  }
  for (std::string bad :
       {"$pbkdf2-sha1$1000$" + salt + "$" + hash,  // other algorithm
        "$pbkdf2-sha256$$" + salt + "$" + hash,    // no iterations
        "$pbkdf2-sha256$x$" + salt + "$" + hash,
        "$pbkdf2-sha256$01$" + salt + "$" + hash,        // leading zero
        "$pbkdf2-sha256$10000001$" + salt + "$" + hash,  // above auth's maximum
        "$pbkdf2-sha256$1000$" + salt,                   // no hash
        "$pbkdf2-sha256$1000$" + salt + "$", "$pbkdf2-sha256$1000$" + salt + "$" + hash + "$extra",
        "$pbkdf2-sha256$1000$c2Fs*HNhbHRzYWx0c2FsdA$" + hash,        // not base64
        "$pbkdf2-sha256$1000$" + salt + "$" + hash + "==",           // wrong padding
        "$pbkdf2-sha256$1000$YWJj$" + hash,                          // 3-byte salt
        "$pbkdf2-sha256$1000$" + salt + "$" + std::string(88, 'A'),  // 66-byte hash
        "pbkdf2-sha256$1000$" + salt + "$" + hash}) {
    auto config = ParseConfig(head + "'" + bad + "'\n", kFile);
    EXPECT_FALSE(config) << bad;
  }
}

// ---- many errors at once

TEST(ParseConfigTest, AllErrorsAreReportedAtOnceInLineOrder) {
  std::string text =
      "[smtp_in]\n"                          // 1
      "max_recipients = 0\n"                 // 2
      "tls = \"nowhere\"\n"                  // 3
      "command_timeout = \"soon\"\n"         // 4
      "relay_networks = [\"10.0.0.1/8\"]\n"  // 5
      "\n"                                   // 6
      "[spool]\n"                            // 7
      "sync = \"sometimes\"\n"               // 8
      "colour = \"blue\"\n"                  // 9
      "\n"                                   // 10
      "[http]\n"                             // 11
      "listen = \"localhost:80\"\n";         // 12
  ConfigErrors errors = ErrorsOf(text);
  ASSERT_EQ(errors.size(), 7u) << Dump(errors);
  std::vector<std::pair<uint32_t, std::string>> got;
  for (const ConfigError& e : errors) got.emplace_back(e.line, e.key);
  std::vector<std::pair<uint32_t, std::string>> want = {{2, "smtp_in.max_recipients"},
                                                        {3, "smtp_in.tls"},
                                                        {4, "smtp_in.command_timeout"},
                                                        {5, "smtp_in.relay_networks[0]"},
                                                        {8, "spool.sync"},
                                                        {9, "spool.colour"},
                                                        {12, "http.listen"}};
  EXPECT_EQ(got, want) << Dump(errors);
  EXPECT_EQ(
      errors[5].ToString(),
      "test.toml:9:1: spool.colour: unknown key (expected one of: path, sync, memtable_size, commit_delay, commit_group)");
}

// ---- [delivery], [retry], [dns]

TEST(ParseConfigTest, DeliveryRetryAndDnsDefaults) {
  Config config = Parsed("[server]\nhostname = \"mta.example.net\"\n");
  const DeliveryConfig& d = config.delivery;
  EXPECT_EQ(d.max_connections_per_site, 20u);
  EXPECT_EQ(d.retry_share, 0.25);
  EXPECT_EQ(d.max_connections, 2000u);
  EXPECT_EQ(d.max_messages_per_connection, 100u);
  EXPECT_EQ(d.max_recipients_per_transaction, 50u);
  EXPECT_EQ(d.idle_timeout, seconds(5));
  EXPECT_EQ(d.connect_timeout, seconds(30));
  EXPECT_EQ(d.banner_timeout, seconds(60));
  EXPECT_EQ(d.ehlo_timeout, seconds(60));
  EXPECT_EQ(d.mail_timeout, seconds(60));
  EXPECT_EQ(d.rcpt_timeout, seconds(60));
  EXPECT_EQ(d.data_timeout, seconds(120));
  EXPECT_EQ(d.data_end_timeout, seconds(600));
  EXPECT_FALSE(d.source_address.has_value());
  EXPECT_EQ(d.helo_name, "mta.example.net");  // falls back to server.hostname
  EXPECT_EQ(d.starttls, StartTlsPolicy::kOpportunistic);
  EXPECT_EQ(d.host_down_initial, seconds(60));
  EXPECT_EQ(d.host_down_max, minutes(30));
  EXPECT_EQ(config.retry.initial, minutes(5));
  EXPECT_EQ(config.retry.max, hours(4));
  EXPECT_EQ(config.retry.max_age, hours(72));
  EXPECT_EQ(config.retry.jitter, 0.2);
  EXPECT_EQ(config.retry.reactivation_rate, 1000u);
  EXPECT_TRUE(config.dns.servers.empty());
  EXPECT_EQ(config.dns.timeout, seconds(5));
  EXPECT_EQ(config.dns.attempts, 2u);
  EXPECT_EQ(config.dns.negative_ttl, minutes(5));
  EXPECT_EQ(config.dns.max_ttl, hours(1));
  EXPECT_TRUE(config.routes.empty());
  EXPECT_TRUE(config.sites.empty());
}

TEST(ParseConfigTest, DeliverySectionsRoundTripToStructValues) {
  std::string text = R"(
[server]
hostname = "mta.example.net"

[delivery]
max_connections_per_site = 10000
retry_share = 1
max_connections = 1000000
max_messages_per_connection = 1
max_recipients_per_transaction = 1000
idle_timeout = "0s"
connect_timeout = "1s"
banner_timeout = "2m"
ehlo_timeout = "3m"
mail_timeout = "4m"
rcpt_timeout = "5m"
data_timeout = "6m"
data_end_timeout = "1h"
source_address = "2001:db8::25"
helo_name = "Out1.Example.net"
starttls = "never"
host_down_initial = "1d"
host_down_max = "1d"

[retry]
initial = "1m"
max = "7d"
max_age = "30d"
jitter = 0.5
reactivation_rate = 1000000

[dns]
servers = ["192.0.2.53", "[2001:db8::53]:5353", "2001:db8::54", "[2001:db8::55]", "127.0.0.1:53"]
timeout = "100ms"
attempts = 10
negative_ttl = "0s"
max_ttl = "7d"

[[route]]
domain = "Example.COM"
to = "Relay.Example.net:2525"
site = "relay"

[[route]]
domain = "*.example.com"
to = "[2001:DB8::1]"

[[route]]
domain = "test.example"
to = "192.0.2.1"

[[site]]
name = "big-mail_1"
mx_patterns = ["*.MX.big.example", "mx.big.example"]
max_connections = 10000
max_messages_per_connection = 100000

[[site]]
name = "relay"
)";
  Config config = Parsed(text);
  const DeliveryConfig& d = config.delivery;
  EXPECT_EQ(d.max_connections_per_site, 10000u);
  EXPECT_EQ(d.retry_share, 1.0);
  EXPECT_EQ(d.max_connections, 1000000u);
  EXPECT_EQ(d.max_messages_per_connection, 1u);
  EXPECT_EQ(d.max_recipients_per_transaction, 1000u);
  EXPECT_EQ(d.idle_timeout, seconds(0));
  EXPECT_EQ(d.connect_timeout, seconds(1));
  EXPECT_EQ(d.banner_timeout, minutes(2));
  EXPECT_EQ(d.ehlo_timeout, minutes(3));
  EXPECT_EQ(d.mail_timeout, minutes(4));
  EXPECT_EQ(d.rcpt_timeout, minutes(5));
  EXPECT_EQ(d.data_timeout, minutes(6));
  EXPECT_EQ(d.data_end_timeout, hours(1));
  ASSERT_TRUE(d.source_address.has_value());
  EXPECT_EQ(d.source_address->ToString(), "2001:db8::25");
  EXPECT_EQ(d.helo_name, "Out1.Example.net");  // kept as written
  EXPECT_EQ(d.starttls, StartTlsPolicy::kNever);
  EXPECT_EQ(d.host_down_initial, hours(24));
  EXPECT_EQ(d.host_down_max, hours(24));  // equal to initial is allowed
  EXPECT_EQ(config.retry.initial, minutes(1));
  EXPECT_EQ(config.retry.max, hours(7 * 24));
  EXPECT_EQ(config.retry.max_age, hours(30 * 24));
  EXPECT_EQ(config.retry.jitter, 0.5);
  EXPECT_EQ(config.retry.reactivation_rate, 1000000u);
  std::vector<std::string> servers;
  for (const Endpoint& e : config.dns.servers) servers.push_back(e.ToString());
  EXPECT_EQ(servers,
            (std::vector<std::string>{"192.0.2.53:53", "[2001:db8::53]:5353", "[2001:db8::54]:53",
                                      "[2001:db8::55]:53", "127.0.0.1:53"}));
  EXPECT_EQ(config.dns.timeout, std::chrono::milliseconds(100));
  EXPECT_EQ(config.dns.attempts, 10u);
  EXPECT_EQ(config.dns.negative_ttl, seconds(0));
  EXPECT_EQ(config.dns.max_ttl, hours(7 * 24));
  ASSERT_EQ(config.routes.size(), 3u);
  EXPECT_EQ(config.routes[0].domain, "example.com");
  EXPECT_EQ(config.routes[0].host, "relay.example.net");
  EXPECT_EQ(config.routes[0].port, 2525);
  EXPECT_EQ(config.routes[0].site, "relay");
  EXPECT_EQ(config.routes[1].domain, "*.example.com");
  EXPECT_EQ(config.routes[1].host, "2001:db8::1");  // canonical, without brackets
  EXPECT_EQ(config.routes[1].port, 25);
  EXPECT_EQ(config.routes[1].site, "");
  EXPECT_EQ(config.routes[2].host, "192.0.2.1");
  EXPECT_EQ(config.routes[2].port, 25);
  ASSERT_EQ(config.sites.size(), 2u);
  EXPECT_EQ(config.sites[0].name, "big-mail_1");
  EXPECT_EQ(config.sites[0].mx_patterns,
            (std::vector<std::string>{"*.mx.big.example", "mx.big.example"}));
  EXPECT_EQ(config.sites[0].max_connections, 10000u);
  EXPECT_EQ(config.sites[0].max_messages_per_connection, 100000u);
  EXPECT_EQ(config.sites[1].name, "relay");
  EXPECT_TRUE(config.sites[1].mx_patterns.empty());  // joined through route[0] only
  EXPECT_FALSE(config.sites[1].max_connections.has_value());
  EXPECT_FALSE(config.sites[1].max_messages_per_connection.has_value());
}

TEST(ParseConfigTest, DeliveryValuesOutOfRangeAreReported) {
  ExpectOneError("[delivery]\nmax_connections_per_site = 0\n", 2,
                 "delivery.max_connections_per_site", "between 1 and 10000, got 0");
  ExpectOneError("[delivery]\nmax_connections_per_site = 10001\n", 2,
                 "delivery.max_connections_per_site", "got 10001");
  ExpectOneError("[delivery]\nmax_connections = 1000001\n", 2, "delivery.max_connections",
                 "between 1 and 1000000");
  ExpectOneError("[delivery]\nmax_messages_per_connection = 0\n", 2,
                 "delivery.max_messages_per_connection", "between 1 and 100000");
  ExpectOneError("[delivery]\nmax_recipients_per_transaction = 1001\n", 2,
                 "delivery.max_recipients_per_transaction", "between 1 and 1000, got 1001");
  ExpectOneError("[delivery]\nidle_timeout = \"61m\"\n", 2, "delivery.idle_timeout",
                 "between 0s and 1h, got 1h1m");
  ExpectOneError("[delivery]\nconnect_timeout = \"500ms\"\n", 2, "delivery.connect_timeout",
                 "between 1s and 1h, got 500ms");
  ExpectOneError("[delivery]\ndata_end_timeout = \"2h\"\n", 2, "delivery.data_end_timeout",
                 "between 1s and 1h, got 2h");
  ExpectOneError("[delivery]\nrcpt_timeout = 60\n", 2, "delivery.rcpt_timeout",
                 "expected a duration");
  ExpectOneError("[delivery]\nhost_down_initial = \"2d\"\n", 2, "delivery.host_down_initial",
                 "between 1s and 1d, got 2d");
  ExpectOneError("[delivery]\nhost_down_max = \"8d\"\n", 2, "delivery.host_down_max",
                 "between 1s and 7d, got 8d");
}

TEST(ParseConfigTest, RetryShareBelowOnePercentWouldStarveRetries) {
  ExpectOneError("[delivery]\nretry_share = 0.0\n", 2, "delivery.retry_share",
                 "must be at least 0.01, got 0: the retry lane would get no connection, so "
                 "retries would never run");
  ExpectOneError("[delivery]\nretry_share = 0\n", 2, "delivery.retry_share",
                 "retries would never run");
  ExpectOneError("[delivery]\nretry_share = 0.009\n", 2, "delivery.retry_share", "got 0.009");
  ExpectOneError("[delivery]\nretry_share = -0.5\n", 2, "delivery.retry_share", "at least 0.01");
  ExpectOneError("[delivery]\nretry_share = 1.5\n", 2, "delivery.retry_share",
                 "must be between 0.01 and 1, got 1.5");
  ExpectOneError("[delivery]\nretry_share = nan\n", 2, "delivery.retry_share",
                 "must be a finite number, got nan");
  ExpectOneError("[delivery]\nretry_share = \"25%\"\n", 2, "delivery.retry_share",
                 "expected a number, got a string");
  EXPECT_EQ(Parsed("[delivery]\nretry_share = 0.01\n").delivery.retry_share, 0.01);
}

TEST(ParseConfigTest, DeliveryNamesAndAddressesAreChecked) {
  ExpectOneError("[delivery]\nsource_address = \"[::1]\"\n", 2, "delivery.source_address",
                 "\"[::1]\" is not an IP address (write it without brackets");
  ExpectOneError("[delivery]\nsource_address = \"out.example.net\"\n", 2, "delivery.source_address",
                 "is not an IP address");
  EXPECT_EQ(Parsed("[delivery]\nsource_address = \"192.0.2.10\"\n").delivery.source_address,
            IpAddress::V4(192, 0, 2, 10));
  ExpectOneError("[delivery]\nhelo_name = \"out_1.example.net\"\n", 2, "delivery.helo_name",
                 "not a valid domain name");
  ExpectOneError("[delivery]\nhelo_name = \"192.0.2.1\"\n", 2, "delivery.helo_name", "an address");
  ExpectOneError("[delivery]\nstarttls = \"required\"\n", 2, "delivery.starttls",
                 "must be \"opportunistic\" or \"never\", got \"required\"");
  EXPECT_EQ(Parsed("[delivery]\nstarttls = \"opportunistic\"\n").delivery.starttls,
            StartTlsPolicy::kOpportunistic);
}

TEST(ParseConfigTest, LongerDurationsMustNotBeShorterThanTheirStart) {
  // Both set: the error is at the upper bound.
  ExpectOneError("[delivery]\nhost_down_initial = \"10m\"\nhost_down_max = \"5m\"\n", 3,
                 "delivery.host_down_max",
                 "must be at least delivery.host_down_initial (10m), got 5m");
  // Only the start set, above the default cap: the error is at the start.
  ExpectOneError("[delivery]\nhost_down_initial = \"1h\"\n", 2, "delivery.host_down_initial",
                 "must be at most delivery.host_down_max (30m, its default), got 1h; raise "
                 "delivery.host_down_max as well");
  ExpectOneError("[retry]\ninitial = \"1h\"\nmax = \"30m\"\n", 3, "retry.max",
                 "must be at least retry.initial (1h), got 30m");
  ExpectOneError("[retry]\ninitial = \"6h\"\n", 2, "retry.initial",
                 "must be at most retry.max (4h, its default)");
  ExpectOneError("[retry]\nmax_age = \"1m\"\n", 2, "retry.max_age",
                 "must be at least retry.initial (5m), got 1m");
  // A value already in error causes no second, derived error.
  ExpectOneError("[retry]\ninitial = \"2d\"\nmax = \"1h\"\n", 2, "retry.initial",
                 "between 1s and 1d");
  Config equal = Parsed("[retry]\ninitial = \"4h\"\nmax_age = \"4h\"\n");
  EXPECT_EQ(equal.retry.max, hours(4));
  EXPECT_EQ(equal.retry.max_age, hours(4));
}

TEST(ParseConfigTest, RetryValuesOutOfRangeAreReported) {
  ExpectOneError("[retry]\ninitial = \"500ms\"\n", 2, "retry.initial", "between 1s and 1d");
  ExpectOneError("[retry]\nmax = \"8d\"\n", 2, "retry.max", "between 1s and 7d, got 8d");
  ExpectOneError("[retry]\nmax_age = \"31d\"\n", 2, "retry.max_age", "between 1s and 30d");
  ExpectOneError("[retry]\njitter = 0.6\n", 2, "retry.jitter",
                 "must be between 0 and 0.5, got 0.6");
  ExpectOneError("[retry]\njitter = -0.1\n", 2, "retry.jitter", "got -0.1");
  ExpectOneError("[retry]\njitter = inf\n", 2, "retry.jitter", "finite");
  ExpectOneError("[retry]\nreactivation_rate = 0\n", 2, "retry.reactivation_rate",
                 "between 1 and 1000000, got 0");
  EXPECT_EQ(Parsed("[retry]\njitter = 0\n").retry.jitter, 0.0);
}

TEST(ParseConfigTest, DnsValuesAreChecked) {
  ExpectOneError("[dns]\nservers = [\"192.0.2.53\", \"ns1.example.net\"]\n", 2, "dns.servers[1]",
                 "invalid DNS server \"ns1.example.net\": \"ns1.example.net\" is not an IP "
                 "address (host names are not accepted)");
  ExpectOneError("[dns]\nservers = [\"ns1.example.net:53\"]\n", 2, "dns.servers[0]",
                 "host names are not accepted");
  ExpectOneError("[dns]\nservers = [\"192.0.2.53:0\"]\n", 2, "dns.servers[0]",
                 "port 0 is not a DNS server port");
  ExpectOneError("[dns]\nservers = [\"192.0.2.53:65536\"]\n", 2, "dns.servers[0]",
                 "not a port number");
  ExpectOneError("[dns]\nservers = [\"2001:db8::1:5353\", \"[2001:db8::1\"]\n", 2, "dns.servers[1]",
                 "missing ']'");
  ExpectOneError("[dns]\nservers = [\n  \"192.0.2.53\",\n  \"192.0.2.53:53\",\n]\n", 4,
                 "dns.servers[1]", "duplicate of 192.0.2.53:53 listed before");
  ExpectOneError("[dns]\nservers = \"192.0.2.53\"\n", 2, "dns.servers", "expected an array");
  ExpectOneError("[dns]\ntimeout = \"50ms\"\n", 2, "dns.timeout", "between 100ms and 1m, got 50ms");
  ExpectOneError("[dns]\ntimeout = \"2m\"\n", 2, "dns.timeout", "got 2m");
  ExpectOneError("[dns]\nattempts = 11\n", 2, "dns.attempts", "between 1 and 10");
  ExpectOneError("[dns]\nnegative_ttl = \"25h\"\n", 2, "dns.negative_ttl",
                 "between 0s and 1d, got 1d1h");
  ExpectOneError("[dns]\nmax_ttl = \"0s\"\n", 2, "dns.max_ttl", "between 1s and 7d, got 0s");
  EXPECT_TRUE(Parsed("[dns]\nservers = []\n").dns.servers.empty());
}

// ---- [[route]] and [[site]]

TEST(ParseConfigTest, RouteDomainsAreChecked) {
  ExpectOneError("[[route]]\ndomain = \"*\"\nto = \"relay.example\"\n", 2, "route[0].domain",
                 "a wildcard is only allowed as a whole first label, as in \"*.example.com\"");
  ExpectOneError("[[route]]\ndomain = \"*.\"\nto = \"relay.example\"\n", 2, "route[0].domain",
                 "must not be empty");
  ExpectOneError("[[route]]\ndomain = \"mail.*.example\"\nto = \"relay.example\"\n", 2,
                 "route[0].domain", "a wildcard is only allowed as a whole first label");
  ExpectOneError("[[route]]\ndomain = \"*example.com\"\nto = \"relay.example\"\n", 2,
                 "route[0].domain", "wildcard");
  ExpectOneError("[[route]]\ndomain = \"exa mple.com\"\nto = \"relay.example\"\n", 2,
                 "route[0].domain", "not a valid domain name");
  ExpectOneError("[[route]]\ndomain = \"\"\nto = \"relay.example\"\n", 2, "route[0].domain",
                 "must not be empty");
  ExpectOneError("[[route]]\nto = \"relay.example\"\n", 1, "route[0].domain",
                 "required key is missing");
  ExpectOneError("[[route]]\ndomain = \"example.com\"\n", 1, "route[0].to",
                 "required key is missing");
  ExpectOneError("[[route]]\ndomain = \"example.com\"\nto = \"relay.example\"\nvia = \"x\"\n", 4,
                 "route[0].via", "unknown key (expected one of: domain, to, site)");
}

TEST(ParseConfigTest, DuplicateRouteIsReportedAtTheSecond) {
  ExpectOneError(
      "[[route]]\n"                 // 1
      "domain = \"example.com\"\n"  // 2
      "to = \"a.example\"\n"        // 3
      "[[route]]\n"                 // 4
      "domain = \"*.example.com\"\n"
      "to = \"b.example\"\n"        // 6
      "[[route]]\n"                 // 7
      "domain = \"EXAMPLE.com\"\n"  // 8
      "to = \"c.example\"\n",
      8, "route[2].domain", "duplicate route for \"example.com\" (first defined at route[0])");
}

TEST(ParseConfigTest, RouteDestinationsAreChecked) {
  auto one = [](const std::string& to) {
    return "[[route]]\ndomain = \"example.com\"\nto = \"" + to + "\"\n";
  };
  ExpectOneError(one("2001:db8::1"), 3, "route[0].to",
                 "invalid destination \"2001:db8::1\": an IPv6 address must be in brackets");
  ExpectOneError(one("[192.0.2.1]:25"), 3, "route[0].to", "is not an IPv6 address");
  ExpectOneError(one("[2001:db8::1]25"), 3, "route[0].to", "expected ':PORT'");
  ExpectOneError(one("relay.example:0"), 3, "route[0].to", "\"0\" is not a port number (1-65535)");
  ExpectOneError(one("relay.example:65536"), 3, "route[0].to", "not a port number");
  ExpectOneError(one("relay.example:"), 3, "route[0].to", "not a port number");
  ExpectOneError(one("relay.example:025"), 3, "route[0].to", "not a port number");
  ExpectOneError(one("192.0.2.300"), 3, "route[0].to", "not a valid IPv4 address");
  ExpectOneError(one("relay_1.example"), 3, "route[0].to", "host \"relay_1.example\" is not a");
  ExpectOneError(one(":25"), 3, "route[0].to", "host must not be empty");
  RouteConfig route = Parsed(one("[::1]:587")).routes.at(0);
  EXPECT_EQ(route.host, "::1");
  EXPECT_EQ(route.port, 587);
  route = Parsed(one("192.0.2.1:2525")).routes.at(0);
  EXPECT_EQ(route.host, "192.0.2.1");
  EXPECT_EQ(route.port, 2525);
  route = Parsed(one("localhost")).routes.at(0);
  EXPECT_EQ(route.host, "localhost");
  EXPECT_EQ(route.port, 25);
}

TEST(ParseConfigTest, RouteSiteMustBeDefinedAnywhereInTheFile) {
  ExpectOneError(
      "[[route]]\n"
      "domain = \"example.com\"\n"
      "to = \"relay.example\"\n"
      "site = \"relya\"\n"  // 4
      "[[site]]\n"
      "name = \"relay\"\n",
      4, "route[0].site", "no [[site]] named \"relya\" is defined (defined: relay)");
  ExpectOneError("[[route]]\ndomain = \"example.com\"\nto = \"relay.example\"\nsite = \"x\"\n", 4,
                 "route[0].site", "no sites are defined");
  // Defined after its use, and without mx_patterns since a route joins it.
  Config config = Parsed(
      "[[site]]\nname = \"late\"\n"
      "[[route]]\ndomain = \"example.com\"\nto = \"relay.example\"\nsite = \"late\"\n");
  EXPECT_EQ(config.routes.at(0).site, "late");
  // A site whose own definition is broken gives no second error at the route.
  ExpectOneError(
      "[[site]]\nname = \"s\"\nmx_patterns = []\n"
      "[[route]]\ndomain = \"example.com\"\nto = \"relay.example\"\nsite = \"s\"\n",
      3, "site[0].mx_patterns", "at least one");
}

TEST(ParseConfigTest, SiteEntriesAreChecked) {
  std::string text =
      "[[site]]\n"                               // 1
      "name = \"big\"\n"                         // 2
      "mx_patterns = [\"*.mx.big.example\"]\n"   // 3
      "[[site]]\n"                               // 4
      "name = \"big\"\n"                         // 5
      "mx_patterns = [\"mx.other.example\"]\n"   // 6
      "[[site]]\n"                               // 7
      "name = \"Big Mail\"\n"                    // 8
      "mx_patterns = [\"mx.third.example\"]\n"   // 9
      "[[site]]\n"                               // 10
      "mx_patterns = [\"mx.fourth.example\"]\n"  // 11
      "[[site]]\n"                               // 12
      "name = \"fifth\"\n"                       // 13
      "mx_patterns = [\"*.MX.big.example\", \"mx..x\", "
      "\"a.example\", \"a.example\"]\n"         // 14
      "max_connections = 0\n"                   // 15
      "max_messages_per_connection = 100001\n"  // 16
      "[[site]]\n"                              // 17
      "name = \"lonely\"\n";                    // 18
  ConfigErrors errors = ErrorsOf(text);
  std::vector<std::pair<uint32_t, std::string>> got;
  for (const ConfigError& e : errors) got.emplace_back(e.line, e.key);
  std::vector<std::pair<uint32_t, std::string>> want = {{5, "site[1].name"},
                                                        {8, "site[2].name"},
                                                        {10, "site[3].name"},
                                                        {14, "site[4].mx_patterns[0]"},
                                                        {14, "site[4].mx_patterns[1]"},
                                                        {14, "site[4].mx_patterns[3]"},
                                                        {15, "site[4].max_connections"},
                                                        {16, "site[4].max_messages_per_connection"},
                                                        {17, "site[5].mx_patterns"}};
  ASSERT_EQ(got, want) << Dump(errors);
  EXPECT_THAT(errors[0].message, HasSubstr("duplicate site \"big\" (first defined at site[0])"));
  EXPECT_THAT(errors[1].message, HasSubstr("lower-case letters, digits, '_' and '-'"));
  EXPECT_THAT(errors[2].message, HasSubstr("required key is missing"));
  EXPECT_THAT(errors[3].message,
              HasSubstr("pattern \"*.mx.big.example\" already belongs to site \"big\""));
  EXPECT_THAT(errors[4].message, HasSubstr("empty label"));
  EXPECT_THAT(errors[5].message, HasSubstr("duplicate pattern \"a.example\""));
  EXPECT_THAT(errors[6].message, HasSubstr("between 1 and 10000, got 0"));
  EXPECT_THAT(errors[7].message, HasSubstr("between 1 and 100000"));
  EXPECT_THAT(errors[8].message,
              HasSubstr("no [[route]] names site \"lonely\", so only mx_patterns could bring "
                        "mail to it"));
}

TEST(ParseConfigTest, RouteAndSiteMustBeArraysOfTables) {
  ExpectOneError("route = \"relay.example\"\n", 1, "route",
                 "expected an array of tables ([[route]]), got a string");
  ExpectOneError("[site]\nname = \"x\"\n", 1, "site", "expected an array of tables ([[site]])");
  ExpectOneError("[[routes]]\ndomain = \"x.example\"\n", 1, "routes", "did you mean \"route\"");
}

// ---- traffic shaping (issue 11)

TEST(ShapingConfigTest, WithoutSourcesThereIsOneImplicitSourceAndPool) {
  Config config = Parsed("[server]\nhostname = \"mx.example.org\"\n");
  ASSERT_EQ(config.sources.size(), 1u);
  EXPECT_EQ(config.sources[0].name, "default");
  EXPECT_FALSE(config.sources[0].address.has_value());  // the OS chooses
  EXPECT_EQ(config.sources[0].helo_name, "mx.example.org");
  ASSERT_EQ(config.pools.size(), 1u);
  EXPECT_EQ(config.pools[0].name, "default");
  ASSERT_EQ(config.pools[0].sources.size(), 1u);
  EXPECT_EQ(config.pools[0].sources[0].source, "default");
  EXPECT_EQ(config.pools[0].sources[0].weight, 1u);
  EXPECT_EQ(config.delivery.pool, "default");
  EXPECT_TRUE(config.tenants.empty());
  EXPECT_TRUE(config.reply_rules.empty());
  EXPECT_TRUE(config.warmups.empty());
  EXPECT_TRUE(config.providers.empty());

  Config bound = Parsed("[delivery]\nsource_address = \"192.0.2.10\"\nhelo_name = \"out.example\"\n");
  ASSERT_EQ(bound.sources.size(), 1u);
  EXPECT_EQ(bound.sources[0].address->ToString(), "192.0.2.10");
  EXPECT_EQ(bound.sources[0].helo_name, "out.example");
}

TEST(ShapingConfigTest, SourcesWithoutPoolsFormTheDefaultPool) {
  Config config = Parsed(
      "[delivery]\nhelo_name = \"out.example\"\n"
      "[[source]]\nname = \"a\"\naddress = \"127.0.0.50\"\n"
      "[[source]]\nname = \"b\"\naddress = \"2001:db8::51\"\nhelo_name = \"b.out.example\"\n"
      "warmup = \"slow\"\nwarmup_start = \"2026-12-01\"\n"
      "[[warmup]]\nname = \"slow\"\ndays = [{ day = 1, per_day = 200, per_hour = 50 }, "
      "{ day = 3, per_day = 1000 }]\n");
  ASSERT_EQ(config.sources.size(), 2u);
  EXPECT_EQ(config.sources[0].address->ToString(), "127.0.0.50");
  EXPECT_EQ(config.sources[0].helo_name, "out.example");
  EXPECT_TRUE(config.sources[0].warmup.empty());
  EXPECT_EQ(config.sources[1].address->ToString(), "2001:db8::51");
  EXPECT_EQ(config.sources[1].helo_name, "b.out.example");
  EXPECT_EQ(config.sources[1].warmup, "slow");
  EXPECT_EQ(config.sources[1].warmup_start,
            std::chrono::year_month_day(std::chrono::year(2026), std::chrono::month(12),
                                        std::chrono::day(1)));
  ASSERT_EQ(config.pools.size(), 1u);
  EXPECT_EQ(config.pools[0].name, "default");
  ASSERT_EQ(config.pools[0].sources.size(), 2u);
  EXPECT_EQ(config.pools[0].sources[1].source, "b");
  EXPECT_EQ(config.delivery.pool, "default");
  ASSERT_EQ(config.warmups.size(), 1u);
  ASSERT_EQ(config.warmups[0].days.size(), 2u);
  EXPECT_EQ(config.warmups[0].days[0].per_hour, 50u);
  EXPECT_EQ(config.warmups[0].days[1].day, 3u);
  EXPECT_EQ(config.warmups[0].days[1].per_day, 1000u);
  EXPECT_FALSE(config.warmups[0].days[1].per_hour.has_value());
}

TEST(ShapingConfigTest, PoolsTenantsAndDeliveryPool) {
  Config config = Parsed(
      "[delivery]\npool = \"main\"\n"
      "[[source]]\nname = \"a\"\naddress = \"127.0.0.50\"\n"
      "[[source]]\nname = \"b\"\naddress = \"127.0.0.51\"\n"
      "[[pool]]\nname = \"main\"\nsources = [{ source = \"a\", weight = 2 }, { source = \"b\" }]\n"
      "[[pool]]\nname = \"quarantine\"\nsources = [{ source = \"b\" }]\n"
      "[[tenant]]\nname = \"shop\"\nweight = 3\n"
      "[[tenant]]\nname = \"spammy\"\npool = \"quarantine\"\n");
  ASSERT_EQ(config.pools.size(), 2u);  // no implicit pool once pools are given
  EXPECT_EQ(config.pools[0].sources[0].weight, 2u);
  EXPECT_EQ(config.pools[0].sources[1].weight, 1u);
  EXPECT_EQ(config.delivery.pool, "main");
  ASSERT_EQ(config.tenants.size(), 2u);
  EXPECT_EQ(config.tenants[0].pool, "main");  // delivery.pool
  EXPECT_EQ(config.tenants[0].weight, 3u);
  EXPECT_EQ(config.tenants[1].pool, "quarantine");
  EXPECT_EQ(config.tenants[1].weight, 1u);
  // A pool named "default" is the default pool without delivery.pool.
  Config implicit = Parsed(
      "[[source]]\nname = \"a\"\naddress = \"127.0.0.50\"\n"
      "[[pool]]\nname = \"other\"\nsources = [{ source = \"a\" }]\n"
      "[[pool]]\nname = \"default\"\nsources = [{ source = \"a\" }]\n");
  EXPECT_EQ(implicit.delivery.pool, "default");
  // Pools over the implicit source.
  Config over_default = Parsed("[[pool]]\nname = \"default\"\nsources = [{ source = \"default\" }]\n");
  EXPECT_EQ(over_default.pools.at(0).sources.at(0).source, "default");
}

TEST(ShapingConfigTest, DeliveryPoolIsRequiredWithoutADefaultPool) {
  ExpectOneError(
      "[[source]]\nname = \"a\"\naddress = \"127.0.0.50\"\n"
      "[[pool]]\nname = \"main\"\nsources = [{ source = \"a\" }]\n",
      4, "delivery.pool",
      "required key is missing: no [[pool]] is named \"default\", so delivery.pool must name "
      "the pool for mail without one (defined: main)");
  ExpectOneError(
      "[delivery]\npool = \"mian\"\n"
      "[[pool]]\nname = \"main\"\nsources = [{ source = \"default\" }]\n",
      2, "delivery.pool", "no [[pool]] named \"mian\" is defined (defined: main)");
}

TEST(ShapingConfigTest, SourceErrors) {
  std::string text =
      "[delivery]\nsource_address = \"192.0.2.1\"\n"           // 1-2
      "[[source]]\nname = \"A\"\naddress = \"127.0.0.50\"\n"   // 3-5
      "[[source]]\nname = \"b\"\naddress = \"127.0.0.500\"\n"  // 6-8
      "[[source]]\nname = \"c\"\naddress = \"127.0.0.51\"\nwarmup = \"w\"\n"  // 9-12
      "[[source]]\nname = \"d\"\naddress = \"127.0.0.51\"\n"   // 13-15
      "[[source]]\nname = \"c\"\naddress = \"127.0.0.52\"\n"   // 16-18
      "[[source]]\nname = \"e\"\n"                             // 19-20
      "[[source]]\nname = \"f\"\naddress = \"127.0.0.53\"\nwarmup_start = \"2026-02-30\"\n"  // 21-24
      "[[source]]\nname = \"g\"\naddress = \"127.0.0.54\"\nwarmup = \"w\"\n"
      "warmup_start = \"1.12.2026\"\n"                         // 25-29
      "[[source]]\nname = \"h\"\naddress = \"127.0.0.55\"\nhelo_name = \"bad..name\"\n";  // 30-33
  ConfigErrors errors = ErrorsOf(text);
  std::vector<std::string> got;
  for (const ConfigError& e : errors) got.push_back(e.ToString());
  std::vector<std::string> want = {
      "test.toml:2:18: delivery.source_address: is only used without [[source]] tables; give "
      "this address as a [[source]]",
      "test.toml:4:8: source[0].name: \"A\" is not a source name: use lower-case letters, "
      "digits, '_' and '-'",
      "test.toml:8:11: source[1].address: \"127.0.0.500\" is not an IP address (write it "
      "without brackets or port, e.g. \"192.0.2.10\" or \"2001:db8::10\")",
      "test.toml:12:10: source[2].warmup_start: required with warmup: the date of day 1, "
      "\"YYYY-MM-DD\"",
      "test.toml:12:10: source[2].warmup: no [[warmup]] named \"w\" is defined (no warmups are "
      "defined)",
      "test.toml:15:11: source[3].address: address 127.0.0.51 is already source c's; two "
      "sources cannot share one address",
      "test.toml:17:8: source[4].name: duplicate source \"c\" (first defined at source[2])",
      "test.toml:19:1: source[5].address: required key is missing",
      "test.toml:24:16: source[6].warmup_start: no such date in the calendar",
      "test.toml:24:16: source[6].warmup_start: has no effect without warmup (the name of a "
      "[[warmup]] schedule)",
      "test.toml:28:10: source[7].warmup: no [[warmup]] named \"w\" is defined (no warmups are "
      "defined)",
      "test.toml:29:16: source[7].warmup_start: \"1.12.2026\" is not a date: write "
      "\"YYYY-MM-DD\", e.g. \"2026-12-01\"",
      "test.toml:33:13: source[8].helo_name: \"bad..name\" has an empty label (a leading, "
      "trailing or double dot)",
  };
  EXPECT_EQ(got, want) << Dump(errors);
  ExpectOneError(
      "[[source]]\nname = \"a\"\naddress = \"127.0.0.50\"\nwarmup_start = 2026-12-01\n", 4,
      "source[0].warmup_start", "has no effect without warmup");
  // A TOML date is accepted as well as the string.
  Config config = Parsed(
      "[[source]]\nname = \"a\"\naddress = \"127.0.0.50\"\nwarmup = \"w\"\n"
      "warmup_start = 2026-12-01\n[[warmup]]\nname = \"w\"\ndays = [{ day = 1, per_day = 5 }]\n");
  EXPECT_TRUE(config.sources.at(0).warmup_start->ok());
}

TEST(ShapingConfigTest, PoolAndTenantErrors) {
  std::string text =
      "[[source]]\nname = \"a\"\naddress = \"127.0.0.50\"\n"              // 1-3
      "[[pool]]\nname = \"default\"\nsources = [{ source = \"a\" }, { source = \"x\" }, "
      "{ source = \"a\", weight = 0 }]\n"                                  // 4-6
      "[[pool]]\nname = \"empty\"\nsources = []\n"                         // 7-9
      "[[pool]]\nname = \"default\"\nsources = [{ weight = 2 }]\n"         // 10-12
      "[[tenant]]\nname = \"t\"\npool = \"nope\"\nweight = 1001\n"         // 13-16
      "[[tenant]]\nname = \"t\"\n"                                         // 17-18
      "[smtp_in]\ntls = \"x\"\n[[smtp_in.users]]\nname = \"u\"\n"
      "password_hash = \"$pbkdf2-sha256$1000$MTIzNDU2Nzg=$MDEyMzQ1Njc4OWFiY2RlZg==\"\n"
      "tenant = \"shop\"\n";                                               // 19-24
  ConfigErrors errors = ErrorsOf(text);
  std::vector<std::pair<uint32_t, std::string>> got;
  for (const ConfigError& e : errors) got.emplace_back(e.line, e.key + ": " + e.message);
  std::vector<std::pair<uint32_t, std::string>> want = {
      {6, "pool[0].sources[1].source: no [[source]] named \"x\" is defined (defined: a)"},
      {6, "pool[0].sources[2].source: duplicate source \"a\" (first defined at "
          "pool[0].sources[0])"},
      {6, "pool[0].sources[2].weight: must be between 1 and 1000, got 0"},
      {9, "pool[1].sources: must list at least one source, e.g. [{ source = \"a\" }]"},
      {11, "pool[2].name: duplicate pool \"default\" (first defined at pool[0])"},
      {12, "pool[2].sources[0].source: required key is missing"},
      {15, "tenant[0].pool: no [[pool]] named \"nope\" is defined (defined: default, empty)"},
      {16, "tenant[0].weight: must be between 1 and 1000, got 1001"},
      {18, "tenant[1].name: duplicate tenant \"t\" (first defined at tenant[0])"},
      {20, "smtp_in.tls: no [tls.x] table is defined (no TLS profiles are defined)"},
      {24, "smtp_in.users[0].tenant: no [[tenant]] named \"shop\" is defined (defined: t)"},
  };
  EXPECT_EQ(got, want) << Dump(errors);
}

TEST(ShapingConfigTest, SiteLimitsAndSourceOverrides) {
  Config config = Parsed(
      "[delivery]\nmax_connections_per_source = 4\nmax_recipients_per_message = 0\n"
      "max_message_rate_per_source = \"10000/h\"\nmax_connection_rate_per_source = \"5/s\"\n"
      "[[source]]\nname = \"a\"\naddress = \"127.0.0.50\"\n"
      "[[site]]\nname = \"docomo\"\nmx_patterns = [\"*.docomo.ne.jp\"]\n"
      "max_connections_per_source = 3\nmax_recipients_per_message = 100\n"
      "max_message_rate_per_source = \"300/min\"\nmax_connection_rate_per_source = \"60/minute\"\n"
      "[[site.source]]\nsource = \"a\"\nmax_connections_per_source = 1\n"
      "max_messages_per_connection = 10\nmax_recipients_per_message = 5\n"
      "max_message_rate_per_source = \"200000/d\"\nmax_connection_rate_per_source = \"1/sec\"\n");
  EXPECT_EQ(config.delivery.max_connections_per_source, 4u);
  EXPECT_FALSE(config.delivery.max_recipients_per_message.has_value());  // 0: not limited
  EXPECT_EQ(config.delivery.max_message_rate_per_source, (Rate{10000, hours(1)}));
  EXPECT_EQ(config.delivery.max_connection_rate_per_source, (Rate{5, seconds(1)}));
  const SiteConfig& site = config.sites.at(0);
  EXPECT_EQ(site.max_connections_per_source, 3u);
  EXPECT_EQ(site.max_recipients_per_message, 100u);
  EXPECT_EQ(site.max_message_rate_per_source, (Rate{300, minutes(1)}));
  EXPECT_DOUBLE_EQ(site.max_message_rate_per_source->PerSecond(), 5.0);
  EXPECT_EQ(site.max_connection_rate_per_source, (Rate{60, minutes(1)}));
  ASSERT_EQ(site.sources.size(), 1u);
  EXPECT_EQ(site.sources[0].source, "a");
  EXPECT_EQ(site.sources[0].max_connections_per_source, 1u);
  EXPECT_EQ(site.sources[0].max_messages_per_connection, 10u);
  EXPECT_EQ(site.sources[0].max_recipients_per_message, 5u);
  EXPECT_EQ(site.sources[0].max_message_rate_per_source, (Rate{200000, hours(24)}));
  EXPECT_EQ(site.sources[0].max_connection_rate_per_source, (Rate{1, seconds(1)}));
  Config defaults = Parsed("");
  EXPECT_FALSE(defaults.delivery.max_connections_per_source.has_value());
  EXPECT_FALSE(defaults.delivery.max_message_rate_per_source.has_value());
}

TEST(ShapingConfigTest, SiteLimitErrors) {
  std::string text =
      "[delivery]\nmax_message_rate_per_source = \"300/mn\"\n"             // 1-2
      "max_connections_per_source = -1\n"                                  // 3
      "[[site]]\nname = \"s\"\nmx_patterns = [\"mx.s.example\"]\n"         // 4-6
      "max_connections_per_source = 0\n"                                   // 7
      "max_connection_rate_per_source = 60\n"                              // 8
      "max_message_rate_per_source = \"0/s\"\n"                            // 9
      "[[site.source]]\nsource = \"nope\"\n"                               // 10-11
      "[[site.source]]\nsource = \"default\"\nmax_recipients_per_message = 0\n"  // 12-14
      "[[site.source]]\nsource = \"default\"\n"                            // 15-16
      "[[site.source]]\nmax_connections_per_source = 2\n";                 // 17-18
  ConfigErrors errors = ErrorsOf(text);
  std::vector<std::string> got;
  for (const ConfigError& e : errors) got.push_back(e.ToString());
  std::vector<std::string> want = {
      "test.toml:2:31: delivery.max_message_rate_per_source: \"300/mn\" is not a rate: unknown "
      "unit \"mn\" (use s, sec, min, minute, h, hour, d or day)",
      "test.toml:3:30: delivery.max_connections_per_source: must be between 0 and 10000, got -1",
      "test.toml:7:30: site[0].max_connections_per_source: must be between 1 and 10000, got 0",
      "test.toml:8:34: site[0].max_connection_rate_per_source: expected a rate such as "
      "\"300/min\", got an integer",
      "test.toml:9:31: site[0].max_message_rate_per_source: \"0/s\" is not a rate: the count "
      "must be at least 1 (leave the key out for no limit)",
      "test.toml:11:10: site[0].source[0].source: no [[source]] named \"nope\" is defined "
      "(defined: default)",
      "test.toml:14:30: site[0].source[1].max_recipients_per_message: must be between 1 and "
      "100000, got 0",
      "test.toml:16:10: site[0].source[2].source: duplicate override for source \"default\" "
      "(first defined at site[0].source[1])",
      "test.toml:17:1: site[0].source[3].source: required key is missing",
  };
  EXPECT_EQ(got, want) << Dump(errors);
}

TEST(ShapingConfigTest, ReplyRulesKeepTheirOrder) {
  Config config = Parsed(
      "[[site]]\nname = \"gmail\"\nmx_patterns = [\"*.google.com\"]\n"
      "[[reply_rule]]\ncode = 421\nenhanced = \"4.7.28\"\nsite = \"gmail\"\naction = \"throttle\"\n"
      "duration = \"10m\"\n"
      "[[reply_rule]]\nenhanced = \"4.7.\"\nmatch = \"rate limit(ed)?\"\naction = \"pause\"\n"
      "[[reply_rule]]\ncode = 550\naction = \"bounce\"\n"
      "[[reply_rule]]\nmatch = \"greylist\"\naction = \"defer\"\n"
      "[[reply_rule]]\ncode = 451\naction = \"ignore\"\n");
  ASSERT_EQ(config.reply_rules.size(), 5u);
  const ReplyRule& first = config.reply_rules[0];
  EXPECT_EQ(first.code, 421);
  EXPECT_EQ(first.enhanced, "4.7.28");
  EXPECT_EQ(first.site, "gmail");
  EXPECT_EQ(first.action, ReplyAction::kThrottle);
  EXPECT_EQ(first.duration, minutes(10));
  EXPECT_EQ(first.origin, "test.toml:4");
  EXPECT_FALSE(config.reply_rules[1].code.has_value());
  EXPECT_EQ(config.reply_rules[1].match, "rate limit(ed)?");
  EXPECT_EQ(config.reply_rules[1].action, ReplyAction::kPause);
  EXPECT_FALSE(config.reply_rules[1].duration.has_value());
  EXPECT_EQ(config.reply_rules[2].action, ReplyAction::kBounce);
  EXPECT_EQ(config.reply_rules[3].action, ReplyAction::kDefer);
  EXPECT_EQ(config.reply_rules[4].action, ReplyAction::kIgnore);
}

TEST(ShapingConfigTest, ReplyRuleErrors) {
  std::string text =
      "[[reply_rule]]\naction = \"throttle\"\n"                            // 1-2
      "[[reply_rule]]\ncode = 250\naction = \"defer\"\n"                   // 3-5
      "[[reply_rule]]\nenhanced = \"4.7\"\naction = \"defer\"\n"           // 6-8
      "[[reply_rule]]\nmatch = \"rate (limit\"\naction = \"defer\"\n"      // 9-11
      "[[reply_rule]]\ncode = 450\nenhanced = \"5.7.1\"\naction = \"slow\"\n"  // 12-15
      "[[reply_rule]]\ncode = 550\naction = \"bounce\"\nduration = \"1h\"\n"   // 16-19
      "[[reply_rule]]\ncode = 421\nsite = \"nowhere\"\n"                   // 20-22
      "[[reply_rule]]\ncode = 421\naction = \"pause\"\nduration = \"10d\"\n";  // 23-26
  ConfigErrors errors = ErrorsOf(text);
  ASSERT_EQ(errors.size(), 10u) << Dump(errors);
  auto at = [&](size_t i) { return std::to_string(errors[i].line) + ":" + std::to_string(errors[i].column) + " " + errors[i].key + ": " + errors[i].message; };
  EXPECT_EQ(at(0),
            "1:1 reply_rule[0]: needs at least one of code, enhanced or match (a rule matching "
            "every reply would decide them all)");
  EXPECT_EQ(at(1), "4:8 reply_rule[1].code: must be between 400 and 599, got 250");
  EXPECT_EQ(at(2),
            "7:12 reply_rule[2].enhanced: \"4.7\" is not an enhanced status code or prefix: write "
            "the whole code, e.g. \"4.7.28\", or a prefix ending in '.', e.g. \"4.7.\"");
  EXPECT_THAT(at(3), ::testing::StartsWith(
                         "10:9 reply_rule[3].match: invalid regular expression \"rate (limit\": "));
  EXPECT_EQ(at(4),
            "14:12 reply_rule[4].enhanced: class 5 contradicts code 450 (RFC 3463 3.1: both give "
            "the same class)");
  EXPECT_EQ(at(5),
            "15:10 reply_rule[4].action: must be \"throttle\", \"pause\", \"bounce\", \"defer\" or "
            "\"ignore\", got \"slow\"");
  EXPECT_EQ(at(6), "19:12 reply_rule[5].duration: only a \"pause\" or \"throttle\" rule takes a duration");
  EXPECT_EQ(at(7), "20:1 reply_rule[6].action: required key is missing");
  EXPECT_EQ(at(8), "22:8 reply_rule[6].site: no [[site]] named \"nowhere\" is defined (no sites are defined)");
  EXPECT_EQ(at(9), "26:12 reply_rule[7].duration: must be between 1s and 7d, got 10d");
}

TEST(ShapingConfigTest, WarmupSchedulesAreChecked) {
  Config config = Parsed(
      "[[site]]\nname = \"docomo\"\nmx_patterns = [\"*.docomo.ne.jp\"]\n"
      "[[warmup]]\nname = \"w\"\ndays = [{ day = 1, per_hour = 10 }, { day = 2, per_day = 500 }]\n"
      "[[warmup.site]]\nsite = \"docomo\"\ndays = [{ day = 1, per_day = 50, per_hour = 5 }]\n");
  ASSERT_EQ(config.warmups.at(0).sites.size(), 1u);
  EXPECT_EQ(config.warmups[0].sites[0].site, "docomo");
  EXPECT_EQ(config.warmups[0].sites[0].days.at(0).per_day, 50u);
  std::string text =
      "[[warmup]]\nname = \"w\"\ndays = [{ day = 2, per_day = 5 }]\n"                   // 1-3
      "[[warmup]]\nname = \"x\"\ndays = [{ day = 1, per_day = 5 }, { day = 1, per_day = 9 }, "
      "{ day = 3 }, { day = 4, per_day = 10, per_hour = 11 }]\n"                       // 4-6
      "[[warmup]]\nname = \"w\"\ndays = []\n"                                           // 7-9
      "[[warmup]]\nname = \"y\"\ndays = [{ day = 1, per_day = 5 }]\n"                   // 10-12
      "[[warmup.site]]\nsite = \"gmail\"\ndays = [{ day = 1, per_day = 1 }]\n"          // 13-15
      "[[warmup.site]]\nsite = \"gmail\"\ndays = [{ day = 1, per_day = 1 }]\n"          // 16-18
      "[[warmup]]\ndays = [{ day = 0, per_day = 5 }]\n";                                // 19-20
  ConfigErrors errors = ErrorsOf(text);
  std::vector<std::pair<uint32_t, std::string>> got;
  for (const ConfigError& e : errors) got.emplace_back(e.line, e.key + ": " + e.message);
  std::vector<std::pair<uint32_t, std::string>> want = {
      {3, "warmup[0].days[0].day: the first step must be day 1 (the warmup_start date), got 2"},
      {6, "warmup[1].days[1].day: must be greater than the day before it (1), got 1"},
      {6, "warmup[1].days[2]: needs per_day, per_hour or both"},
      {6, "warmup[1].days[3].per_hour: must not exceed per_day (10), got 11"},
      {8, "warmup[2].name: duplicate warmup \"w\" (first defined at warmup[0])"},
      {9, "warmup[2].days: must list at least one day, e.g. [{ day = 1, per_day = 200 }]"},
      {14, "warmup[3].site[0].site: no [[site]] named \"gmail\" is defined (no sites are defined)"},
      {17, "warmup[3].site[1].site: duplicate schedule for site \"gmail\" (first defined at "
           "warmup[3].site[0])"},
      {17, "warmup[3].site[1].site: no [[site]] named \"gmail\" is defined (no sites are defined)"},
      {19, "warmup[4].name: required key is missing"},
      {20, "warmup[4].days[0].day: must be between 1 and 3650, got 0"},
  };
  EXPECT_EQ(got, want) << Dump(errors);
}

// ---- provider file

TEST(ProvidersTest, ShippedProviderFileLoadsAndMerges) {
  TempDir dir;
  std::filesystem::path providers =
      std::filesystem::path(HIKYAKU_SOURCE_DIR) / "etc" / "providers.toml";
  auto file = dir.Write("hikyaku.toml", "providers = \"" + providers.string() + "\"\n");
  auto config = LoadConfig(file);
  ASSERT_TRUE(config.has_value()) << Dump(config.error());
  EXPECT_EQ(config->providers, providers);
  std::vector<std::string> names;
  for (const SiteConfig& site : config->sites) names.push_back(site.name);
  EXPECT_EQ(names, (std::vector<std::string>{"docomo", "au", "softbank", "yahoo_jp", "gmail",
                                             "yahoo", "microsoft", "icloud"}));
  for (const SiteConfig& site : config->sites) {
    EXPECT_FALSE(site.mx_patterns.empty()) << site.name;
    EXPECT_TRUE(site.max_connections_per_source.has_value()) << site.name;
    EXPECT_TRUE(site.max_message_rate_per_source.has_value()) << site.name;
  }
  EXPECT_EQ(config->sites[0].max_recipients_per_message, 100u);  // docomo's published figure
  EXPECT_GE(config->reply_rules.size(), 10u);
  for (const ReplyRule& rule : config->reply_rules) {
    EXPECT_THAT(rule.origin, HasSubstr("providers.toml:"));
  }
  std::vector<std::string> warmups;
  for (const WarmupConfig& w : config->warmups) warmups.push_back(w.name);
  EXPECT_EQ(warmups, (std::vector<std::string>{"fast", "conservative"}));
}

TEST(ProvidersTest, ShippedConfigWithItsCommentedProviderLineLoads) {
  // etc/hikyaku.toml names providers.toml in a comment; uncommented, the
  // pair next to each other loads (the path is relative to hikyaku.toml).
  std::filesystem::path etc = std::filesystem::path(HIKYAKU_SOURCE_DIR) / "etc";
  std::ifstream in(etc / "hikyaku.toml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string commented = "# providers = \"providers.toml\"";
  size_t at = text.find(commented);
  ASSERT_NE(at, std::string::npos) << "etc/hikyaku.toml no longer mentions providers.toml";
  text.replace(at, commented.size(), "providers = \"providers.toml\"");
  // ParseConfig resolves against the directory of the file name it is given.
  auto config = ParseConfig(text, (etc / "hikyaku.toml").string());
  ASSERT_TRUE(config.has_value()) << Dump(config.error());
  EXPECT_EQ(config->providers, etc / "providers.toml");
  EXPECT_EQ(config->sites.size(), 8u);
}

TEST(ProvidersTest, OperatorOverridesProviderKeyByKey) {
  TempDir dir;
  dir.Write("p.toml",
            "[[site]]\nname = \"carrier\"\nmx_patterns = [\"*.carrier.example\"]\n"
            "max_connections_per_source = 3\nmax_message_rate_per_source = \"300/min\"\n"
            "[[site]]\nname = \"other\"\nmx_patterns = [\"*.other.example\"]\n"
            "[[reply_rule]]\ncode = 421\nsite = \"carrier\"\naction = \"throttle\"\n"
            "[[warmup]]\nname = \"slow\"\ndays = [{ day = 1, per_day = 10 }]\n"
            "[[warmup]]\nname = \"fast\"\ndays = [{ day = 1, per_day = 1000 }]\n");
  auto file = dir.Write(
      "main.toml",
      "providers = \"p.toml\"\n"
      "[[site]]\nname = \"mine\"\nmx_patterns = [\"mx.mine.example\"]\n"
      "[[site]]\nname = \"carrier\"\nmax_connections_per_source = 1\n"
      "[[reply_rule]]\ncode = 450\nsite = \"carrier\"\naction = \"pause\"\n"
      "[[warmup]]\nname = \"slow\"\ndays = [{ day = 1, per_day = 5 }]\n");
  auto config = LoadConfig(file);
  ASSERT_TRUE(config.has_value()) << Dump(config.error());
  EXPECT_EQ(config->providers, dir.path() / "p.toml");  // relative to main.toml's directory
  ASSERT_EQ(config->sites.size(), 3u);
  EXPECT_EQ(config->sites[0].name, "mine");
  const SiteConfig& carrier = config->sites[1];
  EXPECT_EQ(carrier.name, "carrier");
  EXPECT_EQ(carrier.mx_patterns, std::vector<std::string>{"*.carrier.example"});  // provider's
  EXPECT_EQ(carrier.max_connections_per_source, 1u);                              // operator's
  EXPECT_EQ(carrier.max_message_rate_per_source, (Rate{300, minutes(1)}));        // provider's
  EXPECT_EQ(config->sites[2].name, "other");
  ASSERT_EQ(config->reply_rules.size(), 2u);
  EXPECT_EQ(config->reply_rules[0].code, 450);  // the operator's rule first
  EXPECT_EQ(config->reply_rules[0].origin, file.string() + ":8");
  EXPECT_EQ(config->reply_rules[1].code, 421);
  EXPECT_EQ(config->reply_rules[1].origin, (dir.path() / "p.toml").string() + ":9");
  ASSERT_EQ(config->warmups.size(), 2u);
  EXPECT_EQ(config->warmups[0].name, "slow");
  EXPECT_EQ(config->warmups[0].days.at(0).per_day, 5u);  // replaced, not merged
  EXPECT_EQ(config->warmups[1].name, "fast");
  // Replacing mx_patterns, and a pattern the provider gives another site.
  auto replaced = dir.Write("replace.toml",
                            "providers = \"p.toml\"\n"
                            "[[site]]\nname = \"carrier\"\nmx_patterns = [\"mx.new.example\"]\n");
  auto merged = LoadConfig(replaced);
  ASSERT_TRUE(merged.has_value()) << Dump(merged.error());
  EXPECT_EQ(merged->sites.at(0).mx_patterns, std::vector<std::string>{"mx.new.example"});
  auto clash = dir.Write("clash.toml",
                         "providers = \"p.toml\"\n"
                         "[[site]]\nname = \"mine\"\nmx_patterns = [\"*.Carrier.example\"]\n");
  auto clashed = LoadConfig(clash);
  ASSERT_FALSE(clashed.has_value());
  ASSERT_EQ(clashed.error().size(), 1u) << Dump(clashed.error());
  EXPECT_EQ(clashed.error()[0].ToString(),
            clash.string() +
                ":4:16: site[0].mx_patterns[0]: pattern \"*.carrier.example\" already belongs to "
                "site \"carrier\" of " +
                (dir.path() / "p.toml").string() + "; name this site \"carrier\" to override it");
}

TEST(ProvidersTest, ProviderFileErrorsNameTheProviderFile) {
  TempDir dir;
  const std::string p = (dir.path() / "p.toml").string();
  dir.Write("p.toml",
            "[[site]]\nname = \"s\"\nmx_patterns = [\"*.s.example\"]\nmax_connections_per_source = 0\n"
            "[[site.source]]\nsource = \"default\"\n"
            "[[source]]\nname = \"a\"\n"
            "[[reply_rule]]\ncode = 421\nsite = \"t\"\naction = \"throttle\"\n");
  auto file = dir.Write("main.toml", "[smtp_in]\nmax_errors = 0\nproviders = 1\n");
  auto bad_main = LoadConfig(file);
  ASSERT_FALSE(bad_main.has_value());
  ASSERT_EQ(bad_main.error().size(), 2u) << Dump(bad_main.error());
  EXPECT_EQ(bad_main.error()[1].key, "smtp_in.providers");  // providers is a root key

  file = dir.Write("main.toml", "providers = \"p.toml\"\n[smtp_in]\nmax_errors = 0\n");
  auto config = LoadConfig(file);
  ASSERT_FALSE(config.has_value());
  std::vector<std::string> got;
  for (const ConfigError& e : config.error()) got.push_back(e.ToString());
  std::vector<std::string> want = {
      file.string() + ":3:14: smtp_in.max_errors: must be between 1 and 1000, got 0",
      p + ":4:30: site[0].max_connections_per_source: must be between 1 and 10000, got 0",
      p + ":5:1: site[0].source: per-source overrides belong in the operator's file: a "
          "provider file does not know this installation's sources",
      p + ":7:3: source: unknown key (expected one of: site, reply_rule, warmup)",
      p + ":11:8: reply_rule[0].site: no [[site]] named \"t\" is defined (defined: s)",
  };
  EXPECT_EQ(got, want) << Dump(config.error());

  dir.Write("syntax.toml", "[[site]]\nname = \"s\"\nname = \"t\"\n");
  file = dir.Write("main.toml", "providers = \"syntax.toml\"\n");
  config = LoadConfig(file);
  ASSERT_FALSE(config.has_value());
  ASSERT_EQ(config.error().size(), 1u) << Dump(config.error());
  EXPECT_EQ(config.error()[0].file, (dir.path() / "syntax.toml").string());
  EXPECT_EQ(config.error()[0].line, 3u);
  EXPECT_THAT(config.error()[0].message, ::testing::StartsWith("syntax error: "));

  file = dir.Write("main.toml", "providers = \"missing.toml\"\n");
  config = LoadConfig(file);
  ASSERT_FALSE(config.has_value());
  ASSERT_EQ(config.error().size(), 1u);
  EXPECT_EQ(config.error()[0].ToString(),
            file.string() + ":1:13: providers: cannot read \"" +
                (dir.path() / "missing.toml").string() + "\": No such file or directory");
}

TEST(ProvidersTest, ProviderSitesNeedPatternsUnlessTheOperatorRoutesToThem) {
  TempDir dir;
  const std::string p = (dir.path() / "p.toml").string();
  dir.Write("p.toml", "[[site]]\nname = \"relay\"\nmax_connections = 2\n");
  auto file = dir.Write("main.toml", "providers = \"p.toml\"\n");
  auto lonely = LoadConfig(file);
  ASSERT_FALSE(lonely.has_value());
  ASSERT_EQ(lonely.error().size(), 1u) << Dump(lonely.error());
  EXPECT_EQ(lonely.error()[0].ToString(),
            p + ":1:1: site[0].mx_patterns: required key is missing: no [[route]] names site "
                "\"relay\", so only mx_patterns could bring mail to it");
  // A route of the operator's file may name a provider site.
  file = dir.Write("main.toml",
                   "providers = \"p.toml\"\n"
                   "[[route]]\ndomain = \"example.com\"\nto = \"relay.example\"\nsite = \"relay\"\n");
  auto routed = LoadConfig(file);
  ASSERT_TRUE(routed.has_value()) << Dump(routed.error());
  EXPECT_EQ(routed->sites.at(0).max_connections, 2u);
}

// ---- the schema

TEST(KnownKeysTest, ListsEveryAcceptedKeyOnce) {
  std::vector<std::string> keys = KnownKeys();
  std::set<std::string> unique(keys.begin(), keys.end());
  EXPECT_EQ(unique.size(), keys.size());
  for (const char* key : {"server.hostname",
                          "spool.path",
                          "spool.sync",
                          "spool.memtable_size",
                          "spool.commit_delay",
                          "spool.commit_group",
                          "smtp_in.listen",
                          "smtp_in.relay_networks",
                          "smtp_in.max_message_size",
                          "smtp_in.max_recipients",
                          "smtp_in.max_connections",
                          "smtp_in.max_errors",
                          "smtp_in.command_timeout",
                          "smtp_in.data_timeout",
                          "smtp_in.tls",
                          "smtp_in.users",
                          "smtp_in.users.name",
                          "smtp_in.users.password_hash",
                          "tls.NAME.certificate",
                          "tls.NAME.key",
                          "http.listen",
                          "http.max_body_size",
                          "events.path",
                          "delivery.max_connections_per_site",
                          "delivery.retry_share",
                          "delivery.hold",
                          "delivery.max_connections",
                          "delivery.max_messages_per_connection",
                          "delivery.max_recipients_per_transaction",
                          "delivery.idle_timeout",
                          "delivery.connect_timeout",
                          "delivery.banner_timeout",
                          "delivery.ehlo_timeout",
                          "delivery.mail_timeout",
                          "delivery.rcpt_timeout",
                          "delivery.data_timeout",
                          "delivery.data_end_timeout",
                          "delivery.source_address",
                          "delivery.helo_name",
                          "delivery.starttls",
                          "delivery.host_down_initial",
                          "delivery.host_down_max",
                          "retry.initial",
                          "retry.max",
                          "retry.max_age",
                          "retry.jitter",
                          "retry.reactivation_rate",
                          "dns.servers",
                          "dns.timeout",
                          "dns.attempts",
                          "dns.negative_ttl",
                          "dns.max_ttl",
                          "route.domain",
                          "route.to",
                          "route.site",
                          "site.name",
                          "site.mx_patterns",
                          "site.max_connections",
                          "site.max_messages_per_connection",
                          "site.max_connections_per_source",
                          "site.max_message_rate_per_source",
                          "site.source.source",
                          "site.source.max_connection_rate_per_source",
                          "smtp_in.users.tenant",
                          "delivery.pool",
                          "delivery.max_recipients_per_message",
                          "providers",
                          "source.name",
                          "source.address",
                          "source.helo_name",
                          "source.warmup",
                          "source.warmup_start",
                          "pool.sources.source",
                          "pool.sources.weight",
                          "tenant.pool",
                          "tenant.weight",
                          "reply_rule.code",
                          "reply_rule.enhanced",
                          "reply_rule.match",
                          "reply_rule.site",
                          "reply_rule.action",
                          "reply_rule.duration",
                          "warmup.days.day",
                          "warmup.days.per_day",
                          "warmup.days.per_hour",
                          "warmup.site.site",
                          "warmup.site.days.per_hour"}) {
    EXPECT_TRUE(unique.count(key)) << key;
  }
  EXPECT_EQ(keys.size(), 106u);
}

}  // namespace
}  // namespace hikyaku::config
