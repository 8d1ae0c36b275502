#include "config/net.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace hikyaku::config {
namespace {

// inet_pton needs a NUL-terminated string; addresses are short, so a stack
// buffer avoids an allocation and bounds the input at the same time.
constexpr size_t kMaxAddressText = INET6_ADDRSTRLEN;

// Decimal without sign, without leading zeros (except "0"), within `max`.
std::optional<uint32_t> ParseDecimal(std::string_view text, uint32_t max) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  if (text.size() > 1 && text[0] == '0') return std::nullopt;
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > max) {
    return std::nullopt;
  }
  return value;
}

// The address as 16 bytes in the IPv4-mapped space (RFC 4291 2.5.5.2), so
// that IPv4 and mapped IPv6 compare by the same prefix rule.
std::array<uint8_t, 16> Unified(const IpAddress& address) {
  if (address.v6) return address.bytes;
  std::array<uint8_t, 16> out{};
  out[10] = 0xff;
  out[11] = 0xff;
  std::memcpy(out.data() + 12, address.bytes.data(), 4);
  return out;
}

bool PrefixMatches(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b,
                   unsigned bits) {
  unsigned full = bits / 8;
  if (std::memcmp(a.data(), b.data(), full) != 0) return false;
  unsigned rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}

}  // namespace

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty() || text.size() >= kMaxAddressText) return std::nullopt;
  char buffer[kMaxAddressText];
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  IpAddress address;
  // glibc's inet_pton accepts only the four-part dotted decimal form for
  // AF_INET (no "10.1", no octal, no hex), which is the strictness we want.
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buffer, address.bytes.data()) != 1) return std::nullopt;
    address.v6 = false;
    return address;
  }
  if (inet_pton(AF_INET6, buffer, address.bytes.data()) != 1) return std::nullopt;
  address.v6 = true;
  return address;
}

IpAddress IpAddress::V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddress address;
  address.bytes[0] = a;
  address.bytes[1] = b;
  address.bytes[2] = c;
  address.bytes[3] = d;
  return address;
}

bool IpAddress::IsV4Mapped() const {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return v6 && std::memcmp(bytes.data(), kPrefix, sizeof kPrefix) == 0;
}

std::string IpAddress::ToString() const {
  char buffer[kMaxAddressText];
  if (inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buffer, sizeof buffer) == nullptr) {
    return "?";  // cannot happen with a buffer of INET6_ADDRSTRLEN
  }
  return buffer;
}

Endpoint Endpoint::Loopback(uint16_t port) { return Endpoint{IpAddress::V4(127, 0, 0, 1), port}; }

std::optional<Endpoint> Endpoint::Parse(std::string_view text) {
  auto parsed = ParseOrError(text);
  if (!parsed) return std::nullopt;
  return *parsed;
}

Result<Endpoint> Endpoint::ParseOrError(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    // RFC 3986 3.2.2: an IPv6 literal is bracketed so its colons are not
    // mistaken for the port separator.
    size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return Fail(ErrorCode::kInvalidArgument, "missing ']' after the IPv6 address");
    }
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return Fail(ErrorCode::kInvalidArgument, "expected ':PORT' after ']'");
    }
    port = rest.substr(1);
    auto address = IpAddress::Parse(host);
    if (!address || !address->v6) {
      return Fail(ErrorCode::kInvalidArgument,
                  "\"" + std::string(host) + "\" is not an IPv6 address");
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return Fail(ErrorCode::kInvalidArgument, "expected IP:PORT, e.g. 127.0.0.1:25");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Fail(ErrorCode::kInvalidArgument,
                  "an IPv6 address must be in brackets, e.g. [::1]:25");
    }
  }
  auto address = IpAddress::Parse(host);
  if (!address) {
    return Fail(ErrorCode::kInvalidArgument,
                "\"" + std::string(host) + "\" is not an IP address (host names are not accepted)");
  }
  auto number = ParseDecimal(port, 65535);
  if (!number) {
    return Fail(ErrorCode::kInvalidArgument,
                "\"" + std::string(port) + "\" is not a port number (0-65535)");
  }
  return Endpoint{*address, static_cast<uint16_t>(*number)};
}

std::string Endpoint::ToString() const {
  std::string host = address.ToString();
  if (address.v6) host = "[" + host + "]";
  return host + ":" + std::to_string(port);
}

std::optional<Cidr> Cidr::Parse(std::string_view text) {
  auto parsed = ParseOrError(text);
  if (!parsed) return std::nullopt;
  return *parsed;
}

Result<Cidr> Cidr::ParseOrError(std::string_view text) {
  size_t slash = text.find('/');
  std::string_view host = text.substr(0, slash);
  auto address = IpAddress::Parse(host);
  if (!address) {
    return Fail(ErrorCode::kInvalidArgument, "\"" + std::string(host) + "\" is not an IP address");
  }
  unsigned max_length = address->v6 ? 128 : 32;
  Cidr cidr{*address, static_cast<uint8_t>(max_length)};
  if (slash != std::string_view::npos) {
    auto length = ParseDecimal(text.substr(slash + 1), max_length);
    if (!length) {
      return Fail(ErrorCode::kInvalidArgument, "\"" + std::string(text.substr(slash + 1)) +
                                                   "\" is not a prefix length (0-" +
                                                   std::to_string(max_length) + ")");
    }
    cidr.prefix_length = static_cast<uint8_t>(*length);
  }
  // Host bits below the prefix usually mean a typo ("10.1.0.0/8" for
  // "10.1.0.0/16"); silently masking them would widen or move the network.
  Cidr masked = cidr;
  unsigned bits = cidr.prefix_length;
  size_t size = address->v6 ? 16 : 4;
  for (size_t i = 0; i < size; ++i) {
    unsigned keep = bits >= 8 ? 8 : bits;
    bits -= keep;
    uint8_t mask = keep == 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
    masked.network.bytes[i] &= mask;
  }
  if (!(masked.network == cidr.network)) {
    return Fail(ErrorCode::kInvalidArgument,
                "host bits are set below the /" + std::to_string(cidr.prefix_length) +
                    " prefix; did you mean " + masked.ToString() + "?");
  }
  return cidr;
}

bool Cidr::Contains(const IpAddress& address) const {
  unsigned bits = network.v6 ? prefix_length : 96u + prefix_length;
  return PrefixMatches(Unified(network), Unified(address), bits);
}

std::string Cidr::ToString() const {
  return network.ToString() + "/" + std::to_string(prefix_length);
}

}  // namespace hikyaku::config
