#include "sink/sink.h"

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "base/check.h"
#include "config/net.h"
#include "net/server_socket.h"
#include "sink/record.h"
#include "sink/rules.h"
#include "smtp/server_session.h"

namespace hikyaku::sink {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr Duration kFlushInterval = std::chrono::milliseconds(100);
constexpr Duration kStatsFileInterval = std::chrono::seconds(1);
// Enough for any header section a test or benchmark puts Message-ID and
// X-Hikyaku-Test in; the rest of a message is counted, never kept.
constexpr size_t kKeptHeaderLimit = 16384;
constexpr size_t kReadBufferSize = 65536;

bool IsRefusalLine(std::string_view reply) {
  if (reply.size() < 3 || (reply[0] != '4' && reply[0] != '5')) return false;
  if (reply[1] < '0' || reply[1] > '9' || reply[2] < '0' || reply[2] > '9') return false;
  if (reply.size() > 3 && reply[3] != ' ') return false;
  return reply.find_first_of("\r\n") == std::string_view::npos;
}

std::string ToString(const tcp::endpoint& ep) {
  if (ep.address().is_v6()) return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

struct Sink::Shared {
  explicit Shared(SinkOptions o) : options(std::move(o)) {}

  SinkOptions options;
  SystemClock clock;
  SinkCounters counters;
  PerIpCounters per_ip{clock.Now()};  // minute 0 starts when the sink is made

  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::vector<std::thread> threads;
  std::thread housekeeper;
  std::atomic<size_t> next_context{0};
  std::atomic<uint64_t> next_queue_id{0};

  std::atomic<bool> stopping{false};
  std::mutex stop_mutex;
  std::condition_variable stop_cv;
  bool stopped = false;  // guarded by stop_mutex
  bool started = false;
  bool joined = false;

  std::optional<RateLimiter> rate;
  std::optional<Greylist> greylist;
  std::optional<TempfailInjector> tempfail;
  std::optional<UnknownUsers> unknown;

  std::mutex ip_mutex;
  std::unordered_map<std::string, uint32_t, StringKeyHash, std::equal_to<>> connections_per_ip;

  FILE* jsonl = nullptr;
  std::mutex jsonl_mutex;
  std::string jsonl_pending;  // guarded by jsonl_mutex
  std::string jsonl_writing;  // housekeeper / Wait only

  void Stop() {
    if (stopping.exchange(true)) return;
    for (auto& c : contexts) c->stop();
    std::lock_guard lock(stop_mutex);
    stopped = true;
    stop_cv.notify_all();
  }

  void AppendJsonl(std::string_view lines) {
    std::lock_guard lock(jsonl_mutex);
    jsonl_pending.append(lines);
  }

  // Writes out what connections appended; the I/O happens outside the lock
  // so connections never wait for the disk.
  void FlushJsonl() {
    if (!jsonl) return;
    {
      std::lock_guard lock(jsonl_mutex);
      jsonl_writing.swap(jsonl_pending);
    }
    if (jsonl_writing.empty()) return;
    if (std::fwrite(jsonl_writing.data(), 1, jsonl_writing.size(), jsonl) != jsonl_writing.size()) {
      std::cerr << "hikyaku sink: writing " << options.jsonl_path << " failed\n";
    }
    std::fflush(jsonl);
    jsonl_writing.clear();
  }

  // The counters with the per-IP table added as "per_ip" (and how many
  // events came from addresses beyond its bound as "per_ip_untracked").
  std::string StatsJson() const {
    std::string json = counters.ToJson();
    json.pop_back();  // the closing brace
    json += ",\"per_ip\":";
    json += per_ip.ToJson();
    json += ",\"per_ip_untracked\":";
    json += std::to_string(per_ip.untracked_events());
    json += '}';
    return json;
  }

  // Replaced with rename(2) so a reader never sees a half-written file.
  void WriteStatsFile() {
    if (options.stats_file.empty()) return;
    std::string tmp = options.stats_file + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) return;
    std::string json = StatsJson();
    json += '\n';
    bool ok = std::fwrite(json.data(), 1, json.size(), f) == json.size();
    ok = std::fclose(f) == 0 && ok;
    if (ok) std::rename(tmp.c_str(), options.stats_file.c_str());
  }

  void PrintStatsLine(uint64_t& last_messages, TimePoint& last_time) {
    TimePoint now = clock.Now();
    uint64_t messages = counters.messages.load(std::memory_order_relaxed);
    double seconds = std::max<double>(1, (now - last_time).count()) / 1000.0;
    char rate[32];
    std::snprintf(rate, sizeof rate, "%.1f", static_cast<double>(messages - last_messages) / seconds);
    std::cerr << "hikyaku sink stats " << StatsJson() << " msg_per_s=" << rate << std::endl;
    last_messages = messages;
    last_time = now;
  }

  void Housekeep() {
    TimePoint next_file = clock.Now();
    TimePoint next_line = clock.Now() + options.stats_interval;
    uint64_t last_messages = 0;
    TimePoint last_time = clock.Now();
    for (;;) {
      {
        std::unique_lock lock(stop_mutex);
        stop_cv.wait_for(lock, kFlushInterval, [&] { return stopped; });
        if (stopped) return;  // Wait() does the final flush once the connections are gone
      }
      FlushJsonl();
      TimePoint now = clock.Now();
      if (now >= next_file) {
        WriteStatsFile();
        next_file = now + kStatsFileInterval;
      }
      if (options.stats_interval.count() > 0 && now >= next_line) {
        PrintStatsLine(last_messages, last_time);
        next_line = now + options.stats_interval;
      }
    }
  }
};

namespace {

// One client connection: the socket, a watchdog that closes it when the
// current read or write has taken longer than the timeout (RFC 5321
// 4.5.3.2 server timeouts), and the per-connection state the policy hooks
// need.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Sink::Shared> shared, tcp::socket socket)
      : shared_(std::move(shared)), socket_(std::move(socket)), timer_(socket_.get_executor()) {
    ++shared_->counters.connections;
    ++shared_->counters.open_connections;
  }

