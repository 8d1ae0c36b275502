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

namespace hikyaku::config {

// An IPv4 or IPv6 address in network byte order; IPv4 is stored as such
// (not mapped), and Contains() treats an IPv4-mapped IPv6 client as IPv4.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // first 4 used for IPv4
  static std::optional<IpAddress> Parse(std::string_view text);
  std::string ToString() const;
  bool operator==(const IpAddress&) const = default;
};

struct Endpoint {
  IpAddress address;
  uint16_t port = 0;
  static Endpoint Loopback(uint16_t port);
  // "1.2.3.4:25" or "[::1]:25"; port 0 means "any free port" (tests).
  static std::optional<Endpoint> Parse(std::string_view text);
  std::string ToString() const;
  bool operator==(const Endpoint&) const = default;
};

struct Cidr {
  IpAddress network;
  uint8_t prefix_length = 0;
  // "127.0.0.0/8", "::1/128"; a bare address means a single host. Host bits
  // set below the prefix are an error (a likely typo), reported by Parse.
  static std::optional<Cidr> Parse(std::string_view text);
  bool Contains(const IpAddress& address) const;
  std::string ToString() const;
};

}  // namespace hikyaku::config
