#include "inject/sendmail.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <istream>
#include <optional>
#include <ostream>
#include <random>

#include "message/header.h"
#include "message/received.h"

namespace hikyaku::inject {

namespace {

// Reads stdin the way sendmail does: LF or CRLF lines; without -i a line
// holding a single "." ends the message. Lines are stored with CRLF.
std::string ReadMessage(std::istream& input, bool dot_terminates) {
  std::string content;
  std::string line;
  while (std::getline(input, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (dot_terminates && line == ".") break;
    content += line;
    content += "\r\n";
  }
  return content;
}

std::string LoginName() {
  if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_name) return pw->pw_name;
  if (const char* user = std::getenv("USER")) return user;
  return "nobody";
}

// A blocking SMTP client for one transaction with the local daemon.
class LocalSmtp {
 public:
  ~LocalSmtp() {
    if (fd_ >= 0) close(fd_);
  }

  std::optional<std::string> Connect(const config::Endpoint& endpoint) {
    config::Endpoint target = endpoint;
    // A wildcard listener is reached through loopback.
    if (target.address == config::IpAddress{}) target.address = *config::IpAddress::Parse("127.0.0.1");
    if (target.address.v6 && target.address == config::IpAddress{true, {}})
      target.address = *config::IpAddress::Parse("::1");
    sockaddr_storage ss{};
    socklen_t len;
    if (target.address.v6) {
      auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
      sa->sin6_family = AF_INET6;
      sa->sin6_port = htons(target.port);
      std::memcpy(&sa->sin6_addr, target.address.bytes.data(), 16);
      len = sizeof(sockaddr_in6);
    } else {
      auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
      sa->sin_family = AF_INET;
      sa->sin_port = htons(target.port);
      std::memcpy(&sa->sin_addr, target.address.bytes.data(), 4);
      len = sizeof(sockaddr_in);
    }
    fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return std::string("socket: ") + std::strerror(errno);
    timeval tv{300, 0};  // RFC 5321 4.5.3.2: generous client timeouts
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0)
      return "cannot reach the hikyaku daemon at " + target.ToString() + ": " + std::strerror(errno);
    return std::nullopt;
  }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Returns the whole (possibly multi-line) reply; code 0 on a broken connection.
  std::pair<int, std::string> Reply() {
    std::string text;
    for (;;) {
      std::string line;
      if (!ReadLine(line) || line.size() < 3) return {0, text.empty() ? "connection lost" : text};
      text += line;
      if (line.size() == 3 || line[3] == ' ') break;
      text += "\n";
    }
    return {std::atoi(text.substr(0, 3).c_str()), text};
  }

