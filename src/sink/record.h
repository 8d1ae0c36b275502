// What the sink writes about what it received: one JSON line per accepted
// recipient (`--jsonl`), built from the envelope and two header fields of
// the message, and the JSON counters snapshot (`--stats-file`, the summary
// line). The content itself is never written.
//
// Thread-safety: pure functions; SinkCounters is a set of atomics;
// PerIpCounters is guarded by its own mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "base/clock.h"

namespace hikyaku::sink {

// The value of the first header field called `name` (case-insensitive) in
// an RFC 5322 header section (CRLF line ends; stops at the empty line):
// unfolded (RFC 5322 2.2.3: CRLF before white space removed) and with
// leading and trailing white space removed. std::nullopt if absent.
std::optional<std::string> HeaderFieldValue(std::string_view header, std::string_view name);

// Appends `s` as a JSON string literal (with quotes). Invalid UTF-8 is
// passed through byte for byte; control characters are escaped.
void AppendJsonString(std::string& out, std::string_view s);

// "2024-05-01T12:34:56.789Z" (RFC 3339, UTC, milliseconds).
void AppendRfc3339Millis(std::string& out, TimePoint t);

struct ReceivedRecord {
  TimePoint ts;
  std::string_view client;  // IP address
  std::string_view sender;  // empty for <>
  uint64_t size = 0;        // octets of content
  std::optional<std::string> message_id;
  std::optional<std::string> test;  // X-Hikyaku-Test
};

// Appends one line per recipient: {"ts":..,"client":..,"sender":..,
// "recipient":..,"size":..,"message_id":..|null,"test":..|null}\n
void AppendJsonLines(std::string& out, const ReceivedRecord& record,
                     const std::vector<std::string>& recipients);

// What the sink counts. Updated with relaxed atomics from every thread.
struct SinkCounters {
  std::atomic<uint64_t> connections{0};          // TCP connections accepted (all)
  std::atomic<uint64_t> refused_connections{0};  // of those, refused with 421 at the greeting
  std::atomic<uint64_t> open_connections{0};
  std::atomic<uint64_t> messages{0};             // messages accepted (250 after DATA)
  std::atomic<uint64_t> recipients{0};           // recipients of accepted messages
  std::atomic<uint64_t> bytes{0};                // content octets of accepted messages
  std::atomic<uint64_t> unknown_user{0};         // RCPT refused 550 5.1.1
  std::atomic<uint64_t> greylisted{0};           // RCPT refused 450 (greylist)
  std::atomic<uint64_t> tempfail_recipients{0};  // RCPT refused 451 (injected)
  std::atomic<uint64_t> rate_limited{0};         // MAIL refused by --rate-per-ip
  std::atomic<uint64_t> connection_limited{0};   // MAIL refused by --max-messages-per-connection
  std::atomic<uint64_t> rejected_messages{0};    // DATA refused 451 (injected, --tempfail-on data)

  // {"connections":..,"refused_connections":..,"open_connections":..,
  //  "messages":..,"recipients":..,"rejected_recipients":..,"bytes":..,
  //  "rejected":{"unknown_user":..,"greylisted":..,"tempfail":..},
  //  "rate_limited":..,"connection_limited":..,"rejected_messages":..}
  // rejected_recipients is the sum of the "rejected" reasons.
  std::string ToJson() const;
};

// What the sink counts per client IP, so a benchmark can see how polite
// each sending address was: connections, the most it held open at once,
// refusals by the per-IP caps, and accepted recipients per minute since
// `start`. Memory is bounded: at most kMaxIps addresses (events from
// further addresses are only counted in `untracked_events`) and kMaxMinutes
// minutes (recipients accepted later are counted in `recipients` but not
// in `per_minute`). Times before `start` count as minute 0.
class PerIpCounters {
 public:
  static constexpr size_t kMaxIps = 1024;
  static constexpr size_t kMaxMinutes = 1440;

  explicit PerIpCounters(TimePoint start) : start_(start) {}

  void Connected(std::string_view ip);     // opened (also when then refused)
  void Disconnected(std::string_view ip);  // closed; pairs with Connected
  void RefusedConnection(std::string_view ip);
  void RateLimited(std::string_view ip);
  void AcceptedRecipients(std::string_view ip, uint64_t n, TimePoint now);

  // {"127.0.0.50":{"connections":..,"peak_connections":..,
  //  "refused_connections":..,"recipients":..,"rate_limited":..,
  //  "per_minute":[..]},..} in address order; "per_minute" runs from
  // minute 0 to the last minute with an accepted recipient (all IPs alike).
  std::string ToJson() const;
  uint64_t untracked_events() const;

 private:
  struct Ip {
    uint64_t connections = 0;
    uint64_t open = 0;
    uint64_t peak_connections = 0;
    uint64_t refused_connections = 0;
    uint64_t recipients = 0;
    uint64_t rate_limited = 0;
    std::vector<uint64_t> per_minute;
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  Ip* Find(std::string_view ip);  // with mutex_ held; nullptr when the table is full

  const TimePoint start_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Ip, Hash, std::equal_to<>> ips_;
  size_t minutes_ = 0;  // length of the longest per_minute
  uint64_t untracked_ = 0;
};

}  // namespace hikyaku::sink
