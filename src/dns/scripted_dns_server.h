// ScriptedDnsServer (tests only): a UDP DNS server on 127.0.0.1 with a free
// port, answering from records the test adds, so resolver tests can shape
// TTLs, rcodes and silence exactly and count the queries that reached it.
//
// Answers: a name with SetRcode() gets that rcode and nothing else; an
// Ignore()d name gets no answer at all; a name with records (or Exists())
// gets NOERROR with the records of the asked type (none: NODATA); any other
// name NXDOMAIN. Queries are matched case-insensitively.
//
// Thread-safety: none; it runs on the io_context it was given, which the
// test also uses for the resolver.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace hikyaku::dns {

class ScriptedDnsServer {
 public:
  static constexpr uint16_t kTypeA = 1;
  static constexpr uint16_t kTypeMx = 15;
  static constexpr uint16_t kTypeAaaa = 28;
  static constexpr int kServFail = 2;
  static constexpr int kRefused = 5;

  explicit ScriptedDnsServer(boost::asio::io_context& io);

  uint16_t port() const { return socket_.local_endpoint().port(); }

  // target "." is a null MX (RFC 7505).
  void AddMx(const std::string& name, uint16_t preference, const std::string& target, uint32_t ttl);
  void AddA(const std::string& name, const std::string& ipv4, uint32_t ttl);
  void AddAaaa(const std::string& name, const std::string& ipv6, uint32_t ttl);
  void Exists(const std::string& name);  // NOERROR/NODATA for every type
  void SetRcode(const std::string& name, int rcode);
  void Ignore(const std::string& name);

  int queries(const std::string& name, uint16_t type) const;
  int total_queries() const { return total_; }

 private:
  struct Record {
    uint32_t ttl;
    std::vector<uint8_t> rdata;
  };
  void Receive();
  std::vector<uint8_t> Answer(const uint8_t* query, size_t size);

  boost::asio::ip::udp::socket socket_;
  boost::asio::ip::udp::endpoint peer_;
  std::vector<uint8_t> buffer_;
  std::map<std::pair<std::string, uint16_t>, std::vector<Record>> records_;
  std::set<std::string> names_;
  std::map<std::string, int> rcodes_;
  std::set<std::string> ignored_;
  std::map<std::pair<std::string, uint16_t>, int> counts_;
  int total_ = 0;
};

}  // namespace hikyaku::dns
