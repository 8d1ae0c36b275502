#include "inject/flow_headers.h"

#include <algorithm>
#include <cctype>

namespace hikyaku::inject {

namespace {

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

// A line without its LF and CR.
std::string_view Bare(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

}  // namespace

std::optional<MessagePriority> ParsePriority(std::string_view text) {
  if (EqualsIgnoreCase(text, "high")) return MessagePriority::kHigh;
  if (EqualsIgnoreCase(text, "normal")) return MessagePriority::kNormal;
  return std::nullopt;
}

FlowHeaders TakeFlowHeaders(std::string& content) {
  FlowHeaders found;
  std::string kept;
  bool removed_any = false;
  size_t pos = 0;
  // The field being removed, if the current line belongs to one.
  std::optional<std::string>* field = nullptr;
  std::string value;
  bool first_of_kind = false;
  auto finish_field = [&] {
    if (field != nullptr && first_of_kind) *field = std::string(Trim(value));
    field = nullptr;
  };
  while (pos < content.size()) {
    size_t end = content.find('\n', pos);
    end = end == std::string::npos ? content.size() : end + 1;
    const std::string_view line(content.data() + pos, end - pos);
    const std::string_view bare = Bare(line);
    if (bare.empty()) {  // the end of the header section: the rest is the body
      finish_field();
      if (removed_any) kept.append(content, pos, std::string::npos);
      break;
    }
    const bool continuation = bare.front() == ' ' || bare.front() == '\t';
    if (continuation && field != nullptr) {  // unfolding (RFC 5322 2.2.3)
      value += bare;
      pos = end;
      continue;
    }
    if (!continuation) {
      finish_field();
      const size_t colon = bare.find(':');
      const std::string_view name = colon == std::string_view::npos ? std::string_view() : Trim(bare.substr(0, colon));
      std::optional<std::string>* target = EqualsIgnoreCase(name, kTenantHeader)     ? &found.tenant
                                           : EqualsIgnoreCase(name, kPriorityHeader) ? &found.priority
                                                                                     : nullptr;
      if (target != nullptr) {
        if (!removed_any) kept.assign(content, 0, pos);
        removed_any = true;
        field = target;
        first_of_kind = !target->has_value();
        value.assign(bare.substr(colon + 1));
        pos = end;
        continue;
      }
    }
    if (removed_any) kept.append(line);
    pos = end;
  }
  if (pos >= content.size()) finish_field();
  if (removed_any) content = std::move(kept);
  return found;
}

Result<MessageFlow> DecideFlow(const FlowAuthority& authority, const FlowHeaders& headers) {
  MessageFlow flow;
  if (!authority.tenant.empty()) {
    flow.tenant = authority.tenant;
  } else if (authority.relay_client && headers.tenant) {
    flow.tenant = *headers.tenant;
  }
  std::string_view priority, from;
  if (!authority.priority.empty()) {
    priority = authority.priority, from = "priority";
  } else if ((authority.relay_client || authority.authenticated) && headers.priority) {
    priority = *headers.priority, from = kPriorityHeader;
  }
  if (!from.empty()) {
    auto parsed = ParsePriority(priority);
    if (!parsed)
      return Fail(ErrorCode::kInvalidArgument,
                  std::string(from) + ": expected high or normal, got \"" + std::string(priority) + "\"");
    flow.priority = *parsed;
  }
  return flow;
}

}  // namespace hikyaku::inject
