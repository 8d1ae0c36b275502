// The operator's counters as JSON (GET /api/v1/stats): intake, spool, SMTP
// listeners and delivery. Presentation only: the wiring (app/) copies each
// component's counters into these plain structs, so admin/ needs neither
// inject/ nor spool/.
//
// Thread-safety: a pure function of its argument.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "delivery/dispatcher.h"

namespace hikyaku::admin {

struct StatsInput {
  struct Intake {
    uint64_t accepted = 0;
    uint64_t failed = 0;   // the spool failed
    uint64_t refused = 0;  // unknown tenant or bad priority
  } intake;
  struct Spool {
    uint64_t appends = 0;
    uint64_t commit_groups = 0;
    uint64_t syncs = 0;
    uint64_t commit_micros = 0;
    bool crc32c_in_hardware = false;
    uint64_t journal_segments_created = 0;
    uint64_t journal_segments_reused = 0;
    uint64_t failed_appends = 0;
    uint64_t recovered_messages = 0;  // found by recovery at start-up
    uint64_t recovered_recipients = 0;
  } spool;
  struct Smtp {
    uint64_t connections_accepted = 0;
    uint64_t connections_refused = 0;
    uint64_t connections_open = 0;
  } smtp;
  delivery::DispatcherStats delivery;
};

// {"intake": {...}, "spool": {...}, "smtp": {...}, "delivery": {...}}
nlohmann::json StatsJson(const StatsInput& stats);

}  // namespace hikyaku::admin
