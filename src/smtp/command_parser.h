// Server-side SMTP command input: splitting a byte stream into command lines
// (CommandLineReader) and parsing one line into a Command (ParseCommand).
// Both are pure logic with no I/O, in the manner of nginx's
// ngx_mail_parse.c: input may arrive split at any byte, and "need more
// bytes" is an ordinary result, not an error.
//
// Thread-safety: a CommandLineReader is a plain value owned by one session;
// ParseCommand is a pure function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

namespace hikyaku::smtp {

// RFC 5321 4.5.3.1.4 sets 512 octets (CRLF included) as the minimum a server
// must accept. Clients with long ESMTP parameter lists exceed it, so the
// default is four times that.
inline constexpr size_t kDefaultMaxCommandLine = 2048;

// Splits a byte stream into lines. A line ends with CRLF; a bare LF is also
// accepted as a line end (lenient towards hand-written clients and scripts;
// a CR that is not followed by LF stays in the line, where ParseCommand
// rejects it). Lines are bounded: a line whose text (without its line end)
// is longer than max_line - 2 octets is reported once as kTooLong when its
// LF arrives; its bytes are discarded, never buffered, and the following
// line is read normally.
class CommandLineReader {
 public:
  enum class Status {
    kNeedMore,  // all of `input` was consumed; no complete line yet
    kLine,      // line() holds the next line; `consumed` bytes were used
    kTooLong,   // an over-long line ended; its bytes were discarded
  };
  struct Event {
    Status status;
    size_t consumed;  // bytes of `input` used; the caller drops them
  };

  explicit CommandLineReader(size_t max_line = kDefaultMaxCommandLine);

  // Consumes bytes of `input` up to and including the first line end, or
  // all of it when it holds no line end. Bytes consumed with kNeedMore are
  // remembered, so the next call continues the same line.
  Event Consume(std::string_view input);

  // After kLine: the line without CRLF/LF. Valid until the next Consume/Reset.
  const std::string& line() const { return line_; }

  // Forgets any partial line (used when the stream changes, e.g. STARTTLS).
  void Reset();

 private:
  size_t max_text_;
  std::string line_;
  bool complete_ = false;    // line_ holds a finished line (cleared on next Consume)
  bool discarding_ = false;  // inside an over-long line: drop bytes until LF
};

enum class Verb {
  kHelo,
  kEhlo,
  kMail,
  kRcpt,
  kData,
  kRset,
  kNoop,
  kQuit,
  kVrfy,
  kHelp,
  kStartTls,
  kAuth,
};

std::string_view ToString(Verb verb);

// RFC 6152 BODY= parameter of MAIL FROM.
enum class BodyType { kUnspecified, k7Bit, k8BitMime };

struct Command {
  Verb verb = Verb::kNoop;
  // HELO/EHLO: the client's domain (first word). VRFY/HELP/NOOP: the
  // argument text, may be empty. AUTH: the mechanism, upper-cased.
  std::string argument{};
  // MAIL/RCPT: the mailbox without angle brackets and without any source
  // route (RFC 5321 4.1.1.3 / appendix C); empty for the null path "<>".
  std::string path{};
  std::optional<uint64_t> size{};  // MAIL SIZE=n (RFC 1870); saturates at UINT64_MAX
  BodyType body = BodyType::kUnspecified;
  // AUTH: the initial response (RFC 4954 section 4), still base64; "=" means
  // an empty response. Absent when the client sent none.
  std::optional<std::string> initial_response{};
};

// Why a line is not a valid command. The session maps each kind to a reply.
enum class CommandErrorKind {
  kUnknownCommand,       // 500 5.5.1
  kBadEncoding,          // NUL, CR or 8-bit byte in the line: 500 5.5.2
  kSyntax,               // 501 5.5.4 (missing/extra arguments, no brackets...)
  kBadSenderAddress,     // 501 5.1.7
  kBadRecipientAddress,  // 501 5.1.3
  kUnknownParameter,     // 555 5.5.4 (RFC 5321 4.1.1.11)
  kBadParameterValue,    // 501 5.5.4
};

struct CommandError {
  CommandErrorKind kind;
  std::string detail;  // human-readable, safe to put in a reply text
};

// Parses one command line (without its line end). Verbs are
// case-insensitive. MAIL/RCPT require angle brackets, tolerate one or more
// spaces after the colon, accept "<>" (MAIL only) and strip source routes.
// The mailbox is checked against RFC 5321 4.1.2 (Dot-string or
// Quoted-string local part of at most 64 octets; a domain of at most 255
// octets or an address literal). MAIL accepts SIZE=, BODY=7BIT|8BITMIME and
// AUTH= (RFC 4954 section 5, value accepted and ignored); RCPT accepts no
// parameters; anything else is kUnknownParameter.
tl::expected<Command, CommandError> ParseCommand(std::string_view line);

// True if `mailbox` (no brackets) is a valid RFC 5321 4.1.2 Mailbox.
bool IsValidMailbox(std::string_view mailbox);

}  // namespace hikyaku::smtp