 private:
  bool ReadLine(std::string& line) {
    for (;;) {
      auto pos = buffer_.find("\r\n");
      if (pos != std::string::npos) {
        line = buffer_.substr(0, pos);
        buffer_.erase(0, pos + 2);
        return true;
      }
      char chunk[4096];
      ssize_t n = read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  int fd_ = -1;
  std::string buffer_;
};

std::string DotStuff(std::string_view content) {
  std::string out;
  out.reserve(content.size() + content.size() / 64 + 8);
  bool line_start = true;
  for (char c : content) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = (c == '\n');
  }
  if (!out.empty() && out.back() != '\n') out += "\r\n";
  return out;
}

}  // namespace

int RunSendmail(const SendmailArgs& args, const config::Config& config, std::istream& input, std::ostream& err,
                const Clock& clock) {
  std::string content = ReadMessage(input, args.dot_terminates);
  if (auto valid = message::ValidateHeaderBlock(content); !valid) {
    err << "hikyaku sendmail: bad message header: " << valid.error().message() << "\n";
    return kExDataErr;
  }

  std::vector<std::string> recipients = args.recipients;
  if (args.extract_recipients) {
    auto found = message::ExtractRecipientAddresses(content);
    if (!found) {
      err << "hikyaku sendmail: -t: " << found.error().message() << "\n";
      return kExDataErr;
    }
    for (auto& r : *found) recipients.push_back(std::move(r));
    content = message::RemoveHeader(content, "Bcc");  // blind copies must not show (RFC 5322 3.6.3)
  }
  if (recipients.empty()) {
    err << "hikyaku sendmail: no recipients (give addresses as arguments or use -t with To/Cc/Bcc headers)\n";
    return kExUsage;
  }

  const std::string hostname = config.server.hostname;
  const std::string sender = args.sender.value_or(LoginName() + "@" + hostname);

  // Complete the message like a submission server would (RFC 6409 8.1-8.3).
  std::string added;
  if (!message::HasHeader(content, "From")) {
    const std::string from = sender.empty() ? "MAILER-DAEMON@" + hostname : sender;
    added += args.full_name ? "From: " + *args.full_name + " <" + from + ">\r\n" : "From: " + from + "\r\n";
  }
  if (!message::HasHeader(content, "Date")) added += "Date: " + message::FormatRfc5322Date(clock.Now()) + "\r\n";
  if (!message::HasHeader(content, "Message-ID")) {
    std::random_device rd;
    char id[40];
    std::snprintf(id, sizeof id, "%lld.%08x%08x", static_cast<long long>(ToUnixMillis(clock.Now())), rd(), rd());
    added += std::string("Message-ID: <") + id + "@" + hostname + ">\r\n";
  }
  content.insert(0, added);

  if (config.smtp_in.listen.empty()) {
    err << "hikyaku sendmail: " << config.source.string() << ": smtp_in.listen is empty, nowhere to submit\n";
    return kExConfig;
  }
  LocalSmtp smtp;
  if (auto problem = smtp.Connect(config.smtp_in.listen.front())) {
    err << "hikyaku sendmail: " << *problem << "\n";
    return kExTempFail;
  }
  auto fail = [&](const std::pair<int, std::string>& reply, const std::string& step) {
    err << "hikyaku sendmail: " << step << " refused: " << reply.second << "\n";
    if (reply.first >= 500) return step.rfind("RCPT", 0) == 0 ? kExNoUser : kExDataErr;
    return kExTempFail;
  };

  auto reply = smtp.Reply();
  if (reply.first != 220) return fail(reply, "greeting");
  smtp.Send("EHLO localhost\r\n");
  if (reply = smtp.Reply(); reply.first != 250) return fail(reply, "EHLO");
  smtp.Send("MAIL FROM:<" + sender + ">\r\n");
  if (reply = smtp.Reply(); reply.first != 250) return fail(reply, "MAIL FROM");
  size_t accepted = 0;
  std::pair<int, std::string> last_refusal;
  for (const auto& rcpt : recipients) {
    smtp.Send("RCPT TO:<" + rcpt + ">\r\n");
    reply = smtp.Reply();
    if (reply.first == 250 || reply.first == 251) {
      ++accepted;
    } else {
      // Like sendmail: report the bad address, still deliver to the others.
      err << "hikyaku sendmail: " << rcpt << ": " << reply.second << "\n";
      last_refusal = reply;
      if (reply.first < 500) return fail(reply, "RCPT TO " + rcpt);
    }
  }
  if (accepted == 0) return fail(last_refusal, "RCPT TO");
  smtp.Send("DATA\r\n");
  if (reply = smtp.Reply(); reply.first != 354) return fail(reply, "DATA");
  if (!smtp.Send(DotStuff(content) + ".\r\n")) {
    err << "hikyaku sendmail: connection lost while sending the message\n";
    return kExTempFail;
  }
  if (reply = smtp.Reply(); reply.first != 250) return fail(reply, "message");
  smtp.Send("QUIT\r\n");
  smtp.Reply();
  // Accepted for at least one recipient: the message is durable, so success,
  // with the refused addresses reported above (a retry would duplicate it).
  return kExOk;
}

}  // namespace hikyaku::inject
