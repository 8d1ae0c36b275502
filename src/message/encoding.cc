#include "message/encoding.h"

#include <algorithm>
#include <cstdint>

#include "base/base64.h"

namespace hikyaku::message {

namespace {
constexpr char kHex[] = "0123456789ABCDEF";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;  // RFC 2045 6.7 (1): robust decoders accept lowercase
  return -1;
}

// Length of the UTF-8 sequence that starts with `lead`, or 0 if not a lead byte.
size_t SequenceLength(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return 2;
  if (lead >= 0xe0 && lead <= 0xef) return 3;
  if (lead >= 0xf0 && lead <= 0xf4) return 4;
  return 0;
}
}  // namespace

std::string QuotedPrintableEncode(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8 + 16);
  size_t line_len = 0;
  // Appends one encoded unit (1 or 3 octets), inserting a soft break first if
  // the unit would push the line past 75 octets plus the '=' of a soft break.
  auto emit = [&](std::string_view unit, bool last_on_line) {
    size_t limit = last_on_line ? 76 : 75;
    if (line_len + unit.size() > limit) {
      out += "=\r\n";
      line_len = 0;
    }
    out += unit;
    line_len += unit.size();
  };
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = text[i];
    if (c == '\r' || c == '\n') {
      out += "\r\n";
      line_len = 0;
      i += (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ? 2 : 1;
      continue;
    }
    bool at_line_end = i + 1 == text.size() || text[i + 1] == '\r' || text[i + 1] == '\n';
    bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_line_end);
    if (literal) {
      char ch = static_cast<char>(c);
      emit(std::string_view(&ch, 1), at_line_end);
    } else {
      char esc[3] = {'=', kHex[c >> 4], kHex[c & 15]};
      emit(std::string_view(esc, 3), at_line_end);
    }
    ++i;
  }
  return out;
}

std::optional<std::string> QuotedPrintableDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    char c = in[i];
    if (c != '=') {
      out += c;
      ++i;
      continue;
    }
    // Soft line break: '=' then optional transport padding, then CRLF or
    // the end of the input (RFC 2045 6.7 rule 5).
    size_t j = i + 1;
    while (j < in.size() && (in[j] == ' ' || in[j] == '\t')) ++j;
    if (j == in.size()) {
      i = j;
      continue;
    }
    if (in[j] == '\r' || in[j] == '\n') {
      i = j + ((in[j] == '\r' && j + 1 < in.size() && in[j + 1] == '\n') ? 2 : 1);
      continue;
    }
    if (i + 2 >= in.size()) return std::nullopt;
    int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 3;
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    size_t n = SequenceLength(c);
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    if (n == 3) {
      unsigned char c1 = s[i + 1];
      if (c == 0xe0 && c1 < 0xa0) return false;   // overlong
      if (c == 0xed && c1 >= 0xa0) return false;  // surrogates
    } else if (n == 4) {
      unsigned char c1 = s[i + 1];
      if (c == 0xf0 && c1 < 0x90) return false;   // overlong
      if (c == 0xf4 && c1 >= 0x90) return false;  // > U+10FFFF
    }
    i += n;
  }
  return true;
}

bool IsAscii(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

std::string EncodeWords(std::string_view text, size_t first_line_used) {
  // RFC 2047 2: an encoded-word is at most 75 octets; "=?UTF-8?B?" + "?=" is
  // 12, leaving 63 base64 characters = 15 groups = 45 octets of text. The
  // first word must also fit the 78-octet line after `first_line_used`.
  constexpr size_t kOverhead = 12;
  std::string out;
  if (text.empty()) return out;
  size_t i = 0;
  bool first = true;
  do {
    size_t room = 75;
    // Room for at least one 4-octet character (8 base64 characters); if the
    // first line is already that full, the line may pass 78 (a SHOULD,
    // RFC 5322 2.1.1) but never 998.
    if (first && first_line_used < 78) room = std::min<size_t>(75, std::max<size_t>(20, 78 - first_line_used));
    else if (first) room = 20;
    size_t max_octets = (room - kOverhead) / 4 * 3;
    size_t take = 0;
    while (i + take < text.size()) {
      size_t n = SequenceLength(static_cast<unsigned char>(text[i + take]));
      if (n == 0) n = 1;  // invalid input is the caller's problem; never loop forever
      if (take + n > max_octets) break;
      take += n;
    }
    if (!first) out += "\r\n ";
    out += "=?UTF-8?B?";
    out += Base64Encode(text.substr(i, take));
    out += "?=";
    i += take;
    first = false;
  } while (i < text.size());
  return out;
}

}  // namespace hikyaku::message
