#include "smtp/client_session.h"

#include <cstring>
#include <limits>
#include <utility>

#include "base/check.h"

namespace hikyaku::smtp {
namespace {

constexpr size_t kCompactThreshold = 4096;

bool HasLineBreakOrNul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

bool IsAscii(std::string_view s) { return !HasEightBitOctet(s); }

Reply LocalReply(int code, std::string_view enhanced, std::string text) {
  Reply r;
  r.code = code;
  r.enhanced = std::string(enhanced);
  r.text = std::move(text);
  return r;
}

char Upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

bool KeywordIs(std::string_view keyword, std::string_view expected) {
  if (keyword.size() != expected.size()) return false;
  for (size_t i = 0; i < keyword.size(); ++i)
    if (Upper(keyword[i]) != expected[i]) return false;
  return true;
}

// RFC 1870 section 4: "SIZE" [SP number]; a missing or unreadable number
// means no fixed limit is announced (0).
uint64_t ParseSizeParameter(std::string_view param) {
  while (!param.empty() && param.front() == ' ') param.remove_prefix(1);
  uint64_t value = 0;
  if (param.empty()) return 0;
  for (char c : param) {
    if (c < '0' || c > '9') break;
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
      return std::numeric_limits<uint64_t>::max();
    }
    value = value * 10 + digit;
  }
  return value;
}

}  // namespace

std::string_view ToString(ClientPhase phase) {
  switch (phase) {
    case ClientPhase::kBanner:
      return "banner";
    case ClientPhase::kEhlo:
      return "ehlo";
    case ClientPhase::kStartTls:
      return "starttls";
    case ClientPhase::kMail:
      return "mail";
    case ClientPhase::kRcpt:
      return "rcpt";
    case ClientPhase::kData:
      return "data";
    case ClientPhase::kDataEnd:
      return "data_end";
    case ClientPhase::kRset:
      return "rset";
    case ClientPhase::kQuit:
      return "quit";
  }
  return "unknown";
}

bool HasEightBitOctet(std::string_view content) {
  const char* p = content.data();
  size_t n = content.size();
  size_t i = 0;
  // Eight octets at a time: the hot path scans every outgoing message.
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, p + i, 8);
    if (word & 0x8080808080808080ull) return true;
  }
  for (; i < n; ++i)
    if (static_cast<unsigned char>(p[i]) & 0x80) return true;
  return false;
}

DataPayload PrepareDataPayload(std::string_view content, std::string& scratch) {
  DataPayload payload;
  // RFC 5321 4.1.1.4: the data ends with CRLF "." CRLF; if the content does
  // not end with CRLF, one is added first.
  payload.terminator = (content.empty() || content.ends_with("\r\n"))
                           ? std::string_view(".\r\n")
                           : std::string_view("\r\n.\r\n");
  bool leading_dot = !content.empty() && content.front() == '.';
  size_t dot = content.find("\n.");
  if (!leading_dot && dot == std::string_view::npos) {
    payload.body = content;  // nothing to stuff: no copy at all
    return payload;
  }
  // RFC 5321 4.5.2: every line starting with "." gets one more.
  scratch.clear();
  scratch.reserve(content.size() + content.size() / 32 + 16);
  if (leading_dot) scratch += '.';
  size_t pos = 0;
  while (dot != std::string_view::npos) {
    scratch.append(content.substr(pos, dot + 1 - pos));  // up to and including the LF
    scratch += '.';
    pos = dot + 1;  // the original dot is copied with the next segment
    dot = content.find("\n.", pos);
  }
  scratch.append(content.substr(pos));
  payload.body = scratch;
  return payload;
}

ClientSession::ClientSession(ClientPolicy policy)
    : policy_(std::move(policy)), parser_(policy_.max_reply_line, policy_.max_reply_lines) {}

void ClientSession::Feed(std::string_view bytes) {
  if (state_ == State::kClosed) return;
  in_.append(bytes);
}

void ClientSession::DropInput(size_t n) {
  in_pos_ += n;
  if (in_pos_ == in_.size()) {
    in_.clear();
    in_pos_ = 0;
  } else if (in_pos_ >= kCompactThreshold && in_pos_ * 2 >= in_.size()) {
    in_.erase(0, in_pos_);
    in_pos_ = 0;
  }
}

