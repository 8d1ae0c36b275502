// RFC 5322 header-block utilities over a raw message held in memory.
//
// A raw message is header fields, an empty line, then the body. Lines end in
// CRLF; these functions also accept bare LF (sendmail input before it is
// normalised) and leave the line endings of untouched lines as they were.
// Field names compare case-insensitively (RFC 5322 1.2.2). Values are
// returned unfolded (RFC 5322 2.2.3: each CRLF that precedes WSP removed) with
// leading and trailing whitespace trimmed.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace hikyaku::message {

// Where the header block ends. `header_end` is the offset just after the last
// header line's line ending (where a new field could be appended);
// `body_start` is the offset just after the empty separator line, or
// raw.size() when the message has no body separator.
struct HeaderBounds {
  size_t header_end;
  size_t body_start;
};
[[nodiscard]] HeaderBounds FindHeaderEnd(std::string_view raw);

// Checks that `raw` starts with a well-formed header block: at least one
// field, every line before the separator either "name:" with a name of
// printable ASCII other than ':' (RFC 5322 2.2 ftext) or a continuation line
// starting with space or tab (not first), and no header line longer than 998
// octets. The error message names the 1-based line number.
[[nodiscard]] Result<void> ValidateHeaderBlock(std::string_view raw);

// True if `name` is a non-empty field name of ftext (printable US-ASCII
// except ':').
[[nodiscard]] bool IsValidFieldName(std::string_view name);

// All values of field `name` in order of appearance, unfolded and trimmed.
[[nodiscard]] std::vector<std::string> GetHeaderValues(std::string_view raw, std::string_view name);

// True if at least one field `name` is present in the header block.
[[nodiscard]] bool HasHeader(std::string_view raw, std::string_view name);

// `raw` without any field `name` (including its continuation lines). Only
// the header block is searched; the body is never touched.
[[nodiscard]] std::string RemoveHeader(std::string_view raw, std::string_view name);

// "name: value\r\n" + raw. Fails with kInvalidArgument if name is not a
// valid field name or value contains CR or LF other than folding (CRLF
// followed by space or tab) or NUL.
[[nodiscard]] Result<std::string> PrependHeader(std::string_view raw, std::string_view name,
                                  std::string_view value);

// Envelope recipients for `sendmail -t`: the addr-specs of every mailbox in
// all To, Cc and Bcc fields (groups flattened, display names and comments
// dropped), in header order, exact duplicates removed. Fails with
// kInvalidArgument naming the field when a value does not parse as an
// address list. A message without such fields yields an empty vector.
[[nodiscard]] Result<std::vector<std::string>> ExtractRecipientAddresses(std::string_view raw);

}  // namespace hikyaku::message
