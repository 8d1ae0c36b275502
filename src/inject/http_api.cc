#include "inject/http_api.h"

#include <variant>

#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "inject/async_submit.h"
#include "inject/http_message_request.h"
#include "inject/intake.h"
#include "net/http_server.h"

namespace hikyaku::inject {

namespace asio = boost::asio;
using boost::beast::http::verb;

namespace {

// Request problems carry their own type and field (http_message_request.h).
net::Response ProblemResponse(const Problem& problem) {
  net::Response r;
  r.status = static_cast<unsigned>(problem.status);
  r.content_type = "application/problem+json";
  r.body = problem.ToJson();
  return r;
}

}  // namespace

HttpApi::HttpApi(HttpApiOptions options, Intake& intake) : options_(options), intake_(intake) {}

void HttpApi::Register(net::HttpServer& server) {
  server.Handle(verb::get, "/healthz", [](const net::Request&) -> asio::awaitable<net::Response> {
    co_return net::Response::Text(200, "ok\n");
  });
  server.Handle(verb::post, "/api/v1/messages", [this](const net::Request& req) -> asio::awaitable<net::Response> {
    MessageRequestLimits limits;
    limits.max_message_size = options_.max_message_size;
    limits.max_recipients = options_.max_recipients;
    limits.message_id_domain = intake_.hostname();
    auto parsed = ParseMessageRequest(req.body, limits);
    if (auto* problem = std::get_if<Problem>(&parsed)) co_return ProblemResponse(*problem);
    auto& message = std::get<MessageSubmission>(parsed);
    if (!message.tenant.empty() && !intake_.KnownTenant(message.tenant))
      co_return ProblemResponse(Problem{400, std::string(kProblemInvalidField), "Invalid field",
                                        "unknown tenant \"" + message.tenant + "\": no [[tenant]] of that name",
                                        "/tenant"});
    Submission submission;
    submission.sender = std::move(message.sender);
    submission.recipients = std::move(message.recipients);
    submission.content = std::move(message.content);
    submission.client_address = req.client_ip;
    submission.protocol = message::ReceivedProtocol::kHttp;
    submission.flow.tenant = std::move(message.tenant);
    submission.flow.priority = std::move(message.priority);
    const size_t recipients = submission.recipients.size();
    Result<MessageId> result = co_await AsyncSubmit(intake_, std::move(submission), asio::use_awaitable);
    if (!result && result.error().code() == ErrorCode::kInvalidArgument) {
      // The flow check (a tenant removed by a reload since the check above).
      co_return net::Response::Problem(400, "Bad Request", result.error().message());
    }
    if (!result) {
      const bool full = result.error().code() == ErrorCode::kNoSpace;
      co_return net::Response::Problem(full ? 507 : 503, full ? "Insufficient Storage" : "Service Unavailable",
                                       "the message was not accepted: " + result.error().ToString());
    }
    co_return net::Response::Json(202, {{"id", result->ToString()}, {"recipients", recipients}});
  });
}

}  // namespace hikyaku::inject
