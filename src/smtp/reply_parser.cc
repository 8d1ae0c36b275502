#include "smtp/reply_parser.h"

#include <utility>

namespace hikyaku::smtp {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Length of a run of 1..3 digits at `pos`, or 0.
size_t DigitRun(std::string_view s, size_t pos) {
  size_t n = 0;
  while (pos + n < s.size() && IsDigit(s[pos + n])) ++n;
  return n >= 1 && n <= 3 ? n : 0;
}

}  // namespace

std::string Reply::Summary() const {
  std::string out = std::to_string(code);
  if (!enhanced.empty()) {
    out += ' ';
    out += enhanced;
  }
  if (!text.empty()) {
    out += ' ';
    size_t start = out.size();
    out += text;
    for (size_t i = start; i < out.size(); ++i)
      if (out[i] == '\n') out[i] = ' ';
  }
  return out;
}

size_t ParseEnhancedCode(std::string_view text) {
  // RFC 3463 section 2: class "." subject "." detail, class = 2 / 4 / 5,
  // subject and detail 1*3digit.
  if (text.size() < 5) return 0;
  if (text[0] != '2' && text[0] != '4' && text[0] != '5') return 0;
  if (text[1] != '.') return 0;
  size_t subject = DigitRun(text, 2);
  if (subject == 0) return 0;
  size_t pos = 2 + subject;
  if (pos >= text.size() || text[pos] != '.') return 0;
  size_t detail = DigitRun(text, pos + 1);
  if (detail == 0) return 0;
  pos += 1 + detail;
  if (pos < text.size() && text[pos] != ' ') return 0;
  return pos;
}

ReplyParser::ReplyParser(size_t max_line, size_t max_lines)
    : max_text_(max_line > 2 ? max_line - 2 : 1), max_lines_(max_lines > 0 ? max_lines : 1) {}

void ReplyParser::Reset() {
  partial_.clear();
  discarding_ = false;
  current_ = Reply{};
  lines_ = 0;
  error_.clear();
}

ReplyParser::Status ReplyParser::Fail(std::string message) {
  error_ = std::move(message);
  current_ = Reply{};
  lines_ = 0;
  return Status::kError;
}

ReplyParser::Event ReplyParser::Consume(std::string_view input) {
  size_t pos = 0;
  while (pos < input.size()) {
    size_t lf = input.find('\n', pos);
    if (discarding_) {
      if (lf == std::string_view::npos) return {Status::kNeedMore, input.size()};
      discarding_ = false;
      pos = lf + 1;
      continue;
    }
    size_t end = lf == std::string_view::npos ? input.size() : lf;
    // Longer than the limit even if the last octet turns out to be the CR of
    // the line end: report now, never buffer it.
    if (partial_.size() + (end - pos) > max_text_ + 1) {
      partial_.clear();
      discarding_ = lf == std::string_view::npos;
      size_t consumed = lf == std::string_view::npos ? input.size() : lf + 1;
      return {Fail("reply line longer than " + std::to_string(max_text_) + " octets"), consumed};
    }
    if (lf == std::string_view::npos) {
      partial_.append(input.substr(pos));
      return {Status::kNeedMore, input.size()};
    }
    std::string_view line;
    if (partial_.empty()) {
      line = input.substr(pos, lf - pos);  // the common case: no copy
    } else {
      partial_.append(input.substr(pos, lf - pos));
      line = partial_;
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > max_text_) {
      partial_.clear();
      return {Fail("reply line longer than " + std::to_string(max_text_) + " octets"), lf + 1};
    }
    Status status = HandleLine(line);
    partial_.clear();
    pos = lf + 1;
    if (status != Status::kNeedMore) return {status, pos};
  }
  return {Status::kNeedMore, input.size()};
}

ReplyParser::Status ReplyParser::HandleLine(std::string_view line) {
  // RFC 5321 4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
  //                            Reply-code [ SP textstring ] CRLF
  // with the first digit 2..5 (4.2.1).
  if (line.size() < 3 || !IsDigit(line[0]) || !IsDigit(line[1]) || !IsDigit(line[2]) ||
      line[0] < '2' || line[0] > '5') {
    return Fail("malformed reply line (no reply code)");
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  bool last = true;
  if (line.size() > 3) {
    if (line[3] == '-') {
      last = false;
    } else if (line[3] != ' ') {
      return Fail("malformed reply line (bad separator after code)");
    }
  }
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view();
  if (lines_ == 0) {
    current_.code = code;
    // RFC 2034 section 3: the enhanced code starts the text of every line.
    size_t n = ParseEnhancedCode(text);
    if (n > 0 && text[0] - '0' == code / 100) {
      current_.enhanced.assign(text.substr(0, n));
      text.remove_prefix(n);
      while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    }
  } else {
    if (code != current_.code) return Fail("malformed reply (code changes between lines)");
    const std::string& enhanced = current_.enhanced;
    if (!enhanced.empty() && text.substr(0, enhanced.size()) == enhanced &&
        (text.size() == enhanced.size() || text[enhanced.size()] == ' ')) {
      text.remove_prefix(enhanced.size());
      while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    }
    current_.text += '\n';
  }
  current_.text.append(text);
  if (++lines_ > max_lines_)
    return Fail("reply longer than " + std::to_string(max_lines_) + " lines");
  if (!last) return Status::kNeedMore;
  done_ = std::move(current_);
  current_ = Reply{};
  lines_ = 0;
  return Status::kReply;
}

}  // namespace hikyaku::smtp
