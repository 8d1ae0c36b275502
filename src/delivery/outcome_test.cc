#include "delivery/outcome.h"

#include <gtest/gtest.h>

namespace hikyaku::delivery {
namespace {

using smtp::ClientPhase;
using Kind = Outcome::Kind;

smtp::Reply R(int code, std::string enhanced = "", std::string text = "text") {
  smtp::Reply r;
  r.code = code;
  r.enhanced = std::move(enhanced);
  r.text = std::move(text);
  return r;
}

// R1
TEST(OutcomeTest, NonFinalCodesAreProtocolErrors) {
  for (int code : {0, 150, 354, 600}) {
    Outcome o = Classify(ClientPhase::kRcpt, R(code));
    EXPECT_EQ(o.kind, Kind::kDeferred) << code;
    EXPECT_EQ(o.enhanced, "4.5.0");
    EXPECT_FALSE(o.host_failure);
  }
  EXPECT_TRUE(Classify(ClientPhase::kEhlo, R(354)).host_failure);
}

// R2
TEST(OutcomeTest, PositiveAfterDataIsDelivered) {
  Outcome o = Classify(ClientPhase::kDataEnd, R(250, "2.0.0", "Ok: queued as ABC"));
  EXPECT_EQ(o.kind, Kind::kDelivered);
  EXPECT_TRUE(o.delivered());
  EXPECT_EQ(o.code, 250);
  EXPECT_EQ(o.enhanced, "2.0.0");
  EXPECT_EQ(o.text, "Ok: queued as ABC");
  EXPECT_FALSE(o.host_failure);
  EXPECT_EQ(Classify(ClientPhase::kDataEnd, R(250)).enhanced, "2.0.0");
}

TEST(OutcomeTest, PositiveAsDecidingReplyElsewhereIsProtocolError) {
  Outcome o = Classify(ClientPhase::kBanner, R(250));
  EXPECT_EQ(o.kind, Kind::kDeferred);
  EXPECT_EQ(o.enhanced, "4.5.0");
  EXPECT_TRUE(o.host_failure);
}

// R3
TEST(OutcomeTest, ServiceClosingAnywhereIsDeferredHostFailure) {
  for (ClientPhase phase : {ClientPhase::kBanner, ClientPhase::kEhlo, ClientPhase::kMail,
                            ClientPhase::kRcpt, ClientPhase::kData, ClientPhase::kDataEnd}) {
    Outcome o = Classify(phase, R(421, "", "mx.test Service not available"));
    EXPECT_EQ(o.kind, Kind::kDeferred);
    EXPECT_TRUE(o.host_failure);
    EXPECT_EQ(o.enhanced, "4.0.0");
    EXPECT_FALSE(o.throttled);
  }
  Outcome o = Classify(ClientPhase::kRcpt, R(421, "4.7.0", "Too many connections from your IP"));
  EXPECT_TRUE(o.throttled);
  EXPECT_TRUE(o.host_failure);
}

// R4
TEST(OutcomeTest, ResetFailureIsDeferredNeverBounced) {
  EXPECT_EQ(Classify(ClientPhase::kRset, R(554, "5.5.1")).kind, Kind::kDeferred);
  EXPECT_EQ(Classify(ClientPhase::kRset, R(554, "5.5.1")).enhanced, "4.5.1");
  EXPECT_EQ(Classify(ClientPhase::kQuit, R(500)).kind, Kind::kDeferred);
}

// R5
TEST(OutcomeTest, TemporaryGreetingFailureTriesNextMx) {
  for (ClientPhase phase : {ClientPhase::kBanner, ClientPhase::kEhlo, ClientPhase::kStartTls}) {
    Outcome o = Classify(phase, R(450, "", "busy"));
    EXPECT_EQ(o.kind, Kind::kDeferred);
    EXPECT_TRUE(o.host_failure);
  }
}

// R6
TEST(OutcomeTest, PermanentGreetingFailureBouncesOnlyWhenNoMxIsLeft) {
  Outcome o = Classify(ClientPhase::kBanner, R(554, "5.7.1", "Your IP is listed"));
  EXPECT_EQ(o.kind, Kind::kBounced);
  EXPECT_TRUE(o.host_failure);
  EXPECT_EQ(o.enhanced, "5.7.1");
  o = Classify(ClientPhase::kEhlo, R(550));
  EXPECT_EQ(o.kind, Kind::kBounced);
  EXPECT_TRUE(o.host_failure);
  EXPECT_EQ(o.enhanced, "5.0.0");
}

// R7
TEST(OutcomeTest, TooManyRecipients552IsTemporary) {
  Outcome o = Classify(ClientPhase::kRcpt, R(552, "5.5.3", "Too many recipients"));
  EXPECT_EQ(o.kind, Kind::kDeferred);
  EXPECT_EQ(o.enhanced, "4.5.3");
  EXPECT_FALSE(o.host_failure);
  // 552 to the end of data is "message too big": permanent.
  EXPECT_EQ(Classify(ClientPhase::kDataEnd, R(552, "5.3.4")).kind, Kind::kBounced);
}

// R8
TEST(OutcomeTest, PermanentFailuresInTheTransactionBounce) {
  for (ClientPhase phase :
       {ClientPhase::kMail, ClientPhase::kRcpt, ClientPhase::kData, ClientPhase::kDataEnd}) {
    Outcome o = Classify(phase, R(550, "5.1.1", "No such user"));
    EXPECT_EQ(o.kind, Kind::kBounced);
    EXPECT_FALSE(o.host_failure);
    EXPECT_FALSE(o.throttled);
    EXPECT_EQ(o.code, 550);
    EXPECT_EQ(o.enhanced, "5.1.1");
    EXPECT_EQ(o.text, "No such user");
  }
  EXPECT_EQ(Classify(ClientPhase::kRcpt, R(550)).enhanced, "5.0.0");
  // The local SIZE refusal of ClientSession.
  EXPECT_EQ(Classify(ClientPhase::kMail, R(552, "5.3.4")).kind, Kind::kBounced);
}

// R9
TEST(OutcomeTest, TemporaryFailuresInTheTransactionDefer) {
  for (ClientPhase phase :
       {ClientPhase::kMail, ClientPhase::kRcpt, ClientPhase::kData, ClientPhase::kDataEnd}) {
    Outcome o = Classify(phase, R(451, "4.3.0", "try later"));
    EXPECT_EQ(o.kind, Kind::kDeferred);
    EXPECT_FALSE(o.host_failure);
    EXPECT_FALSE(o.throttled);
  }
  Outcome o = Classify(ClientPhase::kRcpt, R(452, "4.5.3", "Too many recipients"));
  EXPECT_EQ(o.kind, Kind::kDeferred);
  EXPECT_FALSE(o.throttled);
  EXPECT_EQ(Classify(ClientPhase::kRcpt, R(450)).enhanced, "4.0.0");
}

// R11
TEST(OutcomeTest, ThrottlingSignals) {
  EXPECT_TRUE(Classify(ClientPhase::kMail, R(450, "4.7.0", "rate")).throttled);
  EXPECT_TRUE(
      Classify(ClientPhase::kDataEnd, R(451, "4.7.500", "Server busy. Please try again later"))
          .throttled);
  EXPECT_TRUE(
      Classify(ClientPhase::kRcpt, R(421, "4.7.28", "unusual rate of unsolicited mail")).throttled);
  EXPECT_TRUE(
      Classify(ClientPhase::kBanner, R(421, "", "Too many concurrent SMTP connections")).throttled);
  EXPECT_TRUE(Classify(ClientPhase::kMail, R(450, "", "Rate limit exceeded")).throttled);
  EXPECT_TRUE(Classify(ClientPhase::kMail,
                       R(421, "", "[TSS04] Messages temporarily deferred due to volume"))
                  .throttled);
  // Greylisting is not a rate signal, even with 4.7.1.
  EXPECT_FALSE(Classify(ClientPhase::kRcpt, R(450, "4.7.1", "Greylisted, try again in 5 minutes"))
                   .throttled);
  EXPECT_FALSE(Classify(ClientPhase::kRcpt, R(451, "4.7.1", "Please retry: graylisting in action"))
                   .throttled);
  // Permanent policy failures are bounces, not throttling.
  EXPECT_FALSE(Classify(ClientPhase::kRcpt, R(550, "5.7.1", "rate limit")).throttled);
  EXPECT_FALSE(IsThrottlingReply(R(250, "2.0.0", "too many connections")));
}

// N1
TEST(OutcomeTest, ConnectFailuresAreDeadHosts) {
  NetworkFailure f;
  f.peer = "192.0.2.1:25";
  f.error = NetworkError::kConnectRefused;
  Outcome o = Classify(f);
  EXPECT_EQ(o.kind, Kind::kDeferred);
  EXPECT_TRUE(o.host_failure);
  EXPECT_EQ(o.code, 0);
  EXPECT_EQ(o.enhanced, "4.4.1");
  EXPECT_EQ(o.text, "connect to 192.0.2.1:25: Connection refused");
  EXPECT_EQ(o.Summary(), "4.4.1 connect to 192.0.2.1:25: Connection refused");

  f.error = NetworkError::kConnectTimeout;
  o = Classify(f);
  EXPECT_TRUE(o.host_failure);
  EXPECT_EQ(o.text, "connect to 192.0.2.1:25: Connection timed out");

  f.error = NetworkError::kConnectFailed;
  f.detail = "Network is unreachable";
  o = Classify(f);
  EXPECT_TRUE(o.host_failure);
  EXPECT_EQ(o.text, "connect to 192.0.2.1:25: Network is unreachable");
}

// N2
TEST(OutcomeTest, TimeoutsAndLostConnections) {
  NetworkFailure f;
  f.peer = "192.0.2.1:25";
  f.error = NetworkError::kTimeout;
  f.phase = ClientPhase::kBanner;
  Outcome o = Classify(f);
  EXPECT_EQ(o.kind, Kind::kDeferred);
  EXPECT_TRUE(o.host_failure);  // silent banner: dead host
  EXPECT_EQ(o.enhanced, "4.4.2");
  EXPECT_EQ(o.text,
            "conversation with 192.0.2.1:25 timed out while receiving the initial server greeting");

  f.phase = ClientPhase::kDataEnd;
  o = Classify(f);
  EXPECT_FALSE(o.host_failure);
  EXPECT_EQ(o.kind, Kind::kDeferred);

  f.error = NetworkError::kConnectionLost;
  f.phase = ClientPhase::kRcpt;
  f.detail = "Connection reset by peer";
  o = Classify(f);
  EXPECT_EQ(o.kind, Kind::kDeferred);
  EXPECT_FALSE(o.host_failure);
  EXPECT_EQ(o.text,
            "lost connection with 192.0.2.1:25 while sending RCPT TO: Connection reset by peer");
  f.phase = ClientPhase::kEhlo;
  EXPECT_TRUE(Classify(f).host_failure);
}

// N3, N4, N5
TEST(OutcomeTest, TlsProtocolAndLocalFailures) {
  NetworkFailure f;
  f.peer = "[2001:db8::1]:25";
  f.error = NetworkError::kTlsFailed;
  f.phase = ClientPhase::kStartTls;
  f.detail = "wrong version number";
  Outcome o = Classify(f);
  EXPECT_EQ(o.kind, Kind::kDeferred);
  EXPECT_TRUE(o.tls_failed);
  EXPECT_FALSE(o.host_failure);
  EXPECT_EQ(o.enhanced, "4.7.5");
  EXPECT_FALSE(o.throttled);

  f.error = NetworkError::kProtocolError;
  f.phase = ClientPhase::kMail;
  o = Classify(f);
  EXPECT_EQ(o.enhanced, "4.5.0");
  EXPECT_FALSE(o.host_failure);

  f.error = NetworkError::kLocal;
  f.detail = "cannot bind 198.51.100.7: Cannot assign requested address";
  o = Classify(f);
  EXPECT_EQ(o.kind, Kind::kDeferred);
  EXPECT_EQ(o.enhanced, "4.3.0");
  EXPECT_FALSE(o.host_failure);
}

TEST(OutcomeTest, SummaryIsOneLine) {
  Outcome o = Classify(ClientPhase::kRcpt, R(550, "5.1.1", "line one\nline two"));
  EXPECT_EQ(o.Summary(), "550 5.1.1 line one line two");
  EXPECT_EQ(ToString(o.kind), "bounced");
}

TEST(OutcomeTest, ClassifiesSessionResults) {
  smtp::RecipientResult result{ClientPhase::kDataEnd, R(250, "2.0.0", "ok"), false};
  EXPECT_TRUE(Classify(result).delivered());
}

// D1
TEST(OutcomeTest, DnsFailuresBounceWhenPermanentAndDeferWhenTransient) {
  Outcome gone = ClassifyDnsFailure(Error(ErrorCode::kNotFound, "nowhere.test: NXDOMAIN"));
  EXPECT_EQ(gone.kind, Kind::kBounced);
  EXPECT_EQ(gone.enhanced, "5.1.2");
  EXPECT_EQ(gone.text, "nowhere.test: NXDOMAIN");
  Outcome later = ClassifyDnsFailure(Error(ErrorCode::kTimeout, "slow.test: timeout"));
  EXPECT_EQ(later.kind, Kind::kDeferred);
  EXPECT_EQ(later.enhanced, "4.4.3");
}

// D2 (R6): a 554 greeting from every MX bounces; one transient failure defers.
TEST(OutcomeTest, EveryHostRefusingPermanentlyBounces) {
  Outcome refused = Classify(ClientPhase::kBanner, R(554, "", "no SMTP service here"));
  ASSERT_EQ(refused.kind, Kind::kBounced);
  Outcome both[] = {refused, refused};
  Outcome o = ClassifyNoUsableHost(both);
  EXPECT_EQ(o.kind, Kind::kBounced);
  EXPECT_EQ(o.code, 554);
  EXPECT_EQ(o.text, "no SMTP service here");

  NetworkFailure nf;
  nf.error = NetworkError::kConnectRefused;
  nf.peer = "192.0.2.2:25";
  Outcome mixed[] = {refused, Classify(nf)};
  Outcome d = ClassifyNoUsableHost(mixed);
  EXPECT_EQ(d.kind, Kind::kDeferred);
  EXPECT_EQ(d.enhanced, "4.4.1");
  EXPECT_TRUE(d.host_failure);
  Outcome reversed[] = {Classify(nf), refused};
  EXPECT_EQ(ClassifyNoUsableHost(reversed).kind, Kind::kDeferred);
}

// D3
TEST(OutcomeTest, AllHostsDownDefersNamingTheLastFailure) {
  Outcome o = ClassifyAllHostsDown("mx.example.test", "connect to 192.0.2.1:25: Connection refused");
  EXPECT_EQ(o.kind, Kind::kDeferred);
  EXPECT_EQ(o.enhanced, "4.4.1");
  EXPECT_EQ(o.text, "all MX hosts of mx.example.test are down (last: connect to 192.0.2.1:25: Connection refused)");
  EXPECT_EQ(ClassifyAllHostsDown("s", "").text, "all MX hosts of s are down");
}

// P1-P4
TEST(OutcomeTest, PaceSignalsForTheShaper) {
  EXPECT_EQ(Classify(ClientPhase::kRcpt, R(450, "4.7.1", "rate limited")).pace, Outcome::Pace::kThrottle);
  EXPECT_EQ(Classify(ClientPhase::kRcpt, R(450, "4.2.0", "greylisted, try later")).pace, Outcome::Pace::kNone);
  EXPECT_EQ(Classify(ClientPhase::kRcpt, R(451, "4.3.0", "temporary failure")).pace, Outcome::Pace::kNone);
  EXPECT_EQ(Classify(ClientPhase::kBanner, R(421, "4.7.0", "Too many connections from 127.0.0.50")).pace,
            Outcome::Pace::kTooManyConnections);
  EXPECT_EQ(Classify(ClientPhase::kBanner, R(421, "", "service not available")).pace,
            Outcome::Pace::kTooManyConnections);
  NetworkFailure refused;
  refused.error = NetworkError::kConnectRefused;
  EXPECT_EQ(Classify(refused).pace, Outcome::Pace::kConnectFailed);
  NetworkFailure local;
  local.error = NetworkError::kLocal;
  EXPECT_EQ(Classify(local).pace, Outcome::Pace::kLocal);
}

// U1
TEST(OutcomeTest, ReplyRulesFirstMatchDecides) {
  ReplyRules rules(4);
  rules[0].code = 421;
  rules[0].match = std::regex("TSS04", std::regex::icase);
  rules[0].action = ReplyRule::Action::kPause;
  rules[0].duration = std::chrono::hours(1);
  rules[1].enhanced = "5.7.";
  rules[1].site = "docomo";
  rules[1].match = std::regex("temporarily", std::regex::icase);
  rules[1].action = ReplyRule::Action::kThrottle;
  rules[2].code = 550;
  rules[2].match = std::regex("mailbox full", std::regex::icase);
  rules[2].action = ReplyRule::Action::kDefer;
  rules[3].enhanced = "4.7.";
  rules[3].match = std::regex("not a rate", std::regex::icase);
  rules[3].action = ReplyRule::Action::kIgnore;

  Outcome yahoo = Classify(ClientPhase::kMail, R(421, "4.7.0", "[TSS04] Messages temporarily deferred"));
  ASSERT_NE(ApplyReplyRules(rules, "yahoo", yahoo), nullptr);
  EXPECT_EQ(yahoo.pace, Outcome::Pace::kPause);
  EXPECT_EQ(yahoo.pause_for, std::chrono::hours(1));

  Outcome carrier = Classify(ClientPhase::kRcpt, R(550, "5.7.1", "temporarily rejected"));
  ASSERT_EQ(carrier.kind, Kind::kBounced);
  Outcome elsewhere = carrier;
  EXPECT_EQ(ApplyReplyRules(rules, "other", elsewhere), nullptr);  // site-scoped
  EXPECT_EQ(elsewhere.kind, Kind::kBounced);
  ASSERT_NE(ApplyReplyRules(rules, "docomo", carrier), nullptr);
  EXPECT_EQ(carrier.kind, Kind::kDeferred);
  EXPECT_EQ(carrier.enhanced, "4.7.1");
  EXPECT_EQ(carrier.pace, Outcome::Pace::kThrottle);

  Outcome full = Classify(ClientPhase::kRcpt, R(550, "5.2.2", "Mailbox full"));
  ApplyReplyRules(rules, "any", full);
  EXPECT_EQ(full.kind, Kind::kDeferred);
  EXPECT_EQ(full.enhanced, "4.2.2");
  EXPECT_EQ(full.pace, Outcome::Pace::kNone);

  Outcome policy = Classify(ClientPhase::kRcpt, R(450, "4.7.1", "policy, not a rate limit"));
  ASSERT_EQ(policy.pace, Outcome::Pace::kThrottle);
  ApplyReplyRules(rules, "any", policy);
  EXPECT_FALSE(policy.throttled);
  EXPECT_EQ(policy.pace, Outcome::Pace::kNone);
  EXPECT_EQ(policy.kind, Kind::kDeferred);

  Outcome delivered = Classify(ClientPhase::kDataEnd, R(250, "2.0.0", "TSS04 ok"));
  EXPECT_EQ(ApplyReplyRules(rules, "yahoo", delivered), nullptr);  // code 421 only
}

TEST(OutcomeTest, IdleClosingIsAPaceSignalOnlyWhenItIs421) {
  smtp::Reply closing = R(421, "4.7.0", "Too many connections");
  Outcome o = ClassifyIdleReply(closing, "mx.test");
  EXPECT_EQ(o.kind, Outcome::Kind::kDeferred);
  EXPECT_EQ(o.pace, Outcome::Pace::kClosedIdle);
  EXPECT_EQ(o.code, 421);
  Outcome hung = ClassifyIdleReply(smtp::Reply{}, "mx.test");
  EXPECT_EQ(hung.pace, Outcome::Pace::kNone) << "a silent hang-up is no signal";
  EXPECT_NE(hung.text.find("mx.test"), std::string::npos);
}

}  // namespace
}  // namespace hikyaku::delivery
