#include "app/daemon.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "admin/operator_api.h"
#include "admin/stats_json.h"
#include "delivery/dispatcher.h"
#include "dns/cares_resolver.h"
#include "dns/static_routes.h"
#include "events/event_log.h"
#include "inject/http_api.h"
#include "inject/intake.h"
#include "inject/smtp_listener.h"
#include "net/http_server.h"
#include "spool/spool.h"

namespace hikyaku::app {

namespace asio = boost::asio;

namespace {

// Thousands of concurrent SMTP clients need as many descriptors; the soft
// limit is usually 1024, the hard limit much higher.
void RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

std::string ToString(const asio::ip::tcp::endpoint& ep) {
  return ep.address().is_v6() ? "[" + ep.address().to_string() + "]:" + std::to_string(ep.port())
                              : ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

int RunDaemon(const config::Config& config) {
  RaiseDescriptorLimit();
  SystemClock clock;

  spool::SpoolOptions spool_options;
  spool_options.path = config.spool.path;
  spool_options.sync = config.spool.sync;
  spool_options.memtable_size = config.spool.memtable_size;
  spool_options.commit_delay = config.spool.commit_delay;
  spool_options.commit_group = config.spool.commit_group;
  auto spool = spool::OpenRocksDbSpool(spool_options);
  if (!spool) {
    std::cerr << "hikyaku: cannot open the spool at " << config.spool.path.string() << ": "
              << spool.error().ToString() << "\n";
    return kExitIoErr;
  }

  auto events = events::EventLog::Open(config.events.path);
  if (!events) {
    std::cerr << "hikyaku: cannot open the event log " << config.events.path.string() << ": "
              << events.error().ToString() << "\n";
    return kExitIoErr;
  }

  inject::Intake intake(**spool, **events, clock, config.server.hostname);
  auto tenant_names = [](const config::Config& c) {
    std::vector<std::string> names;
    for (const auto& t : c.tenants) names.push_back(t.name);
    return names;
  };
  intake.SetTenants(tenant_names(config));

  // The delivery side runs on its own thread: DNS, the scheduler and every
  // outbound connection live there.
  asio::io_context delivery_context(1);
  dns::CaresResolver cares(delivery_context, config.dns);
  if (auto started = cares.Start(); !started) {
    std::cerr << "hikyaku: dns: " << started.error().ToString() << "\n";
    return kExitConfig;
  }
  dns::Router router(delivery_context.get_executor(), cares, config.routes);
  delivery::Dispatcher dispatcher(delivery_context, config, **spool, **events, router, clock);

  // Recovery: every recipient not yet final is queued again.
  uint64_t recovered_recipients = 0, recovered_messages = 0;
  MessageId last;
  auto recovered = (*spool)->ForEachPending([&](const spool::RecipientRecord& r) {
    ++recovered_recipients;
    if (r.message != last) ++recovered_messages, last = r.message;
    dispatcher.Recover(r, r.tenant, r.priority);
  });
  if (!recovered) {
    std::cerr << "hikyaku: cannot read the spool at " << config.spool.path.string() << ": "
              << recovered.error().ToString() << "\n";
    return kExitIoErr;
  }
  intake.SetAcceptedListener([&dispatcher](inject::AcceptedMessage m) {
    dispatcher.Accept(m.id, m.received_at, std::move(m.recipients), std::move(m.tenant),
                      static_cast<uint8_t>(m.priority));
  });

  // One io_context per thread: a connection stays on one thread for its
  // whole life, so its state needs no locks. One core is left to the spool's
  // commit thread and the delivery thread: on two cores one injection
  // thread took 13 % less CPU per message than two (fewer sleeps and
  // wake-ups; docs/BENCHMARKS.md) and accepted as fast.
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const unsigned threads = std::clamp(cores - 1, 1u, 4u);
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::io_context*> context_ptrs;
  for (unsigned i = 0; i < threads; ++i) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    context_ptrs.push_back(contexts.back().get());
  }
  asio::io_context& home = *contexts.front();

  inject::SmtpListener smtp(context_ptrs, config.smtp_in, config.server.hostname, intake);
  if (auto started = smtp.Start(); !started) {
    std::cerr << "hikyaku: smtp_in: " << started.error().message() << "\n";
    return kExitOsErr;
  }

  // Reload (SIGHUP, POST /api/v1/reload): load the file the daemon was
  // started with, validate it whole, then hand each component its part on
  // its own thread. An invalid file changes nothing: every error is logged
  // (and returned to `hikyaku reload`). Applied: sources, pools, tenants,
  // sites, reply rules and warm-up (the dispatcher), the tenants mail may
  // name (intake). Listener addresses, smtp_in.users,
  // the spool, DNS and routes need a restart.
  std::mutex reload_mu;
  auto reload = [&]() -> std::vector<std::string> {
    std::lock_guard lock(reload_mu);
    auto next = config::LoadSnapshot(config.source);
    if (!next) {
      std::vector<std::string> errors;
      for (const auto& e : next.error()) {
        errors.push_back(e.ToString());
        spdlog::error("reload: {}", e.ToString());
      }
      spdlog::error("reload: {} error{} in {}; the running configuration is unchanged", errors.size(),
                    errors.size() == 1 ? "" : "s", config.source.string());
      std::string joined;
      for (const auto& e : errors) joined += (joined.empty() ? "" : "\n") + e;
      const std::string file = config.source.string();
      events::EventField extra[] = {{"ok", false}, {"file", file}, {"errors", joined}};
      (*events)->Write(events::Event{clock.Now(), "reload", MessageId(), "", "", extra});
      return errors;
    }
    // The dispatcher first: mail of a tenant the new file adds reaches it
    // after the new tenants (both go through its thread's queue in order).
    dispatcher.Apply(*next);
    intake.SetTenants(tenant_names(**next));
    spdlog::info("reload: {} applied", config.source.string());
    const std::string file = config.source.string();
    events::EventField extra[] = {{"ok", true}, {"file", file}};
    (*events)->Write(events::Event{clock.Now(), "reload", MessageId(), "", "", extra});
    return {};
  };
  // One HTTP server, two users: the message API (inject) and the
  // operator's endpoints (admin), each registering its routes.
  net::HttpServer http(home, {config.http.listen, config.http.max_body_size});
  inject::HttpApi http_api({config.smtp_in.max_message_size, config.smtp_in.max_recipients}, intake);
  http_api.Register(http);
  auto stats = [&]() -> admin::StatsInput {
    admin::StatsInput out;
    const auto in = intake.Stats();
    out.intake = {in.accepted, in.failed, in.refused};
    const auto sp = (*spool)->Stats();
    out.spool = {sp.appends,
                 sp.commit_groups,
                 sp.syncs,
                 sp.commit_micros,
                 sp.crc32c_in_hardware,
                 sp.journal_segments_created,
                 sp.journal_segments_reused,
                 sp.failed_appends,
                 recovered_messages,
                 recovered_recipients};
    const auto li = smtp.Stats();
    out.smtp = {li.connections_accepted, li.connections_refused, li.connections_open};
    out.delivery = dispatcher.Stats();
    return out;
  };
  admin::OperatorApi operator_api(admin::DispatcherControls(dispatcher, stats, reload));
  operator_api.Register(http);
  if (auto started = http.Start(); !started) {
    std::cerr << "hikyaku: http: " << started.error().message() << "\n";
    return kExitOsErr;
  }

  asio::signal_set hangup(home, SIGHUP);
  std::thread reloader;  // off the listener thread: loading reads files and compiles regexes
  std::function<void()> await_hangup = [&] {
    hangup.async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      spdlog::info("SIGHUP: reloading {}", config.source.string());
      if (reloader.joinable()) reloader.join();
      reloader = std::thread([&] { reload(); });
      await_hangup();
    });
  };
  await_hangup();

