#include "smtp/command_parser.h"

#include <arpa/inet.h>

#include <array>
#include <limits>

namespace hikyaku::smtp {
namespace {

// RFC 5321 4.5.3.1.1-3.
constexpr size_t kMaxLocalPart = 64;
constexpr size_t kMaxDomain = 255;
constexpr size_t kMaxMailbox = 254;  // a Path is at most 256 octets with its brackets

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLetDig(char c) { return IsAlpha(c) || IsDigit(c); }

char Upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Upper(a[i]) != Upper(b[i])) return false;
  }
  return true;
}

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsNoCase(s.substr(0, prefix.size()), prefix);
}

std::string ToUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Upper(c);
  return out;
}

// RFC 5321 4.1.2 atext (from RFC 5322 3.2.3).
bool IsAtext(char c) {
  if (IsLetDig(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '/':
    case '=':
    case '?':
    case '^':
    case '_':
    case '`':
    case '{':
    case '|':
    case '}':
    case '~':
      return true;
    default:
      return false;
  }
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Dot-string = Atom *("." Atom)
bool IsDotString(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!IsAtext(c)) {
      return false;
    }
    prev = c;
  }
  return true;
}

// Quoted-string = DQUOTE *QcontentSMTP DQUOTE, with qtextSMTP = %d32-33 /
// %d35-91 / %d93-126 and quoted-pairSMTP = "\" %d32-126.
bool IsQuotedString(std::string_view s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      if (i + 2 >= s.size()) return false;  // the escape would eat the closing quote
      unsigned char next = static_cast<unsigned char>(s[++i]);
      if (next < 32 || next > 126) return false;
    } else if (c == '"' || c < 32 || c > 126) {
      return false;
    }
  }
  return true;
}

// Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str]
bool IsDomainName(std::string_view s) {
  if (s.empty() || s.size() > kMaxDomain) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? s.npos : dot - start);
    if (label.empty() || label.size() > 63) return false;
    if (!IsLetDig(label.front()) || !IsLetDig(label.back())) return false;
    for (char c : label) {
      if (!IsLetDig(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
// General-address-literal ) "]"   (RFC 5321 4.1.3)
bool IsAddressLiteral(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') return false;
  std::string_view body = s.substr(1, s.size() - 2);
  std::array<unsigned char, 16> buf{};
  if (StartsWithNoCase(body, "IPv6:")) {
    std::string v6(body.substr(5));
    return inet_pton(AF_INET6, v6.c_str(), buf.data()) == 1;
  }
  size_t colon = body.find(':');
  if (colon == std::string_view::npos) {
    // inet_pton(AF_INET) accepts only the dotted-quad form RFC 5321 asks for.
    std::string v4(body);
    return inet_pton(AF_INET, v4.c_str(), buf.data()) == 1;
  }
  // General-address-literal = Standardized-tag ":" 1*dcontent
  std::string_view tag = body.substr(0, colon);
  std::string_view content = body.substr(colon + 1);
  if (tag.empty() || !IsLetDig(tag.back())) return false;
  for (char c : tag) {
    if (!IsLetDig(c) && c != '-') return false;
  }
  if (content.empty()) return false;
  for (char c : content) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!((u >= 33 && u <= 90) || (u >= 94 && u <= 126))) return false;
  }
  return true;
}

bool IsDomainOrLiteral(std::string_view s) {
  if (!s.empty() && s.front() == '[') return s.size() <= kMaxDomain && IsAddressLiteral(s);
  return IsDomainName(s);
}

// Finds the '>' closing a path that starts at s[0] == '<', skipping quoted
// strings (a quoted local part may contain '>'). Returns npos if none.
size_t FindPathEnd(std::string_view s) {
  bool quoted = false;
  for (size_t i = 1; i < s.size(); ++i) {
    char c = s[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      return i;
    }
  }
  return std::string_view::npos;
}

// Strips the source route ("@a,@b:") of a path (RFC 5321 4.1.1.3 and
// appendix C: servers SHOULD ignore it). Returns false if it is malformed.
bool StripSourceRoute(std::string_view& inner) {
  if (inner.empty() || inner.front() != '@') return true;
  size_t colon = inner.find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view route = inner.substr(0, colon);
  size_t start = 0;
  while (start <= route.size()) {
    size_t comma = route.find(',', start);
    std::string_view at_domain =
        route.substr(start, comma == std::string_view::npos ? route.npos : comma - start);
    if (at_domain.size() < 2 || at_domain.front() != '@' ||
        !IsDomainOrLiteral(at_domain.substr(1))) {
      return false;
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  inner.remove_prefix(colon + 1);
  return true;
}

tl::unexpected<CommandError> Error(CommandErrorKind kind, std::string detail) {
  return tl::unexpected<CommandError>(CommandError{kind, std::move(detail)});
}

// esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool IsEsmtpKeyword(std::string_view s) {
  if (s.empty() || !IsLetDig(s.front())) return false;
  for (char c : s) {
    if (!IsLetDig(c) && c != '-') return false;
  }
  return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126)
bool IsEsmtpValue(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 33 || u > 126 || u == '=') return false;
  }
  return true;
}

