#include "inject/smtp_listener.h"

#include <array>
#include <chrono>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include "auth/password.h"
#include "inject/async_submit.h"
#include "inject/intake.h"
#include "net/server_socket.h"
#include "smtp/server_session.h"

namespace hikyaku::inject {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

struct SmtpListener::Shared {
  Shared(std::vector<asio::io_context*> c, const config::SmtpInConfig& cfg, std::string host, Intake& in)
      : contexts(std::move(c)), config(cfg), hostname(std::move(host)), intake(in) {}

  std::vector<asio::io_context*> contexts;
  config::SmtpInConfig config;
  std::string hostname;
  Intake& intake;
  std::optional<asio::ssl::context> tls;
  // Password hashing is deliberately slow (PBKDF2): it runs off the I/O threads.
  asio::thread_pool auth_pool{1};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> open{0};
  std::atomic<size_t> next_context{0};
  std::atomic<bool> stopped{false};

  bool RelayAllowed(const asio::ip::address& address) const {
    auto ip = config::IpAddress::Parse(address.to_string());
    if (!ip) return false;
    for (const auto& net : config.relay_networks)
      if (net.Contains(*ip)) return true;
    return false;
  }

  // The [[tenant]] of an smtp_in.users entry; "" for none or no such user.
  std::string TenantOf(std::string_view user) const {
    for (const auto& u : config.users)
      if (u.name == user) return u.tenant;
    return "";
  }

  bool CheckPassword(const std::string& user, const std::string& password) const {
    for (const auto& u : config.users)
      if (u.name == user) return auth::VerifyPassword(password, u.password_hash);
    // Unknown user: spend comparable time so user names cannot be probed by timing.
    auth::VerifyPassword(password, kDummyHash);
    return false;
  }