  ~Connection() {
    --shared_->counters.open_connections;
    if (!client_.empty()) shared_->per_ip.Disconnected(client_);
    if (counted_per_ip_) {
      std::lock_guard lock(shared_->ip_mutex);
      auto it = shared_->connections_per_ip.find(client_);
      if (it != shared_->connections_per_ip.end() && --it->second == 0) shared_->connections_per_ip.erase(it);
    }
  }

  asio::awaitable<void> Run() {
    error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    if (ec) co_return;
    asio::ip::address address = remote.address();
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
      address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
    }
    client_ = address.to_string();
    shared_->per_ip.Connected(client_);
    socket_.set_option(tcp::no_delay(true), ec);

    const SinkOptions& options = shared_->options;
    bool refused = false;
    if (options.max_connections_per_ip > 0) {
      std::lock_guard lock(shared_->ip_mutex);
      uint32_t& n = shared_->connections_per_ip[client_];
      counted_per_ip_ = true;
      refused = ++n > options.max_connections_per_ip;
    }

    Arm(options.timeout);
    asio::co_spawn(socket_.get_executor(), Watchdog(shared_from_this()), asio::detached);
    if (options.blackhole) {
      co_await Blackhole();
    } else {
      co_await Converse(refused);
    }
    Close();
  }

