#include "app/queues_command.h"

#include <iomanip>
#include <ostream>

#include <nlohmann/json.hpp>

#include "app/admin_client.h"
#include "app/daemon.h"

namespace hikyaku::app {

int ShowQueues(const config::Config& config, bool json, std::ostream& out, std::ostream& err) {
  std::string error;
  auto reply = CallDaemon(config.http.listen, "GET", "/api/v1/queues", "", error);
  if (reply && reply->status != 200) error = "HTTP " + std::to_string(reply->status);
  if (!reply || reply->status != 200) {
    err << "hikyaku queues: cannot ask the daemon at " << config.http.listen.ToString() << ": " << error << "\n";
    return 75;
  }
  const std::string* body = &reply->body;
  if (json) {
    out << *body;
    return 0;
  }
  auto doc = nlohmann::json::parse(*body, nullptr, false);
  if (doc.is_discarded()) {
    err << "hikyaku queues: the daemon's answer is not JSON\n";
    return 70;
  }
  out << std::left << std::setw(32) << "SITE" << std::right << std::setw(8) << "FRESH" << std::setw(8) << "RETRY"
      << std::setw(9) << "WAITING" << std::setw(7) << "CONNS" << std::setw(11) << "DELIVERED" << "  "
      << "LAST REPLY / DOWN HOSTS\n";
  for (const auto& s : doc.value("sites", nlohmann::json::array())) {
    std::string conns = std::to_string(s["connections"].value("fresh", 0)) + "+" +
                        std::to_string(s["connections"].value("retry", 0));
    std::string note = s.value("last_reply", "");
    for (const auto& h : s.value("hosts", nlohmann::json::array()))
      if (h.value("state", "up") != "up") note += " [" + h.value("name", "") + " " + h.value("state", "") + "]";
    if (note.empty()) note = s.value("last_failure", "");
    out << std::left << std::setw(32) << s.value("site", "") << std::right << std::setw(8) << s.value("fresh", 0)
        << std::setw(8) << s.value("retry", 0) << std::setw(9) << s.value("waiting", 0) << std::setw(7) << conns
        << std::setw(11) << s.value("delivered", 0) << "  " << note << "\n";
  }
  out << "recipients waiting for DNS: " << doc.value("resolving", 0) << "\n";
  return 0;
}

}  // namespace hikyaku::app
