// hikyaku: one binary, subcommands. main() turns flags into wiring; the work
// is done by the modules (see docs/architecture in README.md).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "app/daemon.h"
#include "app/demo.h"
#include "app/queues_command.h"
#include "app/shaping_commands.h"
#include "app/spool_commands.h"
#include "auth/password.h"
#include "config/config.h"
#include "inject/sendmail.h"
#include "sink/sink.h"

namespace {

using hikyaku::app::kExitConfig;

#ifndef HIKYAKU_VERSION
#define HIKYAKU_VERSION "0.0.0"
#endif

// Loads the configuration or prints every problem as FILE:LINE:COL: key: message.
std::optional<hikyaku::config::Config> Load(const std::string& path) {
  auto config = hikyaku::config::LoadConfig(path);
  if (!config) {
    for (const auto& e : config.error()) std::cerr << e.ToString() << "\n";
    std::cerr << "hikyaku: " << config.error().size() << " configuration error"
              << (config.error().size() == 1 ? "" : "s") << " in " << path << "\n";
    return std::nullopt;
  }
  return std::move(*config);
}

// sendmail's own flags (-t, -oi, -fADDR...) do not fit a generic option
// parser, so `hikyaku sendmail ...` (or a binary named "sendmail") is routed
// here before CLI11 sees the arguments.
int SendmailMain(const std::vector<std::string>& args) {
  auto parsed = hikyaku::inject::ParseSendmailArgs(args);
  if (auto* usage = std::get_if<hikyaku::inject::SendmailUsageError>(&parsed)) {
    std::cerr << "hikyaku sendmail: " << usage->message << "\n";
    return hikyaku::inject::kExUsage;
  }
  auto& a = std::get<hikyaku::inject::SendmailArgs>(parsed);
  std::string path = a.config_path.value_or("");
  if (path.empty()) {
    if (const char* env = std::getenv("HIKYAKU_CONFIG")) path = env;
  }
  if (path.empty()) path = std::filesystem::exists("/etc/hikyaku/hikyaku.toml") ? "/etc/hikyaku/hikyaku.toml"
                                                                                 : "etc/hikyaku.toml";
  auto config = Load(path);
  if (!config) return hikyaku::inject::kExConfig;
  hikyaku::SystemClock clock;
  return hikyaku::inject::RunSendmail(a, *config, std::cin, std::cerr, clock);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::string self = std::filesystem::path(argv[0]).filename().string();
  if (self == "sendmail") return SendmailMain(args);
  if (!args.empty() && args[0] == "sendmail") return SendmailMain({args.begin() + 1, args.end()});

  CLI::App app{"hikyaku — bulk-mail delivery engine"};
  app.require_subcommand(1);

  std::string config_path = "etc/hikyaku.toml";
  auto* serve = app.add_subcommand("serve", "run the daemon");
  serve->add_option("-c,--config", config_path, "configuration file")->capture_default_str();

  auto* config_cmd = app.add_subcommand("config", "configuration tools");
  config_cmd->require_subcommand(1);
  auto* check = config_cmd->add_subcommand("check", "validate a configuration file and exit (78 when invalid)");
  check->add_option("-c,--config", config_path, "configuration file")->capture_default_str();

  app.add_subcommand("sendmail", "sendmail-compatible submission: hikyaku sendmail [-t] [-i] [-f from] [rcpt...]");

  auto* hash = app.add_subcommand("hash-password",
                                  "read a password on stdin, print the hash for smtp_in.users.password_hash");
  auto* version = app.add_subcommand("version", "print the version");

  bool queues_json = false;
  auto* queues = app.add_subcommand("queues", "show the delivery queues of the running daemon");
  queues->add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  queues->add_flag("--json", queues_json, "print the raw JSON of GET /api/v1/queues");

  auto* spool_cmd = app.add_subcommand("spool", "inspect the spool (daemon stopped)");
  spool_cmd->require_subcommand(1);
  auto* spool_list = spool_cmd->add_subcommand("list", "print one JSON line per pending recipient");
  spool_list->add_option("-c,--config", config_path, "configuration file")->capture_default_str();

  std::function<int()> sink_run;
  hikyaku::sink::AddSinkCommand(app, sink_run);
  std::function<int()> demo_run;
  hikyaku::app::AddDemoCommand(app, demo_run);
  std::function<int()> shaping_run;
  hikyaku::app::AddShapingCommands(app, shaping_run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : hikyaku::inject::kExUsage;
  }

  if (sink_run) return sink_run();
  if (demo_run) return demo_run();
  if (shaping_run) return shaping_run();
  if (*version) {
    std::cout << "hikyaku " << HIKYAKU_VERSION << "\n";
    return 0;
  }
  if (*hash) {
    std::string password;
    std::getline(std::cin, password);
    if (password.empty()) {
      std::cerr << "hikyaku hash-password: empty password on stdin\n";
      return hikyaku::inject::kExUsage;
    }
    auto hashed = hikyaku::auth::HashPassword(password);
    if (!hashed) {
      std::cerr << "hikyaku hash-password: " << hashed.error().ToString() << "\n";
      return hikyaku::inject::kExSoftware;
    }
    std::cout << *hashed << "\n";
    return 0;
  }
  if (*check) {
    auto config = Load(config_path);
    if (!config) return kExitConfig;
    std::cout << config_path << ": ok\n";
    return 0;
  }
  if (*queues) {
    auto config = Load(config_path);
    if (!config) return kExitConfig;
    return hikyaku::app::ShowQueues(*config, queues_json, std::cout, std::cerr);
  }
  if (*spool_list) {
    auto config = Load(config_path);
    if (!config) return kExitConfig;
    return hikyaku::app::ListSpool(*config, std::cout, std::cerr);
  }
  if (*serve) {
    auto config = Load(config_path);
    if (!config) return kExitConfig;
    return hikyaku::app::RunDaemon(*config);
  }
  return 0;
}
