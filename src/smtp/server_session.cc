#include "smtp/server_session.h"

#include <algorithm>
#include <utility>

#include "base/check.h"
#include "base/base64.h"

namespace hikyaku::smtp {
namespace {

void Reply(std::string& out, int code, std::string_view enhanced, std::string_view text) {
  out += std::to_string(code);
  out += ' ';
  if (!enhanced.empty()) {
    out += enhanced;
    out += ' ';
  }
  out += text;
  out += "\r\n";
}

// Overwrites a secret before its memory is released.
void Wipe(std::string& s) {
  std::fill(s.begin(), s.end(), '\0');
  s.clear();
}

constexpr size_t kCompactThreshold = 4096;

// One reply line as a ServerPolicy hook must give it: three digits, then
// the end or a space, and no line break (the session adds the CRLF).
bool IsReplyLine(std::string_view reply) {
  if (reply.size() < 3) return false;
  for (size_t i = 0; i < 3; ++i) {
    if (reply[i] < '0' || reply[i] > '9') return false;
  }
  if (reply.size() > 3 && reply[3] != ' ') return false;
  return reply.find_first_of("\r\n") == std::string_view::npos;
}

}  // namespace

ServerSession::ServerSession(ServerPolicy policy) : policy_(std::move(policy)) {}

void ServerSession::Start(std::string& out) {
  if (!policy_.greeting.empty()) {
    const std::string& greeting = policy_.greeting;
    HIKYAKU_CHECK(IsReplyLine(greeting) && (greeting.starts_with("220") || greeting[0] == '4' ||
                                            greeting[0] == '5'));
    out += greeting;
    out += "\r\n";
    // RFC 5321 3.1 allows a 554 greeting followed by waiting for QUIT; a
    // receiver that does not want the client gains nothing by waiting, and
    // 421 closes by definition (3.8).
    if (!greeting.starts_with("220")) {
      phase_ = Phase::kClosed;
      ClearInput();
    }
    return;
  }
  // RFC 5321 4.3.1: the greeting; "ESMTP" tells old clients to try EHLO.
  Reply(out, 220, "", policy_.hostname + " ESMTP hikyaku");
}

void ServerSession::Feed(std::string_view bytes) {
  // While kStartTls is outstanding, anything received was sent in plaintext
  // before the handshake: it must not be executed (RFC 3207 section 4.2).
  if (phase_ == Phase::kClosed || phase_ == Phase::kWaitTls) return;
  in_.append(bytes);
}

void ServerSession::DropInput(size_t n) {
  in_pos_ += n;
  if (in_pos_ == in_.size()) {
    ClearInput();
  } else if (in_pos_ >= kCompactThreshold && in_pos_ * 2 >= in_.size()) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
}

void ServerSession::ClearInput() {
  in_.clear();
  in_pos_ = 0;
}

void ServerSession::ResetTransaction() {
  has_mail_ = false;
  sender_.clear();
  recipients_.clear();
  body_8bit_ = false;
}

void ServerSession::WipeCredentials() {
  Wipe(credentials_.password);
  credentials_.username.clear();
}

ServerSession::Next ServerSession::SendRefusal(const std::string& reply, std::string& out,
                                               Action& action) {
  HIKYAKU_CHECK(IsReplyLine(reply) && (reply[0] == '4' || reply[0] == '5'));
  out += reply;
  out += "\r\n";
  // RFC 5321 3.8: 421 means the server is closing the transmission channel.
  if (reply.starts_with("421")) {
    phase_ = Phase::kClosed;
    ClearInput();
    action = Action::kClose;
    return Next::kReturn;
  }
  return Next::kContinue;
}

void ServerSession::TrimContent() {
  std::string chunk = data_.TakeContent();
  if (header_done_ || chunk.empty()) return;
  size_t old = header_.size();
  size_t room = policy_.kept_header_limit > old ? policy_.kept_header_limit - old : 0;
  header_.append(chunk, 0, std::min(room, chunk.size()));
  // RFC 5322 2.1: the header section ends at the first empty line; a
  // message that starts with one has an empty header section.
  if (header_.starts_with("\r\n")) {
    header_.resize(2);
    header_done_ = true;
    return;
  }
  size_t end = header_.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
  if (end != std::string::npos) {
    header_.resize(end + 4);
    header_done_ = true;
  } else if (header_.size() >= policy_.kept_header_limit) {
    header_done_ = true;
  }
}

bool ServerSession::CountError(std::string& out) {
  ++errors_;
  if (policy_.max_errors == 0 || errors_ < policy_.max_errors) return false;
  Reply(out, 421, "4.7.0", policy_.hostname + " Error: too many errors");
  phase_ = Phase::kClosed;
  ClearInput();
  return true;
}

ServerSession::Action ServerSession::Process(std::string& out) {
  while (true) {
    switch (phase_) {
      case Phase::kClosed:
        return Action::kClose;
      case Phase::kWaitCommit:
      case Phase::kWaitTls:
      case Phase::kWaitAuth:
        return Action::kNeedInput;
      case Phase::kData: {
        auto progress = data_.Consume(std::string_view(in_).substr(in_pos_));
        DropInput(progress.consumed);
        if (!policy_.keep_content) TrimContent();
        if (!progress.done) return Action::kNeedInput;
        Action action = Action::kNeedInput;
        if (HandleDataEnd(out, action) == Next::kReturn) return action;
        break;
      }
      case Phase::kCommand:
      case Phase::kAuthResponse: {
        auto event = lines_.Consume(std::string_view(in_).substr(in_pos_));
        DropInput(event.consumed);
        if (event.status == CommandLineReader::Status::kNeedMore) return Action::kNeedInput;
        if (event.status == CommandLineReader::Status::kTooLong) {
          // An over-long line in an AUTH exchange also ends the exchange.
          phase_ = Phase::kCommand;
          WipeCredentials();
          Reply(out, 500, "5.5.6", "Error: line too long");
          if (CountError(out)) return Action::kClose;
          break;
        }
        Action action = Action::kNeedInput;
        Next next = phase_ == Phase::kAuthResponse ? HandleAuthResponse(lines_.line(), out, action)
                                                   : HandleCommandLine(lines_.line(), out, action);
        if (next == Next::kReturn) return action;
        break;
      }
    }
  }
}

ServerSession::Next ServerSession::HandleCommandLine(std::string_view line, std::string& out,
                                                     Action& action) {
  auto command = ParseCommand(line);
  if (command) return HandleCommand(*command, out, action);
  const CommandError& error = command.error();
  switch (error.kind) {
    case CommandErrorKind::kUnknownCommand:
      Reply(out, 500, "5.5.1", "Error: command not recognized");
      break;
    case CommandErrorKind::kBadEncoding:
      Reply(out, 500, "5.5.2", "Error: invalid character in command");
      break;
    case CommandErrorKind::kSyntax:
    case CommandErrorKind::kBadParameterValue:
      Reply(out, 501, "5.5.4", error.detail);
      break;
    case CommandErrorKind::kBadSenderAddress:
      Reply(out, 501, "5.1.7", error.detail);
      break;
    case CommandErrorKind::kBadRecipientAddress:
      Reply(out, 501, "5.1.3", error.detail);
      break;
    case CommandErrorKind::kUnknownParameter:
      Reply(out, 555, "5.5.4", error.detail);
      break;
  }
  if (CountError(out)) {
    action = Action::kClose;
    return Next::kReturn;
  }
  return Next::kContinue;
}

void ServerSession::AppendEhloReply(std::string& out) const {
  std::vector<std::string> lines = {policy_.hostname, "PIPELINING",
                                    "SIZE " + std::to_string(policy_.max_message_size), "8BITMIME",
                                    "ENHANCEDSTATUSCODES"};
  if (policy_.tls_available && !tls_active_) lines.push_back("STARTTLS");
  // RFC 4954 section 4 and RFC 3207 section 6: plaintext passwords only
  // inside TLS, so AUTH is not even offered before it.
  if (policy_.auth_available && tls_active_ && !authenticated_) lines.push_back("AUTH PLAIN LOGIN");
  for (size_t i = 0; i < lines.size(); ++i) {
    out += "250";
    out += i + 1 == lines.size() ? ' ' : '-';
    out += lines[i];
    out += "\r\n";
  }
}

ServerSession::Next ServerSession::HandleCommand(const Command& command, std::string& out,
                                                 Action& action) {
  auto error = [&](int code, std::string_view enhanced, std::string_view text) {
    Reply(out, code, enhanced, text);
    if (CountError(out)) {
      action = Action::kClose;
      return Next::kReturn;
    }
    return Next::kContinue;
  };

  switch (command.verb) {
    case Verb::kHelo:
    case Verb::kEhlo:
      // RFC 5321 4.1.4: a new HELO/EHLO resets any transaction.
      ResetTransaction();
      greeted_ = true;
      helo_ = command.argument;
      if (command.verb == Verb::kHelo) {
        Reply(out, 250, "", policy_.hostname);
      } else {
        AppendEhloReply(out);
      }
      return Next::kContinue;

    case Verb::kMail:
      if (!greeted_) return error(503, "5.5.1", "Error: send HELO/EHLO first");
      if (has_mail_) return error(503, "5.5.1", "Error: nested MAIL command");
      // RFC 1870 section 6.1: a declared size over the limit fails MAIL.
      if (command.size && policy_.max_message_size != 0 &&
          *command.size > policy_.max_message_size) {
        Reply(out, 552, "5.3.4", "Message size exceeds fixed maximum message size");
        return Next::kContinue;
      }
      if (policy_.mail_check) {
        if (auto refusal = policy_.mail_check(command.path)) return SendRefusal(*refusal, out, action);
      }
      has_mail_ = true;
      sender_ = command.path;
      body_8bit_ = command.body == BodyType::k8BitMime;
      Reply(out, 250, "2.1.0", "Ok");
      return Next::kContinue;

    case Verb::kRcpt:
      if (!has_mail_) return error(503, "5.5.1", "Error: need MAIL command");
      // No open relay: answered per recipient rather than at MAIL so that
      // pipelining clients get a precise reply (same as Postfix's
      // reject_unauth_destination with nothing local).
      if (!policy_.relay_allowed && !authenticated_) {
        return error(554, "5.7.1", "<" + command.path + ">: Relay access denied");
      }
      // RFC 5321 4.5.3.1.10: too many recipients is 452, and the client
      // sends the rest in another transaction.
      if (recipients_.size() >= policy_.max_recipients) {
        Reply(out, 452, "4.5.3", "Error: too many recipients");
        return Next::kContinue;
      }
      if (policy_.rcpt_check) {
        if (auto refusal = policy_.rcpt_check(command.path)) return SendRefusal(*refusal, out, action);
      }
      recipients_.push_back(command.path);
      Reply(out, 250, "2.1.5", "Ok");
      return Next::kContinue;

    case Verb::kData:
      if (!has_mail_) return error(503, "5.5.1", "Error: need MAIL command");
      // RFC 2920 section 3.1 / RFC 5321 3.3: all RCPTs failed.
      if (recipients_.empty()) {
        Reply(out, 554, "5.5.1", "Error: no valid recipients");
        return Next::kContinue;
      }
      Reply(out, 354, "", "End data with <CR><LF>.<CR><LF>");
      data_.Reset(policy_.max_message_size);
      header_.clear();
      header_done_ = false;
      phase_ = Phase::kData;
      return Next::kContinue;

    case Verb::kRset:
      ResetTransaction();
      Reply(out, 250, "2.0.0", "Ok");
      return Next::kContinue;

    case Verb::kNoop:
      Reply(out, 250, "2.0.0", "Ok");
      return Next::kContinue;

    case Verb::kHelp:
      Reply(out, 214, "2.0.0",
            "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
      return Next::kContinue;

    case Verb::kVrfy:
      // RFC 5321 3.5.3: 252 when the server will not verify but will try.
      Reply(out, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
      return Next::kContinue;

    case Verb::kQuit:
      Reply(out, 221, "2.0.0", "Bye");
      phase_ = Phase::kClosed;
      ClearInput();
      action = Action::kClose;
      return Next::kReturn;

    case Verb::kStartTls:
      if (tls_active_) return error(503, "5.5.1", "Error: TLS already active");
      if (!policy_.tls_available) return error(502, "5.5.1", "Error: command not implemented");
      if (has_mail_) return error(503, "5.5.1", "Error: MAIL transaction in progress");
      Reply(out, 220, "2.0.0", "Ready to start TLS");
      // RFC 3207 section 4.2 / CVE-2011-0411: bytes pipelined behind
      // STARTTLS arrived in plaintext and must not be run after the
      // handshake as if they had been protected.
      ClearInput();
      lines_.Reset();
      phase_ = Phase::kWaitTls;
      action = Action::kStartTls;
      return Next::kReturn;

    case Verb::kAuth:
      return HandleAuth(command, out, action);
  }
  return Next::kContinue;
}

ServerSession::Next ServerSession::HandleAuth(const Command& command, std::string& out,
                                              Action& action) {
  auto error = [&](int code, std::string_view enhanced, std::string_view text) {
    Reply(out, code, enhanced, text);
    if (CountError(out)) {
      action = Action::kClose;
      return Next::kReturn;
    }
    return Next::kContinue;
  };
  if (!policy_.auth_available) return error(502, "5.5.1", "Error: authentication not enabled");
  // RFC 4954 section 6: 538 when the mechanism needs an encrypted channel.
  if (!tls_active_) {
    return error(538, "5.7.11", "Encryption required for requested authentication mechanism");
  }
  if (!greeted_) return error(503, "5.5.1", "Error: send EHLO first");
  // RFC 4954 section 4: no AUTH after a successful one, nor inside a transaction.
  if (authenticated_) return error(503, "5.5.1", "Error: already authenticated");
  if (has_mail_) return error(503, "5.5.1", "Error: MAIL transaction in progress");

  const std::optional<std::string>& initial = command.initial_response;
  if (command.argument == "PLAIN") {
    if (!initial) {
      out += "334 \r\n";  // RFC 4616: empty challenge
      auth_step_ = AuthStep::kPlain;
      phase_ = Phase::kAuthResponse;
      return Next::kContinue;
    }
    std::string decoded;
    if (*initial != "=") {  // RFC 4954 section 4: "=" is an empty response
      auto d = Base64Decode(*initial);
      if (!d) return error(501, "5.5.2", "Error: invalid base64 data");
      decoded = std::move(*d);
    }
    return FinishPlain(decoded, out, action);
  }
  if (command.argument == "LOGIN") {
    // The LOGIN mechanism (draft-murchison-sasl-login): prompts "Username:"
    // and "Password:", base64-encoded.
    if (initial) {
      std::string user;
      if (*initial != "=") {
        auto d = Base64Decode(*initial);
        if (!d) return error(501, "5.5.2", "Error: invalid base64 data");
        user = std::move(*d);
      }
      credentials_.username = std::move(user);
      out += "334 " + Base64Encode("Password:") + "\r\n";
      auth_step_ = AuthStep::kLoginPassword;
    } else {
      out += "334 " + Base64Encode("Username:") + "\r\n";
      auth_step_ = AuthStep::kLoginUser;
    }
    phase_ = Phase::kAuthResponse;
    return Next::kContinue;
  }
  return error(504, "5.5.4", "Error: unsupported authentication mechanism");
}

ServerSession::Next ServerSession::FinishPlain(std::string_view decoded, std::string& out,
                                               Action& action) {
  // RFC 4616 section 2: [authzid] NUL authcid NUL passwd
  size_t first = decoded.find('\0');
  size_t second = first == std::string_view::npos ? first : decoded.find('\0', first + 1);
  if (second == std::string_view::npos ||
      decoded.find('\0', second + 1) != std::string_view::npos || second == first + 1) {
    Reply(out, 501, "5.5.2", "Error: malformed authentication data");
    if (CountError(out)) {
      action = Action::kClose;
      return Next::kReturn;
    }
    return Next::kContinue;
  }
  std::string_view authzid = decoded.substr(0, first);
  std::string_view authcid = decoded.substr(first + 1, second - first - 1);
  if (!authzid.empty() && authzid != authcid) {
    // Acting as another identity is not supported.
    Reply(out, 535, "5.7.8", "Authentication credentials invalid");
    if (CountError(out)) {
      action = Action::kClose;
      return Next::kReturn;
    }
    return Next::kContinue;
  }
  credentials_.username = std::string(authcid);
  credentials_.password = std::string(decoded.substr(second + 1));
  phase_ = Phase::kWaitAuth;
  action = Action::kCheckAuth;
  return Next::kReturn;
}

ServerSession::Next ServerSession::HandleAuthResponse(std::string_view line, std::string& out,
                                                      Action& action) {
  phase_ = Phase::kCommand;
  auto fail = [&](int code, std::string_view enhanced, std::string_view text, bool count) {
    WipeCredentials();
    Reply(out, code, enhanced, text);
    if (count && CountError(out)) {
      action = Action::kClose;
      return Next::kReturn;
    }
    return Next::kContinue;
  };
  // RFC 4954 section 4: "*" cancels the exchange with 501.
  if (line == "*") return fail(501, "5.0.0", "Authentication cancelled", false);
  auto decoded = Base64Decode(line);
  if (!decoded) return fail(501, "5.5.2", "Error: invalid base64 data", true);
  std::string value = std::move(*decoded);
  switch (auth_step_) {
    case AuthStep::kPlain: {
      Next next = FinishPlain(value, out, action);
      Wipe(value);
      return next;
    }
    case AuthStep::kLoginUser:
      credentials_.username = std::move(value);
      out += "334 " + Base64Encode("Password:") + "\r\n";
      auth_step_ = AuthStep::kLoginPassword;
      phase_ = Phase::kAuthResponse;
      return Next::kContinue;
    case AuthStep::kLoginPassword:
      credentials_.password = std::move(value);
      phase_ = Phase::kWaitAuth;
      action = Action::kCheckAuth;
      return Next::kReturn;
  }
  return Next::kContinue;
}

ServerSession::Next ServerSession::HandleDataEnd(std::string& out, Action& action) {
  phase_ = Phase::kCommand;
  switch (data_.verdict()) {
    case DataReader::Verdict::kTooBig:
      // RFC 1870 section 6.2 / RFC 3463: 552 5.3.4 after the final dot.
      data_.TakeContent();
      ResetTransaction();
      Reply(out, 552, "5.3.4", "Error: message size exceeds fixed maximum message size");
      return Next::kContinue;
    case DataReader::Verdict::kLineTooLong:
      // RFC 5322 2.1.1: lines MUST be no more than 998 characters. 5.6.0:
      // a media (content) error.
      data_.TakeContent();
      ResetTransaction();
      Reply(out, 554, "5.6.0", "Error: message has lines longer than 998 characters");
      return Next::kContinue;
    case DataReader::Verdict::kOk:
      break;
  }
  message_.sender = std::move(sender_);
  message_.recipients = std::move(recipients_);
  message_.content = policy_.keep_content ? data_.TakeContent() : std::move(header_);
  header_.clear();
  message_.size = data_.size();
  if (policy_.data_check) {
    auto refusal = policy_.data_check(message_.sender, message_.recipients, message_.content);
    if (refusal) {
      message_ = Message{};
      ResetTransaction();
      return SendRefusal(*refusal, out, action);
    }
  }
  message_.eight_bit = body_8bit_ || data_.eight_bit();
  message_.helo = helo_;
  message_.client_address = policy_.client_address;
  message_.auth_user = authenticated_ ? auth_user_ : std::string();
  message_.tls = tls_active_;
  message_ready_ = true;
  ResetTransaction();
  phase_ = Phase::kWaitCommit;
  action = Action::kCommitMessage;
  return Next::kReturn;
}

ServerSession::Message ServerSession::TakeMessage() {
  HIKYAKU_CHECK(phase_ == Phase::kWaitCommit && message_ready_);
  message_ready_ = false;
  Message m = std::move(message_);
  message_ = Message{};
  return m;
}

void ServerSession::OnCommitted(bool ok, bool no_space, std::string_view queue_id,
                                std::string& out) {
  HIKYAKU_CHECK(phase_ == Phase::kWaitCommit);
  message_ready_ = false;
  message_ = Message{};
  phase_ = Phase::kCommand;
  if (ok) {
    Reply(out, 250, "2.0.0", "Ok: queued as " + std::string(queue_id));
  } else if (no_space) {
    Reply(out, 452, "4.3.1", "Insufficient system storage");
  } else {
    Reply(out, 451, "4.3.0", "Error: local error in processing");
  }
}

void ServerSession::OnRefused(std::string_view enhanced, std::string_view text, std::string& out) {
  HIKYAKU_CHECK(phase_ == Phase::kWaitCommit);
  message_ready_ = false;
  message_ = Message{};
  phase_ = Phase::kCommand;
  std::string line(text);
  for (char& c : line)
    if (c == '\r' || c == '\n') c = ' ';
  Reply(out, 550, enhanced, line);
}

void ServerSession::OnTlsStarted() {
  HIKYAKU_CHECK(phase_ == Phase::kWaitTls);
  // RFC 3207 section 4.2: discard all knowledge obtained from the client
  // before TLS; the client must send EHLO again.
  tls_active_ = true;
  greeted_ = false;
  helo_.clear();
  ResetTransaction();
  ClearInput();
  lines_.Reset();
  phase_ = Phase::kCommand;
}

void ServerSession::OnAuthResult(bool ok, std::string& out) {
  HIKYAKU_CHECK(phase_ == Phase::kWaitAuth);
  phase_ = Phase::kCommand;
  if (ok) {
    authenticated_ = true;
    auth_user_ = credentials_.username;
    WipeCredentials();
    Reply(out, 235, "2.7.0", "Authentication successful");
    return;
  }
  WipeCredentials();
  Reply(out, 535, "5.7.8", "Authentication credentials invalid");
  CountError(out);
}

}  // namespace hikyaku::smtp
