#include "app/spool_commands.h"

#include <ostream>

#include <nlohmann/json.hpp>

#include "app/daemon.h"
#include "message/header.h"
#include "spool/spool.h"

namespace hikyaku::app {

namespace {
const char* StateName(spool::RecipientState s) {
  switch (s) {
    case spool::RecipientState::kQueued: return "queued";
    case spool::RecipientState::kDelivered: return "delivered";
    case spool::RecipientState::kBounced: return "bounced";
    case spool::RecipientState::kExpired: return "expired";
  }
  return "unknown";
}
}  // namespace

int ListSpool(const config::Config& config, std::ostream& out, std::ostream& err) {
  spool::SpoolOptions options;
  options.path = config.spool.path;
  options.sync = config.spool.sync;
  options.memtable_size = config.spool.memtable_size;
  auto spool = spool::OpenRocksDbSpool(options);
  if (!spool) {
    err << "hikyaku spool list: cannot open " << config.spool.path.string() << ": " << spool.error().ToString()
        << " (is the daemon running?)\n";
    return kExitIoErr;
  }
  MessageId current;
  nlohmann::json message_fields;
  int rc = kExitOk;
  auto listed = (*spool)->ForEachPending([&](const spool::RecipientRecord& r) {
    if (r.message != current || message_fields.is_null()) {
      current = r.message;
      message_fields = nlohmann::json::object();
      auto m = (*spool)->ReadMessage(r.message);
      if (!m) {
        err << "hikyaku spool list: " << r.message.ToString() << ": " << m.error().ToString() << "\n";
        rc = kExitIoErr;
      } else {
        message_fields["sender"] = m->sender;
        message_fields["size"] = m->content.size();
        message_fields["origin"] = m->origin;
        message_fields["received_at"] = ToUnixMillis(m->received_at);
        auto ids = message::GetHeaderValues(m->content, "Message-ID");
        message_fields["message_id"] = ids.empty() ? "" : ids.front();
      }
    }
    nlohmann::json line = message_fields;
    line["id"] = r.message.ToString();
    line["index"] = r.index;
    line["recipient"] = r.recipient;
    line["state"] = StateName(r.state);
    line["attempts"] = r.attempts;
    line["next_attempt"] = ToUnixMillis(r.next_attempt);
    out << line.dump() << "\n";
  });
  if (!listed) {
    err << "hikyaku spool list: " << listed.error().ToString() << "\n";
    return kExitIoErr;
  }
  return rc;
}

}  // namespace hikyaku::app
