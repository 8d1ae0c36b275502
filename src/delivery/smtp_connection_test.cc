// SmtpConnection against real sockets on 127.0.0.1 (port 0): the project's
// own smtp::ServerSession driven by a minimal asio loop (a conforming
// receiver with PIPELINING, SIZE, 8BITMIME and STARTTLS), and a scripted
// server for the replies a conforming receiver would not give.
#include "delivery/smtp_connection.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "smtp/server_session.h"

namespace hikyaku::delivery {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Kind = Outcome::Kind;
using namespace std::chrono_literals;

// A self-signed certificate and key for "mx.test", made with the OpenSSL API.
struct TestCertificate {
  std::string cert_pem;
  std::string key_pem;
};

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

TestCertificate MakeSelfSignedCertificate() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("mx.test"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_sign(cert, key, EVP_sha256());
  TestCertificate out;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  out.cert_pem = BioToString(bio);
  BIO_free(bio);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  out.key_pem = BioToString(bio);
  BIO_free(bio);
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

std::unique_ptr<asio::ssl::context> MakeServerTlsContext() {
  static const TestCertificate certificate = MakeSelfSignedCertificate();
  auto context = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  context->use_certificate_chain(asio::buffer(certificate.cert_pem));
  context->use_private_key(asio::buffer(certificate.key_pem), asio::ssl::context::pem);
  return context;
}

// A stream that is plain TCP until StartTls().
class ServerStream {
 public:
  explicit ServerStream(tcp::socket socket) : socket_(std::move(socket)) {}
  asio::awaitable<size_t> ReadSome(std::array<char, 8192>& buffer, error_code& ec) {
    if (tls_)
      co_return co_await tls_->async_read_some(asio::buffer(buffer),
                                               asio::redirect_error(asio::use_awaitable, ec));
    co_return co_await socket_.async_read_some(asio::buffer(buffer),
                                               asio::redirect_error(asio::use_awaitable, ec));
  }
  asio::awaitable<void> Write(std::string& out, error_code& ec) {
    if (tls_)
      co_await asio::async_write(*tls_, asio::buffer(out),
                                 asio::redirect_error(asio::use_awaitable, ec));
    else
      co_await asio::async_write(socket_, asio::buffer(out),
                                 asio::redirect_error(asio::use_awaitable, ec));
    out.clear();
  }
  asio::awaitable<void> StartTls(asio::ssl::context& context, error_code& ec) {
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket&>>(socket_, context);
    co_await tls_->async_handshake(asio::ssl::stream_base::server,
                                   asio::redirect_error(asio::use_awaitable, ec));
  }
  tcp::socket& socket() { return socket_; }

 private:
  tcp::socket socket_;
  std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls_;
};

// Listens on 127.0.0.1:0 and serves every connection with `serve`.
class Listener {
 public:
  using Serve = std::function<asio::awaitable<void>(tcp::socket)>;
  Listener(asio::io_context& io, Serve serve)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        serve_(std::move(serve)) {
    asio::co_spawn(io, Accept(), asio::detached);
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }
  int connections() const { return connections_; }

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      error_code ec;
      tcp::socket socket =
          co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      ++connections_;
      asio::co_spawn(acceptor_.get_executor(), serve_(std::move(socket)), asio::detached);
    }
  }
  tcp::acceptor acceptor_;
  Serve serve_;
  int connections_ = 0;
};

// The project's own server side as the receiver.
class SessionServer {
 public:
  SessionServer(asio::io_context& io, asio::ssl::context* tls = nullptr)
      : tls_(tls), listener_(io, [this](tcp::socket s) { return Serve(std::move(s)); }) {}
  tcp::endpoint endpoint() const { return listener_.endpoint(); }
  int connections() const { return listener_.connections(); }
  std::vector<smtp::ServerSession::Message> messages;

