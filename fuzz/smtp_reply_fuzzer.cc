// Fuzzes the SMTP client side: ReplyParser on arbitrary server bytes, and a
// ClientSession driven by a fake driver that plays those bytes as the
// server's replies (STARTTLS handshakes succeed, every kReady starts a new
// transaction, up to four, then QUIT). Besides "no crash, no sanitizer
// report" it checks properties:
//  - the parser gives the same replies and errors wherever reads split the
//    stream, consumes at least one byte per call and never more than given;
//  - every reply has a code 200..599, at most max_lines lines, lines of at
//    most max_line octets, and an enhanced code that parses and matches
//    the reply's class;
//  - the session gives byte-identical commands and identical per-recipient
//    results for any split of reads that end at line ends (a read that
//    runs past STARTTLS's 220 rightly loses the rest);
//  - a finished transaction has one result per recipient, each decided
//    unless the session failed, positive only for DATA or its end;
//    commands end in CRLF and never carry bytes
//    that were not in the envelope.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "smtp/client_session.h"
#include "smtp/reply_parser.h"

namespace {

using hikyaku::smtp::ClientPolicy;
using hikyaku::smtp::ClientSession;
using hikyaku::smtp::Reply;
using hikyaku::smtp::ReplyParser;

void Require(bool ok) {
  if (!ok) std::abort();
}

constexpr size_t kMaxLine = 200;
constexpr size_t kMaxLines = 8;

struct ParseLog {
  std::vector<Reply> replies;
  size_t errors = 0;
};

void CheckReply(const Reply& r) {
  Require(r.code >= 200 && r.code <= 599);
  Require(static_cast<size_t>(std::count(r.text.begin(), r.text.end(), '\n')) < kMaxLines);
  Require(r.text.size() <= kMaxLines * kMaxLine);
  if (!r.enhanced.empty()) {
    Require(hikyaku::smtp::ParseEnhancedCode(r.enhanced) == r.enhanced.size());
    Require(r.enhanced[0] - '0' == r.code / 100);
  }
}

ParseLog Parse(std::string_view data, const std::vector<size_t>& chunks) {
  ReplyParser parser(kMaxLine, kMaxLines);
  ParseLog log;
  size_t pos = 0, next = 0;
  while (pos < data.size()) {
    std::string_view piece = data.substr(pos, chunks[next++ % chunks.size()]);
    pos += piece.size();
    while (!piece.empty()) {
      auto event = parser.Consume(piece);
      Require(event.consumed > 0 && event.consumed <= piece.size());
      piece.remove_prefix(event.consumed);
      if (event.status == ReplyParser::Status::kReply) {
        CheckReply(parser.reply());
        log.replies.push_back(parser.TakeReply());
      } else if (event.status == ReplyParser::Status::kError) {
        Require(!parser.error().empty());
        ++log.errors;
      }
    }
  }
  return log;
}

struct Transcript {
  std::string commands;
  std::vector<std::string> results;  // "phase code enhanced" per recipient
  bool failed = false;
};

const std::vector<std::string>& Recipients(int transaction) {
  static const std::vector<std::vector<std::string>> kSets = {
      {"a@x.test", "b@x.test", "c@x.test"},
      {"d@x.test"},
      {"e@x.test", "\xe5\xa4\xaa@x.test"},
      {"f@x.test", "g@x.test"},
  };
  return kSets[transaction % kSets.size()];
}

Transcript RunSession(std::string_view data, const std::vector<size_t>& chunks, bool starttls) {
  ClientPolicy policy;
  policy.helo_name = "client.test";
  policy.starttls = starttls;
  policy.max_reply_line = kMaxLine;
  policy.max_reply_lines = kMaxLines;
  ClientSession session(policy);
  Transcript t;
  size_t pos = 0, next = 0;
  int transactions = 0;
  std::string scratch;
  const std::string content = "Subject: x\r\n\r\n.dot\r\nbody\r\n";
  for (int steps = 0; steps < 10000; ++steps) {
    switch (session.Process(t.commands)) {
      case ClientSession::Action::kNeedInput: {
        if (pos >= data.size()) return t;
        size_t n = std::min(chunks[next++ % chunks.size()], data.size() - pos);
        size_t lf = data.find('\n', pos);
        if (lf != std::string_view::npos) n = std::min(n, lf + 1 - pos);
        session.Feed(data.substr(pos, n));
        pos += n;
        break;
      }
      case ClientSession::Action::kStartTls:
        session.OnTlsStarted(t.commands);
        break;
      case ClientSession::Action::kReady:
        if (transactions == 4) {
          session.Quit(t.commands);
          break;
        }
        {
          hikyaku::smtp::TransactionRequest request;
          request.sender = transactions == 1 ? "" : "bounce@client.test";
          request.recipients = Recipients(transactions);
          request.content_size = 5000 * transactions;
          request.eight_bit = transactions == 2;
          session.StartTransaction(request, t.commands);
        }
        ++transactions;
        break;
      case ClientSession::Action::kSendData: {
        auto payload = hikyaku::smtp::PrepareDataPayload(content, scratch);
        Require(payload.body == "Subject: x\r\n\r\n..dot\r\nbody\r\n");
        break;
      }
      case ClientSession::Action::kTransactionDone: {
        auto results = session.TakeResults();
        Require(results.size() == Recipients(transactions - 1).size());
        for (const auto& r : results) {
          Require(r.reply.code != 0 || session.failure().has_value());
          if (r.reply.code != 0) {
            // A positive reply decides a recipient only at the end of data,
            // or as a (misplaced) answer to DATA instead of 354.
            Require(!r.reply.Positive() || r.phase == hikyaku::smtp::ClientPhase::kDataEnd ||
                    r.phase == hikyaku::smtp::ClientPhase::kData);
          }
          t.results.push_back(std::string(hikyaku::smtp::ToString(r.phase)) + " " +
                              std::to_string(r.reply.code) + " " + r.reply.enhanced);
        }
        break;
      }
      case ClientSession::Action::kClose:
        t.failed = session.failure().has_value();
        Require(session.Process(t.commands) == ClientSession::Action::kClose);
        return t;
    }
  }
  std::abort();  // the session must not spin without consuming input
}

void CheckCommands(std::string_view commands) {
  while (!commands.empty()) {
    size_t end = commands.find("\r\n");
    Require(end != std::string_view::npos);
    std::string_view line = commands.substr(0, end);
    Require(line.find('\r') == std::string_view::npos && line.find('\n') == std::string_view::npos);
    commands.remove_prefix(end + 2);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  std::string_view data(reinterpret_cast<const char*>(bytes), size);

  ParseLog whole = Parse(data, {size + 1});
  std::vector<size_t> chunks;
  for (size_t i = 0; i < 8; ++i) chunks.push_back(1 + (size > i ? bytes[i] % 17 : i));
  ParseLog split = Parse(data, chunks);
  ParseLog single = Parse(data, {1});
  for (const ParseLog* other : {&split, &single}) {
    Require(other->errors == whole.errors);
    Require(other->replies.size() == whole.replies.size());
    for (size_t i = 0; i < whole.replies.size(); ++i) {
      Require(other->replies[i].code == whole.replies[i].code);
      Require(other->replies[i].enhanced == whole.replies[i].enhanced);
      Require(other->replies[i].text == whole.replies[i].text);
    }
  }

  for (bool starttls : {true, false}) {
    Transcript a = RunSession(data, {size + 1}, starttls);
    Transcript b = RunSession(data, chunks, starttls);
    CheckCommands(a.commands);
    Require(a.commands == b.commands);
    Require(a.results == b.results);
    Require(a.failed == b.failed);
  }
  return 0;
}
