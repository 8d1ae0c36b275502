// Daemon: `hikyaku serve` — opens the spool and the event log, recovers the
// queue, starts the listeners, and runs until SIGTERM/SIGINT.
//
// Start-up is all or nothing: any failure (spool cannot open, a port cannot
// be bound, a certificate cannot load) is reported and the process exits
// non-zero before it answers anyone — never half-alive.
//
// Shutdown: stop accepting, let in-flight spool commits complete (so every
// client that was promised a reply gets one), close the spool, flush events.
#pragma once

#include "config/config.h"

namespace hikyaku::app {

// Exit statuses (sysexits(3)).
inline constexpr int kExitOk = 0;
inline constexpr int kExitOsErr = 71;    // a listener could not bind
inline constexpr int kExitIoErr = 74;    // spool or event log could not open
inline constexpr int kExitConfig = 78;   // configuration invalid

int RunDaemon(const config::Config& config);

}  // namespace hikyaku::app
