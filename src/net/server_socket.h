// Pieces every asio SMTP server in hikyaku shares (the injection listener,
// `hikyaku sink`): taking the next connection off a listening socket, and
// closing a connection whose deadline has passed. Protocol-free: smtp/ stays
// without I/O, and these know nothing of SMTP.
//
// Thread-safety: each call runs on the executor it is awaited on; the
// arguments belong to that executor's thread.
#pragma once

#include <chrono>
#include <functional>
#include <optional>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/error_code.hpp>

namespace hikyaku::net {

// The next connection, accepted onto `target` (its thread then owns it).
// A failed accept (EMFILE, ENFILE, a connection reset before accept, ...) is
// reported to `on_error` and retried after a short pause instead of
// spinning; nullopt once the acceptor was closed.
boost::asio::awaitable<std::optional<boost::asio::ip::tcp::socket>> AcceptNext(
    boost::asio::ip::tcp::acceptor& acceptor, boost::asio::io_context& target,
    const std::function<void(const boost::system::error_code&)>& on_error);

// Waits until `deadline` (which the connection may move while this waits)
// has passed and closes `socket`, which cancels the connection's pending
// read or write; returns true then. Returns false once `closed` is set (the
// connection ended first; it cancels `timer` to end the wait at once). The
// references must outlive the wait: the caller's coroutine holds the
// connection alive while it awaits this.
boost::asio::awaitable<bool> CloseAtDeadline(boost::asio::steady_timer& timer,
                                             const std::chrono::steady_clock::time_point& deadline,
                                             const bool& closed, boost::asio::ip::tcp::socket& socket);

}  // namespace hikyaku::net