  static constexpr const char* kDummyHash =
      "$pbkdf2-sha256$100000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
};

namespace {

// One SMTP connection: owns the socket (and TLS layer once STARTTLS ran) and
// a watchdog that closes the socket when the current phase's deadline passes
// (RFC 5321 4.5.3.2 server timeouts).
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<SmtpListener::Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)), socket_(std::move(socket)), timer_(socket_.get_executor()) {}

  asio::awaitable<void> Run() {
    error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    if (ec) co_return;
    client_ = remote.address().is_v6() && remote.address().to_v6().is_v4_mapped()
                  ? asio::ip::address(asio::ip::make_address_v4(asio::ip::v4_mapped, remote.address().to_v6()))
                  : remote.address();
    socket_.set_option(tcp::no_delay(true), ec);

    asio::co_spawn(socket_.get_executor(), Watchdog(shared_from_this()), asio::detached);
    co_await Converse();
    Close();
  }

 private:
  asio::awaitable<void> Converse() {
    const auto& cfg = shared_->config;
    smtp::ServerPolicy policy;
    policy.hostname = shared_->hostname;
    policy.max_message_size = cfg.max_message_size;
    policy.max_recipients = cfg.max_recipients;
    policy.max_errors = cfg.max_errors;
    policy.relay_allowed = shared_->RelayAllowed(client_);
    policy.tls_available = shared_->tls.has_value();
    policy.auth_available = !cfg.users.empty();
    policy.client_address = client_.to_string();
    smtp::ServerSession session(policy);

    std::string out;
    session.Start(out);
    std::array<char, 16384> buffer;
    for (;;) {
      switch (session.Process(out)) {
        case smtp::ServerSession::Action::kNeedInput: {
          // Replies to pipelined commands are batched until input runs dry (RFC 2920 3.2).
          if (!out.empty() && !co_await Write(out)) co_return;
          Arm(session.in_data() ? cfg.data_timeout : cfg.command_timeout);
          size_t n = co_await ReadSome(buffer);
          if (n == 0) co_return;
          session.Feed(std::string_view(buffer.data(), n));
          break;
        }
        case smtp::ServerSession::Action::kCommitMessage: {
          auto received = session.TakeMessage();
          Submission submission;
          submission.sender = std::move(received.sender);
          submission.recipients = std::move(received.recipients);
          submission.content = std::move(received.content);
          submission.client_address = client_.to_string();
          submission.client_helo = std::move(received.helo);
          submission.flow.tenant = received.auth_user.empty() ? "" : shared_->TenantOf(received.auth_user);
          submission.flow.relay_client = policy.relay_allowed;
          submission.flow.authenticated = session.authenticated();
          using message::ReceivedProtocol;
          submission.protocol = tls_ ? (session.authenticated() ? ReceivedProtocol::kEsmtpsa : ReceivedProtocol::kEsmtps)
                                     : (session.authenticated() ? ReceivedProtocol::kEsmtpa : ReceivedProtocol::kEsmtp);
          Arm(cfg.data_timeout);  // a stuck spool must not pin the connection forever
          Result<MessageId> result = co_await AsyncSubmit(shared_->intake, std::move(submission), asio::use_awaitable);
          if (result) {
            session.OnCommitted(true, false, result->ToString(), out);
          } else if (result.error().code() == ErrorCode::kInvalidArgument) {
            // Unknown tenant or bad priority (intake.h): the sender must change the message.
            spdlog::info("smtp {}: message refused: {}", client_.to_string(), result.error().message());
            session.OnRefused("5.7.1", result.error().message(), out);
          } else {
            spdlog::warn("smtp {}: message not accepted: {}", client_.to_string(), result.error().ToString());
            session.OnCommitted(false, result.error().code() == ErrorCode::kNoSpace, "", out);
          }
          break;
        }
        case smtp::ServerSession::Action::kStartTls: {
          if (!co_await Write(out)) co_return;
          Arm(cfg.command_timeout);
          tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, *shared_->tls);
          error_code ec;
          co_await tls_->async_handshake(asio::ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
          if (ec) {
            spdlog::info("smtp {}: TLS handshake failed: {}", client_.to_string(), ec.message());
            co_return;
          }
          session.OnTlsStarted();
          break;
        }
        case smtp::ServerSession::Action::kCheckAuth: {
          const auto& credentials = session.AuthCredentials();
          const std::string& user = credentials.username;
          const std::string& password = credentials.password;
          auto executor = co_await asio::this_coro::executor;
          co_await asio::post(shared_->auth_pool, asio::use_awaitable);
          bool ok = shared_->CheckPassword(user, password);
          co_await asio::post(executor, asio::use_awaitable);
          if (!ok) spdlog::info("smtp {}: authentication failed for user {}", client_.to_string(), user);
          session.OnAuthResult(ok, out);
          break;
        }
        case smtp::ServerSession::Action::kClose:
          if (!out.empty()) co_await Write(out);
          co_return;
      }
    }
  }

  asio::awaitable<size_t> ReadSome(std::array<char, 16384>& buffer) {
    error_code ec;
    size_t n = tls_ ? co_await tls_->async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec))
                    : co_await socket_.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
    co_return ec ? 0 : n;
  }

  asio::awaitable<bool> Write(std::string& out) {
    error_code ec;
    Arm(shared_->config.command_timeout);
    if (tls_)
      co_await asio::async_write(*tls_, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    else
      co_await asio::async_write(socket_, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    out.clear();
    co_return !ec;
  }

  void Arm(Duration timeout) { deadline_ = std::chrono::steady_clock::now() + timeout; }

  void Close() {
    closed_ = true;
    timer_.cancel();
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  static asio::awaitable<void> Watchdog(std::shared_ptr<Connection> self) {
    // Not `if (co_await ...)`: GCC 12 compiled that form into a trap (SIGILL).
    const bool timed_out = co_await net::CloseAtDeadline(self->timer_, self->deadline_, self->closed_, self->socket_);
    if (timed_out) spdlog::info("smtp {}: timeout, closing", self->client_.to_string());
  }

  std::shared_ptr<SmtpListener::Shared> shared_;
  tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
  asio::steady_timer timer_;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  bool closed_ = false;
  asio::ip::address client_;
};

asio::awaitable<void> Refuse(tcp::socket socket, std::string hostname) {
  std::string reply = "421 4.7.0 " + hostname + " Too many connections, try again later\r\n";
  error_code ec;
  co_await asio::async_write(socket, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
  socket.close(ec);
}

asio::awaitable<void> AcceptLoop(std::shared_ptr<SmtpListener::Shared> shared, tcp::acceptor& acceptor) {
  for (;;) {
    asio::io_context& target = *shared->contexts[shared->next_context++ % shared->contexts.size()];
    std::optional<tcp::socket> accepted = co_await net::AcceptNext(
        acceptor, target, [](const error_code& ec) { spdlog::warn("smtp accept failed: {}", ec.message()); });
    if (!accepted || shared->stopped) co_return;
    tcp::socket socket = std::move(*accepted);
    if (shared->open.load() >= shared->config.max_connections) {
      ++shared->refused;
      asio::co_spawn(target, Refuse(std::move(socket), shared->hostname), asio::detached);
      continue;
    }
    ++shared->accepted;
    ++shared->open;
    auto connection = std::make_shared<Connection>(shared, std::move(socket));
    asio::co_spawn(target, connection->Run(), [shared, connection](std::exception_ptr e) {
      --shared->open;
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("smtp connection ended by exception: {}", ex.what());
        }
      }
    });
  }
}

}  // namespace

