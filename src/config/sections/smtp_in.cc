#include "config/sections/sections.h"

#include <algorithm>

namespace hikyaku::config::detail {
namespace {

// ---- [smtp_in]

constexpr std::array<Field<SmtpInConfig>, 10> kSmtpInFields{{
    {"listen",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       const toml::array* array = r.Array(n, p);
       if (array == nullptr) return;
       if (array->empty()) {
         r.Report(n, p, "must list at least one address (IP:PORT)");
         return;
       }
       std::vector<Endpoint> endpoints;
       bool ok = true;
       for (size_t i = 0; i < array->size(); ++i) {
         std::string path = p + "[" + std::to_string(i) + "]";
         auto endpoint = r.EndpointValue(*array->get(i), path);
         if (!endpoint) {
           ok = false;
           continue;
         }
         auto same = std::find(endpoints.begin(), endpoints.end(), *endpoint);
         if (same != endpoints.end()) {
           r.Report(*array->get(i), path,
                    "duplicate of " + endpoint->ToString() + " listed before");
           ok = false;
           continue;
         }
         endpoints.push_back(*endpoint);
       }
       if (ok) c.listen = std::move(endpoints);
     }},
    {"relay_networks",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       const toml::array* array = r.Array(n, p);
       if (array == nullptr) return;
       std::vector<Cidr> networks;
       for (size_t i = 0; i < array->size(); ++i) {
         std::string path = p + "[" + std::to_string(i) + "]";
         auto text = r.String(*array->get(i), path);
         if (!text) continue;
         auto cidr = Cidr::ParseOrError(*text);
         if (!cidr) {
           r.Report(*array->get(i), path,
                    "invalid network \"" + *text + "\": " + cidr.error().message());
           continue;
         }
         networks.push_back(*cidr);
       }
       c.relay_networks = std::move(networks);
     }},
    {"max_message_size",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto size = r.Size(n, p, 1ull << 10, 1ull << 30)) c.max_message_size = *size;
     }},
    {"max_recipients",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto v = r.Integer(n, p, 1, 100'000)) c.max_recipients = static_cast<uint32_t>(*v);
     }},
    {"max_connections",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto v = r.Integer(n, p, 1, 1'000'000)) c.max_connections = static_cast<uint32_t>(*v);
     }},
    {"max_errors",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto v = r.Integer(n, p, 1, 1'000)) c.max_errors = static_cast<uint32_t>(*v);
     }},
    {"command_timeout",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto d = r.DurationIn(n, p, std::chrono::seconds(1), std::chrono::hours(1)))
         c.command_timeout = *d;
     }},
    {"data_timeout",
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto d = r.DurationIn(n, p, std::chrono::seconds(1), std::chrono::hours(2)))
         c.data_timeout = *d;
     }},
    {"tls",
     // Only the name here: [tls.NAME] may come later in the file, so the
     // reference is resolved once everything is read (ResolveReferences).
     [](Reader& r, const Node& n, const Path& p, SmtpInConfig& c) {
       if (auto name = r.String(n, p)) c.tls = TlsProfile{*name, {}, {}};
     }},
    {"users", ReadUsers,
     [](const std::string& path, std::vector<std::string>& out) {
       AppendKeys(SmtpUserFields(), path, out);
     }},
}};

}  // namespace

Fields<SmtpInConfig> SmtpInFields() { return kSmtpInFields; }

}  // namespace hikyaku::config::detail
