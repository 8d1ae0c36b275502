// Dispatcher: turns queued recipients into SMTP transactions. It owns the
// delivery side's state — the Scheduler (site queues, fresh/retry lanes,
// retry wheel), HostHealth (dead hosts), the domain → site map — and drives
// SmtpConnections on its own io_context thread.
//
// Flow: Accept()/Recover() → resolve the recipient's domain (Router: static
// routes, then MX) → site → fresh lane (or retry wheel) → a connection of the
// site takes batches (one message, several RCPTs) → each recipient gets one
// Outcome (outcome.cc) → spool state + event → when every recipient of a
// message is final, the message is removed from the spool.
//
// Crash safety: a recipient's final state is written through the spool's
// group commit right after the reply; a crash between the 250 and that
// commit re-delivers it after restart (the documented duplicate window).
//
// Threading: every method runs on (or posts to) the dispatcher's executor.
// Accept() may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json_fwd.hpp>

#include "base/clock.h"
#include "config/config.h"
#include "spool/spool.h"

namespace hikyaku::dns {
class Resolver;
}
namespace hikyaku::events {
class EventLog;
}

namespace hikyaku::delivery {

struct DispatcherStats {
  uint64_t delivered = 0;
  uint64_t deferred = 0;
  uint64_t bounced = 0;
  uint64_t expired = 0;
  uint64_t connections_opened = 0;
  uint64_t queued = 0;  // recipients known and not final
};

class Dispatcher {
 public:
  // `resolver` must deliver its callbacks on `context`'s thread.
  Dispatcher(boost::asio::io_context& context, const config::Config& config, spool::Spool& spool,
             events::EventLog& events, dns::Resolver& resolver, const Clock& clock);
  ~Dispatcher();

  // A recovered recipient (start-up, before Start()).
  // Its age (for retry.max_age) comes from the MessageId, which carries the
  // arrival time: recovery needs no extra read.
  void Recover(const spool::RecipientRecord& record);
  // A newly accepted message; any thread.
  void Accept(MessageId id, TimePoint received_at, std::vector<std::string> recipients);

  void Start();
  // Stops opening connections; open ones finish their transaction and QUIT.
  void Stop();

  // Thread-safe snapshots for the HTTP API (refreshed by the dispatcher).
  DispatcherStats Stats() const;
  void QueuesJson(nlohmann::json& out) const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace hikyaku::delivery
