// The operator's shaping commands against a running daemon (its HTTP API
// on http.listen of the configuration named by -c):
//   hikyaku shaping [--json]                 effective limits per (source, site)
//   hikyaku suspend [--site S] [--source N] [--tenant T] [--for 1h] [--reason R]
//   hikyaku resume ID
//   hikyaku bounce (--site S | --tenant T) [--reason R]
//   hikyaku move-tenant TENANT POOL          e.g. into the quarantine pool
//   hikyaku reload                           re-read and apply the daemon's configuration
// Exit statuses: 0 done; 64 bad arguments or refused by the daemon (the
// problem's detail is printed); 75 the daemon cannot be reached; 78 reload:
// the configuration is invalid (every FILE:LINE:COL error printed; the
// daemon keeps running on its old configuration).
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace hikyaku::app {

// Adds the commands to `app`; when one is selected, parsing sets `run`.
void AddShapingCommands(CLI::App& app, std::function<int()>& run);

}  // namespace hikyaku::app
