// Outcome: what one delivery attempt means for one recipient. ALL of
// hikyaku's defer/bounce policy lives in outcome.cc, the way Postfix keeps
// it in smtp_trouble.c: an SMTP reply (with the phase it answered) or a
// network failure goes in, a delivered / deferred / bounced verdict comes
// out, with the flags the dispatcher (next MX, dead-host breaker) and the
// shaper (throttling) act on. Nothing else in hikyaku decides whether a
// reply is permanent.
//
// Thread-safety: pure functions on plain values.
#pragma once

#include <optional>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"

#include "base/error.h"
#include "smtp/client_session.h"
#include "smtp/reply_parser.h"

namespace hikyaku::delivery {

struct Outcome {
  enum class Kind { kDelivered, kDeferred, kBounced };
  Kind kind = Kind::kDeferred;
  // This host cannot take the mail now: try the next MX address. When no
  // address is left, `kind` is the recipient's result (so a 5xx greeting
  // from every MX bounces, a 4xx one defers). Refused or timed-out
  // connects and silent banners also mean the host looks dead (the
  // circuit breaker's input).
  bool host_failure = false;
  // The receiver asks us to slow down (421/450/451/452 with 4.7.x, or the
  // usual "too many connections / rate" texts): input of the adaptive shaper.
  bool throttled = false;
  // The STARTTLS handshake failed: the same host may be retried in clear.
  bool tls_failed = false;
  // What the outcome says about the pace of this (source, site) pair, for
  // the shaper (rules P1-P4 below Classify in outcome.cc).
  enum class Pace : uint8_t {
    kNone,
    kThrottle,            // slow down: a throttling reply to MAIL/RCPT/DATA
    kTooManyConnections,  // 421 / throttling reply at the greeting or EHLO
    kConnectFailed,       // refused or timed-out connect
    kLocal,               // our side: the source address cannot be bound
    kPause,               // a reply rule says: stop this pair for pause_for
    kClosedIdle,          // the server closed an idle connection with 421
  };
  Pace pace = Pace::kNone;
  Duration pause_for{};  // kPause only
  int code = 0;          // the SMTP reply code; 0 when no reply was received
  std::string enhanced;  // RFC 3463 code, from the reply or a default for its class
  std::string text;      // the server's text (lines joined by '\n'), or ours

  bool delivered() const { return kind == Kind::kDelivered; }
  // "550 5.1.1 text" or "4.4.1 connect to ...": for events and bounces.
  std::string Summary() const;
};

std::string_view ToString(Outcome::Kind kind);

// Failures where no (usable) reply was received.
enum class NetworkError {
  kConnectRefused,  // RST on connect
  kConnectTimeout,  // no answer to the SYN within connect_timeout
  kConnectFailed,   // unreachable network or host, other connect errors
  kTimeout,         // no reply within the phase's timeout (silent banner too)
  kConnectionLost,  // EOF or reset in the middle of the conversation
  kTlsFailed,       // the STARTTLS handshake failed
  kProtocolError,   // the server's reply was malformed or out of place
  kLocal,           // our side: cannot bind the source address, no sockets...
};

struct NetworkFailure {
  NetworkError error = NetworkError::kConnectionLost;
  smtp::ClientPhase phase = smtp::ClientPhase::kBanner;  // ignored for connect errors
  std::string peer;                                      // "192.0.2.1:25", for the text
  std::string detail;  // the OS / OpenSSL / parser message, may be empty
};

// Classifies the reply that decided a recipient, given what it answered.
Outcome Classify(smtp::ClientPhase phase, const smtp::Reply& reply);
// Classifies a failure without a reply; the text is synthesized
// ("connect to 192.0.2.1:25: Connection refused").
Outcome Classify(const NetworkFailure& failure);
// Convenience for a ClientSession's per-recipient result (reply.code != 0).
inline Outcome Classify(const smtp::RecipientResult& result) {
  return Classify(result.phase, result.reply);
}

// What the server said (or that it hung up: reply.code == 0) on an idle
// connection, between transactions (rule P5). Nothing was being sent, so
// no recipient is decided by it; the outcome is for the shaper and the log.
Outcome ClassifyIdleReply(const smtp::Reply& reply, std::string_view peer);

// Verdicts decided without a transaction (rules D1-D3 in outcome.cc):
// a failed MX lookup of the recipient domain (the Resolver's Error) ...
Outcome ClassifyDnsFailure(const Error& error);
// ... one connection attempt that found no usable host: `failures` are the
// Open() outcomes of every address tried, in order (at least one) ...
Outcome ClassifyNoUsableHost(std::span<const Outcome> failures);
// ... and a site none of whose hosts may be tried now (all down in the
// circuit breaker). `last_failure` is the last connect failure seen, or "".
Outcome ClassifyAllHostsDown(std::string_view site, std::string_view last_failure);

// Reply rules ([[reply_rule]] and the shipped provider rules): the
// operator's word on what a reply means, applied in order, first match
// wins, after the built-in classification (ApplyReplyRules, rule U1).
struct ReplyRule {
  enum class Action : uint8_t { kThrottle, kPause, kBounce, kDefer, kIgnore };
  std::optional<int> code;     // the reply code, e.g. 450
  std::string enhanced;        // a prefix of the enhanced code, e.g. "4.7."
  std::optional<std::regex> match;  // searched in the reply text (case-insensitive)
  std::string site;            // only for this site; "" = every site
  Action action = Action::kThrottle;
  Duration duration{};         // kPause: how long (default 10 min)
  std::string description;     // "providers.toml:12" or the rule's match, for reasons
};
using ReplyRules = std::vector<ReplyRule>;

// Applies the first rule matching `o` (a reply: o.code != 0) for `site`.
// Returns the rule applied, or null.
const ReplyRule* ApplyReplyRules(const ReplyRules& rules, std::string_view site, Outcome& o);

// True if the reply asks the sender to slow down (see Outcome::throttled).
bool IsThrottlingReply(const smtp::Reply& reply);

}  // namespace hikyaku::delivery
