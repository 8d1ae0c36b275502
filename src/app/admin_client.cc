#include "app/admin_client.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace hikyaku::app {

namespace asio = boost::asio;
namespace http = boost::beast::http;

std::optional<AdminReply> CallDaemon(const config::Endpoint& endpoint, const std::string& method,
                                     const std::string& target, const std::string& body, std::string& error) {
  try {
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    std::string host = endpoint.address.ToString();
    if (host == "0.0.0.0") host = "127.0.0.1";
    if (host == "::") host = "::1";
    socket.connect(asio::ip::tcp::endpoint(asio::ip::make_address(host), endpoint.port));
    http::request<http::string_body> req(http::string_to_verb(method), target, 11);
    req.set(http::field::host, host);
    req.set(http::field::connection, "close");
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    http::write(socket, req);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    return AdminReply{res.result_int(), res.body()};
  } catch (const std::exception& e) {
    error = e.what();
    return std::nullopt;
  }
}

}  // namespace hikyaku::app
