// The delivery side's view of the configuration's traffic shaping: the
// shaper's tables (sources, pools, per-(site, source) limits, warm-up
// schedules), the reply rules and the sources' bind addresses. Built from
// one configuration snapshot; a reload builds them again and the
// dispatcher applies them on its own thread.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"
#include "delivery/outcome.h"
#include "shaping/shaper.h"

namespace hikyaku::delivery {

shaping::ShaperConfig ShaperConfigFrom(const config::Config& config);
// Fails only on a regex the configuration check let through (it compiles
// every rule's regex, so in practice never).
ReplyRules ReplyRulesFrom(const config::Config& config);

}  // namespace hikyaku::delivery
