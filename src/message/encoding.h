// Content and header encodings used when building messages (base64 itself
// is base/base64.h): quoted-printable (RFC 2045 6.7), RFC 2047 encoded-words, and
// UTF-8 validation.
//
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace hikyaku::message {

// Quoted-printable for text: line breaks in `text` (CRLF, LF or lone CR) are
// written as CRLF hard breaks; every other octet outside 33..126 and '=' is
// encoded, except space and tab that are not at the end of a line; soft line
// breaks keep each encoded line at most 76 octets (RFC 2045 6.7 rule 5).
// A line starting with '.' or "From " is left alone (SMTP dot-stuffing and
// the spool handle those).
std::string QuotedPrintableEncode(std::string_view text);

// Decodes quoted-printable; CRLF hard breaks stay CRLF, soft breaks vanish.
// Returns nullopt on a malformed escape.
std::optional<std::string> QuotedPrintableDecode(std::string_view encoded);

// True if `s` is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF).
bool IsValidUtf8(std::string_view s);

// True if every octet is 7-bit (< 0x80).
bool IsAscii(std::string_view s);

// Encodes UTF-8 `text` as a sequence of "=?UTF-8?B?...?=" encoded-words
// (RFC 2047 2, 4.1), each at most 75 octets, never splitting a UTF-8
// sequence, separated by "\r\n " (folding), so the result can stand as an
// unstructured header value or a display-name phrase. `first_line_used` is the
// number of octets already used on the current line ("Subject: " = 9); the
// first word is shortened so that line stays within 78 octets.
std::string EncodeWords(std::string_view text, size_t first_line_used);

}  // namespace hikyaku::message
