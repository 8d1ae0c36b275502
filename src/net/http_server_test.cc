#include "net/http_server.h"

#include <chrono>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include "testing/http_client.h"

namespace hikyaku::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using verb = http::verb;
using ClientResponse = testing::HttpResponse;

// A server on 127.0.0.1:0 and a client that runs on the same io_context;
// every exchange is bounded by a 5 s deadline.
class HttpServerTest : public ::testing::Test {
 protected:
  HttpServerTest() : server_(context_, Options()) {}

  static HttpServerOptions Options() {
    HttpServerOptions o;
    o.listen = config::Endpoint::Loopback(0);
    o.max_body_size = 1024;
    return o;
  }

  void Start() {
    auto started = server_.Start();
    ASSERT_TRUE(started) << started.error().message();
  }

  // Sends one request on a fresh connection and returns the reply.
  std::optional<ClientResponse> Fetch(verb method, std::string target, std::string body = "") {
    return testing::HttpFetch(context_, server_.local_endpoint(), method, std::move(target), std::move(body));
  }

  static nlohmann::json Body(const ClientResponse& res) { return nlohmann::json::parse(res.body()); }

  asio::io_context context_;
  HttpServer server_;
};

asio::awaitable<Response> Echo(const Request& req) {
  nlohmann::json j;
  j["path"] = req.path;
  j["params"] = req.params;
  j["query"] = req.query;
  j["body"] = req.body;
  j["content_type"] = req.content_type;
  j["client_ip"] = req.client_ip;
  j["host"] = req.header("host");
  co_return Response::Json(200, j);
}

TEST_F(HttpServerTest, ExactPathGetsTheRequest) {
  server_.Handle(verb::post, "/api/v1/things", Echo);
  Start();
  auto res = Fetch(verb::post, "/api/v1/things", R"({"a":1})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200u);
  EXPECT_EQ(res->at(http::field::content_type), "application/json");
  auto body = Body(*res);
  EXPECT_EQ(body["path"], "/api/v1/things");
  EXPECT_EQ(body["body"], R"({"a":1})");
  EXPECT_EQ(body["content_type"], "application/json");
  EXPECT_EQ(body["client_ip"], "127.0.0.1");
  EXPECT_EQ(body["host"], "127.0.0.1");
  EXPECT_TRUE(body["params"].empty());
}

TEST_F(HttpServerTest, NamedSegmentBindsParam) {
  server_.Handle(verb::get, "/api/v1/suspensions/{id}", Echo);
  server_.Handle(verb::get, "/api/v1/suspensions/all", [](const Request&) -> asio::awaitable<Response> {
    co_return Response::Text(200, "every suspension\n");
  });
  Start();
  auto res = Fetch(verb::get, "/api/v1/suspensions/tenant%2F7");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200u);
  EXPECT_EQ(Body(*res)["params"]["id"], "tenant/7");
  // The exact pattern wins over {id} although registered later.
  auto all = Fetch(verb::get, "/api/v1/suspensions/all");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->body(), "every suspension\n");
  EXPECT_EQ(all->at(http::field::content_type), "text/plain");
  // {id} matches one non-empty segment, not zero or two.
  EXPECT_EQ(Fetch(verb::get, "/api/v1/suspensions/")->result_int(), 404u);
  EXPECT_EQ(Fetch(verb::get, "/api/v1/suspensions/a/b")->result_int(), 404u);
}

TEST_F(HttpServerTest, QueryIsDecoded) {
  server_.Handle(verb::get, "/t/c/{token}", Echo);
  Start();
  auto res = Fetch(verb::get, "/t/c/abc?to=https%3A%2F%2Fexample.com%2Fa%20b&name=J+Doe&empty=&flag");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->result_int(), 200u);
  auto body = Body(*res);
  EXPECT_EQ(body["path"], "/t/c/abc");
  EXPECT_EQ(body["params"]["token"], "abc");
  EXPECT_EQ(body["query"]["to"], "https://example.com/a b");
  EXPECT_EQ(body["query"]["name"], "J Doe");
  EXPECT_EQ(body["query"]["empty"], "");
  EXPECT_EQ(body["query"]["flag"], "");
  auto bad = Fetch(verb::get, "/t/c/abc?x=%G1");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->result_int(), 400u);
}

