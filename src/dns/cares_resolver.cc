#include "dns/cares_resolver.h"

#include <ares.h>
#include <ares_nameser.h>
#include <arpa/inet.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "base/check.h"
#include "dns/dns_message.h"
#include "dns/lookup_cache.h"

namespace hikyaku::dns {
namespace {

namespace asio = boost::asio;
using Strand = asio::strand<asio::io_context::executor_type>;

// EDNS0 payload size recommended by DNS Flag Day 2020: large enough for big
// MX sets, small enough to avoid IP fragmentation. c-ares retries over TCP
// when an answer is truncated anyway.
constexpr int kEdnsPayload = 1232;
// A and AAAA answers beyond this many records are ignored: a mail host with
// more addresses gains nothing from them.
constexpr int kMaxAddresses = 32;

std::once_flag g_library_once;
int g_library_status = ARES_SUCCESS;

// The one place c-ares statuses become Errors (STYLE.md "Errors").
Error ErrorFromStatus(const std::string& name, int status) {
  switch (status) {
    case ARES_ENOTFOUND:
      return Error(ErrorCode::kNotFound, name + ": NXDOMAIN");
    case ARES_ENODATA:
      return Error(ErrorCode::kNotFound, name + ": no such record");
    case ARES_ESERVFAIL:
      return Error(ErrorCode::kUnavailable, name + ": SERVFAIL from the DNS server");
    case ARES_EREFUSED:
      return Error(ErrorCode::kUnavailable, name + ": REFUSED by the DNS server");
    case ARES_ETIMEOUT:
      return Error(ErrorCode::kTimeout, name + ": DNS timeout, no server answered");
    case ARES_ECONNREFUSED:
      return Error(ErrorCode::kUnavailable, name + ": DNS server unreachable (connection refused)");
    case ARES_EBADNAME:
      return Error(ErrorCode::kInvalidArgument, name + ": not a valid domain name");
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return Error(ErrorCode::kUnavailable, name + ": DNS resolver shutting down");
    default:
      return Error(ErrorCode::kUnavailable, name + ": DNS error: " + ares_strerror(status));
  }
}

// RFC 5321 5.1: "If there are multiple destinations with the same preference
// and there is no clear reason to favor one [...], the SMTP client SHOULD pick
// one at random to spread the load". Done per caller, so a cached answer does
// not send all mail to the same host for a whole TTL.
void ShuffleEqualPreferences(std::vector<MxHost>& hosts, std::mt19937& rng) {
  for (auto begin = hosts.begin(); begin != hosts.end();) {
    auto end = std::find_if(begin, hosts.end(),
                            [&](const MxHost& h) { return h.preference != begin->preference; });
    std::shuffle(begin, end, rng);
    begin = end;
  }
}

Duration Seconds(uint32_t ttl) {
  return std::chrono::duration_cast<Duration>(std::chrono::seconds(ttl));
}

// One c-ares query in flight; deleted by the answer callback.
struct PendingQuery {
  std::function<void(int status, std::span<const uint8_t> answer)> on_answer;
};

void OnAresAnswer(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
  std::unique_ptr<PendingQuery> query(static_cast<PendingQuery*>(arg));
  // ares_destroy() runs inside ~Impl: nothing may be touched any more.
  if (status == ARES_EDESTRUCTION) return;
  std::span<const uint8_t> answer;
  if (abuf != nullptr && alen > 0) answer = {abuf, static_cast<size_t>(alen)};
  query->on_answer(status, answer);
}

// What one of the A / AAAA queries of a host lookup found.
struct FamilyAnswer {
  int status = ARES_SUCCESS;  // ARES_ENODATA when the answer held no address
  std::vector<asio::ip::address> addresses;
  std::optional<uint32_t> min_ttl;
};

}  // namespace

class CaresResolver::Impl : public std::enable_shared_from_this<CaresResolver::Impl> {
 public:
  Impl(asio::io_context& io, const config::DnsConfig& config, const Clock& clock)
      : io_(io),
        strand_(asio::make_strand(io)),
        config_(config),
        clock_(clock),
        timer_(io),
        rng_(std::random_device{}()),
        mx_cache_(clock, config.negative_ttl, config.max_ttl),
        host_cache_(clock, config.negative_ttl, config.max_ttl) {}

