// A message's flow — its tenant and its priority — and who may name them.
//
// The tenant decides the pool the mail leaves from and its share of each
// site lane (queue/flow_table.h); the priority lets a password reset pass a
// newsletter. Both are instructions to hikyaku, so the `X-Hikyaku-Tenant`
// and `X-Hikyaku-Priority` header fields that carry them are removed from
// every message, whoever sent it: a receiver never sees them.
//
// Who decides, first match wins:
//   tenant    1. the authority of the submission: the authenticated SMTP
//                user's `smtp_in.users.tenant`, or the HTTP field "tenant";
//             2. an X-Hikyaku-Tenant field, only from a client in
//                smtp_in.relay_networks (a trusted host: the application
//                server, sendmail on this machine). An authenticated user
//                bound to a tenant cannot name another, so a tenant moved
//                to quarantine stays there whatever its mail says.
//   priority  the HTTP field "priority", else an X-Hikyaku-Priority field
//             from a relay network or an authenticated user.
// Values: a tenant is a [[tenant]] name (checked by the caller against the
// running configuration); a priority is "high" or "normal" (any case).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace hikyaku::inject {

inline constexpr std::string_view kTenantHeader = "X-Hikyaku-Tenant";
inline constexpr std::string_view kPriorityHeader = "X-Hikyaku-Priority";

// 0 normal, 1 high: the numbering of queue::Priority and of the spool.
enum class MessagePriority : uint8_t { kNormal = 0, kHigh = 1 };

// "high" or "normal", case-insensitive; nullopt for anything else.
std::optional<MessagePriority> ParsePriority(std::string_view text);

// The values of the first X-Hikyaku-Tenant and X-Hikyaku-Priority fields of
// the header section (unfolded, surrounding white space trimmed), nullopt
// for a field that is absent.
struct FlowHeaders {
  std::optional<std::string> tenant;
  std::optional<std::string> priority;
};

// Reads and removes every X-Hikyaku-Tenant and X-Hikyaku-Priority field
// (with its continuation lines) from the header section of `content` — the
// lines before the first empty line; the body is never looked at or
// changed. Lines end in LF or CRLF.
FlowHeaders TakeFlowHeaders(std::string& content);

// What the submitter's channel says and may say.
struct FlowAuthority {
  std::string tenant;    // the SMTP user's tenant or the HTTP field; "" none
  std::string priority;  // the HTTP field; "" none
  bool relay_client = false;  // in smtp_in.relay_networks: its tenant header counts
  bool authenticated = false; // SMTP AUTH: its priority header counts
};

struct MessageFlow {
  std::string tenant;  // "" = none
  MessagePriority priority = MessagePriority::kNormal;

  bool operator==(const MessageFlow&) const = default;
};

// The flow by the rules above. kInvalidArgument (its message fit for the
// submitter: "X-Hikyaku-Priority: expected high or normal, got \"x\"") for
// a priority that is neither; the tenant is returned as named, unchecked.
Result<MessageFlow> DecideFlow(const FlowAuthority& authority, const FlowHeaders& headers);

}  // namespace hikyaku::inject
