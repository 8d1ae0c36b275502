// The defer/bounce policy of hikyaku, all in one place. Each rule cites
// the RFC text it rests on. Rules are applied in the order written.
//
// Replies (Classify(phase, reply)):
//  R1  A code that is not 2yz/4yz/5yz where a final answer was due (a 3yz
//      outside DATA, a 1yz, garbage) is a protocol error: deferred, 4.5.0
//      (RFC 5321 4.2.1 / 4.3.2 list what each command may answer; RFC 3463
//      X.5.0 "other or undefined protocol status").
//  R2  2yz to the end of data: delivered; the server took responsibility
//      (RFC 5321 4.1.1.4, 6.1). 2yz as the deciding reply anywhere else is
//      a protocol error as in R1 (e.g. a banner that is not 220).
//  R3  421 in any phase: deferred and host_failure; the server is closing
//      the channel (RFC 5321 3.8, 4.2.3), so this connection is done and
//      another MX may serve.
//  R4  RSET/QUIT failures say nothing about the message: deferred.
//  R5  4yz to the banner, EHLO/HELO or STARTTLS: deferred and host_failure
//      (RFC 5321 5.1: on a temporary failure at one address the client
//      tries the next one).
//  R6  5yz to the banner, EHLO/HELO or STARTTLS: bounced and host_failure.
//      A 554 greeting means "no SMTP service here" (RFC 5321 3.1) for this
//      host only: the dispatcher tries the next MX and bounces only when
//      every MX refused (as Postfix does).
//  R7  552 to RCPT: deferred. RFC 5321 4.5.3.1.10 says clients SHOULD treat
//      552 "too many recipients" as temporary (452 4.5.3).
//  R8  5yz to MAIL, RCPT, DATA or the end of data: bounced (RFC 5321 4.2.1,
//      permanent negative completion: "do not repeat the exact request").
//  R9  4yz elsewhere: deferred (RFC 5321 4.2.1, transient negative
//      completion).
//  R10 The enhanced code is the server's (RFC 3463, RFC 2034); without
//      one, X.0.0 of the outcome's class (RFC 3463 section 3.1 "other
//      undefined status"). A deferred outcome never carries a 5.x.x code:
//      its class is rewritten to 4 (RFC 3463 section 3.1: the class gives
//      the delivery status).
//  R11 throttled: a 4yz whose enhanced code is 4.7.x (RFC 3463 X.7.x
//      "security or policy status": receivers use 4.7.0/4.7.28/4.7.500
//      for rate limits), or whose text says so ("too many connections",
//      "rate limit", ...). Greylisting is policy but not a rate signal: a
//      reply that mentions greylisting is never "throttled".
//
// Failures without a reply (Classify(NetworkFailure)) are all deferred:
//  N1  Connect refused / timed out / failed: 4.4.1 (RFC 3463 X.4.1 "no
//      answer from host"), host_failure (dead host; RFC 5321 5.1 next MX).
//  N2  Timeout or lost connection: 4.4.2 (X.4.2 "bad connection"). During
//      the banner, EHLO or STARTTLS also host_failure: a silent banner is
//      a dead host. After the final dot the message may have arrived
//      anyway (RFC 1047); deferring risks a duplicate, never a loss.
//  N3  TLS handshake failure: 4.7.5 (X.7.5 "cryptographic failure"),
//      tls_failed so the dispatcher may retry the host in clear (RFC 3207
//      section 4.1 leaves opportunistic fallback to the client).
//  N4  Malformed or unexpected replies: 4.5.0; host_failure before the
//      first transaction, as in N2.
//  N5  Local errors (cannot bind the source address...): 4.3.0 (X.3.0
//      "other mail system status"), not the host's fault.
//
// Verdicts without a transaction:
//  D1  MX lookup failed permanently (NXDOMAIN, null MX per RFC 7505, no
//      address at all): bounced, 5.1.2 (RFC 3463 X.1.2 "bad destination
//      system address"); transiently (timeout, SERVFAIL): deferred, 4.4.3
//      (X.4.3 "directory server failure").
//  D2  No host of one attempt was usable (R6's second half): bounced when
//      every address tried refused permanently (5yz to the banner, EHLO or
//      STARTTLS), with the last refusal's code and text, as Postfix does
//      after the last MX; any transient failure among them makes it
//      deferred with the last transient outcome (another MX or a later try
//      may work).
//
// Pace (what the shaper reads), set by Classify:
//  P1  throttled in MAIL/RCPT/DATA/end of data: kThrottle (lower the rate).
//  P2  421, or a throttling reply, to the banner or EHLO: kTooManyConnections
//      (the receiver limits our connections: "421 too many connections").
//  P3  connect refused or timed out: kConnectFailed (a weak connection signal:
//      it may be the network).
//  P4  cannot bind the source address (N5): kLocal; the dispatcher suspends
//      that source for a while instead of failing each delivery.
//  P5  421 on an idle connection (RFC 5321 3.8: the server may close at any
//      time with 421): kClosedIdle, the receiver limits our connections or
//      their lifetime. A silent hang-up there is no signal.
//
// Reply rules (ApplyReplyRules), the operator's and the shipped ones:
//  U1  The first rule whose code, enhanced prefix, text regex and site all
//      match decides: throttle = deferred + P1 (whatever the code said:
//      throttling is transient by definition); pause = deferred, kPause for
//      its duration; bounce = bounced (class 5); defer = deferred (class 4);
//      ignore = deferred or bounced as classified, but no pace signal (for
//      replies the built-in R11 wrongly reads as throttling).
//  D3  Every host of the site is down in the circuit breaker: deferred,
//      4.4.1 (X.4.1 "no answer from host"), naming the last failure.
#include "delivery/outcome.h"

