#include "inject/intake.h"

#include <utility>

#include "events/event_log.h"
#include "message/received.h"
#include "spool/spool.h"

namespace hikyaku::inject {

Intake::Intake(spool::Spool& spool, events::EventLog& events, const Clock& clock, std::string hostname)
    : spool_(spool), events_(events), clock_(clock), hostname_(std::move(hostname)), ids_(clock) {}

void Intake::SetTenants(std::vector<std::string> names) {
  auto next = std::make_shared<const std::set<std::string, std::less<>>>(names.begin(), names.end());
  std::lock_guard lock(tenants_mu_);
  tenants_ = std::move(next);
}

bool Intake::KnownTenant(std::string_view name) const {
  std::shared_ptr<const std::set<std::string, std::less<>>> tenants;
  {
    std::lock_guard lock(tenants_mu_);
    tenants = tenants_;
  }
  return tenants != nullptr && tenants->contains(name);
}

void Intake::Submit(Submission submission, Done done) {
  // Flow first: a refused message must not cost a spool write.
  auto flow = DecideFlow(submission.flow, TakeFlowHeaders(submission.content));
  if (flow && !flow->tenant.empty() && !KnownTenant(flow->tenant))
    flow = Fail(ErrorCode::kInvalidArgument, "unknown tenant \"" + flow->tenant + "\"");
  if (!flow) {
    ++refused_;
    done(tl::unexpected(flow.error()));
    return;
  }

  spool::IncomingMessage message;
  message.id = ids_.Next();
  message.received_at = clock_.Now();
  message.sender = std::move(submission.sender);
  message.recipients = std::move(submission.recipients);
  message.origin = std::string(message::ToString(submission.protocol)) + " " + submission.client_address;
  message.tenant = flow->tenant;
  message.priority = static_cast<uint8_t>(flow->priority);

  // The trace header goes first (RFC 5321 4.4: prepended by each relay).
  message::ReceivedTrace trace;
  trace.helo = submission.client_helo;
  trace.client_ip = submission.client_address;
  trace.hostname = hostname_;
  trace.protocol = submission.protocol;
  trace.queue_id = message.id.ToString();
  // "for" only with a single recipient: naming one of several would leak it (RFC 5321 7.2).
  trace.for_recipient = message.recipients.size() == 1 ? message.recipients.front() : "";
  trace.date = message.received_at;
  message.content = message::FormatReceived(trace);
  message.content.reserve(message.content.size() + submission.content.size());
  message.content += submission.content;

  // Keep what the events need; the message itself moves into the spool.
  auto id = message.id;
  auto sender = message.sender;
  auto recipients = message.recipients;
  auto size = message.content.size();
  auto origin = message.origin;
  auto received_at = message.received_at;
  spool_.Append(std::move(message),
                [this, id, received_at, sender = std::move(sender), recipients = std::move(recipients), size,
                 origin = std::move(origin), flow = std::move(*flow), done = std::move(done)](Result<void> stored) mutable {
                  if (!stored) {
                    ++failed_;
                    done(tl::unexpected(stored.error()));
                    return;
                  }
                  ++accepted_;
                  events_.Received(clock_.Now(), id, sender, recipients, size, origin, flow.tenant,
                                   flow.priority == MessagePriority::kHigh);
                  if (accepted_listener_)
                    accepted_listener_(
                        AcceptedMessage{id, received_at, std::move(recipients), std::move(flow.tenant), flow.priority});
                  done(id);
                });
}

}  // namespace hikyaku::inject
