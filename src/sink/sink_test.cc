#include "sink/sink.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

namespace hikyaku::sink {
namespace {

using tcp = boost::asio::ip::tcp;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A blocking SMTP client on a plain POSIX socket with a receive timeout,
// so a broken sink fails the test instead of hanging it.
class Client {
 public:
  // `source`: the client address to bind before connecting (any of
  // 127.0.0.0/8 works on Linux without setup); nullptr = the kernel's choice.
  explicit Client(const tcp::endpoint& ep, int timeout_ms = 5000, const char* source = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (source) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &local.sin_addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(ep.port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() { ::close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  // errno of the last failed read (EAGAIN after a timeout), 0 after EOF.
  int last_error() const { return last_error_; }

  // The next complete reply (all lines), or "" once the server closed or timed out.
  std::string Reply() {
    std::string reply;
    for (;;) {
      size_t eol;
      while ((eol = buf_.find("\r\n")) == std::string::npos) {
        char chunk[4096];
        ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n <= 0) {
          last_error_ = n < 0 ? errno : 0;
          return reply;
        }
        buf_.append(chunk, static_cast<size_t>(n));
      }
      std::string line = buf_.substr(0, eol + 2);
      buf_.erase(0, eol + 2);
      reply += line;
      if (line.size() < 4 || line[3] == ' ') return reply;
    }
  }

  std::string Command(const std::string& line) {
    Send(line + "\r\n");
    return Reply();
  }

  void Send(const std::string& bytes) { (void)!::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }

  // One message; returns the reply to the end of data.
  std::string SendMessage(const std::string& from, const std::vector<std::string>& to,
                          const std::string& content) {
    if (Command("MAIL FROM:<" + from + ">").substr(0, 3) != "250") return "MAIL refused";
    for (const auto& r : to) Command("RCPT TO:<" + r + ">");
    if (Command("DATA").substr(0, 3) != "354") return "DATA refused";
    Send(content + ".\r\n");
    return Reply();
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  int last_error_ = 0;
  std::string buf_;
};

SinkOptions TestOptions() {
  SinkOptions o;
  o.listen = {"127.0.0.1:0"};
  o.hostname = "sink.test";
  o.threads = 2;
  o.timeout = std::chrono::seconds(10);
  return o;
}

std::filesystem::path TempPath(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() /
           ("hikyaku-sink-test-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::remove(p);
  return p;
}

TEST(SinkTest, AcceptsCountsAndLogsEachRecipient) {
  auto jsonl = TempPath("accept.jsonl");
  auto stats = TempPath("accept.stats.json");
  SinkOptions o = TestOptions();
  o.jsonl_path = jsonl.string();
  o.stats_file = stats.string();
  Sink sink(o);
  ASSERT_TRUE(sink.Start().has_value());
  auto ep = sink.local_endpoints().at(0);
  EXPECT_NE(ep.port(), 0);
  {
    Client c(ep);
    EXPECT_EQ(c.Reply(), "220 sink.test ESMTP hikyaku\r\n");
    EXPECT_THAT(c.Command("EHLO client"), HasSubstr("250 ENHANCEDSTATUSCODES"));
    std::string body(100000, 'x');
    for (size_t i = 76; i < body.size(); i += 78) body.replace(i, 2, "\r\n");
    std::string content = "Message-ID: <one@test>\r\nX-Hikyaku-Test: accept\r\n\r\n" + body + "\r\n";
    EXPECT_THAT(c.SendMessage("s@example.com", {"a@example.net", "b@example.net"}, content),
                StartsWith("250 2.0.0 Ok: queued as "));
    EXPECT_THAT(c.SendMessage("", {"c@example.net"}, "Subject: no ids\r\n\r\nhi\r\n"), StartsWith("250 "));
    EXPECT_EQ(c.Command("QUIT"), "221 2.0.0 Bye\r\n");
  }
  sink.Stop();
  sink.Wait();
  SinkSnapshot snap = sink.Snapshot();
  EXPECT_EQ(snap.connections, 1u);
  EXPECT_EQ(snap.messages, 2u);
  EXPECT_EQ(snap.recipients, 3u);
  EXPECT_GT(snap.bytes, 100000u);

  std::ifstream in(jsonl);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["recipient"], "a@example.net");
  EXPECT_EQ(lines[1]["recipient"], "b@example.net");
  EXPECT_EQ(lines[0]["sender"], "s@example.com");
  EXPECT_EQ(lines[0]["client"], "127.0.0.1");
  EXPECT_EQ(lines[0]["message_id"], "<one@test>");
  EXPECT_EQ(lines[0]["test"], "accept");
  EXPECT_GT(lines[0]["size"].get<uint64_t>(), 100000u);
  EXPECT_EQ(lines[2]["sender"], "");
  EXPECT_TRUE(lines[2]["message_id"].is_null());

  std::ifstream stats_in(stats);
  auto stats_json = nlohmann::json::parse(stats_in);
  EXPECT_EQ(stats_json["messages"], 2);
  EXPECT_EQ(stats_json["recipients"], 3);
  std::filesystem::remove(jsonl);
  std::filesystem::remove(stats);
}

TEST(SinkTest, ExitAfterStopsOnceTheNthMessageWasAnswered) {
  SinkOptions o = TestOptions();
  o.exit_after = 2;
  Sink sink(o);
  ASSERT_TRUE(sink.Start().has_value());
  Client c(sink.local_endpoints().at(0));
  c.Reply();
  c.Command("HELO c");
  EXPECT_THAT(c.SendMessage("s@x", {"r@y"}, "a\r\n"), StartsWith("250 "));
  EXPECT_THAT(c.SendMessage("s@x", {"r@y"}, "b\r\n"), StartsWith("250 "));
  auto start = std::chrono::steady_clock::now();
  sink.Wait();  // returns without Stop()
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(sink.Snapshot().messages, 2u);
  EXPECT_EQ(c.Reply(), "");  // and the connection is gone
}

TEST(SinkTest, ConnectionsOverThePerIpLimitGet421) {
  SinkOptions o = TestOptions();
  o.max_connections_per_ip = 1;
  Sink sink(o);
  ASSERT_TRUE(sink.Start().has_value());
  auto ep = sink.local_endpoints().at(0);
  {
    Client first(ep);
    EXPECT_THAT(first.Reply(), StartsWith("220 "));
    Client second(ep);
    EXPECT_EQ(second.Reply(), "421 4.7.0 Too many connections from 127.0.0.1\r\n");
    EXPECT_EQ(second.Reply(), "");
  }
  // Once the first is gone the slot is free again (the sink notices the close asynchronously).
  std::string greeting;
  for (int i = 0; i < 50 && !greeting.starts_with("220"); ++i) {
    Client again(ep);
    greeting = again.Reply();
    if (!greeting.starts_with("220")) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(greeting, StartsWith("220 "));
  auto j = nlohmann::json::parse(sink.Snapshot().json);
  EXPECT_GE(j["refused_connections"].get<int>(), 1);
}

TEST(SinkTest, CountsConnectionsPeaksRefusalsAndRecipientsPerClientIp) {
  SinkOptions o = TestOptions();
  o.max_connections_per_ip = 3;
  o.rate_per_ip = 2;  // a bucket of 2 MAIL commands; the third within the minute is refused
  o.rate_reply = "450 4.7.1 rate limited";
  Sink sink(o);
  ASSERT_TRUE(sink.Start().has_value());
  auto ep = sink.local_endpoints().at(0);
  auto per_ip = [&] { return nlohmann::json::parse(sink.Snapshot().json).at("per_ip"); };

  std::vector<std::unique_ptr<Client>> from50, from51;
  for (int i = 0; i < 3; ++i) from50.push_back(std::make_unique<Client>(ep, 5000, "127.0.0.50"));
  for (int i = 0; i < 2; ++i) from51.push_back(std::make_unique<Client>(ep, 5000, "127.0.0.51"));
  // Every greeting read: the sink has counted every connection.
  for (auto& c : from50) ASSERT_THAT(c->Reply(), StartsWith("220 "));
  for (auto& c : from51) ASSERT_THAT(c->Reply(), StartsWith("220 "));
  auto j = per_ip();
  ASSERT_EQ(j.size(), 2u) << j.dump();
  EXPECT_EQ(j["127.0.0.50"]["connections"], 3);
  EXPECT_EQ(j["127.0.0.50"]["peak_connections"], 3);
  EXPECT_EQ(j["127.0.0.51"]["connections"], 2);
  EXPECT_EQ(j["127.0.0.51"]["peak_connections"], 2);
  EXPECT_EQ(j["127.0.0.50"]["refused_connections"], 0);

  // A fourth from .50 is over its cap; .51 is not affected. The refused
  // connection was held open too, so it counts toward the peak.
  {
    Client fourth(ep, 5000, "127.0.0.50");
    EXPECT_EQ(fourth.Reply(), "421 4.7.0 Too many connections from 127.0.0.50\r\n");
  }
  Client third51(ep, 5000, "127.0.0.51");
  EXPECT_THAT(third51.Reply(), StartsWith("220 "));

  // The rate limiter: .50 uses its two MAIL tokens, the third is refused;
  // .51 has its own bucket.
  Client& a = *from50[0];
  a.Command("EHLO a");
  EXPECT_THAT(a.SendMessage("s@x", {"r1@y", "r2@y"}, "a\r\n"), StartsWith("250 "));
  EXPECT_THAT(a.SendMessage("s@x", {"r3@y"}, "a\r\n"), StartsWith("250 "));
  EXPECT_EQ(a.Command("MAIL FROM:<s@x>"), "450 4.7.1 rate limited\r\n");
  Client& b = *from51[0];
  b.Command("EHLO b");
  EXPECT_THAT(b.SendMessage("s@x", {"r4@y"}, "a\r\n"), StartsWith("250 "));

  j = per_ip();
  EXPECT_EQ(j["127.0.0.50"]["connections"], 4);
  EXPECT_EQ(j["127.0.0.50"]["peak_connections"], 4);
  EXPECT_EQ(j["127.0.0.50"]["refused_connections"], 1);
  EXPECT_EQ(j["127.0.0.50"]["recipients"], 3);
  EXPECT_EQ(j["127.0.0.50"]["rate_limited"], 1);
  EXPECT_EQ(j["127.0.0.51"]["connections"], 3);
  EXPECT_EQ(j["127.0.0.51"]["peak_connections"], 3);
  EXPECT_EQ(j["127.0.0.51"]["refused_connections"], 0);
  EXPECT_EQ(j["127.0.0.51"]["recipients"], 1);
  EXPECT_EQ(j["127.0.0.51"]["rate_limited"], 0);
  // The test runs well within the sink's first minute.
  EXPECT_EQ(j["127.0.0.50"]["per_minute"], nlohmann::json::parse("[3]"));
  EXPECT_EQ(j["127.0.0.51"]["per_minute"], nlohmann::json::parse("[1]"));

  // The stats file at the end holds the same table.
  from50.clear();
  from51.clear();
  sink.Stop();
  sink.Wait();
  auto final_json = nlohmann::json::parse(sink.Snapshot().json);
  EXPECT_EQ(final_json["per_ip"]["127.0.0.50"]["recipients"], 3);
  EXPECT_EQ(final_json["per_ip_untracked"], 0);
}

TEST(SinkTest, StatsFileHoldsThePerIpTable) {
  auto stats = TempPath("per-ip.stats.json");
  SinkOptions o = TestOptions();
  o.stats_file = stats.string();
  Sink sink(o);
  ASSERT_TRUE(sink.Start().has_value());
  {
    Client c(sink.local_endpoints().at(0), 5000, "127.0.0.52");
    c.Reply();
    c.Command("EHLO c");
    EXPECT_THAT(c.SendMessage("s@x", {"r@y"}, "a\r\n"), StartsWith("250 "));
    c.Command("QUIT");
  }
  sink.Stop();
  sink.Wait();
  std::ifstream in(stats);
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["per_ip"]["127.0.0.52"]["connections"], 1);
  EXPECT_EQ(j["per_ip"]["127.0.0.52"]["recipients"], 1);
  EXPECT_EQ(j["per_ip"]["127.0.0.52"]["per_minute"], nlohmann::json::parse("[1]"));
  std::filesystem::remove(stats);
}

TEST(SinkTest, MaxMessagesPerConnectionClosesWith421) {
  SinkOptions o = TestOptions();
  o.max_messages_per_connection = 1;
  Sink sink(o);
  ASSERT_TRUE(sink.Start().has_value());
  Client c(sink.local_endpoints().at(0));
  c.Reply();
  c.Command("EHLO c");
  EXPECT_THAT(c.SendMessage("s@x", {"r@y"}, "a\r\n"), StartsWith("250 "));
  EXPECT_THAT(c.Command("MAIL FROM:<s@x>"), StartsWith("421 4.7.0 sink.test Too many messages"));
  EXPECT_EQ(c.Reply(), "");
}

TEST(SinkTest, RefusalsForUnknownUsersRateAndInjectedFailures) {
  SinkOptions o = TestOptions();
  o.unknown_users = "nobody";
  o.rate_per_ip = 2;
  o.tempfail_rate = 1;
  o.tempfail_messages = true;
  Sink sink(o);
  ASSERT_TRUE(sink.Start().has_value());
  Client c(sink.local_endpoints().at(0));
  c.Reply();
  c.Command("EHLO c");
  EXPECT_EQ(c.Command("MAIL FROM:<s@x>"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(c.Command("RCPT TO:<nobody@y>"),
            "550 5.1.1 <nobody@y>: Recipient address rejected: User unknown\r\n");
  EXPECT_EQ(c.Command("RCPT TO:<somebody@y>"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(c.Command("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  c.Send("x\r\n.\r\n");
  EXPECT_EQ(c.Reply(), "451 4.3.0 Temporary failure (injected)\r\n");
  EXPECT_EQ(c.Command("MAIL FROM:<s@x>"), "250 2.1.0 Ok\r\n");
  c.Command("RSET");
  EXPECT_EQ(c.Command("MAIL FROM:<s@x>"), "450 4.7.1 Rate limit exceeded, try again later\r\n");
  sink.Stop();
  sink.Wait();
  auto j = nlohmann::json::parse(sink.Snapshot().json);
  EXPECT_EQ(j["messages"], 0);
  EXPECT_EQ(j["rejected"]["unknown_user"], 1);
  EXPECT_EQ(j["rejected_messages"], 1);
  EXPECT_EQ(j["rate_limited"], 1);
}

TEST(SinkTest, BlackholeNeverAnswers) {
  SinkOptions o = TestOptions();
  o.blackhole = true;
  Sink sink(o);
  ASSERT_TRUE(sink.Start().has_value());
  Client c(sink.local_endpoints().at(0), /*timeout_ms=*/500);
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(c.Reply(), "");
  EXPECT_EQ(c.last_error(), EAGAIN);  // a timeout, not a close
  c.Send("EHLO c\r\n");
  EXPECT_EQ(c.Reply(), "");
  EXPECT_EQ(c.last_error(), EAGAIN);
}

TEST(SinkTest, StartFailsOnBadOptions) {
  SinkOptions o = TestOptions();
  o.listen = {"localhost:25"};
  EXPECT_EQ(Sink(o).Start().error().code(), ErrorCode::kInvalidArgument);
  o = TestOptions();
  o.unknown_users = "(";
  EXPECT_EQ(Sink(o).Start().error().code(), ErrorCode::kInvalidArgument);
  o = TestOptions();
  o.rate_per_ip = 5;
  o.rate_reply = "250 ok";
  EXPECT_EQ(Sink(o).Start().error().code(), ErrorCode::kInvalidArgument);
  // A port that is taken.
  Sink first(TestOptions());
  ASSERT_TRUE(first.Start().has_value());
  o = TestOptions();
  o.listen = {"127.0.0.1:" + std::to_string(first.local_endpoints().at(0).port())};
  auto second = Sink(o).Start();
  // SO_REUSEADDR does not allow two listeners on one port on Linux.
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code(), ErrorCode::kUnavailable);
}

TEST(SinkCommandTest, ParsesFlagsAndRejectsBadValues) {
  auto parse = [](std::vector<std::string> args) {
    CLI::App app;
    std::function<int()> run;
    AddSinkCommand(app, run);
    std::reverse(args.begin(), args.end());
    args.push_back("sink");
    app.parse(args);  // CLI11 takes the arguments reversed
    return static_cast<bool>(run);
  };
  EXPECT_TRUE(parse({"--listen",
                     "127.0.0.1:0",
                     "--listen",
                     "[::1]:0",
                     "--greylist",
                     "1s",
                     "--rate-per-ip",
                     "30",
                     "--rate-reply",
                     "421 4.7.0 Go away",
                     "--unknown-users",
                     "no.*",
                     "--tempfail-rate",
                     "0.25",
                     "--seed",
                     "7",
                     "--tempfail-on",
                     "data",
                     "--banner-delay",
                     "0",
                     "--reply-delay",
                     "250ms",
                     "--max-message-size",
                     "10MB",
                     "--blackhole",
                     "--exit-after",
                     "3"}));
  EXPECT_THROW(parse({"--greylist", "1 second"}), CLI::ValidationError);
  EXPECT_THROW(parse({"--listen", "example.com:25"}), CLI::ValidationError);
  EXPECT_THROW(parse({"--unknown-users", "(x"}), CLI::ValidationError);
  EXPECT_THROW(parse({"--rate-reply", "250 fine"}), CLI::ValidationError);
  EXPECT_THROW(parse({"--tempfail-rate", "1.5"}), CLI::ValidationError);
  EXPECT_THROW(parse({"--tempfail-on", "mail"}), CLI::ValidationError);
  EXPECT_THROW(parse({"--max-message-size", "10mb"}), CLI::ValidationError);
}

}  // namespace
}  // namespace hikyaku::sink
