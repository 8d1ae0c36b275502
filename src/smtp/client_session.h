// ClientSession: the ESMTP client state machine (RFC 5321, with PIPELINING
// RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152, SMTPUTF8 RFC 6531,
// ENHANCEDSTATUSCODES RFC 2034, STARTTLS RFC 3207). It does no I/O: reply
// bytes go in, command bytes and actions come out; a driver (delivery's
// SmtpConnection) moves bytes, applies timeouts and carries out the actions.
// It decides nothing about deferring or bouncing: it reports which reply
// answered which phase, and delivery/outcome.h classifies.
//
// Driver contract:
//   ClientSession session(policy);              // expects the 220 banner
//   loop:
//     switch (session.Process(out)):
//       kNeedInput:  write `out`; read with the timeout of session.awaiting();
//                    session.Feed(bytes). EOF or timeout: the connection is
//                    lost (TakeResults() tells who was already decided).
//       kStartTls:   `out` is empty; do the TLS handshake, then
//                    session.OnTlsStarted() (it sends EHLO again) or close.
//       kReady:      idle, no reply outstanding: StartTransaction(...) or Quit().
//       kSendData:   write `out`, then the payload of PrepareDataPayload(content).
//       kTransactionDone: TakeResults() has one result per recipient.
//       kClose:      write `out` (it may hold QUIT) and close; failure() says
//                    why when the session did not end with a 221.
// kNeedInput, kSendData and kTransactionDone are returned once each time;
// kStartTls, kReady and kClose repeat until the driver acts.
//
// A transaction: with PIPELINING, MAIL, every RCPT and DATA go out in one
// write (RFC 2920 section 3.1); without it, one command per reply. When no
// recipient is accepted the body is not sent; a pending transaction is
// reset with RSET only before the next MAIL (never before QUIT). A reply
// 421 anywhere ends the session (RFC 5321 section 3.8).
//
// Thread-safety: none; one session belongs to one connection's strand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/reply_parser.h"

namespace hikyaku::smtp {

// What a reply answers. Also selects the driver's timeout (RFC 5321 4.5.3.2).
enum class ClientPhase {
  kBanner,    // the 220 greeting (4.5.3.2.1: 5 minutes)
  kEhlo,      // EHLO, or HELO after a rejected EHLO
  kStartTls,  // the reply to STARTTLS (the ehlo timeout applies)
  kMail,      // MAIL FROM (4.5.3.2.2: 5 minutes)
  kRcpt,      // RCPT TO (4.5.3.2.3: 5 minutes)
  kData,      // the 354 after DATA (4.5.3.2.4: 2 minutes)
  kDataEnd,   // the reply after the final dot (4.5.3.2.6: 10 minutes)
  kRset,      // RSET between transactions (the mail timeout applies)
  kQuit,      // the 221 after QUIT
};

std::string_view ToString(ClientPhase phase);

struct ClientPolicy {
  std::string helo_name;  // our name in EHLO/HELO
  bool starttls = true;   // use STARTTLS when offered (opportunistic)
  size_t max_reply_line = kDefaultMaxReplyLine;
  size_t max_reply_lines = kDefaultMaxReplyLines;
};

// What the server's EHLO reply advertised (RFC 5321 4.1.1.1).
struct ServerExtensions {
  bool esmtp = false;  // EHLO was accepted; false after the HELO fallback
  bool pipelining = false;
  bool eight_bit_mime = false;
  bool starttls = false;
  bool enhanced_status_codes = false;
  bool smtputf8 = false;
  // SIZE (RFC 1870 section 4): absent when not advertised; 0 when
  // advertised without a fixed limit.
  std::optional<uint64_t> size;
};

// Views into the caller's strings, read only during StartTransaction.
struct TransactionRequest {
  std::string_view sender;  // without angle brackets; empty for the null reverse-path
  std::span<const std::string> recipients;  // at least one
  uint64_t content_size = 0;                // octets, for SIZE= and the local size check
  bool eight_bit = false;                   // the content has octets >= 0x80
};

// The reply that decided one recipient, and the phase it answered.
// reply.code == 0: not decided (yet) — an accepted RCPT waiting for the end
// of data, or the connection was lost before any reply for it.
struct RecipientResult {
  ClientPhase phase = ClientPhase::kRcpt;
  Reply reply;
  bool local = false;  // decided by this client without asking the server
};

// Why a session ended without a normal QUIT.
struct SessionFailure {
  ClientPhase phase = ClientPhase::kBanner;
  Reply reply;                  // the reply that ended it; code 0 for a protocol error
  bool protocol_error = false;  // the server's reply was malformed or out of place
};

// The DATA payload ready for a gather write: `body`, then `terminator`.
struct DataPayload {
  std::string_view body;
  std::string_view terminator;  // ".\r\n", or "\r\n.\r\n" if body lacks a final CRLF
};

// Dot-stuffs `content` (RFC 5321 4.5.2: a line starting with '.' gets one
// more) and picks the terminator. When no line starts with '.', `body` is
// `content` itself and nothing is copied; otherwise the stuffed copy is
// built once in `scratch` (reused across calls to keep its capacity). A
// line start is the start of the content or any octet after an LF, so a
// bare LF cannot smuggle an end of data past a lenient server.
DataPayload PrepareDataPayload(std::string_view content, std::string& scratch);

// True if `content` has an octet >= 0x80 (needs BODY=8BITMIME, RFC 6152).
bool HasEightBitOctet(std::string_view content);

class ClientSession {
 public:
  enum class Action { kNeedInput, kStartTls, kReady, kSendData, kTransactionDone, kClose };

