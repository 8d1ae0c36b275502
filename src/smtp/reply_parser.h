// Client-side SMTP reply input: ReplyParser turns a byte stream, split at
// any byte, into Replies (RFC 5321 section 4.2), including multi-line
// replies ("250-..." continuation lines, "250 ..." last line) and RFC 3463
// enhanced status codes (RFC 2034 section 3). Pure logic with no I/O, in the
// manner of nginx's ngx_mail_parse.c: "need more bytes" is an ordinary
// result, and a malformed reply is an error value, never a crash.
//
// Thread-safety: a ReplyParser is a plain value owned by one session;
// ParseEnhancedCode is a pure function.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace hikyaku::smtp {

// RFC 5321 4.5.3.1.5 limits a reply line to 512 octets; servers in the wild
// exceed it (long banners, AUTH lists), so the default allows eight times that.
inline constexpr size_t kDefaultMaxReplyLine = 4096;
// Enough for any real EHLO reply; a server streaming continuation lines
// forever is cut off here.
inline constexpr size_t kDefaultMaxReplyLines = 128;

struct Reply {
  int code = 0;          // 200..599; 0 means "no reply" where a Reply is synthesized
  std::string enhanced;  // "5.1.1" (RFC 3463), or empty when the server sent none
  // The text of every line after the code (and after the enhanced code, which
  // is stripped from each line that repeats it), lines joined by '\n'.
  std::string text;

  int Class() const { return code / 100; }
  bool Positive() const { return code >= 200 && code < 300; }
  // One line for logs and bounce texts: "550 5.1.1 first line second line".
  std::string Summary() const;
};

// Splits a byte stream into replies. Lines end with CRLF; a bare LF is also
// accepted (a CR before it is dropped). A line is "ddd", "ddd text" or
// "ddd-text"; the first digit must be 2..5 and every line of one reply must
// carry the same code. Anything else is kError.
//
// The enhanced status code is taken from the start of the first line's text
// when it is a valid RFC 3463 code whose class matches the reply's first
// digit and is followed by a space or the end of the line. It is recognised
// whether or not the server advertised ENHANCEDSTATUSCODES: many servers send
// codes without the keyword, and the class check keeps a banner such as
// "220 2.1.0.example ESMTP" from being misread.
class ReplyParser {
 public:
  enum class Status {
    kNeedMore,  // all of `input` was consumed; no complete reply yet
    kReply,     // reply() holds the next reply; `consumed` bytes were used
    kError,     // a malformed reply; error() says why. The partial reply is
                // dropped and parsing resumes at the next line start
  };
  struct Event {
    Status status;
    size_t consumed;  // bytes of `input` used; the caller drops them
  };

  explicit ReplyParser(size_t max_line = kDefaultMaxReplyLine,
                       size_t max_lines = kDefaultMaxReplyLines);

  // Consumes bytes of `input` up to and including the end of the first
  // complete reply, or all of it. Partial lines and replies are remembered.
  // A line longer than max_line (its line end included) is reported as
  // kError as soon as the limit is passed; the rest of that line is then
  // discarded without being buffered.
  Event Consume(std::string_view input);

  // After kReply: the reply. Valid until the next Consume/Reset.
  const Reply& reply() const { return done_; }
  Reply TakeReply() { return std::move(done_); }
  // After kError: a description safe to put in a log or bounce text.
  const std::string& error() const { return error_; }

  // Forgets any partial line or reply (e.g. after a TLS handshake).
  void Reset();

 private:
  // Handles one complete line (no line end). Returns kNeedMore while the
  // reply goes on, kReply when it was the last line, kError when malformed.
  Status HandleLine(std::string_view line);
  Status Fail(std::string message);

  size_t max_text_;  // longest accepted line without its CRLF
  size_t max_lines_;
  std::string partial_;      // bytes of an unfinished line
  bool discarding_ = false;  // inside an over-long line: drop bytes until LF
  Reply current_;            // the reply being assembled
  size_t lines_ = 0;         // lines of current_ so far
  Reply done_;
  std::string error_;
};

// If `text` starts with an RFC 3463 status code ("4.7.1") followed by a
// space or the end, returns its length; otherwise 0. A class digit other
// than 2, 4 or 5, or a subject/detail of more than three digits, is no code.
size_t ParseEnhancedCode(std::string_view text);

}  // namespace hikyaku::smtp