 private:
  // The dead-host case: the TCP handshake completes (the kernel does it),
  // then nothing, not even a banner. Input is read and dropped so the
  // client's writes do not block on a full window; the watchdog closes the
  // connection after the timeout without input.
  asio::awaitable<void> Blackhole() {
    std::array<char, 4096> buffer;
    for (;;) {
      error_code ec;
      co_await socket_.async_read_some(asio::buffer(buffer), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      Arm(shared_->options.timeout);
    }
  }

  smtp::ServerPolicy MakePolicy(bool refused) {
    const SinkOptions& options = shared_->options;
    smtp::ServerPolicy policy;
    policy.hostname = options.hostname;
    policy.max_message_size = options.max_message_size;
    policy.max_recipients = options.max_recipients;
    policy.relay_allowed = true;  // a sink accepts for any domain
    policy.client_address = client_;
    policy.keep_content = false;
    policy.kept_header_limit = kKeptHeaderLimit;
    if (refused) {
      ++shared_->counters.refused_connections;
      shared_->per_ip.RefusedConnection(client_);
      policy.greeting = "421 4.7.0 Too many connections from " + client_;
      return policy;
    }
    if (options.max_messages_per_connection > 0 || shared_->rate || shared_->greylist) {
      policy.mail_check = [this](std::string_view sender) { return CheckMail(sender); };
    }
    if (shared_->unknown || shared_->greylist || (shared_->tempfail && !options.tempfail_messages)) {
      policy.rcpt_check = [this](std::string_view recipient) { return CheckRcpt(recipient); };
    }
    if (shared_->tempfail && options.tempfail_messages) {
      policy.data_check = [this](std::string_view, const std::vector<std::string>&,
                                 std::string_view) -> std::optional<std::string> {
        if (!shared_->tempfail->Fail()) return std::nullopt;
        ++shared_->counters.rejected_messages;
        return "451 4.3.0 Temporary failure (injected)";
      };
    }
    return policy;
  }

  std::optional<std::string> CheckMail(std::string_view sender) {
    const SinkOptions& options = shared_->options;
    if (options.max_messages_per_connection > 0 && messages_ >= options.max_messages_per_connection) {
      ++shared_->counters.connection_limited;
      return "421 4.7.0 " + options.hostname + " Too many messages on this connection, try again later";
    }
    if (shared_->rate && !shared_->rate->Allow(client_, shared_->clock.Now())) {
      ++shared_->counters.rate_limited;
      shared_->per_ip.RateLimited(client_);
      return options.rate_reply;
    }
    sender_.assign(sender);
    return std::nullopt;
  }

  std::optional<std::string> CheckRcpt(std::string_view recipient) {
    if (shared_->unknown && shared_->unknown->Matches(recipient)) {
      ++shared_->counters.unknown_user;
      return "550 5.1.1 <" + std::string(recipient) + ">: Recipient address rejected: User unknown";
    }
    if (shared_->greylist) {
      auto wait = shared_->greylist->Check(client_, sender_, recipient, shared_->clock.Now());
      if (wait) {
        ++shared_->counters.greylisted;
        int64_t seconds = (wait->count() + 999) / 1000;
        return "450 4.7.1 Greylisted, try again in " + std::to_string(seconds) + " seconds";
      }
    }
    if (shared_->tempfail && !shared_->options.tempfail_messages && shared_->tempfail->Fail()) {
      ++shared_->counters.tempfail_recipients;
      return "451 4.3.0 Temporary failure (injected)";
    }
    return std::nullopt;
  }

  void Accepted(smtp::ServerSession::Message& m, std::string& out, smtp::ServerSession& session) {
    SinkCounters& c = shared_->counters;
    ++messages_;
    c.recipients.fetch_add(m.recipients.size(), std::memory_order_relaxed);
    c.bytes.fetch_add(m.size, std::memory_order_relaxed);
    shared_->per_ip.AcceptedRecipients(client_, m.recipients.size(), shared_->clock.Now());
    if (shared_->jsonl) {
      ReceivedRecord record{shared_->clock.Now(),
                            client_,
                            m.sender,
                            m.size,
                            HeaderFieldValue(m.content, "Message-ID"),
                            HeaderFieldValue(m.content, "X-Hikyaku-Test")};
      thread_local std::string lines;
      lines.clear();
      AppendJsonLines(lines, record, m.recipients);
      shared_->AppendJsonl(lines);
    }
    char id[20];
    auto [end, ec] = std::to_chars(id, id + sizeof id, ++shared_->next_queue_id, 16);
    session.OnCommitted(true, false, std::string_view(id, end - id), out);
    // Counted last, so that whoever sees the count (stats file, --exit-after)
    // also finds the JSONL lines of the message.
    uint64_t total = c.messages.fetch_add(1, std::memory_order_relaxed) + 1;
    if (shared_->options.exit_after != 0 && total == shared_->options.exit_after) stop_after_write_ = true;
  }

  asio::awaitable<void> Converse(bool refused) {
    const SinkOptions& options = shared_->options;
    smtp::ServerSession session(MakePolicy(refused));
    if (options.banner_delay.count() > 0) co_await Sleep(options.banner_delay);
    std::string out;
    session.Start(out);
    std::unique_ptr<char[]> buffer(new char[kReadBufferSize]);
    for (;;) {
      switch (session.Process(out)) {
        case smtp::ServerSession::Action::kNeedInput: {
          // Replies to pipelined commands go out together once input runs dry (RFC 2920 3.2).
          if (!out.empty() && !co_await Write(out)) co_return;
          Arm(options.timeout);
          error_code ec;
          size_t n = co_await socket_.async_read_some(asio::buffer(buffer.get(), kReadBufferSize),
                                                      asio::redirect_error(asio::use_awaitable, ec));
          if (ec || n == 0) co_return;
          session.Feed(std::string_view(buffer.get(), n));
          break;
        }
        case smtp::ServerSession::Action::kCommitMessage: {
          auto message = session.TakeMessage();
          Accepted(message, out, session);
          break;
        }
        case smtp::ServerSession::Action::kStartTls:   // not offered: tls_available is false
        case smtp::ServerSession::Action::kCheckAuth:  // not offered: auth_available is false
          co_return;
        case smtp::ServerSession::Action::kClose:
          if (!out.empty()) co_await Write(out);
          co_return;
      }
    }
  }

  asio::awaitable<void> Sleep(Duration d) {
    asio::steady_timer timer(socket_.get_executor(), d);
    error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }

  asio::awaitable<bool> Write(std::string& out) {
    const SinkOptions& options = shared_->options;
    if (options.reply_delay.count() > 0) co_await Sleep(options.reply_delay);
    Arm(options.timeout);
    error_code ec;
    co_await asio::async_write(socket_, asio::buffer(out), asio::redirect_error(asio::use_awaitable, ec));
    out.clear();
    if (stop_after_write_) {
      stop_after_write_ = false;
      shared_->Stop();
    }
    co_return !ec;
  }

  void Arm(Duration timeout) {
    // The banner and reply delays are the sink's own doing, not the client's.
    deadline_ = std::chrono::steady_clock::now() + timeout + shared_->options.reply_delay +
                shared_->options.banner_delay;
  }

  void Close() {
    closed_ = true;
    timer_.cancel();
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  static asio::awaitable<void> Watchdog(std::shared_ptr<Connection> self) {
    co_await net::CloseAtDeadline(self->timer_, self->deadline_, self->closed_, self->socket_);
  }

  std::shared_ptr<Sink::Shared> shared_;
  tcp::socket socket_;
  asio::steady_timer timer_;
  std::chrono::steady_clock::time_point deadline_{};
  bool closed_ = false;
  bool counted_per_ip_ = false;
  bool stop_after_write_ = false;
  std::string client_;
  std::string sender_;     // of the current transaction, for the greylist triple
  uint64_t messages_ = 0;  // accepted on this connection
};

asio::awaitable<void> AcceptLoop(std::shared_ptr<Sink::Shared> shared, tcp::acceptor& acceptor) {
  for (;;) {
    asio::io_context& target = *shared->contexts[shared->next_context++ % shared->contexts.size()];
    std::optional<tcp::socket> accepted = co_await net::AcceptNext(acceptor, target, [](const error_code& ec) {
      std::cerr << "hikyaku sink: accept failed: " << ec.message() << "\n";
    });
    if (!accepted || shared->stopping) co_return;
    tcp::socket socket = std::move(*accepted);
    auto connection = std::make_shared<Connection>(shared, std::move(socket));
    // The completion handler owns the connection until Run has finished.
    asio::co_spawn(target, connection->Run(), [connection](std::exception_ptr) {});
  }
}

}  // namespace

Sink::Sink(SinkOptions options) : shared_(std::make_shared<Shared>(std::move(options))) {}

Sink::~Sink() {
  if (!shared_->started) return;
  Stop();
  Wait();
}

Result<void> Sink::Start() {
  HIKYAKU_CHECK(!shared_->started);
  Shared& s = *shared_;
  const SinkOptions& o = s.options;
  if (o.listen.empty()) return Fail(ErrorCode::kInvalidArgument, "no --listen address");
  if (o.timeout.count() <= 0) return Fail(ErrorCode::kInvalidArgument, "--timeout must be positive");
  if (o.rate_per_ip < 0) return Fail(ErrorCode::kInvalidArgument, "--rate-per-ip must not be negative");
  if (o.rate_per_ip > 0) {
    if (!IsRefusalLine(o.rate_reply)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "--rate-reply must be one 4xx or 5xx reply line, e.g. \"450 4.7.1 Slow down\"");
    }
    s.rate.emplace(o.rate_per_ip, std::max(1.0, o.rate_per_ip));
  }
  if (o.greylist.count() > 0) s.greylist.emplace(o.greylist);
  if (o.tempfail_rate < 0 || o.tempfail_rate > 1) {
    return Fail(ErrorCode::kInvalidArgument, "--tempfail-rate must be between 0 and 1");
  }
  if (o.tempfail_rate > 0) s.tempfail.emplace(o.tempfail_rate, o.seed);
  if (!o.unknown_users.empty()) {
    auto unknown = UnknownUsers::Compile(o.unknown_users);
    if (!unknown) return tl::unexpected(unknown.error());
    s.unknown.emplace(std::move(*unknown));
  }

  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  unsigned threads = std::clamp<unsigned>(o.threads, 1, cores);
  for (unsigned i = 0; i < threads; ++i) {
    // Concurrency hint 1: each context is run by exactly one thread, so
    // asio can skip its internal locking.
    s.contexts.push_back(std::make_unique<asio::io_context>(1));
  }

