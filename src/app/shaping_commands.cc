#include "app/shaping_commands.h"

#include <iomanip>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "app/admin_client.h"
#include "app/daemon.h"

namespace hikyaku::app {

namespace {

constexpr int kExitUsage = 64;
constexpr int kExitTempFail = 75;

struct Args {
  std::string config_path = "etc/hikyaku.toml";
  bool json = false;
  std::string site, source, tenant, duration, reason, pool;
  uint64_t id = 0;
};

// Loads just enough of the configuration to find the daemon's API.
std::optional<config::Config> LoadFor(const std::string& command, const std::string& path) {
  auto config = config::LoadConfig(path);
  if (!config) {
    for (const auto& e : config.error()) std::cerr << e.ToString() << "\n";
    std::cerr << "hikyaku " << command << ": " << config.error().size() << " configuration error"
              << (config.error().size() == 1 ? "" : "s") << " in " << path << "\n";
    return std::nullopt;
  }
  return std::move(*config);
}

// Calls the daemon and reports its answer: 0 for 2xx, the exit status otherwise.
int Call(const std::string& command, const config::Config& config, const std::string& method,
         const std::string& target, const nlohmann::json& body, nlohmann::json* answer = nullptr) {
  std::string error;
  auto reply = CallDaemon(config.http.listen, method, target, body.is_null() ? "" : body.dump(), error);
  if (!reply) {
    std::cerr << "hikyaku " << command << ": cannot reach the daemon at " << config.http.listen.ToString() << ": "
              << error << "\n";
    return kExitTempFail;
  }
  auto doc = nlohmann::json::parse(reply->body, nullptr, false);
  if (reply->status / 100 != 2) {
    std::string detail = doc.is_object() ? doc.value("detail", doc.value("title", reply->body)) : reply->body;
    std::cerr << "hikyaku " << command << ": " << detail << " (HTTP " << reply->status << ")\n";
    if (doc.is_object() && doc.contains("errors"))
      for (const auto& e : doc["errors"]) std::cerr << e.get<std::string>() << "\n";
    return reply->status == 422 ? kExitConfig : kExitUsage;
  }
  if (answer) *answer = doc;
  return 0;
}

int ShowShaping(const Args& a) {
  auto config = LoadFor("shaping", a.config_path);
  if (!config) return kExitConfig;
  nlohmann::json doc;
  if (int rc = Call("shaping", *config, "GET", "/api/v1/shaping", nullptr, &doc)) return rc;
  if (a.json) {
    std::cout << doc.dump(2) << "\n";
    return 0;
  }
  std::cout << std::left << std::setw(12) << "SOURCE" << std::setw(24) << "SITE" << std::setw(10) << "STATE"
            << std::right << std::setw(7) << "CONNS" << std::setw(10) << "RATE/MIN" << std::setw(10) << "NOW/MIN"
            << "  LAST CHANGE\n";
  for (const auto& p : doc["pairs"]) {
    auto limit = [](const nlohmann::json& v) { return v.get<double>() == 0 ? std::string("-") : v.dump(); };
    std::string conns = std::to_string(p.value("connections", 0)) + "/" +
                        (p["max_connections"].get<int>() == 0 ? std::string("-") : p["max_connections"].dump());
    std::cout << std::left << std::setw(12) << p.value("source", "") << std::setw(24) << p.value("site", "")
              << std::setw(10) << p.value("state", "") << std::right << std::setw(7) << conns << std::setw(10)
              << limit(p["rate_per_minute"]) << std::setw(10) << p["current_rate_per_minute"].dump() << "  "
              << p.value("last_change_reason", "") << "\n";
  }
  for (const auto& s : doc["sources"]) {
    if (!s.contains("warmup")) continue;
    const auto& w = s["warmup"];
    std::cout << "warm-up " << s.value("name", "") << " (" << w.value("schedule", "") << ") day " << w.value("day", 0)
              << ": " << w.value("sent_today", 0) << "/" << w.value("cap_today", 0) << " today, "
              << w.value("sent_this_hour", 0) << "/" << w.value("cap_this_hour", 0) << " this hour"
              << (w.value("done", false) ? " (done)" : "") << "\n";
  }
  for (const auto& s : doc["suspensions"])
    std::cout << "suspension " << s.value("id", 0) << ": site '" << s.value("site", "") << "' source '"
              << s.value("source", "") << "' tenant '" << s.value("tenant", "") << "': " << s.value("reason", "")
              << "\n";
  for (const auto& t : doc["tenants"])
    std::cout << "tenant " << t.value("name", "") << " -> pool " << t.value("pool", "")
              << (t.value("moved", false) ? " (moved by an operator)" : "") << "\n";
  return 0;
}

}  // namespace

void AddShapingCommands(CLI::App& app, std::function<int()>& run) {
  auto a = std::make_shared<Args>();
  auto config_option = [&](CLI::App* cmd) {
    cmd->add_option("-c,--config", a->config_path, "configuration file")->capture_default_str();
  };

  auto* shaping = app.add_subcommand("shaping", "effective limits, rates and warm-up of the running daemon");
  config_option(shaping);
  shaping->add_flag("--json", a->json, "print the raw JSON of GET /api/v1/shaping");
  shaping->callback([a, &run] { run = [a] { return ShowShaping(*a); }; });

  auto* suspend = app.add_subcommand("suspend", "stop sending to a site, from a source, or for a tenant");
  config_option(suspend);
  suspend->add_option("--site", a->site, "site name");
  suspend->add_option("--source", a->source, "source name");
  suspend->add_option("--tenant", a->tenant, "tenant name");
  suspend->add_option("--for", a->duration, "how long, e.g. 30m (default: until resumed)");
  suspend->add_option("--reason", a->reason, "why, for the events and the operator view");
  suspend->callback([a, &run] {
    run = [a] {
      auto config = LoadFor("suspend", a->config_path);
      if (!config) return kExitConfig;
      nlohmann::json body = {{"site", a->site}, {"source", a->source}, {"tenant", a->tenant}, {"reason", a->reason}};
      if (!a->duration.empty()) body["duration"] = a->duration;
      nlohmann::json answer;
      if (int rc = Call("suspend", *config, "POST", "/api/v1/suspensions", body, &answer)) return rc;
      std::cout << answer.value("id", 0) << "\n";
      return 0;
    };
  });

  auto* resume = app.add_subcommand("resume", "end a suspension");
  config_option(resume);
  resume->add_option("id", a->id, "the suspension's id")->required();
  resume->callback([a, &run] {
    run = [a] {
      auto config = LoadFor("resume", a->config_path);
      if (!config) return kExitConfig;
      return Call("resume", *config, "DELETE", "/api/v1/suspensions/" + std::to_string(a->id), nullptr);
    };
  });

  auto* bounce = app.add_subcommand("bounce", "bounce what is queued for a site or a tenant");
  config_option(bounce);
  bounce->add_option("--site", a->site, "site name");
  bounce->add_option("--tenant", a->tenant, "tenant name");
  bounce->add_option("--reason", a->reason, "the bounce text");
  bounce->callback([a, &run] {
    run = [a] {
      auto config = LoadFor("bounce", a->config_path);
      if (!config) return kExitConfig;
      nlohmann::json answer;
      nlohmann::json body = {{"site", a->site}, {"tenant", a->tenant}, {"reason", a->reason}};
      if (int rc = Call("bounce", *config, "POST", "/api/v1/bounces", body, &answer)) return rc;
      std::cout << answer.value("bounced", 0) << " recipients bounced\n";
      return 0;
    };
  });

  auto* move = app.add_subcommand("move-tenant", "send a tenant's mail (queued too) from another pool");
  config_option(move);
  move->add_option("tenant", a->tenant, "tenant name")->required();
  move->add_option("pool", a->pool, "pool name, e.g. quarantine")->required();
  move->callback([a, &run] {
    run = [a] {
      auto config = LoadFor("move-tenant", a->config_path);
      if (!config) return kExitConfig;
      return Call("move-tenant", *config, "POST", "/api/v1/tenants/" + a->tenant, nlohmann::json{{"pool", a->pool}});
    };
  });

  auto* reload = app.add_subcommand("reload", "make the running daemon re-read its configuration (78 when invalid)");
  config_option(reload);
  reload->callback([a, &run] {
    run = [a] {
      // The file is checked here first, so its errors are printed even
      // when the daemon's copy is elsewhere; the daemon checks again.
      auto config = LoadFor("reload", a->config_path);
      if (!config) return kExitConfig;
      if (int rc = Call("reload", *config, "POST", "/api/v1/reload", nlohmann::json::object())) return rc;
      std::cout << "reloaded\n";
      return 0;
    };
  });
}

}  // namespace hikyaku::app
