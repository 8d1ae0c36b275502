// The `hikyaku sink` command line: flags -> SinkOptions. Durations and sizes
// use the configuration file's spelling (config/units.h: "500ms", "1s",
// "25MB"), so an operator writes them the same way everywhere.
#include <CLI/CLI.hpp>

#include "config/net.h"
#include "config/units.h"
#include "sink/rules.h"
#include "sink/sink.h"

namespace hikyaku::sink {
namespace {

// As config::ParseDuration, plus a bare "0" for "off".
Result<Duration> ParseFlagDuration(const std::string& s) {
  if (s == "0") return Duration(0);
  return config::ParseDuration(s);
}

CLI::Validator DurationValidator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto d = ParseFlagDuration(s);
        return d ? std::string() : d.error().message();
      },
      "DURATION");
}

CLI::Validator SizeValidator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto v = config::ParseSize(s);
        return v ? std::string() : v.error().message();
      },
      "SIZE");
}

CLI::Validator EndpointValidator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto e = config::Endpoint::ParseOrError(s);
        return e ? std::string() : e.error().message();
      },
      "ADDR:PORT");
}

CLI::Validator RegexValidator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto r = UnknownUsers::Compile(s);
        return r ? std::string() : r.error().message();
      },
      "REGEX");
}

CLI::Validator ReplyValidator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        bool ok = s.size() >= 3 && (s[0] == '4' || s[0] == '5') &&
                  std::isdigit(static_cast<unsigned char>(s[1])) &&
                  std::isdigit(static_cast<unsigned char>(s[2])) && (s.size() == 3 || s[3] == ' ') &&
                  s.find_first_of("\r\n") == std::string::npos;
        return ok ? std::string() : "must be one 4xx or 5xx reply line, e.g. \"450 4.7.1 Slow down\"";
      },
      "REPLY");
}

// Flags whose values need converting after parsing.
struct RawFlags {
  std::string timeout = "60s";
  std::string max_message_size = "0";
  std::string stats_interval = "0s";
  std::string greylist = "0s";
  std::string banner_delay = "0s";
  std::string reply_delay = "0s";
  std::string tempfail_on = "rcpt";
};

}  // namespace

CLI::App* AddSinkCommand(CLI::App& app, std::function<int()>& run) {
  auto options = std::make_shared<SinkOptions>();
  auto raw = std::make_shared<RawFlags>();
  auto* cmd = app.add_subcommand(
      "sink",
      "SMTP receiver that counts and discards mail (tests, benchmarks, difficult-receiver simulation)");
  SinkOptions& o = *options;

  cmd->add_option("--listen", o.listen, "ADDR:PORT to listen on (repeatable; port 0 picks a free port)")
      ->check(EndpointValidator())
      ->capture_default_str();
  cmd->add_option("--hostname", o.hostname, "name in the greeting and EHLO reply")->capture_default_str();
  cmd->add_option("--threads", o.threads, "I/O threads (at most the number of cores)")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
  cmd->add_option("--timeout", raw->timeout, "close a connection idle this long")
      ->check(DurationValidator())
      ->capture_default_str();
  cmd->add_option("--max-message-size", raw->max_message_size, "larger messages get 552 5.3.4 (0 = no limit)")
      ->check(SizeValidator())
      ->capture_default_str();
  cmd->add_option("--max-recipients", o.max_recipients, "recipients per message; more get 452 4.5.3")
      ->check(CLI::Range(1u, 1000000u))
      ->capture_default_str();

  cmd->add_option("--jsonl", o.jsonl_path,
                  "append one JSON line per accepted recipient (ts, client, sender, recipient, size, "
                  "message_id, test)");
  cmd->add_option("--stats-file", o.stats_file, "write the counters as JSON to FILE every second");
  cmd->add_option("--stats-interval", raw->stats_interval,
                  "print a counters line on stderr this often (0 = never)")
      ->check(DurationValidator());
  cmd->add_option("--exit-after", o.exit_after, "exit once N messages were accepted (0 = never)");

  cmd->add_option("--max-connections-per-ip", o.max_connections_per_ip,
                  "more connections from one IP get 421 4.7.0 and are closed (0 = no limit)");
  cmd->add_option("--max-messages-per-connection", o.max_messages_per_connection,
                  "after N messages the next MAIL gets 421 4.7.0 and the connection closes (0 = no limit)");
  cmd->add_option("--rate-per-ip", o.rate_per_ip,
                  "MAIL commands per minute per client IP (token bucket, burst N); more get --rate-reply")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--rate-reply", o.rate_reply, "reply to a MAIL over the rate (a 421 reply also closes)")
      ->check(ReplyValidator())
      ->capture_default_str();
  cmd->add_option("--unknown-users", o.unknown_users,
                  "recipients whose local part or whole address matches REGEX entirely get 550 5.1.1")
      ->check(RegexValidator());
  cmd->add_option("--greylist", raw->greylist,
                  "refuse the first attempt of each (client IP, sender, recipient) with 450 4.7.1 and accept "
                  "retries after DURATION (0 = off)")
      ->check(DurationValidator());
  cmd->add_option("--tempfail-rate", o.tempfail_rate, "fraction (0..1) of recipients answered 451 4.3.0")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", o.seed, "seed of --tempfail-rate's choices")->capture_default_str();
  cmd->add_option("--tempfail-on", raw->tempfail_on, "where --tempfail-rate fails: rcpt or data")
      ->check(CLI::IsMember({"rcpt", "data"}))
      ->capture_default_str();
  cmd->add_option("--banner-delay", raw->banner_delay, "wait this long before the greeting")
      ->check(DurationValidator());
  cmd->add_option("--reply-delay", raw->reply_delay, "wait this long before each write of replies")
      ->check(DurationValidator());
  cmd->add_flag("--blackhole", o.blackhole, "accept TCP connections and never answer (a dead host)");

  cmd->callback([options, raw, &run] {
    // The validators above already accepted every value.
    SinkOptions& o = *options;
    o.timeout = *ParseFlagDuration(raw->timeout);
    o.max_message_size = *config::ParseSize(raw->max_message_size);
    o.stats_interval = *ParseFlagDuration(raw->stats_interval);
    o.greylist = *ParseFlagDuration(raw->greylist);
    o.banner_delay = *ParseFlagDuration(raw->banner_delay);
    o.reply_delay = *ParseFlagDuration(raw->reply_delay);
    o.tempfail_messages = raw->tempfail_on == "data";
    run = [options] { return RunSink(*options); };
  });
  return cmd;
}

}  // namespace hikyaku::sink