  ~Impl() {
    if (channel_ != nullptr) ares_destroy(channel_);  // calls SockState(fd, 0, 0) for open sockets
    for (auto& [fd, watch] : sockets_) Forget(*watch);
  }

  Result<void> Start();
  void ResolveMx(const std::string& domain, MxCallback done);
  void ResolveHost(const std::string& name, HostCallback done);
  CaresStats stats() const { return stats_; }

 private:
  // The Asio side of one c-ares socket. c-ares owns the descriptor: Asio only
  // waits on it and gives it back (release) before c-ares closes it.
  struct SocketWatch {
    SocketWatch(asio::io_context& io) : descriptor(io) {}
    asio::posix::stream_descriptor descriptor;
    ares_socket_t fd = ARES_SOCKET_BAD;
    bool want_read = false;
    bool want_write = false;
    bool reading = false;
    bool writing = false;
    bool closed = false;
  };

  struct MxLookup {
    std::string domain;
    std::vector<MxHost> hosts;
    TimePoint expires;
    size_t pending = 0;
    bool dropped_host = false;
    std::string failures;  // "mx1.example.test: NXDOMAIN; ..."
  };

  struct HostLookup {
    std::string name;
    FamilyAnswer v4;
    FamilyAnswer v6;
    int pending = 2;
  };

  static void OnSockState(void* data, ares_socket_t fd, int readable, int writable) {
    static_cast<Impl*>(data)->SockState(fd, readable != 0, writable != 0);
  }
  void SockState(ares_socket_t fd, bool readable, bool writable);
  void Arm(const std::shared_ptr<SocketWatch>& watch);
  static void Forget(SocketWatch& watch);
  void ArmTimer();
  void Query(const std::string& name, int type,
             std::function<void(int, std::span<const uint8_t>)> on_answer);

  void DeliverMx(const MxCallback& done, Result<Destination> result);
  template <typename Callback, typename T>
  void Post(Callback done, Result<T> result);
  template <typename T, typename Callback, typename Body>
  void OnStrand(const std::string& raw, Callback done, Body body);

  void StartMx(const std::string& domain);
  void OnMxAnswer(const std::string& domain, int status, std::span<const uint8_t> answer);
  void StartImplicitMx(const std::string& domain);
  void FinishMxHosts(const std::shared_ptr<MxLookup>& lookup);
  void FinishMx(const std::string& domain, Result<Destination> result);

  void LookupHost(const std::string& name, HostCallback next);
  void OnAddressAnswer(const std::shared_ptr<HostLookup>& lookup, bool v6, int status,
                       std::span<const uint8_t> answer);
  void FinishHost(const std::shared_ptr<HostLookup>& lookup);