// MAIL FROM:<path> [params] / RCPT TO:<path> [params]; `rest` starts after
// the verb's single space.
tl::expected<Command, CommandError> ParsePathCommand(Verb verb, std::string_view rest) {
  const bool mail = verb == Verb::kMail;
  const std::string_view prefix = mail ? "FROM:" : "TO:";
  const char* usage = mail ? "Syntax: MAIL FROM:<address>" : "Syntax: RCPT TO:<address>";
  const CommandErrorKind bad_address =
      mail ? CommandErrorKind::kBadSenderAddress : CommandErrorKind::kBadRecipientAddress;
  rest = TrimSpaces(rest);
  if (!StartsWithNoCase(rest, prefix)) return Error(CommandErrorKind::kSyntax, usage);
  rest.remove_prefix(prefix.size());
  // RFC 5321 forbids the space, but many clients send "MAIL FROM: <a@b>".
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty() || rest.front() != '<') return Error(CommandErrorKind::kSyntax, usage);
  size_t end = FindPathEnd(rest);
  if (end == std::string_view::npos) return Error(CommandErrorKind::kSyntax, usage);
  std::string_view inner = rest.substr(1, end - 1);
  std::string_view params = rest.substr(end + 1);
  if (!params.empty() && params.front() != ' ') return Error(CommandErrorKind::kSyntax, usage);

  Command command{.verb = verb};
  if (inner.empty()) {
    if (!mail) return Error(bad_address, "Bad recipient address syntax");
  } else {
    if (!StripSourceRoute(inner) || !IsValidMailbox(inner)) {
      return Error(bad_address,
                   mail ? "Bad sender address syntax" : "Bad recipient address syntax");
    }
    command.path = std::string(inner);
  }

  bool seen_size = false, seen_body = false, seen_auth = false;
  params = TrimSpaces(params);
  while (!params.empty()) {
    size_t space = params.find(' ');
    std::string_view param = params.substr(0, space);
    params =
        space == std::string_view::npos ? std::string_view() : TrimSpaces(params.substr(space));
    size_t eq = param.find('=');
    std::string_view keyword = param.substr(0, eq);
    std::optional<std::string_view> value;
    if (eq != std::string_view::npos) value = param.substr(eq + 1);
    if (!IsEsmtpKeyword(keyword) || (value && !IsEsmtpValue(*value))) {
      return Error(CommandErrorKind::kSyntax, "Bad parameter syntax");
    }
    if (mail && EqualsNoCase(keyword, "SIZE")) {
      // RFC 1870 section 3: size-value = 1*20DIGIT
      if (seen_size) return Error(CommandErrorKind::kBadParameterValue, "Duplicate SIZE parameter");
      seen_size = true;
      if (!value || value->size() > 20) {
        return Error(CommandErrorKind::kBadParameterValue, "Bad SIZE parameter");
      }
      uint64_t n = 0;
      for (char c : *value) {
        if (!IsDigit(c)) return Error(CommandErrorKind::kBadParameterValue, "Bad SIZE parameter");
        uint64_t digit = static_cast<uint64_t>(c - '0');
        if (n > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
          n = std::numeric_limits<uint64_t>::max();
        } else {
          n = n * 10 + digit;
        }
      }
      command.size = n;
    } else if (mail && EqualsNoCase(keyword, "BODY")) {
      // RFC 6152 section 2: BODY=7BIT / BODY=8BITMIME. BINARYMIME (RFC 3030)
      // is not offered, so it is an unsupported parameter (555).
      if (seen_body) return Error(CommandErrorKind::kBadParameterValue, "Duplicate BODY parameter");
      seen_body = true;
      if (value && EqualsNoCase(*value, "7BIT")) {
        command.body = BodyType::k7Bit;
      } else if (value && EqualsNoCase(*value, "8BITMIME")) {
        command.body = BodyType::k8BitMime;
      } else {
        return Error(CommandErrorKind::kUnknownParameter, "Unsupported BODY type");
      }
    } else if (mail && EqualsNoCase(keyword, "AUTH")) {
      // RFC 4954 section 5: clients that authenticated may send AUTH=<mailbox>
      // or AUTH=<>. It only informs trusted relays; accepted and ignored.
      if (seen_auth || !value)
        return Error(CommandErrorKind::kBadParameterValue, "Bad AUTH parameter");
      seen_auth = true;
    } else {
      return Error(CommandErrorKind::kUnknownParameter,
                   "Unsupported parameter " + ToUpper(keyword));
    }
  }
  return command;
}

