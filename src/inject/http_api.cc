#include "inject/http_api.h"

#include <chrono>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "inject/async_submit.h"
#include "inject/http_message_request.h"
#include "inject/intake.h"

namespace hikyaku::inject {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Response = http::response<http::string_body>;

struct HttpApi::Shared {
  Shared(HttpApiOptions o, Intake& i, HttpApi::JsonEndpoints e)
      : options(std::move(o)), intake(i), endpoints(std::move(e)) {}
  HttpApiOptions options;
  Intake& intake;
  HttpApi::JsonEndpoints endpoints;
  std::atomic<bool> stopped{false};
};

namespace {

Response MakeJson(const http::request<http::string_body>& req, http::status status, std::string body,
                  std::string_view content_type = "application/json") {
  Response res(status, req.version());
  res.set(http::field::server, "hikyaku");
  res.set(http::field::content_type, content_type);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response MakeProblem(const http::request<http::string_body>& req, int status, std::string title,
                     std::string detail, std::string field = "") {
  Problem p;
  p.status = status;
  p.title = std::move(title);
  p.detail = std::move(detail);
  p.field = std::move(field);
  return MakeJson(req, static_cast<http::status>(status), p.ToJson(), "application/problem+json");
}

asio::awaitable<Response> Handle(std::shared_ptr<HttpApi::Shared> shared, http::request<http::string_body> req,
                                 std::string client) {
  const std::string_view target(req.target().data(), req.target().size());
  if (target == "/healthz") {
    if (req.method() != http::verb::get) co_return MakeProblem(req, 405, "Method Not Allowed", "use GET");
    co_return MakeJson(req, http::status::ok, "ok\n", "text/plain");
  }
  if (auto it = shared->endpoints.find(std::string(target)); it != shared->endpoints.end()) {
    if (req.method() != http::verb::get) co_return MakeProblem(req, 405, "Method Not Allowed", "use GET");
    nlohmann::json body = nlohmann::json::object();
    it->second(body);
    co_return MakeJson(req, http::status::ok, body.dump() + "\n");
  }
  if (target == "/api/v1/messages") {
    if (req.method() != http::verb::post) co_return MakeProblem(req, 405, "Method Not Allowed", "use POST");
    MessageRequestLimits limits;
    limits.max_message_size = shared->options.max_message_size;
    limits.max_recipients = shared->options.max_recipients;
    limits.message_id_domain = shared->intake.hostname();
    auto parsed = ParseMessageRequest(req.body(), limits);
    if (auto* problem = std::get_if<Problem>(&parsed)) {
      co_return MakeJson(req, static_cast<http::status>(problem->status), problem->ToJson(),
                         "application/problem+json");
    }
    auto& message = std::get<MessageSubmission>(parsed);
    Submission submission;
    submission.sender = std::move(message.sender);
    submission.recipients = std::move(message.recipients);
    submission.content = std::move(message.content);
    submission.client_address = std::move(client);
    submission.protocol = message::ReceivedProtocol::kHttp;
    const size_t recipients = submission.recipients.size();
    Result<MessageId> result = co_await AsyncSubmit(shared->intake, std::move(submission), asio::use_awaitable);
    if (!result) {
      const bool full = result.error().code() == ErrorCode::kNoSpace;
      co_return MakeProblem(req, full ? 507 : 503, full ? "Insufficient Storage" : "Service Unavailable",
                            "the message was not accepted: " + result.error().ToString());
    }
    nlohmann::json body = {{"id", result->ToString()}, {"recipients", recipients}};
    co_return MakeJson(req, http::status::accepted, body.dump() + "\n");
  }
  co_return MakeProblem(req, 404, "Not Found", "no such resource: " + std::string(target));
}

asio::awaitable<void> Serve(std::shared_ptr<HttpApi::Shared> shared, tcp::socket socket) {
  error_code ec;
  auto remote = socket.remote_endpoint(ec);
  std::string client = ec ? "" : remote.address().to_string();
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    stream.expires_after(std::chrono::seconds(60));
    http::request_parser<http::string_body> parser;
    parser.body_limit(shared->options.max_body_size);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout) break;
    if (ec == http::error::body_limit) {
      http::request<http::string_body> req;
      req.version(11);
      Response res = MakeProblem(req, 413, "Content Too Large",
                                 "request body exceeds http.max_body_size (" +
                                     std::to_string(shared->options.max_body_size) + " bytes)");
      res.keep_alive(false);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      break;
    }
    if (ec) break;
    auto req = parser.release();
    Response res = co_await Handle(shared, std::move(req), client);
    stream.expires_after(std::chrono::seconds(60));
    const bool keep_alive = res.keep_alive();
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep_alive) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<void> AcceptLoop(std::shared_ptr<HttpApi::Shared> shared, tcp::acceptor& acceptor) {
  for (;;) {
    error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (shared->stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      spdlog::warn("http accept failed: {}", ec.message());
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    asio::co_spawn(acceptor.get_executor(), Serve(shared, std::move(socket)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("http connection ended by exception: {}", ex.what());
      }
    });
  }
}

}  // namespace

HttpApi::HttpApi(asio::io_context& context, HttpApiOptions options, Intake& intake, JsonEndpoints endpoints)
    : context_(context), shared_(std::make_shared<Shared>(std::move(options), intake, std::move(endpoints))) {}

HttpApi::~HttpApi() { Stop(); }

Result<void> HttpApi::Start() {
  error_code ec;
  const auto& listen = shared_->options.listen;
  auto address = asio::ip::make_address(listen.address.ToString(), ec);
  if (ec) return Fail(ErrorCode::kInvalidArgument, "bad http listen address " + listen.ToString());
  tcp::endpoint ep(address, listen.port);
  acceptor_ = std::make_unique<tcp::acceptor>(context_);
  acceptor_->open(ep.protocol(), ec);
  if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_->bind(ep, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    acceptor_.reset();
    return Fail(ErrorCode::kUnavailable, "cannot listen on " + listen.ToString() + ": " + ec.message());
  }
  asio::co_spawn(context_, AcceptLoop(shared_, *acceptor_), asio::detached);
  return {};
}

tcp::endpoint HttpApi::local_endpoint() const {
  error_code ec;
  return acceptor_ ? acceptor_->local_endpoint(ec) : tcp::endpoint();
}

void HttpApi::Stop() {
  if (shared_->stopped.exchange(true)) return;
  if (acceptor_) {
    error_code ec;
    acceptor_->close(ec);
  }
}

}  // namespace hikyaku::inject
