// `hikyaku demo`: the first thing a newcomer runs. In a temporary directory
// it starts a receiving `hikyaku sink` and a `hikyaku serve` daemon on
// loopback (child processes of this same binary), injects test messages
// over several pipelining SMTP connections, shows delivery progress polled
// from GET /api/v1/stats, prints a summary, and stops both children.
//
// Nothing leaves 127.0.0.1: the daemon's configuration routes the only
// recipient domain, demo.test, to the sink with a [[route]].
//
// Threading: RunDemo runs on the calling thread; it starts one thread per
// SMTP connection while injecting and joins them before it returns. It
// installs SIGINT/SIGTERM handlers for its duration (an interrupted demo
// still stops its children).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

#include "base/clock.h"

namespace CLI {
class App;
}

namespace hikyaku::app {

struct DemoOptions {
  uint64_t messages = 1000;                     // one recipient each, user<i>@demo.test
  uint32_t connections = 8;                     // concurrent SMTP injection connections
  Duration timeout = std::chrono::seconds(120);  // whole run, start-up to last delivery
  bool keep = false;                            // keep the temporary directory (spool, events)
  std::string executable = "/proc/self/exe";    // the hikyaku binary started for sink and serve
};

// Exit statuses besides 0 (every message delivered).
inline constexpr int kDemoIncomplete = 1;     // some message was refused, bounced or never delivered
inline constexpr int kDemoSoftware = 70;      // EX_SOFTWARE: temporary directory, fork, pipes
inline constexpr int kDemoUnavailable = 69;   // EX_UNAVAILABLE: a child did not start or died
inline constexpr int kDemoTimeout = 75;       // EX_TEMPFAIL: --timeout ran out
inline constexpr int kDemoInterrupted = 130;  // SIGINT/SIGTERM

// Runs the demo. The summary goes to `out`; progress (a single updating
// line when `progress_is_tty`, else a plain line every second) and errors go
// to `err`. On failure the temporary directory is kept for inspection and
// its path is printed.
int RunDemo(const DemoOptions& options, std::ostream& out, std::ostream& err, bool progress_is_tty);

// Adds the "demo" subcommand to `app`. When the command line selects it,
// parsing sets `run` to a function that runs the demo on std::cout/std::cerr
// and returns the exit code.
CLI::App* AddDemoCommand(CLI::App& app, std::function<int()>& run);

}  // namespace hikyaku::app