  for (const std::string& text : o.listen) {
    auto endpoint = config::Endpoint::ParseOrError(text);
    if (!endpoint) return Fail(ErrorCode::kInvalidArgument, "--listen: " + endpoint.error().message());
    error_code ec;
    auto address = asio::ip::make_address(endpoint->address.ToString(), ec);
    if (ec) return Fail(ErrorCode::kInvalidArgument, "--listen: bad address " + text);
    tcp::endpoint ep(address, endpoint->port);
    auto acceptor = std::make_unique<tcp::acceptor>(*s.contexts.front());
    acceptor->open(ep.protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec && ep.protocol() == tcp::v6()) acceptor->set_option(asio::ip::v6_only(true), ec);
    if (!ec) acceptor->bind(ep, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      s.acceptors.clear();
      return Fail(ErrorCode::kUnavailable, "cannot listen on " + text + ": " + ec.message());
    }
    s.acceptors.push_back(std::move(acceptor));
  }

  if (!o.jsonl_path.empty()) {
    s.jsonl = std::fopen(o.jsonl_path.c_str(), "a");
    if (!s.jsonl) {
      s.acceptors.clear();
      return Fail(ErrorCode::kIo, "cannot open --jsonl file " + o.jsonl_path + ": " + std::strerror(errno));
    }
  }