  // Graceful stop: refuse new connections at once, give open sessions a
  // moment to receive the replies to commits in flight, then stop.
  asio::signal_set signals(home, SIGINT, SIGTERM);
  asio::steady_timer grace(home);
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: stopping", signal);
    hangup.cancel();
    smtp.Stop();
    http.Stop();
    dispatcher.Stop();
    grace.expires_after(std::chrono::milliseconds(500));
    grace.async_wait([&](const boost::system::error_code&) {
      for (auto& c : contexts) c->stop();
    });
  });

  std::string ready = "hikyaku ready smtp=";
  for (const auto& ep : smtp.local_endpoints()) ready += ToString(ep) + ",";
  ready.pop_back();
  ready += " http=" + ToString(http.local_endpoint()) + " spool=" + config.spool.path.string() +
           " recovered_messages=" + std::to_string(recovered_messages) +
           " recovered_recipients=" + std::to_string(recovered_recipients);
  std::cout << ready << std::endl;
  spdlog::info("{}", ready);

  // Keep worker contexts alive while idle: they only get work from accepts.
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& c : contexts) guards.push_back(asio::make_work_guard(*c));
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; ++i) workers.emplace_back([&, i] { contexts[i]->run(); });
  dispatcher.Start();
  auto delivery_guard = asio::make_work_guard(delivery_context);
  std::thread delivery_thread([&] { delivery_context.run(); });
  home.run();
  for (auto& c : contexts) c->stop();
  for (auto& w : workers) w.join();
  if (reloader.joinable()) reloader.join();
  delivery_context.stop();
  delivery_thread.join();

  (*spool)->Close();
  (*events)->Flush();
  spdlog::info("stopped");
  return kExitOk;
}

}  // namespace hikyaku::app
