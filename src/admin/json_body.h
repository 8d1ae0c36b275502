// Reading the JSON body of an operator's POST/PUT request: the parsed
// document, or the 400 problem to send back ("Invalid JSON", its detail
// naming the byte where parsing failed). Any JSON value is accepted; the
// endpoint checks the shape it wants.
//
// Thread-safety: a pure function of its argument.
#pragma once

#include <nlohmann/json.hpp>
#include <tl/expected.hpp>

#include "net/http_server.h"

namespace hikyaku::admin {

tl::expected<nlohmann::json, net::Response> ParseJsonBody(const net::Request& request);

}  // namespace hikyaku::admin
