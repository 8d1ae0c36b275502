// MessageId: the spool's identity of one accepted message.
//
// 64 bits: milliseconds since the epoch in the high 42 bits (good until
// 2109), a per-process sequence in the low 22 bits. Ids therefore sort by
// arrival time, which keeps spool keys appended at the end of the key space
// (cheap for RocksDB) and lets recovery read the queue oldest first.
// Uniqueness across restarts holds because a generator never issues an id
// whose time part is below the highest time part it has issued, and it is
// seeded from the clock at start (ids of a previous run are always older
// unless the clock stepped back; the spool refuses a duplicate key).
//
// Text form: 16 lowercase hex digits, e.g. "018c2f9a3b40001a".
//
// Thread-safety: MessageId is a value; MessageIdGenerator is thread-safe.
#pragma once

#include <atomic>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"

namespace hikyaku {

class MessageId {
 public:
  constexpr MessageId() = default;
  constexpr explicit MessageId(uint64_t value) : value_(value) {}

  constexpr uint64_t value() const { return value_; }
  // When the message was accepted (the high 42 bits): a recipient's age
  // for retry.max_age needs no spool read.
  TimePoint ArrivalTime() const { return FromUnixMillis(static_cast<int64_t>(value_ >> 22)); }
  std::string ToString() const;
  static std::optional<MessageId> Parse(std::string_view text);
  // 8 bytes big-endian, so byte order equals numeric order (spool keys).
  std::string ToKeyBytes() const;
  static std::optional<MessageId> FromKeyBytes(std::string_view bytes);

  constexpr auto operator<=>(const MessageId&) const = default;

 private:
  uint64_t value_ = 0;
};

class MessageIdGenerator {
 public:
  explicit MessageIdGenerator(const Clock& clock) : clock_(clock) {}
  MessageId Next();

 private:
  const Clock& clock_;
  std::atomic<uint64_t> last_{0};
};

}  // namespace hikyaku
