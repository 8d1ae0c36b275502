#include "message/mime_builder.h"

#include <array>
#include <random>

#include "message/address.h"
#include "message/encoding.h"
#include "message/header.h"
#include "message/received.h"

namespace hikyaku::message {

namespace {

constexpr size_t kMaxLine = 998;    // RFC 5322 2.1.1 MUST
constexpr size_t kFoldWidth = 78;   // RFC 5322 2.1.1 SHOULD

tl::unexpected<Error> FieldError(std::string_view pointer, std::string_view why) {
  std::string msg(pointer);
  msg += ": ";
  msg += why;
  return Fail(ErrorCode::kInvalidArgument, std::move(msg));
}

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (Lower(a[i]) != Lower(b[i])) return false;
  return true;
}

// Header injection (CR/LF) and NUL are refused in every value: a value that
// carries its own line break could add fields such as Bcc.
Result<void> CheckValue(std::string_view pointer, std::string_view value) {
  for (char c : value) {
    if (c == '\r' || c == '\n') return FieldError(pointer, "contains CR or LF (header injection)");
    if (c == '\0') return FieldError(pointer, "contains NUL");
  }
  if (!IsValidUtf8(value)) return FieldError(pointer, "is not valid UTF-8");
  return {};
}

std::mt19937_64& Rng() {
  thread_local std::mt19937_64 rng = [] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }();
  return rng;
}

std::string RandomToken(size_t n) {
  static constexpr char kAlnum[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  std::uniform_int_distribution<int> dist(0, 61);
  std::string out(n, '0');
  for (char& c : out) c = kAlnum[dist(Rng())];
  return out;
}

bool IsPlainPhrase(std::string_view name) {
  // atext words separated by single spaces (RFC 5322 3.2.5 phrase).
  if (name.empty() || name.front() == ' ' || name.back() == ' ') return false;
  char prev = 0;
  for (char c : name) {
    bool atext = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
    if (c == ' ' && prev == ' ') return false;
    if (!atext && c != ' ') return false;
    prev = c;
  }
  return name.find("=?") == std::string_view::npos;
}

bool IsPrintableAscii(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c >= 0x7f) return false;
  return true;
}

// Renders "Name <addr>" for a header; `column` is where it starts on the line.
std::string RenderMailbox(const Mailbox& mb, size_t column) {
  if (mb.display_name.empty()) return mb.addr_spec;
  std::string out;
  if (IsPlainPhrase(mb.display_name)) {
    out = mb.display_name;
  } else if (IsPrintableAscii(mb.display_name) && mb.display_name.find("=?") == std::string::npos) {
    out += '"';
    for (char c : mb.display_name) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  } else {
    // Non-ASCII, control characters, or text that would read as an
    // encoded-word: RFC 2047 5(3) allows encoded-words as phrase words.
    out = EncodeWords(mb.display_name, column);
  }
  out += " <";
  out += mb.addr_spec;
  out += '>';
  return out;
}

size_t LastLineLength(std::string_view s) {
  size_t nl = s.rfind('\n');
  return nl == std::string_view::npos ? s.size() : s.size() - nl - 1;
}

// "Name: a, b, c" folded between addresses.
std::string RenderAddressField(std::string_view name, const std::vector<Mailbox>& list) {
  std::string out(name);
  out += ':';
  for (size_t i = 0; i < list.size(); ++i) {
    size_t col = LastLineLength(out);
    std::string rendered = RenderMailbox(list[i], col + 1);
    size_t first_line = rendered.find('\r') == std::string::npos ? rendered.size() : rendered.find('\r');
    if (i > 0 && col + 1 + first_line > kFoldWidth) {
      out += "\r\n";
      rendered = RenderMailbox(list[i], 1);
    }
    out += ' ';
    out += rendered;
    if (i + 1 < list.size()) out += ',';
  }
  out += "\r\n";
  return out;
}

// Unstructured value: folded at existing spaces (RFC 5322 2.2.3) when ASCII,
// encoded-words otherwise.
std::string RenderUnstructured(std::string_view name, std::string_view value) {
  std::string out(name);
  out += ':';
  if (value.empty()) return out + "\r\n";
  bool needs_encoding = !IsPrintableAscii(value) || value.find("=?") != std::string_view::npos;
  if (!needs_encoding) {
    // Tabs are printable-equivalent WSP here; IsPrintableAscii excludes them,
    // so values with tabs are encoded, which keeps this loop simple.
    size_t col = out.size();
    out += ' ';
    ++col;
    size_t i = 0;
    bool first_word = true;
    while (i < value.size()) {
      size_t sp = value.find(' ', i + 1);
      if (sp == std::string_view::npos) sp = value.size();
      std::string_view chunk = value.substr(i, sp - i);  // includes its leading space
      if (!first_word && chunk.size() > 1 && col + chunk.size() > kFoldWidth) {
        out += "\r\n";
        col = 0;
      }
      out += chunk;
      col += chunk.size();
      first_word = false;
      i = sp;
    }
  } else {
    out += ' ';
    out += EncodeWords(value, out.size());
  }
  out += "\r\n";
  return out;
}

