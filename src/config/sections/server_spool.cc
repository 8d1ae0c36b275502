#include "config/sections/sections.h"


namespace hikyaku::config::detail {
namespace {

// ---- [server]

constexpr std::array<Field<ServerConfig>, 1> kServerFields{{
    {"hostname",
     [](Reader& r, const Node& n, const Path& p, ServerConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (auto problem = HostnameProblem(*text)) {
         r.Report(n, p, *problem);
         return;
       }
       c.hostname = *text;
     }},
}};

// ---- [spool]

constexpr std::array<Field<SpoolConfig>, 5> kSpoolFields{{
    {"path",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       if (auto path = ReadPath(r, n, p)) c.path = *path;
     }},
    {"sync",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       auto text = r.String(n, p);
       if (!text) return;
       if (*text == "group") {
         c.sync = SyncMode::kGroup;
       } else if (*text == "none") {
         c.sync = SyncMode::kNone;
       } else {
         r.Report(n, p, "must be \"group\" or \"none\", got \"" + *text + "\"");
       }
     }},
    {"memtable_size",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       if (auto size = r.Size(n, p, 1ull << 20, 4ull << 30)) c.memtable_size = *size;
     }},
    {"commit_delay",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       if (auto d = r.DurationIn(n, p, Duration(0), std::chrono::milliseconds(100))) c.commit_delay = *d;
     }},
    {"commit_group",
     [](Reader& r, const Node& n, const Path& p, SpoolConfig& c) {
       if (auto v = r.Integer(n, p, 1, 10'000)) c.commit_group = static_cast<uint32_t>(*v);
     }},
}};

}  // namespace

Fields<ServerConfig> ServerFields() { return kServerFields; }
Fields<SpoolConfig> SpoolFields() { return kSpoolFields; }

}  // namespace hikyaku::config::detail
