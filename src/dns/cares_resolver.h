// CaresResolver: the Resolver that asks DNS servers, through c-ares driven by
// Boost.Asio (no thread of its own), with a TTL cache in front.
//
// What it does for ResolveMx(domain):
//   - MX query (no search list: a mail domain is always fully qualified);
//   - A and AAAA of every MX target; a target without any address is dropped
//     (none left: kUnavailable, transient);
//   - no MX records (NODATA): the domain's own A/AAAA as one host of
//     preference 0, implicit_mx = true (RFC 5321 5.1);
//   - a null MX (RFC 7505) and NXDOMAIN: kNotFound, permanent.
// Answers are cached per name until their smallest TTL runs out (clamped to
// dns.max_ttl); permanent failures for dns.negative_ttl; transient failures
// are not cached. Concurrent lookups of one name share one query. Equal MX
// preferences are reshuffled for every caller, cached or not.
//
// Servers: dns.servers, or /etc/resolv.conf when that list is empty. Each
// query waits dns.timeout per try, dns.attempts tries (per server).
//
// Thread-safety: ResolveMx and ResolveHost may be called from any thread
// after Start() succeeded; the work and every callback run on an internal
// strand of the io_context. Start() and the destructor must not run
// concurrently with anything else on the resolver (call them before the
// io_context runs or from one of its handlers). Destroying the resolver
// drops the callbacks of lookups still in flight without calling them.
#pragma once

#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "base/clock.h"
#include "base/error.h"
#include "config/config.h"
#include "dns/resolver.h"

namespace hikyaku::dns {

struct CaresStats {
  uint64_t queries = 0;     // DNS queries sent (MX, A and AAAA each count)
  uint64_t cache_hits = 0;  // MX or address lookups answered from the cache,
                            // including the addresses of MX hosts
  uint64_t coalesced = 0;   // lookups that joined one already in flight
};

class CaresResolver final : public Resolver {
 public:
  CaresResolver(boost::asio::io_context& io, const config::DnsConfig& config);
  // `clock` decides when cached answers expire; it must outlive the resolver.
  CaresResolver(boost::asio::io_context& io, const config::DnsConfig& config, const Clock& clock);
  ~CaresResolver() override;

  CaresResolver(const CaresResolver&) = delete;
  CaresResolver& operator=(const CaresResolver&) = delete;

  // Creates the c-ares channel. kUnavailable if c-ares cannot start (no
  // memory, unreadable resolv.conf), kInvalidArgument for unusable servers.
  [[nodiscard]] Result<void> Start();

  void ResolveMx(const std::string& domain, MxCallback done) override;
  void ResolveHost(const std::string& name, HostCallback done) override;

  // A snapshot; safe to call only on the resolver's strand or while the
  // io_context is not running (tests).
  CaresStats stats() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace hikyaku::dns
