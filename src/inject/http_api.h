// HttpApi: the JSON HTTP API under /api/v1/ (Boost.Beast).
//
//   POST /api/v1/messages   inject one message (raw or structured JSON);
//                           202 {"id": ...} once durable, 400/413 problem
//                           JSON naming the field, 507 when the spool is full
//   GET  /api/v1/stats      counters of intake, spool, listeners, delivery
//   GET  /api/v1/queues     the delivery queues: sites, lanes, connections, down hosts
//   GET  /healthz           200 "ok" while serving
//
// Errors are RFC 9457 problem details (application/problem+json).
//
// Threading: runs on one io_context; Start/Stop from that context's thread
// (or before it runs).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json_fwd.hpp>

#include "base/error.h"
#include "config/config.h"

namespace hikyaku::inject {

class Intake;

struct HttpApiOptions {
  config::Endpoint listen;
  uint64_t max_body_size = 30ull << 20;
  uint64_t max_message_size = 25ull << 20;  // smtp_in.max_message_size applies to HTTP too
  uint32_t max_recipients = 1000;
};

class HttpApi {
 public:
  // GET endpoints served as JSON, e.g. "/api/v1/stats" -> a function filling
  // the body (called on the API's thread; must be thread-safe).
  using JsonEndpoints = std::map<std::string, std::function<void(nlohmann::json&)>>;
  HttpApi(boost::asio::io_context& context, HttpApiOptions options, Intake& intake, JsonEndpoints endpoints);
  ~HttpApi();

  Result<void> Start();
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  void Stop();

  struct Shared;

 private:
  boost::asio::io_context& context_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
};

}  // namespace hikyaku::inject
