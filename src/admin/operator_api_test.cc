#include "admin/operator_api.h"

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include "testing/http_client.h"

namespace hikyaku::admin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using verb = http::verb;
using ClientResponse = testing::HttpResponse;

// The operator endpoints on 127.0.0.1:0 over fake controls that record
// what they were asked; a client on the same io_context, every exchange
// bounded by a 5 s deadline.
class OperatorApiTest : public ::testing::Test {
 protected:
  OperatorApiTest() : server_(context_, {config::Endpoint::Loopback(0), 4096}) {}

  void Start(OperatorApi::Controls controls) {
    api_.emplace(std::move(controls));
    api_->Register(server_);
    auto started = server_.Start();
    ASSERT_TRUE(started) << started.error().message();
  }

  std::optional<ClientResponse> Fetch(verb method, std::string target, std::string body = "") {
    return testing::HttpFetch(context_, server_.local_endpoint(), method, std::move(target), std::move(body));
  }

  // The status and the parsed body ("" for none) of one request.
  std::pair<unsigned, nlohmann::json> Call(verb method, std::string target, std::string body = "") {
    auto res = Fetch(method, std::move(target), std::move(body));
    if (!res) return {0, nullptr};
    return {res->result_int(), res->body().empty() ? nlohmann::json() : nlohmann::json::parse(res->body())};
  }

  // Controls that succeed and remember their arguments.
  OperatorApi::Controls Recording() {
    OperatorApi::Controls c;
    c.suspend = [this](shaping::SuspensionScope scope, Duration duration, std::string reason) -> Result<uint64_t> {
      std::lock_guard lock(mu_);
      scope_ = scope;
      duration_ = duration;
      reason_ = reason;
      ++calls_;
      if (scope.source == "nope") return Fail(ErrorCode::kInvalidArgument, "no such source: nope");
      return 7;
    };
    c.resume = [this](uint64_t id) -> Result<void> {
      std::lock_guard lock(mu_);
      ++calls_;
      resumed_ = id;
      if (id != 7) return Fail(ErrorCode::kNotFound, "no such suspension: " + std::to_string(id));
      return {};
    };
    c.bounce = [this](std::string site, std::string tenant, std::string reason) -> Result<size_t> {
      std::lock_guard lock(mu_);
      ++calls_;
      scope_ = {site, "", tenant};
      reason_ = reason;
      return 12;
    };
    c.move_tenant = [this](std::string tenant, std::string pool) -> Result<void> {
      std::lock_guard lock(mu_);
      ++calls_;
      if (tenant != "acme") return Fail(ErrorCode::kNotFound, "no such tenant: " + tenant);
      if (pool != "quarantine") return Fail(ErrorCode::kInvalidArgument, "no such pool: " + pool);
      return {};
    };
    c.reload = [this]() -> std::vector<std::string> {
      std::lock_guard lock(mu_);
      ++calls_;
      return reload_errors_;
    };
    return c;
  }

  int calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }

  asio::io_context context_;
  net::HttpServer server_;
  std::optional<OperatorApi> api_;
  std::mutex mu_;
  int calls_ = 0;
  shaping::SuspensionScope scope_;
  Duration duration_{-1};
  std::string reason_;
  uint64_t resumed_ = 0;
  std::vector<std::string> reload_errors_;
};

