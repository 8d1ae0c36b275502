#include "admin/queues_view.h"

namespace hikyaku::admin {

nlohmann::json QueuesJson(const delivery::QueuesSnapshot& snapshot) {
  nlohmann::json sites = nlohmann::json::array();
  for (const auto& view : snapshot.sites) {
    const auto& st = view.stats;
    nlohmann::json hosts = nlohmann::json::array();
    for (const auto& h : view.hosts) {
      nlohmann::json host = {{"name", h.name}, {"port", h.port}, {"state", h.state}};
      if (h.down_until) host["down_until"] = ToUnixMillis(*h.down_until);
      hosts.push_back(std::move(host));
    }
    sites.push_back({{"site", st.key},
                     {"fresh", st.fresh},
                     {"retry", st.retry},
                     {"waiting", st.waiting},
                     {"in_flight", st.in_flight},
                     {"connections", {{"fresh", st.connections_fresh}, {"retry", st.connections_retry}}},
                     {"delivered", st.counters.delivered},
                     {"deferred", st.counters.deferred},
                     {"bounced", st.counters.bounced},
                     {"expired", st.counters.expired},
                     {"last_reply", st.last_reply},
                     {"last_failure", view.last_failure},
                     {"hosts", std::move(hosts)}});
  }
  return {{"sites", std::move(sites)}, {"resolving", snapshot.resolving}};
}

}  // namespace hikyaku::admin
