// Intake: the one path by which accepted mail enters the spool, shared by the
// SMTP listener, the HTTP API and (through SMTP) the sendmail front end.
//
// Contract: Submit() assigns the message id, prepends the Received trace
// header, queues the message for the spool's next group commit and calls
// `done` exactly once — with the id only after the spool reported the message
// durable, with the spool's Error otherwise (kNoSpace: the caller answers
// 452 4.3.1 / HTTP 507). The `received` events are logged only on success.
//
// Before anything is stored, Submit removes the X-Hikyaku-Tenant and
// X-Hikyaku-Priority fields from the content and decides the message's
// tenant and priority (inject/flow_headers.h). A priority that is neither
// high nor normal, or a tenant that names no [[tenant]] of the running
// configuration, fails with kInvalidArgument and a message fit for the
// submitter (SMTP answers 550 5.7.1, HTTP 400); nothing is stored.
//
// Thread-safety: Submit may be called from any thread; `done` runs on the
// spool's commit thread (callers post back to their own executor).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/error.h"
#include "base/message_id.h"
#include "inject/flow_headers.h"
#include "message/received.h"

namespace hikyaku::spool {
class Spool;
}
namespace hikyaku::events {
class EventLog;
}

namespace hikyaku::inject {

struct Submission {
  std::string sender;                   // reverse-path, empty for <>
  std::vector<std::string> recipients;  // at least one
  std::string content;                  // RFC 5322 text, CRLF lines, not dot-stuffed
  // Trace information for the Received header (RFC 5321 4.4).
  std::string client_address;  // "127.0.0.1"
  std::string client_helo;     // EHLO/HELO argument; empty for HTTP
  message::ReceivedProtocol protocol = message::ReceivedProtocol::kEsmtp;
  // Who may name the tenant and priority, and what the channel named.
  FlowAuthority flow;
};

// What the delivery side learns of a message once it is durable.
struct AcceptedMessage {
  MessageId id;
  TimePoint received_at;
  std::vector<std::string> recipients;  // index i is recipient record i in the spool
  std::string tenant;                   // "" = none
  MessagePriority priority = MessagePriority::kNormal;
};

struct IntakeStats {
  uint64_t accepted = 0;
  uint64_t failed = 0;   // the spool failed (disk full, I/O)
  uint64_t refused = 0;  // unknown tenant or bad priority
};

class Intake {
 public:
  Intake(spool::Spool& spool, events::EventLog& events, const Clock& clock, std::string hostname);

  // Called (on the spool's commit thread) for every message once durable,
  // before the submitter's `done`. Set before the listeners start.
  void SetAcceptedListener(std::function<void(AcceptedMessage)> listener) { accepted_listener_ = std::move(listener); }

  using Done = std::function<void(Result<MessageId>)>;
  void Submit(Submission submission, Done done);

  // The [[tenant]] names mail may belong to; replaced on reload (any
  // thread). Until the first call no tenant is known.
  void SetTenants(std::vector<std::string> names);
  bool KnownTenant(std::string_view name) const;

  IntakeStats Stats() const { return {accepted_.load(), failed_.load(), refused_.load()}; }
  const std::string& hostname() const { return hostname_; }

 private:
  spool::Spool& spool_;
  events::EventLog& events_;
  const Clock& clock_;
  std::string hostname_;
  MessageIdGenerator ids_;
  std::function<void(AcceptedMessage)> accepted_listener_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> refused_{0};
  mutable std::mutex tenants_mu_;
  std::shared_ptr<const std::set<std::string, std::less<>>> tenants_;
};

}  // namespace hikyaku::inject