TEST_F(HttpServerTest, UnknownPathIs404Problem) {
  server_.Handle(verb::get, "/healthz", Echo);
  Start();
  auto res = Fetch(verb::get, "/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 404u);
  EXPECT_EQ(res->at(http::field::content_type), "application/problem+json");
  auto body = Body(*res);
  EXPECT_EQ(body["type"], "about:blank");
  EXPECT_EQ(body["title"], "Not Found");
  EXPECT_EQ(body["status"], 404);
  EXPECT_EQ(body["detail"], "no such resource: /nope");
}

TEST_F(HttpServerTest, OtherMethodIs405WithAllow) {
  server_.Handle(verb::get, "/api/v1/suspensions/{id}", Echo);
  server_.Handle(verb::delete_, "/api/v1/suspensions/{id}", Echo);
  Start();
  auto res = Fetch(verb::post, "/api/v1/suspensions/9", "{}");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 405u);
  EXPECT_EQ(res->at(http::field::allow), "GET, DELETE");
  EXPECT_EQ(res->at(http::field::content_type), "application/problem+json");
  EXPECT_EQ(Body(*res)["status"], 405);
  EXPECT_EQ(Fetch(verb::delete_, "/api/v1/suspensions/9")->result_int(), 200u);
}

TEST_F(HttpServerTest, BodyOverLimitIs413AndCloses) {
  bool called = false;
  server_.Handle(verb::post, "/in", [&](const Request&) -> asio::awaitable<Response> {
    called = true;
    co_return Response::Text(200, "ok");
  });
  Start();
  auto res = Fetch(verb::post, "/in", std::string(2048, 'x'));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 413u);
  EXPECT_FALSE(res->keep_alive());
  auto body = Body(*res);
  EXPECT_EQ(body["title"], "Content Too Large");
  EXPECT_EQ(body["detail"], "request body exceeds http.max_body_size (1024 bytes)");
  EXPECT_FALSE(called);
  EXPECT_EQ(Fetch(verb::post, "/in", std::string(1024, 'x'))->result_int(), 200u);
}

TEST_F(HttpServerTest, HandlerMayAwaitATimer) {
  server_.Handle(verb::get, "/slow", [](const Request&) -> asio::awaitable<Response> {
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
    const auto start = std::chrono::steady_clock::now();
    co_await timer.async_wait(asio::use_awaitable);
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    co_return Response::Json(202, {{"waited_ms", waited.count()}});
  });
  Start();
  auto res = Fetch(verb::get, "/slow");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 202u);
  EXPECT_GE(Body(*res)["waited_ms"].get<int>(), 50);
}

TEST_F(HttpServerTest, ThrowingHandlerIs500AndServerGoesOn) {
  server_.Handle(verb::get, "/boom", [](const Request&) -> asio::awaitable<Response> {
    throw std::runtime_error("broken");
    co_return Response::Text(200, "unreachable");
  });
  server_.Handle(verb::get, "/fine", Echo);
  Start();
  auto res = Fetch(verb::get, "/boom");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 500u);
  EXPECT_EQ(Fetch(verb::get, "/fine")->result_int(), 200u);
}

TEST_F(HttpServerTest, ProblemCarriesExtraMembersAndHeaders) {
  server_.Handle(verb::get, "/go", [](const Request&) -> asio::awaitable<Response> {
    Response r = Response::Problem(409, "Conflict", "already suspended", {{"field", "/tenant"}});
    r.headers.emplace_back("Location", "/api/v1/suspensions/3");
    co_return r;
  });
  Start();
  auto res = Fetch(verb::get, "/go");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 409u);
  EXPECT_EQ(res->at(http::field::location), "/api/v1/suspensions/3");
  EXPECT_EQ(res->body(),
            R"({"type":"about:blank","title":"Conflict","status":409,"detail":"already suspended","field":"/tenant"})");
}

TEST(PercentDecode, DecodesAndRejects) {
  EXPECT_EQ(PercentDecode("a%20b+c", true), "a b c");
  EXPECT_EQ(PercentDecode("a%20b+c", false), "a b+c");
  EXPECT_EQ(PercentDecode("%", true), std::nullopt);
  EXPECT_EQ(PercentDecode("%4", true), std::nullopt);
  EXPECT_EQ(PercentDecode("%zz", true), std::nullopt);
  EXPECT_EQ(PercentDecode("%41", true), "A");
}

}  // namespace
}  // namespace hikyaku::net
