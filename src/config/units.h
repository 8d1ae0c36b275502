// Units in configuration values: durations ("250ms", "30s", "5m", "4h",
// "3d", or a sum such as "1h30m") and sizes ("100B", "512KB", "25MB", "1GB",
// or a plain integer byte count). Sizes are binary: 1KB = 1024 bytes,
// 1MB = 1024*1024, 1GB = 1024^3, 1TB = 1024^4; "KiB"/"MiB"/"GiB"/"TiB" are
// accepted as the same values. Spelling is exact: "25mb" and "25 MB" are
// errors, so a typo cannot change a value by a factor of 1000.
//
// Rates ("300/min", "5/s", "10000/h", "200000/d"; also /sec, /minute,
// /hour, /day): a whole count of at least 1, a slash, a unit, no spaces.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/clock.h"
#include "base/error.h"
#include "config/config.h"

namespace hikyaku::config {

// kInvalidArgument with a message naming what is wrong, on failure.
Result<Duration> ParseDuration(std::string_view text);
Result<uint64_t> ParseSize(std::string_view text);

// The shortest exact spelling in the same syntax: FormatSize(25 << 20) is
// "25MB", FormatDuration(90s) is "1m30s". ParseX(FormatX(v)) == v.
std::string FormatSize(uint64_t bytes);
std::string FormatDuration(Duration duration);

// kInvalidArgument naming the bad part (count, unit, or the missing '/').
Result<Rate> ParseRate(std::string_view text);
// "300/min": the count and the unit spelled short (s, min, h, d).
std::string FormatRate(const Rate& rate);

}  // namespace hikyaku::config