 private:
  asio::awaitable<void> Serve(tcp::socket socket) {
    smtp::ServerPolicy policy;
    policy.hostname = "mx.test";
    policy.max_message_size = 1 << 20;
    policy.max_recipients = 100;
    policy.relay_allowed = true;
    policy.tls_available = tls_ != nullptr;
    policy.client_address = "127.0.0.1";
    smtp::ServerSession session(policy);
    ServerStream stream(std::move(socket));
    std::string out;
    session.Start(out);
    std::array<char, 8192> buffer;
    error_code ec;
    for (;;) {
      switch (session.Process(out)) {
        case smtp::ServerSession::Action::kNeedInput: {
          if (!out.empty()) co_await stream.Write(out, ec);
          if (ec) co_return;
          size_t n = co_await stream.ReadSome(buffer, ec);
          if (ec) co_return;
          session.Feed(std::string_view(buffer.data(), n));
          break;
        }
        case smtp::ServerSession::Action::kCommitMessage:
          messages.push_back(session.TakeMessage());
          session.OnCommitted(true, false, "Q" + std::to_string(messages.size()), out);
          break;
        case smtp::ServerSession::Action::kStartTls:
          co_await stream.Write(out, ec);
          if (!ec) co_await stream.StartTls(*tls_, ec);
          if (ec) co_return;
          session.OnTlsStarted();
          break;
        case smtp::ServerSession::Action::kCheckAuth:
          session.OnAuthResult(false, out);
          break;
        case smtp::ServerSession::Action::kClose:
          if (!out.empty()) co_await stream.Write(out, ec);
          co_return;
      }
    }
  }

  asio::ssl::context* tls_;
  Listener listener_;
};

// A receiver that answers from a script. For each command line, `reply`
// may give the reply text (with CRLF), "" for the default, or kHangUp.
class ScriptedServer {
 public:
  static constexpr std::string_view kHangUp = "<hang up>";
  static constexpr std::string_view kSilence = "<silence>";

  explicit ScriptedServer(asio::io_context& io)
      : listener_(io, [this](tcp::socket s) { return Serve(std::move(s)); }) {}
  tcp::endpoint endpoint() const { return listener_.endpoint(); }
  int connections() const { return listener_.connections(); }

  std::string banner = "220 mx.test ESMTP\r\n";  // kSilence: never greets
  std::string ehlo = "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
  std::function<std::string(std::string_view line)> reply = [](std::string_view) {
    return std::string();
  };
  std::string data_end = "250 2.0.0 Ok: queued\r\n";  // kSilence / kHangUp allowed
  // Said unprompted after the first message's reply, then the server hangs
  // up (a receiver closing an idle connection); empty: nothing.
  std::string after_first_message;
  std::vector<std::string> commands;                  // every command line received
  std::vector<std::string> bodies;                    // raw (still dot-stuffed) message bodies

 private:
  std::string DefaultReply(std::string_view line) {
    std::string verb(line.substr(0, 4));
    for (char& c : verb) c = static_cast<char>(toupper(c));
    if (verb == "EHLO") return ehlo;
    if (verb == "HELO") return "250 mx.test\r\n";
    if (verb == "MAIL") return "250 2.1.0 Ok\r\n";
    if (verb == "RCPT") return "250 2.1.5 Ok\r\n";
    if (verb == "DATA") return "354 End data with <CR><LF>.<CR><LF>\r\n";
    if (verb == "RSET") return "250 2.0.0 Ok\r\n";
    if (verb == "QUIT") return "221 2.0.0 Bye\r\n";
    return "502 5.5.2 Error: command not recognized\r\n";
  }

  asio::awaitable<void> Serve(tcp::socket socket) {
    ServerStream stream(std::move(socket));
    std::array<char, 8192> buffer;
    error_code ec;
    std::string out;
    if (banner == kSilence) {
      // Accept and say nothing; hold the socket until the client gives up.
      while (!ec) co_await stream.ReadSome(buffer, ec);
      co_return;
    }
    out = banner;
    co_await stream.Write(out, ec);
    std::string in;
    bool in_data = false;
    while (!ec) {
      size_t n = co_await stream.ReadSome(buffer, ec);
      if (ec) co_return;
      in.append(buffer.data(), n);
      size_t lf;
      while ((lf = in.find('\n')) != std::string::npos) {
        std::string line = in.substr(0, lf + 1);
        in.erase(0, lf + 1);
        if (in_data) {
          if (line != ".\r\n") {
            bodies.back() += line;
            continue;
          }
          in_data = false;
          if (data_end == kHangUp) co_return;
          if (data_end == kSilence) continue;
          out += data_end;
          if (!after_first_message.empty()) {
            co_await stream.Write(out, ec);
            co_await asio::steady_timer(co_await asio::this_coro::executor, 100ms).async_wait(asio::as_tuple(asio::use_awaitable));
            out = after_first_message;
            co_await stream.Write(out, ec);
            co_return;
          }
          continue;
        }
        line.resize(line.size() - 2);
        commands.push_back(line);
        std::string r = reply(line);
        if (r.empty()) r = DefaultReply(line);
        if (r == kHangUp) {
          if (!out.empty()) co_await stream.Write(out, ec);
          co_return;
        }
        if (r.starts_with("354")) {
          in_data = true;
          bodies.emplace_back();
        }
        out += r;
        if (r.starts_with("221")) {
          co_await stream.Write(out, ec);
          co_return;
        }
      }
      if (!out.empty()) co_await stream.Write(out, ec);
    }
  }

