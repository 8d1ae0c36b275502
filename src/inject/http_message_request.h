// The body of `POST /api/v1/messages`: JSON in, an envelope plus RFC 5322
// content out, or an RFC 9457 problem that names the offending field.
//
// Two forms, told apart by the presence of "raw":
//
//   raw:        {"from": "a@example.com", "to": ["x@example.org", ...],
//                "raw": "From: ...\r\nSubject: ...\r\n\r\nbody"}
//     The envelope is from/to (bare addr-specs). "raw" must start with a
//     header block (message::ValidateHeaderBlock); bare LF and lone CR are
//     normalised to CRLF; Bcc fields are removed (RFC 5322 3.6.3); Date and
//     Message-ID are added when missing (RFC 6409 8.2, 8.3); no line may
//     exceed 998 octets (RFC 5322 2.1.1) and NUL is refused.
//
//   structured: {"from": "Name <a@example.com>", "to": [...], "cc": [...],
//                "bcc": [...], "subject": "...", "text": "...", "html": "...",
//                "headers": {"X-Foo": "bar"}}
//
//   Both forms take "tenant" (a [[tenant]] name: the pool the mail leaves
//   from and its fair share) and "priority" ("high" | "normal"). The
//   X-Hikyaku-Tenant/-Priority header fields are removed from the content
//   and do not count over HTTP (inject/flow_headers.h).
//     Built by message::BuildMessage. Envelope sender = the From addr-spec;
//     envelope recipients = to + cc + bcc; bcc never appears in the content.
//     At least one of text/html is required.
//
// Envelope recipients are de-duplicated (domain compared case-insensitively)
// keeping first occurrence; the limit applies to the addresses as given.
//
// Problems (field = JSON pointer, RFC 6901):
//   400 invalid-json      body is not JSON (field "")
//   400 invalid-field     not an object (""), unknown member ("/subjet"),
//                         missing from/to, wrong type, invalid address
//                         ("/to/2"), header injection ("/subject",
//                         "/headers/X-Foo"), raw mixed with structured
//                         members ("/html"), no text/html ("/text"),
//                         malformed raw message ("/raw"), an empty tenant
//                         ("/tenant"), a priority other than high/normal
//                         ("/priority")
//   400 too-many-recipients  field = first address over the limit ("/bcc/3")
//   413 message-too-large    field "/raw", "/text" or "/html"
//
// Thread-safety: pure function.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/clock.h"

namespace hikyaku::inject {

struct MessageSubmission {
  std::string sender;                   // envelope MAIL FROM, a valid addr-spec
  std::vector<std::string> recipients;  // envelope RCPT TO, at least one, unique
  std::string content;                  // RFC 5322 message, CRLF lines
  std::string tenant;                   // "tenant": a [[tenant]] name (checked by the caller); "" none
  std::string priority;                 // "priority": "high" | "normal" (any case); "" none
};

// RFC 9457 problem details.
struct Problem {
  int status = 400;
  std::string type = "about:blank";  // request problems use "/problems/<slug>"
  std::string title;
  std::string detail;
  std::string field;  // JSON pointer into the request; "" = the whole body

  // application/problem+json text:
  //   {"type":...,"title":...,"status":...,"detail":...,"field":...}
  // "field" is written for every request problem (type other than
  // about:blank), even when it is "" (the whole body), and for any other
  // problem only when non-empty. Invalid UTF-8 is replaced, never thrown.
  std::string ToJson() const;
};

inline constexpr std::string_view kProblemInvalidJson = "/problems/invalid-json";
inline constexpr std::string_view kProblemInvalidField = "/problems/invalid-field";
inline constexpr std::string_view kProblemTooManyRecipients = "/problems/too-many-recipients";
inline constexpr std::string_view kProblemMessageTooLarge = "/problems/message-too-large";

struct MessageRequestLimits {
  size_t max_message_size = 25u << 20;  // octets of content (smtp_in.max_message_size)
  size_t max_recipients = 1000;         // envelope recipients per message
  // Right side of generated Message-IDs: set it to the server host name.
  std::string message_id_domain = "localhost";
  // Date of a generated Date field; unset = the system clock.
  std::optional<TimePoint> now;
};

using MessageRequestResult = std::variant<MessageSubmission, Problem>;

MessageRequestResult ParseMessageRequest(std::string_view body, const MessageRequestLimits& limits);

}  // namespace hikyaku::inject