TEST_F(OperatorApiTest, SuspensionIsCreatedWithItsDuration) {
  Start(Recording());
  auto res = Fetch(verb::post, "/api/v1/suspensions",
                   R"({"site": "docomo", "source": "", "tenant": null, "duration": "1h30m", "reason": "asked"})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 201u);
  EXPECT_EQ(res->at(http::field::location), "/api/v1/suspensions/7");
  EXPECT_EQ(nlohmann::json::parse(res->body()), (nlohmann::json{{"id", 7}}));
  EXPECT_EQ(scope_.site, "docomo");
  EXPECT_EQ(scope_.source, "");
  EXPECT_EQ(scope_.tenant, "");
  EXPECT_EQ(duration_, std::chrono::minutes(90));
  EXPECT_EQ(reason_, "asked");
}

TEST_F(OperatorApiTest, SuspensionWithoutDurationLastsUntilResumed) {
  Start(Recording());
  EXPECT_EQ(Call(verb::post, "/api/v1/suspensions", R"({"tenant": "acme"})").first, 201u);
  EXPECT_EQ(duration_, Duration(0));
  EXPECT_EQ(scope_.tenant, "acme");
}

TEST_F(OperatorApiTest, SuspensionNeedsAScope) {
  Start(Recording());
  auto [status, body] = Call(verb::post, "/api/v1/suspensions", R"({"site": "", "reason": "x", "duration": "1h"})");
  EXPECT_EQ(status, 400u);
  EXPECT_EQ(body["detail"], "a suspension names a site, a source or a tenant");
  EXPECT_EQ(calls(), 0);
}

TEST_F(OperatorApiTest, BadBodiesAre400AndCallNothing) {
  Start(Recording());
  auto [invalid, invalid_body] = Call(verb::post, "/api/v1/suspensions", R"({"site": )");
  EXPECT_EQ(invalid, 400u);
  EXPECT_EQ(invalid_body["type"], "/problems/invalid-json");
  EXPECT_EQ(Call(verb::post, "/api/v1/suspensions", "").first, 400u);
  EXPECT_EQ(Call(verb::post, "/api/v1/suspensions", R"(["docomo"])").first, 400u);
  auto [typed, typed_body] = Call(verb::post, "/api/v1/suspensions", R"({"site": 5})");
  EXPECT_EQ(typed, 400u);
  EXPECT_EQ(typed_body["field"], "/site");
  // A misspelt member must not turn a tenant's suspension into the site's.
  auto [typo, typo_body] = Call(verb::post, "/api/v1/suspensions", R"({"site": "docomo", "tenent": "acme"})");
  EXPECT_EQ(typo, 400u);
  EXPECT_EQ(typo_body["field"], "/tenent");
  auto [duration, duration_body] = Call(verb::post, "/api/v1/suspensions", R"({"site": "docomo", "duration": "1 hour"})");
  EXPECT_EQ(duration, 400u);
  EXPECT_EQ(duration_body["field"], "/duration");
  EXPECT_EQ(Call(verb::post, "/api/v1/bounces", "{").first, 400u);
  EXPECT_EQ(Call(verb::post, "/api/v1/tenants/acme", "nope").first, 400u);
  EXPECT_EQ(Call(verb::post, "/api/v1/reload", "{]").first, 400u);
  EXPECT_EQ(calls(), 0);
}

TEST_F(OperatorApiTest, CallErrorsMapToProblems) {
  Start(Recording());
  auto [status, body] = Call(verb::post, "/api/v1/suspensions", R"({"source": "nope"})");
  EXPECT_EQ(status, 400u);
  EXPECT_EQ(body["detail"], "no such source: nope");
  EXPECT_EQ(body["status"], 400);
  EXPECT_EQ(ProblemFor(Error(ErrorCode::kTimeout, "slow")).status, 503u);
  EXPECT_EQ(ProblemFor(Error(ErrorCode::kIo, "disk")).status, 500u);
}

TEST_F(OperatorApiTest, ResumeParsesTheId) {
  Start(Recording());
  auto res = Fetch(verb::delete_, "/api/v1/suspensions/7");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 204u);
  EXPECT_EQ(res->body(), "");
  EXPECT_EQ(resumed_, 7u);
  auto [missing, missing_body] = Call(verb::delete_, "/api/v1/suspensions/8");
  EXPECT_EQ(missing, 404u);
  EXPECT_EQ(missing_body["detail"], "no such suspension: 8");
  const int before = calls();
  EXPECT_EQ(Call(verb::delete_, "/api/v1/suspensions/abc").first, 400u);
  EXPECT_EQ(Call(verb::delete_, "/api/v1/suspensions/-1").first, 400u);
  EXPECT_EQ(Call(verb::delete_, "/api/v1/suspensions/99999999999999999999").first, 400u);
  EXPECT_EQ(calls(), before);
  EXPECT_EQ(Call(verb::get, "/api/v1/suspensions/7").first, 405u);
}

TEST(ParseSuspensionId, AcceptsPositiveDecimalsThatFit) {
  EXPECT_EQ(ParseSuspensionId("1"), 1u);
  EXPECT_EQ(ParseSuspensionId("18446744073709551615"), 18446744073709551615u);
  EXPECT_EQ(ParseSuspensionId("18446744073709551616"), std::nullopt);
  EXPECT_EQ(ParseSuspensionId("0"), std::nullopt);
  EXPECT_EQ(ParseSuspensionId(""), std::nullopt);
  EXPECT_EQ(ParseSuspensionId("+3"), std::nullopt);
  EXPECT_EQ(ParseSuspensionId("3 "), std::nullopt);
  EXPECT_EQ(ParseSuspensionId("0x10"), std::nullopt);
}

TEST_F(OperatorApiTest, BounceNeedsASiteOrATenant) {
  Start(Recording());
  auto [status, body] = Call(verb::post, "/api/v1/bounces", R"({"site": "docomo", "reason": "policy"})");
  EXPECT_EQ(status, 200u);
  EXPECT_EQ(body, (nlohmann::json{{"bounced", 12}}));
  EXPECT_EQ(scope_.site, "docomo");
  EXPECT_EQ(reason_, "policy");
  EXPECT_EQ(Call(verb::post, "/api/v1/bounces", R"({"reason": "policy"})").first, 400u);
  EXPECT_EQ(Call(verb::post, "/api/v1/bounces", R"({"source": "s1"})").first, 400u);
  EXPECT_EQ(calls(), 1);
}

