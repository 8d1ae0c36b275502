#include "events/event_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>

namespace hikyaku::events {

namespace {

constexpr char kHex[] = "0123456789abcdef";

// Length of a well-formed UTF-8 sequence at s[i], or 0 (RFC 3629 4).
size_t Utf8SequenceAt(std::string_view s, size_t i) {
  unsigned char c = s[i];
  size_t n;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) n = 3;
  else if (c >= 0xf0 && c <= 0xf4) n = 4;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  unsigned char c1 = s[i + 1];
  if (c == 0xe0 && c1 < 0xa0) return 0;
  if (c == 0xed && c1 >= 0xa0) return 0;
  if (c == 0xf0 && c1 < 0x90) return 0;
  if (c == 0xf4 && c1 >= 0x90) return 0;
  return n;
}

// RFC 8259 7: quote, backslash and control characters are escaped; valid
// UTF-8 passes through; invalid bytes become U+FFFD so the line stays JSON.
void AppendJsonString(std::string_view s, std::string& out) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    size_t run = i;
    while (run < s.size()) {
      unsigned char c = s[run];
      if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
      ++run;
    }
    out.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    unsigned char c = s[i];
    if (c >= 0x80) {
      size_t n = Utf8SequenceAt(s, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
    ++i;
  }
  out += '"';
}

template <typename T>
void AppendNumber(T v, std::string& out) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void AppendKey(std::string_view key, std::string& out) {
  out += ',';
  AppendJsonString(key, out);
  out += ':';
}

void Append2(int v, char* p) {
  p[0] = static_cast<char>('0' + v / 10);
  p[1] = static_cast<char>('0' + v % 10);
}

}  // namespace

std::string FormatRfc3339Millis(TimePoint t) {
  auto days = std::chrono::floor<std::chrono::days>(t);
  std::chrono::year_month_day ymd{days};
  int64_t ms_of_day = (t - days).count();
  int year = static_cast<int>(ymd.year());
  char buf[] = "0000-00-00T00:00:00.000Z";
  if (year < 0 || year > 9999) year = 0;  // out of RFC 3339's range; not reachable from a real clock
  Append2(year / 100, buf);
  Append2(year % 100, buf + 2);
  Append2(static_cast<int>(static_cast<unsigned>(ymd.month())), buf + 5);
  Append2(static_cast<int>(static_cast<unsigned>(ymd.day())), buf + 8);
  Append2(static_cast<int>(ms_of_day / 3'600'000), buf + 11);
  Append2(static_cast<int>(ms_of_day / 60'000 % 60), buf + 14);
  Append2(static_cast<int>(ms_of_day / 1000 % 60), buf + 17);
  int ms = static_cast<int>(ms_of_day % 1000);
  buf[20] = static_cast<char>('0' + ms / 100);
  Append2(ms % 100, buf + 21);
  return std::string(buf, sizeof buf - 1);
}

void AppendEventJson(const Event& e, std::string& out) {
  out += "{\"ts\":\"";
  out += FormatRfc3339Millis(e.ts);
  out += "\",\"type\":";
  AppendJsonString(e.type, out);
  out += ",\"id\":\"";
  out += e.id.ToString();
  out += "\",\"sender\":";
  AppendJsonString(e.sender, out);
  out += ",\"recipient\":";
  AppendJsonString(e.recipient, out);
  for (const EventField& f : e.extra) {
    AppendKey(f.key(), out);
    switch (f.kind()) {
      case EventField::Kind::kString: AppendJsonString(f.string_value(), out); break;
      case EventField::Kind::kInt: AppendNumber(f.int_value(), out); break;
      case EventField::Kind::kUint: AppendNumber(f.uint_value(), out); break;
      case EventField::Kind::kDouble:
        // JSON has no NaN or infinity.
        if (std::isfinite(f.double_value())) AppendNumber(f.double_value(), out);
        else out += "null";
        break;
      case EventField::Kind::kBool: out += f.bool_value() ? "true" : "false"; break;
      case EventField::Kind::kNull: out += "null"; break;
    }
  }
  out += '}';
}

Result<std::unique_ptr<EventLog>> EventLog::Open(const std::filesystem::path& path) {
  return Open(path, Options{});
}

Result<std::unique_ptr<EventLog>> EventLog::Open(const std::filesystem::path& path,
                                                 Options options) {
  if (path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec)
      return Fail(ErrorCode::kIo, "event log: cannot create directory " +
                                      path.parent_path().string() + ": " + ec.message());
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0)
    return Fail(ErrorCode::kIo, "event log: cannot open " + path.string() + ": " + std::strerror(errno));
  return std::unique_ptr<EventLog>(new EventLog(path, fd, options));
}

EventLog::EventLog(std::filesystem::path path, int fd, Options options)
    : path_(std::move(path)), options_(options), fd_(fd) {
  buffer_.reserve(options_.flush_bytes + options_.flush_bytes / 4);
  flusher_ = std::thread([this] { FlusherLoop(); });
}

EventLog::~EventLog() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  flusher_.join();
  std::lock_guard write_lock(write_mu_);
  if (fd_ >= 0) ::close(fd_);
}

