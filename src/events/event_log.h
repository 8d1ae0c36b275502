// EventLog: what happened to each message and recipient, as JSON lines
// (one object per line) appended to a file for operators, log shippers and
// `jq`. Every line has "ts" (RFC 3339 UTC with milliseconds,
// "2026-11-28T15:54:59.123Z"), "type", "id" (MessageId text), "sender",
// "recipient", then the event's extra fields in the order given.
//
//   {"ts":"2026-11-28T15:54:59.123Z","type":"received","id":"018c2f9a3b40001a",
//    "sender":"a@example.com","recipient":"b@example.org","size":1234,"origin":"smtp"}
//
// Speed: Write() serialises on the calling thread into a reused per-thread
// buffer, then appends the line to a shared in-memory buffer under a mutex;
// a background thread writes that buffer to the file every ~100 ms, or
// sooner once it holds 1 MiB. Lines from concurrent writers never interleave.
//
// Durability: the event log is NOT the durability record (the spool is).
// Events are handed to the OS at most ~100 ms after Write(); a crash of the
// process loses the events written in that window, a power loss whatever the
// OS had not written. Flush() and the destructor write everything buffered.
//
// Errors: Open() reports a file that cannot be opened. A later write failure
// (disk full) drops the affected batch, counts its lines in dropped_lines(),
// and is returned by the next Flush(); logging continues when the disk
// recovers. Strings are escaped per RFC 8259 7; invalid UTF-8 is replaced by
// U+FFFD so every line stays valid JSON.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "base/clock.h"
#include "base/error.h"
#include "base/message_id.h"

namespace hikyaku::events {

// One extra "key": value member. Keys are written as given (escaped).
// EventField only views its key and string value: both must outlive the
// Write() call that uses the field (they are copied into the line there).
// Binding a temporary std::string is refused at compile time because an
// array of fields would outlive it.
class EventField {
 public:
  enum class Kind { kString, kInt, kUint, kDouble, kBool, kNull };

  EventField(std::string_view key, std::string_view v) : key_(key), kind_(Kind::kString), s_(v) {}
  EventField(std::string_view key, const char* v) : key_(key), kind_(Kind::kString), s_(v) {}
  EventField(std::string_view key, const std::string& v) : key_(key), kind_(Kind::kString), s_(v) {}
  EventField(std::string_view key, std::string&& v) = delete;
  EventField(std::string_view key, bool v) : key_(key), kind_(Kind::kBool), b_(v) {}
  EventField(std::string_view key, double v) : key_(key), kind_(Kind::kDouble), d_(v) {}
  template <std::signed_integral T>
  EventField(std::string_view key, T v) : key_(key), kind_(Kind::kInt), i_(v) {}
  template <std::unsigned_integral T>
    requires(!std::same_as<T, bool>)
  EventField(std::string_view key, T v) : key_(key), kind_(Kind::kUint), u_(v) {}
  EventField(std::string_view key, std::nullptr_t) : key_(key), kind_(Kind::kNull) {}

  std::string_view key() const { return key_; }
  Kind kind() const { return kind_; }
  std::string_view string_value() const { return s_; }
  int64_t int_value() const { return i_; }
  uint64_t uint_value() const { return u_; }
  double double_value() const { return d_; }
  bool bool_value() const { return b_; }

 private:
  std::string_view key_;
  Kind kind_;
  std::string_view s_;
  int64_t i_ = 0;
  uint64_t u_ = 0;
  double d_ = 0;
  bool b_ = false;
};

struct Event {
  TimePoint ts;
  std::string_view type;  // "received", "delivered", "deferred", "bounced", ...
  MessageId id;
  std::string_view sender;
  std::string_view recipient;
  std::span<const EventField> extra;  // e.g. size, origin, site, mx, code
};

// Appends the JSON object for `event` (without newline) to `out`.
void AppendEventJson(const Event& event, std::string& out);

// "2026-11-28T15:54:59.123Z"
std::string FormatRfc3339Millis(TimePoint t);

class EventLog {
 public:
  struct Options {
    std::chrono::milliseconds flush_interval{100};
    size_t flush_bytes = 1 << 20;  // wake the flusher early past this much
  };

  // Creates missing parent directories and opens `path` for appending
  // (created with mode 0640). Fails with kIo naming the path and the OS error.
  static Result<std::unique_ptr<EventLog>> Open(const std::filesystem::path& path);
  static Result<std::unique_ptr<EventLog>> Open(const std::filesystem::path& path, Options options);

  // Writes everything still buffered, then closes the file.
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  void Write(const Event& event);

  // One "received" line per recipient, with `extra` (e.g. size, origin) on each.
  void Received(TimePoint ts, MessageId id, std::string_view sender,
                std::span<const std::string> recipients,
                std::initializer_list<EventField> extra = {});
  // The same with the fields every intake path records: "size" (octets as
  // spooled), "origin" (e.g. "ESMTP 192.0.2.1"), and "tenant" and
  // "priority" when the message has them.
  void Received(TimePoint ts, MessageId id, std::string_view sender,
                std::span<const std::string> recipients, uint64_t size, std::string_view origin,
                std::string_view tenant = {}, bool high_priority = false);

  // Hands everything written so far to the OS (no fsync). Returns the first
  // write error since the previous Flush(), if any.
  Result<void> Flush();

  // Reopens the file by path, for log rotation (rename, then Reopen()).
  Result<void> Reopen();

  uint64_t dropped_lines() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  EventLog(std::filesystem::path path, int fd, Options options);
  void FlusherLoop();
  // Writes `batch` to the file and clears it; caller holds write_mu_.
  void WriteBatch(std::string& batch);

  const std::filesystem::path path_;
  const Options options_;

  // Order: write_mu_ before mu_ when both are held.
  std::mutex write_mu_;  // serialises file writes and reopen
  int fd_;               // guarded by write_mu_
  bool partial_line_ = false;  // guarded by write_mu_: a failed write cut a line
  std::string spare_;    // guarded by write_mu_: the swapped-out buffer, reused

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::string buffer_;        // guarded by mu_
  bool stopping_ = false;     // guarded by mu_
  uint64_t dropped_ = 0;      // guarded by mu_
  std::optional<Error> write_error_;  // guarded by mu_

  std::thread flusher_;
};

}  // namespace hikyaku::events