TEST_F(OperatorApiTest, TenantMove) {
  Start(Recording());
  auto [status, body] = Call(verb::post, "/api/v1/tenants/acme", R"({"pool": "quarantine"})");
  EXPECT_EQ(status, 200u);
  EXPECT_EQ(body, (nlohmann::json{{"tenant", "acme"}, {"pool", "quarantine"}}));
  EXPECT_EQ(Call(verb::post, "/api/v1/tenants/other", R"({"pool": "quarantine"})").first, 404u);
  EXPECT_EQ(Call(verb::post, "/api/v1/tenants/acme", R"({"pool": "deep"})").first, 400u);
  auto [missing, missing_body] = Call(verb::post, "/api/v1/tenants/acme", R"({})");
  EXPECT_EQ(missing, 400u);
  EXPECT_EQ(missing_body["field"], "/pool");
}

TEST_F(OperatorApiTest, ReloadReportsEveryError) {
  Start(Recording());
  auto [ok, ok_body] = Call(verb::post, "/api/v1/reload");  // curl -X POST sends no body
  EXPECT_EQ(ok, 200u);
  EXPECT_EQ(ok_body, (nlohmann::json{{"ok", true}}));
  reload_errors_ = {"a.toml:3:1: source[0].address: not an IP address", "a.toml:9:5: pool[0]: no such source"};
  auto res = Fetch(verb::post, "/api/v1/reload", "{}");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 422u);
  EXPECT_EQ(res->at(http::field::content_type), "application/problem+json");
  auto body = nlohmann::json::parse(res->body());
  EXPECT_EQ(body["errors"], nlohmann::json(reload_errors_));
  EXPECT_EQ(body["detail"], "the configuration has 2 errors; the running configuration is unchanged");
}

TEST_F(OperatorApiTest, ViewsRenderTheSnapshots) {
  OperatorApi::Controls c;
  c.stats = [] {
    StatsInput s;
    s.intake.accepted = 4;
    return s;
  };
  c.shaping = [] { return delivery::ShapingSnapshot{}; };
  Start(std::move(c));
  auto [stats, stats_body] = Call(verb::get, "/api/v1/stats");
  EXPECT_EQ(stats, 200u);
  EXPECT_EQ(stats_body["intake"]["accepted"], 4);
  auto [shaping, shaping_body] = Call(verb::get, "/api/v1/shaping");
  EXPECT_EQ(shaping, 200u);
  EXPECT_TRUE(shaping_body.contains("pairs"));
  EXPECT_EQ(Call(verb::get, "/api/v1/queues").first, 501u);
  EXPECT_EQ(Call(verb::post, "/api/v1/suspensions", R"({"site": "x"})").first, 501u);
}

// A call that blocks (the dispatcher waits up to 5 s for its thread) runs
// off the server's thread: the server answers other requests meanwhile.
TEST_F(OperatorApiTest, BlockingCallDoesNotStallTheServer) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> entered{false};
  OperatorApi::Controls c;
  c.reload = [&]() -> std::vector<std::string> {
    entered = true;
    released.wait_for(std::chrono::seconds(5));
    return {};
  };
  c.stats = [] { return StatsInput{}; };
  Start(std::move(c));
  std::optional<ClientResponse> reload, stats;
  auto endpoint = server_.local_endpoint();
  // The arguments are the coroutine's own (copied into its frame); the
  // named closure outlives both requests.
  auto request = [&](verb method, std::string target, std::optional<ClientResponse>& out) -> asio::awaitable<void> {
    beast::tcp_stream stream(context_);
    stream.expires_after(std::chrono::seconds(5));
    co_await stream.async_connect(endpoint, asio::use_awaitable);
    http::request<http::string_body> req(method, target, 11);
    req.set(http::field::host, "127.0.0.1");
    req.prepare_payload();
    co_await http::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    ClientResponse res;
    co_await http::async_read(stream, buffer, res, asio::use_awaitable);
    out = std::move(res);
  };
  asio::co_spawn(context_, request(verb::post, "/api/v1/reload", reload), asio::detached);
  for (int i = 0; i < 100 && !entered; ++i) context_.run_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(entered);
  // The reload is blocked now; the stats must still be answered.
  asio::co_spawn(context_, request(verb::get, "/api/v1/stats", stats), asio::detached);
  for (int i = 0; i < 100 && !stats; ++i) context_.run_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(reload);
  release.set_value();
  for (int i = 0; i < 100 && !reload; ++i) context_.run_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->result_int(), 200u);
  ASSERT_TRUE(reload);
  EXPECT_EQ(reload->result_int(), 200u);
}

}  // namespace
}  // namespace hikyaku::admin
