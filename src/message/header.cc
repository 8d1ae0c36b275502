#include "message/header.h"

#include <unordered_set>

#include "message/address.h"

namespace hikyaku::message {

namespace {

// One physical line of the header block: [begin, content_end) is the text,
// [content_end, next) the line ending.
struct Line {
  size_t begin;
  size_t content_end;
  size_t next;
};

Line LineAt(std::string_view raw, size_t pos) {
  size_t nl = raw.find('\n', pos);
  if (nl == std::string_view::npos) return {pos, raw.size(), raw.size()};
  size_t end = nl;
  if (end > pos && raw[end - 1] == '\r') --end;
  return {pos, end, nl + 1};
}

bool IsWsp(char c) { return c == ' ' || c == '\t'; }

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (Lower(a[i]) != Lower(b[i])) return false;
  return true;
}

// A field: its first line starts at `begin`; `next` is after its last
// continuation line. name/value views refer to the first line only.
struct Field {
  size_t begin;
  size_t next;
  std::string_view name;
};

// Calls fn(Field) for every field of the header block.
template <typename Fn>
void ForEachField(std::string_view raw, Fn fn) {
  size_t end = FindHeaderEnd(raw).header_end;
  size_t pos = 0;
  while (pos < end) {
    Line first = LineAt(raw, pos);
    size_t next = first.next;
    while (next < end && IsWsp(raw[next])) next = LineAt(raw, next).next;
    std::string_view text = raw.substr(first.begin, first.content_end - first.begin);
    size_t colon = text.find(':');
    std::string_view name = colon == std::string_view::npos ? std::string_view() : text.substr(0, colon);
    // obs-optional (RFC 5322 4.5.3) allows WSP before the colon.
    while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
    fn(Field{first.begin, next, name});
    pos = next;
  }
}

std::string Unfold(std::string_view field_text) {
  std::string out;
  out.reserve(field_text.size());
  for (char c : field_text)
    if (c != '\r' && c != '\n') out += c;
  size_t b = 0, e = out.size();
  while (b < e && IsWsp(out[b])) ++b;
  while (e > b && IsWsp(out[e - 1])) --e;
  return out.substr(b, e - b);
}

}  // namespace

HeaderBounds FindHeaderEnd(std::string_view raw) {
  size_t pos = 0;
  while (pos < raw.size()) {
    Line line = LineAt(raw, pos);
    if (line.content_end == line.begin && line.next > line.begin) return {pos, line.next};
    if (line.next == raw.size() && line.content_end == raw.size()) break;  // no final newline
    pos = line.next;
  }
  return {raw.size(), raw.size()};
}

bool IsValidFieldName(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name)
    if (c < 33 || c > 126 || c == ':') return false;
  return true;
}

Result<void> ValidateHeaderBlock(std::string_view raw) {
  size_t end = FindHeaderEnd(raw).header_end;
  if (end == 0) return Fail(ErrorCode::kInvalidArgument, "message has no header fields");
  size_t pos = 0;
  int number = 0;
  while (pos < end) {
    Line line = LineAt(raw, pos);
    ++number;
    std::string_view text = raw.substr(line.begin, line.content_end - line.begin);
    if (line.content_end - line.begin > 998)
      return Fail(ErrorCode::kInvalidArgument,
                  "header line " + std::to_string(number) + " is longer than 998 octets");
    if (text.find('\r') != std::string_view::npos || text.find('\0') != std::string_view::npos)
      return Fail(ErrorCode::kInvalidArgument,
                  "header line " + std::to_string(number) + " contains a bare CR or NUL");
    if (IsWsp(text.front())) {
      if (number == 1)
        return Fail(ErrorCode::kInvalidArgument, "header line 1 is a continuation line");
    } else {
      size_t colon = text.find(':');
      std::string_view name = colon == std::string_view::npos ? text : text.substr(0, colon);
      while (!name.empty() && IsWsp(name.back())) name.remove_suffix(1);
      if (colon == std::string_view::npos || !IsValidFieldName(name))
        return Fail(ErrorCode::kInvalidArgument,
                    "header line " + std::to_string(number) + " is not a \"Name: value\" field");
    }
    pos = line.next;
  }
  return {};
}

std::vector<std::string> GetHeaderValues(std::string_view raw, std::string_view name) {
  std::vector<std::string> out;
  ForEachField(raw, [&](const Field& f) {
    if (f.name.empty() || !EqualsIgnoreCase(f.name, name)) return;
    std::string_view text = raw.substr(f.begin, f.next - f.begin);
    out.push_back(Unfold(text.substr(text.find(':') + 1)));
  });
  return out;
}

bool HasHeader(std::string_view raw, std::string_view name) {
  bool found = false;
  ForEachField(raw, [&](const Field& f) { found |= !f.name.empty() && EqualsIgnoreCase(f.name, name); });
  return found;
}

std::string RemoveHeader(std::string_view raw, std::string_view name) {
  std::string out;
  out.reserve(raw.size());
  size_t copied = 0;
  ForEachField(raw, [&](const Field& f) {
    if (f.name.empty() || !EqualsIgnoreCase(f.name, name)) return;
    out.append(raw.substr(copied, f.begin - copied));
    copied = f.next;
  });
  out.append(raw.substr(copied));
  return out;
}

Result<std::string> PrependHeader(std::string_view raw, std::string_view name,
                                  std::string_view value) {
  if (!IsValidFieldName(name))
    return Fail(ErrorCode::kInvalidArgument, "invalid header field name \"" + std::string(name) + "\"");
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\0')
      return Fail(ErrorCode::kInvalidArgument, std::string(name) + ": value contains NUL");
    if (c == '\r' || c == '\n') {
      // Only folding is allowed: CRLF followed by WSP.
      bool folding = c == '\r' && i + 2 < value.size() && value[i + 1] == '\n' && IsWsp(value[i + 2]);
      if (!folding)
        return Fail(ErrorCode::kInvalidArgument, std::string(name) + ": value contains CR or LF");
      ++i;
    }
  }
  std::string out;
  out.reserve(name.size() + value.size() + 4 + raw.size());
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
  out.append(raw);
  return out;
}

Result<std::vector<std::string>> ExtractRecipientAddresses(std::string_view raw) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  Result<void> failure;
  ForEachField(raw, [&](const Field& f) {
    if (!failure || f.name.empty()) return;
    if (!EqualsIgnoreCase(f.name, "To") && !EqualsIgnoreCase(f.name, "Cc") &&
        !EqualsIgnoreCase(f.name, "Bcc"))
      return;
    std::string_view text = raw.substr(f.begin, f.next - f.begin);
    std::string value = Unfold(text.substr(text.find(':') + 1));
    auto list = ParseAddressList(value);
    if (!list) {
      failure = Fail(ErrorCode::kInvalidArgument,
                     std::string(f.name) + ": " + list.error().message());
      return;
    }
    for (Mailbox& mb : *list)
      if (seen.insert(mb.addr_spec).second) out.push_back(std::move(mb.addr_spec));
  });
  if (!failure) return tl::unexpected(failure.error());
  return out;
}

}  // namespace hikyaku::message
