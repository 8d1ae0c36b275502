#include "spool/base64_runs.h"

#include <cstring>

#include "base/base64.h"

namespace hikyaku::spool {

namespace {

uint32_t Value(char c) { return Base64DigitValue(c); }

enum class Line { kInvalid, kFull, kPadded };

// Decodes one line of `length` characters (a multiple of 4) onto `out`.
// Appends nothing unless the whole line is canonical base64.
Line DecodeLine(const char* s, size_t length, std::string& out) {
  const size_t base = out.size();
  const size_t groups = length / 4;
  out.resize(base + groups * 3);
  char* o = out.data() + base;
  for (size_t g = 0; g + 1 < groups; ++g, s += 4, o += 3) {
    const uint32_t a = Value(s[0]), b = Value(s[1]), c = Value(s[2]), d = Value(s[3]);
    if (((a | b | c | d) & kNotBase64Digit) != 0) {
      out.resize(base);
      return Line::kInvalid;
    }
    const uint32_t v = a << 18 | b << 12 | c << 6 | d;
    o[0] = static_cast<char>(v >> 16);
    o[1] = static_cast<char>(v >> 8);
    o[2] = static_cast<char>(v);
  }
  // The last group may carry padding; canonical means the bits that the
  // padding leaves unused are zero (RFC 4648 3.5), so re-encoding the bytes
  // gives the same characters.
  const uint32_t a = Value(s[0]), b = Value(s[1]), c = Value(s[2]), d = Value(s[3]);
  if (((a | b | c | d) & kNotBase64Digit) == 0) {
    const uint32_t v = a << 18 | b << 12 | c << 6 | d;
    o[0] = static_cast<char>(v >> 16);
    o[1] = static_cast<char>(v >> 8);
    o[2] = static_cast<char>(v);
    return Line::kFull;
  }
  if (s[3] == '=' && s[2] == '=' && ((a | b) & kNotBase64Digit) == 0 && (b & 0x0f) == 0) {
    o[0] = static_cast<char>(a << 2 | b >> 4);
    out.resize(out.size() - 2);
    return Line::kPadded;
  }
  if (s[3] == '=' && ((a | b | c) & kNotBase64Digit) == 0 && (c & 0x03) == 0) {
    const uint32_t v = a << 18 | b << 12 | c << 6;
    o[0] = static_cast<char>(v >> 16);
    o[1] = static_cast<char>(v >> 8);
    out.resize(out.size() - 1);
    return Line::kPadded;
  }
  out.resize(base);
  return Line::kInvalid;
}

// The end of the CRLF-terminated line starting at `pos` (the index of its
// LF), or npos when the line has no CRLF.
size_t CrlfLineEnd(std::string_view text, size_t pos) {
  const void* lf = std::memchr(text.data() + pos, '\n', text.size() - pos);
  if (lf == nullptr) return std::string_view::npos;
  const size_t end = static_cast<size_t>(static_cast<const char*>(lf) - text.data());
  if (end == pos || text[end - 1] != '\r') return std::string_view::npos;
  return end;
}

size_t NextLine(std::string_view text, size_t pos) {
  const void* lf = std::memchr(text.data() + pos, '\n', text.size() - pos);
  return lf == nullptr ? text.size() : static_cast<size_t>(static_cast<const char*>(lf) - text.data()) + 1;
}

}  // namespace

std::vector<Base64Run> FindBase64Runs(std::string_view text, size_t min_length, std::string& decoded) {
  std::vector<Base64Run> runs;
  size_t pos = 0;  // always at the start of a line
  while (pos < text.size()) {
    Base64Run run;
    run.offset = pos;
    const size_t decoded_start = decoded.size();
    size_t p = pos;
    size_t last_line = pos;  // start of the last line taken into the run
    size_t lines = 0;
    while (p < text.size()) {
      const size_t lf = CrlfLineEnd(text, p);
      if (lf == std::string_view::npos) break;
      const size_t length = lf - 1 - p;
      if (length == 0 || length % 4 != 0 || length > kMaxBase64LineLength) break;
      if (lines > 0 && length > run.line_length) break;
      const Line line = DecodeLine(text.data() + p, length, decoded);
      if (line == Line::kInvalid) break;
      if (lines == 0) run.line_length = static_cast<uint32_t>(length);
      ++lines;
      last_line = p;
      p = lf + 1;
      // A padded or short line is the run's last.
      if (line == Line::kPadded || length < run.line_length) break;
    }
    run.length = p - pos;
    if (lines > 0 && run.length >= min_length) {
      run.decoded_size = decoded.size() - decoded_start;
      runs.push_back(run);
      pos = p;
      continue;
    }
    decoded.resize(decoded_start);
    // Too short. A run starting at any of its full lines would end at the
    // same place; only its last line may begin a longer one (as lines of
    // its own, shorter length).
    pos = lines > 1 ? last_line : NextLine(text, pos);
  }
  return runs;
}

size_t Base64RunLength(size_t decoded_size, uint32_t line_length) {
  const size_t chars = (decoded_size + 2) / 3 * 4;
  const size_t lines = (chars + line_length - 1) / line_length;
  return chars + 2 * lines;
}

void ExpandBase64Run(std::string_view bytes, uint32_t line_length, std::string& out) {
  const size_t per_line = line_length / 4 * 3;  // bytes per full line
  out.reserve(out.size() + Base64RunLength(bytes.size(), line_length));
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t left = bytes.size();
  while (left > 0) {
    const size_t take = left < per_line ? left : per_line;
    const size_t base = out.size();
    out.resize(base + (take + 2) / 3 * 4 + 2);
    char* o = out.data() + base;
    size_t i = 0;
    for (; i + 3 <= take; i += 3, o += 4) {
      const uint32_t v = uint32_t{in[i]} << 16 | uint32_t{in[i + 1]} << 8 | in[i + 2];
      o[0] = kBase64Alphabet[v >> 18];
      o[1] = kBase64Alphabet[(v >> 12) & 63];
      o[2] = kBase64Alphabet[(v >> 6) & 63];
      o[3] = kBase64Alphabet[v & 63];
    }
    if (i < take) {
      const uint32_t v = uint32_t{in[i]} << 16 | (i + 1 < take ? uint32_t{in[i + 1]} << 8 : 0);
      o[0] = kBase64Alphabet[v >> 18];
      o[1] = kBase64Alphabet[(v >> 12) & 63];
      o[2] = i + 1 < take ? kBase64Alphabet[(v >> 6) & 63] : '=';
      o[3] = '=';
      o += 4;
    }
    o[0] = '\r';
    o[1] = '\n';
    in += take;
    left -= take;
  }
}

}  // namespace hikyaku::spool
