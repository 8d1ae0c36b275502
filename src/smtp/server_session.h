// ServerSession: the ESMTP server state machine (RFC 5321 with PIPELINING
// RFC 2920, SIZE RFC 1870, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES RFC 2034,
// STARTTLS RFC 3207, AUTH PLAIN/LOGIN RFC 4954/4616). It does no I/O: bytes
// go in, reply bytes and actions come out; a driver (the asio listener in
// inject/) moves bytes and carries out the actions.
//
// Driver contract:
//   session.Start(out);                         // 220 greeting
//   loop:
//     write `out` to the socket (replies are only ever appended, in order)
//     switch (session.Process(out)):
//       kNeedInput:     read some bytes, session.Feed(bytes)
//       kCommitMessage: m = session.TakeMessage(); make it durable;
//                       session.OnCommitted(ok, no_space, queue_id, out), or
//                       session.OnRefused(enhanced, text, out)
//       kStartTls:      write `out` (the 220) in plaintext, do the TLS
//                       handshake, then session.OnTlsStarted(); from now on
//                       Feed only decrypted bytes. On handshake failure close.
//       kCheckAuth:     check session.AuthCredentials(); session.OnAuthResult(ok, out)
//       kClose:         write `out`, then close the connection
// Each action is returned once. While it is outstanding (before the
// matching On*() call) Process consumes nothing and returns kNeedInput;
// bytes fed meanwhile are kept in order, except while kStartTls is
// outstanding: those are plaintext sent before the handshake and are
// discarded (RFC 3207 section 4.2, CVE-2011-0411), as is anything that was
// buffered behind the STARTTLS command. Once closed, Process keeps
// returning kClose. buffered_input() lets the driver stop reading while a
// commit is pending and a pipelining client keeps sending.
//
// Replies carry RFC 3463 enhanced status codes, except the greeting, the
// HELO/EHLO replies and the 354/334 intermediates (RFC 2034 section 3).
//
// Thread-safety: none; one session belongs to one connection's strand.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/command_parser.h"
#include "smtp/data_reader.h"

namespace hikyaku::smtp {

struct ServerPolicy {
  std::string hostname;            // in the greeting and the EHLO reply
  uint64_t max_message_size = 0;   // octets, advertised with SIZE; 0 = no limit
  uint32_t max_recipients = 1000;  // per message; more get 452 4.5.3
  uint32_t max_errors = 10;        // after this many client errors: 421 and close; 0 = never
  bool relay_allowed = false;      // the client address is in relay_networks
  bool tls_available = false;      // a certificate is configured: STARTTLS until TLS is on
  bool auth_available = false;     // users are configured: AUTH, but only once TLS is on
  std::string client_address;      // for the Message, e.g. "192.0.2.1"

  // --- Driver hooks (all optional; the defaults keep the behaviour above) ---
  //
  // A check returns std::nullopt to let the session go on as usual, or one
  // complete reply line without CRLF, e.g. "550 5.1.1 <x>: User unknown",
  // which is sent instead of the session's own acceptance. The code must be
  // 4xx or 5xx (anything else is a driver bug and aborts). A refusal starting
  // with "421" also closes the session after the reply (RFC 5321 3.8).
  // Refusals do not count towards max_errors. The checks run on the
  // session's thread, synchronously, and must not call back into it.
  using AddressCheck = std::function<std::optional<std::string>(std::string_view address)>;
  // With the reverse-path (empty for <>), once MAIL passed the syntax,
  // sequence and SIZE checks. A refused MAIL opens no transaction.
  AddressCheck mail_check;
  // With the forward-path, once RCPT passed the relay and max_recipients
  // checks. A refused recipient is not added to the transaction.
  AddressCheck rcpt_check;
  // At the end of DATA for a message that passed the size and line checks,
  // with the sender, the accepted recipients and the content (only the
  // header section when keep_content is false). A refusal answers the DATA
  // instead of kCommitMessage; the transaction is reset either way.
  using DataCheck = std::function<std::optional<std::string>(
      std::string_view sender, const std::vector<std::string>& recipients, std::string_view content)>;
  DataCheck data_check;
  // Replaces the "220 <hostname> ESMTP hikyaku" greeting when not empty:
  // one reply line without CRLF. Unless its code is 220, the session
  // closes right after it (e.g. "421 4.7.0 Too many connections", or 554
  // for a refused client, RFC 5321 3.1), and Process returns kClose.
  std::string greeting;
  // When false the message content is not kept: Message::content holds only
  // the header section (up to and including the empty line that ends it),
  // at most kept_header_limit octets of it, and Message::size still counts
  // every octet. For receivers that discard mail (hikyaku sink) and want
  // the header fields only; saves copying and memory for large bodies.
  bool keep_content = true;
  size_t kept_header_limit = 16384;
};

class ServerSession {
 public:
  enum class Action { kNeedInput, kCommitMessage, kStartTls, kCheckAuth, kClose };

