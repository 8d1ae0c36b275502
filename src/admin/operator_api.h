// OperatorApi: the operator's endpoints of the JSON HTTP API, registered on
// a net::HttpServer that the caller owns and starts. It only translates
// JSON to calls and results to JSON; what the calls do is the dispatcher's
// (delivery/dispatcher.h) and the daemon's reload (app/daemon.cc).
//
//   GET    /api/v1/queues             the delivery queues (queues_view.h)
//   GET    /api/v1/stats              counters (stats_json.h)
//   GET    /api/v1/shaping            shaping state (shaping_view.h)
//   POST   /api/v1/suspensions        {"site"?, "source"?, "tenant"?,
//                                      "duration"? ("30m", "1h30m", "2d"; absent,
//                                      "" or "0s": until resumed), "reason"?}
//                                     -> 201 {"id": N}, Location: .../N
//   DELETE /api/v1/suspensions/{id}   -> 204; 404 for no such suspension
//   POST   /api/v1/bounces            {"site"?, "tenant"?, "reason"?}
//                                     -> 200 {"bounced": N} (recipients)
//   POST   /api/v1/tenants/{name}     {"pool": P} -> 200 {"tenant", "pool"};
//                                     404 no such tenant, 400 no such pool
//   POST   /api/v1/reload             -> 200 {"ok": true}, or 422 problem with
//                                     "errors": ["FILE:LINE:COL: message", ...]
//                                     (the running configuration is unchanged)
//
// Request bodies are JSON objects whose members are strings; "" is the same
// as absent. A body that is not JSON, not an object, has a member of another
// type or a member not listed above is a 400 problem ("field" names it) and
// changes nothing — a typo must not widen a suspension. A suspension needs
// at least one of site/source/tenant, a bounce one of site/tenant (else
// 400). Errors of the calls map by code: kInvalidArgument 400, kNotFound
// 404, kTimeout/kUnavailable 503, others 500. Problems are RFC 9457
// (net::Response::Problem).
//
// Threading: Register before the server starts. The handlers run on the
// server's io_context; the calls that change something (they wait up to 5 s
// for the delivery thread; reload reads files) run one at a time on the
// API's own thread, so the server's thread never blocks on them. Each
// Controls function must be callable from that thread; they must outlive
// the OperatorApi, whose destructor waits for a call in progress.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>

#include "admin/stats_json.h"
#include "base/clock.h"
#include "base/error.h"
#include "delivery/dispatcher.h"
#include "net/http_server.h"
#include "shaping/suspensions.h"

namespace hikyaku::admin {

class OperatorApi {
 public:
  // What the endpoints act on; a test fills in the ones it needs (a
  // missing one answers 501).
  struct Controls {
    std::function<delivery::QueuesSnapshot()> queues;
    std::function<delivery::ShapingSnapshot()> shaping;
    std::function<StatsInput()> stats;
    std::function<Result<uint64_t>(shaping::SuspensionScope, Duration, std::string)> suspend;
    std::function<Result<void>(uint64_t)> resume;
    std::function<Result<size_t>(std::string site, std::string tenant, std::string reason)> bounce;
    std::function<Result<void>(std::string tenant, std::string pool)> move_tenant;
    // Every "FILE:LINE:COL: message" of an invalid configuration; empty
    // when the new one was applied.
    std::function<std::vector<std::string>()> reload;
  };

  explicit OperatorApi(Controls controls);
  ~OperatorApi();
  OperatorApi(const OperatorApi&) = delete;
  OperatorApi& operator=(const OperatorApi&) = delete;

  // Adds the endpoints above to `server`.
  void Register(net::HttpServer& server);

 private:
  Controls controls_;
  boost::asio::thread_pool calls_{1};
};

// The controls of a running dispatcher; `stats` and `reload` come from the
// daemon's wiring.
OperatorApi::Controls DispatcherControls(delivery::Dispatcher& dispatcher, std::function<StatsInput()> stats,
                                         std::function<std::vector<std::string>()> reload);

// "/api/v1/suspensions/{id}": decimal digits only, at least 1, fitting 64
// bits; nullopt otherwise.
std::optional<uint64_t> ParseSuspensionId(std::string_view text);

// The problem for an Error of a call (the mapping above), its message as
// the detail.
net::Response ProblemFor(const Error& error);

}  // namespace hikyaku::admin