bool LinesWithin(std::string_view s, size_t limit) {
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find("\r\n", start);
    if (nl == std::string_view::npos) nl = s.size();
    if (nl - start > limit) return false;
    start = nl + 2;
  }
  return true;
}

std::string NormalizeLineEndings(std::string_view in) {
  std::string out;
  out.reserve(in.size() + in.size() / 32);
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '\r') {
      out += "\r\n";
      if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out += c;
    }
  }
  return out;
}

struct EncodedPart {
  std::string headers;  // Content-Type and Content-Transfer-Encoding lines
  std::string body;
};

EncodedPart EncodePart(std::string_view content, std::string_view subtype) {
  EncodedPart part;
  part.headers = "Content-Type: text/";
  part.headers += subtype;
  part.headers += "; charset=utf-8\r\n";
  std::string normalized = NormalizeLineEndings(content);
  bool seven_bit = IsAscii(normalized) && normalized.find('\0') == std::string::npos &&
                   LinesWithin(normalized, kMaxLine);
  if (seven_bit) {
    part.headers += "Content-Transfer-Encoding: 7bit\r\n";
    part.body = std::move(normalized);
  } else {
    part.headers += "Content-Transfer-Encoding: quoted-printable\r\n";
    part.body = QuotedPrintableEncode(content);
  }
  return part;
}

constexpr std::array<std::string_view, 8> kReservedHeaders = {
    "From", "To", "Cc", "Bcc", "Subject", "MIME-Version", "Content-Type",
    "Content-Transfer-Encoding"};

constexpr std::array<std::string_view, 5> kAddressHeaders = {
    "Reply-To", "Sender", "Errors-To", "Disposition-Notification-To", "Return-Receipt-To"};

template <size_t N>
bool IsOneOf(std::string_view name, const std::array<std::string_view, N>& set) {
  for (std::string_view s : set)
    if (EqualsIgnoreCase(name, s)) return true;
  return false;
}

Result<Mailbox> ParseAddress(std::string_view pointer, std::string_view value) {
  if (auto ok = CheckValue(pointer, value); !ok) return tl::unexpected(ok.error());
  auto mb = ParseMailbox(value);
  if (!mb) return FieldError(pointer, "not a valid address (" + mb.error().message() + ")");
  if (!IsValidAddrSpec(mb->addr_spec))
    return FieldError(pointer, "not a valid address \"" + mb->addr_spec + "\"");
  return mb;
}

}  // namespace

