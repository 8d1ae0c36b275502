// Builds a complete RFC 5322 / MIME message from structured fields: the HTTP
// API's "structured" form and anything else that composes mail from parts.
//
// Output contract (what BuildMessage guarantees on success):
//  - every line ends in CRLF and is at most 998 octets (RFC 5322 2.1.1);
//    header fields are folded to 78 octets where they have whitespace;
//  - Date and Message-ID are always present ("<random@message_id_domain>"),
//    unless `headers` supplies its own Date or Message-ID, which is used;
//  - MIME-Version: 1.0 and a Content-Type are always present;
//  - non-ASCII in Subject, display names and extra header values is written
//    as RFC 2047 "=?UTF-8?B?...?=" encoded-words;
//  - text only -> text/plain; charset=utf-8; html only -> text/html;
//    both -> multipart/alternative (text first, html last, RFC 2046 5.1.4)
//    with a random boundary checked not to occur in any part;
//  - a body part is 7bit when it is ASCII with lines of at most 998 octets,
//    otherwise quoted-printable (RFC 2045 6.7); line breaks in text and html
//    (LF, CRLF or lone CR) become CRLF; a single-part body that does not
//    end with a line break gets one (the spool and SMTP DATA want it);
//  - Bcc never appears: the builder has no Bcc input, and "Bcc" in `headers`
//    is rejected.
//
// Errors (kInvalidArgument) name the offending input: the message starts
// with a JSON pointer into the HTTP request shape, then ": " and the reason,
// e.g. "/to/2: not a valid address", "/subject: contains CR or LF",
// "/headers/X-Foo: contains CR or LF". ErrorField() extracts the pointer.
// Causes: CR, LF or NUL in any value or header name (header injection), a
// header name that is not ftext, a reserved header in `headers` (From, To,
// Cc, Bcc, Subject, MIME-Version, Content-Type, Content-Transfer-Encoding),
// an invalid address, invalid UTF-8, neither text nor html, a header line
// that cannot be folded under 998 octets, an empty message_id_domain.
//
// Thread-safety: BuildMessage is thread-safe (per-thread random state).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/error.h"

namespace hikyaku::message {

struct MessageDraft {
  std::string from;             // "a@b" or "Name <a@b>"
  std::vector<std::string> to;  // each "a@b" or "Name <a@b>"; may be empty
  std::vector<std::string> cc;
  std::string subject;          // UTF-8; omitted from the message when empty
  std::optional<std::string> text;  // UTF-8 plain text body
  std::optional<std::string> html;  // UTF-8 HTML body
  // Extra fields in the order given; names must be ftext, values UTF-8.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string message_id_domain;  // right side of the generated Message-ID
  TimePoint date;                 // for the Date field
};

Result<std::string> BuildMessage(const MessageDraft& draft);

// The JSON pointer at the start of a BuildMessage error message ("/to/2"),
// or "" if the message has none.
std::string_view ErrorField(const Error& error);

// Escapes one reference token for a JSON pointer (RFC 6901 3: '~' -> "~0",
// '/' -> "~1").
std::string JsonPointerToken(std::string_view token);

}  // namespace hikyaku::message
