#include "dns/scripted_dns_server.h"

#include <boost/asio/ip/address.hpp>

#include "dns/resolver.h"

namespace hikyaku::dns {
namespace {

void PutU16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void PutName(std::vector<uint8_t>& out, const std::string& name) {
  size_t start = 0;
  while (start < name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    out.push_back(static_cast<uint8_t>(dot - start));
    out.insert(out.end(), name.begin() + start, name.begin() + dot);
    start = dot + 1;
  }
  out.push_back(0);
}

}  // namespace

ScriptedDnsServer::ScriptedDnsServer(boost::asio::io_context& io)
    : socket_(io, boost::asio::ip::udp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)),
      buffer_(4096) {
  Receive();
}

void ScriptedDnsServer::AddMx(const std::string& name, uint16_t preference,
                              const std::string& target, uint32_t ttl) {
  std::vector<uint8_t> rdata;
  PutU16(rdata, preference);
  PutName(rdata, target == "." ? "" : NormalizeName(target));
  records_[{NormalizeName(name), kTypeMx}].push_back({ttl, rdata});
  names_.insert(NormalizeName(name));
}

void ScriptedDnsServer::AddA(const std::string& name, const std::string& ipv4, uint32_t ttl) {
  auto bytes = boost::asio::ip::make_address_v4(ipv4).to_bytes();
  records_[{NormalizeName(name), kTypeA}].push_back({ttl, {bytes.begin(), bytes.end()}});
  names_.insert(NormalizeName(name));
}

void ScriptedDnsServer::AddAaaa(const std::string& name, const std::string& ipv6, uint32_t ttl) {
  auto bytes = boost::asio::ip::make_address_v6(ipv6).to_bytes();
  records_[{NormalizeName(name), kTypeAaaa}].push_back({ttl, {bytes.begin(), bytes.end()}});
  names_.insert(NormalizeName(name));
}

void ScriptedDnsServer::Exists(const std::string& name) { names_.insert(NormalizeName(name)); }
void ScriptedDnsServer::SetRcode(const std::string& name, int rcode) {
  rcodes_[NormalizeName(name)] = rcode;
}
void ScriptedDnsServer::Ignore(const std::string& name) { ignored_.insert(NormalizeName(name)); }

int ScriptedDnsServer::queries(const std::string& name, uint16_t type) const {
  auto it = counts_.find({NormalizeName(name), type});
  return it == counts_.end() ? 0 : it->second;
}

void ScriptedDnsServer::Receive() {
  socket_.async_receive_from(boost::asio::buffer(buffer_), peer_,
                             [this](const boost::system::error_code& ec, size_t size) {
                               if (ec == boost::asio::error::operation_aborted) return;
                               if (!ec) {
                                 std::vector<uint8_t> reply = Answer(buffer_.data(), size);
                                 boost::system::error_code send_ec;
                                 if (!reply.empty())
                                   socket_.send_to(boost::asio::buffer(reply), peer_, 0, send_ec);
                               }
                               Receive();
                             });
}

std::vector<uint8_t> ScriptedDnsServer::Answer(const uint8_t* q, size_t size) {
  if (size < 12 || q[4] != 0 || q[5] != 1) return {};
  size_t at = 12;
  std::string name;
  while (at < size && q[at] != 0) {
    size_t len = q[at++];
    if (len > 63 || at + len > size) return {};
    if (!name.empty()) name += '.';
    name.append(reinterpret_cast<const char*>(q + at), len);
    at += len;
  }
  if (at + 5 > size) return {};
  ++at;  // root label
  uint16_t type = static_cast<uint16_t>((q[at] << 8) | q[at + 1]);
  at += 4;
  size_t question_end = at;
  name = NormalizeName(name);
  ++counts_[{name, type}];
  ++total_;
  if (ignored_.count(name)) return {};

  int rcode = 0;
  const std::vector<Record>* answers = nullptr;
  if (auto it = rcodes_.find(name); it != rcodes_.end()) {
    rcode = it->second;
  } else if (!names_.count(name)) {
    rcode = 3;  // NXDOMAIN
  } else if (auto rr = records_.find({name, type}); rr != records_.end()) {
    answers = &rr->second;
  }

  std::vector<uint8_t> out;
  out.push_back(q[0]);
  out.push_back(q[1]);
  // QR, AA, RD copied from the query; RA; rcode.
  out.push_back(static_cast<uint8_t>(0x84 | (q[2] & 0x01)));
  out.push_back(static_cast<uint8_t>(0x80 | rcode));
  PutU16(out, 1);
  PutU16(out, answers ? static_cast<uint16_t>(answers->size()) : 0);
  PutU16(out, 0);
  PutU16(out, 0);
  out.insert(out.end(), q + 12, q + question_end);
  if (answers) {
    for (const Record& r : *answers) {
      PutU16(out, 0xC00C);  // pointer to the question name
      PutU16(out, type);
      PutU16(out, 1);  // IN
      PutU16(out, static_cast<uint16_t>(r.ttl >> 16));
      PutU16(out, static_cast<uint16_t>(r.ttl));
      PutU16(out, static_cast<uint16_t>(r.rdata.size()));
      out.insert(out.end(), r.rdata.begin(), r.rdata.end());
    }
  }
  return out;
}

}  // namespace hikyaku::dns
