#include "inject/http_message_request.h"

#include "inject/flow_headers.h"

#include <array>
#include <random>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "message/address.h"
#include "message/header.h"
#include "message/mime_builder.h"
#include "message/received.h"

namespace hikyaku::inject {

namespace {

using json = nlohmann::json;

Problem FieldProblem(std::string field, std::string detail) {
  return Problem{400, std::string(kProblemInvalidField), "Invalid request field", std::move(detail),
                 std::move(field)};
}

constexpr std::array<std::string_view, 11> kMembers = {"from", "to",   "raw",  "cc",      "bcc",     "subject",
                                                       "text", "html", "headers", "tenant", "priority"};
constexpr std::array<std::string_view, 6> kStructuredOnly = {"cc", "bcc", "subject", "text",
                                                             "html", "headers"};

std::string Describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

bool HasLineBreak(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

// Key for de-duplication: local part exact, domain case-insensitive
// (RFC 5321 2.4: local parts may be case-sensitive, domains are not).
std::string DedupKey(std::string_view addr) {
  std::string key(addr);
  size_t at = key.rfind('@');
  for (size_t i = at + 1; i < key.size(); ++i)
    if (key[i] >= 'A' && key[i] <= 'Z') key[i] = static_cast<char>(key[i] + 32);
  return key;
}

// Reads an optional array of strings; nullopt + problem set on error.
std::optional<std::vector<std::string>> StringArray(const json& doc, std::string_view key,
                                                    bool required, Problem& problem) {
  std::string pointer = "/" + std::string(key);
  auto it = doc.find(key);
  if (it == doc.end()) {
    if (required) {
      problem = FieldProblem(pointer, std::string(key) + " is required");
      return std::nullopt;
    }
    return std::vector<std::string>{};
  }
  if (!it->is_array()) {
    problem = FieldProblem(pointer, std::string(key) + " must be an array of strings, got " + Describe(*it));
    return std::nullopt;
  }
  std::vector<std::string> out;
  out.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& v = (*it)[i];
    if (!v.is_string()) {
      problem = FieldProblem(pointer + "/" + std::to_string(i), "must be a string, got " + Describe(v));
      return std::nullopt;
    }
    out.push_back(v.get<std::string>());
  }
  return out;
}

std::optional<std::string> OptionalString(const json& doc, std::string_view key, Problem& problem,
                                          bool& present) {
  auto it = doc.find(key);
  present = it != doc.end();
  if (!present) return std::string();
  if (!it->is_string()) {
    problem = FieldProblem("/" + std::string(key), std::string(key) + " must be a string, got " + Describe(*it));
    return std::nullopt;
  }
  return it->get<std::string>();
}

// Envelope address from a header-style mailbox ("Name <a@b>" or "a@b");
// `bare` demands a plain addr-spec (the raw form's envelope).
std::optional<std::string> EnvelopeAddress(const std::string& pointer, const std::string& value,
                                           bool bare, Problem& problem) {
  if (HasLineBreak(value) || value.find('\0') != std::string::npos) {
    problem = FieldProblem(pointer, "contains CR, LF or NUL (header injection)");
    return std::nullopt;
  }
  if (bare) {
    if (!message::IsValidAddrSpec(value)) {
      problem = FieldProblem(pointer, "\"" + value + "\" is not a valid address (expected local@domain)");
      return std::nullopt;
    }
    return value;
  }
  auto mb = message::ParseMailbox(value);
  if (!mb) {
    problem = FieldProblem(pointer, "\"" + value + "\" is not a valid address: " + mb.error().message());
    return std::nullopt;
  }
  if (!message::IsValidAddrSpec(mb->addr_spec)) {
    problem = FieldProblem(pointer, "\"" + mb->addr_spec + "\" is not a valid address (expected local@domain)");
    return std::nullopt;
  }
  return std::move(mb->addr_spec);
}

std::string NormalizeLineEndings(std::string_view in) {
  std::string out;
  out.reserve(in.size() + in.size() / 32 + 2);
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

std::string RandomMessageIdLeft(TimePoint now) {
  thread_local std::mt19937_64 rng{std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32)};
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld.%016llx", static_cast<long long>(ToUnixMillis(now)),
                static_cast<unsigned long long>(rng()));
  return buf;
}

MessageRequestResult ParseRaw(const json& doc, const std::string& from,
                              const std::vector<std::string>& to, const MessageRequestLimits& limits) {
  for (std::string_view key : kStructuredOnly)
    if (doc.contains(key))
      return FieldProblem("/" + std::string(key),
                          std::string(key) + " cannot be combined with raw: send either a raw message or structured fields");
  const json& raw_value = *doc.find("raw");
  if (!raw_value.is_string()) return FieldProblem("/raw", "raw must be a string, got " + Describe(raw_value));

  Problem problem;
  MessageSubmission out;
  auto sender = EnvelopeAddress("/from", from, /*bare=*/true, problem);
  if (!sender) return problem;
  out.sender = std::move(*sender);
  if (to.size() > limits.max_recipients)
    return Problem{400, std::string(kProblemTooManyRecipients), "Too many recipients",
                   "at most " + std::to_string(limits.max_recipients) + " recipients per message",
                   "/to/" + std::to_string(limits.max_recipients)};
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < to.size(); ++i) {
    auto addr = EnvelopeAddress("/to/" + std::to_string(i), to[i], /*bare=*/true, problem);
    if (!addr) return problem;
    if (seen.insert(DedupKey(*addr)).second) out.recipients.push_back(std::move(*addr));
  }

