// What the sink writes about what it received: one JSON line per accepted
// recipient (`--jsonl`), built from the envelope and two header fields of
// the message, and the JSON counters snapshot (`--stats-file`, the summary
// line). The content itself is never written.
//
// Thread-safety: pure functions; SinkCounters is a set of atomics.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
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

}  // namespace hikyaku::sink
