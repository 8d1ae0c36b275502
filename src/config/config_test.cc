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
                          "site.max_messages_per_connection"}) {
    EXPECT_TRUE(unique.count(key)) << key;
  }
  EXPECT_EQ(keys.size(), 59u);
}

}  // namespace
}  // namespace hikyaku::config