  const std::string& raw = raw_value.get_ref<const std::string&>();
  // Cheap early rejection before copying: normalising only grows the text.
  if (raw.size() > limits.max_message_size)
    return Problem{413, std::string(kProblemMessageTooLarge), "Message too large",
                   "the message is " + std::to_string(raw.size()) + " octets; the limit is " +
                       std::to_string(limits.max_message_size),
                   "/raw"};
  if (raw.find('\0') != std::string::npos) return FieldProblem("/raw", "the message contains NUL");
  std::string content = NormalizeLineEndings(raw);
  if (auto ok = message::ValidateHeaderBlock(content); !ok)
    return FieldProblem("/raw", "not an RFC 5322 message: " + ok.error().message());
  // RFC 5322 2.1.1 (and RFC 5321 4.5.3.1.6 for SMTP): 998 octets per line.
  size_t line_no = 0;
  for (size_t start = 0; start < content.size();) {
    ++line_no;
    size_t nl = content.find("\r\n", start);
    if (nl == std::string::npos) nl = content.size();
    if (nl - start > 998)
      return FieldProblem("/raw", "line " + std::to_string(line_no) + " is longer than 998 octets");
    start = nl + 2;
  }
  // Bcc must not reach the recipients (RFC 5322 3.6.3).
  if (message::HasHeader(content, "Bcc")) content = message::RemoveHeader(content, "Bcc");
  // Content ends with a line break, as SMTP DATA needs (RFC 5321 4.1.1.4).
  if (!content.ends_with("\r\n")) content += "\r\n";
  TimePoint now = limits.now.value_or(SystemClock().Now());
  std::string added;
  if (!message::HasHeader(content, "Date")) added += "Date: " + message::FormatRfc5322Date(now) + "\r\n";
  if (!message::HasHeader(content, "Message-ID"))
    added += "Message-ID: <" + RandomMessageIdLeft(now) + "@" + limits.message_id_domain + ">\r\n";
  content.insert(0, added);
  if (content.size() > limits.max_message_size)
    return Problem{413, std::string(kProblemMessageTooLarge), "Message too large",
                   "the message is " + std::to_string(content.size()) + " octets; the limit is " +
                       std::to_string(limits.max_message_size),
                   "/raw"};
  out.content = std::move(content);
  return out;
}

