#include "smtp/data_reader.h"

#include <algorithm>
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

namespace {

constexpr size_t kInitialCapacity = 16 * 1024;

// True if any byte has the high bit set; eight bytes per step.
bool HasEightBit(std::string_view bytes) {
  constexpr uint64_t kHighBits = 0x8080808080808080ull;
  size_t i = 0;
  uint64_t seen = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes.data() + i, 8);
    seen |= word;
  }
  for (; i < bytes.size(); ++i) seen |= static_cast<unsigned char>(bytes[i]);
  return (seen & kHighBits) != 0;
}

size_t Find(std::string_view input, size_t from, size_t to, char c) {
  const void* hit = std::memchr(input.data() + from, c, to - from);
  return hit != nullptr ? static_cast<size_t>(static_cast<const char*>(hit) - input.data()) : to;
}

}  // namespace

void DataReader::Emit(std::string_view bytes) {
  if (!eight_bit_ && HasEightBit(bytes)) eight_bit_ = true;
  size_ += bytes.size();
  if (too_big_) return;
  if (max_size_ != 0 && size_ > max_size_) {
    too_big_ = true;
    std::string().swap(content_);  // release the memory now, not at Reset
    return;
  }
  // One allocation for a typical message instead of a dozen doublings
  // (TakeContent hands the buffer on, so each message starts empty).
  if (content_.capacity() < kInitialCapacity) {
    content_.reserve(max_size_ != 0 ? std::min<uint64_t>(kInitialCapacity, max_size_) : kInitialCapacity);
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

size_t DataReader::CopyPlainLines(std::string_view input, size_t from) {
  // Plain text: CRLF-terminated lines that need neither unstuffing nor
  // normalising are stored exactly as received, so they are found with
  // memchr and appended in one piece instead of byte by byte. Anything else
  // (a "." or a line end at the start of a line, a bare CR or LF) stops the
  // run and is left to Step.
  size_t i = from;
  bool line_start = state_ == State::kLineStart;
  size_t line = line_start ? 0 : line_length_;
  const size_t n = input.size();
  while (i < n) {
    if (line_start && (input[i] == '.' || input[i] == '\r' || input[i] == '\n')) break;
    const size_t lf = Find(input, i, n, '\n');
    const bool crlf = lf < n && lf > i && input[lf - 1] == '\r';
    // The text of the line: up to the CR of its CRLF, or up to where the
    // input (or a bare LF) cuts it.
    const size_t text_end = crlf ? lf - 1 : lf;
    const size_t cr = Find(input, i, text_end, '\r');
    if (cr < text_end || !crlf) {
      // A bare CR, a bare LF or the end of the input: keep the text before
      // it (the line goes on) and let Step take the rest.
      line += cr - i;
      if (cr > i) line_start = false;
      i = cr;
      break;
    }
    line += text_end - i;
    if (line > kMaxLineLength) line_too_long_ = true;
    i = lf + 1;
    line = 0;
    line_start = true;
  }
  if (i == from) return from;
  Emit(input.substr(from, i - from));
  if (line_start) {
    state_ = State::kLineStart;
    hard_line_start_ = true;
    line_length_ = 0;
  } else {
    state_ = State::kInLine;
    line_length_ = line;
    if (line_length_ > kMaxLineLength) line_too_long_ = true;
  }
  return i;
}

DataReader::Progress DataReader::Consume(std::string_view input) {
  size_t i = 0;
  while (i < input.size()) {
    if (state_ == State::kDone) return {i, true};
    if (state_ == State::kInLine || state_ == State::kLineStart) {
      const size_t next = CopyPlainLines(input, i);
      if (next != i) {
        i = next;
        continue;
      }
    }
    if (!Step(input[i++])) return {i, true};
  }
  return {i, state_ == State::kDone};
}

}  // namespace hikyaku::smtp
