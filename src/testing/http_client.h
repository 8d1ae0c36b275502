// A one-request HTTP/1.1 client for tests of servers that run on the test's
// own io_context: it sends `body` as application/json on a fresh
// connection, runs the context until the reply arrives (at most 10 s; the
// exchange itself has a 5 s deadline) and returns it, or nullopt when the
// connection, the write or the read failed.
#pragma once

#include <chrono>
#include <exception>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace hikyaku::testing {

using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

inline std::optional<HttpResponse> HttpFetch(boost::asio::io_context& context,
                                             boost::asio::ip::tcp::endpoint endpoint,
                                             boost::beast::http::verb method, std::string target,
                                             std::string body = "") {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  std::optional<HttpResponse> out;
  asio::co_spawn(
      context,
      [&]() -> asio::awaitable<void> {
        beast::tcp_stream stream(context);
        stream.expires_after(std::chrono::seconds(5));
        boost::system::error_code ec;
        co_await stream.async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        http::request<http::string_body> req(method, target, 11);
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        beast::flat_buffer buffer;
        HttpResponse res;
        co_await http::async_read(stream, buffer, res, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        out = std::move(res);
      },
      [&](std::exception_ptr) { context.stop(); });
  context.restart();
  context.run_for(std::chrono::seconds(10));
  return out;
}

}  // namespace hikyaku::testing
