// Endpoint ("127.0.0.1:2525", "[::1]:25") and Cidr ("10.0.0.0/8") values,
// parsed strictly. Used by config and by the listeners that check clients.
//
// Thread-safety: plain values.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"

namespace hikyaku::config {

// An IPv4 or IPv6 address in network byte order; IPv4 is stored as such
// (not mapped), and Contains() treats an IPv4-mapped IPv6 client as IPv4.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // first 4 used for IPv4
  // Dotted-quad IPv4 ("192.0.2.1", no leading zeros) or RFC 4291 IPv6 text
  // ("2001:db8::1", no zone index, no brackets).
  static std::optional<IpAddress> Parse(std::string_view text);
  static IpAddress V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);
  std::string ToString() const;
  // True for ::ffff:a.b.c.d, the form an IPv4 client takes on a dual-stack socket.
  bool IsV4Mapped() const;
  bool operator==(const IpAddress&) const = default;
};

struct Endpoint {
  IpAddress address;
  uint16_t port = 0;
  static Endpoint Loopback(uint16_t port);
  // "1.2.3.4:25" or "[::1]:25"; port 0 means "any free port" (tests).
  // Host names are not accepted: a listener binds an address, not a name.
  static std::optional<Endpoint> Parse(std::string_view text);
  // Same as Parse, with a kInvalidArgument Error saying what is wrong.
  static Result<Endpoint> ParseOrError(std::string_view text);
  std::string ToString() const;  // "1.2.3.4:25", "[::1]:25"
  bool operator==(const Endpoint&) const = default;
};

struct Cidr {
  IpAddress network;
  uint8_t prefix_length = 0;
  // "127.0.0.0/8", "::1/128"; a bare address means a single host. Host bits
  // set below the prefix are an error (a likely typo), reported by Parse.
  static std::optional<Cidr> Parse(std::string_view text);
  // Same as Parse, with a kInvalidArgument Error saying what is wrong (for
  // host bits, it names the network the operator probably meant).
  static Result<Cidr> ParseOrError(std::string_view text);
  // IPv4 and IPv4-mapped IPv6 (::ffff:0:0/96) are one address space here, so
  // "10.0.0.0/8" contains ::ffff:10.1.2.3 and "::ffff:10.0.0.0/104" contains
  // 10.1.2.3. A consequence: "::/0" contains every IPv4 address too.
  bool Contains(const IpAddress& address) const;
  std::string ToString() const;  // "10.0.0.0/8"; always with the prefix length
  bool operator==(const Cidr&) const = default;
};

}  // namespace hikyaku::config
