#include "message/address.h"

#include <optional>

namespace hikyaku::message {

namespace {

// RFC 5322 3.2.3 specials, minus '.' which we keep inside atoms so that
// dot-atoms, obs-local-part and "Q." in display names all lex as one word.
bool IsSpecial(char c) {
  switch (c) {
    case '(': case ')': case '<': case '>': case '[': case ']':
    case ':': case ';': case '@': case ',': case '"':
      return true;
    default:
      return false;
  }
}

bool IsWsp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

enum class Kind { kAtom, kQuoted, kLiteral, kSpecial };

struct Token {
  Kind kind;
  std::string text;     // atom text, quoted-string content unescaped, literal incl. brackets, special char
  std::string raw;      // as written (quoted strings keep quotes and escapes)
  bool space_before;    // whitespace or a comment preceded it
  size_t begin, end;    // offsets in the value, for error messages
};

Result<std::vector<Token>> Lex(std::string_view v) {
  std::vector<Token> out;
  size_t i = 0;
  bool space = false;
  while (i < v.size()) {
    char c = v[i];
    if (IsWsp(c)) {
      space = true;
      ++i;
    } else if (c == '(') {
      // Comments nest and may contain quoted-pairs (RFC 5322 3.2.2).
      int depth = 0;
      size_t start = i;
      do {
        if (i >= v.size())
          return Fail(ErrorCode::kInvalidArgument, "unbalanced comment at \"" +
                                                       std::string(v.substr(start, 40)) + "\"");
        if (v[i] == '\\') ++i;
        else if (v[i] == '(') ++depth;
        else if (v[i] == ')') --depth;
        ++i;
      } while (depth > 0);
      space = true;
    } else if (c == '"') {
      size_t start = i++;
      std::string content;
      bool closed = false;
      while (i < v.size()) {
        if (v[i] == '\\' && i + 1 < v.size()) {
          content += v[i + 1];
          i += 2;
        } else if (v[i] == '"') {
          closed = true;
          ++i;
          break;
        } else if (v[i] == '\r' || v[i] == '\n') {
          ++i;  // folding inside a quoted string: unfold
        } else {
          content += v[i++];
        }
      }
      if (!closed)
        return Fail(ErrorCode::kInvalidArgument,
                    "unterminated quoted string at \"" + std::string(v.substr(start, 40)) + "\"");
      out.push_back({Kind::kQuoted, std::move(content), std::string(v.substr(start, i - start)),
                     space, start, i});
      space = false;
    } else if (c == '[') {
      size_t start = i;
      size_t close = v.find(']', i);
      if (close == std::string_view::npos)
        return Fail(ErrorCode::kInvalidArgument,
                    "unterminated domain literal at \"" + std::string(v.substr(start, 40)) + "\"");
      i = close + 1;
      std::string lit(v.substr(start, i - start));
      out.push_back({Kind::kLiteral, lit, lit, space, start, i});
      space = false;
    } else if (IsSpecial(c)) {
      if (c == ')' || c == ']')
        return Fail(ErrorCode::kInvalidArgument,
                    std::string("unexpected '") + c + "' at offset " + std::to_string(i));
      out.push_back({Kind::kSpecial, std::string(1, c), std::string(1, c), space, i, i + 1});
      space = false;
      ++i;
    } else {
      size_t start = i;
      while (i < v.size() && !IsWsp(v[i]) && !IsSpecial(v[i])) ++i;
      std::string atom(v.substr(start, i - start));
      out.push_back({Kind::kAtom, atom, atom, space, start, i});
      space = false;
    }
  }
  return out;
}

bool IsSpecialTok(const Token& t, char c) { return t.kind == Kind::kSpecial && t.text[0] == c; }

// Joins the words of one side of an addr-spec. Adjacent words must be joined
// by a dot (obs-local-part = word *("." word) allows CFWS around the dots).
std::optional<std::string> JoinDotted(const std::vector<const Token*>& words, bool domain) {
  if (words.empty()) return std::nullopt;
  std::string out;
  for (size_t k = 0; k < words.size(); ++k) {
    const Token& t = *words[k];
    if (t.kind == Kind::kSpecial) return std::nullopt;
    if (domain && t.kind == Kind::kQuoted) return std::nullopt;
    if (!domain && t.kind == Kind::kLiteral) return std::nullopt;
    if (k > 0 && !out.ends_with('.') && !t.raw.starts_with('.')) return std::nullopt;
    out += t.raw;
  }
  return out;
}

std::optional<std::string> BuildAddrSpec(const std::vector<const Token*>& toks) {
  size_t at = toks.size();
  for (size_t k = 0; k < toks.size(); ++k) {
    if (IsSpecialTok(*toks[k], '@')) {
      if (at != toks.size()) return std::nullopt;  // two '@'
      at = k;
    }
  }
  if (at == toks.size()) return std::nullopt;
  std::vector<const Token*> local(toks.begin(), toks.begin() + at);
  std::vector<const Token*> domain(toks.begin() + at + 1, toks.end());
  auto l = JoinDotted(local, false);
  auto d = JoinDotted(domain, true);
  if (!l || !d) return std::nullopt;
  return *l + "@" + *d;
}

std::string DisplayName(const std::vector<const Token*>& toks) {
  std::string out;
  for (const Token* t : toks) {
    if (!out.empty() && t->space_before) out += ' ';
    out += t->text;
  }
  return out;
}

Result<Mailbox> ParseElement(std::string_view value, const std::vector<const Token*>& toks) {
  std::string where(value.substr(toks.front()->begin, toks.back()->end - toks.front()->begin));
  auto bad = [&](std::string_view why) {
    return Fail(ErrorCode::kInvalidArgument, std::string(why) + " in \"" + where + "\"");
  };
  size_t lt = toks.size();
  for (size_t k = 0; k < toks.size(); ++k)
    if (IsSpecialTok(*toks[k], '<')) { lt = k; break; }
  if (lt == toks.size()) {
    for (const Token* t : toks)
      if (IsSpecialTok(*t, '>')) return bad("unbalanced '>'");
    auto spec = BuildAddrSpec(toks);
    if (!spec) return bad("not an address");
    return Mailbox{"", *spec};
  }
  size_t gt = toks.size();
  for (size_t k = lt + 1; k < toks.size(); ++k)
    if (IsSpecialTok(*toks[k], '>')) { gt = k; break; }
  if (gt == toks.size()) return bad("unbalanced '<'");
  if (gt + 1 != toks.size()) return bad("text after '>'");
  std::vector<const Token*> inner(toks.begin() + lt + 1, toks.begin() + gt);
  // obs-route (RFC 5322 4.4): "<@relay1,@relay2:user@host>" — drop the route.
  if (!inner.empty() && IsSpecialTok(*inner.front(), '@')) {
    size_t colon = inner.size();
    for (size_t k = 0; k < inner.size(); ++k)
      if (IsSpecialTok(*inner[k], ':')) { colon = k; break; }
    if (colon == inner.size()) return bad("malformed source route");
    inner.erase(inner.begin(), inner.begin() + colon + 1);
  }
  if (inner.empty()) return bad("empty angle address");
  auto spec = BuildAddrSpec(inner);
  if (!spec) return bad("not an address");
  std::vector<const Token*> name(toks.begin(), toks.begin() + lt);
  return Mailbox{DisplayName(name), *spec};
}

struct ParsedList {
  std::vector<Mailbox> mailboxes;
  bool had_group = false;
};

Result<ParsedList> Parse(std::string_view value) {
  auto lexed = Lex(value);
  if (!lexed) return tl::unexpected(lexed.error());
  const std::vector<Token>& toks = *lexed;
  ParsedList out;
  bool in_group = false;
  std::vector<const Token*> element;
  bool in_angle = false;

  auto finish = [&]() -> Result<void> {
    if (element.empty()) return {};
    auto mb = ParseElement(value, element);
    element.clear();
    if (!mb) return tl::unexpected(mb.error());
    out.mailboxes.push_back(std::move(*mb));
    return {};
  };

  for (const Token& t : toks) {
    if (t.kind == Kind::kSpecial) {
      char c = t.text[0];
      if (c == '<') in_angle = true;
      if (c == '>') in_angle = false;
      if (!in_angle) {
        if (c == ',') {
          if (auto r = finish(); !r) return tl::unexpected(r.error());
          continue;
        }
        if (c == ':') {
          bool has_at = false;
          for (const Token* e : element) has_at |= IsSpecialTok(*e, '@');
          if (!has_at) {
            // group = display-name ":" [group-list] ";" (RFC 5322 3.4)
            if (in_group)
              return Fail(ErrorCode::kInvalidArgument, "nested group at offset " +
                                                           std::to_string(t.begin));
            in_group = true;
            out.had_group = true;
            element.clear();
            continue;
          }
        }
        if (c == ';') {
          if (!in_group)
            return Fail(ErrorCode::kInvalidArgument,
                        "';' outside a group at offset " + std::to_string(t.begin));
          if (auto r = finish(); !r) return tl::unexpected(r.error());
          in_group = false;
          continue;
        }
      }
    }
    element.push_back(&t);
  }
  if (in_angle) return Fail(ErrorCode::kInvalidArgument, "unbalanced '<'");
  if (auto r = finish(); !r) return tl::unexpected(r.error());
  // A group missing its ';' is common in hand-written headers
  // ("undisclosed-recipients:"); accept it as terminated by the end.
  return out;
}

bool IsAtext(unsigned char c) {
  if (c >= 0x80) return true;  // RFC 6532 UTF-8 in local parts
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(static_cast<char>(c)) !=
         std::string_view::npos;
}

bool IsValidLocalPart(std::string_view local) {
  if (local.empty() || local.size() > 64) return false;
  if (local.front() == '"') {
    if (local.size() < 2 || local.back() != '"') return false;
    for (size_t i = 1; i + 1 < local.size(); ++i) {
      unsigned char c = local[i];
      if (c <= 0x20 || c == 0x7f) return false;
      if (c == '"') return false;
      if (c == '\\') {
        if (i + 2 >= local.size()) return false;
        ++i;
        if (static_cast<unsigned char>(local[i]) <= 0x20) return false;
      }
    }
    return true;
  }
  // dot-atom: no leading, trailing or doubled dots.
  if (local.front() == '.' || local.back() == '.') return false;
  for (size_t i = 0; i < local.size(); ++i) {
    char c = local[i];
    if (c == '.') {
      if (local[i - 1] == '.') return false;
    } else if (!IsAtext(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

bool IsValidDomain(std::string_view domain) {
  if (domain.empty() || domain.size() > 253) return false;
  if (domain.front() == '[') {
    // address-literal (RFC 5321 4.1.3): printable, no spaces or brackets inside.
    if (domain.size() < 3 || domain.back() != ']') return false;
    for (size_t i = 1; i + 1 < domain.size(); ++i) {
      unsigned char c = domain[i];
      if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']' || c == '\\') return false;
    }
    return true;
  }
  size_t start = 0;
  while (start <= domain.size()) {
    size_t dot = domain.find('.', start);
    if (dot == std::string_view::npos) dot = domain.size();
    std::string_view label = domain.substr(start, dot - start);
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (unsigned char c : label) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c >= 0x80;
      if (!ok) return false;
    }
    start = dot + 1;
  }
  return true;
}

}  // namespace

Result<std::vector<Mailbox>> ParseAddressList(std::string_view value) {
  auto parsed = Parse(value);
  if (!parsed) return tl::unexpected(parsed.error());
  return std::move(parsed->mailboxes);
}

Result<Mailbox> ParseMailbox(std::string_view value) {
  auto parsed = Parse(value);
  if (!parsed) return tl::unexpected(parsed.error());
  if (parsed->had_group)
    return Fail(ErrorCode::kInvalidArgument, "a group is not a single mailbox");
  if (parsed->mailboxes.empty()) return Fail(ErrorCode::kInvalidArgument, "no address");
  if (parsed->mailboxes.size() > 1)
    return Fail(ErrorCode::kInvalidArgument, "more than one address");
  return std::move(parsed->mailboxes.front());
}

bool IsValidAddrSpec(std::string_view addr) {
  if (addr.size() > 254) return false;
  for (unsigned char c : addr)
    if (c <= 0x20 || c == 0x7f) return false;
  size_t at = addr.rfind('@');
  if (at == std::string_view::npos) return false;
  return IsValidLocalPart(addr.substr(0, at)) && IsValidDomain(addr.substr(at + 1));
}

}  // namespace hikyaku::message
