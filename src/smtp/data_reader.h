// Streaming reader for the SMTP DATA body (RFC 5321 4.1.1.4 and 4.5.2):
// removes dot-stuffing, finds the end-of-data marker across arbitrary read
// boundaries, normalises line ends to CRLF and enforces the size and line
// length limits without ever storing past the size limit.
//
// Line ends and the end marker (decisions, see data_reader.cc for the why):
//  - CRLF is a line end. A bare LF or a bare CR is also treated as a line
//    end and stored as CRLF, so the stored content only ever holds CRLF.
//  - Data ends only at CRLF "." CRLF, where the first CRLF may be the end of
//    the DATA command itself (so ".\r\n" as the first line ends an empty
//    message). A "." line that is preceded or followed by a bare LF/CR is
//    content, never the end (SMTP smuggling defence, CVE-2023-51764).
//  - A leading "." is removed from any line that has other characters,
//    including lines after a bare LF/CR. A lone "." that is not the end
//    marker is kept as a "." line.
//  - Lines longer than 998 octets (RFC 5322 2.1.1) make the message
//    rejected with kLineTooLong; lines are never split or truncated.
//  - max_size counts stored octets (after unstuffing, with CRLF line ends).
//    Past it the content is dropped and the verdict is kTooBig; reading
//    continues to the end marker so the session can answer 552 after it.
//
// Thread-safety: a plain value owned by one session.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hikyaku::smtp {

class DataReader {
 public:
  static constexpr size_t kMaxLineLength = 998;  // octets, without CRLF

  enum class Verdict {
    kOk,
    kTooBig,       // more than max_size octets: 552 5.3.4
    kLineTooLong,  // a line over 998 octets: 554 5.6.0
  };

  struct Progress {
    size_t consumed;  // bytes of the input used (up to and including the end marker)
    bool done;        // the end marker was seen; bytes after it are not consumed
  };

  // max_size == 0 means no limit.
  explicit DataReader(uint64_t max_size = 0);

  // Starts a new message.
  void Reset(uint64_t max_size);

  // Consumes body bytes. Returns done once the end marker is complete; a
  // done reader consumes nothing more until Reset.
  Progress Consume(std::string_view input);

  bool done() const { return state_ == State::kDone; }
  // kTooBig takes precedence over kLineTooLong.
  Verdict verdict() const;
  // Octets of content seen so far, including those dropped past the limit.
  uint64_t size() const { return size_; }
  // True if any content octet had the high bit set.
  bool eight_bit() const { return eight_bit_; }
  // The unstuffed content with CRLF line ends; empty if kTooBig.
  std::string TakeContent();

 private:
  enum class State {
    kLineStart,  // at the start of a line
    kDot,        // a "." at the start of a line
    kDotCr,      // "." then CR at the start of a line
    kInLine,
    kCr,  // a CR inside a line, LF not seen yet
    kDone,
  };

  // Copies the run of plain CRLF lines at input[from..] in one piece and
  // returns where it stopped (`from` if nothing was plain).
  size_t CopyPlainLines(std::string_view input, size_t from);
  void Emit(std::string_view bytes);
  void EndLine();
  // Handles one byte; returns false when it completed the end marker.
  bool Step(char c);

  uint64_t max_size_;
  State state_ = State::kLineStart;
  // The current line began after a CRLF (or at the start of the data), so
  // "." CRLF here is the end marker. False after a bare LF/CR.
  bool hard_line_start_ = true;
  size_t line_length_ = 0;
  uint64_t size_ = 0;
  bool too_big_ = false;
  bool line_too_long_ = false;
  bool eight_bit_ = false;
  std::string content_;
};

}  // namespace hikyaku::smtp