struct VerbName {
  std::string_view name;
  Verb verb;
};

constexpr VerbName kVerbs[] = {
    {"HELO", Verb::kHelo}, {"EHLO", Verb::kEhlo},         {"MAIL", Verb::kMail},
    {"RCPT", Verb::kRcpt}, {"DATA", Verb::kData},         {"RSET", Verb::kRset},
    {"NOOP", Verb::kNoop}, {"QUIT", Verb::kQuit},         {"VRFY", Verb::kVrfy},
    {"HELP", Verb::kHelp}, {"STARTTLS", Verb::kStartTls}, {"AUTH", Verb::kAuth},
};

}  // namespace

std::string_view ToString(Verb verb) {
  for (const auto& v : kVerbs) {
    if (v.verb == verb) return v.name;
  }
  return "?";
}

CommandLineReader::CommandLineReader(size_t max_line)
    : max_text_(max_line >= 3 ? max_line - 2 : 1) {}

void CommandLineReader::Reset() {
  line_.clear();
  complete_ = false;
  discarding_ = false;
}

CommandLineReader::Event CommandLineReader::Consume(std::string_view input) {
  if (complete_) {
    line_.clear();
    complete_ = false;
  }
  const size_t lf = input.find('\n');
  const size_t text_end = lf == std::string_view::npos ? input.size() : lf;
  const size_t used = lf == std::string_view::npos ? input.size() : lf + 1;
  if (discarding_) {
    if (lf == std::string_view::npos) return {Status::kNeedMore, used};
    discarding_ = false;
    return {Status::kTooLong, used};
  }
  // The buffer may hold one octet more than the limit: the CR of a CRLF
  // whose LF has not arrived yet.
  if (line_.size() + text_end > max_text_ + 1) {
    line_.clear();
    if (lf == std::string_view::npos) {
      discarding_ = true;
      return {Status::kNeedMore, used};
    }
    return {Status::kTooLong, used};
  }
  line_.append(input.substr(0, text_end));
  if (lf == std::string_view::npos) return {Status::kNeedMore, used};
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  if (line_.size() > max_text_) {
    line_.clear();
    return {Status::kTooLong, used};
  }
  complete_ = true;
  return {Status::kLine, used};
}