MessageRequestResult ParseStructured(const json& doc, const std::string& from,
                                     const std::vector<std::string>& to,
                                     const MessageRequestLimits& limits) {
  Problem problem;
  auto cc = StringArray(doc, "cc", false, problem);
  if (!cc) return problem;
  auto bcc = StringArray(doc, "bcc", false, problem);
  if (!bcc) return problem;
  bool has_subject, has_text, has_html;
  auto subject = OptionalString(doc, "subject", problem, has_subject);
  if (!subject) return problem;
  auto text = OptionalString(doc, "text", problem, has_text);
  if (!text) return problem;
  auto html = OptionalString(doc, "html", problem, has_html);
  if (!html) return problem;
  if (!has_text && !has_html) return FieldProblem("/text", "text or html (or both) is required");

  message::MessageDraft draft;
  if (auto it = doc.find("headers"); it != doc.end()) {
    if (!it->is_object())
      return FieldProblem("/headers", "headers must be an object of strings, got " + Describe(*it));
    for (auto h = it->begin(); h != it->end(); ++h) {
      if (!h.value().is_string())
        return FieldProblem("/headers/" + message::JsonPointerToken(h.key()),
                            "must be a string, got " + Describe(h.value()));
      draft.headers.emplace_back(h.key(), h.value().get<std::string>());
    }
  }

  MessageSubmission out;
  auto sender = EnvelopeAddress("/from", from, /*bare=*/false, problem);
  if (!sender) return problem;
  out.sender = std::move(*sender);

  size_t count = 0;
  std::unordered_set<std::string> seen;
  for (auto [key, list] : {std::pair<std::string_view, const std::vector<std::string>*>{"to", &to},
                           {"cc", &*cc}, {"bcc", &*bcc}}) {
    for (size_t i = 0; i < list->size(); ++i) {
      std::string pointer = "/" + std::string(key) + "/" + std::to_string(i);
      if (++count > limits.max_recipients)
        return Problem{400, std::string(kProblemTooManyRecipients), "Too many recipients",
                       "at most " + std::to_string(limits.max_recipients) + " recipients per message",
                       pointer};
      auto addr = EnvelopeAddress(pointer, (*list)[i], /*bare=*/false, problem);
      if (!addr) return problem;
      if (seen.insert(DedupKey(*addr)).second) out.recipients.push_back(std::move(*addr));
    }
  }

  size_t body_size = text->size() + html->size();
  if (body_size > limits.max_message_size)
    return Problem{413, std::string(kProblemMessageTooLarge), "Message too large",
                   "text and html are " + std::to_string(body_size) + " octets; the limit is " +
                       std::to_string(limits.max_message_size),
                   text->size() >= html->size() ? "/text" : "/html"};

  draft.from = from;
  draft.to = to;
  draft.cc = std::move(*cc);
  draft.subject = std::move(*subject);
  if (has_text) draft.text = std::move(*text);
  if (has_html) draft.html = std::move(*html);
  draft.message_id_domain = limits.message_id_domain;
  draft.date = limits.now.value_or(SystemClock().Now());
  auto built = message::BuildMessage(draft);
  if (!built) {
    std::string_view field = message::ErrorField(built.error());
    std::string_view detail = built.error().message();
    if (!field.empty()) detail.remove_prefix(field.size() + 2);
    if (field == "/message_id_domain")  // our configuration, not the client's input
      return Problem{500, "about:blank", "Internal Server Error", std::string(detail), ""};
    return FieldProblem(std::string(field), std::string(detail));
  }
  if (built->size() > limits.max_message_size)
    return Problem{413, std::string(kProblemMessageTooLarge), "Message too large",
                   "the encoded message is " + std::to_string(built->size()) +
                       " octets; the limit is " + std::to_string(limits.max_message_size),
                   text->size() >= html->size() ? "/text" : "/html"};
  out.content = std::move(*built);
  return out;
}

}  // namespace

std::string Problem::ToJson() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["type"] = type;
  j["title"] = title;
  j["status"] = status;
  if (!detail.empty()) j["detail"] = detail;
  if (type != "about:blank" || !field.empty()) j["field"] = field;
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

MessageRequestResult ParseMessageRequest(std::string_view body, const MessageRequestLimits& limits) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::parse_error& e) {
    return Problem{400, std::string(kProblemInvalidJson), "Invalid JSON",
                   "the request body is not valid JSON (at byte " + std::to_string(e.byte) + ")", ""};
  }
  if (!doc.is_object())
    return FieldProblem("", "the request body must be a JSON object, got " + Describe(doc));
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    bool known = false;
    for (std::string_view m : kMembers) known |= it.key() == m;
    if (!known)
      return FieldProblem("/" + message::JsonPointerToken(it.key()), "unknown member \"" + it.key() + "\"");
  }

  auto from_it = doc.find("from");
  if (from_it == doc.end()) return FieldProblem("/from", "from is required");
  if (!from_it->is_string()) return FieldProblem("/from", "from must be a string, got " + Describe(*from_it));
  const std::string& from = from_it->get_ref<const std::string&>();

  Problem problem;
  auto to = StringArray(doc, "to", /*required=*/true, problem);
  if (!to) return problem;
  if (to->empty()) return FieldProblem("/to", "to must name at least one recipient");

  // The flow (inject/flow_headers.h): whose mail it is and how urgent.
  bool has_tenant, has_priority;
  auto tenant = OptionalString(doc, "tenant", problem, has_tenant);
  if (!tenant) return problem;
  if (has_tenant && tenant->empty()) return FieldProblem("/tenant", "tenant must name a [[tenant]], got \"\"");
  auto priority = OptionalString(doc, "priority", problem, has_priority);
  if (!priority) return problem;
  if (has_priority && !ParsePriority(*priority))
    return FieldProblem("/priority", "priority must be \"high\" or \"normal\", got \"" + *priority + "\"");

  MessageRequestResult result = doc.contains("raw") ? ParseRaw(doc, from, *to, limits)
                                                    : ParseStructured(doc, from, *to, limits);
  if (auto* message = std::get_if<MessageSubmission>(&result)) {
    message->tenant = std::move(*tenant);
    message->priority = std::move(*priority);
  }
  return result;
}

}  // namespace hikyaku::inject