  Listener listener_;
};

class SmtpConnectionTest : public ::testing::Test {
 protected:
  ConnectionOptions Options() {
    ConnectionOptions options;
    options.helo_name = "client.test";
    options.tls = client_tls_.get();
    options.timeouts.connect = 2s;
    options.timeouts.banner = 2s;
    options.timeouts.ehlo = 2s;
    options.timeouts.mail = 2s;
    options.timeouts.rcpt = 2s;
    options.timeouts.data = 2s;
    options.timeouts.data_end = 2s;
    options.timeouts.quit = 1s;
    return options;
  }

  // Runs `body` as a coroutine on io_ until it finishes (at most 30 s).
  void Run(std::function<asio::awaitable<void>()> body) {
    bool done = false;
    asio::co_spawn(
        io_,
        [&]() -> asio::awaitable<void> {
          co_await body();
          done = true;
          io_.stop();
        },
        [](std::exception_ptr e) {
          if (e) std::rethrow_exception(e);
        });
    io_.run_for(30s);
    io_.restart();
    ASSERT_TRUE(done) << "test coroutine did not finish";
  }

  asio::io_context io_;
  std::unique_ptr<asio::ssl::context> client_tls_ = MakeOpportunisticTlsContext();
};

const std::string kContent =
    "From: a@out.example\r\nSubject: test\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n";

TEST_F(SmtpConnectionTest, PipelinedDeliveryToServerSession) {
  SessionServer server(io_);
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value()) << (opened ? "" : opened.error().Summary());
    EXPECT_TRUE(connection.usable());
    EXPECT_TRUE(connection.extensions().pipelining);
    EXPECT_FALSE(connection.tls_active());  // the server has no certificate
    EXPECT_EQ(connection.remote_address(), "127.0.0.1:" + std::to_string(server.endpoint().port()));
    EXPECT_TRUE(connection.local_address().starts_with("127.0.0.1:"));

    SmtpConnection::Transaction tx{
        "bounce@out.example", {"a@x.test", "b@x.test", "c@x.test"}, &kContent};
    std::vector<Outcome> outcomes = co_await connection.Send(tx);
    EXPECT_EQ(outcomes.size(), 3u);
    for (const auto& o : outcomes) {
      EXPECT_EQ(o.kind, Kind::kDelivered) << o.Summary();
      EXPECT_EQ(o.code, 250);
      EXPECT_EQ(o.enhanced, "2.0.0");
    }
    EXPECT_EQ(connection.transactions(), 1u);
    co_await connection.Quit();
    EXPECT_FALSE(connection.usable());
  });
  ASSERT_EQ(server.messages.size(), 1u);
  EXPECT_EQ(server.messages[0].content, kContent);  // dot-stuffing round trip
  EXPECT_EQ(server.messages[0].recipients,
            (std::vector<std::string>{"a@x.test", "b@x.test", "c@x.test"}));
  EXPECT_EQ(server.messages[0].sender, "bounce@out.example");
  EXPECT_EQ(server.messages[0].helo, "client.test");
}

