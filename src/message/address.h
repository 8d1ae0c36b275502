// Email addresses as they appear in message headers (RFC 5322 3.4) and in
// the SMTP envelope (RFC 5321 4.1.2).
//
// ParseAddressList reads the value of an address header (To, Cc, Bcc, From,
// Reply-To) in all its real-world shapes: bare addr-specs, display names
// (atoms, quoted strings, RFC 2047 encoded-words left as written), angle
// addresses with obsolete source routes, comments anywhere, groups (including
// the empty "undisclosed-recipients:;"), empty list elements (obs-addr-list)
// and folded whitespace. Groups are flattened into their members.
//
// IsValidAddrSpec is the envelope-address check used wherever an address
// from the outside world is accepted for delivery.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace hikyaku::message {

struct Mailbox {
  // The display name with quotes and escapes removed and runs of whitespace
  // collapsed to one space; empty if none. Encoded-words are not decoded.
  std::string display_name;
  // local-part@domain without whitespace or comments; a quoted local part
  // keeps its quotes ("john..doe"@example.com).
  std::string addr_spec;

  bool operator==(const Mailbox&) const = default;
};

// Parses an address-list. Fails with kInvalidArgument naming the offending
// element when an element has no '@', an unbalanced quote, comment, angle
// bracket or group, or stray characters. An empty or all-whitespace value
// (and a list made only of empty groups) yields an empty vector.
Result<std::vector<Mailbox>> ParseAddressList(std::string_view value);

// Parses exactly one mailbox: "a@b", "Name <a@b>", "\"Last, First\" <a@b>",
// "a@b (Name)". Fails if the value holds no mailbox, more than one, or a group.
Result<Mailbox> ParseMailbox(std::string_view value);

// True if `addr` is an addr-spec fit for the SMTP envelope: local@domain
// where the local part is a dot-atom or a quoted string (1..64 octets), the
// domain is a host name of dot-separated labels (letters, digits, '-', UTF-8
// octets for IDN; 1..63 octets each, no leading/trailing '-') or an address
// literal in brackets, the whole at most 254 octets, and no space or control
// character anywhere.
bool IsValidAddrSpec(std::string_view addr);

}  // namespace hikyaku::message
