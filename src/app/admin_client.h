// A blocking HTTP client for the daemon's own API on loopback: what the
// operator commands (`hikyaku queues`, `shaping`, `suspend`, `resume`,
// `bounce`, `move-tenant`, `reload`) use to talk to a running daemon.
#pragma once

#include <optional>
#include <string>

#include "config/config.h"

namespace hikyaku::app {

struct AdminReply {
  unsigned status = 0;
  std::string body;
};

// `method` is "GET", "POST" or "DELETE"; `body` is sent as JSON when not
// empty. nullopt (with `error` set) when the daemon cannot be reached.
std::optional<AdminReply> CallDaemon(const config::Endpoint& endpoint, const std::string& method,
                                     const std::string& target, const std::string& body, std::string& error);

}  // namespace hikyaku::app
