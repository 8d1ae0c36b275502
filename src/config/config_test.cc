#include "config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>

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

// A directory with a certificate and key file, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "hikyaku_config_XXXXXX";
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::filesystem::path Write(const std::string& name, const std::string& contents) {
    std::filesystem::path file = path_ / name;
    std::ofstream(file) << contents;
    return file;
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

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
                 "expected one of: server, spool, smtp_in, tls, http, events");
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
      "test.toml:9:1: spool.colour: unknown key (expected one of: path, sync, memtable_size)");
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
                          "events.path"}) {
    EXPECT_TRUE(unique.count(key)) << key;
  }
  EXPECT_EQ(keys.size(), 21u);
}

}  // namespace
}  // namespace hikyaku::config
