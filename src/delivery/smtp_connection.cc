#include "delivery/smtp_connection.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "base/check.h"

namespace hikyaku::delivery {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using smtp::ClientPhase;
using smtp::ClientSession;
using SteadyTime = std::chrono::steady_clock::time_point;

namespace {

std::string FormatEndpoint(const tcp::endpoint& endpoint) {
  const asio::ip::address& address = endpoint.address();
  if (address.is_v6()) return "[" + address.to_string() + "]:" + std::to_string(endpoint.port());
  return address.to_string() + ":" + std::to_string(endpoint.port());
}

}  // namespace

// The socket and the deadline live here, shared with the watchdog
// coroutine, so a watchdog that wakes after the SmtpConnection is gone
// touches nothing freed.
struct SmtpConnection::Shared {
  explicit Shared(const asio::any_io_executor& executor) : socket(executor), timer(executor) {}

  tcp::socket socket;
  asio::steady_timer timer;
  SteadyTime deadline = SteadyTime::max();
  bool timed_out = false;
  bool stopped = false;
};

namespace {

// One timer per connection instead of one per operation: operations only
// move the deadline; the watchdog closes the socket when it passes, which
// fails whatever read, write, connect or handshake is pending.
template <typename SharedPtr>
asio::awaitable<void> Watchdog(SharedPtr shared) {
  while (!shared->stopped) {
    if (shared->deadline <= std::chrono::steady_clock::now()) {
      shared->timed_out = true;
      shared->deadline = SteadyTime::max();
      error_code ec;
      shared->socket.close(ec);
    }
    shared->timer.expires_at(shared->deadline);
    error_code ec;
    co_await shared->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace

PhaseTimeouts PhaseTimeouts::FromConfig(const config::DeliveryConfig& config) {
  PhaseTimeouts t;
  t.connect = config.connect_timeout;
  t.banner = config.banner_timeout;
  t.ehlo = config.ehlo_timeout;
  t.mail = config.mail_timeout;
  t.rcpt = config.rcpt_timeout;
  t.data = config.data_timeout;
  t.data_end = config.data_end_timeout;
  return t;
}

Duration PhaseTimeouts::For(ClientPhase phase) const {
  switch (phase) {
    case ClientPhase::kBanner:
      return banner;
    case ClientPhase::kEhlo:
    case ClientPhase::kStartTls:
      return ehlo;
    case ClientPhase::kMail:
    case ClientPhase::kRset:
      return mail;
    case ClientPhase::kRcpt:
      return rcpt;
    case ClientPhase::kData:
      return data;
    case ClientPhase::kDataEnd:
      return data_end;
    case ClientPhase::kQuit:
      return quit;
  }
  return mail;
}

ConnectionOptions ConnectionOptions::FromConfig(const config::DeliveryConfig& config,
                                                std::string default_helo, asio::ssl::context* tls) {
  ConnectionOptions options;
  options.helo_name = config.helo_name.empty() ? std::move(default_helo) : config.helo_name;
  if (config.source_address) {
    error_code ec;
    auto address = asio::ip::make_address(config.source_address->ToString(), ec);
    if (!ec) options.source_address = address;  // config validated it already
  }
  options.starttls = config.starttls == config::StartTlsPolicy::kOpportunistic;
  options.tls = tls;
  options.timeouts = PhaseTimeouts::FromConfig(config);
  return options;
}

std::unique_ptr<asio::ssl::context> MakeOpportunisticTlsContext() {
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  context->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3);
  context->set_verify_mode(asio::ssl::verify_none);
  return context;
}

SmtpConnection::SmtpConnection(asio::any_io_executor executor, ConnectionOptions options)
    : options_(std::move(options)),
      shared_(std::make_shared<Shared>(executor)),
      session_(smtp::ClientPolicy{options_.helo_name, options_.starttls && options_.tls != nullptr,
                                  smtp::kDefaultMaxReplyLine, smtp::kDefaultMaxReplyLines}) {}

SmtpConnection::~SmtpConnection() { Close(); }

void SmtpConnection::Close() {
  usable_ = false;
  shared_->stopped = true;
  shared_->timer.cancel();
  error_code ec;
  shared_->socket.close(ec);
}

void SmtpConnection::Arm(Duration timeout) {
  shared_->deadline = std::chrono::steady_clock::now() + timeout;
  // Wake the watchdog only when the deadline moves earlier than its wait.
  if (shared_->deadline < shared_->timer.expiry()) shared_->timer.expires_at(shared_->deadline);
}

void SmtpConnection::Disarm() { shared_->deadline = SteadyTime::max(); }

std::string SmtpConnection::local_address() const {
  return opened_ && local_.port() != 0 ? FormatEndpoint(local_) : std::string();
}

std::string SmtpConnection::remote_address() const { return FormatEndpoint(remote_); }

NetworkFailure SmtpConnection::FailureFor(const error_code& ec, ClientPhase phase) const {
  NetworkFailure failure;
  failure.peer = remote_address();
  failure.phase = phase;
  if (shared_->timed_out) {
    failure.error = NetworkError::kTimeout;
  } else {
    failure.error = NetworkError::kConnectionLost;
    if (ec != asio::error::eof && ec != asio::ssl::error::stream_truncated)
      failure.detail = ec.message();
  }
  return failure;
}

Outcome SmtpConnection::SessionFailureOutcome() const {
  const auto& failure = session_.failure();
  if (!failure) {
    NetworkFailure f;
    f.error = NetworkError::kProtocolError;
    f.phase = session_.awaiting();
    f.peer = remote_address();
    f.detail = "session closed unexpectedly";
    return Classify(f);
  }
  if (failure->protocol_error) {
    NetworkFailure f;
    f.error = NetworkError::kProtocolError;
    f.phase = failure->phase;
    f.peer = remote_address();
    f.detail = failure->reply.code != 0 ? failure->reply.Summary() : failure->reply.text;
    return Classify(f);
  }
  return Classify(failure->phase, failure->reply);
}

asio::awaitable<error_code> SmtpConnection::WriteOut(Duration timeout) {
  error_code ec;
  Arm(timeout);
  if (tls_) {
    co_await asio::async_write(*tls_, asio::buffer(out_),
                               asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await asio::async_write(shared_->socket, asio::buffer(out_),
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  Disarm();
  out_.clear();
  co_return ec;
}

asio::awaitable<error_code> SmtpConnection::WriteData(const smtp::DataPayload& payload,
                                                      Duration timeout) {
  std::array<asio::const_buffer, 3> buffers = {asio::buffer(out_), asio::buffer(payload.body),
                                               asio::buffer(payload.terminator)};
  error_code ec;
  Arm(timeout);
  if (tls_) {
    co_await asio::async_write(*tls_, buffers, asio::redirect_error(asio::use_awaitable, ec));
  } else {
    co_await asio::async_write(shared_->socket, buffers,
                               asio::redirect_error(asio::use_awaitable, ec));
  }
  Disarm();
  out_.clear();
  co_return ec;
}

asio::awaitable<error_code> SmtpConnection::ReadSome(Duration timeout) {
  error_code ec;
  Arm(timeout);
  size_t n = tls_ ? co_await tls_->async_read_some(asio::buffer(buffer_),
                                                   asio::redirect_error(asio::use_awaitable, ec))
                  : co_await shared_->socket.async_read_some(
                        asio::buffer(buffer_), asio::redirect_error(asio::use_awaitable, ec));
  Disarm();
  if (!ec) session_.Feed(std::string_view(buffer_.data(), n));
  co_return ec;
}

asio::awaitable<error_code> SmtpConnection::Handshake() {
  tls_ = std::make_unique<TlsStream>(shared_->socket, *options_.tls);
  error_code ec;
  Arm(options_.timeouts.ehlo);
  co_await tls_->async_handshake(asio::ssl::stream_base::client,
                                 asio::redirect_error(asio::use_awaitable, ec));
  Disarm();
  co_return ec;
}

asio::awaitable<tl::expected<void, Outcome>> SmtpConnection::Open(tcp::endpoint target) {
  HIKYAKU_CHECK(!opened_);
  opened_ = true;
  remote_ = target;
  auto fail = [this](Outcome outcome) {
    Close();
    return tl::expected<void, Outcome>(tl::unexpected<Outcome>(std::move(outcome)));
  };

  error_code ec;
  tcp::socket& socket = shared_->socket;
  socket.open(target.protocol(), ec);
  if (!ec && options_.source_address) {
    socket.bind(tcp::endpoint(*options_.source_address, 0), ec);
  }
  if (ec) {
    NetworkFailure f;
    f.error = NetworkError::kLocal;
    f.peer = remote_address();
    f.detail =
        (options_.source_address ? "cannot bind " + options_.source_address->to_string() + ": "
                                 : std::string("cannot open a socket: ")) +
        ec.message();
    co_return fail(Classify(f));
  }

  asio::co_spawn(socket.get_executor(), Watchdog(shared_), asio::detached);

  Arm(options_.timeouts.connect);
  co_await socket.async_connect(target, asio::redirect_error(asio::use_awaitable, ec));
  Disarm();
  if (ec) {
    NetworkFailure f;
    f.peer = remote_address();
    if (shared_->timed_out) {
      f.error = NetworkError::kConnectTimeout;
    } else if (ec == asio::error::connection_refused) {
      f.error = NetworkError::kConnectRefused;
    } else {
      f.error = NetworkError::kConnectFailed;
      f.detail = ec.message();
    }
    co_return fail(Classify(f));
  }
  socket.set_option(tcp::no_delay(true), ec);  // small pipelined writes must not wait for ACKs
  local_ = socket.local_endpoint(ec);

  for (;;) {
    switch (session_.Process(out_)) {
      case ClientSession::Action::kNeedInput: {
        ClientPhase phase = session_.awaiting();
        Duration timeout = options_.timeouts.For(phase);
        if (!out_.empty()) {
          ec = co_await WriteOut(timeout);
          if (ec) co_return fail(Classify(FailureFor(ec, phase)));
        }
        ec = co_await ReadSome(timeout);
        if (ec) co_return fail(Classify(FailureFor(ec, phase)));
        break;
      }
      case ClientSession::Action::kStartTls:
        ec = co_await Handshake();
        if (ec) {
          NetworkFailure f;
          f.error = NetworkError::kTlsFailed;
          f.phase = ClientPhase::kStartTls;
          f.peer = remote_address();
          f.detail = shared_->timed_out ? std::string("timed out") : ec.message();
          co_return fail(Classify(f));
        }
        session_.OnTlsStarted(out_);
        break;
      case ClientSession::Action::kReady:
        usable_ = true;
        co_return tl::expected<void, Outcome>();
      case ClientSession::Action::kClose:
        if (!out_.empty()) co_await WriteOut(options_.timeouts.quit);  // QUIT after a 554 banner
        co_return fail(SessionFailureOutcome());
      case ClientSession::Action::kSendData:
      case ClientSession::Action::kTransactionDone:
        HIKYAKU_CHECK(false && "no transaction during Open");
    }
  }
}

asio::awaitable<std::vector<Outcome>> SmtpConnection::Send(const Transaction& transaction) {
  HIKYAKU_CHECK(transaction.content != nullptr);
  HIKYAKU_CHECK(!transaction.recipients.empty());
  const size_t n = transaction.recipients.size();
  if (!usable_ || !session_.idle()) {
    NetworkFailure f;
    f.error = NetworkError::kConnectionLost;
    f.phase = ClientPhase::kMail;
    f.peer = remote_address();
    f.detail = "connection not usable";
    co_return std::vector<Outcome>(n, Classify(f));
  }
  const std::string& content = *transaction.content;
  smtp::TransactionRequest request;
  request.sender = transaction.sender;
  request.recipients = transaction.recipients;
  request.content_size = content.size();
  request.eight_bit = smtp::HasEightBitOctet(content);
  session_.StartTransaction(request, out_);
  ++transactions_;

  // The connection broke: recipients already decided keep their reply, the
  // others share the network failure.
  auto broken = [&](const NetworkFailure& failure) {
    Close();
    std::vector<smtp::RecipientResult> results = session_.TakeResults();
    Outcome common = Classify(failure);
    std::vector<Outcome> outcomes;
    outcomes.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      bool decided = i < results.size() && results[i].reply.code != 0;
      outcomes.push_back(decided ? Classify(results[i]) : common);
    }
    return outcomes;
  };

  error_code ec;
  for (;;) {
    switch (session_.Process(out_)) {
      case ClientSession::Action::kNeedInput: {
        ClientPhase phase = session_.awaiting();
        Duration timeout = options_.timeouts.For(phase);
        if (!out_.empty()) {
          ec = co_await WriteOut(timeout);
          if (ec) co_return broken(FailureFor(ec, phase));
        }
        ec = co_await ReadSome(timeout);
        if (ec) co_return broken(FailureFor(ec, phase));
        break;
      }
      case ClientSession::Action::kSendData: {
        smtp::DataPayload payload = smtp::PrepareDataPayload(content, scratch_);
        ec = co_await WriteData(payload, options_.timeouts.data);
        if (ec) co_return broken(FailureFor(ec, ClientPhase::kDataEnd));
        break;
      }
      case ClientSession::Action::kTransactionDone: {
        std::vector<smtp::RecipientResult> results = session_.TakeResults();
        std::vector<Outcome> outcomes;
        outcomes.reserve(n);
        std::optional<Outcome> session_failure;
        for (size_t i = 0; i < n; ++i) {
          if (results[i].reply.code != 0) {
            outcomes.push_back(Classify(results[i]));
          } else {
            // Undecided: the session ended on a malformed reply.
            if (!session_failure) session_failure = SessionFailureOutcome();
            outcomes.push_back(*session_failure);
          }
        }
        if (session_.closed()) Close();  // 421 or a protocol error
        co_return outcomes;
      }
      case ClientSession::Action::kClose: {
        Close();
        co_return std::vector<Outcome>(n, SessionFailureOutcome());
      }
      case ClientSession::Action::kReady:
      case ClientSession::Action::kStartTls:
        HIKYAKU_CHECK(false && "transaction ended without kTransactionDone");
    }
  }
}

asio::awaitable<SmtpConnection::IdleEnd> SmtpConnection::WaitIdle(Duration max) {
  if (!idle_timer_) idle_timer_ = std::make_unique<asio::steady_timer>(shared_->socket.get_executor());
  idle_waiting_ = true;
  idle_woken_ = false;
  idle_timer_->expires_after(max);
  IdleEnd end;
  if (tls_ || !usable_) {
    error_code ec;
    co_await idle_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    idle_waiting_ = false;
    end.kind = idle_woken_ ? IdleEnd::Kind::kWoken : IdleEnd::Kind::kTimedOut;
    co_return end;
  }
  // The timer (or CancelIdle) cancels the read; the socket stays open.
  idle_timer_->async_wait([shared = shared_](const error_code& ec) {
    if (ec || shared->stopped) return;
    error_code ignored;
    shared->socket.cancel(ignored);
  });
  error_code ec;
  size_t n = co_await shared_->socket.async_read_some(asio::buffer(buffer_),
                                                      asio::redirect_error(asio::use_awaitable, ec));
  idle_waiting_ = false;
  idle_timer_->cancel();
  if (ec == asio::error::operation_aborted) {
    end.kind = idle_woken_ ? IdleEnd::Kind::kWoken : IdleEnd::Kind::kTimedOut;
    co_return end;
  }
  smtp::Reply reply;
  if (!ec) {
    smtp::ReplyParser parser;
    auto event = parser.Consume(std::string_view(buffer_.data(), n));
    if (event.status == smtp::ReplyParser::Status::kReply) reply = parser.TakeReply();
  }
  end.kind = IdleEnd::Kind::kClosed;
  end.outcome = ClassifyIdleReply(reply, remote_address());
  Close();
  co_return end;
}

void SmtpConnection::CancelIdle() {
  if (!idle_waiting_ || !idle_timer_) return;
  idle_woken_ = true;
  idle_timer_->cancel();
  if (!tls_) {
    error_code ignored;
    shared_->socket.cancel(ignored);
  }
}

asio::awaitable<void> SmtpConnection::Quit() {
  if (usable_ && session_.idle()) {
    session_.Quit(out_);
    error_code ec = co_await WriteOut(options_.timeouts.quit);
    // RFC 5321 4.1.1.10: the server closes after its 221; waiting for it
    // (briefly) lets the server log a clean end instead of a lost connection.
    while (!ec && session_.Process(out_) == ClientSession::Action::kNeedInput) {
      ec = co_await ReadSome(options_.timeouts.quit);
    }
  }
  Close();
}

}  // namespace hikyaku::delivery
