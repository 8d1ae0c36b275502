#include "message/received.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace hikyaku::message {

namespace {

std::string Sanitize(std::string_view text, size_t max_len) {
  std::string out;
  out.reserve(std::min(text.size(), max_len));
  for (unsigned char c : text.substr(0, max_len)) {
    bool ok = c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\';
    out += ok ? static_cast<char>(c) : '?';
  }
  return out;
}

}  // namespace

std::string FormatRfc5322Date(TimePoint t) {
  static constexpr const char* kDays[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  auto secs = std::chrono::floor<std::chrono::seconds>(t);
  auto days = std::chrono::floor<std::chrono::days>(secs);
  std::chrono::year_month_day ymd{days};
  std::chrono::hh_mm_ss hms{secs - days};
  int64_t day_number = days.time_since_epoch().count();  // 1970-01-01 was a Thursday
  int weekday = static_cast<int>(((day_number % 7) + 7) % 7);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02d:%02d:%02d +0000", kDays[weekday],
                static_cast<unsigned>(ymd.day()), kMonths[static_cast<unsigned>(ymd.month()) - 1],
                static_cast<int>(ymd.year()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()));
  return buf;
}

std::string_view ToString(ReceivedProtocol p) {
  switch (p) {
    case ReceivedProtocol::kSmtp: return "SMTP";
    case ReceivedProtocol::kEsmtp: return "ESMTP";
    case ReceivedProtocol::kEsmtps: return "ESMTPS";
    case ReceivedProtocol::kEsmtpa: return "ESMTPA";
    case ReceivedProtocol::kEsmtpsa: return "ESMTPSA";
    case ReceivedProtocol::kHttp: return "HTTP";
    case ReceivedProtocol::kLocal: return "local";
  }
  return "ESMTP";
}

std::string FormatReceived(const ReceivedTrace& trace) {
  std::string out = "Received:";
  // RFC 5321 4.4: From-domain = "FROM" FWS Extended-Domain, where
  // Extended-Domain is the HELO name followed by the TCP-info in a comment,
  // or an address literal when there is no name.
  std::string ip = Sanitize(trace.client_ip, 64);
  if (!trace.client_ip.empty()) {
    std::string literal = ip.find(':') != std::string::npos ? "[IPv6:" + ip + "]" : "[" + ip + "]";
    out += " from ";
    if (trace.helo.empty()) {
      out += literal;
    } else {
      out += Sanitize(trace.helo, 255);
      out += " (";
      out += literal;
      out += ')';
    }
    out += "\r\n\t";
  } else {
    out += ' ';
  }
  out += "by ";
  out += Sanitize(trace.hostname, 255);
  out += " (hikyaku) with ";
  out += ToString(trace.protocol);
  out += " id ";
  out += Sanitize(trace.queue_id, 64);
  if (!trace.for_recipient.empty()) {
    out += "\r\n\tfor <";
    out += Sanitize(trace.for_recipient, 256);
    out += '>';
  }
  out += "; ";
  out += FormatRfc5322Date(trace.date);
  out += "\r\n";
  return out;
}

}  // namespace hikyaku::message
