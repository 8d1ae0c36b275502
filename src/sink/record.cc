#include "sink/record.h"

#include <time.h>

#include <algorithm>
#include <charconv>

namespace hikyaku::sink {
namespace {

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

void AppendNumber(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void AppendPadded(std::string& out, int v, int width) {
  char buf[8];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
  out.append(buf, width);
}

}  // namespace

std::optional<std::string> HeaderFieldValue(std::string_view header, std::string_view name) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t eol = header.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = header.size();
    std::string_view line = header.substr(pos, eol - pos);
    if (line.empty()) break;  // the end of the header section
    size_t colon = line.find(':');
    // RFC 5322 3.6.8: the field name, then optional white space (obsolete
    // syntax, 4.5), then the colon.
    if (colon != std::string_view::npos && !IsWsp(line[0])) {
      std::string_view field = line.substr(0, colon);
      while (!field.empty() && IsWsp(field.back())) field.remove_suffix(1);
      if (EqualsIgnoreCase(field, name)) {
        std::string value(line.substr(colon + 1));
        // Continuation lines start with white space (RFC 5322 2.2.3).
        size_t next = eol + 2;
        while (next < header.size() && IsWsp(header[next])) {
          size_t end = header.find("\r\n", next);
          if (end == std::string_view::npos) end = header.size();
          value.append(header.substr(next, end - next));
          next = end + 2;
        }
        size_t first = value.find_first_not_of(" \t");
        if (first == std::string::npos) return std::string();
        size_t last = value.find_last_not_of(" \t");
        return value.substr(first, last - first + 1);
      }
    }
    pos = eol + 2;
  }
  return std::nullopt;
}

void AppendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t run = 0;  // start of the pending run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.substr(run, i - run));
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
    }
  }
  out.append(s.substr(run));
  out += '"';
}