std::string JsonPointerToken(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  for (char c : token) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

std::string_view ErrorField(const Error& error) {
  std::string_view m = error.message();
  if (m.empty() || m.front() != '/') return {};
  size_t sep = m.find(": ");
  return sep == std::string_view::npos ? std::string_view() : m.substr(0, sep);
}

Result<std::string> BuildMessage(const MessageDraft& d) {
  if (!d.text && !d.html) return FieldError("/text", "neither text nor html given");

  std::string head;
  head.reserve(1024);

  // Extra headers are checked first so that Date/Message-ID overrides are known.
  std::string extra;
  bool has_date = false, has_message_id = false;
  for (const auto& [name, value] : d.headers) {
    std::string pointer = "/headers/" + JsonPointerToken(name);
    if (name.find_first_of("\r\n") != std::string::npos)
      return FieldError(pointer, "header name contains CR or LF");
    if (!IsValidFieldName(name))
      return FieldError(pointer, "not a valid header name (printable ASCII without ':' or space)");
    if (IsOneOf(name, kReservedHeaders))
      return FieldError(pointer, "header is set by the message builder and cannot be given");
    if (auto ok = CheckValue(pointer, value); !ok) return tl::unexpected(ok.error());
    std::string field;
    if (IsOneOf(name, kAddressHeaders)) {
      auto list = ParseAddressList(value);
      if (!list) return FieldError(pointer, "not a valid address list (" + list.error().message() + ")");
      for (const Mailbox& mb : *list)
        if (!IsValidAddrSpec(mb.addr_spec))
          return FieldError(pointer, "not a valid address \"" + mb.addr_spec + "\"");
      field = RenderAddressField(name, *list);
    } else {
      field = RenderUnstructured(name, value);
    }
    if (!LinesWithin(field, kMaxLine))
      return FieldError(pointer, "value has a word too long to fold under 998 octets");
    has_date |= EqualsIgnoreCase(name, "Date");
    has_message_id |= EqualsIgnoreCase(name, "Message-ID");
    extra += field;
  }

  if (!has_date) {
    head += "Date: ";
    head += FormatRfc5322Date(d.date);
    head += "\r\n";
  }

  auto from = ParseAddress("/from", d.from);
  if (!from) return tl::unexpected(from.error());
  std::string from_field = RenderAddressField("From", {*from});
  if (!LinesWithin(from_field, kMaxLine)) return FieldError("/from", "display name too long");
  head += from_field;

  auto address_field = [&](std::string_view header, std::string_view key,
                           const std::vector<std::string>& values) -> Result<void> {
    if (values.empty()) return {};
    std::vector<Mailbox> list;
    list.reserve(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      std::string pointer = "/" + std::string(key) + "/" + std::to_string(i);
      auto mb = ParseAddress(pointer, values[i]);
      if (!mb) return tl::unexpected(mb.error());
      std::string one = RenderMailbox(*mb, 1);
      if (!LinesWithin(one, kMaxLine - 2)) return FieldError(pointer, "display name too long");
      list.push_back(std::move(*mb));
    }
    head += RenderAddressField(header, list);
    return {};
  };
  if (auto r = address_field("To", "to", d.to); !r) return tl::unexpected(r.error());
  if (auto r = address_field("Cc", "cc", d.cc); !r) return tl::unexpected(r.error());

  if (auto ok = CheckValue("/subject", d.subject); !ok) return tl::unexpected(ok.error());
  if (!d.subject.empty()) {
    std::string subject = RenderUnstructured("Subject", d.subject);
    if (!LinesWithin(subject, kMaxLine))
      return FieldError("/subject", "has a word too long to fold under 998 octets");
    head += subject;
  }

  if (!has_message_id) {
    if (d.message_id_domain.empty() || !IsValidAddrSpec("x@" + d.message_id_domain))
      return FieldError("/message_id_domain", "not a valid domain");
    // RFC 5322 3.6.4: id-left is unique per host: milliseconds plus 96
    // random bits make collisions across processes negligible.
    head += "Message-ID: <";
    head += std::to_string(ToUnixMillis(d.date));
    head += '.';
    head += RandomToken(16);
    head += '@';
    head += d.message_id_domain;
    head += ">\r\n";
  }
  head += extra;
  head += "MIME-Version: 1.0\r\n";

  if (d.text && !IsValidUtf8(*d.text)) return FieldError("/text", "is not valid UTF-8");
  if (d.html && !IsValidUtf8(*d.html)) return FieldError("/html", "is not valid UTF-8");

  if (d.text && d.html) {
    EncodedPart text = EncodePart(*d.text, "plain");
    EncodedPart html = EncodePart(*d.html, "html");
    // RFC 2046 5.1.1: the boundary must not appear in any encapsulated part.
    // "=_" cannot occur in quoted-printable output; 7bit parts are searched.
    std::string boundary;
    do {
      boundary = "=_hk_" + RandomToken(24);
    } while (text.body.find(boundary) != std::string::npos ||
             html.body.find(boundary) != std::string::npos);
    std::string out = std::move(head);
    out.reserve(out.size() + text.body.size() + html.body.size() + 512);
    out += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n";
    out += "This is a multi-part message in MIME format.\r\n";
    for (EncodedPart* part : {&text, &html}) {
      out += "--" + boundary + "\r\n";
      out += part->headers;
      out += "\r\n";
      out += part->body;
      out += "\r\n";  // belongs to the following delimiter (RFC 2046 5.1.1)
    }
    out += "--" + boundary + "--\r\n";
    return out;
  }

  EncodedPart part = d.text ? EncodePart(*d.text, "plain") : EncodePart(*d.html, "html");
  std::string out = std::move(head);
  out += part.headers;
  out += "\r\n";
  out += part.body;
  // The spool and SMTP DATA expect content that ends with a line break.
  if (!out.ends_with("\r\n")) out += "\r\n";
  return out;
}

}  // namespace hikyaku::message
