#include "config/sections/sections.h"


namespace hikyaku::config::detail {
namespace {

// ---- [http]

constexpr std::array<Field<HttpConfig>, 2> kHttpFields{{
    {"listen",
     [](Reader& r, const Node& n, const Path& p, HttpConfig& c) {
       if (auto endpoint = r.EndpointValue(n, p)) c.listen = *endpoint;
     }},
    {"max_body_size",
     [](Reader& r, const Node& n, const Path& p, HttpConfig& c) {
       if (auto size = r.Size(n, p, 1ull << 10, 1ull << 30)) c.max_body_size = *size;
     }},
}};

// ---- [events]

constexpr std::array<Field<EventsConfig>, 1> kEventsFields{{
    {"path",
     [](Reader& r, const Node& n, const Path& p, EventsConfig& c) {
       if (auto path = ReadPath(r, n, p)) c.path = *path;
     }},
}};

}  // namespace

Fields<HttpConfig> HttpFields() { return kHttpFields; }
Fields<EventsConfig> EventsFields() { return kEventsFields; }

}  // namespace hikyaku::config::detail
