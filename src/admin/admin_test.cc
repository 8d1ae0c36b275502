#include <gtest/gtest.h>

#include "admin/json_body.h"
#include "admin/stats_json.h"

namespace hikyaku::admin {
namespace {

TEST(ParseJsonBody, ReturnsTheDocument) {
  net::Request req;
  req.body = R"({"tenant": "t1", "until": 5})";
  auto doc = ParseJsonBody(req);
  ASSERT_TRUE(doc);
  EXPECT_EQ((*doc)["tenant"], "t1");
  EXPECT_EQ((*doc)["until"], 5);
}

TEST(ParseJsonBody, InvalidJsonIs400NamingTheByte) {
  net::Request req;
  req.body = R"({"tenant": })";
  auto doc = ParseJsonBody(req);
  ASSERT_FALSE(doc);
  EXPECT_EQ(doc.error().status, 400u);
  EXPECT_EQ(doc.error().content_type, "application/problem+json");
  EXPECT_EQ(doc.error().body,
            R"({"type":"/problems/invalid-json","title":"Invalid JSON","status":400,)"
            R"x("detail":"the request body is not valid JSON (at byte 12)"})x");
}

TEST(StatsJson, NamesEveryCounter) {
  StatsInput in;
  in.intake.accepted = 3;
  in.spool.recovered_recipients = 7;
  in.spool.crc32c_in_hardware = true;
  in.smtp.connections_open = 2;
  in.delivery.queued = 9;
  auto j = StatsJson(in);
  EXPECT_EQ(j["intake"]["accepted"], 3);
  EXPECT_EQ(j["intake"]["failed"], 0);
  EXPECT_EQ(j["spool"]["recovered_recipients"], 7);
  EXPECT_EQ(j["spool"]["crc32c_in_hardware"], true);
  EXPECT_EQ(j["spool"].size(), 10u);
  EXPECT_EQ(j["smtp"]["connections_open"], 2);
  EXPECT_EQ(j["delivery"]["queued"], 9);
  EXPECT_EQ(j["delivery"].size(), 6u);
}

}  // namespace
}  // namespace hikyaku::admin
