// SmtpListener: the SMTP injection service. Accepts connections on the
// configured endpoints and drives one smtp::ServerSession per connection
// (protocol logic lives there); this file does the I/O: sockets, TLS,
// timeouts, and handing finished messages to the Intake.
//
// Contract: a client gets "250 2.0.0" after DATA only once the Intake
// reported the message durable. Clients outside smtp_in.relay_networks must
// authenticate (over TLS) before any recipient is accepted.
//
// Threading: each connection lives on one io_context (one thread); the
// listener spreads accepted connections over the io_contexts it is given.
// Start/Stop are called from the thread that owns the listener.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "base/error.h"
#include "config/config.h"

namespace hikyaku::inject {

class Intake;

struct SmtpListenerStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_refused = 0;  // over smtp_in.max_connections
  uint64_t connections_open = 0;
};

class SmtpListener {
 public:
  // `contexts` must outlive the listener; connections are spread over them.
  SmtpListener(std::vector<boost::asio::io_context*> contexts, const config::SmtpInConfig& config,
               std::string hostname, Intake& intake);
  ~SmtpListener();

  // Binds every configured endpoint (port 0 picks a free port). Fails with
  // the first endpoint that cannot be bound; nothing is left listening then.
  Result<void> Start();
  // The endpoints actually bound (with real ports), in configuration order.
  std::vector<boost::asio::ip::tcp::endpoint> local_endpoints() const;
  // Stops accepting; open sessions end at their next command or timeout.
  void Stop();

  SmtpListenerStats Stats() const;

  struct Shared;  // state shared with the connections (outlives the listener while they run)

 private:
  std::shared_ptr<Shared> shared_;
  std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors_;
};

}  // namespace hikyaku::inject
