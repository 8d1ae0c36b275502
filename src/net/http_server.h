// HttpServer: a protocol-free HTTP/1.1 server (Boost.Beast) with a router.
// Modules register their endpoints on it (inject/ the message API, admin/
// the operator's views, later tracking/ on a second instance bound to a
// public address); the server knows none of them.
//
// Routing: Handle(method, pattern, handler). A pattern is an exact path
// ("/api/v1/stats") or has whole-segment parameters ("/api/v1/suspensions/{id}"),
// which match one non-empty segment each and arrive decoded in
// Request::params. The query string never takes part in matching; it arrives
// decoded in Request::query ("%20" and "+" are spaces). An exact pattern wins
// over a parameterised one; among parameterised patterns the first registered
// wins.
//   no pattern matches the path        -> 404 problem
//   a pattern matches, not the method  -> 405 problem with an Allow header
//   body over max_body_size            -> 413 problem, connection closed
//   malformed percent-encoding         -> 400 problem
// Problems are RFC 9457 application/problem+json: {"type": "about:blank",
// "title", "status", "detail", ...extra}.
//
// Connections are kept alive as the client asks; an idle or slow connection
// is closed after 60 s of no progress. A handler that throws gets a 500
// problem (the exception is logged); the server goes on.
//
// Threading: runs on one io_context. Handle() before Start(); Start/Stop from
// that context's thread (or before it runs). Handlers run on that thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/verb.hpp>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "config/net.h"

namespace hikyaku::net {

struct Request {
  boost::beast::http::verb method = boost::beast::http::verb::get;
  std::string path;                           // decoded, without the query
  std::map<std::string, std::string> params;  // the pattern's {name} segments
  std::map<std::string, std::string> query;   // decoded; a repeated key keeps the last value
  std::string body;
  std::string content_type;
  std::string client_ip;  // the peer's address, "" if unknown
  // The value of a request header (case-insensitive name), "" when absent.
  std::string header(std::string_view name) const;

  std::vector<std::pair<std::string, std::string>> headers;  // as received
};

struct Response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. {"Location", ...}
  std::string body;

  // `value` dumped plus a newline.
  static Response Json(unsigned status, const nlohmann::json& value);
  // RFC 9457: {"type":"about:blank","title","status","detail"} plus the
  // members of `extra` (an object), as application/problem+json.
  static Response Problem(unsigned status, std::string title, std::string detail, nlohmann::json extra = {});
  static Response Text(unsigned status, std::string body);  // text/plain
};

using Handler = std::function<boost::asio::awaitable<Response>(const Request&)>;

struct HttpServerOptions {
  config::Endpoint listen;
  uint64_t max_body_size = 30ull << 20;
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& context, HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Registers `handler` for `method` on `pattern` (see the header comment).
  void Handle(boost::beast::http::verb method, std::string pattern, Handler handler);

  // Binds and listens; kInvalidArgument for a bad address, kUnavailable when
  // the port cannot be taken.
  Result<void> Start();
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Stops accepting; connections in progress finish their current request.
  void Stop();

  struct Shared;

 private:
  boost::asio::io_context& context_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
};

// "%41+b" -> "A b" when `plus_is_space` (query strings); nullopt for a
// truncated or non-hex escape.
std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space);

}  // namespace hikyaku::net
