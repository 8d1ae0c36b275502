// SmtpConnection: one outbound SMTP connection to one address, driving a
// smtp::ClientSession over a TCP socket (and TLS after STARTTLS) with
// Boost.Asio coroutines. It connects from an optional source address,
// completes banner/EHLO(/STARTTLS/EHLO), then carries any number of mail
// transactions until Quit(). Every wait is bounded by its phase's timeout
// (RFC 5321 4.5.3.2); a timeout closes the socket. Every failure comes back
// as a classified delivery::Outcome (outcome.h), never as an exception.
//
// Efficiency: the pipelined envelope is one write; the content goes out in
// one gather write of (pending commands, body, terminator), where the body
// is the caller's buffer itself unless some line needs dot-stuffing, in
// which case it is copied once into a reused scratch buffer.
//
// Thread-safety: none. Use one SmtpConnection from one coroutine at a time,
// on its executor (one io_context thread or a strand). Destroying it
// closes the socket; do not destroy it while one of its operations runs.
#pragma once

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tl/expected.hpp>
#include <vector>

#include "base/clock.h"
#include "config/config.h"
#include "delivery/outcome.h"
#include "smtp/client_session.h"

namespace hikyaku::delivery {

// How long each wait may take. Defaults are config::DeliveryConfig's.
struct PhaseTimeouts {
  Duration connect = std::chrono::seconds(30);
  Duration banner = std::chrono::seconds(60);
  Duration ehlo = std::chrono::seconds(60);  // also STARTTLS and its handshake
  Duration mail = std::chrono::seconds(60);  // also RSET
  Duration rcpt = std::chrono::seconds(60);
  Duration data = std::chrono::seconds(120);  // the 354, and writing the content
  Duration data_end = std::chrono::seconds(600);
  Duration quit = std::chrono::seconds(10);  // not configurable: QUIT is a courtesy

  static PhaseTimeouts FromConfig(const config::DeliveryConfig& config);
  Duration For(smtp::ClientPhase phase) const;
};

struct ConnectionOptions {
  std::string helo_name;
  // Bind the socket to this local address before connecting (egress IP).
  std::optional<boost::asio::ip::address> source_address;
  // Use STARTTLS when the server offers it. Needs `tls`.
  bool starttls = true;
  // A client context, e.g. from MakeOpportunisticTlsContext(). Not owned;
  // must outlive the connection. Null: no STARTTLS.
  boost::asio::ssl::context* tls = nullptr;
  PhaseTimeouts timeouts;

  // From the [delivery] section: timeouts, source address, STARTTLS policy;
  // helo_name falls back to `default_helo` (the server's host name).
  static ConnectionOptions FromConfig(const config::DeliveryConfig& config,
                                      std::string default_helo, boost::asio::ssl::context* tls);
};

// A TLS client context for opportunistic STARTTLS (RFC 7435): no
// certificate verification, since an unverified encrypted session is still
// better than plaintext; SSLv2/SSLv3 disabled.
std::unique_ptr<boost::asio::ssl::context> MakeOpportunisticTlsContext();

class SmtpConnection {
 public:
  struct Transaction {
    std::string sender;                    // envelope sender; empty for <>
    std::vector<std::string> recipients;   // at least one
    const std::string* content = nullptr;  // CRLF line ends, not dot-stuffed; outlives Send
  };

  SmtpConnection(boost::asio::any_io_executor executor, ConnectionOptions options);
  ~SmtpConnection();
  SmtpConnection(const SmtpConnection&) = delete;
  SmtpConnection& operator=(const SmtpConnection&) = delete;

  // Connects to `target` and completes banner, EHLO and (if offered and
  // enabled) STARTTLS with the second EHLO. On success the connection is
  // usable(). On failure it is closed and the Outcome says why: refused or
  // timed-out connects and silent banners have host_failure; a failed TLS
  // handshake has tls_failed (retry this host with starttls = false).
  // Call once.
  boost::asio::awaitable<tl::expected<void, Outcome>> Open(boost::asio::ip::tcp::endpoint target);

  // One mail transaction: one Outcome per recipient, in order. When the
  // connection fails midway (timeout, EOF, 421, malformed reply), every
  // recipient not yet decided by its own RCPT reply gets the same deferred
  // Outcome, and the connection is no longer usable(). Only while usable().
  boost::asio::awaitable<std::vector<Outcome>> Send(const Transaction& transaction);

  // Between transactions: waits up to `max` for more work while listening
  // to the server, which may speak first (RFC 5321 3.8: a 421 "closing"
  // can come at any time, e.g. a receiver that limits our connections).
  // kTimedOut: `max` passed; kWoken: CancelIdle() was called (the
  // connection stays usable in both); kClosed: the server spoke or hung up,
  // the connection is closed and `outcome` (ClassifyIdleReply) says why.
  // Over TLS it only waits (cancelling a TLS read is not safe); a 421 is
  // then read at the next MAIL.
  struct IdleEnd {
    enum class Kind { kTimedOut, kWoken, kClosed };
    Kind kind = Kind::kTimedOut;
    Outcome outcome;
  };
  boost::asio::awaitable<IdleEnd> WaitIdle(Duration max);
  // Ends a WaitIdle early (new work arrived). Safe when not waiting.
  void CancelIdle();

  // Sends QUIT, waits (bounded) for the 221 and closes. Safe in any state.
  boost::asio::awaitable<void> Quit();
  // Closes at once, without QUIT.
  void Close();

  bool usable() const { return usable_; }
  bool tls_active() const { return tls_ != nullptr && usable_; }
  const smtp::ServerExtensions& extensions() const { return session_.extensions(); }
  std::string local_address() const;   // "192.0.2.7:40123" once connected, else ""
  std::string remote_address() const;  // "192.0.2.1:25", "[2001:db8::1]:25"
  uint32_t transactions() const { return transactions_; }  // MAIL transactions started

 private:
  struct Shared;  // socket and watchdog state, shared with the watchdog coroutine
  using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>;

  boost::asio::awaitable<boost::system::error_code> WriteOut(Duration timeout);
  boost::asio::awaitable<boost::system::error_code> WriteData(const smtp::DataPayload& payload,
                                                              Duration timeout);
  boost::asio::awaitable<boost::system::error_code> ReadSome(Duration timeout);
  boost::asio::awaitable<boost::system::error_code> Handshake();
  NetworkFailure FailureFor(const boost::system::error_code& ec, smtp::ClientPhase phase) const;
  // Outcome for a session that ended itself (bad banner, 421, bad reply).
  Outcome SessionFailureOutcome() const;
  void Arm(Duration timeout);
  void Disarm();

  ConnectionOptions options_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<TlsStream> tls_;
  smtp::ClientSession session_;
  std::string out_;
  std::string scratch_;  // dot-stuffed content, reused
  std::array<char, 4096> buffer_;
  std::unique_ptr<boost::asio::steady_timer> idle_timer_;
  bool idle_waiting_ = false;
  bool idle_woken_ = false;
  boost::asio::ip::tcp::endpoint remote_;
  boost::asio::ip::tcp::endpoint local_;
  bool opened_ = false;
  bool usable_ = false;
  uint32_t transactions_ = 0;
};

}  // namespace hikyaku::delivery
