// HttpApi: the injection endpoints of the JSON HTTP API, registered on a
// net::HttpServer that the caller owns and starts.
//
//   POST /api/v1/messages   inject one message (raw or structured JSON);
//                           202 {"id": ..., "recipients": n} once durable,
//                           400/413 problem JSON naming the field, 507 when
//                           the spool is full, 503 for other spool failures
//   GET  /healthz           200 "ok" while serving
//
// Errors are RFC 9457 problem details (application/problem+json).
//
// Threading: Register before the server starts; the handlers run on the
// server's io_context. `intake` must outlive the server.
#pragma once

#include <cstdint>

namespace hikyaku::net {
class HttpServer;
}

namespace hikyaku::inject {

class Intake;

struct HttpApiOptions {
  uint64_t max_message_size = 25ull << 20;  // smtp_in.max_message_size applies to HTTP too
  uint32_t max_recipients = 1000;
};

class HttpApi {
 public:
  HttpApi(HttpApiOptions options, Intake& intake);

  // Adds the endpoints above to `server`.
  void Register(net::HttpServer& server);

 private:
  HttpApiOptions options_;
  Intake& intake_;
};

}  // namespace hikyaku::inject