TEST_F(SmtpConnectionTest, RecipientRepliesArePerRecipient) {
  ScriptedServer server(io_);
  server.reply = [](std::string_view line) -> std::string {
    if (line == "RCPT TO:<bad@x.test>")
      return "550 5.1.1 <bad@x.test>: Recipient address rejected\r\n";
    if (line == "RCPT TO:<full@x.test>") return "452 4.2.2 Mailbox full\r\n";
    return "";
  };
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    SmtpConnection::Transaction tx{
        "", {"a@x.test", "bad@x.test", "full@x.test", "d@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(tx);
    EXPECT_EQ(o.size(), 4u);
    if (o.size() != 4u) co_return;
    EXPECT_EQ(o[0].kind, Kind::kDelivered);
    EXPECT_EQ(o[1].kind, Kind::kBounced);
    EXPECT_EQ(o[1].code, 550);
    EXPECT_EQ(o[1].enhanced, "5.1.1");
    EXPECT_EQ(o[1].text, "<bad@x.test>: Recipient address rejected");
    EXPECT_EQ(o[2].kind, Kind::kDeferred);
    EXPECT_EQ(o[2].code, 452);
    EXPECT_FALSE(o[2].host_failure);
    EXPECT_EQ(o[3].kind, Kind::kDelivered);
    EXPECT_TRUE(connection.usable());
    co_await connection.Quit();
  });
  ASSERT_EQ(server.bodies.size(), 1u);
  EXPECT_EQ(
      server.bodies[0],
      "From: a@out.example\r\nSubject: test\r\n\r\n..leading dot\r\n...two dots\r\n..\r\nend\r\n");
  EXPECT_EQ(server.commands[1], "MAIL FROM:<>");
  EXPECT_EQ(server.commands.back(), "QUIT");
}

TEST_F(SmtpConnectionTest, UnsolicitedClosingOnAnIdleConnectionIsReadWhenItArrives) {
  ScriptedServer server(io_);
  server.after_first_message = "421 4.7.0 mx.test Too many concurrent connections from your IP\r\n";
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    SmtpConnection::Transaction tx{"", {"a@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(tx);
    EXPECT_EQ(o.at(0).kind, Kind::kDelivered);
    auto start = std::chrono::steady_clock::now();
    SmtpConnection::IdleEnd end = co_await connection.WaitIdle(10s);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "read when it arrives";
    EXPECT_EQ(end.kind, SmtpConnection::IdleEnd::Kind::kClosed);
    EXPECT_EQ(end.outcome.pace, Outcome::Pace::kClosedIdle);
    EXPECT_EQ(end.outcome.code, 421);
    EXPECT_EQ(end.outcome.enhanced, "4.7.0");
    EXPECT_FALSE(connection.usable());
  });
}

TEST_F(SmtpConnectionTest, IdleWaitEndsByTimeOrByWakeAndStaysUsable) {
  ScriptedServer server(io_);
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    SmtpConnection::IdleEnd end = co_await connection.WaitIdle(50ms);
    EXPECT_EQ(end.kind, SmtpConnection::IdleEnd::Kind::kTimedOut);
    EXPECT_TRUE(connection.usable());
    asio::steady_timer wake(io_, 50ms);
    wake.async_wait([&](error_code) { connection.CancelIdle(); });
    auto start = std::chrono::steady_clock::now();
    end = co_await connection.WaitIdle(10s);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    EXPECT_EQ(end.kind, SmtpConnection::IdleEnd::Kind::kWoken);
    EXPECT_TRUE(connection.usable());
    SmtpConnection::Transaction tx{"", {"a@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(tx);
    EXPECT_EQ(o.at(0).kind, Kind::kDelivered);
    co_await connection.Quit();
  });
  EXPECT_EQ(server.bodies.size(), 1u);
}

TEST_F(SmtpConnectionTest, ServiceClosingBannerIsDeferredHostFailure) {
  ScriptedServer server(io_);
  server.banner = "421 4.7.0 mx.test Too many connections, try again later\r\n";
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_FALSE(opened.has_value());
    if (opened) co_return;
    const Outcome& o = opened.error();
    EXPECT_EQ(o.kind, Kind::kDeferred);
    EXPECT_TRUE(o.host_failure);
    EXPECT_TRUE(o.throttled);
    EXPECT_EQ(o.code, 421);
    EXPECT_EQ(o.enhanced, "4.7.0");
    EXPECT_FALSE(connection.usable());
  });
}

TEST_F(SmtpConnectionTest, PermanentBannerRefusalSendsQuitAndBounceIsHostLevel) {
  ScriptedServer server(io_);
  server.banner = "554 5.7.1 You are not welcome here\r\n";
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_FALSE(opened.has_value());
    if (opened) co_return;
    EXPECT_EQ(opened.error().kind, Kind::kBounced);
    EXPECT_TRUE(opened.error().host_failure);
    // Let the server read the QUIT.
    asio::steady_timer pause(io_, 100ms);
    co_await pause.async_wait(asio::use_awaitable);
  });
  ASSERT_FALSE(server.commands.empty());
  EXPECT_EQ(server.commands[0], "QUIT");
}

