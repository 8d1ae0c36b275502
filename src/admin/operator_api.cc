#include "admin/operator_api.h"

#include <algorithm>
#include <charconv>
#include <initializer_list>
#include <map>
#include <type_traits>
#include <utility>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "admin/json_body.h"
#include "admin/queues_view.h"
#include "admin/shaping_view.h"
#include "config/units.h"

namespace hikyaku::admin {

namespace asio = boost::asio;
using boost::beast::http::verb;
using net::Request;
using net::Response;

namespace {

using Members = std::map<std::string, std::string>;

Response FieldProblem(std::string detail, std::string_view member) {
  return Response::Problem(400, "Invalid Field", std::move(detail),
                           {{"type", "/problems/invalid-field"}, {"field", "/" + std::string(member)}});
}

// The body's string members (absent ones are ""), or the 400 to answer.
// `empty_ok`: an empty body is an empty object (POST /reload from curl).
tl::expected<Members, Response> ReadMembers(const Request& request, std::initializer_list<std::string_view> allowed,
                                           bool empty_ok = false) {
  Members out;
  for (auto name : allowed) out[std::string(name)] = "";
  if (empty_ok && request.body.find_first_not_of(" \t\r\n") == std::string::npos) return out;
  auto doc = ParseJsonBody(request);
  if (!doc) return tl::unexpected(std::move(doc.error()));
  if (!doc->is_object())
    return tl::unexpected(Response::Problem(400, "Invalid Field", "the request body must be a JSON object",
                                            {{"type", "/problems/invalid-field"}, {"field", ""}}));
  for (auto it = doc->begin(); it != doc->end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      std::string names;
      for (auto name : allowed) names += (names.empty() ? "" : ", ") + std::string(name);
      return tl::unexpected(
          FieldProblem("unknown member \"" + it.key() + "\" (expected: " + (names.empty() ? "none" : names) + ")",
                       it.key()));
    }
    if (it->is_null()) continue;
    if (!it->is_string()) return tl::unexpected(FieldProblem("\"" + it.key() + "\" must be a string", it.key()));
    out[it.key()] = it->get<std::string>();
  }
  return out;
}

Response NotProvided() { return Response::Problem(501, "Not Implemented", "this daemon does not provide it"); }

// Callers capture by reference: their coroutine frame outlives the call.
//
// Runs `fn` on `pool` and resumes the handler on its own executor with the
// result: the HTTP server's thread (which also serves SMTP clients) never
// waits for the delivery thread or for a reload reading files.
//
// The coroutine itself hops: it resumes on a pool thread, calls `fn` there
// and hops back before it touches the connection again.
template <typename F>
asio::awaitable<std::invoke_result_t<F&>> OffThread(asio::thread_pool& pool, F fn) {
  auto home = co_await asio::this_coro::executor;
  co_await asio::post(pool.get_executor(), asio::bind_executor(pool.get_executor(), asio::use_awaitable));
  auto result = fn();
  co_await asio::post(home, asio::bind_executor(home, asio::use_awaitable));
  co_return result;
}

}  // namespace

std::optional<uint64_t> ParseSuspensionId(std::string_view text) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  uint64_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id == 0) return std::nullopt;
  return id;
}

Response ProblemFor(const Error& error) {
  switch (error.code()) {
    case ErrorCode::kInvalidArgument:
      return Response::Problem(400, "Bad Request", error.message());
    case ErrorCode::kNotFound:
      return Response::Problem(404, "Not Found", error.message());
    case ErrorCode::kTimeout:
    case ErrorCode::kUnavailable:
      return Response::Problem(503, "Service Unavailable", error.message());
    default:
      return Response::Problem(500, "Internal Server Error", error.ToString());
  }
}

OperatorApi::OperatorApi(Controls controls) : controls_(std::move(controls)) {}

OperatorApi::~OperatorApi() { calls_.join(); }