ClientPhase ClientSession::awaiting() const {
  switch (state_) {
    case State::kBanner:
      return ClientPhase::kBanner;
    case State::kEhlo:
    case State::kHelo:
    case State::kTlsHandshake:
      return ClientPhase::kEhlo;
    case State::kStartTls:
      return ClientPhase::kStartTls;
    case State::kTransaction:
      return expect_pos_ < expects_.size() ? expects_[expect_pos_].phase : ClientPhase::kMail;
    case State::kQuit:
    case State::kClosed:
      return ClientPhase::kQuit;
    case State::kReady:
      break;
  }
  return ClientPhase::kMail;
}

void ClientSession::Fail(ClientPhase phase, Reply reply, bool protocol_error) {
  if (!failure_) failure_ = SessionFailure{phase, std::move(reply), protocol_error};
  if (state_ == State::kTransaction) {
    concluded_ = true;  // Process finishes the transaction first, then closes
  } else {
    state_ = State::kClosed;
  }
}

void ClientSession::SendEhlo(std::string& out) {
  out += "EHLO ";
  out += policy_.helo_name;
  out += "\r\n";
  state_ = State::kEhlo;
}

ClientSession::Action ClientSession::Process(std::string& out) {
  while (true) {
    switch (state_) {
      case State::kClosed:
        return Action::kClose;
      case State::kReady:
        return Action::kReady;
      case State::kTlsHandshake:
        return Action::kStartTls;
      case State::kTransaction:
        if (failure_ || expect_pos_ == sent_) {
          Action action = Action::kNeedInput;
          if (Advance(out, action) == Next::kReturn) return action;
        }
        break;
      default:
        break;
    }
    auto event = parser_.Consume(std::string_view(in_).substr(in_pos_));
    DropInput(event.consumed);
    if (event.status == ReplyParser::Status::kNeedMore) return Action::kNeedInput;
    if (event.status == ReplyParser::Status::kError) {
      if (state_ == State::kQuit) {
        state_ = State::kClosed;
        continue;
      }
      // A malformed reply leaves the stream out of step: nothing after it
      // can be trusted, so the session ends (RFC 5321 4.2: replies are
      // the only way to learn the outcome of a command).
      Fail(awaiting(), LocalReply(0, "", "malformed reply: " + parser_.error()), true);
      continue;
    }
    Action action = Action::kNeedInput;
    if (HandleReply(parser_.TakeReply(), out, action) == Next::kReturn) return action;
  }
}

ClientSession::Next ClientSession::HandleReply(Reply reply, std::string& out, Action& action) {
  switch (state_) {
    case State::kBanner:
      // RFC 5321 3.1 / 4.3.2: the greeting is 220; 554 (or a 4yz) means the
      // server will not talk to us. After a 554 the client sends QUIT.
      if (reply.code == 220) {
        SendEhlo(out);
        return Next::kContinue;
      }
      {
        bool refused = reply.Class() == 4 || reply.Class() == 5;
        bool quit = reply.Class() == 5;
        Fail(ClientPhase::kBanner, std::move(reply), !refused);
        if (quit) out += "QUIT\r\n";
      }
      action = Action::kClose;
      return Next::kReturn;

    case State::kEhlo:
      if (reply.Positive()) {
        ParseEhlo(reply);
        ehlo_reply_ = std::move(reply);
        AfterGreeting(out, action);
        return action == Action::kReady ? Next::kReturn : Next::kContinue;
      }
      // RFC 5321 3.2 / 4.1.4: a server that does not know EHLO answers 5yz
      // (500, 502, 550...): fall back to HELO. 421 and other 4yz are not
      // "unknown command" but "not now": give up on this host.
      if (reply.Class() == 5) {
        out += "HELO ";
        out += policy_.helo_name;
        out += "\r\n";
        state_ = State::kHelo;
        return Next::kContinue;
      }
      {
        bool protocol_error = reply.Class() != 4;
        Fail(ClientPhase::kEhlo, std::move(reply), protocol_error);
      }
      action = Action::kClose;
      return Next::kReturn;

    case State::kHelo:
      if (reply.Positive()) {
        extensions_ = ServerExtensions{};
        ehlo_reply_ = std::move(reply);
        state_ = State::kReady;
        action = Action::kReady;
        return Next::kReturn;
      }
      {
        bool protocol_error = reply.Class() != 4 && reply.Class() != 5;
        Fail(ClientPhase::kEhlo, std::move(reply), protocol_error);
      }
      action = Action::kClose;
      return Next::kReturn;

    case State::kStartTls:
      if (reply.code == 220) {
        // RFC 3207 section 4.2 (and the 2011 STARTTLS injection bugs): any
        // bytes the server sent after the 220 arrived in plaintext and must
        // not be read as replies after the handshake.
        in_.clear();
        in_pos_ = 0;
        parser_.Reset();
        state_ = State::kTlsHandshake;
        action = Action::kStartTls;
        return Next::kReturn;
      }
      if (reply.code == 421) {
        Fail(ClientPhase::kStartTls, std::move(reply), false);
        action = Action::kClose;
        return Next::kReturn;
      }
      // 454 TLS not available, 5yz: opportunistic TLS goes on in plaintext
      // (RFC 3207 section 4.1 leaves the choice to the client).
      state_ = State::kReady;
      action = Action::kReady;
      return Next::kReturn;

    case State::kTransaction:
      return HandleTransactionReply(std::move(reply), out, action);

    case State::kQuit:
      state_ = State::kClosed;
      action = Action::kClose;
      return Next::kReturn;

    case State::kTlsHandshake:
    case State::kReady:
    case State::kClosed:
      break;
  }
  return Next::kContinue;
}