void EventLog::Write(const Event& event) {
  // Serialise outside the lock; the per-thread buffer keeps its capacity so
  // the steady state allocates nothing here.
  thread_local std::string line;
  line.clear();
  AppendEventJson(event, line);
  line += '\n';
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    size_t before = buffer_.size();
    buffer_ += line;
    wake = before < options_.flush_bytes && buffer_.size() >= options_.flush_bytes;
  }
  if (wake) wake_.notify_one();
}

void EventLog::Received(TimePoint ts, MessageId id, std::string_view sender,
                        std::span<const std::string> recipients,
                        std::initializer_list<EventField> extra) {
  for (const std::string& rcpt : recipients)
    Write(Event{ts, "received", id, sender, rcpt, std::span<const EventField>(extra.begin(), extra.size())});
}

void EventLog::Received(TimePoint ts, MessageId id, std::string_view sender,
                        std::span<const std::string> recipients, uint64_t size,
                        std::string_view origin, std::string_view tenant, bool high_priority) {
  if (tenant.empty() && !high_priority) {
    Received(ts, id, sender, recipients, {{"size", size}, {"origin", origin}});
  } else if (!high_priority) {
    Received(ts, id, sender, recipients, {{"size", size}, {"origin", origin}, {"tenant", tenant}});
  } else {
    Received(ts, id, sender, recipients,
             {{"size", size}, {"origin", origin}, {"tenant", tenant}, {"priority", std::string_view("high")}});
  }
}

void EventLog::FlusherLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait_for(lock, options_.flush_interval,
                   [this] { return stopping_ || buffer_.size() >= options_.flush_bytes; });
    bool stop = stopping_;
    lock.unlock();
    {
      std::lock_guard write_lock(write_mu_);
      {
        std::lock_guard inner(mu_);
        spare_.swap(buffer_);
      }
      WriteBatch(spare_);
    }
    lock.lock();
    if (stop && buffer_.empty()) return;
  }
}

void EventLog::WriteBatch(std::string& batch) {
  if (batch.empty()) return;
  std::string_view rest = batch;
  // A previous failure may have left half a line in the file: end it so
  // this batch starts on a line of its own (the cut line is lost either way).
  if (partial_line_) {
    if (::write(fd_, "\n", 1) == 1) partial_line_ = false;
  }
  int err = 0;
  if (!partial_line_) {
    while (!rest.empty()) {
      ssize_t n = ::write(fd_, rest.data(), rest.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        err = errno;
        break;
      }
      rest.remove_prefix(static_cast<size_t>(n));
    }
  } else {
    err = errno ? errno : EIO;
  }
  if (err != 0 || !rest.empty()) {
    if (rest.size() != batch.size() && !batch.empty() &&
        batch[batch.size() - rest.size() - 1] != '\n')
      partial_line_ = true;
    // Count the lines that did not fully reach the file.
    uint64_t lost = 0;
    for (char c : rest) lost += c == '\n';
    std::lock_guard lock(mu_);
    dropped_ += lost;
    if (!write_error_)
      write_error_ = Error(err == ENOSPC ? ErrorCode::kNoSpace : ErrorCode::kIo,
                           "event log: write to " + path_.string() + " failed: " +
                               std::strerror(err ? err : EIO));
  }
  batch.clear();
}

Result<void> EventLog::Flush() {
  {
    std::lock_guard write_lock(write_mu_);
    {
      std::lock_guard lock(mu_);
      spare_.swap(buffer_);
    }
    WriteBatch(spare_);
  }
  std::lock_guard lock(mu_);
  if (write_error_) {
    Error e = *write_error_;
    write_error_.reset();
    return tl::unexpected(std::move(e));
  }
  return {};
}

Result<void> EventLog::Reopen() {
  if (auto r = Flush(); !r) return r;
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0)
    return Fail(ErrorCode::kIo, "event log: cannot reopen " + path_.string() + ": " + std::strerror(errno));
  std::lock_guard write_lock(write_mu_);
  ::close(fd_);
  fd_ = fd;
  partial_line_ = false;
  return {};
}

uint64_t EventLog::dropped_lines() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

}  // namespace hikyaku::events
