#include "dns/resolver.h"

#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/address_v6.hpp>

namespace hikyaku::dns {

std::string NormalizeName(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsValidName(std::string_view name) {
  // RFC 1035 2.3.4: 255 octets on the wire, i.e. 253 characters of text.
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (c <= ' ' || c >= 0x7f) return false;
    if (++label > 63) return false;
  }
  return label != 0;
}

std::optional<boost::asio::ip::address> ParseAddressLiteral(std::string_view domain) {
  if (domain.size() < 3 || domain.front() != '[' || domain.back() != ']') return std::nullopt;
  std::string_view inner = domain.substr(1, domain.size() - 2);
  boost::system::error_code ec;
  constexpr std::string_view kV6Tag = "IPv6:";
  if (inner.size() > kV6Tag.size() &&
      std::equal(kV6Tag.begin(), kV6Tag.end(), inner.begin(),
                 [](char a, char b) { return (a | 0x20) == (b | 0x20); })) {
    auto v6 = boost::asio::ip::make_address_v6(std::string(inner.substr(kV6Tag.size())), ec);
    if (ec) return std::nullopt;
    return boost::asio::ip::address(v6);
  }
  auto v4 = boost::asio::ip::make_address_v4(std::string(inner), ec);
  if (ec) return std::nullopt;
  return boost::asio::ip::address(v4);
}

}  // namespace hikyaku::dns