SmtpListener::SmtpListener(std::vector<asio::io_context*> contexts, const config::SmtpInConfig& config,
                           std::string hostname, Intake& intake)
    : shared_(std::make_shared<Shared>(std::move(contexts), config, std::move(hostname), intake)) {}

SmtpListener::~SmtpListener() { Stop(); }

Result<void> SmtpListener::Start() {
  if (shared_->config.tls) {
    const auto& profile = *shared_->config.tls;
    shared_->tls.emplace(asio::ssl::context::tls_server);
    auto& ctx = *shared_->tls;
    ctx.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                    asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    error_code ec;
    ctx.use_certificate_chain_file(profile.certificate.string(), ec);
    if (ec) return Fail(ErrorCode::kInvalidArgument, "tls." + profile.name + ".certificate: " + ec.message());
    ctx.use_private_key_file(profile.key.string(), asio::ssl::context::pem, ec);
    if (ec) return Fail(ErrorCode::kInvalidArgument, "tls." + profile.name + ".key: " + ec.message());
  }
  asio::io_context& home = *shared_->contexts.front();
  for (const auto& endpoint : shared_->config.listen) {
    error_code ec;
    auto address = asio::ip::make_address(endpoint.address.ToString(), ec);
    if (ec) return Fail(ErrorCode::kInvalidArgument, "bad listen address " + endpoint.ToString());
    auto acceptor = std::make_unique<tcp::acceptor>(home);
    tcp::endpoint ep(address, endpoint.port);
    acceptor->open(ep.protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec && ep.protocol() == tcp::v6()) acceptor->set_option(boost::asio::ip::v6_only(true), ec);
    if (!ec) acceptor->bind(ep, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      acceptors_.clear();
      return Fail(ErrorCode::kUnavailable, "cannot listen on " + endpoint.ToString() + ": " + ec.message());
    }
    acceptors_.push_back(std::move(acceptor));
  }
  for (auto& acceptor : acceptors_) asio::co_spawn(home, AcceptLoop(shared_, *acceptor), asio::detached);
  return {};
}

std::vector<tcp::endpoint> SmtpListener::local_endpoints() const {
  std::vector<tcp::endpoint> out;
  for (const auto& a : acceptors_) {
    error_code ec;
    out.push_back(a->local_endpoint(ec));
  }
  return out;
}

void SmtpListener::Stop() {
  if (shared_->stopped.exchange(true)) return;
  for (auto& a : acceptors_) {
    error_code ec;
    a->close(ec);
  }
}

SmtpListenerStats SmtpListener::Stats() const {
  return {shared_->accepted.load(), shared_->refused.load(), shared_->open.load()};
}

}  // namespace hikyaku::inject
