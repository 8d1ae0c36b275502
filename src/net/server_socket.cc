#include "net/server_socket.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace hikyaku::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

asio::awaitable<std::optional<tcp::socket>> AcceptNext(tcp::acceptor& acceptor, asio::io_context& target,
                                                       const std::function<void(const error_code&)>& on_error) {
  for (;;) {
    error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(target, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) co_return std::optional<tcp::socket>(std::move(socket));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return std::nullopt;
    on_error(ec);
    // Out of descriptors and friends: back off briefly instead of spinning.
    asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(50));
    co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<bool> CloseAtDeadline(asio::steady_timer& timer, const std::chrono::steady_clock::time_point& deadline,
                                      const bool& closed, tcp::socket& socket) {
  while (!closed) {
    if (deadline <= std::chrono::steady_clock::now()) {
      error_code ec;
      socket.close(ec);  // cancels the pending read or write
      co_return true;
    }
    timer.expires_at(deadline);
    error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  co_return false;
}

}  // namespace hikyaku::net