TEST_F(SmtpConnectionTest, RefusedConnectionIsHostFailure) {
  tcp::endpoint closed;
  {
    tcp::acceptor probe(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    closed = probe.local_endpoint();
  }  // closed again: nothing listens there now
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(closed);
    EXPECT_FALSE(opened.has_value());
    if (opened) co_return;
    const Outcome& o = opened.error();
    EXPECT_EQ(o.kind, Kind::kDeferred);
    EXPECT_TRUE(o.host_failure);
    EXPECT_EQ(o.code, 0);
    EXPECT_EQ(o.enhanced, "4.4.1");
    EXPECT_EQ(o.text,
              "connect to 127.0.0.1:" + std::to_string(closed.port()) + ": Connection refused");
  });
}

TEST_F(SmtpConnectionTest, SilentBannerTimesOutWithinBannerTimeout) {
  ScriptedServer server(io_);
  server.banner = std::string(ScriptedServer::kSilence);
  Run([&]() -> asio::awaitable<void> {
    ConnectionOptions options = Options();
    options.timeouts.banner = 200ms;
    SmtpConnection connection(io_.get_executor(), options);
    auto start = std::chrono::steady_clock::now();
    auto opened = co_await connection.Open(server.endpoint());
    auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_FALSE(opened.has_value());
    if (opened) co_return;
    EXPECT_GE(elapsed, 190ms);
    EXPECT_LT(elapsed, 1500ms);
    const Outcome& o = opened.error();
    EXPECT_EQ(o.kind, Kind::kDeferred);
    EXPECT_TRUE(o.host_failure);
    EXPECT_EQ(o.enhanced, "4.4.2");
    EXPECT_NE(o.text.find("timed out while receiving the initial server greeting"),
              std::string::npos)
        << o.text;
  });
}

TEST_F(SmtpConnectionTest, StartTlsWithSelfSignedCertificate) {
  auto server_tls = MakeServerTlsContext();
  SessionServer server(io_, server_tls.get());
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value()) << (opened ? "" : opened.error().Summary());
    EXPECT_TRUE(connection.tls_active());
    EXPECT_FALSE(connection.extensions().starttls);  // the EHLO after TLS no longer offers it
    EXPECT_TRUE(connection.extensions().pipelining);
    SmtpConnection::Transaction tx{"s@out.example", {"a@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(tx);
    EXPECT_TRUE(o.size() == 1 && o[0].delivered());
    co_await connection.Quit();
  });
  ASSERT_EQ(server.messages.size(), 1u);
  EXPECT_TRUE(server.messages[0].tls);
  EXPECT_EQ(server.messages[0].content, kContent);
}

TEST_F(SmtpConnectionTest, StartTlsDisabledStaysInClear) {
  auto server_tls = MakeServerTlsContext();
  SessionServer server(io_, server_tls.get());
  Run([&]() -> asio::awaitable<void> {
    ConnectionOptions options = Options();
    options.starttls = false;
    SmtpConnection connection(io_.get_executor(), options);
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    EXPECT_FALSE(connection.tls_active());
    EXPECT_TRUE(connection.extensions().starttls);
    SmtpConnection::Transaction tx{"s@out.example", {"a@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(tx);
    EXPECT_TRUE(o.size() == 1 && o[0].delivered());
  });
  ASSERT_EQ(server.messages.size(), 1u);
  EXPECT_FALSE(server.messages[0].tls);
}

TEST_F(SmtpConnectionTest, TlsHandshakeFailureIsFlagged) {
  ScriptedServer server(io_);
  server.ehlo = "250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n";
  server.reply = [](std::string_view line) -> std::string {
    if (line == "STARTTLS")
      return "220 2.0.0 Ready to start TLS\r\nthis is not a TLS server hello\r\n";
    return "";
  };
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_FALSE(opened.has_value());
    if (opened) co_return;
    EXPECT_EQ(opened.error().kind, Kind::kDeferred);
    EXPECT_TRUE(opened.error().tls_failed);
    EXPECT_FALSE(opened.error().host_failure);
    EXPECT_FALSE(connection.usable());
  });
}

