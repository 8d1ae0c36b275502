#include "app/demo.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/units.h"
#include "message/received.h"

namespace hikyaku::app {

namespace {

namespace fs = std::filesystem;
using SteadyTime = std::chrono::steady_clock::time_point;
using std::chrono::steady_clock;

constexpr std::string_view kDomain = "demo.test";
constexpr std::string_view kSender = "demo@sender.demo.test";
constexpr std::string_view kHostname = "mta.demo.test";
// A stopped child gets this long after SIGTERM before SIGKILL. The daemon
// needs 0.5 s of grace for in-flight commits plus its spool close.
constexpr auto kStopWait = std::chrono::seconds(15);

std::atomic<int> g_signal{0};

void OnSignal(int signal) { g_signal.store(signal); }

int RemainingMs(SteadyTime deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1'000'000));
}

double Seconds(steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The last `lines` lines of a child's log, indented, for an error report.
std::string Tail(const fs::path& path, size_t lines = 15) {
  std::ifstream in(path);
  std::deque<std::string> last;
  for (std::string line; std::getline(in, line);) {
    last.push_back(line);
    if (last.size() > lines) last.pop_front();
  }
  std::string out;
  for (const auto& l : last) out += "    " + l + "\n";
  return out.empty() ? "    (empty)\n" : out;
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "stopped";
}

// A child process of this binary: stdout on a pipe we read lines from,
// stderr into a log file, in its own process group (so a Ctrl-C reaches
// only the demo, which then stops the child in order), and killed by the
// kernel if the demo itself dies (PR_SET_PDEATHSIG).
class ChildProcess {
 public:
  ChildProcess(std::string name, fs::path log) : name_(std::move(name)), log_(std::move(log)) {}
  ~ChildProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdout_fd_ >= 0) close(stdout_fd_);
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  const std::string& name() const { return name_; }
  const fs::path& log() const { return log_; }

  std::optional<std::string> Start(const std::string& executable, const std::vector<std::string>& args,
                                   const fs::path& cwd) {
    // Everything the child touches between fork and exec is prepared here:
    // only async-signal-safe calls are allowed there.
    std::vector<std::string> argv_storage;
    argv_storage.push_back(executable);
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string cwd_str = cwd.string();

    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return std::string("pipe: ") + std::strerror(errno);
    int log_fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0) {
      std::string problem = "cannot open " + log_.string() + ": " + std::strerror(errno);
      for (int fd : {pipe_fds[0], pipe_fds[1], log_fd, null_fd})
        if (fd >= 0) close(fd);
      return problem;
    }
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(127);  // the demo died before prctl
      dup2(null_fd, STDIN_FILENO);
      dup2(pipe_fds[1], STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
      if (chdir(cwd_str.c_str()) != 0) _exit(127);
      execv(argv[0], argv.data());
      const char msg[] = "hikyaku demo: exec failed\n";
      (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
      _exit(127);
    }
    int fork_errno = errno;
    close(pipe_fds[1]);
    close(log_fd);
    close(null_fd);
    if (pid < 0) {
      close(pipe_fds[0]);
      return std::string("fork: ") + std::strerror(fork_errno);
    }
    pid_ = pid;
    stdout_fd_ = pipe_fds[0];
    return std::nullopt;
  }

  // The next line the child writes on stdout, without the newline;
  // nullopt at end of file (the child closed stdout, usually by exiting)
  // or when the deadline passes (then timed_out is set).
  std::optional<std::string> ReadLine(SteadyTime deadline, bool& timed_out) {
    timed_out = false;
    for (;;) {
      if (auto pos = buffer_.find('\n'); pos != std::string::npos) {
        std::string line = buffer_.substr(0, pos);
        buffer_.erase(0, pos + 1);
        return line;
      }
      if (g_signal.load() != 0) return std::nullopt;
      pollfd p{stdout_fd_, POLLIN, 0};
      int ready = poll(&p, 1, std::min(RemainingMs(deadline), 200));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        if (steady_clock::now() >= deadline) {
          timed_out = true;
          return std::nullopt;
        }
        continue;
      }
      char chunk[4096];
      ssize_t n = read(stdout_fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Waits for the line starting with `prefix` (the child's ready line).
  // On failure returns a report naming the child, its fate and its log.
  Result<std::string> WaitReady(std::string_view prefix, SteadyTime deadline) {
    for (;;) {
      bool timed_out = false;
      auto line = ReadLine(deadline, timed_out);
      if (line && line->rfind(prefix, 0) == 0) return *line;
      if (line) continue;
      std::string why;
      if (g_signal.load() != 0) {
        why = "interrupted";
      } else if (timed_out) {
        why = "was not ready when the --timeout ran out";
      } else if (auto status = Exited(std::chrono::seconds(2))) {
        why = DescribeStatus(*status);
      } else {
        why = "closed its standard output";
      }
      return Fail(ErrorCode::kUnavailable, "the " + name_ + " did not start: it " + why + "; its log (" +
                                               log_.string() + ") ends with:\n" + Tail(log_));
    }
  }

  // The exit status if the child has exited (waiting at most `wait`).
  std::optional<int> Exited(steady_clock::duration wait = {}) {
    if (reaped_) return status_;
    if (pid_ <= 0) return std::nullopt;
    const SteadyTime until = steady_clock::now() + wait;
    for (;;) {
      pid_t r = waitpid(pid_, &status_, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        return status_;
      }
      if (r < 0 && errno != EINTR) return std::nullopt;
      if (steady_clock::now() >= until) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // SIGTERM, then SIGKILL if it has not exited within `wait`. Returns the
  // exit status; a clean stop is WIFEXITED with status 0.
  int Stop(steady_clock::duration wait) {
    if (pid_ <= 0) return 0;
    if (!reaped_) kill(pid_, SIGTERM);
    if (auto status = Exited(wait)) return *status;
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    reaped_ = true;
    killed_ = true;
    return status_;
  }
  bool killed() const { return killed_; }

 private:
  std::string name_;
  fs::path log_;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string buffer_;
  int status_ = 0;
  bool reaped_ = false;
  bool killed_ = false;
};

// A blocking TCP connection to 127.0.0.1 whose reads give up at a deadline
// or when `abort` is set (checked every 200 ms).
class LoopbackConnection {
 public:
  LoopbackConnection(SteadyTime deadline, const std::atomic<bool>& abort) : deadline_(deadline), abort_(abort) {}
  ~LoopbackConnection() {
    if (fd_ >= 0) close(fd_);
  }
  LoopbackConnection(const LoopbackConnection&) = delete;
  LoopbackConnection& operator=(const LoopbackConnection&) = delete;

  Result<void> Connect(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return Fail(ErrorCode::kIo, std::string("socket: ") + std::strerror(errno));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
      return Fail(ErrorCode::kUnavailable,
                  "cannot connect to 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
    return {};
  }

  // Blocking send: loopback peers read promptly, and a stuck peer is
  // caught by the reply deadline that follows every send.
  Result<void> Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Fail(ErrorCode::kUnavailable, std::string("send: ") + std::strerror(errno));
      data.remove_prefix(static_cast<size_t>(n));
    }
    return {};
  }

  // One CRLF- (or LF-) terminated line; at end of file the rest, if any.
  Result<std::string> ReadLine() {
    for (;;) {
      if (auto pos = buffer_.find('\n'); pos != std::string::npos) {
        std::string line = buffer_.substr(0, pos);
        buffer_.erase(0, pos + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return line;
      }
      auto more = Fill();
      if (!more) return tl::unexpected(more.error());
      if (!*more) {
        if (buffer_.empty()) return Fail(ErrorCode::kUnavailable, "connection closed by the server");
        return std::exchange(buffer_, {});
      }
    }
  }

  // Everything until the peer closes.
  Result<std::string> ReadAll() {
    for (;;) {
      auto more = Fill();
      if (!more) return tl::unexpected(more.error());
      if (!*more) return std::exchange(buffer_, {});
    }
  }

 private:
  // Appends what arrives; false at end of file.
  Result<bool> Fill() {
    for (;;) {
      if (abort_.load()) return Fail(ErrorCode::kUnavailable, "stopped");
      pollfd p{fd_, POLLIN, 0};
      int ready = poll(&p, 1, std::min(RemainingMs(deadline_), 200));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        if (steady_clock::now() >= deadline_)
          return Fail(ErrorCode::kTimeout, "no answer before the --timeout ran out");
        continue;
      }
      char chunk[16384];
      ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Fail(ErrorCode::kUnavailable, std::string("recv: ") + std::strerror(errno));
      if (n == 0) return false;
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
  }

  SteadyTime deadline_;
  const std::atomic<bool>& abort_;
  int fd_ = -1;
  std::string buffer_;
};

struct SmtpReply {
  int code = 0;
  std::string text;  // all lines, joined with " / "
};

Result<SmtpReply> ReadReply(LoopbackConnection& c) {
  SmtpReply reply;
  for (;;) {
    auto line = c.ReadLine();
    if (!line) return tl::unexpected(line.error());
    if (line->size() < 3) return Fail(ErrorCode::kInvalidArgument, "malformed SMTP reply: " + *line);
    if (!reply.text.empty()) reply.text += " / ";
    reply.text += *line;
    // RFC 5321 4.2.1: "NNN-" continues a multi-line reply, "NNN " ends it.
    if (line->size() == 3 || (*line)[3] != '-') {
      reply.code = std::atoi(line->substr(0, 3).c_str());
      return reply;
    }
  }
}

// ~3 KB of readable text, the same for every message. No line starts with
// a dot, but the content is dot-stuffed anyway (RFC 5321 4.5.2).
const std::string& DemoBody() {
  static const std::string body = [] {
    std::string b =
        "Hello,\r\n\r\nthis message was sent by `hikyaku demo`: injected over SMTP on loopback,\r\n"
        "stored in the spool with group commit, and delivered by the daemon to a\r\n"
        "local `hikyaku sink`, which counted it and threw it away.\r\n\r\n";
    for (int i = 1; i <= 36; ++i)
      b += fmt::format("{:02} The quick brown fox jumps over the lazy dog; 0123456789 ABCDEFGHIJKLMN.\r\n", i);
    b += "\r\n-- \r\nhikyaku (飛脚), the Edo-period express courier\r\n";
    return b;
  }();
  return body;
}

std::string DotStuff(std::string_view content) {
  std::string out;
  out.reserve(content.size() + 16);
  bool line_start = true;
  for (char c : content) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = (c == '\n');
  }
  if (!out.empty() && out.back() != '\n') out += "\r\n";
  return out;
}

std::string DemoMessage(uint64_t i, const std::string& date, pid_t pid) {
  std::string m;
  m += "From: hikyaku demo <" + std::string(kSender) + ">\r\n";
  m += fmt::format("To: <user{}@{}>\r\n", i, kDomain);
  m += fmt::format("Subject: hikyaku demo message {}\r\n", i);
  m += "Date: " + date + "\r\n";
  m += fmt::format("Message-ID: <demo-{}.{}@{}>\r\n", i, pid, kHostname);
  m += fmt::format("X-Hikyaku-Test: demo-{}\r\n", i);
  m += "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n";
  m += DemoBody();
  return DotStuff(m) + ".\r\n";
}

struct Injection {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint32_t> running{0};
  std::atomic<SteadyTime::rep> finished{0};  // steady ticks when the last connection ended
  std::atomic<bool> abort{false};
  std::mutex mu;
  std::string first_error;  // guarded by mu

  void Error(const std::string& e) {
    std::lock_guard lock(mu);
    if (first_error.empty()) first_error = e;
  }
  std::string error() {
    std::lock_guard lock(mu);
    return first_error;
  }
};

// One injection connection: messages first, first+stride, ... below count.
// With PIPELINING (RFC 2920) MAIL, RCPT and DATA go in one write and their
// three replies are read together; the content waits for the 354.
void InjectOver(uint16_t port, uint64_t first, uint64_t stride, uint64_t count, SteadyTime deadline,
                Injection& state) {
  auto fail = [&](const std::string& what) { state.Error("SMTP injection: " + what); };
  LoopbackConnection c(deadline, state.abort);
  if (auto ok = c.Connect(port); !ok) return fail(ok.error().message());
  auto expect = [&](int code, std::string_view step) -> bool {
    auto r = ReadReply(c);
    if (!r) {
      if (!state.abort.load()) fail(std::string(step) + ": " + r.error().message());
      return false;
    }
    if (r->code != code) {
      fail(fmt::format("{}: expected {}, got: {}", step, code, r->text));
      return false;
    }
    return true;
  };
  if (!expect(220, "greeting")) return;
  if (!c.Send("EHLO demo-client.demo.test\r\n")) return fail("EHLO: connection lost");
  auto ehlo = ReadReply(c);
  if (!ehlo || ehlo->code != 250) return fail("EHLO: " + (ehlo ? ehlo->text : ehlo.error().message()));
  const bool pipelining = ehlo->text.find("PIPELINING") != std::string::npos;
  const std::string date = message::FormatRfc5322Date(SystemClock().Now());
  const pid_t pid = getpid();

  for (uint64_t i = first; i < count; i += stride) {
    if (state.abort.load()) return;
    const std::string mail = "MAIL FROM:<" + std::string(kSender) + ">\r\n";
    const std::string rcpt = fmt::format("RCPT TO:<user{}@{}>\r\n", i, kDomain);
    if (pipelining) {
      if (!c.Send(mail + rcpt + "DATA\r\n")) return fail("connection lost");
      if (!expect(250, "MAIL FROM") || !expect(250, "RCPT TO") || !expect(354, "DATA")) return;
    } else {
      if (!c.Send(mail) || !expect(250, "MAIL FROM")) return;
      if (!c.Send(rcpt) || !expect(250, "RCPT TO")) return;
      if (!c.Send("DATA\r\n") || !expect(354, "DATA")) return;
    }
    if (!c.Send(DemoMessage(i, date, pid))) return fail("connection lost while sending a message");
    if (!expect(250, "end of DATA")) return;
    state.accepted.fetch_add(1);
  }
  (void)c.Send("QUIT\r\n");
  (void)ReadReply(c);
}

struct DeliveryStats {
  uint64_t delivered = 0;
  uint64_t deferred = 0;
  uint64_t bounced = 0;
  uint64_t expired = 0;
  uint64_t queued = 0;
};

// GET /api/v1/stats on the daemon, HTTP/1.1 with Connection: close.
Result<DeliveryStats> FetchStats(uint16_t http_port, SteadyTime deadline) {
  static const std::atomic<bool> never{false};
  LoopbackConnection c(std::min(deadline, steady_clock::now() + std::chrono::seconds(5)), never);
  if (auto ok = c.Connect(http_port); !ok) return tl::unexpected(ok.error());
  if (auto ok = c.Send("GET /api/v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"); !ok)
    return tl::unexpected(ok.error());
  auto response = c.ReadAll();
  if (!response) return tl::unexpected(response.error());
  auto head_end = response->find("\r\n\r\n");
  if (response->rfind("HTTP/1.1 200", 0) != 0 || head_end == std::string::npos)
    return Fail(ErrorCode::kInvalidArgument, "GET /api/v1/stats: " + response->substr(0, response->find('\r')));
  auto doc = nlohmann::json::parse(response->substr(head_end + 4), nullptr, false);
  if (doc.is_discarded() || !doc.contains("delivery"))
    return Fail(ErrorCode::kInvalidArgument, "GET /api/v1/stats: the answer is not the expected JSON");
  const auto& d = doc["delivery"];
  DeliveryStats s;
  s.delivered = d.value("delivered", uint64_t{0});
  s.deferred = d.value("deferred", uint64_t{0});
  s.bounced = d.value("bounced", uint64_t{0});
  s.expired = d.value("expired", uint64_t{0});
  s.queued = d.value("queued", uint64_t{0});
  return s;
}

std::optional<uint16_t> PortAfter(std::string_view line, std::string_view key) {
  auto pos = line.find(key);
  if (pos == std::string_view::npos) return std::nullopt;
  auto rest = line.substr(pos + key.size());
  auto colon = rest.substr(0, rest.find(' ')).rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  unsigned port = 0;
  for (char ch : rest.substr(colon + 1)) {
    if (ch < '0' || ch > '9') break;
    port = port * 10 + static_cast<unsigned>(ch - '0');
    if (port > 65535) return std::nullopt;
  }
  if (port == 0) return std::nullopt;
  return static_cast<uint16_t>(port);
}

std::string DaemonConfig(const fs::path& root, uint16_t sink_port) {
  // Paths are absolute: the daemon resolves relative ones against its
  // working directory. Port 0 everywhere: the demo never collides with a
  // daemon already running on 2525/8025.
  return fmt::format(R"(# Written by `hikyaku demo`.
[server]
hostname = "{hostname}"

[spool]
path = "{root}/spool"
sync = "group"

[smtp_in]
listen = ["127.0.0.1:0"]
relay_networks = ["127.0.0.0/8"]

[http]
listen = "127.0.0.1:0"

[events]
path = "{root}/events.jsonl"

[delivery]
idle_timeout = "1s"

[retry]
# The sink accepts everything; should something defer anyway, retry soon
# enough to finish within the demo.
initial = "1s"
max = "5s"

[[route]]
domain = "{domain}"
to = "127.0.0.1:{sink_port}"
)",
                     fmt::arg("hostname", kHostname), fmt::arg("root", root.string()),
                     fmt::arg("domain", kDomain), fmt::arg("sink_port", sink_port));
}

// "[##########..........] delivered 500/1000  injected 1000/1000  2.1s"
std::string ProgressLine(uint64_t injected, uint64_t delivered, uint64_t total, double elapsed) {
  constexpr int kWidth = 30;
  const int filled = total == 0 ? kWidth : static_cast<int>(std::min<uint64_t>(delivered, total) * kWidth / total);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  return fmt::format("[{}] delivered {}/{}  injected {}/{}  {:.1f}s", bar, delivered, total, injected, total,
                     elapsed);
}

// Restores the previous SIGINT/SIGTERM dispositions when the demo ends.
class SignalScope {
 public:
  SignalScope() {
    g_signal.store(0);
    struct sigaction sa{};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_{};
  struct sigaction old_term_{};
};

}  // namespace

int RunDemo(const DemoOptions& options, std::ostream& out, std::ostream& err, bool progress_is_tty) {
  SignalScope signals;
  const SteadyTime started = steady_clock::now();
  const SteadyTime deadline = started + options.timeout;

  std::string tmpl = (fs::temp_directory_path() / "hikyaku-demo-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    err << "hikyaku demo: cannot create a temporary directory " << tmpl << ": " << std::strerror(errno) << "\n";
    return kDemoSoftware;
  }
  const fs::path root = tmpl;
  bool keep = options.keep;
  // Whatever happens below, the directory is removed or its path printed.
  struct Cleanup {
    const fs::path& root;
    bool& keep;
    ~Cleanup() {
      if (keep) return;
      std::error_code ec;
      fs::remove_all(root, ec);
    }
  } cleanup{root, keep};

  auto failed = [&](int code, const std::string& message) {
    if (progress_is_tty) err << "\n";
    err << "hikyaku demo: " << message << "\n";
    // Whoever pressed Ctrl-C wants the demo gone; any other failure
    // leaves the logs for a bug report.
    if (code == kDemoInterrupted && !options.keep) return code;
    keep = true;
    err << "hikyaku demo: kept " << root.string() << " for inspection (daemon.log, sink.log, events.jsonl)\n";
    return code;
  };

  // 1. The receiver.
  ChildProcess sink("sink", root / "sink.log");
  if (auto problem = sink.Start(options.executable,
                                {"sink", "--listen", "127.0.0.1:0", "--jsonl", (root / "sink.jsonl").string(),
                                 "--hostname", "mx.demo.test"},
                                root))
    return failed(kDemoSoftware, "cannot start the sink: " + *problem);
  auto sink_ready = sink.WaitReady("hikyaku sink ready", deadline);
  if (!sink_ready) return failed(g_signal ? kDemoInterrupted : kDemoUnavailable, sink_ready.error().message());
  auto sink_port = PortAfter(*sink_ready, "listen=");
  if (!sink_port) return failed(kDemoSoftware, "cannot read the sink's port from: " + *sink_ready);

  // 2. The daemon, routing demo.test to the sink.
  const fs::path config_path = root / "hikyaku.toml";
  {
    std::ofstream config(config_path);
    config << DaemonConfig(root, *sink_port);
    if (!config.flush()) return failed(kDemoSoftware, "cannot write " + config_path.string());
  }
  ChildProcess daemon("daemon", root / "daemon.log");
  if (auto problem = daemon.Start(options.executable, {"serve", "-c", config_path.string()}, root))
    return failed(kDemoSoftware, "cannot start the daemon: " + *problem);
  auto daemon_ready = daemon.WaitReady("hikyaku ready", deadline);
  if (!daemon_ready)
    return failed(g_signal ? kDemoInterrupted : kDemoUnavailable, daemon_ready.error().message());
  auto smtp_port = PortAfter(*daemon_ready, "smtp=");
  auto http_port = PortAfter(*daemon_ready, "http=");
  if (!smtp_port || !http_port) return failed(kDemoSoftware, "cannot read the daemon's ports from: " + *daemon_ready);

  err << fmt::format(
      "hikyaku demo: daemon on smtp=127.0.0.1:{} http=127.0.0.1:{}, sink on 127.0.0.1:{} (in {})\n"
      "hikyaku demo: sending {} messages to user<N>@{} over {} SMTP connections\n",
      *smtp_port, *http_port, *sink_port, root.string(), options.messages, kDomain, options.connections);

  // 3. Injection, one thread per connection.
  Injection injection;
  const SteadyTime inject_start = steady_clock::now();
  std::vector<std::thread> workers;
  const uint32_t connections =
      static_cast<uint32_t>(std::max<uint64_t>(1, std::min<uint64_t>(options.connections, options.messages)));
  injection.running.store(connections);
  for (uint32_t k = 0; k < connections; ++k) {
    workers.emplace_back([&, k] {
      InjectOver(*smtp_port, k, connections, options.messages, deadline, injection);
      if (injection.running.fetch_sub(1) == 1)
        injection.finished.store(steady_clock::now().time_since_epoch().count());
    });
  }
  auto join_workers = [&] {
    injection.abort.store(true);
    for (auto& w : workers)
      if (w.joinable()) w.join();
  };

  // 4. Progress, until every accepted message has an outcome.
  DeliveryStats stats;
  SteadyTime last_plain_line{};
  std::string last_plain;
  std::optional<int> failure_code;
  std::string failure;
  auto render = [&](bool final_line) {
    const auto now = steady_clock::now();
    std::string line = ProgressLine(injection.accepted.load(), stats.delivered, options.messages,
                                    Seconds(now - inject_start));
    if (progress_is_tty) {
      err << "\r" << line << "\x1b[K" << (final_line ? "\n" : "") << std::flush;
    } else if (final_line || now - last_plain_line >= std::chrono::seconds(1)) {
      // One line a second at most, and only when something moved.
      std::string counts = line.substr(line.find(']'));
      counts = counts.substr(0, counts.rfind("  "));
      if (counts != last_plain || final_line) err << line << "\n" << std::flush;
      last_plain = counts;
      last_plain_line = now;
    }
  };

  for (;;) {
    if (int s = g_signal.load(); s != 0) {
      failure_code = kDemoInterrupted;
      failure = std::string("interrupted by ") + strsignal(s) + "; stopped the daemon and the sink";
      break;
    }
    if (auto status = daemon.Exited()) {
      failure_code = kDemoUnavailable;
      failure = "the daemon " + DescribeStatus(*status) + "; its log ends with:\n" + Tail(daemon.log());
      break;
    }
    if (auto status = sink.Exited()) {
      failure_code = kDemoUnavailable;
      failure = "the sink " + DescribeStatus(*status) + "; its log ends with:\n" + Tail(sink.log());
      break;
    }
    const bool injecting = injection.running.load() > 0;
    if (auto fetched = FetchStats(*http_port, deadline); fetched) {
      stats = *fetched;
    } else if (steady_clock::now() < deadline) {
      failure_code = kDemoUnavailable;
      if (auto status = daemon.Exited(std::chrono::seconds(1))) {  // most likely why
        failure = "the daemon " + DescribeStatus(*status) + "; its log ends with:\n" + Tail(daemon.log());
      } else {
        failure = "cannot read the daemon's counters: " + fetched.error().message();
      }
      break;
    }
    const uint64_t accepted = injection.accepted.load();
    // The deadline first: injection connections give up at the same
    // deadline, and that is a timeout, not the end of the injection.
    if (steady_clock::now() >= deadline) {
      failure_code = kDemoTimeout;
      failure = fmt::format(
          "timed out after {:.0f} s (--timeout): injected {} of {}, delivered {}, deferred {}, bounced {}; "
          "see `daemon.log` and `events.jsonl`",
          Seconds(options.timeout), accepted, options.messages, stats.delivered, stats.deferred,
          stats.bounced + stats.expired);
      break;
    }
    if (!injecting && stats.delivered + stats.bounced + stats.expired >= accepted) break;
    render(false);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const SteadyTime done = steady_clock::now();
  join_workers();
  const SteadyTime inject_end = SteadyTime(steady_clock::duration(injection.finished.load()));
  render(true);

  // 5. Stop both children: the daemon first, so nothing is mid-delivery
  // when the sink goes away; SIGTERM makes it flush the event log.
  const int daemon_status = daemon.Stop(kStopWait);
  const int sink_status = sink.Stop(kStopWait);
  uint64_t sink_accepted = 0;
  {
    // The sink prints its counters as one JSON line when it stops.
    bool timed_out = false;
    const SteadyTime until = steady_clock::now() + std::chrono::seconds(1);
    while (auto line = sink.ReadLine(until, timed_out)) {
      auto doc = nlohmann::json::parse(*line, nullptr, false);
      if (doc.is_object()) sink_accepted = doc.value("recipients", uint64_t{0});
    }
  }
  if (failure_code) return failed(*failure_code, failure);
  if (daemon.killed() || !WIFEXITED(daemon_status) || WEXITSTATUS(daemon_status) != 0)
    return failed(kDemoUnavailable, "the daemon did not stop cleanly: it " +
                                        (daemon.killed() ? std::string("was killed after 15 s")
                                                         : DescribeStatus(daemon_status)));
  if (sink.killed() || !WIFEXITED(sink_status) || WEXITSTATUS(sink_status) != 0)
    return failed(kDemoUnavailable, "the sink did not stop cleanly: it " +
                                        (sink.killed() ? std::string("was killed after 15 s")
                                                       : DescribeStatus(sink_status)));

  // 6. Summary.
  const uint64_t injected = injection.accepted.load();
  const double elapsed = Seconds(done - inject_start);
  const double rate = elapsed > 0 ? static_cast<double>(stats.delivered) / elapsed : 0.0;
  out << fmt::format(
      "hikyaku demo summary\n"
      "  injected   {} of {} messages over {} SMTP connections ({:.2f} s)\n"
      "  delivered  {} (the sink on 127.0.0.1:{} accepted {})\n"
      "  deferred   {}\n"
      "  bounced    {}\n"
      "  elapsed    {:.2f} s, injection to last delivery\n"
      "  rate       {:.0f} msg/s end to end\n",
      injected, options.messages, connections, Seconds(inject_end - inject_start), stats.delivered, *sink_port,
      sink_accepted, stats.deferred, stats.bounced + stats.expired, elapsed, rate);
  out << "  events     " << (root / "events.jsonl").string() << "\n"
      << "  spool      " << (root / "spool").string() << "\n";
  if (keep) {
    out << "  (kept; also there: hikyaku.toml, daemon.log, sink.log, sink.jsonl)\n";
  } else {
    out << "  (removed with the temporary directory; run `hikyaku demo --keep` to look at them)\n";
  }
  out << "\nNext:\n"
         "  hikyaku serve -c etc/hikyaku.toml     # the daemon: SMTP on 127.0.0.1:2525, HTTP on 127.0.0.1:8025\n"
         "  curl -s localhost:8025/api/v1/stats   # counters; POST /api/v1/messages injects over HTTP\n"
         "  hikyaku queues -c etc/hikyaku.toml    # delivery queues per site\n";
  out.flush();

  if (const std::string e = injection.error(); !e.empty())
    return failed(kDemoIncomplete, e);
  if (injected != options.messages || stats.delivered != options.messages)
    return failed(kDemoIncomplete, fmt::format("only {} of {} messages were delivered; see events.jsonl",
                                               stats.delivered, options.messages));
  return 0;
}

CLI::App* AddDemoCommand(CLI::App& app, std::function<int()>& run) {
  auto options = std::make_shared<DemoOptions>();
  auto timeout = std::make_shared<std::string>("120s");
  auto* cmd = app.add_subcommand(
      "demo", "first run: start a daemon and a sink on loopback, send test mail through, show the result");
  cmd->add_option("-n,--messages", options->messages, "test messages to send, one recipient each")
      ->check(CLI::Range(uint64_t{1}, uint64_t{10'000'000}))
      ->capture_default_str();
  cmd->add_option("--connections", options->connections, "concurrent SMTP injection connections")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  cmd->add_option("--timeout", *timeout, "give up after this long (\"90s\", \"5m\"; a bare number is seconds)")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos) s += "s";
            auto d = config::ParseDuration(s);
            if (!d) return d.error().message();
            return d->count() > 0 ? std::string() : "must be more than 0";
          },
          "DURATION"))
      ->capture_default_str();
  cmd->add_flag("--keep", options->keep, "keep the temporary directory (spool, events log, config, logs)");
  cmd->callback([options, timeout, &run] {
    options->timeout = *config::ParseDuration(*timeout);  // the validator accepted it
    run = [options] { return RunDemo(*options, std::cout, std::cerr, isatty(STDERR_FILENO) == 1); };
  });
  return cmd;
}

}  // namespace hikyaku::app