  // A message accepted with DATA, to be made durable before OnCommitted.
  struct Message {
    std::string sender;                   // empty for the null reverse-path <>
    std::vector<std::string> recipients;  // as accepted, in order, at least one
    std::string content;                  // unstuffed, CRLF line ends (see keep_content)
    uint64_t size = 0;                    // octets of the whole content, even when not kept
    bool eight_bit = false;               // BODY=8BITMIME or an octet >= 0x80 seen
    std::string helo;                     // the HELO/EHLO argument
    std::string client_address;           // from the policy
    std::string auth_user;                // empty unless authenticated
    bool tls = false;                     // received over TLS
  };

  struct Credentials {
    std::string username;  // RFC 4616 authcid / LOGIN user name
    std::string password;
  };

  explicit ServerSession(ServerPolicy policy);

  // Appends the 220 greeting.
  void Start(std::string& out);
  // Buffers received bytes; ignored once closed.
  void Feed(std::string_view bytes);
  // Handles buffered input until it needs more input or the driver must act.
  Action Process(std::string& out);

  // After kCommitMessage, exactly once.
  Message TakeMessage();
  // Answers the DATA: 250 2.0.0 Ok: queued as <id> | 452 4.3.1 (no_space) |
  // 451 4.3.0 (other failures); the transaction is reset either way.
  void OnCommitted(bool ok, bool no_space, std::string_view queue_id, std::string& out);
  // Answers the DATA instead with 550 <enhanced> <text> (a policy refusal:
  // the message will never be accepted as it is); the transaction is reset.
  // `text` is one line (CR and LF are replaced by spaces).
  void OnRefused(std::string_view enhanced, std::string_view text, std::string& out);

  // After kStartTls: the handshake succeeded. Forgets HELO/EHLO, any
  // transaction and any buffered input (RFC 3207 section 4.2).
  void OnTlsStarted();

  // After kCheckAuth.
  const Credentials& AuthCredentials() const { return credentials_; }
  // 235 2.7.0 or 535 5.7.8 (a failure counts towards max_errors). The
  // password is wiped either way.
  void OnAuthResult(bool ok, std::string& out);

  bool tls_active() const { return tls_active_; }
  bool authenticated() const { return authenticated_; }
  bool closed() const { return phase_ == Phase::kClosed; }
  size_t buffered_input() const { return in_.size() - in_pos_; }
  // True while a message body is being received (the driver applies the DATA timeout).
  bool in_data() const { return phase_ == Phase::kData; }

 private:
  enum class Phase {
    kCommand,       // reading command lines
    kAuthResponse,  // reading a base64 line of an AUTH exchange
    kData,          // reading the message body
    kWaitCommit,    // kCommitMessage outstanding
    kWaitTls,       // kStartTls outstanding
    kWaitAuth,      // kCheckAuth outstanding
    kClosed,
  };
  enum class AuthStep { kPlain, kLoginUser, kLoginPassword };
  // What handling one line asks of Process: go on, or return an action.
  enum class Next { kContinue, kReturn };

  Next HandleCommandLine(std::string_view line, std::string& out, Action& action);
  Next HandleCommand(const Command& command, std::string& out, Action& action);
  Next HandleAuth(const Command& command, std::string& out, Action& action);
  Next HandleAuthResponse(std::string_view line, std::string& out, Action& action);
  Next FinishPlain(std::string_view decoded, std::string& out, Action& action);
  Next HandleDataEnd(std::string& out, Action& action);
  void AppendEhloReply(std::string& out) const;
  // Counts a client error; at the limit appends 421 and closes. Returns true
  // if the session closed.
  bool CountError(std::string& out);
  void ResetTransaction();
  // Appends `reply` (from a policy check) and closes on 421. Returns kReturn if closed.
  Next SendRefusal(const std::string& reply, std::string& out, Action& action);
  // keep_content == false: moves what the data reader stored into header_
  // while the header section lasts, and drops the rest.
  void TrimContent();
  void DropInput(size_t n);
  void ClearInput();
  void WipeCredentials();

  ServerPolicy policy_;
  Phase phase_ = Phase::kCommand;
  CommandLineReader lines_;
  DataReader data_;
  std::string in_;
  size_t in_pos_ = 0;

  bool greeted_ = false;  // HELO or EHLO seen (since the last STARTTLS)
  std::string helo_;
  bool tls_active_ = false;
  bool authenticated_ = false;
  std::string auth_user_;
  uint32_t errors_ = 0;

  bool has_mail_ = false;
  std::string sender_;
  std::vector<std::string> recipients_;
  bool body_8bit_ = false;
  std::string header_;        // keep_content == false: the header section kept so far
  bool header_done_ = false;  // header_ is complete (empty line seen or limit hit)

  AuthStep auth_step_ = AuthStep::kPlain;
  Credentials credentials_;
  Message message_;
  bool message_ready_ = false;
};

}  // namespace hikyaku::smtp