TEST_F(SmtpConnectionTest, HundredTransactionsOnOneConnection) {
  SessionServer server(io_);
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    int delivered = 0;
    for (int i = 0; i < 100 && connection.usable(); ++i) {
      std::string content = "Subject: " + std::to_string(i) + "\r\n\r\n";
      for (int line = 0; line < 65; ++line) content += std::string(76, 'x') + "\r\n";  // ~5 KB
      SmtpConnection::Transaction tx{
          "s@out.example", {"r" + std::to_string(i) + "@x.test"}, &content};
      std::vector<Outcome> o = co_await connection.Send(tx);
      if (o.size() == 1 && o[0].delivered()) ++delivered;
    }
    EXPECT_EQ(delivered, 100);
    EXPECT_EQ(connection.transactions(), 100u);
    co_await connection.Quit();
  });
  EXPECT_EQ(server.connections(), 1);
  ASSERT_EQ(server.messages.size(), 100u);
  EXPECT_EQ(server.messages[99].recipients[0], "r99@x.test");
  EXPECT_EQ(server.messages[42].content.substr(0, 11), "Subject: 42");
}

TEST_F(SmtpConnectionTest, LockStepServerAndResetAfterRefusedRecipients) {
  ScriptedServer server(io_);
  server.ehlo = "250-mx.test\r\n250 SIZE 100000\r\n";  // no PIPELINING
  server.reply = [](std::string_view line) -> std::string {
    if (line.starts_with("RCPT TO:<bad")) return "550 5.1.1 no such user\r\n";
    return "";
  };
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    SmtpConnection::Transaction bad{"s@out.example", {"bad1@x.test", "bad2@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(bad);
    EXPECT_TRUE(o.size() == 2 && o[0].kind == Kind::kBounced && o[1].kind == Kind::kBounced);
    SmtpConnection::Transaction good{"s@out.example", {"a@x.test"}, &kContent};
    o = co_await connection.Send(good);
    EXPECT_TRUE(o.size() == 1 && o[0].delivered());
    co_await connection.Quit();
  });
  std::vector<std::string> expected = {
      "EHLO client.test",
      "MAIL FROM:<s@out.example> SIZE=" + std::to_string(kContent.size()),
      "RCPT TO:<bad1@x.test>",
      "RCPT TO:<bad2@x.test>",
      "RSET",
      "MAIL FROM:<s@out.example> SIZE=" + std::to_string(kContent.size()),
      "RCPT TO:<a@x.test>",
      "DATA",
      "QUIT",
  };
  EXPECT_EQ(server.commands, expected);
}

TEST_F(SmtpConnectionTest, SizeLimitRefusedWithoutSendingMail) {
  ScriptedServer server(io_);
  server.ehlo = "250-mx.test\r\n250-PIPELINING\r\n250 SIZE 20\r\n";
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    SmtpConnection::Transaction tx{"s@out.example", {"a@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(tx);
    EXPECT_EQ(o.size(), 1u);
    if (o.empty()) co_return;
    EXPECT_EQ(o[0].kind, Kind::kBounced);
    EXPECT_EQ(o[0].code, 552);
    EXPECT_EQ(o[0].enhanced, "5.3.4");
    EXPECT_TRUE(connection.usable());
    co_await connection.Quit();
  });
  EXPECT_EQ(server.commands, (std::vector<std::string>{"EHLO client.test", "QUIT"}));
}

TEST_F(SmtpConnectionTest, ConnectionLostMidTransactionDefersUndecidedRecipients) {
  ScriptedServer server(io_);
  server.reply = [](std::string_view line) -> std::string {
    if (line.starts_with("RCPT TO:<bad")) return "550 5.1.1 no such user\r\n";
    if (line == "DATA") return std::string(ScriptedServer::kHangUp);
    return "";
  };
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    SmtpConnection::Transaction tx{
        "s@out.example", {"a@x.test", "bad@x.test", "c@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(tx);
    EXPECT_EQ(o.size(), 3u);
    if (o.size() != 3u) co_return;
    EXPECT_EQ(o[0].kind, Kind::kDeferred);
    EXPECT_EQ(o[0].enhanced, "4.4.2");
    EXPECT_NE(o[0].text.find("lost connection with 127.0.0.1:"), std::string::npos) << o[0].text;
    EXPECT_EQ(o[1].kind, Kind::kBounced);  // its own RCPT reply decided it
    EXPECT_EQ(o[2].text, o[0].text);
    EXPECT_FALSE(connection.usable());
    // A further Send on the dead connection defers without touching the network.
    o = co_await connection.Send(tx);
    EXPECT_TRUE(o.size() == 3 && o[0].kind == Kind::kDeferred);
  });
}

