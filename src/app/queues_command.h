// `hikyaku queues`: the operator's view of the delivery queues of a running
// daemon (GET /api/v1/queues on its http.listen address), as a table.
#pragma once

#include <iosfwd>

#include "config/config.h"

namespace hikyaku::app {

int ShowQueues(const config::Config& config, bool json, std::ostream& out, std::ostream& err);

}  // namespace hikyaku::app
