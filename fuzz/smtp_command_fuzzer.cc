// Fuzzes the SMTP server side: the command line reader, ParseCommand and a
// ServerSession driven by a fake driver (commits succeed unless the content
// mentions NOSPACE, STARTTLS handshakes succeed, alice/s3cret authenticates).
// Besides "no crash, no sanitizer report" it checks properties:
//  - the same input split at different read boundaries gives byte-identical
//    replies and messages (reads never span a line end there, because
//    STARTTLS rightly discards whatever follows it in the same read);
//  - every reply line is "ddd" + ' ' or '-' and ends in CRLF;
//  - stored content has only CRLF line ends, lines of at most 998 octets,
//    and fits max_message_size; a message has 1..max_recipients recipients;
//  - a parsed MAIL/RCPT path is a valid mailbox.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/command_parser.h"
#include "smtp/server_session.h"

namespace {

using hikyaku::smtp::ServerPolicy;
using hikyaku::smtp::ServerSession;

void Require(bool ok) {
  if (!ok) std::abort();
}

void CheckReplies(std::string_view out) {
  while (!out.empty()) {
    size_t end = out.find("\r\n");
    Require(end != std::string_view::npos && end >= 4);
    std::string_view line = out.substr(0, end);
    for (int i = 0; i < 3; ++i) Require(line[i] >= '0' && line[i] <= '9');
    Require(line[3] == ' ' || line[3] == '-');
    Require(line.find('\r') == std::string_view::npos && line.find('\n') == std::string_view::npos);
    out.remove_prefix(end + 2);
  }
}

void CheckMessage(const ServerSession::Message& m, const ServerPolicy& policy) {
  Require(!m.recipients.empty() && m.recipients.size() <= policy.max_recipients);
  Require(policy.max_message_size == 0 || m.content.size() <= policy.max_message_size);
  size_t line_length = 0;
  for (size_t i = 0; i < m.content.size(); ++i) {
    char c = m.content[i];
    if (c == '\r') {
      Require(i + 1 < m.content.size() && m.content[i + 1] == '\n');
      ++i;
      line_length = 0;
    } else {
      Require(c != '\n');
      Require(++line_length <= 998);
    }
  }
  Require(line_length == 0);  // content ends with CRLF or is empty
}

struct Transcript {
  std::string out;
  std::vector<ServerSession::Message> messages;
};

// Runs a session over `data`, split into reads by `chunk` sizes (cycled).
// With stop_at_lf, a read also ends after each LF.
Transcript RunSession(const ServerPolicy& policy, std::string_view data,
                      const std::vector<size_t>& chunks, bool stop_at_lf) {
  ServerSession session(policy);
  Transcript t;
  session.Start(t.out);
  size_t pos = 0, next_chunk = 0;
  int ids = 0;
  bool closed = false;
  while (!closed) {
    ServerSession::Action action = session.Process(t.out);
    switch (action) {
      case ServerSession::Action::kNeedInput: {
        if (pos >= data.size()) return t;
        size_t n = std::min(chunks[next_chunk++ % chunks.size()], data.size() - pos);
        if (stop_at_lf) {
          size_t lf = data.find('\n', pos);
          if (lf != std::string_view::npos) n = std::min(n, lf + 1 - pos);
        }
        session.Feed(data.substr(pos, n));
        pos += n;
        break;
      }
      case ServerSession::Action::kCommitMessage: {
        ServerSession::Message m = session.TakeMessage();
        CheckMessage(m, policy);
        bool no_space = m.content.find("NOSPACE") != std::string::npos;
        t.messages.push_back(std::move(m));
        session.OnCommitted(!no_space, no_space, "ID" + std::to_string(++ids), t.out);
        break;
      }
      case ServerSession::Action::kStartTls:
        session.OnTlsStarted();
        Require(session.tls_active());
        break;
      case ServerSession::Action::kCheckAuth: {
        const auto& c = session.AuthCredentials();
        session.OnAuthResult(c.username == "alice" && c.password == "s3cret", t.out);
        break;
      }
      case ServerSession::Action::kClose:
        closed = true;
        Require(session.Process(t.out) == ServerSession::Action::kClose);
        break;
    }
  }
  return t;
}

void FuzzParser(std::string_view data) {
  hikyaku::smtp::CommandLineReader reader(256);
  while (!data.empty()) {
    auto event = reader.Consume(data);
    Require(event.consumed > 0 && event.consumed <= data.size());
    data.remove_prefix(event.consumed);
    if (event.status != hikyaku::smtp::CommandLineReader::Status::kLine) continue;
    Require(reader.line().size() <= 254);
    auto command = hikyaku::smtp::ParseCommand(reader.line());
    if (!command) continue;
    if ((command->verb == hikyaku::smtp::Verb::kMail ||
         command->verb == hikyaku::smtp::Verb::kRcpt) &&
        !command->path.empty()) {
      Require(hikyaku::smtp::IsValidMailbox(command->path));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  std::string_view data(reinterpret_cast<const char*>(bytes), size);
  FuzzParser(data);

  ServerPolicy policy;
  policy.hostname = "fuzz.test";
  policy.max_message_size = 4096;
  policy.max_recipients = 5;
  policy.max_errors = 20;
  policy.relay_allowed = true;
  policy.tls_available = true;
  policy.auth_available = true;
  policy.client_address = "192.0.2.1";

  // Everything in one read: STARTTLS discards what follows it.
  CheckReplies(RunSession(policy, data, {size + 1}, false).out);

  Transcript whole = RunSession(policy, data, {size + 1}, true);
  CheckReplies(whole.out);
  // Read boundaries chosen from the input itself, so they vary per input.
  std::vector<size_t> chunks;
  for (size_t i = 0; i < 8; ++i) chunks.push_back(1 + (size > i ? bytes[i] % 13 : i));
  Transcript split = RunSession(policy, data, chunks, true);
  Require(split.out == whole.out);
  Require(split.messages.size() == whole.messages.size());
  for (size_t i = 0; i < whole.messages.size(); ++i) {
    Require(split.messages[i].content == whole.messages[i].content);
    Require(split.messages[i].recipients == whole.messages[i].recipients);
    Require(split.messages[i].sender == whole.messages[i].sender);
  }

  // A stranger: no relay, a low error limit.
  policy.relay_allowed = false;
  policy.max_errors = 3;
  Transcript stranger = RunSession(policy, data, {7}, false);
  CheckReplies(stranger.out);
  return 0;
}
