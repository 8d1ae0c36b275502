#include "config/sections/sections.h"

#include <algorithm>

namespace hikyaku::config::detail {
namespace {

// A [dns] server: "IP", "[IPv6]" (port 53, RFC 1035 4.2) or an endpoint
// with an explicit port. Names are refused: they would need a resolver to
// find the resolver.
tl::expected<Endpoint, std::string> ParseDnsServer(std::string_view text) {
  constexpr uint16_t kDnsPort = 53;
  if (auto address = IpAddress::Parse(text)) return Endpoint{*address, kDnsPort};
  if (text.size() > 2 && text.front() == '[' && text.back() == ']') {
    auto address = IpAddress::Parse(text.substr(1, text.size() - 2));
    if (address && address->v6) return Endpoint{*address, kDnsPort};
  }
  if (text.find_first_of(":[") == std::string_view::npos) {
    return tl::unexpected("\"" + std::string(text) +
                          "\" is not an IP address (host names are not accepted)");
  }
  auto endpoint = Endpoint::ParseOrError(text);
  if (!endpoint) return tl::unexpected(endpoint.error().message());
  if (endpoint->port == 0) return tl::unexpected(std::string("port 0 is not a DNS server port"));
  return *endpoint;
}

// RFC 5321 4.5.3.2 gives floors (5 minutes for most replies, 10 for the
// final dot) that bulk senders routinely shorten; 1s..1h keeps both a
// too-eager and a never-firing timer out.
template <auto kMember>
void ReadPhaseTimeout(Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
  ReadDuration<kMember, kSecond, kHour>(r, n, p, c);
}

// ---- [delivery]

// 0 means "not limited" for the per-source defaults of [delivery]: the
// same as leaving the key out, which a [[site]] cannot say otherwise.
template <auto kMember, int64_t kMax>
void ReadOptionalLimit(Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
  auto v = r.Integer(n, p, 0, kMax);
  if (!v) return;
  if (*v == 0) {
    c.*kMember = std::nullopt;
  } else {
    c.*kMember = static_cast<uint32_t>(*v);
  }
}

constexpr std::array<Field<DeliveryConfig>, 24> kDeliveryFields{{
    {"max_connections_per_site", ReadCount<&DeliveryConfig::max_connections_per_site, 1, 10'000>},
    {"retry_share",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       auto share = r.Number(n, p);
       if (!share) return;
       // The retry lane gets at most this share; below 1% a site with the
       // usual connection limits would round its retry lane to no
       // connection at all.
       if (*share < 0.01) {
         r.Report(n, p,
                  "must be at least 0.01, got " + FormatNumber(*share) +
                      ": the retry lane would get no connection, so retries would never run");
         return;
       }
       if (*share > 1.0) {
         r.Report(n, p, "must be between 0.01 and 1, got " + FormatNumber(*share));
         return;
       }
       c.retry_share = *share;
     }},
    {"hold",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       if (auto b = r.Bool(n, p)) c.hold = *b;
     }},
    {"max_connections", ReadCount<&DeliveryConfig::max_connections, 1, 1'000'000>},
    {"max_messages_per_connection",
     ReadCount<&DeliveryConfig::max_messages_per_connection, 1, 100'000>},
    {"max_recipients_per_transaction",
     ReadCount<&DeliveryConfig::max_recipients_per_transaction, 1, 1'000>},
    {"idle_timeout", ReadDuration<&DeliveryConfig::idle_timeout, 0, kHour>},
    {"connect_timeout", ReadPhaseTimeout<&DeliveryConfig::connect_timeout>},
    {"banner_timeout", ReadPhaseTimeout<&DeliveryConfig::banner_timeout>},
    {"ehlo_timeout", ReadPhaseTimeout<&DeliveryConfig::ehlo_timeout>},
    {"mail_timeout", ReadPhaseTimeout<&DeliveryConfig::mail_timeout>},
    {"rcpt_timeout", ReadPhaseTimeout<&DeliveryConfig::rcpt_timeout>},
    {"data_timeout", ReadPhaseTimeout<&DeliveryConfig::data_timeout>},
    {"data_end_timeout", ReadPhaseTimeout<&DeliveryConfig::data_end_timeout>},
    {"source_address",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       auto address = IpAddress::Parse(*text);
       if (!address) {
         r.Report(n, p,
                  "\"" + *text +
                      "\" is not an IP address (write it without brackets or port, "
                      "e.g. \"192.0.2.10\" or \"2001:db8::10\")");
         return;
       }
       c.source_address = *address;
     }},
    {"helo_name",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (auto problem = HostnameProblem(*text)) {
         r.Report(n, p, *problem);
         return;
       }
       c.helo_name = *text;
     }},
    {"starttls",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (*text == "opportunistic") {
         c.starttls = StartTlsPolicy::kOpportunistic;
       } else if (*text == "never") {
         c.starttls = StartTlsPolicy::kNever;
       } else {
         r.Report(n, p, "must be \"opportunistic\" or \"never\", got \"" + *text + "\"");
       }
     }},
    {"host_down_initial", ReadDuration<&DeliveryConfig::host_down_initial, kSecond, kDay>},
    // The lower bound host_down_initial is checked in CheckDurationOrder.
    {"host_down_max", ReadDuration<&DeliveryConfig::host_down_max, kSecond, 7 * kDay>},
    // Only the name here: [[pool]] tables may come later in the file, and
    // the implicit pool exists only once everything is read (ResolveShaping).
    {"pool",
     [](Reader& r, const Node& n, const Path& p, DeliveryConfig& c) {
       if (auto name = r.Name(n, p, "pool")) c.pool = *name;
     }},
    {"max_connections_per_source",
     ReadOptionalLimit<&DeliveryConfig::max_connections_per_source, 10'000>},
    {"max_recipients_per_message",
     ReadOptionalLimit<&DeliveryConfig::max_recipients_per_message, 100'000>},
    {"max_message_rate_per_source", ReadRate<&DeliveryConfig::max_message_rate_per_source>},
    {"max_connection_rate_per_source", ReadRate<&DeliveryConfig::max_connection_rate_per_source>},
}};

// ---- [retry]

constexpr std::array<Field<RetryConfig>, 5> kRetryFields{{
    {"initial", ReadDuration<&RetryConfig::initial, kSecond, kDay>},
    // max and max_age must also be at least initial: CheckDurationOrder.
    {"max", ReadDuration<&RetryConfig::max, kSecond, 7 * kDay>},
    {"max_age", ReadDuration<&RetryConfig::max_age, kSecond, 30 * kDay>},
    {"jitter",
     [](Reader& r, const Node& n, const Path& p, RetryConfig& c) {
       if (auto v = r.NumberIn(n, p, 0.0, 0.5)) c.jitter = *v;
     }},
    {"reactivation_rate", ReadCount<&RetryConfig::reactivation_rate, 1, 1'000'000>},
}};

// ---- [dns]

constexpr std::array<Field<DnsConfig>, 5> kDnsFields{{
    {"servers",
     [](Reader& r, const Node& n, const Path& p, DnsConfig& c) {
       const toml::array* array = r.Array(n, p);
       if (array == nullptr) return;
       std::vector<Endpoint> servers;
       for (size_t i = 0; i < array->size(); ++i) {
         const Node& element = *array->get(i);
         std::string path = p + "[" + std::to_string(i) + "]";
         auto text = r.String(element, path);
         if (!text) continue;
         auto server = ParseDnsServer(*text);
         if (!server) {
           r.Report(element, path, "invalid DNS server \"" + *text + "\": " + server.error());
           continue;
         }
         if (std::find(servers.begin(), servers.end(), *server) != servers.end()) {
           r.Report(element, path, "duplicate of " + server->ToString() + " listed before");
           continue;
         }
         servers.push_back(*server);
       }
       c.servers = std::move(servers);
     }},
    {"timeout", ReadDuration<&DnsConfig::timeout, 100 * kMillisecond, kMinute>},
    {"attempts", ReadCount<&DnsConfig::attempts, 1, 10>},
    {"negative_ttl", ReadDuration<&DnsConfig::negative_ttl, 0, kDay>},
    {"max_ttl", ReadDuration<&DnsConfig::max_ttl, kSecond, 7 * kDay>},
}};

}  // namespace

Fields<DeliveryConfig> DeliveryFields() { return kDeliveryFields; }
Fields<RetryConfig> RetryFields() { return kRetryFields; }
Fields<DnsConfig> DnsFields() { return kDnsFields; }

}  // namespace hikyaku::config::detail
