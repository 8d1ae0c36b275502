// `hikyaku spool list`: an operator's (and the tests') view of what the spool
// holds — one JSON line per pending recipient. Opens the spool directly, so
// the daemon must not be running (RocksDB holds a lock; the error says so).
#pragma once

#include <iosfwd>

#include "config/config.h"

namespace hikyaku::app {

int ListSpool(const config::Config& config, std::ostream& out, std::ostream& err);

}  // namespace hikyaku::app
