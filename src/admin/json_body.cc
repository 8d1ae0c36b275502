#include "admin/json_body.h"

#include <string>

namespace hikyaku::admin {

tl::expected<nlohmann::json, net::Response> ParseJsonBody(const net::Request& request) {
  try {
    return nlohmann::json::parse(request.body);
  } catch (const nlohmann::json::parse_error& e) {
    // Same type and wording as the message API's invalid-json problem.
    return tl::unexpected(net::Response::Problem(
        400, "Invalid JSON", "the request body is not valid JSON (at byte " + std::to_string(e.byte) + ")",
        {{"type", "/problems/invalid-json"}}));
  }
}

}  // namespace hikyaku::admin
