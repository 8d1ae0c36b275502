#include "smtp/data_reader.h"

#include <cstring>

namespace hikyaku::smtp {

// Why bare LF and bare CR become CRLF: stored content is later sent on by
// hikyaku's own SMTP client. A bare CR or LF passed through unchanged can be
// read as a line end by one receiver and not by another, which is exactly
// what SMTP smuggling exploits. Normalising here means every line the
// client re-stuffs is a line every receiver agrees on.
//
// Why only CRLF.CRLF ends the data: Postfix's smtpd_forbid_bare_newline =
// normalize takes the same position (accept bare LF line ends, require the
// standard end marker), which closes CVE-2023-51764 while still accepting
// mail from sloppy scripts.
//
// Why over-long lines reject the message rather than being folded: folding
// would change the content (and break DKIM signatures on it); the sender
// should learn that the message is not RFC 5322 conformant. The session
// answers 554 5.6.0 after the end marker.

DataReader::DataReader(uint64_t max_size) : max_size_(max_size) {}

void DataReader::Reset(uint64_t max_size) {
  max_size_ = max_size;
  state_ = State::kLineStart;
  hard_line_start_ = true;
  line_length_ = 0;
  size_ = 0;
  too_big_ = false;
  line_too_long_ = false;
  eight_bit_ = false;
  content_.clear();
}

DataReader::Verdict DataReader::verdict() const {
  if (too_big_) return Verdict::kTooBig;
  if (line_too_long_) return Verdict::kLineTooLong;
  return Verdict::kOk;
}

std::string DataReader::TakeContent() {
  std::string out = std::move(content_);
  content_.clear();
  return out;
}

void DataReader::Emit(std::string_view bytes) {
  if (!eight_bit_) {
    for (char c : bytes) {
      if (static_cast<unsigned char>(c) >= 0x80) {
        eight_bit_ = true;
        break;
      }
    }
  }
  size_ += bytes.size();
  if (too_big_) return;
  if (max_size_ != 0 && size_ > max_size_) {
    too_big_ = true;
    std::string().swap(content_);  // release the memory now, not at Reset
    return;
  }
  content_.append(bytes);
}

void DataReader::EndLine() {
  Emit("\r\n");
  line_length_ = 0;
}

bool DataReader::Step(char c) {
  // A loop, because a byte that ends a bare CR is then handled afresh as
  // the first byte of the next line.
  while (true) {
    switch (state_) {
      case State::kLineStart:
        if (c == '.') {
          state_ = State::kDot;
        } else if (c == '\r') {
          state_ = State::kCr;
        } else if (c == '\n') {  // bare LF: empty line
          EndLine();
          hard_line_start_ = false;
        } else {
          Emit(std::string_view(&c, 1));
          line_length_ = 1;
          state_ = State::kInLine;
        }
        return true;
      case State::kDot:
        if (c == '\r') {
          state_ = State::kDotCr;
          return true;
        }
        if (c == '\n') {  // "." ended by a bare LF: content, not the end
          Emit(".");
          EndLine();
          hard_line_start_ = false;
          state_ = State::kLineStart;
          return true;
        }
        // RFC 5321 4.5.2: a leading period with more on the line is removed.
        state_ = State::kInLine;
        Emit(std::string_view(&c, 1));
        line_length_ = 1;
        return true;
      case State::kDotCr:
        if (c == '\n') {
          if (hard_line_start_) {
            state_ = State::kDone;
            return false;
          }
          Emit(".");
          EndLine();
          hard_line_start_ = true;
          state_ = State::kLineStart;
          return true;
        }
        // "." then a bare CR: a "." line; `c` starts the next line.
        Emit(".");
        EndLine();
        hard_line_start_ = false;
        state_ = State::kLineStart;
        continue;
      case State::kInLine:
        if (c == '\r') {
          state_ = State::kCr;
        } else if (c == '\n') {
          EndLine();
          hard_line_start_ = false;
          state_ = State::kLineStart;
        } else {
          Emit(std::string_view(&c, 1));
          if (++line_length_ > kMaxLineLength) line_too_long_ = true;
        }
        return true;
      case State::kCr:
        EndLine();
        state_ = State::kLineStart;
        if (c == '\n') {
          hard_line_start_ = true;
          return true;
        }
        hard_line_start_ = false;  // bare CR; `c` starts the next line
        continue;
      case State::kDone:
        return false;
    }
  }
}

DataReader::Progress DataReader::Consume(std::string_view input) {
  size_t i = 0;
  while (i < input.size()) {
    if (state_ == State::kDone) return {i, true};
    if (state_ == State::kInLine) {
      // Fast path: copy the run up to the next CR or LF in one piece.
      size_t end = i;
      while (end < input.size() && input[end] != '\r' && input[end] != '\n') ++end;
      if (end > i) {
        Emit(input.substr(i, end - i));
        line_length_ += end - i;
        if (line_length_ > kMaxLineLength) line_too_long_ = true;
        i = end;
        continue;
      }
    }
    if (!Step(input[i++])) return {i, true};
  }
  return {i, state_ == State::kDone};
}

}  // namespace hikyaku::smtp