TEST_F(SmtpConnectionTest, SilenceAfterDataEndTimesOut) {
  ScriptedServer server(io_);
  server.data_end = std::string(ScriptedServer::kSilence);
  Run([&]() -> asio::awaitable<void> {
    ConnectionOptions options = Options();
    options.timeouts.data_end = 200ms;
    SmtpConnection connection(io_.get_executor(), options);
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    auto start = std::chrono::steady_clock::now();
    SmtpConnection::Transaction tx{"s@out.example", {"a@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(tx);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
    EXPECT_EQ(o.size(), 1u);
    if (o.empty()) co_return;
    EXPECT_EQ(o[0].kind, Kind::kDeferred);
    EXPECT_FALSE(o[0].host_failure);
    EXPECT_NE(o[0].text.find("timed out while sending the message content"), std::string::npos)
        << o[0].text;
    EXPECT_FALSE(connection.usable());
  });
}

TEST_F(SmtpConnectionTest, ServiceClosingDuringTransactionEndsConnection) {
  ScriptedServer server(io_);
  server.reply = [](std::string_view line) -> std::string {
    if (line == "RCPT TO:<b@x.test>") return "421 4.7.0 Too many messages from you, closing\r\n";
    return "";
  };
  Run([&]() -> asio::awaitable<void> {
    SmtpConnection connection(io_.get_executor(), Options());
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    SmtpConnection::Transaction tx{"s@out.example", {"a@x.test", "b@x.test"}, &kContent};
    std::vector<Outcome> o = co_await connection.Send(tx);
    EXPECT_EQ(o.size(), 2u);
    if (o.size() != 2u) co_return;
    for (const auto& outcome : o) {
      EXPECT_EQ(outcome.kind, Kind::kDeferred);
      EXPECT_EQ(outcome.code, 421);
      EXPECT_TRUE(outcome.host_failure);
      EXPECT_TRUE(outcome.throttled);
    }
    EXPECT_FALSE(connection.usable());
  });
}

TEST_F(SmtpConnectionTest, BindsTheSourceAddress) {
  SessionServer server(io_);
  Run([&]() -> asio::awaitable<void> {
    ConnectionOptions options = Options();
    options.source_address = asio::ip::make_address("127.0.0.1");
    SmtpConnection connection(io_.get_executor(), options);
    auto opened = co_await connection.Open(server.endpoint());
    EXPECT_TRUE(opened.has_value());
    EXPECT_TRUE(connection.local_address().starts_with("127.0.0.1:"));
    co_await connection.Quit();
  });
}

TEST_F(SmtpConnectionTest, UnbindableSourceAddressIsALocalError) {
  Run([&]() -> asio::awaitable<void> {
    ConnectionOptions options = Options();
    options.source_address = asio::ip::make_address("192.0.2.123");  // TEST-NET-1: not ours
    SmtpConnection connection(io_.get_executor(), options);
    auto opened = co_await connection.Open(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 9));
    EXPECT_FALSE(opened.has_value());
    if (opened) co_return;
    EXPECT_EQ(opened.error().enhanced, "4.3.0");
    EXPECT_FALSE(opened.error().host_failure);
    EXPECT_NE(opened.error().text.find("cannot bind 192.0.2.123"), std::string::npos)
        << opened.error().text;
  });
}

TEST(PhaseTimeoutsTest, FromConfigAndPerPhase) {
  config::DeliveryConfig config;
  config.banner_timeout = 1234ms;
  config.data_end_timeout = 5678ms;
  PhaseTimeouts t = PhaseTimeouts::FromConfig(config);
  EXPECT_EQ(t.For(smtp::ClientPhase::kBanner), 1234ms);
  EXPECT_EQ(t.For(smtp::ClientPhase::kDataEnd), 5678ms);
  EXPECT_EQ(t.For(smtp::ClientPhase::kRcpt), config.rcpt_timeout);
  EXPECT_EQ(t.For(smtp::ClientPhase::kStartTls), config.ehlo_timeout);

  config.helo_name = "";
  config.source_address = config::IpAddress::V4(198, 51, 100, 7);
  config.starttls = config::StartTlsPolicy::kNever;
  ConnectionOptions options = ConnectionOptions::FromConfig(config, "mta.example", nullptr);
  EXPECT_EQ(options.helo_name, "mta.example");
  ASSERT_TRUE(options.source_address.has_value());
  EXPECT_EQ(options.source_address->to_string(), "198.51.100.7");
  EXPECT_FALSE(options.starttls);
}

}  // namespace
}  // namespace hikyaku::delivery