#include <array>

namespace hikyaku::delivery {
namespace {

using smtp::ClientPhase;

bool BeforeTransaction(ClientPhase phase) {
  return phase == ClientPhase::kBanner || phase == ClientPhase::kEhlo ||
         phase == ClientPhase::kStartTls;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// What the client was doing, for synthesized texts (Postfix's wording).
std::string_view Doing(ClientPhase phase) {
  switch (phase) {
    case ClientPhase::kBanner:
      return "receiving the initial server greeting";
    case ClientPhase::kEhlo:
      return "performing the EHLO handshake";
    case ClientPhase::kStartTls:
      return "sending STARTTLS";
    case ClientPhase::kMail:
      return "sending MAIL FROM";
    case ClientPhase::kRcpt:
      return "sending RCPT TO";
    case ClientPhase::kData:
      return "sending DATA";
    case ClientPhase::kDataEnd:
      return "sending the message content";
    case ClientPhase::kRset:
      return "sending RSET";
    case ClientPhase::kQuit:
      return "sending QUIT";
  }
  return "talking";
}

std::string DefaultEnhanced(Outcome::Kind kind) {
  switch (kind) {
    case Outcome::Kind::kDelivered:
      return "2.0.0";
    case Outcome::Kind::kDeferred:
      return "4.0.0";
    case Outcome::Kind::kBounced:
      return "5.0.0";
  }
  return "4.0.0";
}

Outcome ProtocolError(ClientPhase phase, const smtp::Reply& reply) {
  Outcome o;  // R1
  o.kind = Outcome::Kind::kDeferred;
  o.host_failure = BeforeTransaction(phase);
  o.code = reply.code;
  o.enhanced = "4.5.0";
  o.text = "unexpected reply while " + std::string(Doing(phase)) + ": " + reply.text;
  return o;
}

}  // namespace

std::string_view ToString(Outcome::Kind kind) {
  switch (kind) {
    case Outcome::Kind::kDelivered:
      return "delivered";
    case Outcome::Kind::kDeferred:
      return "deferred";
    case Outcome::Kind::kBounced:
      return "bounced";
  }
  return "unknown";
}

std::string Outcome::Summary() const {
  std::string out;
  if (code != 0) {
    out += std::to_string(code);
    out += ' ';
  }
  out += enhanced;
  if (!text.empty()) {
    out += ' ';
    size_t start = out.size();
    out += text;
    for (size_t i = start; i < out.size(); ++i)
      if (out[i] == '\n' || out[i] == '\r') out[i] = ' ';
  }
  return out;
}

bool IsThrottlingReply(const smtp::Reply& reply) {
  // R11
  if (reply.Class() != 4) return false;
  std::string text = Lower(reply.text);
  if (text.find("greylist") != std::string::npos || text.find("graylist") != std::string::npos ||
      text.find("grey-list") != std::string::npos) {
    return false;
  }
  if (reply.enhanced.starts_with("4.7.")) return true;
  static constexpr std::array<std::string_view, 13> kSignals = {
      "too many connections", "too many concurrent", "too many messages", "too many sessions",
      "connection limit",     "rate limit",          "ratelimit",         "rate-limit",
      "unusual rate",         "sending rate",        "throttl",           "too fast",
      "temporarily deferred",
  };
  for (std::string_view s : kSignals)
    if (text.find(s) != std::string::npos) return true;
  return false;
}

Outcome Classify(ClientPhase phase, const smtp::Reply& reply) {
  const int cls = reply.Class();
  if (reply.code < 200 || reply.code > 599 || cls == 3) return ProtocolError(phase, reply);  // R1

  Outcome o;
  o.code = reply.code;
  o.text = reply.text;
  if (cls == 2) {
    if (phase != ClientPhase::kDataEnd) return ProtocolError(phase, reply);  // R2
    o.kind = Outcome::Kind::kDelivered;
  } else if (reply.code == 421) {  // R3
    o.kind = Outcome::Kind::kDeferred;
    o.host_failure = true;
  } else if (phase == ClientPhase::kRset || phase == ClientPhase::kQuit) {  // R4
    o.kind = Outcome::Kind::kDeferred;
  } else if (BeforeTransaction(phase)) {  // R5, R6
    o.kind = cls == 5 ? Outcome::Kind::kBounced : Outcome::Kind::kDeferred;
    o.host_failure = true;
  } else if (reply.code == 552 && phase == ClientPhase::kRcpt) {  // R7
    o.kind = Outcome::Kind::kDeferred;
  } else {  // R8, R9
    o.kind = cls == 5 ? Outcome::Kind::kBounced : Outcome::Kind::kDeferred;
  }

  // R10
  o.enhanced = reply.enhanced.empty() ? DefaultEnhanced(o.kind) : reply.enhanced;
  if (o.kind == Outcome::Kind::kDeferred && o.enhanced[0] != '4') o.enhanced[0] = '4';
  if (o.kind == Outcome::Kind::kBounced && o.enhanced[0] != '5') o.enhanced[0] = '5';
  if (o.kind == Outcome::Kind::kDelivered && o.enhanced[0] != '2') o.enhanced = "2.0.0";

  o.throttled = o.kind == Outcome::Kind::kDeferred && IsThrottlingReply(reply);  // R11
  if (BeforeTransaction(phase) && (reply.code == 421 || o.throttled))  // P2
    o.pace = Outcome::Pace::kTooManyConnections;
  else if (o.throttled)  // P1
    o.pace = Outcome::Pace::kThrottle;
  return o;
}

const ReplyRule* ApplyReplyRules(const ReplyRules& rules, std::string_view site, Outcome& o) {
  if (o.code == 0) return nullptr;
  for (const auto& rule : rules) {  // U1
    if (rule.code && *rule.code != o.code) continue;
    // "4.7." is a prefix, "4.7.28" an exact code.
    if (!rule.enhanced.empty() &&
        !(rule.enhanced.back() == '.' ? o.enhanced.starts_with(rule.enhanced) : o.enhanced == rule.enhanced))
      continue;
    if (!rule.site.empty() && rule.site != site) continue;
    if (rule.match && !std::regex_search(o.text, *rule.match)) continue;
    auto set_class = [&](Outcome::Kind kind, char cls) {
      o.kind = kind;
      if (!o.enhanced.empty()) o.enhanced[0] = cls;
    };
    switch (rule.action) {
      case ReplyRule::Action::kThrottle:
        set_class(Outcome::Kind::kDeferred, '4');
        o.throttled = true;
        if (o.pace != Outcome::Pace::kTooManyConnections) o.pace = Outcome::Pace::kThrottle;
        break;
      case ReplyRule::Action::kPause:
        set_class(Outcome::Kind::kDeferred, '4');
        o.throttled = true;
        o.pace = Outcome::Pace::kPause;
        o.pause_for = rule.duration.count() > 0 ? rule.duration : std::chrono::minutes(10);
        break;
      case ReplyRule::Action::kBounce:
        set_class(Outcome::Kind::kBounced, '5');
        o.throttled = false;
        o.pace = Outcome::Pace::kNone;
        break;
      case ReplyRule::Action::kDefer:
        set_class(Outcome::Kind::kDeferred, '4');
        break;
      case ReplyRule::Action::kIgnore:
        o.throttled = false;
        o.pace = Outcome::Pace::kNone;
        break;
    }
    return &rule;
  }
  return nullptr;
}

Outcome Classify(const NetworkFailure& failure) {
  Outcome o;
  o.kind = Outcome::Kind::kDeferred;
  const std::string detail = failure.detail.empty() ? std::string() : ": " + failure.detail;
  switch (failure.error) {
    case NetworkError::kConnectRefused:  // N1
      o.pace = Outcome::Pace::kConnectFailed;  // P3
      o.enhanced = "4.4.1";
      o.host_failure = true;
      o.text = "connect to " + failure.peer + ": Connection refused";
      break;
    case NetworkError::kConnectTimeout:
      o.pace = Outcome::Pace::kConnectFailed;
      o.enhanced = "4.4.1";
      o.host_failure = true;
      o.text = "connect to " + failure.peer + ": Connection timed out";
      break;
    case NetworkError::kConnectFailed:
      o.enhanced = "4.4.1";
      o.host_failure = true;
      o.text = "connect to " + failure.peer + (detail.empty() ? ": connection failed" : detail);
      break;
    case NetworkError::kTimeout:  // N2
      o.enhanced = "4.4.2";
      o.host_failure = BeforeTransaction(failure.phase);
      o.text = "conversation with " + failure.peer + " timed out while " +
               std::string(Doing(failure.phase));
      break;
    case NetworkError::kConnectionLost:
      o.enhanced = "4.4.2";
      o.host_failure = BeforeTransaction(failure.phase);
      o.text = "lost connection with " + failure.peer + " while " +
               std::string(Doing(failure.phase)) + detail;
      break;
    case NetworkError::kTlsFailed:  // N3
      o.enhanced = "4.7.5";
      o.tls_failed = true;
      o.text = "TLS handshake with " + failure.peer + " failed" + detail;
      break;
    case NetworkError::kProtocolError:  // N4
      o.enhanced = "4.5.0";
      o.host_failure = BeforeTransaction(failure.phase);
      o.text = "protocol error with " + failure.peer + " while " +
               std::string(Doing(failure.phase)) + detail;
      break;
    case NetworkError::kLocal:  // N5
      o.pace = Outcome::Pace::kLocal;  // P4
      o.enhanced = "4.3.0";
      o.text = "local error while connecting to " + failure.peer + detail;
      break;
  }
  return o;
}

Outcome ClassifyIdleReply(const smtp::Reply& reply, std::string_view peer) {
  Outcome o;  // P5
  o.kind = Outcome::Kind::kDeferred;
  o.code = reply.code;
  o.enhanced = reply.enhanced.empty() ? "4.4.2" : reply.enhanced;
  if (reply.code == 421) {
    o.pace = Outcome::Pace::kClosedIdle;
    o.text = reply.text;
  } else if (reply.code == 0) {
    o.text = "connection closed by " + std::string(peer) + " while idle";
  } else {
    o.text = "unexpected reply while idle: " + reply.text;
  }
  return o;
}

Outcome ClassifyDnsFailure(const Error& error) {
  Outcome o;  // D1
  o.code = 0;
  o.text = error.message();
  if (error.transient()) {
    o.kind = Outcome::Kind::kDeferred;
    o.enhanced = "4.4.3";
  } else {
    o.kind = Outcome::Kind::kBounced;
    o.enhanced = "5.1.2";
  }
  return o;
}

Outcome ClassifyNoUsableHost(std::span<const Outcome> failures) {
  // D2
  const Outcome* last_transient = nullptr;
  for (const auto& f : failures)
    if (f.kind != Outcome::Kind::kBounced) last_transient = &f;
  if (failures.empty()) {
    Outcome o;
    o.kind = Outcome::Kind::kDeferred;
    o.enhanced = "4.4.1";
    o.text = "no MX host could be tried";
    return o;
  }
  Outcome o = last_transient ? *last_transient : failures.back();
  o.host_failure = true;
  return o;
}

Outcome ClassifyAllHostsDown(std::string_view site, std::string_view last_failure) {
  Outcome o;  // D3
  o.kind = Outcome::Kind::kDeferred;
  o.enhanced = "4.4.1";
  o.text = "all MX hosts of " + std::string(site) + " are down" +
           (last_failure.empty() ? std::string() : " (last: " + std::string(last_failure) + ")");
  return o;
}

}  // namespace hikyaku::delivery
