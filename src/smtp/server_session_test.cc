#include "smtp/server_session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "base/base64.h"

namespace hikyaku::smtp {
namespace {

using Action = ServerSession::Action;
using ::testing::HasSubstr;
using ::testing::Not;

ServerPolicy TestPolicy() {
  ServerPolicy policy;
  policy.hostname = "mx.test";
  policy.max_message_size = 10000;
  policy.max_recipients = 3;
  policy.max_errors = 10;
  policy.relay_allowed = true;
  policy.tls_available = true;
  policy.auth_available = true;
  policy.client_address = "192.0.2.10";
  return policy;
}

// A fake driver: acts on every action the way the listener will, with
// canned outcomes, and records what happened.
class FakeDriver {
 public:
  explicit FakeDriver(ServerPolicy policy = TestPolicy()) : session_(std::move(policy)) {
    session_.Start(out_);
  }

  // Feeds `bytes` and runs the session until it needs input or closes.
  // Returns the replies produced meanwhile.
  std::string Send(std::string_view bytes) {
    size_t before = out_.size();
    if (!bytes.empty()) session_.Feed(bytes);
    Run();
    return out_.substr(before);
  }

  void Run() {
    while (true) {
      Action action = session_.Process(out_);
      actions_.push_back(action);
      switch (action) {
        case Action::kNeedInput:
          return;
        case Action::kClose:
          closed_ = true;
          return;
        case Action::kCommitMessage:
          messages_.push_back(session_.TakeMessage());
          session_.OnCommitted(commit_ok_, commit_no_space_, "Q" + std::to_string(messages_.size()),
                               out_);
          break;
        case Action::kStartTls:
          ++tls_handshakes_;
          session_.OnTlsStarted();
          break;
        case Action::kCheckAuth: {
          const auto& credentials = session_.AuthCredentials();
          checked_.push_back(credentials.username + ":" + credentials.password);
          session_.OnAuthResult(credentials.username == "alice" && credentials.password == "s3cret",
                                out_);
          break;
        }
      }
    }
  }

