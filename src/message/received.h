// The Received: trace field hikyaku prepends to every message it accepts
// (RFC 5321 4.4), and the RFC 5322 3.3 date format it and the message
// builder use.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/clock.h"

namespace hikyaku::message {

// "Sat, 28 Nov 2026 15:54:59 +0000" — always UTC, English day and month
// names, two-digit day (RFC 5322 3.3 allows one or two; two sorts and greps
// better), seconds always present.
std::string FormatRfc5322Date(TimePoint t);

// How the message reached us: the "with" keyword (RFC 5321 4.4 / RFC 3848).
enum class ReceivedProtocol {
  kSmtp,     // SMTP
  kEsmtp,    // ESMTP
  kEsmtps,   // ESMTPS: ESMTP over TLS
  kEsmtpa,   // ESMTPA: ESMTP with AUTH
  kEsmtpsa,  // ESMTPSA: both
  kHttp,     // HTTP: the JSON API (not an IANA mail transmission type)
  kLocal,    // local: the sendmail command line
};
std::string_view ToString(ReceivedProtocol p);

struct ReceivedTrace {
  std::string helo;       // EHLO/HELO argument; empty for HTTP and local
  std::string client_ip;  // "192.0.2.1" or "2001:db8::1"; empty for local
  std::string hostname;   // our host name (the "by" domain)
  ReceivedProtocol protocol = ReceivedProtocol::kEsmtp;
  std::string queue_id;   // MessageId text
  std::string for_recipient;  // optional "for <addr>" clause; empty to omit
  TimePoint date;
};

// The complete field including its trailing CRLF, folded over several lines:
//
//   Received: from mx.example ([192.0.2.1])
//   \tby mta.example.net (hikyaku) with ESMTPS id 018c2f9a3b40001a
//   \tfor <rcpt@example.org>; Sat, 28 Nov 2026 15:54:59 +0000
//
// The client-supplied HELO name is sanitised: anything other than printable
// ASCII without parentheses, backslash or whitespace becomes '?', and it is
// cut to 255 octets, so a client cannot inject lines or unbalance comments.
// An empty helo with a client ip gives "from [192.0.2.1]" (address literal);
// IPv6 is written [IPv6:2001:db8::1] (RFC 5321 4.1.3). An empty client_ip
// omits the from clause (local submission).
std::string FormatReceived(const ReceivedTrace& trace);

}  // namespace hikyaku::message
