// The operator's view of the delivery queues as JSON (GET /api/v1/queues,
// `hikyaku queues`): sites with their lanes, connections, counters and
// hosts. Presentation only: the dispatcher produces the snapshot.
//
// Thread-safety: a pure function of its argument.
#pragma once

#include <nlohmann/json.hpp>

#include "delivery/dispatcher.h"

namespace hikyaku::admin {

nlohmann::json QueuesJson(const delivery::QueuesSnapshot& snapshot);

}  // namespace hikyaku::admin
