#include "smtp/client_session.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace hikyaku::smtp {
namespace {

using Action = ClientSession::Action;

ClientPolicy TestPolicy() {
  ClientPolicy policy;
  policy.helo_name = "out.example";
  return policy;
}

constexpr std::string_view kFullEhlo =
    "250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
    "250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
constexpr std::string_view kPlainEhlo = "250-mx.test\r\n250 ENHANCEDSTATUSCODES\r\n";

// Plays the server: feeds reply bytes and collects what the client writes.
class Harness {
 public:
  explicit Harness(ClientPolicy policy = TestPolicy()) : session_(std::move(policy)) {}

  Action Run(std::string_view server = {}) {
    if (!server.empty()) session_.Feed(server);
    return session_.Process(out_);
  }
  // Like Run, but feeds one byte at a time.
  Action RunByteByByte(std::string_view server) {
    Action action = session_.Process(out_);
    for (char c : server) {
      EXPECT_EQ(action, Action::kNeedInput);
      session_.Feed(std::string_view(&c, 1));
      action = session_.Process(out_);
    }
    return action;
  }
  std::string TakeOut() { return std::exchange(out_, std::string()); }

  // Banner + EHLO with the given EHLO reply; expects kReady.
  void Establish(std::string_view ehlo) {
    ASSERT_EQ(Run(), Action::kNeedInput);
    ASSERT_EQ(Run("220 mx.test ESMTP\r\n"), Action::kNeedInput);
    ASSERT_EQ(TakeOut(), "EHLO out.example\r\n");
    ASSERT_EQ(Run(ehlo), Action::kReady);
  }

  void Start(std::vector<std::string> recipients, uint64_t size = 100, bool eight_bit = false,
             std::string sender = "bounce@out.example") {
    sender_ = std::move(sender);
    recipients_ = std::move(recipients);
    TransactionRequest request;
    request.sender = sender_;
    request.recipients = recipients_;
    request.content_size = size;
    request.eight_bit = eight_bit;
    session_.StartTransaction(request, out_);
  }

  ClientSession& session() { return session_; }

 private:
  ClientSession session_;
  std::string out_;
  std::string sender_;
  std::vector<std::string> recipients_;
};

TEST(ClientSessionTest, ParsesEhloExtensions) {
  Harness h;
  h.Establish(kFullEhlo);
  const auto& ext = h.session().extensions();
  EXPECT_TRUE(ext.esmtp);
  EXPECT_TRUE(ext.pipelining);
  EXPECT_TRUE(ext.eight_bit_mime);
  EXPECT_TRUE(ext.enhanced_status_codes);
  EXPECT_TRUE(ext.smtputf8);
  EXPECT_FALSE(ext.starttls);
  ASSERT_TRUE(ext.size.has_value());
  EXPECT_EQ(*ext.size, 10000u);
  EXPECT_TRUE(h.session().idle());
}

TEST(ClientSessionTest, KeywordsAreCaseInsensitiveAndSizeWithoutNumberMeansNoLimit) {
  Harness h;
  h.Establish("250-mx\r\n250-pipelining\r\n250 Size\r\n");
  EXPECT_TRUE(h.session().extensions().pipelining);
  ASSERT_TRUE(h.session().extensions().size.has_value());
  EXPECT_EQ(*h.session().extensions().size, 0u);
  h.Start({"a@x.test"}, 1'000'000'000);
  EXPECT_EQ(h.TakeOut(),
            "MAIL FROM:<bounce@out.example> SIZE=1000000000\r\nRCPT TO:<a@x.test>\r\nDATA\r\n");
}

TEST(ClientSessionTest, PipelinedTransactionSendsEnvelopeInOneWrite) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test", "b@x.test", "c@x.test"});
  EXPECT_EQ(h.TakeOut(),
            "MAIL FROM:<bounce@out.example> SIZE=100\r\n"
            "RCPT TO:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\nDATA\r\n");
  EXPECT_EQ(h.session().awaiting(), ClientPhase::kMail);
  EXPECT_EQ(h.Run("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.session().awaiting(), ClientPhase::kRcpt);
  EXPECT_EQ(h.Run("550 5.1.1 <b@x.test>: no such user\r\n250 2.1.5 Ok\r\n354 go\r\n"),
            Action::kSendData);
  EXPECT_EQ(h.TakeOut(), "");
  EXPECT_EQ(h.session().awaiting(), ClientPhase::kDataEnd);
  EXPECT_EQ(h.Run(), Action::kNeedInput);
  EXPECT_EQ(h.Run("250 2.0.0 Ok: queued as X\r\n"), Action::kTransactionDone);
  auto results = h.session().TakeResults();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].phase, ClientPhase::kDataEnd);
  EXPECT_EQ(results[0].reply.code, 250);
  EXPECT_EQ(results[0].reply.text, "Ok: queued as X");
  EXPECT_EQ(results[1].phase, ClientPhase::kRcpt);
  EXPECT_EQ(results[1].reply.code, 550);
  EXPECT_EQ(results[1].reply.enhanced, "5.1.1");
  EXPECT_EQ(results[2].phase, ClientPhase::kDataEnd);
  EXPECT_EQ(h.Run(), Action::kReady);

  // The next transaction needs no RSET: the last one ended with its data.
  h.Start({"d@x.test"});
  EXPECT_EQ(h.TakeOut().substr(0, 10), "MAIL FROM:");
}

TEST(ClientSessionTest, SameResultsWhenRepliesArriveByteByByte) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test", "b@x.test"});
  h.TakeOut();
  EXPECT_EQ(h.RunByteByByte(
                "250 2.1.0 Ok\r\n452 4.5.3 Too many recipients\r\n250 2.1.5 Ok\r\n354 go\r\n"),
            Action::kSendData);
  EXPECT_EQ(h.Run("250-2.0.0 Ok\r\n250 2.0.0 queued\r\n"), Action::kTransactionDone);
  auto results = h.session().TakeResults();
  EXPECT_EQ(results[0].reply.code, 452);
  EXPECT_EQ(results[0].phase, ClientPhase::kRcpt);
  EXPECT_EQ(results[1].reply.text, "Ok\nqueued");
}

