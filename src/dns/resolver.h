// Resolver: where mail for a domain goes — the MX hosts of a recipient
// domain with their addresses (RFC 5321 section 5.1), and the addresses of a
// single host name.
//
// Contract of ResolveMx(domain, done): `done` is called exactly once, never
// before ResolveMx returns. On success the Destination lists the hosts to try
// in order (lowest preference first; hosts of equal preference in random
// order, RFC 5321 5.1), each with at least one address. On failure the Error
// says whether trying later can help, through its code:
//   kNotFound (permanent)        NXDOMAIN; a null MX (RFC 7505); neither MX
//                                nor A/AAAA records for the domain.
//   kInvalidArgument (permanent) the domain is not a valid DNS name.
//   kTimeout (transient)         no DNS server answered in time.
//   kUnavailable (transient)     SERVFAIL, REFUSED, no address for any MX
//                                host, the resolver is not running.
// Error::transient() tells the two classes apart; messages name the domain
// and what happened ("example.test: NXDOMAIN", "example.test: null MX
// (RFC 7505): the domain accepts no mail").
//
// ResolveHost(name, done) is the same for one host name (its A and AAAA
// records): kNotFound when the name does not exist or has no address.
//
// Domain and host names compare case-insensitively; a trailing dot is
// ignored. The results carry them in lower case without the dot.
//
// Thread-safety: implementations say on which thread `done` runs (for
// CaresResolver: a strand of its io_context). `done` must not block.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "base/error.h"

namespace hikyaku::dns {

struct MxHost {
  std::string name;  // the MX target (or the domain itself for an implicit MX)
  uint16_t preference = 0;
  std::vector<boost::asio::ip::address> addresses;  // IPv4 first, then IPv6; never empty
  uint16_t port = 25;
};

struct Destination {
  std::string domain;
  std::vector<MxHost> hosts;  // by preference; equal preferences shuffled
  bool implicit_mx = false;   // no MX records: the domain's own A/AAAA (RFC 5321 5.1)
  TimePoint expires;          // the answer may be reused until then (smallest TTL)
  std::string site;           // a static route's site ([[route]] site = ...); empty otherwise
};

struct HostAddresses {
  std::string name;
  std::vector<boost::asio::ip::address> addresses;  // IPv4 first, then IPv6; never empty
  TimePoint expires;
};

class Resolver {
 public:
  using MxCallback = std::function<void(Result<Destination>)>;
  using HostCallback = std::function<void(Result<HostAddresses>)>;

  virtual ~Resolver() = default;

  virtual void ResolveMx(const std::string& domain, MxCallback done) = 0;
  virtual void ResolveHost(const std::string& name, HostCallback done) = 0;
};

// "Example.TEST." -> "example.test": the form names take in results and caches.
std::string NormalizeName(std::string_view name);

// True for a name DNS can look up: 1..253 characters of printable ASCII
// without spaces, in labels of 1..63 characters (the form NormalizeName gives).
bool IsValidName(std::string_view normalized);

// The address of an RFC 5321 4.1.3 address literal domain, "[192.0.2.1]" or
// "[IPv6:2001:db8::1]"; nullopt for anything else. Mail to such a domain goes
// to that address, without DNS.
std::optional<boost::asio::ip::address> ParseAddressLiteral(std::string_view domain);

}  // namespace hikyaku::dns