bool IsValidMailbox(std::string_view mailbox) {
  if (mailbox.empty() || mailbox.size() > kMaxMailbox) return false;
  size_t at;
  if (mailbox.front() == '"') {
    // Find the closing quote, honouring quoted-pairs.
    size_t i = 1;
    for (; i < mailbox.size(); ++i) {
      if (mailbox[i] == '\\') {
        ++i;
      } else if (mailbox[i] == '"') {
        break;
      }
    }
    if (i >= mailbox.size()) return false;
    at = i + 1;
    if (at >= mailbox.size() || mailbox[at] != '@') return false;
    if (!IsQuotedString(mailbox.substr(0, at))) return false;
  } else {
    at = mailbox.find('@');
    if (at == std::string_view::npos) return false;
    if (!IsDotString(mailbox.substr(0, at))) return false;
  }
  if (at > kMaxLocalPart) return false;
  return IsDomainOrLiteral(mailbox.substr(at + 1));
}

tl::expected<Command, CommandError> ParseCommand(std::string_view line) {
  for (char c : line) {
    unsigned char u = static_cast<unsigned char>(c);
    // RFC 5321 2.4: commands are US-ASCII. NUL and CR never belong in a
    // command line (a stray CR is how line-end confusion attacks start).
    if (u == 0 || u == '\r' || u >= 0x80) {
      return Error(CommandErrorKind::kBadEncoding, "Invalid character in command");
    }
  }
  size_t space = line.find(' ');
  std::string_view verb_text = line.substr(0, space);
  std::string_view rest =
      space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  const VerbName* found = nullptr;
  for (const auto& v : kVerbs) {
    if (EqualsNoCase(verb_text, v.name)) {
      found = &v;
      break;
    }
  }
  if (found == nullptr) return Error(CommandErrorKind::kUnknownCommand, "Command unrecognized");
  const Verb verb = found->verb;
  std::string_view args = TrimSpaces(rest);

  switch (verb) {
    case Verb::kMail:
    case Verb::kRcpt:
      return ParsePathCommand(verb, rest);
    case Verb::kHelo:
    case Verb::kEhlo: {
      if (args.empty()) {
        return Error(CommandErrorKind::kSyntax,
                     verb == Verb::kHelo ? "Syntax: HELO hostname" : "Syntax: EHLO hostname");
      }
      // Only the first word counts; some clients append more.
      size_t end = args.find_first_of(" \t");
      return Command{.verb = verb, .argument = std::string(args.substr(0, end))};
    }
    case Verb::kData:
    case Verb::kRset:
    case Verb::kStartTls:
      if (!args.empty()) {
        return Error(CommandErrorKind::kSyntax, "Syntax: " + std::string(found->name));
      }
      return Command{.verb = verb};
    case Verb::kQuit:
      // Arguments are ignored: refusing to let a client leave helps no one.
      return Command{.verb = verb};
    case Verb::kNoop:
    case Verb::kHelp:
      return Command{.verb = verb, .argument = std::string(args)};
    case Verb::kVrfy:
      if (args.empty()) return Error(CommandErrorKind::kSyntax, "Syntax: VRFY address");
      return Command{.verb = verb, .argument = std::string(args)};
    case Verb::kAuth: {
      // RFC 4954 section 4: AUTH mechanism [initial-response]
      if (args.empty()) return Error(CommandErrorKind::kSyntax, "Syntax: AUTH mechanism");
      size_t sp = args.find(' ');
      std::string_view mech = args.substr(0, sp);
      if (mech.size() > 20) return Error(CommandErrorKind::kSyntax, "Syntax: AUTH mechanism");
      for (char c : mech) {
        if (!IsLetDig(c) && c != '-' && c != '_') {
          return Error(CommandErrorKind::kSyntax, "Syntax: AUTH mechanism");
        }
      }
      Command command{.verb = verb, .argument = ToUpper(mech)};
      if (sp != std::string_view::npos) {
        std::string_view response = TrimSpaces(args.substr(sp));
        if (response.find(' ') != std::string_view::npos) {
          return Error(CommandErrorKind::kSyntax, "Syntax: AUTH mechanism [initial-response]");
        }
        command.initial_response = std::string(response);
      }
      return command;
    }
  }
  return Error(CommandErrorKind::kUnknownCommand, "Command unrecognized");
}

}  // namespace hikyaku::smtp