TEST(ClientSessionTest, LockStepWithoutPipelining) {
  Harness h;
  h.Establish(kPlainEhlo);
  h.Start({"a@x.test", "b@x.test"}, 100, /*eight_bit=*/true);
  // No SIZE and no 8BITMIME advertised: no parameters.
  EXPECT_EQ(h.TakeOut(), "MAIL FROM:<bounce@out.example>\r\n");
  EXPECT_EQ(h.Run("250 2.1.0 Ok\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.TakeOut(), "RCPT TO:<a@x.test>\r\n");
  EXPECT_EQ(h.Run("250 2.1.5 Ok\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.TakeOut(), "RCPT TO:<b@x.test>\r\n");
  EXPECT_EQ(h.Run("550 5.1.1 no\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.TakeOut(), "DATA\r\n");
  EXPECT_EQ(h.session().awaiting(), ClientPhase::kData);
  EXPECT_EQ(h.Run("354 go\r\n"), Action::kSendData);
  EXPECT_EQ(h.Run("250 ok\r\n"), Action::kTransactionDone);
  auto results = h.session().TakeResults();
  EXPECT_EQ(results[0].reply.code, 250);
  EXPECT_EQ(results[1].reply.code, 550);
}

TEST(ClientSessionTest, LockStepNoRecipientAcceptedSendsNoDataAndResetsBeforeNextMail) {
  Harness h;
  h.Establish(kPlainEhlo);
  h.Start({"a@x.test"});
  h.TakeOut();
  h.Run("250 2.1.0 Ok\r\n");
  EXPECT_EQ(h.TakeOut(), "RCPT TO:<a@x.test>\r\n");
  EXPECT_EQ(h.Run("550 5.1.1 no such user\r\n"), Action::kTransactionDone);
  EXPECT_EQ(h.TakeOut(), "");  // no DATA, and no RSET yet
  EXPECT_EQ(h.session().TakeResults()[0].reply.code, 550);
  EXPECT_EQ(h.Run(), Action::kReady);

  h.Start({"b@x.test"});
  EXPECT_EQ(h.TakeOut(), "RSET\r\n");
  EXPECT_EQ(h.session().awaiting(), ClientPhase::kRset);
  EXPECT_EQ(h.Run("250 2.0.0 Ok\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.TakeOut(), "MAIL FROM:<bounce@out.example>\r\n");
}

TEST(ClientSessionTest, QuitNeedsNoReset) {
  Harness h;
  h.Establish(kPlainEhlo);
  h.Start({"a@x.test"});
  h.Run("250 Ok\r\n");
  h.TakeOut();
  EXPECT_EQ(h.Run("550 no\r\n"), Action::kTransactionDone);
  EXPECT_EQ(h.Run(), Action::kReady);
  std::string out;
  h.session().Quit(out);
  EXPECT_EQ(out, "QUIT\r\n");  // no RSET before QUIT
}

TEST(ClientSessionTest, PipelinedNoRecipientAcceptedHandlesRefusedData) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test", "b@x.test"});
  h.TakeOut();
  EXPECT_EQ(h.Run("250 Ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.session().awaiting(), ClientPhase::kData);
  EXPECT_EQ(h.Run("554 5.5.1 Error: no valid recipients\r\n"), Action::kTransactionDone);
  EXPECT_EQ(h.TakeOut(), "");
  auto results = h.session().TakeResults();
  EXPECT_EQ(results[0].phase, ClientPhase::kRcpt);
  EXPECT_EQ(results[0].reply.code, 550);
  EXPECT_EQ(results[1].reply.code, 550);
  EXPECT_EQ(h.Run(), Action::kReady);
  // The MAIL may still be in effect: RSET goes first, in the same group.
  h.Start({"c@x.test"});
  EXPECT_EQ(h.TakeOut(),
            "RSET\r\nMAIL FROM:<bounce@out.example> SIZE=100\r\nRCPT TO:<c@x.test>\r\nDATA\r\n");
  EXPECT_EQ(h.Run("250 2.0.0 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n"), Action::kSendData);
}

TEST(ClientSessionTest, PipelinedDataAcceptedWithoutRecipientsGetsAnEmptyMessage) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test"});
  h.TakeOut();
  EXPECT_EQ(h.Run("250 Ok\r\n550 no\r\n354 go ahead\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.TakeOut(), ".\r\n");
  EXPECT_EQ(h.Run("554 no recipients\r\n"), Action::kTransactionDone);
  auto results = h.session().TakeResults();
  EXPECT_EQ(results[0].reply.code, 550);
  EXPECT_EQ(results[0].phase, ClientPhase::kRcpt);
}

TEST(ClientSessionTest, PipelinedMailRefusedWaitsForAllReplies) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test", "b@x.test"});
  h.TakeOut();
  EXPECT_EQ(h.Run("553 5.1.7 bad sender\r\n503 5.5.1 need MAIL\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.Run("503 5.5.1 need MAIL\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.Run("503 5.5.1 need MAIL\r\n"), Action::kTransactionDone);
  auto results = h.session().TakeResults();
  for (const auto& r : results) {
    EXPECT_EQ(r.phase, ClientPhase::kMail);
    EXPECT_EQ(r.reply.code, 553);
  }
  EXPECT_EQ(h.Run(), Action::kReady);
  h.Start({"c@x.test"});
  EXPECT_EQ(h.TakeOut().substr(0, 4), "MAIL");  // no MAIL was in effect: no RSET
}

TEST(ClientSessionTest, DataRefusedGoesToAcceptedRecipientsOnly) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test", "b@x.test"});
  h.TakeOut();
  EXPECT_EQ(h.Run("250 Ok\r\n250 Ok\r\n550 no\r\n451 4.3.0 try later\r\n"),
            Action::kTransactionDone);
  auto results = h.session().TakeResults();
  EXPECT_EQ(results[0].phase, ClientPhase::kData);
  EXPECT_EQ(results[0].reply.code, 451);
  EXPECT_EQ(results[1].phase, ClientPhase::kRcpt);
  EXPECT_EQ(h.Run(), Action::kReady);
  h.Start({"c@x.test"});
  EXPECT_EQ(h.TakeOut().substr(0, 6), "RSET\r\n");
}

TEST(ClientSessionTest, DataEndTemporaryFailureGoesToAcceptedRecipients) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test", "b@x.test"});
  h.TakeOut();
  EXPECT_EQ(h.Run("250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n"), Action::kSendData);
  EXPECT_EQ(h.Run("451 4.7.1 Greylisted\r\n"), Action::kTransactionDone);
  for (const auto& r : h.session().TakeResults()) {
    EXPECT_EQ(r.phase, ClientPhase::kDataEnd);
    EXPECT_EQ(r.reply.code, 451);
  }
  EXPECT_EQ(h.Run(), Action::kReady);
}

TEST(ClientSessionTest, ServiceClosingMidPipelineDecidesEveryoneAndCloses) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test", "b@x.test", "c@x.test"});
  h.TakeOut();
  EXPECT_EQ(h.Run("250 Ok\r\n550 5.1.1 no\r\n421 4.7.0 Too many messages, closing\r\n"),
            Action::kTransactionDone);
  auto results = h.session().TakeResults();
  EXPECT_EQ(results[0].reply.code, 550);
  EXPECT_EQ(results[1].reply.code, 421);
  EXPECT_EQ(results[1].phase, ClientPhase::kRcpt);
  EXPECT_EQ(results[2].reply.code, 421);
  EXPECT_EQ(h.Run(), Action::kClose);
  EXPECT_EQ(h.Run(), Action::kClose);
  ASSERT_TRUE(h.session().failure().has_value());
  EXPECT_EQ(h.session().failure()->reply.code, 421);
  EXPECT_FALSE(h.session().failure()->protocol_error);
}

TEST(ClientSessionTest, MalformedReplyEndsSessionWithUndecidedRecipients) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test", "b@x.test"});
  h.TakeOut();
  EXPECT_EQ(h.Run("250 Ok\r\n550 no\r\nHTTP/1.1 400 Bad Request\r\n"), Action::kTransactionDone);
  auto results = h.session().TakeResults();
  EXPECT_EQ(results[0].reply.code, 550);
  EXPECT_EQ(results[1].reply.code, 0);  // undecided: the driver defers it
  EXPECT_EQ(h.Run(), Action::kClose);
  ASSERT_TRUE(h.session().failure().has_value());
  EXPECT_TRUE(h.session().failure()->protocol_error);
  EXPECT_EQ(h.session().failure()->phase, ClientPhase::kRcpt);
}

TEST(ClientSessionTest, BannerRefusalCloses) {
  Harness h;
  EXPECT_EQ(h.Run("554 5.7.1 You are blocked\r\n"), Action::kClose);
  EXPECT_EQ(h.TakeOut(), "QUIT\r\n");  // RFC 5321 3.1
  EXPECT_EQ(h.session().failure()->phase, ClientPhase::kBanner);
  EXPECT_EQ(h.session().failure()->reply.code, 554);

  Harness busy;
  EXPECT_EQ(busy.Run("421 4.7.0 Too many connections\r\n"), Action::kClose);
  EXPECT_EQ(busy.TakeOut(), "");
  EXPECT_EQ(busy.session().failure()->reply.enhanced, "4.7.0");

  Harness odd;
  EXPECT_EQ(odd.Run("250 hello?\r\n"), Action::kClose);
  EXPECT_TRUE(odd.session().failure()->protocol_error);
}

TEST(ClientSessionTest, EhloRefusedFallsBackToHelo) {
  Harness h;
  h.Run("220 old.test SMTP\r\n");
  EXPECT_EQ(h.TakeOut(), "EHLO out.example\r\n");
  EXPECT_EQ(h.Run("502 5.5.2 Command not recognized\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.TakeOut(), "HELO out.example\r\n");
  EXPECT_EQ(h.session().awaiting(), ClientPhase::kEhlo);
  EXPECT_EQ(h.Run("250 old.test\r\n"), Action::kReady);
  EXPECT_FALSE(h.session().extensions().esmtp);
  EXPECT_FALSE(h.session().extensions().pipelining);
  h.Start({"a@x.test"});
  EXPECT_EQ(h.TakeOut(), "MAIL FROM:<bounce@out.example>\r\n");
}

TEST(ClientSessionTest, EhloTemporaryFailureCloses) {
  Harness h;
  h.Run("220 mx\r\n");
  EXPECT_EQ(h.Run("451 4.3.2 not now\r\n"), Action::kClose);
  EXPECT_EQ(h.session().failure()->phase, ClientPhase::kEhlo);
  EXPECT_FALSE(h.session().failure()->protocol_error);
}

TEST(ClientSessionTest, StartTlsThenEhloAgainAndInjectedBytesAreDropped) {
  Harness h;
  h.Run("220 mx\r\n");
  h.TakeOut();
  EXPECT_EQ(h.Run("250-mx\r\n250-STARTTLS\r\n250 PIPELINING\r\n"), Action::kNeedInput);
  EXPECT_EQ(h.TakeOut(), "STARTTLS\r\n");
  EXPECT_EQ(h.session().awaiting(), ClientPhase::kStartTls);
  // A man in the middle appends a fake EHLO reply after the 220.
  EXPECT_EQ(h.Run("220 2.0.0 Ready\r\n250-evil\r\n250 SIZE 1\r\n"), Action::kStartTls);
  EXPECT_EQ(h.Run(), Action::kStartTls);
  std::string out;
  h.session().OnTlsStarted(out);
  EXPECT_EQ(out, "EHLO out.example\r\n");
  EXPECT_TRUE(h.session().tls_active());
  EXPECT_FALSE(h.session().extensions().pipelining);  // forgotten until the new EHLO
  EXPECT_EQ(h.Run("250-mx\r\n250-PIPELINING\r\n250 SIZE 5000\r\n"), Action::kReady);
  EXPECT_EQ(*h.session().extensions().size, 5000u);
  EXPECT_EQ(h.TakeOut(), "");  // no second STARTTLS
}

TEST(ClientSessionTest, StartTlsRefusedContinuesInPlaintext) {
  Harness h;
  h.Run("220 mx\r\n");
  h.Run("250-mx\r\n250 STARTTLS\r\n");
  h.TakeOut();
  EXPECT_EQ(h.Run("454 4.7.0 TLS not available\r\n"), Action::kReady);
  EXPECT_FALSE(h.session().tls_active());
}

TEST(ClientSessionTest, StartTlsNotUsedWhenPolicySaysNo) {
  ClientPolicy policy = TestPolicy();
  policy.starttls = false;
  Harness h(policy);
  h.Run("220 mx\r\n");
  EXPECT_EQ(h.Run("250-mx\r\n250 STARTTLS\r\n"), Action::kReady);
}

TEST(ClientSessionTest, SizeLimitRefusesLocally) {
  Harness h;
  h.Establish(kFullEhlo);  // SIZE 10000
  h.Start({"a@x.test", "b@x.test"}, 10001);
  EXPECT_EQ(h.TakeOut(), "");
  EXPECT_EQ(h.Run(), Action::kTransactionDone);
  for (const auto& r : h.session().TakeResults()) {
    EXPECT_TRUE(r.local);
    EXPECT_EQ(r.reply.code, 552);
    EXPECT_EQ(r.reply.enhanced, "5.3.4");
    EXPECT_EQ(r.phase, ClientPhase::kMail);
  }
  EXPECT_EQ(h.Run(), Action::kReady);
  h.Start({"a@x.test"}, 10000);
  EXPECT_EQ(h.TakeOut().substr(0, 4), "MAIL");
}

TEST(ClientSessionTest, EightBitAndSmtpUtf8Parameters) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"\xe5\xa4\xaa\xe9\x83\x8e@x.test"}, 100, true);
  EXPECT_EQ(h.TakeOut(),
            "MAIL FROM:<bounce@out.example> SIZE=100 BODY=8BITMIME SMTPUTF8\r\n"
            "RCPT TO:<\xe5\xa4\xaa\xe9\x83\x8e@x.test>\r\nDATA\r\n");
}

TEST(ClientSessionTest, NonAsciiRecipientWithoutSmtpUtf8IsRefusedLocally) {
  Harness h;
  h.Establish("250-mx\r\n250 PIPELINING\r\n");
  h.Start({"a@x.test", "\xc3\xa9@x.test"});
  EXPECT_EQ(h.TakeOut(), "MAIL FROM:<bounce@out.example>\r\nRCPT TO:<a@x.test>\r\nDATA\r\n");
  EXPECT_EQ(h.Run("250 Ok\r\n250 Ok\r\n354 go\r\n"), Action::kSendData);
  EXPECT_EQ(h.Run("250 Ok\r\n"), Action::kTransactionDone);
  auto results = h.session().TakeResults();
  EXPECT_EQ(results[0].reply.code, 250);
  EXPECT_EQ(results[1].reply.code, 553);
  EXPECT_EQ(results[1].reply.enhanced, "5.6.7");
  EXPECT_TRUE(results[1].local);
}

TEST(ClientSessionTest, AddressWithLineBreakIsNeverSent) {
  Harness h;
  h.Establish(kFullEhlo);
  h.Start({"a@x.test\r\nRCPT TO:<evil@y.test>"});
  EXPECT_EQ(h.TakeOut(), "");
  EXPECT_EQ(h.Run(), Action::kTransactionDone);
  EXPECT_EQ(h.session().TakeResults()[0].reply.code, 501);
  h.Run();
  h.Start({"a@x.test"}, 100, false, std::string("x\0y@z", 5));
  EXPECT_EQ(h.TakeOut(), "");
  EXPECT_EQ(h.Run(), Action::kTransactionDone);
  EXPECT_EQ(h.session().TakeResults()[0].reply.enhanced, "5.1.7");
}

TEST(ClientSessionTest, NullSender) {
  Harness h;
  h.Establish(kPlainEhlo);
  h.Start({"a@x.test"}, 10, false, "");
  EXPECT_EQ(h.TakeOut(), "MAIL FROM:<>\r\n");
}

TEST(ClientSessionTest, QuitWaitsForReplyThenCloses) {
  Harness h;
  h.Establish(kFullEhlo);
  std::string out;
  h.session().Quit(out);
  EXPECT_EQ(out, "QUIT\r\n");
  EXPECT_EQ(h.session().awaiting(), ClientPhase::kQuit);
  EXPECT_EQ(h.Run(), Action::kNeedInput);
  EXPECT_EQ(h.Run("221 2.0.0 Bye\r\n"), Action::kClose);
  EXPECT_FALSE(h.session().failure().has_value());
}

TEST(ClientSessionTest, HundredTransactionsOnOneSession) {
  Harness h;
  h.Establish(kFullEhlo);
  for (int i = 0; i < 100; ++i) {
    h.Start({"a@x.test"});
    ASSERT_EQ(h.TakeOut().substr(0, 4), "MAIL") << i;
    ASSERT_EQ(h.Run("250 Ok\r\n250 Ok\r\n354 go\r\n"), Action::kSendData);
    ASSERT_EQ(h.Run("250 Ok\r\n"), Action::kTransactionDone);
    ASSERT_EQ(h.session().TakeResults()[0].reply.code, 250);
    ASSERT_EQ(h.Run(), Action::kReady);
  }
}

TEST(DataPayloadTest, NoDotsMeansNoCopy) {
  std::string content = "Subject: hi\r\n\r\nbody\r\n";
  std::string scratch;
  auto payload = PrepareDataPayload(content, scratch);
  EXPECT_EQ(payload.body.data(), content.data());
  EXPECT_EQ(payload.terminator, ".\r\n");
  EXPECT_TRUE(scratch.empty());
}

TEST(DataPayloadTest, LinesStartingWithDotAreStuffed) {
  std::string content = ".first\r\nmid\r\n..two\r\n.\r\nend.\r\n.";
  std::string scratch;
  auto payload = PrepareDataPayload(content, scratch);
  EXPECT_EQ(payload.body, "..first\r\nmid\r\n...two\r\n..\r\nend.\r\n..");
  EXPECT_EQ(payload.terminator, "\r\n.\r\n");
}

TEST(DataPayloadTest, DotAfterBareLfIsStuffedToo) {
  std::string scratch;
  auto payload = PrepareDataPayload("a\n.\r\nb\r\n", scratch);
  EXPECT_EQ(payload.body, "a\n..\r\nb\r\n");
}

TEST(DataPayloadTest, EmptyContentAndMissingFinalCrlf) {
  std::string scratch;
  EXPECT_EQ(PrepareDataPayload("", scratch).terminator, ".\r\n");
  EXPECT_EQ(PrepareDataPayload("x", scratch).terminator, "\r\n.\r\n");
  EXPECT_EQ(PrepareDataPayload("x\n", scratch).terminator, "\r\n.\r\n");
}

TEST(DataPayloadTest, HasEightBitOctet) {
  EXPECT_FALSE(HasEightBitOctet(""));
  EXPECT_FALSE(HasEightBitOctet(std::string(1000, 'a')));
  for (size_t at : {0u, 7u, 8u, 999u}) {
    std::string s(1000, 'a');
    s[at] = '\x80';
    EXPECT_TRUE(HasEightBitOctet(s)) << at;
  }
}

}  // namespace
}  // namespace hikyaku::smtp