  asio::io_context& io_;
  Strand strand_;
  config::DnsConfig config_;
  const Clock& clock_;
  ares_channel channel_ = nullptr;
  std::unordered_map<ares_socket_t, std::shared_ptr<SocketWatch>> sockets_;
  asio::steady_timer timer_;
  std::mt19937 rng_;
  LookupCache<Destination> mx_cache_;
  LookupCache<HostAddresses> host_cache_;
  CaresStats stats_;
};

Result<void> CaresResolver::Impl::Start() {
  HIKYAKU_CHECK(channel_ == nullptr);
  std::call_once(g_library_once, [] { g_library_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (g_library_status != ARES_SUCCESS) {
    return Fail(ErrorCode::kUnavailable,
                std::string("c-ares initialisation failed: ") + ares_strerror(g_library_status));
  }
  ares_options options{};
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
             ARES_OPT_EDNSPSZ;
  options.sock_state_cb = &Impl::OnSockState;
  options.sock_state_cb_data = this;
  options.timeout = static_cast<int>(std::clamp<int64_t>(config_.timeout.count(), 1, INT32_MAX));
  options.tries = static_cast<int>(std::max<uint32_t>(config_.attempts, 1));
  // Mail domains are absolute names: no search list, no HOSTALIASES file.
  // NOCHECKRESP hands SERVFAIL/REFUSED answers to us instead of trying the
  // next server: c-ares 1.18 would report them, once every server said so,
  // as ECONNREFUSED, and the operator would read "unreachable" for what is a
  // broken zone. A recursive server's SERVFAIL already includes its own
  // retries; timeouts still rotate through dns.servers.
  options.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS | ARES_FLAG_NOCHECKRESP;
  options.ednspsz = kEdnsPayload;
  int status = ares_init_options(&channel_, &options, mask);
  if (status != ARES_SUCCESS) {
    channel_ = nullptr;
    return Fail(ErrorCode::kUnavailable, std::string("DNS resolver: ") + ares_strerror(status));
  }
  if (!config_.servers.empty()) {
    std::vector<ares_addr_port_node> nodes(config_.servers.size());
    for (size_t i = 0; i < nodes.size(); ++i) {
      const config::Endpoint& server = config_.servers[i];
      ares_addr_port_node& node = nodes[i];
      node.next = i + 1 < nodes.size() ? &nodes[i + 1] : nullptr;
      if (server.address.v6) {
        node.family = AF_INET6;
        std::memcpy(&node.addr.addr6, server.address.bytes.data(), 16);
      } else {
        node.family = AF_INET;
        std::memcpy(&node.addr.addr4, server.address.bytes.data(), 4);
      }
      int port = server.port == 0 ? 53 : server.port;
      node.udp_port = port;
      node.tcp_port = port;
    }
    status = ares_set_servers_ports(channel_, nodes.data());
    if (status != ARES_SUCCESS) {
      ares_destroy(channel_);
      channel_ = nullptr;
      return Fail(ErrorCode::kInvalidArgument,
                  std::string("dns.servers: ") + ares_strerror(status));
    }
  }
  return {};
}

// --- c-ares <-> Asio -----------------------------------------------------

void CaresResolver::Impl::SockState(ares_socket_t fd, bool readable, bool writable) {
  auto it = sockets_.find(fd);
  if (!readable && !writable) {
    // c-ares is about to close fd: give it back before the number is reused.
    if (it != sockets_.end()) {
      Forget(*it->second);
      sockets_.erase(it);
    }
    return;
  }
  if (it == sockets_.end()) {
    auto watch = std::make_shared<SocketWatch>(io_);
    boost::system::error_code ec;
    watch->descriptor.assign(fd, ec);
    // Without a watch the query still ends, by c-ares' own timeout.
    if (ec) return;
    watch->fd = fd;
    it = sockets_.emplace(fd, std::move(watch)).first;
  }
  it->second->want_read = readable;
  it->second->want_write = writable;
  Arm(it->second);
}

void CaresResolver::Impl::Forget(SocketWatch& watch) {
  watch.closed = true;
  // release() cancels the pending waits and leaves the descriptor open.
  if (watch.descriptor.is_open()) watch.descriptor.release();
}

// Asio's epoll reactor is edge-triggered: a wait armed after c-ares drained
// the socket wakes on the next datagram. On a single-threaded io_context no
// edge can slip between the drain and the re-arm (epoll is only polled
// between handlers); on a multi-threaded one, a lost edge costs a c-ares
// retry after dns.timeout, never a hang.
void CaresResolver::Impl::Arm(const std::shared_ptr<SocketWatch>& watch) {
  std::weak_ptr<Impl> weak = weak_from_this();
  if (watch->want_read && !watch->reading) {
    watch->reading = true;
    watch->descriptor.async_wait(
        asio::posix::descriptor_base::wait_read,
        asio::bind_executor(strand_, [weak, watch](const boost::system::error_code& ec) {
          watch->reading = false;
          auto self = weak.lock();
          if (!self || ec || watch->closed) return;
          ares_process_fd(self->channel_, watch->fd, ARES_SOCKET_BAD);
          if (!watch->closed) self->Arm(watch);
          self->ArmTimer();
        }));
  }
  if (watch->want_write && !watch->writing) {
    watch->writing = true;
    watch->descriptor.async_wait(
        asio::posix::descriptor_base::wait_write,
        asio::bind_executor(strand_, [weak, watch](const boost::system::error_code& ec) {
          watch->writing = false;
          auto self = weak.lock();
          if (!self || ec || watch->closed || !watch->want_write) return;
          ares_process_fd(self->channel_, ARES_SOCKET_BAD, watch->fd);
          if (!watch->closed) self->Arm(watch);
          self->ArmTimer();
        }));
  }
}

// c-ares keeps the retry and timeout schedule; the timer wakes it at the
// next deadline it reports.
void CaresResolver::Impl::ArmTimer() {
  timeval tv{};
  if (ares_timeout(channel_, nullptr, &tv) == nullptr) {
    timer_.cancel();
    return;
  }
  timer_.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
  std::weak_ptr<Impl> weak = weak_from_this();
  timer_.async_wait(asio::bind_executor(strand_, [weak](const boost::system::error_code& ec) {
    auto self = weak.lock();
    if (!self || ec) return;
    ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    self->ArmTimer();
  }));
}

void CaresResolver::Impl::Query(const std::string& name, int type,
                                std::function<void(int, std::span<const uint8_t>)> on_answer) {
  ++stats_.queries;
  auto* query = new PendingQuery{std::move(on_answer)};
  // ares_query, not ares_search: the search list does not apply (see Start).
  ares_query(channel_, name.c_str(), ns_c_in, type, &OnAresAnswer, query);
  ArmTimer();
}

// --- delivering answers --------------------------------------------------

// User callbacks run in a handler of their own, never inside c-ares: a
// callback may then start lookups or even destroy the resolver.
template <typename Callback, typename T>
void CaresResolver::Impl::Post(Callback done, Result<T> result) {
  std::weak_ptr<Impl> weak = weak_from_this();
  asio::post(strand_, [weak, done = std::move(done), result = std::move(result)]() mutable {
    if (weak.expired()) return;  // destroyed: pending callbacks are dropped (header)
    done(std::move(result));
  });
}

// The common start of every lookup: `body(impl, raw, done)` runs on the
// strand, unless the resolver is destroyed by then (the callback is dropped,
// as for answers) or was never started (`done` gets kUnavailable).
template <typename T, typename Callback, typename Body>
void CaresResolver::Impl::OnStrand(const std::string& raw, Callback done, Body body) {
  std::weak_ptr<Impl> weak = weak_from_this();
  asio::post(strand_, [weak, raw, done = std::move(done), body = std::move(body)]() mutable {
    auto self = weak.lock();
    if (!self) return;
    if (self->channel_ == nullptr) {
      return self->Post(std::move(done),
                        Result<T>(Fail(ErrorCode::kUnavailable, raw + ": DNS resolver not started")));
    }
    body(*self, raw, std::move(done));
  });
}

void CaresResolver::Impl::DeliverMx(const MxCallback& done, Result<Destination> result) {
  if (result) ShuffleEqualPreferences(result->hosts, rng_);
  Post(done, std::move(result));
}

// --- MX ----------------------------------------------------------------

void CaresResolver::Impl::ResolveMx(const std::string& raw, MxCallback done) {
  OnStrand<Destination>(raw, std::move(done), [](Impl& impl, const std::string& asked, MxCallback done) {
    std::string domain = NormalizeName(asked);
    // RFC 5321 4.1.3: mail to an address literal goes to that address.
    if (auto literal = ParseAddressLiteral(domain)) {
      Destination dest{domain, {MxHost{domain, 0, {*literal}, 25}}, false, TimePoint::max(), {}};
      return impl.Post(std::move(done), Result<Destination>(std::move(dest)));
    }
    if (!IsValidName(domain)) {
      return impl.Post(std::move(done), Result<Destination>(Fail(ErrorCode::kInvalidArgument,
                                                                 "'" + asked + "': not a valid domain name")));
    }
    if (auto hit = impl.mx_cache_.Find(domain)) {
      ++impl.stats_.cache_hits;
      return impl.DeliverMx(done, std::move(*hit));
    }
    bool first = impl.mx_cache_.Join(
        domain, [self = &impl, done = std::move(done)](Result<Destination> result) mutable {
          self->DeliverMx(done, std::move(result));
        });
    if (!first) {
      ++impl.stats_.coalesced;
      return;
    }
    impl.StartMx(domain);
  });
}

void CaresResolver::Impl::StartMx(const std::string& domain) {
  Query(domain, ns_t_mx, [this, domain](int status, std::span<const uint8_t> answer) {
    OnMxAnswer(domain, status, answer);
  });
}

void CaresResolver::Impl::OnMxAnswer(const std::string& domain, int status,
                                     std::span<const uint8_t> answer) {
  if (status == ARES_ENODATA) return StartImplicitMx(domain);
  if (status != ARES_SUCCESS)
    return FinishMx(domain, tl::unexpected(ErrorFromStatus(domain, status)));

  ares_mx_reply* replies = nullptr;
  int parsed = ares_parse_mx_reply(answer.data(), static_cast<int>(answer.size()), &replies);
  // An answer without MX records (e.g. only a CNAME to a name without MX)
  // is NODATA as far as mail is concerned.
  if (parsed == ARES_ENODATA) return StartImplicitMx(domain);
  if (parsed != ARES_SUCCESS) {
    return FinishMx(domain, Fail(ErrorCode::kUnavailable,
                                 domain + ": malformed MX answer: " + ares_strerror(parsed)));
  }
  auto lookup = std::make_shared<MxLookup>();
  lookup->domain = domain;
  bool null_mx = false;
  for (ares_mx_reply* r = replies; r != nullptr; r = r->next) {
    std::string target = NormalizeName(r->host == nullptr ? "" : r->host);
    // c-ares gives the root name "." as the empty string.
    if (target.empty()) {
      null_mx = true;
      continue;
    }
    lookup->hosts.push_back(MxHost{std::move(target), r->priority, {}, 25});
  }
  ares_free_data(replies);

  // RFC 7505 3: a null MX is the domain's only MX record; a sender MUST NOT
  // deliver to it. If a (misconfigured) domain lists real hosts beside it,
  // the real hosts are tried: a delivery attempt they can refuse is better
  // than a bounce the recipient's admin never sees the reason for.
  if (null_mx && lookup->hosts.empty()) {
    return FinishMx(domain, Fail(ErrorCode::kNotFound,
                                 domain + ": null MX (RFC 7505): the domain accepts no mail"));
  }
  std::stable_sort(lookup->hosts.begin(), lookup->hosts.end(),
                   [](const MxHost& a, const MxHost& b) { return a.preference < b.preference; });
  lookup->expires = clock_.Now() + Seconds(MinAnswerTtl(answer, ns_t_mx).value_or(0));

  // One token for this loop, so a lookup answered from the cache inside
  // LookupHost cannot finish the MX lookup before every host was asked.
  lookup->pending = lookup->hosts.size() + 1;
  for (size_t i = 0; i < lookup->hosts.size(); ++i) {
    LookupHost(lookup->hosts[i].name, [this, lookup, i](Result<HostAddresses> result) {
      if (result) {
        lookup->hosts[i].addresses = std::move(result->addresses);
        lookup->expires = std::min(lookup->expires, result->expires);
      } else {
        lookup->dropped_host = true;
        if (!lookup->failures.empty()) lookup->failures += "; ";
        lookup->failures += result.error().message();
      }
      if (--lookup->pending == 0) FinishMxHosts(lookup);
    });
  }
  if (--lookup->pending == 0) FinishMxHosts(lookup);
}

void CaresResolver::Impl::FinishMxHosts(const std::shared_ptr<MxLookup>& lookup) {
  std::erase_if(lookup->hosts, [](const MxHost& h) { return h.addresses.empty(); });
  if (lookup->hosts.empty()) {
    return FinishMx(lookup->domain, Fail(ErrorCode::kUnavailable,
                                         lookup->domain + ": no address for any MX host (" +
                                             lookup->failures + ")"));
  }
  // A host dropped now may answer soon: look again after negative_ttl rather
  // than a possibly long MX TTL.
  if (lookup->dropped_host) {
    lookup->expires = std::min(lookup->expires, clock_.Now() + config_.negative_ttl);
  }
  FinishMx(lookup->domain,
           Destination{lookup->domain, std::move(lookup->hosts), false, lookup->expires, {}});
}

// RFC 5321 5.1: "If an empty list of MXs is returned, the address is treated
// as if it was associated with an implicit MX RR, with a preference of 0,
// pointing to that host."
void CaresResolver::Impl::StartImplicitMx(const std::string& domain) {
  LookupHost(domain, [this, domain](Result<HostAddresses> result) {
    if (!result) {
      if (result.error().code() == ErrorCode::kNotFound) {
        return FinishMx(domain,
                        Fail(ErrorCode::kNotFound, domain + ": no MX and no A/AAAA record"));
      }
      return FinishMx(domain, tl::unexpected(result.error()));
    }
    Destination dest{
        domain, {MxHost{domain, 0, std::move(result->addresses), 25}}, true, result->expires, {}};
    FinishMx(domain, std::move(dest));
  });
}

void CaresResolver::Impl::FinishMx(const std::string& domain, Result<Destination> result) {
  auto [answer, waiters] = mx_cache_.Complete(domain, std::move(result));
  for (auto& waiter : waiters) waiter(answer);
}

// --- A / AAAA ------------------------------------------------------------

void CaresResolver::Impl::ResolveHost(const std::string& raw, HostCallback done) {
  OnStrand<HostAddresses>(raw, std::move(done), [](Impl& impl, const std::string& asked, HostCallback done) {
    std::string name = NormalizeName(asked);
    if (!IsValidName(name)) {
      return impl.Post(std::move(done), Result<HostAddresses>(Fail(ErrorCode::kInvalidArgument,
                                                                   "'" + asked + "': not a valid host name")));
    }
    impl.LookupHost(
        name, [self = &impl, done = std::move(done)](Result<HostAddresses> result) mutable {
          self->Post(std::move(done), std::move(result));
        });
  });
}

// `next` runs inline (from the cache, or when the queries finish).
void CaresResolver::Impl::LookupHost(const std::string& name, HostCallback next) {
  if (auto hit = host_cache_.Find(name)) {
    ++stats_.cache_hits;
    return next(std::move(*hit));
  }
  if (!host_cache_.Join(name, std::move(next))) {
    ++stats_.coalesced;
    return;
  }
  auto lookup = std::make_shared<HostLookup>();
  lookup->name = name;
  // Both families at once: RFC 5321 5.1 lets the client use either, and
  // asking in parallel halves the latency.
  Query(name, ns_t_a, [this, lookup](int status, std::span<const uint8_t> answer) {
    OnAddressAnswer(lookup, false, status, answer);
  });
  Query(name, ns_t_aaaa, [this, lookup](int status, std::span<const uint8_t> answer) {
    OnAddressAnswer(lookup, true, status, answer);
  });
}

void CaresResolver::Impl::OnAddressAnswer(const std::shared_ptr<HostLookup>& lookup, bool v6,
                                          int status, std::span<const uint8_t> answer) {
  FamilyAnswer& out = v6 ? lookup->v6 : lookup->v4;
  out.status = status;
  if (status == ARES_SUCCESS) {
    const auto* data = answer.data();
    int len = static_cast<int>(answer.size());
    int count = kMaxAddresses;
    if (v6) {
      ares_addr6ttl ttls[kMaxAddresses];
      out.status = ares_parse_aaaa_reply(data, len, nullptr, ttls, &count);
      for (int i = 0; out.status == ARES_SUCCESS && i < count; ++i) {
        asio::ip::address_v6::bytes_type bytes;
        std::memcpy(bytes.data(), &ttls[i].ip6addr, 16);
        out.addresses.push_back(asio::ip::address_v6(bytes));
        uint32_t ttl = static_cast<uint32_t>(std::max(ttls[i].ttl, 0));
        out.min_ttl = std::min(ttl, out.min_ttl.value_or(ttl));
      }
    } else {
      ares_addrttl ttls[kMaxAddresses];
      out.status = ares_parse_a_reply(data, len, nullptr, ttls, &count);
      for (int i = 0; out.status == ARES_SUCCESS && i < count; ++i) {
        out.addresses.push_back(asio::ip::address_v4(ntohl(ttls[i].ipaddr.s_addr)));
        uint32_t ttl = static_cast<uint32_t>(std::max(ttls[i].ttl, 0));
        out.min_ttl = std::min(ttl, out.min_ttl.value_or(ttl));
      }
    }
    if (out.status == ARES_SUCCESS && out.addresses.empty()) out.status = ARES_ENODATA;
  }
  if (--lookup->pending == 0) FinishHost(lookup);
}

void CaresResolver::Impl::FinishHost(const std::shared_ptr<HostLookup>& lookup) {
  const std::string& name = lookup->name;
  const FamilyAnswer& v4 = lookup->v4;
  const FamilyAnswer& v6 = lookup->v6;
  Result<HostAddresses> result = Fail(ErrorCode::kInternal, name);
  if (!v4.addresses.empty() || !v6.addresses.empty()) {
    // One family failing transiently does not hide the other's addresses.
    HostAddresses host{name, v4.addresses, {}};
    host.addresses.insert(host.addresses.end(), v6.addresses.begin(), v6.addresses.end());
    uint32_t ttl = std::min(v4.min_ttl.value_or(UINT32_MAX), v6.min_ttl.value_or(UINT32_MAX));
    host.expires = clock_.Now() + Seconds(ttl);
    result = std::move(host);
  } else {
    auto negative = [](int s) { return s == ARES_ENOTFOUND || s == ARES_ENODATA; };
    if (!negative(v4.status)) {
      result = tl::unexpected(ErrorFromStatus(name, v4.status));
    } else if (!negative(v6.status)) {
      result = tl::unexpected(ErrorFromStatus(name, v6.status));
    } else if (v4.status == ARES_ENOTFOUND || v6.status == ARES_ENOTFOUND) {
      result = Fail(ErrorCode::kNotFound, name + ": NXDOMAIN");
    } else {
      result = Fail(ErrorCode::kNotFound, name + ": no A/AAAA record");
    }
  }
  auto [answer, waiters] = host_cache_.Complete(name, std::move(result));
  for (auto& waiter : waiters) waiter(answer);
}

// --- CaresResolver -------------------------------------------------------

namespace {
const SystemClock& DefaultClock() {
  static const SystemClock clock;
  return clock;
}
}  // namespace

CaresResolver::CaresResolver(asio::io_context& io, const config::DnsConfig& config)
    : CaresResolver(io, config, DefaultClock()) {}

CaresResolver::CaresResolver(asio::io_context& io, const config::DnsConfig& config,
                             const Clock& clock)
    : impl_(std::make_shared<Impl>(io, config, clock)) {}

CaresResolver::~CaresResolver() = default;

Result<void> CaresResolver::Start() { return impl_->Start(); }

void CaresResolver::ResolveMx(const std::string& domain, MxCallback done) {
  impl_->ResolveMx(domain, std::move(done));
}

void CaresResolver::ResolveHost(const std::string& name, HostCallback done) {
  impl_->ResolveHost(name, std::move(done));
}

CaresStats CaresResolver::stats() const { return impl_->stats(); }

}  // namespace hikyaku::dns