  explicit ClientSession(ClientPolicy policy);

  // Buffers received bytes; ignored once closed.
  void Feed(std::string_view bytes);
  // Handles buffered replies until it needs more input or the driver must act.
  Action Process(std::string& out);

  // After kStartTls: the handshake succeeded. Forgets buffered input and
  // the extensions, and sends EHLO again (RFC 3207 section 4.2).
  void OnTlsStarted(std::string& out);

  // Only while idle (after kReady). Appends the commands to `out`; Process
  // then drives the transaction to kTransactionDone. Refused locally, with
  // no command sent: content larger than the advertised SIZE (552 5.3.4),
  // non-ASCII addresses to a server without SMTPUTF8 (553 5.6.7), addresses
  // with CR, LF or NUL (501 5.1.3 / 5.1.7).
  void StartTransaction(const TransactionRequest& request, std::string& out);

  // After kTransactionDone (or after the connection was lost during a
  // transaction): one result per recipient, in request order.
  std::vector<RecipientResult> TakeResults();

  // Sends QUIT (RFC 5321 4.1.1.10) unless closed; Process then returns
  // kNeedInput until the 221 (or anything) arrives, then kClose.
  void Quit(std::string& out);

  // The phase whose reply is awaited (for the driver's timeout).
  ClientPhase awaiting() const;
  const ServerExtensions& extensions() const { return extensions_; }
  const std::optional<SessionFailure>& failure() const { return failure_; }
  bool tls_active() const { return tls_active_; }
  bool closed() const { return state_ == State::kClosed; }
  bool idle() const { return state_ == State::kReady; }
  // The reply to the most recent EHLO/HELO (the server's name and keywords).
  const Reply& ehlo_reply() const { return ehlo_reply_; }

 private:
  enum class State {
    kBanner,
    kEhlo,
    kHelo,
    kStartTls,
    kTlsHandshake,  // kStartTls returned, waiting for OnTlsStarted
    kReady,
    kTransaction,
    kQuit,
    kClosed,
  };
  // One reply the transaction waits for, in order.
  struct Expect {
    ClientPhase phase;
    size_t recipient;  // for kRcpt
  };
  enum class Next { kContinue, kReturn };

  Next HandleReply(Reply reply, std::string& out, Action& action);
  Next HandleTransactionReply(Reply reply, std::string& out, Action& action);
  // With no reply outstanding: sends the next command(s) of the plan, or
  // ends the transaction.
  Next Advance(std::string& out, Action& action);
  Next FinishTransaction(Action& action);
  void SendEhlo(std::string& out);
  void ParseEhlo(const Reply& reply);
  void AfterGreeting(std::string& out, Action& action);
  // Records why the session ends; inside a transaction the transaction is
  // finished (kTransactionDone) before the session closes.
  void Fail(ClientPhase phase, Reply reply, bool protocol_error);
  // Gives every undecided recipient `reply` for `phase`.
  void DecideRest(ClientPhase phase, const Reply& reply);
  void DropInput(size_t n);

  ClientPolicy policy_;
  State state_ = State::kBanner;
  ReplyParser parser_;
  std::string in_;
  size_t in_pos_ = 0;
  ServerExtensions extensions_;
  Reply ehlo_reply_;
  bool tls_active_ = false;
  std::optional<SessionFailure> failure_;

  // The transaction. The plan is expects_[0, plan_size_): [RSET] MAIL
  // RCPT... DATA, each command's text at commands_[offsets_[i],
  // offsets_[i+1]); the end-of-data reply is appended once DATA got 354.
  std::string commands_;
  std::vector<size_t> offsets_;
  std::vector<Expect> expects_;
  size_t plan_size_ = 0;
  size_t expect_pos_ = 0;  // replies received
  size_t sent_ = 0;        // commands sent (replies due: sent_ - expect_pos_)
  std::vector<RecipientResult> results_;
  std::vector<bool> accepted_;
  size_t accepted_count_ = 0;
  bool pipelined_ = false;
  bool mail_failed_ = false;
  bool concluded_ = false;     // nothing more to send: finish once replies are in
  bool rset_pending_ = false;  // a MAIL may be in effect: RSET before the next one
};

}  // namespace hikyaku::smtp
