#include "config/units.h"

#include <array>
#include <limits>

namespace hikyaku::config {
namespace {

struct Unit {
  std::string_view suffix;
  uint64_t factor;
};

// Longest suffixes first where one is a suffix of another ("ms" before "s").
constexpr std::array<Unit, 5> kDurationUnits{{
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
    {"d", 24 * 60 * 60 * 1000},
}};

constexpr std::array<Unit, 9> kSizeUnits{{
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
    {"KB", 1ull << 10},
    {"MB", 1ull << 20},
    {"GB", 1ull << 30},
    {"TB", 1ull << 40},
    {"B", 1},
}};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads the leading digits of `text` into `value`, advancing `text`.
// Returns false on no digits or on overflow.
bool TakeNumber(std::string_view& text, uint64_t& value) {
  size_t i = 0;
  value = 0;
  while (i < text.size() && IsDigit(text[i])) {
    uint64_t digit = static_cast<uint64_t>(text[i] - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) return false;
    value = value * 10 + digit;
    ++i;
  }
  if (i == 0) return false;
  text.remove_prefix(i);
  return true;
}

bool MultiplyOverflows(uint64_t a, uint64_t b) {
  return b != 0 && a > std::numeric_limits<uint64_t>::max() / b;
}

}  // namespace

Result<Duration> ParseDuration(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  if (text.empty()) {
    return Fail(ErrorCode::kInvalidArgument, "empty duration; write e.g. \"30s\" or \"5m\"");
  }
  // Duration is signed 64-bit milliseconds; stay well inside it.
  constexpr uint64_t kMaxMillis = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  uint64_t total = 0;
  std::string_view rest = text;
  while (!rest.empty()) {
    uint64_t number = 0;
    if (!TakeNumber(rest, number)) {
      return Fail(ErrorCode::kInvalidArgument,
                  quoted +
                      " is not a duration; write a whole number and a unit "
                      "(ms, s, m, h, d), e.g. \"30s\" or \"1h30m\"");
    }
    const Unit* unit = nullptr;
    for (const Unit& candidate : kDurationUnits) {
      if (rest.substr(0, candidate.suffix.size()) == candidate.suffix) {
        unit = &candidate;
        break;
      }
    }
    if (unit == nullptr) {
      return Fail(ErrorCode::kInvalidArgument,
                  quoted + " is not a duration: " +
                      (rest.empty() ? std::string("the number has no unit")
                                    : "unknown unit \"" + std::string(rest) + "\"") +
                      " (use ms, s, m, h or d)");
    }
    rest.remove_prefix(unit->suffix.size());
    if (MultiplyOverflows(number, unit->factor) || number * unit->factor > kMaxMillis - total) {
      return Fail(ErrorCode::kInvalidArgument, quoted + " is too long a duration");
    }
    total += number * unit->factor;
  }
  return Duration(static_cast<int64_t>(total));
}

Result<uint64_t> ParseSize(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  std::string_view rest = text;
  uint64_t number = 0;
  if (!TakeNumber(rest, number)) {
    return Fail(ErrorCode::kInvalidArgument, quoted +
                                                 " is not a size; write a whole number and a unit "
                                                 "(B, KB, MB, GB, TB), e.g. \"25MB\"");
  }
  if (rest.empty()) return number;  // a bare byte count, as TOML integers are
  for (const Unit& unit : kSizeUnits) {
    if (rest == unit.suffix) {
      if (MultiplyOverflows(number, unit.factor)) {
        return Fail(ErrorCode::kInvalidArgument, quoted + " is too large");
      }
      return number * unit.factor;
    }
  }
  return Fail(ErrorCode::kInvalidArgument,
              quoted + " is not a size: unknown unit \"" + std::string(rest) +
                  "\" (use B, KB, MB, GB or TB; 1MB = 1024*1024 bytes)");
}

std::string FormatSize(uint64_t bytes) {
  // Largest unit that divides exactly, so the text round-trips.
  static constexpr std::array<Unit, 4> kLargestFirst{
      {{"TB", 1ull << 40}, {"GB", 1ull << 30}, {"MB", 1ull << 20}, {"KB", 1ull << 10}}};
  if (bytes != 0) {
    for (const Unit& unit : kLargestFirst) {
      if (bytes % unit.factor == 0)
        return std::to_string(bytes / unit.factor) + std::string(unit.suffix);
    }
  }
  return std::to_string(bytes) + "B";
}

std::string FormatDuration(Duration duration) {
  int64_t millis = duration.count();
  if (millis == 0) return "0s";
  std::string out;
  if (millis < 0) {
    out = "-";
    millis = -millis;
  }
  uint64_t rest = static_cast<uint64_t>(millis);
  for (auto it = kDurationUnits.rbegin(); it != kDurationUnits.rend(); ++it) {
    if (rest >= it->factor) {
      out += std::to_string(rest / it->factor) + std::string(it->suffix);
      rest %= it->factor;
    }
  }
  return out;
}

double Rate::PerSecond() const {
  const double seconds = std::chrono::duration<double>(per).count();
  return seconds > 0 ? static_cast<double>(count) / seconds : 0.0;
}

namespace {

struct RateUnit {
  std::string_view name;
  Duration per;
};

// The short name of each period first: FormatRate writes it.
constexpr std::array<RateUnit, 8> kRateUnits{{
    {"s", std::chrono::seconds(1)},
    {"min", std::chrono::minutes(1)},
    {"h", std::chrono::hours(1)},
    {"d", std::chrono::hours(24)},
    {"sec", std::chrono::seconds(1)},
    {"minute", std::chrono::minutes(1)},
    {"hour", std::chrono::hours(1)},
    {"day", std::chrono::hours(24)},
}};

}  // namespace

Result<Rate> ParseRate(std::string_view text) {
  const std::string quoted = "\"" + std::string(text) + "\"";
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return Fail(ErrorCode::kInvalidArgument,
                quoted + " is not a rate: missing \"/UNIT\"; write e.g. \"300/min\"");
  }
  std::string_view count_text = text.substr(0, slash);
  const std::string_view unit_text = text.substr(slash + 1);
  uint64_t count = 0;
  std::string_view rest = count_text;
  // A count above 10^12 per anything is no limit; the cap keeps PerSecond exact.
  constexpr uint64_t kMaxCount = 1'000'000'000'000ull;
  if (!TakeNumber(rest, count) || !rest.empty() || count > kMaxCount) {
    return Fail(ErrorCode::kInvalidArgument,
                quoted + " is not a rate: the count \"" + std::string(count_text) +
                    "\" is not a whole number from 1 to 1000000000000");
  }
  if (count == 0) {
    return Fail(ErrorCode::kInvalidArgument,
                quoted + " is not a rate: the count must be at least 1 "
                         "(leave the key out for no limit)");
  }
  for (const RateUnit& unit : kRateUnits) {
    if (unit.name == unit_text) return Rate{count, unit.per};
  }
  return Fail(ErrorCode::kInvalidArgument,
              quoted + " is not a rate: unknown unit \"" + std::string(unit_text) +
                  "\" (use s, sec, min, minute, h, hour, d or day)");
}

std::string FormatRate(const Rate& rate) {
  for (const RateUnit& unit : kRateUnits) {
    if (unit.per == rate.per) return std::to_string(rate.count) + "/" + std::string(unit.name);
  }
  return std::to_string(rate.count) + " per " + FormatDuration(rate.per);
}

}  // namespace hikyaku::config
