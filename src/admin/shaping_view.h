// The operator's view of traffic shaping as JSON (GET /api/v1/shaping,
// `hikyaku shaping`): per (source, site) the configured maxima, the
// effective (learned) limits, the current rate, the last throttling reply
// and the reason of the last change; per source its warm-up progress; the
// active suspensions; tenants and their pools.
//
// Thread-safety: a pure function of its argument.
#pragma once

#include <nlohmann/json.hpp>

#include "delivery/dispatcher.h"

namespace hikyaku::admin {

nlohmann::json ShapingJson(const delivery::ShapingSnapshot& snapshot);

}  // namespace hikyaku::admin