void ClientSession::ParseEhlo(const Reply& reply) {
  // RFC 5321 4.1.1.1: the first line is the server's name and greeting,
  // each further line one keyword with optional parameters.
  extensions_ = ServerExtensions{};
  extensions_.esmtp = true;
  std::string_view text = reply.text;
  size_t nl = text.find('\n');
  if (nl == std::string_view::npos) return;
  text.remove_prefix(nl + 1);
  while (true) {
    nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    size_t space = line.find(' ');
    std::string_view keyword = line.substr(0, space);
    std::string_view param =
        space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
    if (KeywordIs(keyword, "PIPELINING")) {
      extensions_.pipelining = true;
    } else if (KeywordIs(keyword, "8BITMIME")) {
      extensions_.eight_bit_mime = true;
    } else if (KeywordIs(keyword, "STARTTLS")) {
      extensions_.starttls = true;
    } else if (KeywordIs(keyword, "ENHANCEDSTATUSCODES")) {
      extensions_.enhanced_status_codes = true;
    } else if (KeywordIs(keyword, "SMTPUTF8")) {
      extensions_.smtputf8 = true;
    } else if (KeywordIs(keyword, "SIZE")) {
      extensions_.size = ParseSizeParameter(param);
    }
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

void ClientSession::AfterGreeting(std::string& out, Action& action) {
  if (policy_.starttls && extensions_.starttls && !tls_active_) {
    out += "STARTTLS\r\n";
    state_ = State::kStartTls;
    action = Action::kNeedInput;
    return;
  }
  state_ = State::kReady;
  action = Action::kReady;
}

void ClientSession::OnTlsStarted(std::string& out) {
  HIKYAKU_CHECK(state_ == State::kTlsHandshake);
  tls_active_ = true;
  in_.clear();
  in_pos_ = 0;
  parser_.Reset();
  // RFC 3207 section 4.2: the client MUST discard what it knew of the
  // server and SHOULD send EHLO again.
  extensions_ = ServerExtensions{};
  ehlo_reply_ = Reply{};
  SendEhlo(out);
}

void ClientSession::Quit(std::string& out) {
  if (state_ == State::kClosed) return;
  out += "QUIT\r\n";
  state_ = State::kQuit;
}

std::vector<RecipientResult> ClientSession::TakeResults() { return std::move(results_); }

void ClientSession::StartTransaction(const TransactionRequest& request, std::string& out) {
  HIKYAKU_CHECK(state_ == State::kReady);
  HIKYAKU_CHECK(!request.recipients.empty());
  const size_t n = request.recipients.size();
  results_.assign(n, RecipientResult{});
  accepted_.assign(n, false);
  accepted_count_ = 0;
  expects_.clear();
  offsets_.clear();
  commands_.clear();
  expect_pos_ = 0;
  sent_ = 0;
  mail_failed_ = false;
  concluded_ = false;
  pipelined_ = extensions_.pipelining;
  state_ = State::kTransaction;

  auto refuse_all = [&](Reply reply) {
    for (auto& r : results_) r = RecipientResult{ClientPhase::kMail, reply, true};
    concluded_ = true;
  };

  // Local refusals: nothing is sent that the server would have to refuse,
  // and nothing is sent that could break the command stream.
  if (HasLineBreakOrNul(request.sender)) {
    refuse_all(LocalReply(501, "5.1.7", "sender address contains a line break or NUL"));
    return;
  }
  // RFC 1870 section 6.1: a client SHOULD NOT send a message larger than
  // the limit the server announced.
  if (extensions_.size && *extensions_.size > 0 && request.content_size > *extensions_.size) {
    refuse_all(LocalReply(552, "5.3.4",
                          "message size " + std::to_string(request.content_size) +
                              " exceeds the size limit " + std::to_string(*extensions_.size) +
                              " of the receiving server"));
    return;
  }
  // RFC 6531 section 3.4: non-ASCII addresses need the server's SMTPUTF8.
  bool utf8 = !IsAscii(request.sender);
  if (utf8 && !extensions_.smtputf8) {
    refuse_all(LocalReply(
        553, "5.6.7", "sender address needs SMTPUTF8, which the receiving server does not offer"));
    return;
  }
  std::vector<bool> send(n, true);
  size_t to_send = 0;
  for (size_t i = 0; i < n; ++i) {
    const std::string& rcpt = request.recipients[i];
    if (HasLineBreakOrNul(rcpt)) {
      results_[i] = {ClientPhase::kRcpt,
                     LocalReply(501, "5.1.3", "recipient address contains a line break or NUL"),
                     true};
      send[i] = false;
    } else if (!IsAscii(rcpt)) {
      if (extensions_.smtputf8) {
        utf8 = true;
      } else {
        results_[i] = {
            ClientPhase::kRcpt,
            LocalReply(
                553, "5.6.7",
                "recipient address needs SMTPUTF8, which the receiving server does not offer"),
            true};
        send[i] = false;
      }
    }
    if (send[i]) ++to_send;
  }
  if (to_send == 0) {
    concluded_ = true;
    return;
  }

  // The whole command plan, each command's start in offsets_ (plus the end).
  auto begin = [&](ClientPhase phase, size_t recipient) {
    expects_.push_back(Expect{phase, recipient});
    offsets_.push_back(commands_.size());
  };
  if (rset_pending_) {
    // RFC 5321 4.1.1.5: a MAIL may still be in effect from the last attempt.
    begin(ClientPhase::kRset, 0);
    commands_ += "RSET\r\n";
  }
  begin(ClientPhase::kMail, 0);
  commands_ += "MAIL FROM:<";
  commands_ += request.sender;
  commands_ += '>';
  if (extensions_.size) {  // RFC 1870 section 6: announce the size
    commands_ += " SIZE=";
    commands_ += std::to_string(request.content_size);
  }
  if (request.eight_bit && extensions_.eight_bit_mime) {
    // RFC 6152 section 3. Without 8BITMIME the content is sent as it is:
    // converting MIME is not this module's job, and in practice receivers
    // accept it.
    commands_ += " BODY=8BITMIME";
  }
  if (utf8) commands_ += " SMTPUTF8";
  commands_ += "\r\n";
  for (size_t i = 0; i < n; ++i) {
    if (!send[i]) continue;
    begin(ClientPhase::kRcpt, i);
    commands_ += "RCPT TO:<";
    commands_ += request.recipients[i];
    commands_ += ">\r\n";
  }
  begin(ClientPhase::kData, 0);
  commands_ += "DATA\r\n";
  offsets_.push_back(commands_.size());
  plan_size_ = expects_.size();
  Action ignored = Action::kNeedInput;
  Advance(out, ignored);
}

ClientSession::Next ClientSession::Advance(std::string& out, Action& action) {
  if (concluded_) return FinishTransaction(action);
  if (pipelined_ && sent_ == 0) {
    // RFC 2920 section 3.1: RSET, MAIL and RCPT may be grouped; DATA ends
    // the group. One write, one round trip for the whole envelope.
    out += commands_;
    sent_ = plan_size_;
    return Next::kContinue;
  }
  if (sent_ >= plan_size_) return Next::kContinue;  // waiting for the end of data
  const Expect& next = expects_[sent_];
  if (next.phase == ClientPhase::kData && accepted_count_ == 0) {
    // No recipient accepted: no DATA. The MAIL stays in effect until the
    // RSET that precedes the next transaction.
    return FinishTransaction(action);
  }
  out.append(commands_, offsets_[sent_], offsets_[sent_ + 1] - offsets_[sent_]);
  ++sent_;
  return Next::kContinue;
}

ClientSession::Next ClientSession::FinishTransaction(Action& action) {
  state_ = failure_ ? State::kClosed : State::kReady;
  action = Action::kTransactionDone;
  return Next::kReturn;
}

void ClientSession::DecideRest(ClientPhase phase, const Reply& reply) {
  for (auto& r : results_) {
    if (r.reply.code == 0) {
      r.phase = phase;
      r.reply = reply;
    }
  }
}

ClientSession::Next ClientSession::HandleTransactionReply(Reply reply, std::string& out,
                                                          Action& action) {
  if (expect_pos_ >= expects_.size()) {
    // A reply nobody asked for: the stream is out of step.
    Fail(ClientPhase::kMail, LocalReply(0, "", "unexpected reply: " + reply.Summary()), true);
    return Next::kContinue;
  }
  const Expect expect = expects_[expect_pos_++];
  if (reply.code == 421) {
    // RFC 5321 3.8: the server is closing the channel; no further reply
    // will come. Everyone still undecided gets this reply.
    DecideRest(expect.phase, reply);
    Fail(expect.phase, std::move(reply), false);
    return Next::kContinue;
  }
  switch (expect.phase) {
    case ClientPhase::kRset:
      if (reply.Positive()) {
        rset_pending_ = false;
      } else {
        // A server that cannot reset cannot be trusted with the next MAIL.
        DecideRest(ClientPhase::kRset, reply);
        Fail(ClientPhase::kRset, std::move(reply), false);
      }
      break;
    case ClientPhase::kMail:
      if (reply.Positive()) {
        rset_pending_ = true;
      } else {
        mail_failed_ = true;
        DecideRest(ClientPhase::kMail, reply);
        // Pipelined: the RCPT and DATA replies (503s) still have to be read.
        if (!pipelined_) concluded_ = true;
      }
      break;
    case ClientPhase::kRcpt:
      if (mail_failed_) break;
      if (reply.Positive()) {  // 250, and 251/252 (RFC 5321 3.4)
        accepted_[expect.recipient] = true;
        ++accepted_count_;
      } else {
        results_[expect.recipient] = RecipientResult{ClientPhase::kRcpt, std::move(reply), false};
      }
      break;
    case ClientPhase::kData:
      if (reply.Class() == 3) {
        expects_.push_back(Expect{ClientPhase::kDataEnd, 0});
        ++sent_;
        if (accepted_count_ > 0 && !mail_failed_) {
          action = Action::kSendData;
          return Next::kReturn;
        }
        // RFC 2920 section 3.1 says a server rejects DATA when no RCPT
        // succeeded; one that sends 354 anyway gets an empty message ended
        // at once, and its reply is ignored.
        out += ".\r\n";
        break;
      }
      // 503/554 after refused recipients (RFC 2920 3.1), or a refusal of
      // the message: the recipients that were accepted share this reply.
      if (!mail_failed_) DecideRest(ClientPhase::kData, reply);
      concluded_ = true;
      break;
    case ClientPhase::kDataEnd:
      // RFC 5321 4.1.1.4: after the end of data the transaction is over,
      // whatever the reply.
      rset_pending_ = false;
      if (accepted_count_ > 0 && !mail_failed_) DecideRest(ClientPhase::kDataEnd, reply);
      concluded_ = true;
      break;
    case ClientPhase::kBanner:
    case ClientPhase::kEhlo:
    case ClientPhase::kStartTls:
    case ClientPhase::kQuit:
      break;
  }
  return Next::kContinue;
}

}  // namespace hikyaku::smtp
