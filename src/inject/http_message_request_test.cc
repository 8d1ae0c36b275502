#include "inject/http_message_request.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "message/address.h"
#include "message/header.h"

namespace hikyaku::inject {
namespace {

using json = nlohmann::json;

MessageRequestLimits Limits() {
  MessageRequestLimits l;
  l.max_message_size = 10000;
  l.max_recipients = 5;
  l.message_id_domain = "mta.example.net";
  l.now = FromUnixMillis(1'795'881'299'000);
  return l;
}

MessageSubmission ExpectOk(const json& body, const MessageRequestLimits& limits = Limits()) {
  auto r = ParseMessageRequest(body.dump(), limits);
  if (auto* p = std::get_if<Problem>(&r)) {
    ADD_FAILURE() << "unexpected problem: " << p->ToJson();
    return {};
  }
  return std::get<MessageSubmission>(r);
}

Problem ExpectProblemText(std::string_view body, const MessageRequestLimits& limits = Limits()) {
  auto r = ParseMessageRequest(body, limits);
  if (auto* s = std::get_if<MessageSubmission>(&r)) {
    ADD_FAILURE() << "expected a problem for " << body << ", got content:\n" << s->content;
    return {};
  }
  return std::get<Problem>(r);
}

Problem ExpectProblem(const json& body, const MessageRequestLimits& limits = Limits()) {
  return ExpectProblemText(body.dump(), limits);
}

json Structured() {
  return {{"from", "Shop <shop@example.com>"},
          {"to", {"alice@example.org"}},
          {"subject", "Hello"},
          {"text", "Hi"}};
}

json Raw() {
  return {{"from", "bounce@example.com"},
          {"to", {"alice@example.org"}},
          {"raw", "From: shop@example.com\nTo: alice@example.org\nSubject: hi\n\nbody\n"}};
}

TEST(HttpMessageRequestTest, RawForm) {
  MessageSubmission s = ExpectOk(Raw());
  EXPECT_EQ(s.sender, "bounce@example.com");
  EXPECT_EQ(s.recipients, std::vector<std::string>{"alice@example.org"});
  EXPECT_EQ(s.content.find("\n"), s.content.find("\r\n") + 1) << "bare LF left";
  for (size_t i = 0; i < s.content.size(); ++i)
    if (s.content[i] == '\n') {
      ASSERT_EQ(s.content[i - 1], '\r');
    }
  EXPECT_TRUE(s.content.ends_with("\r\n\r\nbody\r\n"));
  EXPECT_EQ(message::GetHeaderValues(s.content, "Date"),
            std::vector<std::string>{"Sat, 28 Nov 2026 15:54:59 +0000"});
  auto mid = message::GetHeaderValues(s.content, "Message-ID");
  ASSERT_EQ(mid.size(), 1u);
  EXPECT_TRUE(mid[0].ends_with("@mta.example.net>"));
}

TEST(HttpMessageRequestTest, RawKeepsGivenDateAndStripsBcc) {
  json body = Raw();
  body["raw"] =
      "Date: Mon, 1 Jan 2024 00:00:00 +0900\r\nMessage-ID: <x@y>\r\nBcc: secret@example.com\r\n"
      "Subject: s\r\n\r\nBcc: stays-in-body\r\n";
  MessageSubmission s = ExpectOk(body);
  EXPECT_EQ(message::GetHeaderValues(s.content, "Date"),
            std::vector<std::string>{"Mon, 1 Jan 2024 00:00:00 +0900"});
  EXPECT_EQ(message::GetHeaderValues(s.content, "Message-ID"), std::vector<std::string>{"<x@y>"});
  EXPECT_FALSE(message::HasHeader(s.content, "Bcc"));
  EXPECT_EQ(s.content.find("secret@example.com"), std::string::npos);
  EXPECT_NE(s.content.find("Bcc: stays-in-body"), std::string::npos);
}

TEST(HttpMessageRequestTest, StructuredForm) {
  json body = Structured();
  body["to"] = {"Alice <alice@example.org>", "bob@example.org"};
  body["cc"] = {"carol@example.org"};
  body["bcc"] = {"dave@example.org", "ALICE@EXAMPLE.ORG"};
  body["html"] = "<p>Hi</p>";
  body["headers"] = {{"X-Campaign", "spring"}};
  MessageSubmission s = ExpectOk(body);
  EXPECT_EQ(s.sender, "shop@example.com");
  EXPECT_EQ(s.recipients, (std::vector<std::string>{"alice@example.org", "bob@example.org",
                                                    "carol@example.org", "dave@example.org",
                                                    "ALICE@EXAMPLE.ORG"}));
  EXPECT_FALSE(message::HasHeader(s.content, "Bcc"));
  EXPECT_EQ(s.content.find("dave@example.org"), std::string::npos) << "bcc leaked into the content";
  EXPECT_EQ(message::GetHeaderValues(s.content, "X-Campaign"), std::vector<std::string>{"spring"});
  EXPECT_TRUE(message::GetHeaderValues(s.content, "Content-Type")[0].starts_with("multipart/alternative"));
  auto to = message::ParseAddressList(message::GetHeaderValues(s.content, "To")[0]);
  ASSERT_TRUE(to);
  EXPECT_EQ(to->size(), 2u);
}

TEST(HttpMessageRequestTest, DuplicateRecipientsAreSentOnce) {
  json body = Structured();
  body["to"] = {"a@Example.ORG", "a@example.org", "Name <a@example.org>"};
  MessageSubmission s = ExpectOk(body);
  EXPECT_EQ(s.recipients, std::vector<std::string>{"a@Example.ORG"});
}

struct BadCase {
  std::string name;
  json body;
  int status;
  std::string type;
  std::string field;
};

TEST(HttpMessageRequestTest, EveryBadInputNamesItsField) {
  auto with = [](json base, const std::string& key, json value) {
    base[key] = std::move(value);
    return base;
  };
  auto without = [](json base, const std::string& key) {
    base.erase(key);
    return base;
  };
  std::string big(10001, 'x');
  const std::string kField(kProblemInvalidField);
  std::vector<BadCase> cases = {
      {"array body", json::array({1, 2}), 400, kField, ""},
      {"unknown member", with(Structured(), "subjet", "typo"), 400, kField, "/subjet"},
      {"missing from", without(Structured(), "from"), 400, kField, "/from"},
      {"from not a string", with(Structured(), "from", 5), 400, kField, "/from"},
      {"missing to", without(Structured(), "to"), 400, kField, "/to"},
      {"to not an array", with(Structured(), "to", "a@example.org"), 400, kField, "/to"},
      {"to empty", with(Structured(), "to", json::array()), 400, kField, "/to"},
      {"to element not a string", with(Structured(), "to", {"a@example.org", 7}), 400, kField, "/to/1"},
      {"invalid address", with(Structured(), "to", {"a@example.org", "b@example.org", "not an address"}),
       400, kField, "/to/2"},
      {"address with space", with(Structured(), "cc", {"a b@example.org"}), 400, kField, "/cc/0"},
      {"address without domain", with(Structured(), "bcc", {"root"}), 400, kField, "/bcc/0"},
      {"invalid from", with(Structured(), "from", "Shop <shop@>"), 400, kField, "/from"},
      {"cc not an array", with(Structured(), "cc", "c@example.org"), 400, kField, "/cc"},
      {"subject injection", with(Structured(), "subject", "Hi\r\nBcc: victim@example.com"), 400, kField,
       "/subject"},
      {"to injection", with(Structured(), "to", {"a@example.org\r\nBcc: v@example.com"}), 400, kField,
       "/to/0"},
      {"header value injection", with(Structured(), "headers", {{"X-Foo", "bar\nBcc: v@example.com"}}), 400,
       kField, "/headers/X-Foo"},
      {"header name injection", with(Structured(), "headers", {{"X-Foo\r\nBcc", "v@example.com"}}), 400,
       kField, "/headers/X-Foo\r\nBcc"},
      {"header name invalid", with(Structured(), "headers", {{"X Foo", "bar"}}), 400, kField,
       "/headers/X Foo"},
      {"header value not a string", with(Structured(), "headers", {{"X-N", 1}}), 400, kField, "/headers/X-N"},
      {"headers not an object", with(Structured(), "headers", {"X-Foo: bar"}), 400, kField, "/headers"},
      {"reserved header", with(Structured(), "headers", {{"Bcc", "v@example.com"}}), 400, kField,
       "/headers/Bcc"},
      {"no text or html", without(Structured(), "text"), 400, kField, "/text"},
      {"text not a string", with(Structured(), "text", json::array()), 400, kField, "/text"},
      {"raw mixed with subject", with(Raw(), "subject", "x"), 400, kField, "/subject"},
      {"raw mixed with html", with(Raw(), "html", "<p>"), 400, kField, "/html"},
      {"raw not a string", with(Raw(), "raw", 1), 400, kField, "/raw"},
      {"raw without header", with(Raw(), "raw", "just text\n\nmore"), 400, kField, "/raw"},
      {"raw empty", with(Raw(), "raw", ""), 400, kField, "/raw"},
      {"raw long line", with(Raw(), "raw", "Subject: x\r\n\r\n" + std::string(999, 'a')), 400, kField, "/raw"},
      {"raw NUL", with(Raw(), "raw", std::string("Subject: x\r\n\r\na\0b", 17)), 400, kField, "/raw"},
      {"raw envelope display name", with(Raw(), "from", "Name <a@example.com>"), 400, kField, "/from"},
      {"raw envelope bad rcpt", with(Raw(), "to", {"ok@example.org", "bad"}), 400, kField, "/to/1"},
      {"raw too many", with(Raw(), "to", {"a@x.example", "b@x.example", "c@x.example", "d@x.example",
                                         "e@x.example", "f@x.example"}),
       400, std::string(kProblemTooManyRecipients), "/to/5"},
      {"structured too many",
       with(with(Structured(), "cc", {"b@x.example", "c@x.example", "d@x.example"}), "bcc",
            {"e@x.example", "f@x.example", "g@x.example"}),
       400, std::string(kProblemTooManyRecipients), "/bcc/1"},
      {"raw too large", with(Raw(), "raw", "Subject: x\r\n\r\n" + big), 413,
       std::string(kProblemMessageTooLarge), "/raw"},
      {"text too large", with(Structured(), "text", big), 413, std::string(kProblemMessageTooLarge), "/text"},
      {"html too large", with(Structured(), "html", big), 413, std::string(kProblemMessageTooLarge), "/html"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    Problem p = ExpectProblem(c.body);
    EXPECT_EQ(p.status, c.status) << p.ToJson();
    EXPECT_EQ(p.type, c.type) << p.ToJson();
    EXPECT_EQ(p.field, c.field) << p.ToJson();
    EXPECT_FALSE(p.detail.empty());
  }
}

TEST(HttpMessageRequestTest, InvalidJson) {
  for (std::string_view body : {"", "{", "{\"from\": }", "not json", "{\"a\":1} trailing"}) {
    Problem p = ExpectProblemText(body);
    EXPECT_EQ(p.status, 400) << body;
    EXPECT_EQ(p.type, kProblemInvalidJson);
    EXPECT_EQ(p.field, "");
  }
  // Invalid UTF-8 inside a JSON string is invalid JSON (RFC 8259 8.1).
  EXPECT_EQ(ExpectProblemText("{\"from\":\"\xff\"}").status, 400);
}

TEST(HttpMessageRequestTest, QuotedPrintableIsUsedForLongStructuredText) {
  json body = Structured();
  body["text"] = std::string(2000, 'a');
  MessageSubmission s = ExpectOk(body);
  EXPECT_EQ(message::GetHeaderValues(s.content, "Content-Transfer-Encoding"),
            std::vector<std::string>{"quoted-printable"});
}

TEST(HttpMessageRequestTest, ProblemJson) {
  Problem p{400, std::string(kProblemInvalidField), "Invalid request field", "bad \"x\"\n", "/to/2"};
  json j = json::parse(p.ToJson());
  EXPECT_EQ(j["status"], 400);
  EXPECT_EQ(j["type"], "/problems/invalid-field");
  EXPECT_EQ(j["title"], "Invalid request field");
  EXPECT_EQ(j["detail"], "bad \"x\"\n");
  EXPECT_EQ(j["field"], "/to/2");
  // The whole-body pointer "" is still written for request problems.
  Problem whole{400, std::string(kProblemInvalidJson), "Invalid JSON", "x", ""};
  EXPECT_TRUE(json::parse(whole.ToJson()).contains("field"));
  // Generic problems omit an empty field; invalid UTF-8 does not throw.
  Problem generic{404, "about:blank", "Not Found", "no such resource: /\xff", ""};
  json g = json::parse(generic.ToJson());
  EXPECT_FALSE(g.contains("field"));
  EXPECT_EQ(g["status"], 404);
}

}  // namespace
}  // namespace hikyaku::inject