void OperatorApi::Register(net::HttpServer& server) {
  server.Handle(verb::get, "/api/v1/queues", [this](const Request&) -> asio::awaitable<Response> {
    if (!controls_.queues) co_return NotProvided();
    co_return Response::Json(200, QueuesJson(controls_.queues()));
  });
  server.Handle(verb::get, "/api/v1/stats", [this](const Request&) -> asio::awaitable<Response> {
    if (!controls_.stats) co_return NotProvided();
    co_return Response::Json(200, StatsJson(controls_.stats()));
  });
  server.Handle(verb::get, "/api/v1/shaping", [this](const Request&) -> asio::awaitable<Response> {
    if (!controls_.shaping) co_return NotProvided();
    co_return Response::Json(200, ShapingJson(controls_.shaping()));
  });

  server.Handle(verb::post, "/api/v1/suspensions", [this](const Request& req) -> asio::awaitable<Response> {
    auto m = ReadMembers(req, {"site", "source", "tenant", "duration", "reason"});
    if (!m) co_return std::move(m.error());
    shaping::SuspensionScope scope{(*m)["site"], (*m)["source"], (*m)["tenant"]};
    if (scope.empty())
      co_return Response::Problem(400, "Bad Request", "a suspension names a site, a source or a tenant");
    Duration duration{0};
    if (const std::string& text = (*m)["duration"]; !text.empty()) {
      auto parsed = config::ParseDuration(text);
      if (!parsed) co_return FieldProblem("\"duration\": " + parsed.error().message(), "duration");
      duration = *parsed;
    }
    if (!controls_.suspend) co_return NotProvided();
    Result<uint64_t> id =
        co_await OffThread(calls_, [&] { return controls_.suspend(std::move(scope), duration, (*m)["reason"]); });
    if (!id) co_return ProblemFor(id.error());
    Response r = Response::Json(201, {{"id", *id}});
    r.headers.emplace_back("Location", "/api/v1/suspensions/" + std::to_string(*id));
    co_return r;
  });

  server.Handle(verb::delete_, "/api/v1/suspensions/{id}", [this](const Request& req) -> asio::awaitable<Response> {
    const std::string& text = req.params.at("id");
    auto id = ParseSuspensionId(text);
    if (!id) co_return Response::Problem(400, "Bad Request", "not a suspension id: \"" + text + "\"");
    if (!controls_.resume) co_return NotProvided();
    Result<void> done = co_await OffThread(calls_, [&] { return controls_.resume(*id); });
    if (!done) co_return ProblemFor(done.error());
    Response r;
    r.status = 204;
    co_return r;
  });

  server.Handle(verb::post, "/api/v1/bounces", [this](const Request& req) -> asio::awaitable<Response> {
    auto m = ReadMembers(req, {"site", "tenant", "reason"});
    if (!m) co_return std::move(m.error());
    if ((*m)["site"].empty() && (*m)["tenant"].empty())
      co_return Response::Problem(400, "Bad Request", "name a site or a tenant to bounce");
    if (!controls_.bounce) co_return NotProvided();
    Result<size_t> n =
        co_await OffThread(calls_, [&] { return controls_.bounce((*m)["site"], (*m)["tenant"], (*m)["reason"]); });
    if (!n) co_return ProblemFor(n.error());
    co_return Response::Json(200, {{"bounced", *n}});
  });

  server.Handle(verb::post, "/api/v1/tenants/{name}", [this](const Request& req) -> asio::awaitable<Response> {
    auto m = ReadMembers(req, {"pool"});
    if (!m) co_return std::move(m.error());
    std::string tenant = req.params.at("name");
    std::string pool = (*m)["pool"];
    if (pool.empty()) co_return FieldProblem("\"pool\" is required", "pool");
    if (!controls_.move_tenant) co_return NotProvided();
    Result<void> done = co_await OffThread(calls_, [&] { return controls_.move_tenant(tenant, pool); });
    if (!done) co_return ProblemFor(done.error());
    co_return Response::Json(200, {{"tenant", tenant}, {"pool", pool}});
  });

  server.Handle(verb::post, "/api/v1/reload", [this](const Request& req) -> asio::awaitable<Response> {
    auto m = ReadMembers(req, {}, /*empty_ok=*/true);
    if (!m) co_return std::move(m.error());
    if (!controls_.reload) co_return NotProvided();
    std::vector<std::string> errors = co_await OffThread(calls_, [&] { return controls_.reload(); });
    if (!errors.empty()) {
      const std::string count = std::to_string(errors.size()) + (errors.size() == 1 ? " error" : " errors");
      co_return Response::Problem(422, "Invalid Configuration",
                                  "the configuration has " + count + "; the running configuration is unchanged",
                                  {{"errors", errors}});
    }
    co_return Response::Json(200, {{"ok", true}});
  });
}

OperatorApi::Controls DispatcherControls(delivery::Dispatcher& dispatcher, std::function<StatsInput()> stats,
                                         std::function<std::vector<std::string>()> reload) {
  OperatorApi::Controls c;
  c.queues = [&dispatcher] { return dispatcher.Queues(); };
  c.shaping = [&dispatcher] { return dispatcher.Shaping(); };
  c.stats = std::move(stats);
  c.suspend = [&dispatcher](shaping::SuspensionScope scope, Duration duration, std::string reason) {
    return dispatcher.Suspend(std::move(scope), duration, std::move(reason));
  };
  c.resume = [&dispatcher](uint64_t id) { return dispatcher.Resume(id); };
  c.bounce = [&dispatcher](std::string site, std::string tenant, std::string reason) {
    return dispatcher.BounceQueued(std::move(site), std::move(tenant), std::move(reason));
  };
  c.move_tenant = [&dispatcher](std::string tenant, std::string pool) {
    return dispatcher.MoveTenant(std::move(tenant), std::move(pool));
  };
  c.reload = std::move(reload);
  return c;
}

}  // namespace hikyaku::admin
