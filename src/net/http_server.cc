#include "net/http_server.h"

#include <atomic>
#include <chrono>
#include <exception>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace hikyaku::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using BeastRequest = http::request<http::string_body>;
using BeastResponse = http::response<http::string_body>;

namespace {

// No progress on a connection for this long (reading a request, writing a
// reply, or idle between keep-alive requests) closes it.
constexpr std::chrono::seconds kIdleTimeout(60);

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    out.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

bool IsParam(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = HexValue(text[i + 1]);
      const int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string Request::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (beast::iequals(key, name)) return value;
  }
  return "";
}

Response Response::Json(unsigned status, const nlohmann::json& value) {
  Response r;
  r.status = status;
  r.body = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  return r;
}

Response Response::Problem(unsigned status, std::string title, std::string detail, nlohmann::json extra) {
  // Member order as RFC 9457 shows it; readers of logs and curl output see
  // type/title/status first.
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  j["type"] = "about:blank";
  j["title"] = std::move(title);
  j["status"] = status;
  if (!detail.empty()) j["detail"] = std::move(detail);
  if (extra.is_object()) {
    for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  }
  Response r;
  r.status = status;
  r.content_type = "application/problem+json";
  r.body = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  return r;
}

Response Response::Text(unsigned status, std::string body) {
  Response r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

struct Route {
  std::string pattern;
  std::vector<std::string> segments;
  bool has_params = false;
  std::vector<std::pair<http::verb, Handler>> methods;
};

struct HttpServer::Shared {
  explicit Shared(HttpServerOptions o) : options(std::move(o)) {}
  HttpServerOptions options;
  std::vector<Route> routes;  // exact patterns are tried before parameterised ones
  std::atomic<bool> stopped{false};
};

namespace {

// Binds `segments` of a request path against `route`; false if it does not match.
bool Match(const Route& route, const std::vector<std::string>& segments, std::map<std::string, std::string>& params) {
  if (route.segments.size() != segments.size()) return false;
  std::map<std::string, std::string> bound;
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& want = route.segments[i];
    if (IsParam(want)) {
      if (segments[i].empty()) return false;
      bound[want.substr(1, want.size() - 2)] = segments[i];
    } else if (want != segments[i]) {
      return false;
    }
  }
  params = std::move(bound);
  return true;
}

BeastResponse ToBeast(Response r, unsigned version, bool keep_alive) {
  BeastResponse res(static_cast<http::status>(r.status), version);
  res.set(http::field::server, "hikyaku");
  res.set(http::field::content_type, r.content_type);
  for (auto& [name, value] : r.headers) res.insert(name, value);
  res.keep_alive(keep_alive);
  res.body() = std::move(r.body);
  res.prepare_payload();
  return res;
}

asio::awaitable<Response> Dispatch(std::shared_ptr<HttpServer::Shared> shared, const BeastRequest& req,
                                   const std::string& client) {
  Request request;
  request.method = req.method();
  request.client_ip = client;
  for (const auto& field : req) {
    request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  request.content_type = request.header("Content-Type");

  const std::string_view target(req.target().data(), req.target().size());
  const size_t question = target.find('?');
  const std::string_view raw_path = target.substr(0, question);
  std::vector<std::string> segments;
  // Decoding per segment keeps an encoded "/" (%2F) inside its segment.
  for (std::string_view s : Segments(raw_path)) {
    auto decoded = PercentDecode(s, false);
    if (!decoded) co_return Response::Problem(400, "Bad Request", "malformed percent-encoding in the path");
    segments.push_back(std::move(*decoded));
  }
  request.path = PercentDecode(raw_path, false).value_or(std::string(raw_path));
  if (question != std::string_view::npos) {
    std::string_view rest = target.substr(question + 1);
    while (!rest.empty()) {
      const size_t amp = rest.find('&');
      const std::string_view pair = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
      if (pair.empty()) continue;
      const size_t eq = pair.find('=');
      auto key = PercentDecode(pair.substr(0, eq), true);
      auto value = PercentDecode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
      if (!key || !value) co_return Response::Problem(400, "Bad Request", "malformed percent-encoding in the query");
      request.query[std::move(*key)] = std::move(*value);
    }
  }
  request.body = req.body();

  std::string allow;
  for (const Route& route : shared->routes) {
    std::map<std::string, std::string> params;
    if (!Match(route, segments, params)) continue;
    for (const auto& [method, handler] : route.methods) {
      if (method == request.method) {
        request.params = std::move(params);
        co_return co_await handler(request);
      }
    }
    for (const auto& entry : route.methods) {
      const std::string name(http::to_string(entry.first));
      if (allow.find(name) == std::string::npos) allow += (allow.empty() ? "" : ", ") + name;
    }
  }
  if (!allow.empty()) {
    Response r = Response::Problem(405, "Method Not Allowed", "use " + allow);
    r.headers.emplace_back("Allow", allow);
    co_return r;
  }
  co_return Response::Problem(404, "Not Found", "no such resource: " + std::string(raw_path));
}

asio::awaitable<void> Serve(std::shared_ptr<HttpServer::Shared> shared, tcp::socket socket) {
  error_code ec;
  auto remote = socket.remote_endpoint(ec);
  std::string client = ec ? "" : remote.address().to_string();
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    stream.expires_after(kIdleTimeout);
    http::request_parser<http::string_body> parser;
    parser.body_limit(shared->options.max_body_size);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout) break;
    if (ec == http::error::body_limit) {
      // The rest of the body is unread, so the connection cannot carry
      // another request: answer and close.
      BeastResponse res = ToBeast(Response::Problem(413, "Content Too Large",
                                                    "request body exceeds http.max_body_size (" +
                                                        std::to_string(shared->options.max_body_size) + " bytes)"),
                                  11, false);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      break;
    }
    if (ec) break;
    BeastRequest req = parser.release();
    Response response;
    try {
      response = co_await Dispatch(shared, req, client);
    } catch (const std::exception& e) {
      spdlog::error("http {} {}: handler failed: {}", std::string(req.method_string()), std::string(req.target()),
                    e.what());
      response = Response::Problem(500, "Internal Server Error", "the request could not be handled");
    }
    BeastResponse res = ToBeast(std::move(response), req.version(), req.keep_alive());
    stream.expires_after(kIdleTimeout);
    const bool keep_alive = res.keep_alive();
    co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep_alive) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

asio::awaitable<void> AcceptLoop(std::shared_ptr<HttpServer::Shared> shared, tcp::acceptor& acceptor) {
  for (;;) {
    error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (shared->stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: pause instead of spinning on the failing accept.
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

HttpServer::HttpServer(asio::io_context& context, HttpServerOptions options)
    : context_(context), shared_(std::make_shared<Shared>(std::move(options))) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Handle(http::verb method, std::string pattern, Handler handler) {
  auto& routes = shared_->routes;
  for (Route& route : routes) {
    if (route.pattern == pattern) {
      route.methods.emplace_back(method, std::move(handler));
      return;
    }
  }
  Route route;
  for (std::string_view s : Segments(pattern)) {
    route.segments.emplace_back(s);
    route.has_params = route.has_params || IsParam(s);
  }
  route.pattern = std::move(pattern);
  route.methods.emplace_back(method, std::move(handler));
  // Exact routes first, each group in registration order.
  auto pos = routes.end();
  if (!route.has_params) {
    pos = routes.begin();
    while (pos != routes.end() && !pos->has_params) ++pos;
  }
  routes.insert(pos, std::move(route));
}

Result<void> HttpServer::Start() {
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

tcp::endpoint HttpServer::local_endpoint() const {
  error_code ec;
  return acceptor_ ? acceptor_->local_endpoint(ec) : tcp::endpoint();
}

void HttpServer::Stop() {
  if (shared_->stopped.exchange(true)) return;
  if (acceptor_) {
    error_code ec;
    acceptor_->close(ec);
  }
}

}  // namespace hikyaku::net