  s.started = true;
  for (auto& acceptor : s.acceptors)
    asio::co_spawn(*s.contexts.front(), AcceptLoop(shared_, *acceptor), asio::detached);
  for (auto& c : s.contexts) {
    s.guards.push_back(asio::make_work_guard(*c));
    s.threads.emplace_back([context = c.get()] { context->run(); });
  }
  s.housekeeper = std::thread([shared = shared_.get()] { shared->Housekeep(); });
  s.WriteStatsFile();
  return {};
}

std::vector<tcp::endpoint> Sink::local_endpoints() const {
  std::vector<tcp::endpoint> out;
  for (const auto& a : shared_->acceptors) {
    error_code ec;
    out.push_back(a->local_endpoint(ec));
  }
  return out;
}

void Sink::Stop() { shared_->Stop(); }

void Sink::Wait() {
  Shared& s = *shared_;
  if (!s.started || s.joined) return;
  {
    std::unique_lock lock(s.stop_mutex);
    s.stop_cv.wait(lock, [&] { return s.stopped; });
  }
  for (auto& t : s.threads) t.join();
  s.housekeeper.join();
  s.joined = true;
  // The threads are gone: tear down here. Destroying the contexts destroys
  // the suspended connection coroutines and with them their sockets.
  s.acceptors.clear();
  s.guards.clear();
  s.contexts.clear();
  s.FlushJsonl();
  if (s.jsonl) {
    std::fclose(s.jsonl);
    s.jsonl = nullptr;
  }
  s.WriteStatsFile();
}

SinkSnapshot Sink::Snapshot() const {
  const SinkCounters& c = shared_->counters;
  SinkSnapshot snap;
  snap.connections = c.connections.load();
  snap.messages = c.messages.load();
  snap.recipients = c.recipients.load();
  snap.rejected_recipients = c.unknown_user.load() + c.greylisted.load() + c.tempfail_recipients.load();
  snap.bytes = c.bytes.load();
  snap.json = shared_->StatsJson();
  return snap;
}

int RunSink(const SinkOptions& options) {
  Sink sink(options);
  // Installed before the ready line, so a signal sent right after it is
  // not lost.
  asio::io_context signal_context(1);
  asio::signal_set signals(signal_context, SIGINT, SIGTERM);
  signals.async_wait([&](const error_code& ec, int) {
    if (!ec) sink.Stop();
  });
  if (auto started = sink.Start(); !started) {
    std::cerr << "hikyaku sink: " << started.error().ToString() << "\n";
    return 69;  // EX_UNAVAILABLE
  }
  std::thread signal_thread([&] { signal_context.run(); });
  std::string ready = "hikyaku sink ready listen=";
  for (const auto& ep : sink.local_endpoints()) ready += ToString(ep) + ",";
  ready.pop_back();
  std::cout << ready << std::endl;
  sink.Wait();
  signals.cancel();
  signal_context.stop();
  signal_thread.join();
  std::cout << sink.Snapshot().json << std::endl;
  return 0;
}

}  // namespace hikyaku::sink