  ServerSession session_;
  std::string out_;
  std::vector<ServerSession::Message> messages_;
  std::vector<Action> actions_;
  std::vector<std::string> checked_;
  bool commit_ok_ = true;
  bool commit_no_space_ = false;
  int tls_handshakes_ = 0;
  bool closed_ = false;
};

TEST(ServerSessionTest, GreetingAndEhloWithoutTls) {
  FakeDriver d;
  EXPECT_EQ(d.out_, "220 mx.test ESMTP hikyaku\r\n");
  EXPECT_EQ(d.Send("EHLO client.example\r\n"),
            "250-mx.test\r\n"
            "250-PIPELINING\r\n"
            "250-SIZE 10000\r\n"
            "250-8BITMIME\r\n"
            "250-ENHANCEDSTATUSCODES\r\n"
            "250 STARTTLS\r\n");
  EXPECT_EQ(d.Send("HELO client.example\r\n"), "250 mx.test\r\n");
}

TEST(ServerSessionTest, EhloWithoutCertificateOrUsers) {
  ServerPolicy policy = TestPolicy();
  policy.tls_available = false;
  policy.auth_available = false;
  FakeDriver d(policy);
  std::string reply = d.Send("EHLO c\r\n");
  EXPECT_THAT(reply, Not(HasSubstr("STARTTLS")));
  EXPECT_THAT(reply, Not(HasSubstr("AUTH")));
  EXPECT_THAT(reply, HasSubstr("250 ENHANCEDSTATUSCODES\r\n"));
  EXPECT_EQ(d.Send("STARTTLS\r\n"), "502 5.5.1 Error: command not implemented\r\n");
}

const char kPipelinedEnvelope[] =
    "EHLO client.example\r\n"
    "MAIL FROM:<alice@example.com> SIZE=100\r\n"
    "RCPT TO:<bob@example.org>\r\n"
    "RCPT TO:<carol@example.net>\r\n"
    "DATA\r\n";
const char kBody[] =
    "Subject: test\r\n"
    "\r\n"
    "..leading dot\r\n"
    ".\r\n";

TEST(ServerSessionTest, PipelinedHappyPath) {
  FakeDriver d;
  EXPECT_EQ(d.Send(kPipelinedEnvelope),
            "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
            "250-ENHANCEDSTATUSCODES\r\n250 STARTTLS\r\n"
            "250 2.1.0 Ok\r\n"
            "250 2.1.5 Ok\r\n"
            "250 2.1.5 Ok\r\n"
            "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_EQ(d.Send(std::string(kBody) + "QUIT\r\n"),
            "250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 Bye\r\n");
  EXPECT_TRUE(d.closed_);
  ASSERT_EQ(d.messages_.size(), 1u);
  const auto& m = d.messages_[0];
  EXPECT_EQ(m.sender, "alice@example.com");
  EXPECT_EQ(m.recipients, (std::vector<std::string>{"bob@example.org", "carol@example.net"}));
  EXPECT_EQ(m.content, "Subject: test\r\n\r\n.leading dot\r\n");
  EXPECT_FALSE(m.eight_bit);
  EXPECT_EQ(m.helo, "client.example");
  EXPECT_EQ(m.client_address, "192.0.2.10");
  EXPECT_FALSE(m.tls);
  EXPECT_EQ(m.auth_user, "");
}

TEST(ServerSessionTest, WholeDialogueGivesSameResultWhateverTheReadBoundaries) {
  const std::string dialogue = std::string(kPipelinedEnvelope) + kBody +
                               "MAIL FROM:<>\r\nRCPT TO:<d@example.com>\r\nDATA\r\n.\r\n"
                               "NOOP\r\nBOGUS\r\nQUIT\r\nNOOP\r\n";
  FakeDriver whole;
  whole.Send(dialogue);
  ASSERT_TRUE(whole.closed_);
  ASSERT_EQ(whole.messages_.size(), 2u);
  EXPECT_EQ(whole.messages_[1].sender, "");
  EXPECT_EQ(whole.messages_[1].content, "");
  EXPECT_THAT(whole.out_,
              HasSubstr("500 5.5.1 Error: command not recognized\r\n221 2.0.0 Bye\r\n"));

  FakeDriver bytewise;
  for (char c : dialogue) bytewise.Send(std::string_view(&c, 1));
  EXPECT_EQ(bytewise.out_, whole.out_);
  ASSERT_EQ(bytewise.messages_.size(), 2u);
  EXPECT_EQ(bytewise.messages_[0].content, whole.messages_[0].content);

  std::mt19937 rng(42);
  for (int round = 0; round < 50; ++round) {
    FakeDriver chunked;
    size_t pos = 0;
    while (pos < dialogue.size()) {
      size_t n = std::min<size_t>(1 + rng() % 40, dialogue.size() - pos);
      chunked.Send(std::string_view(dialogue).substr(pos, n));
      pos += n;
    }
    EXPECT_EQ(chunked.out_, whole.out_) << "round " << round;
    EXPECT_EQ(chunked.messages_.size(), 2u);
  }
}

TEST(ServerSessionTest, NothingIsProcessedWhileCommitIsPending) {
  ServerSession session(TestPolicy());
  std::string out;
  session.Start(out);
  session.Feed("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
  EXPECT_EQ(session.Process(out), Action::kNeedInput);
  session.Feed("hello\r\n.\r\nNOOP\r\n");
  out.clear();
  EXPECT_EQ(session.Process(out), Action::kCommitMessage);
  EXPECT_EQ(session.Process(out), Action::kNeedInput);  // still pending: no NOOP reply
  session.Feed("RSET\r\n");
  EXPECT_EQ(session.Process(out), Action::kNeedInput);
  EXPECT_EQ(out, "");
  EXPECT_EQ(session.buffered_input(), std::string("NOOP\r\nRSET\r\n").size());
  auto message = session.TakeMessage();
  EXPECT_EQ(message.content, "hello\r\n");
  session.OnCommitted(true, false, "abc123", out);
  EXPECT_EQ(session.Process(out), Action::kNeedInput);
  EXPECT_EQ(out, "250 2.0.0 Ok: queued as abc123\r\n250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
}

TEST(ServerSessionTest, PolicyRefusalAnswers550AndResetsTheTransaction) {
  ServerSession session(TestPolicy());
  std::string out;
  session.Start(out);
  session.Feed("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nhi\r\n.\r\n");
  EXPECT_EQ(session.Process(out), Action::kCommitMessage);
  session.TakeMessage();
  out.clear();
  session.OnRefused("5.7.1", "unknown tenant \"x\"\r\nX-Injected: no", out);
  EXPECT_EQ(out, "550 5.7.1 unknown tenant \"x\"  X-Injected: no\r\n");
  out.clear();
  session.Feed("RCPT TO:<c@example.com>\r\n");
  EXPECT_EQ(session.Process(out), Action::kNeedInput);
  EXPECT_EQ(out, "503 5.5.1 Error: need MAIL command\r\n");
}

TEST(ServerSessionTest, CommitFailures) {
  FakeDriver d;
  d.commit_ok_ = false;
  d.commit_no_space_ = true;
  d.Send(kPipelinedEnvelope);
  EXPECT_EQ(d.Send(kBody), "452 4.3.1 Insufficient system storage\r\n");
  d.commit_no_space_ = false;
  // The transaction was reset: a new one is needed.
  EXPECT_EQ(d.Send("RCPT TO:<x@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
  EXPECT_EQ(d.Send(kBody), "451 4.3.0 Error: local error in processing\r\n");
}

TEST(ServerSessionTest, RelayDeniedForUnknownClient) {
  ServerPolicy policy = TestPolicy();
  policy.relay_allowed = false;
  FakeDriver d(policy);
  d.Send("EHLO c\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"),
            "250 2.1.0 Ok\r\n"
            "554 5.7.1 <victim@example.org>: Relay access denied\r\n"
            "554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_TRUE(d.messages_.empty());
}

TEST(ServerSessionTest, SequenceErrors) {
  FakeDriver d;
  EXPECT_EQ(d.Send("MAIL FROM:<a@example.com>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  d.Send("HELO c\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<b@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(d.Send("DATA\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@example.com>\r\nMAIL FROM:<a@example.com>\r\n"),
            "250 2.1.0 Ok\r\n503 5.5.1 Error: nested MAIL command\r\n");
  EXPECT_EQ(d.Send("DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_EQ(d.Send("RSET\r\nRCPT TO:<b@example.com>\r\n"),
            "250 2.0.0 Ok\r\n503 5.5.1 Error: need MAIL command\r\n");
}

TEST(ServerSessionTest, SimpleCommands) {
  FakeDriver d;
  EXPECT_EQ(d.Send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(d.Send("VRFY bob\r\n"),
            "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery\r\n");
  EXPECT_THAT(d.Send("HELP\r\n"), HasSubstr("214 2.0.0 "));
  EXPECT_EQ(d.Send("FOO\r\n"), "500 5.5.1 Error: command not recognized\r\n");
  EXPECT_EQ(d.Send("EHLO\r\n"), "501 5.5.4 Syntax: EHLO hostname\r\n");
  d.Send("EHLO c\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@example.com> SMTPUTF8\r\n"),
            "555 5.5.4 Unsupported parameter SMTPUTF8\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@@example.com>\r\n"), "501 5.1.7 Bad sender address syntax\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:a@example.com\r\n"), "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
  d.Send("MAIL FROM:<a@example.com>\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<nobody>\r\n"), "501 5.1.3 Bad recipient address syntax\r\n");
  EXPECT_EQ(d.Send(std::string("NOOP \x80\r\n")),
            "500 5.5.2 Error: invalid character in command\r\n");
}

TEST(ServerSessionTest, TooManyRecipients) {
  FakeDriver d;
  d.Send("EHLO c\r\n");
  EXPECT_EQ(
      d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<1@example.com>\r\n"
             "RCPT TO:<2@example.com>\r\nRCPT TO:<3@example.com>\r\nRCPT TO:<4@example.com>\r\n"
             "DATA\r\n"),
      "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
      "452 4.5.3 Error: too many recipients\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
  d.Send(kBody);
  ASSERT_EQ(d.messages_.size(), 1u);
  EXPECT_EQ(d.messages_[0].recipients.size(), 3u);
}

TEST(ServerSessionTest, SizeLimits) {
  FakeDriver d;
  d.Send("EHLO c\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@example.com> SIZE=10001\r\n"),
            "552 5.3.4 Message size exceeds fixed maximum message size\r\n");
  d.Send("MAIL FROM:<a@example.com> SIZE=10000\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
  std::string big;
  while (big.size() <= 10000) big += std::string(70, 'x') + "\r\n";
  // Nothing is answered until the final dot; then 552, and the session goes on.
  EXPECT_EQ(d.Send(big), "");
  EXPECT_EQ(d.Send(".\r\nNOOP\r\n"),
            "552 5.3.4 Error: message size exceeds fixed maximum message size\r\n250 2.0.0 Ok\r\n");
  EXPECT_TRUE(d.messages_.empty());
  EXPECT_EQ(d.Send("RCPT TO:<b@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
}

TEST(ServerSessionTest, LongDataLineRejectsMessage) {
  FakeDriver d;
  d.Send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
  EXPECT_EQ(d.Send(std::string(999, 'x') + "\r\n.\r\n"),
            "554 5.6.0 Error: message has lines longer than 998 characters\r\n");
  EXPECT_TRUE(d.messages_.empty());
}

TEST(ServerSessionTest, EightBitMessage) {
  FakeDriver d;
  d.Send(
      "EHLO c\r\nMAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
      "plain\r\n.\r\n");
  d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\ncaf\xc3\xa9\r\n.\r\n");
  d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nplain\r\n.\r\n");
  ASSERT_EQ(d.messages_.size(), 3u);
  EXPECT_TRUE(d.messages_[0].eight_bit);
  EXPECT_TRUE(d.messages_[1].eight_bit);
  EXPECT_FALSE(d.messages_[2].eight_bit);
}

TEST(ServerSessionTest, LineTooLong) {
  FakeDriver d;
  EXPECT_EQ(d.Send("NOOP " + std::string(5000, 'a') + "\r\nNOOP\r\n"),
            "500 5.5.6 Error: line too long\r\n250 2.0.0 Ok\r\n");
}

TEST(ServerSessionTest, ErrorLimitClosesTheSession) {
  ServerPolicy policy = TestPolicy();
  policy.max_errors = 5;
  FakeDriver d(policy);
  std::string reply = d.Send("A\r\nB\r\nC\r\nD\r\nE\r\nNOOP\r\n");
  EXPECT_EQ(reply,
            "500 5.5.1 Error: command not recognized\r\n"
            "500 5.5.1 Error: command not recognized\r\n"
            "500 5.5.1 Error: command not recognized\r\n"
            "500 5.5.1 Error: command not recognized\r\n"
            "500 5.5.1 Error: command not recognized\r\n"
            "421 4.7.0 mx.test Error: too many errors\r\n");
  EXPECT_TRUE(d.closed_);
  EXPECT_TRUE(d.session_.closed());
  std::string more;
  d.session_.Feed("NOOP\r\n");
  EXPECT_EQ(d.session_.Process(more), Action::kClose);
  EXPECT_EQ(more, "");
}

TEST(ServerSessionTest, QuitClosesAndIgnoresTheRest) {
  FakeDriver d;
  EXPECT_EQ(d.Send("QUIT\r\nNOOP\r\n"), "221 2.0.0 Bye\r\n");
  EXPECT_TRUE(d.closed_);
}

TEST(ServerSessionTest, StartTlsDiscardsPipelinedPlaintext) {
  // CVE-2011-0411: commands injected behind STARTTLS in the same packet
  // must not be executed after the handshake.
  ServerSession session(TestPolicy());
  std::string out;
  session.Start(out);
  out.clear();
  session.Feed("EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<x@example.com>\r\n");
  EXPECT_EQ(session.Process(out), Action::kStartTls);
  EXPECT_THAT(out, HasSubstr("250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n"));
  EXPECT_EQ(session.buffered_input(), 0u);
  // Plaintext that arrives before the handshake completes is discarded too.
  session.Feed("NOOP\r\n");
  EXPECT_EQ(session.Process(out), Action::kNeedInput);
  session.OnTlsStarted();
  EXPECT_TRUE(session.tls_active());
  out.clear();
  EXPECT_EQ(session.Process(out), Action::kNeedInput);
  EXPECT_EQ(out, "");  // no reply to MAIL, RCPT or NOOP
  // The EHLO state was forgotten (RFC 3207 4.2).
  session.Feed("MAIL FROM:<a@example.com>\r\n");
  session.Process(out);
  EXPECT_EQ(out, "503 5.5.1 Error: send HELO/EHLO first\r\n");
}

TEST(ServerSessionTest, StartTlsRules) {
  FakeDriver d;
  d.Send("EHLO c\r\nMAIL FROM:<a@example.com>\r\n");
  EXPECT_EQ(d.Send("STARTTLS\r\n"), "503 5.5.1 Error: MAIL transaction in progress\r\n");
  d.Send("RSET\r\n");
  EXPECT_EQ(d.Send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(d.tls_handshakes_, 1);
  std::string ehlo = d.Send("EHLO c\r\n");
  EXPECT_THAT(ehlo, Not(HasSubstr("STARTTLS")));
  EXPECT_THAT(ehlo, HasSubstr("250 AUTH PLAIN LOGIN\r\n"));
  EXPECT_EQ(d.Send("STARTTLS\r\n"), "503 5.5.1 Error: TLS already active\r\n");
}

// Brings a driver to "TLS active, EHLO done".
FakeDriver& WithTls(FakeDriver& d) {
  d.Send("EHLO c\r\nSTARTTLS\r\n");
  d.Send("EHLO c\r\n");
  return d;
}

TEST(ServerSessionTest, AuthRequiresTls) {
  FakeDriver d;
  d.Send("EHLO c\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Base64Encode(std::string("\0alice\0s3cret", 13)) + "\r\n"),
            "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
  EXPECT_TRUE(d.checked_.empty());
}

TEST(ServerSessionTest, AuthNotConfigured) {
  ServerPolicy policy = TestPolicy();
  policy.auth_available = false;
  FakeDriver d(policy);
  WithTls(d);
  EXPECT_EQ(d.Send("AUTH LOGIN\r\n"), "502 5.5.1 Error: authentication not enabled\r\n");
}

TEST(ServerSessionTest, AuthPlainWithInitialResponseAllowsRelay) {
  ServerPolicy policy = TestPolicy();
  policy.relay_allowed = false;
  FakeDriver d(policy);
  WithTls(d);
  EXPECT_EQ(d.Send("AUTH PLAIN " + Base64Encode(std::string("\0alice\0s3cret", 13)) + "\r\n"),
            "235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(d.checked_, std::vector<std::string>{"alice:s3cret"});
  EXPECT_TRUE(d.session_.authenticated());
  EXPECT_TRUE(d.session_.AuthCredentials().password.empty());  // wiped
  EXPECT_EQ(d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
  d.Send("DATA\r\nhi\r\n.\r\n");
  ASSERT_EQ(d.messages_.size(), 1u);
  EXPECT_EQ(d.messages_[0].auth_user, "alice");
  EXPECT_TRUE(d.messages_[0].tls);
  EXPECT_EQ(d.Send("AUTH PLAIN =\r\n"), "503 5.5.1 Error: already authenticated\r\n");
}

TEST(ServerSessionTest, AuthPlainWithoutInitialResponse) {
  FakeDriver d;
  WithTls(d);
  EXPECT_EQ(d.Send("AUTH PLAIN\r\n"), "334 \r\n");
  EXPECT_EQ(d.Send(Base64Encode(std::string("alice\0alice\0s3cret", 18)) + "\r\n"),
            "235 2.7.0 Authentication successful\r\n");
}

TEST(ServerSessionTest, AuthPlainWrongPasswordAndOtherIdentity) {
  FakeDriver d;
  WithTls(d);
  EXPECT_EQ(d.Send("AUTH PLAIN " + Base64Encode(std::string("\0alice\0wrong", 12)) + "\r\n"),
            "535 5.7.8 Authentication credentials invalid\r\n");
  EXPECT_FALSE(d.session_.authenticated());
  EXPECT_EQ(d.Send("AUTH PLAIN " + Base64Encode(std::string("root\0alice\0s3cret", 17)) + "\r\n"),
            "535 5.7.8 Authentication credentials invalid\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN " + Base64Encode("no-nuls") + "\r\n"),
            "501 5.5.2 Error: malformed authentication data\r\n");
  EXPECT_EQ(d.checked_.size(), 1u);  // only the well-formed own identity was checked
}

TEST(ServerSessionTest, AuthLogin) {
  FakeDriver d;
  WithTls(d);
  EXPECT_EQ(d.Send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(d.Send(Base64Encode("alice") + "\r\n"), "334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(d.Send(Base64Encode("s3cret") + "\r\n"), "235 2.7.0 Authentication successful\r\n");
  EXPECT_TRUE(d.session_.authenticated());
}

TEST(ServerSessionTest, AuthLoginWithInitialResponsePipelined) {
  FakeDriver d;
  WithTls(d);
  EXPECT_EQ(
      d.Send("AUTH LOGIN " + Base64Encode("alice") + "\r\n" + Base64Encode("bad") + "\r\nNOOP\r\n"),
      "334 UGFzc3dvcmQ6\r\n535 5.7.8 Authentication credentials invalid\r\n250 2.0.0 Ok\r\n");
}

TEST(ServerSessionTest, AuthCancelBadBase64AndUnknownMechanism) {
  FakeDriver d;
  WithTls(d);
  d.Send("AUTH LOGIN\r\n");
  EXPECT_EQ(d.Send("*\r\n"), "501 5.0.0 Authentication cancelled\r\n");
  EXPECT_EQ(d.Send("NOOP\r\n"), "250 2.0.0 Ok\r\n");  // back to commands
  d.Send("AUTH PLAIN\r\n");
  EXPECT_EQ(d.Send("not base64!\r\n"), "501 5.5.2 Error: invalid base64 data\r\n");
  EXPECT_EQ(d.Send("AUTH PLAIN %%%%\r\n"), "501 5.5.2 Error: invalid base64 data\r\n");
  EXPECT_EQ(d.Send("AUTH CRAM-MD5\r\n"),
            "504 5.5.4 Error: unsupported authentication mechanism\r\n");
  d.Send("MAIL FROM:<a@example.com>\r\n");
  EXPECT_EQ(d.Send("AUTH LOGIN\r\n"), "503 5.5.1 Error: MAIL transaction in progress\r\n");
  EXPECT_TRUE(d.checked_.empty());
}

TEST(ServerSessionTest, FailedAuthCountsTowardsErrorLimit) {
  ServerPolicy policy = TestPolicy();
  policy.max_errors = 2;
  FakeDriver d(policy);
  WithTls(d);
  const std::string bad = "AUTH PLAIN " + Base64Encode(std::string("\0alice\0guess", 12)) + "\r\n";
  EXPECT_EQ(d.Send(bad), "535 5.7.8 Authentication credentials invalid\r\n");
  EXPECT_EQ(d.Send(bad + bad),
            "535 5.7.8 Authentication credentials invalid\r\n"
            "421 4.7.0 mx.test Error: too many errors\r\n");
  EXPECT_TRUE(d.closed_);
  EXPECT_EQ(d.checked_.size(), 2u);
}

// --- Driver hooks -------------------------------------------------------

TEST(ServerSessionHooksTest, RcptCheckRefusesOneRecipientAndKeepsTheOthers) {
  ServerPolicy policy = TestPolicy();
  std::vector<std::string> asked;
  policy.rcpt_check = [&](std::string_view address) -> std::optional<std::string> {
    asked.emplace_back(address);
    if (address.starts_with("nobody@")) {
      return "550 5.1.1 <" + std::string(address) + ">: Recipient address rejected: User unknown";
    }
    return std::nullopt;
  };
  FakeDriver d(policy);
  d.Send("EHLO c\r\nMAIL FROM:<a@example.com>\r\n");
  EXPECT_EQ(d.Send("RCPT TO:<nobody@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n"),
            "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown\r\n"
            "250 2.1.5 Ok\r\n"
            "354 End data with <CR><LF>.<CR><LF>\r\n");
  d.Send("hi\r\n.\r\n");
  ASSERT_EQ(d.messages_.size(), 1u);
  EXPECT_EQ(d.messages_[0].recipients, (std::vector<std::string>{"bob@example.org"}));
  EXPECT_EQ(asked, (std::vector<std::string>{"nobody@example.org", "bob@example.org"}));
  EXPECT_FALSE(d.closed_);
}

TEST(ServerSessionHooksTest, RefusalsDoNotCountAsClientErrors) {
  ServerPolicy policy = TestPolicy();
  policy.max_errors = 2;
  policy.rcpt_check = [](std::string_view) { return std::optional<std::string>("450 4.7.1 Greylisted"); };
  FakeDriver d(policy);
  d.Send("EHLO c\r\nMAIL FROM:<a@example.com>\r\n");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(d.Send("RCPT TO:<b@example.com>\r\n"), "450 4.7.1 Greylisted\r\n");
  EXPECT_FALSE(d.closed_);
  // No recipient was accepted, so DATA has nothing to deliver to.
  EXPECT_EQ(d.Send("DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
}

TEST(ServerSessionHooksTest, RcptCheckRunsAfterRelayCheck) {
  ServerPolicy policy = TestPolicy();
  policy.relay_allowed = false;
  bool asked = false;
  policy.rcpt_check = [&](std::string_view) -> std::optional<std::string> {
    asked = true;
    return std::nullopt;
  };
  FakeDriver d(policy);
  d.Send("EHLO c\r\nMAIL FROM:<a@example.com>\r\n");
  EXPECT_THAT(d.Send("RCPT TO:<b@example.com>\r\n"), HasSubstr("554 5.7.1"));
  EXPECT_FALSE(asked);
}

TEST(ServerSessionHooksTest, MailCheckRefusalOpensNoTransaction) {
  ServerPolicy policy = TestPolicy();
  int calls = 0;
  policy.mail_check = [&](std::string_view sender) -> std::optional<std::string> {
    ++calls;
    if (sender.empty()) return std::nullopt;  // <> is passed as an empty path
    if (calls == 1) return "450 4.7.1 Rate limit exceeded, try again later";
    return std::nullopt;
  };
  FakeDriver d(policy);
  d.Send("EHLO c\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"),
            "450 4.7.1 Rate limit exceeded, try again later\r\n"
            "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(d.Send("MAIL FROM:<a@example.com>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(d.Send("RSET\r\nMAIL FROM:<>\r\n"), "250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n");
  EXPECT_EQ(calls, 3);
}

TEST(ServerSessionHooksTest, MailCheckIsNotAskedForOversizedOrOutOfSequenceMail) {
  ServerPolicy policy = TestPolicy();
  int calls = 0;
  policy.mail_check = [&](std::string_view) -> std::optional<std::string> {
    ++calls;
    return std::nullopt;
  };
  FakeDriver d(policy);
  EXPECT_THAT(d.Send("MAIL FROM:<a@example.com>\r\n"), HasSubstr("503 5.5.1"));
  d.Send("EHLO c\r\n");
  EXPECT_THAT(d.Send("MAIL FROM:<a@example.com> SIZE=99999\r\n"), HasSubstr("552 5.3.4"));
  EXPECT_EQ(calls, 0);
}

TEST(ServerSessionHooksTest, A421RefusalClosesTheSessionAndDropsPipelinedInput) {
  ServerPolicy policy = TestPolicy();
  policy.mail_check = [](std::string_view) {
    return std::optional<std::string>("421 4.7.0 mx.test Too many messages on this connection");
  };
  FakeDriver d(policy);
  EXPECT_EQ(d.Send("EHLO c\r\n").substr(0, 4), "250-");
  EXPECT_EQ(d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nNOOP\r\n"),
            "421 4.7.0 mx.test Too many messages on this connection\r\n");
  EXPECT_TRUE(d.closed_);
  EXPECT_EQ(d.actions_.back(), Action::kClose);
}

TEST(ServerSessionHooksTest, DataCheckRefusesTheMessageInsteadOfCommitting) {
  ServerPolicy policy = TestPolicy();
  int calls = 0;
  std::string seen_sender, seen_content;
  std::vector<std::string> seen_recipients;
  policy.data_check = [&](std::string_view sender, const std::vector<std::string>& recipients,
                          std::string_view content) -> std::optional<std::string> {
    seen_sender = sender;
    seen_recipients = recipients;
    seen_content = content;
    if (++calls == 1) return "451 4.3.0 Temporary failure (injected)";
    return std::nullopt;
  };
  FakeDriver d(policy);
  d.Send(kPipelinedEnvelope);
  EXPECT_EQ(d.Send(kBody), "451 4.3.0 Temporary failure (injected)\r\n");
  EXPECT_TRUE(d.messages_.empty());
  EXPECT_EQ(seen_sender, "alice@example.com");
  EXPECT_EQ(seen_recipients, (std::vector<std::string>{"bob@example.org", "carol@example.net"}));
  EXPECT_EQ(seen_content, "Subject: test\r\n\r\n.leading dot\r\n");
  // The transaction was reset: a new one goes through.
  EXPECT_THAT(d.Send("RCPT TO:<x@example.com>\r\n"), HasSubstr("503 5.5.1"));
  d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n");
  EXPECT_EQ(d.Send(kBody), "250 2.0.0 Ok: queued as Q1\r\n");
  ASSERT_EQ(d.messages_.size(), 1u);
  EXPECT_EQ(d.messages_[0].recipients, (std::vector<std::string>{"x@example.com"}));
}

TEST(ServerSessionHooksTest, DataCheckIsNotAskedForATooBigMessage) {
  ServerPolicy policy = TestPolicy();
  policy.max_message_size = 10;
  bool asked = false;
  policy.data_check = [&](std::string_view, const std::vector<std::string>&, std::string_view) {
    asked = true;
    return std::optional<std::string>();
  };
  FakeDriver d(policy);
  d.Send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
  EXPECT_THAT(d.Send("0123456789abcdef\r\n.\r\n"), HasSubstr("552 5.3.4"));
  EXPECT_FALSE(asked);
}

TEST(ServerSessionHooksTest, CustomGreeting421ClosesAtOnce) {
  ServerPolicy policy = TestPolicy();
  policy.greeting = "421 4.7.0 Too many connections from 192.0.2.10";
  FakeDriver d(policy);
  EXPECT_EQ(d.out_, "421 4.7.0 Too many connections from 192.0.2.10\r\n");
  EXPECT_EQ(d.Send("EHLO c\r\n"), "");
  EXPECT_TRUE(d.closed_);
}

TEST(ServerSessionHooksTest, Custom220GreetingKeepsTheSessionOpen) {
  ServerPolicy policy = TestPolicy();
  policy.greeting = "220 sink.test ESMTP ready";
  FakeDriver d(policy);
  EXPECT_EQ(d.out_, "220 sink.test ESMTP ready\r\n");
  EXPECT_THAT(d.Send("EHLO c\r\n"), HasSubstr("250-mx.test\r\n"));
  EXPECT_FALSE(d.closed_);
}

TEST(ServerSessionHooksDeathTest, ACheckMustAnswerWithARefusalCode) {
  ServerPolicy policy = TestPolicy();
  policy.rcpt_check = [](std::string_view) { return std::optional<std::string>("250 fine"); };
  EXPECT_DEATH(
      {
        FakeDriver d(policy);
        d.Send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n");
      },
      "");
}

// keep_content == false ------------------------------------------------------

std::string BigBody(size_t lines) {
  std::string body;
  for (size_t i = 0; i < lines; ++i) body += std::string(70, 'x') + "\r\n";
  return body;
}

TEST(ServerSessionHooksTest, WithoutKeepContentOnlyTheHeaderSectionIsKept) {
  ServerPolicy policy = TestPolicy();
  policy.max_message_size = 0;
  policy.keep_content = false;
  const std::string header = "Message-ID: <m1@test>\r\nX-Hikyaku-Test: t1\r\n\r\n";
  const std::string body = BigBody(2000);  // 144 000 octets
  const std::string dialogue = "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" +
                               header + body + ".\r\nQUIT\r\n";
  std::string seen_by_check;
  policy.data_check = [&](std::string_view, const std::vector<std::string>&, std::string_view content) {
    seen_by_check = content;
    return std::optional<std::string>();
  };
  std::mt19937 rng(7);
  for (size_t chunk : {dialogue.size(), size_t{1}, size_t{0}}) {
    FakeDriver d(policy);
    size_t pos = 0;
    while (pos < dialogue.size()) {
      size_t n = chunk != 0 ? chunk : 1 + rng() % 3000;  // 0: random read sizes
      n = std::min(n, dialogue.size() - pos);
      d.Send(std::string_view(dialogue).substr(pos, n));
      pos += n;
    }
    ASSERT_EQ(d.messages_.size(), 1u) << chunk;
    EXPECT_EQ(d.messages_[0].content, header) << chunk;
    EXPECT_EQ(d.messages_[0].size, header.size() + body.size()) << chunk;
    EXPECT_EQ(seen_by_check, header);
    EXPECT_TRUE(d.closed_);
  }
}

TEST(ServerSessionHooksTest, WithoutKeepContentAHugeHeaderIsCutAtTheLimit) {
  ServerPolicy policy = TestPolicy();
  policy.max_message_size = 0;
  policy.keep_content = false;
  policy.kept_header_limit = 100;
  FakeDriver d(policy);
  d.Send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
  std::string headers;
  for (int i = 0; i < 20; ++i) headers += "X-Filler-" + std::to_string(i) + ": yes\r\n";
  d.Send(headers + "\r\nbody\r\n.\r\n");
  ASSERT_EQ(d.messages_.size(), 1u);
  EXPECT_EQ(d.messages_[0].content, headers.substr(0, 100));
  EXPECT_EQ(d.messages_[0].size, headers.size() + 8);
}

TEST(ServerSessionHooksTest, WithoutKeepContentAMessageWithoutHeaderKeepsTheEmptyLine) {
  ServerPolicy policy = TestPolicy();
  policy.keep_content = false;
  FakeDriver d(policy);
  d.Send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
  d.Send("\r\nSubject: this is body\r\n\r\nmore\r\n.\r\n");
  d.Send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n.\r\n");
  ASSERT_EQ(d.messages_.size(), 2u);
  EXPECT_EQ(d.messages_[0].content, "\r\n");
  EXPECT_EQ(d.messages_[1].content, "");  // and the next message starts afresh
  EXPECT_EQ(d.messages_[1].size, 0u);
}

TEST(ServerSessionHooksTest, KeptContentReportsItsSize) {
  FakeDriver d;
  d.Send(kPipelinedEnvelope);
  d.Send(kBody);
  ASSERT_EQ(d.messages_.size(), 1u);
  EXPECT_EQ(d.messages_[0].size, d.messages_[0].content.size());
}

}  // namespace
}  // namespace hikyaku::smtp