void AppendRfc3339Millis(std::string& out, TimePoint t) {
  int64_t ms = t.time_since_epoch().count();
  time_t secs = static_cast<time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  int millis = static_cast<int>(ms - static_cast<int64_t>(secs) * 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  AppendPadded(out, tm.tm_year + 1900, 4);
  out += '-';
  AppendPadded(out, tm.tm_mon + 1, 2);
  out += '-';
  AppendPadded(out, tm.tm_mday, 2);
  out += 'T';
  AppendPadded(out, tm.tm_hour, 2);
  out += ':';
  AppendPadded(out, tm.tm_min, 2);
  out += ':';
  AppendPadded(out, tm.tm_sec, 2);
  out += '.';
  AppendPadded(out, millis, 3);
  out += 'Z';
}

void AppendJsonLines(std::string& out, const ReceivedRecord& record,
                     const std::vector<std::string>& recipients) {
  // Everything but the recipient is the same on every line: build it once.
  // Thread-local buffers keep their capacity: no allocation per message.
  thread_local std::string head, tail;
  tail.assign(",\"size\":");
  AppendNumber(tail, record.size);
  tail += ",\"message_id\":";
  if (record.message_id) {
    AppendJsonString(tail, *record.message_id);
  } else {
    tail += "null";
  }
  tail += ",\"test\":";
  if (record.test) {
    AppendJsonString(tail, *record.test);
  } else {
    tail += "null";
  }
  tail += "}\n";
  head.assign("{\"ts\":\"");
  AppendRfc3339Millis(head, record.ts);
  head += "\",\"client\":";
  AppendJsonString(head, record.client);
  head += ",\"sender\":";
  AppendJsonString(head, record.sender);
  head += ",\"recipient\":";
  for (const auto& r : recipients) {
    out += head;
    AppendJsonString(out, r);
    out += tail;
  }
}

std::string SinkCounters::ToJson() const {
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  std::string out;
  auto field = [&](std::string_view name, uint64_t v, bool first = false) {
    if (!first) out += ',';
    out += '"';
    out += name;
    out += "\":";
    AppendNumber(out, v);
  };
  uint64_t unknown = get(unknown_user), grey = get(greylisted), temp = get(tempfail_recipients);
  out += '{';
  field("connections", get(connections), true);
  field("refused_connections", get(refused_connections));
  field("open_connections", get(open_connections));
  field("messages", get(messages));
  field("recipients", get(recipients));
  field("rejected_recipients", unknown + grey + temp);
  field("bytes", get(bytes));
  out += ",\"rejected\":{";
  field("unknown_user", unknown, true);
  field("greylisted", grey);
  field("tempfail", temp);
  out += '}';
  field("rate_limited", get(rate_limited));
  field("connection_limited", get(connection_limited));
  field("rejected_messages", get(rejected_messages));
  out += '}';
  return out;
}

PerIpCounters::Ip* PerIpCounters::Find(std::string_view ip) {
  auto it = ips_.find(ip);
  if (it != ips_.end()) return &it->second;
  if (ips_.size() >= kMaxIps) {
    ++untracked_;
    return nullptr;
  }
  return &ips_.emplace(std::string(ip), Ip{}).first->second;
}

void PerIpCounters::Connected(std::string_view ip) {
  std::lock_guard lock(mutex_);
  Ip* s = Find(ip);
  if (!s) return;
  ++s->connections;
  s->peak_connections = std::max(s->peak_connections, ++s->open);
}

void PerIpCounters::Disconnected(std::string_view ip) {
  std::lock_guard lock(mutex_);
  auto it = ips_.find(ip);  // an untracked IP stays untracked
  if (it != ips_.end() && it->second.open > 0) --it->second.open;
}

void PerIpCounters::RefusedConnection(std::string_view ip) {
  std::lock_guard lock(mutex_);
  if (Ip* s = Find(ip)) ++s->refused_connections;
}

void PerIpCounters::RateLimited(std::string_view ip) {
  std::lock_guard lock(mutex_);
  if (Ip* s = Find(ip)) ++s->rate_limited;
}

void PerIpCounters::AcceptedRecipients(std::string_view ip, uint64_t n, TimePoint now) {
  std::lock_guard lock(mutex_);
  Ip* s = Find(ip);
  if (!s) return;
  s->recipients += n;
  int64_t ms = std::max<int64_t>(0, (now - start_).count());
  size_t minute = static_cast<size_t>(ms / 60000);
  if (minute >= kMaxMinutes) return;
  if (s->per_minute.size() <= minute) s->per_minute.resize(minute + 1, 0);
  s->per_minute[minute] += n;
  minutes_ = std::max(minutes_, minute + 1);
}

uint64_t PerIpCounters::untracked_events() const {
  std::lock_guard lock(mutex_);
  return untracked_;
}

std::string PerIpCounters::ToJson() const {
  std::lock_guard lock(mutex_);
  std::vector<const std::pair<const std::string, Ip>*> sorted;
  sorted.reserve(ips_.size());
  for (const auto& entry : ips_) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  std::string out = "{";
  for (const auto* entry : sorted) {
    const Ip& s = entry->second;
    if (out.size() > 1) out += ',';
    AppendJsonString(out, entry->first);
    out += ":{\"connections\":";
    AppendNumber(out, s.connections);
    out += ",\"peak_connections\":";
    AppendNumber(out, s.peak_connections);
    out += ",\"refused_connections\":";
    AppendNumber(out, s.refused_connections);
    out += ",\"recipients\":";
    AppendNumber(out, s.recipients);
    out += ",\"rate_limited\":";
    AppendNumber(out, s.rate_limited);
    out += ",\"per_minute\":[";
    for (size_t m = 0; m < minutes_; ++m) {
      if (m > 0) out += ',';
      AppendNumber(out, m < s.per_minute.size() ? s.per_minute[m] : 0);
    }
    out += "]}";
  }
  out += '}';
  return out;
}

}  // namespace hikyaku::sink
