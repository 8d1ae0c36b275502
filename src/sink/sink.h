// hikyaku sink: a fast SMTP receiver that discards what it accepts (like
// Postfix's smtp-sink), for tests, benchmarks and operators. It counts and
// optionally logs every accepted recipient (one JSON line each), and can
// play a difficult receiver: unknown users, greylisting, per-IP connection
// and rate limits, messages-per-connection limits, injected temporary
// failures, slow banners and replies, and the dead host that accepts TCP
// and never answers (blackhole).
//
// Protocol logic is smtp::ServerSession's (with keep_content = false and the
// policy hooks); this module moves bytes and makes the decisions.
//
// Threading: `threads` io_contexts, one thread each; a connection lives on
// one of them (round robin). One housekeeping thread flushes the JSONL
// buffer (every 100 ms), rewrites the stats file (every second) and prints
// the stats line. Sink's public methods may be called from any thread.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/error.h"

namespace CLI {
class App;
}

namespace hikyaku::sink {

struct SinkOptions {
  std::vector<std::string> listen = {"127.0.0.1:2525"};  // "ADDR:PORT", "[::1]:PORT"; port 0 = any
  std::string hostname = "sink.hikyaku.invalid";         // in the greeting and EHLO reply
  uint32_t threads = 2;                                  // capped at the number of cores
  Duration timeout = std::chrono::seconds(60);           // idle limit per read/write (and blackhole hold)
  uint64_t max_message_size = 0;                         // octets; 0 = no limit
  uint32_t max_recipients = 1000;                        // per message

  std::string jsonl_path;      // one JSON line per accepted recipient; empty = none
  std::string stats_file;      // counters as JSON, rewritten every second; empty = none
  Duration stats_interval{0};  // stats line on stderr this often; 0 = never
  uint64_t exit_after = 0;     // stop once this many messages were accepted; 0 = never

  uint32_t max_connections_per_ip = 0;       // more get "421 4.7.0 Too many connections from <ip>"
  uint32_t max_messages_per_connection = 0;  // the next MAIL gets 421 and the connection closes
  double rate_per_ip = 0;                    // MAIL commands per minute per client IP; 0 = no limit
  std::string rate_reply = "450 4.7.1 Rate limit exceeded, try again later";  // a 421 reply also closes
  std::string unknown_users;  // regex; matching recipients get 550 5.1.1
  Duration greylist{0};       // 0 = no greylisting
  double tempfail_rate = 0;   // 0..1
  uint64_t seed = 1;
  bool tempfail_messages = false;  // fail at the end of DATA instead of at RCPT
  Duration banner_delay{0};
  Duration reply_delay{0};  // before each write of replies
  bool blackhole = false;   // accept TCP, never send anything
};

// Counters at one moment. `json` is SinkCounters::ToJson (record.h) with
// two more members: "per_ip" (PerIpCounters::ToJson) and
// "per_ip_untracked"; the stats file and the final stdout line hold it.
struct SinkSnapshot {
  uint64_t connections = 0;
  uint64_t messages = 0;
  uint64_t recipients = 0;
  uint64_t rejected_recipients = 0;
  uint64_t bytes = 0;
  std::string json;
};

class Sink {
 public:
  explicit Sink(SinkOptions options);
  ~Sink();  // Stop() and Wait()
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  // Validates the options, opens the JSONL file, binds every listen
  // address and starts the threads. kInvalidArgument for a bad option,
  // kUnavailable/kIo for a socket or file that cannot be opened; nothing
  // runs then.
  Result<void> Start();
  // The bound endpoints (real ports), in option order. After Start.
  std::vector<boost::asio::ip::tcp::endpoint> local_endpoints() const;
  // Stops accepting and ends every connection; returns at once. Safe from
  // any thread, also from a connection (that is how --exit-after stops).
  void Stop();
  // Blocks until stopped, then joins the threads and flushes the JSONL
  // file and the stats file. Call from the thread that called Start.
  void Wait();
  SinkSnapshot Snapshot() const;

  struct Shared;  // state shared with the connections

 private:
  std::shared_ptr<Shared> shared_;
};

// The `hikyaku sink` command: starts a Sink, prints
// "hikyaku sink ready listen=ADDR:PORT[,...]" on stdout once listening,
// stops on SIGTERM/SIGINT or --exit-after and then prints the counters as
// one JSON line on stdout. Returns 0, or 69 (EX_UNAVAILABLE) when it could
// not start (the reason on stderr).
int RunSink(const SinkOptions& options);

// Adds the "sink" subcommand with its flags to `app`. When the command line
// selects it, parsing sets `run` to a function that runs the sink and
// returns the exit code; bad flag values are CLI11 validation errors.
CLI::App* AddSinkCommand(CLI::App& app, std::function<int()>& run);

}  // namespace hikyaku::sink
