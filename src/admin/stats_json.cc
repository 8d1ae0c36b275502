#include "admin/stats_json.h"

namespace hikyaku::admin {

nlohmann::json StatsJson(const StatsInput& s) {
  nlohmann::json out = nlohmann::json::object();
  out["intake"] = {{"accepted", s.intake.accepted}, {"failed", s.intake.failed}, {"refused", s.intake.refused}};
  out["spool"] = {{"appends", s.spool.appends},
                  {"commit_groups", s.spool.commit_groups},
                  {"syncs", s.spool.syncs},
                  {"commit_micros", s.spool.commit_micros},
                  {"crc32c_in_hardware", s.spool.crc32c_in_hardware},
                  {"journal_segments_created", s.spool.journal_segments_created},
                  {"journal_segments_reused", s.spool.journal_segments_reused},
                  {"failed_appends", s.spool.failed_appends},
                  {"recovered_messages", s.spool.recovered_messages},
                  {"recovered_recipients", s.spool.recovered_recipients}};
  out["smtp"] = {{"connections_accepted", s.smtp.connections_accepted},
                 {"connections_refused", s.smtp.connections_refused},
                 {"connections_open", s.smtp.connections_open}};
  const auto& de = s.delivery;
  out["delivery"] = {{"delivered", de.delivered}, {"deferred", de.deferred}, {"bounced", de.bounced},
                     {"expired", de.expired},     {"queued", de.queued},     {"connections_opened", de.connections_opened}};
  return out;
}

}  // namespace hikyaku::admin
