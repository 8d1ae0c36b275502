#include "app/queues_command.h"

#include <iomanip>
#include <ostream>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "app/daemon.h"

namespace hikyaku::app {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

// A blocking GET against the daemon's own API on loopback.
std::optional<std::string> Get(const config::Endpoint& endpoint, const std::string& target, std::string& error) {
  try {
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    std::string host = endpoint.address.ToString();
    if (host == "0.0.0.0") host = "127.0.0.1";
    if (host == "::") host = "::1";
    socket.connect(asio::ip::tcp::endpoint(asio::ip::make_address(host), endpoint.port));
    http::request<http::empty_body> req(http::verb::get, target, 11);
    req.set(http::field::host, host);
    req.set(http::field::connection, "close");
    http::write(socket, req);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    if (res.result() != http::status::ok) {
      error = "HTTP " + std::to_string(res.result_int());
      return std::nullopt;
    }
    return res.body();
  } catch (const std::exception& e) {
    error = e.what();
    return std::nullopt;
  }
}

}  // namespace

int ShowQueues(const config::Config& config, bool json, std::ostream& out, std::ostream& err) {
  std::string error;
  auto body = Get(config.http.listen, "/api/v1/queues", error);
  if (!body) {
    err << "hikyaku queues: cannot ask the daemon at " << config.http.listen.ToString() << ": " << error << "\n";
    return 75;
  }
  if (json) {
    out << *body;
    return 0;
  }
  auto doc = nlohmann::json::parse(*body, nullptr, false);
  if (doc.is_discarded()) {
    err << "hikyaku queues: the daemon's answer is not JSON\n";
    return 70;
  }
  out << std::left << std::setw(32) << "SITE" << std::right << std::setw(8) << "FRESH" << std::setw(8) << "RETRY"
      << std::setw(9) << "WAITING" << std::setw(7) << "CONNS" << std::setw(11) << "DELIVERED" << "  "
      << "LAST REPLY / DOWN HOSTS\n";
  for (const auto& s : doc.value("sites", nlohmann::json::array())) {
    std::string conns = std::to_string(s["connections"].value("fresh", 0)) + "+" +
                        std::to_string(s["connections"].value("retry", 0));
    std::string note = s.value("last_reply", "");
    for (const auto& h : s.value("hosts", nlohmann::json::array()))
      if (h.value("state", "up") != "up") note += " [" + h.value("name", "") + " " + h.value("state", "") + "]";
    if (note.empty()) note = s.value("last_failure", "");
    out << std::left << std::setw(32) << s.value("site", "") << std::right << std::setw(8) << s.value("fresh", 0)
        << std::setw(8) << s.value("retry", 0) << std::setw(9) << s.value("waiting", 0) << std::setw(7) << conns
        << std::setw(11) << s.value("delivered", 0) << "  " << note << "\n";
  }
  out << "recipients waiting for DNS: " << doc.value("resolving", 0) << "\n";
  return 0;
}

}  // namespace hikyaku::app
