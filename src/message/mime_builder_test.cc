#include "message/mime_builder.h"

#include <gtest/gtest.h>

#include <functional>

#include "message/address.h"
#include "message/encoding.h"
#include "message/header.h"

namespace hikyaku::message {
namespace {

MessageDraft Draft() {
  MessageDraft d;
  d.from = "Shop <shop@example.com>";
  d.to = {"alice@example.org"};
  d.subject = "Hello";
  d.text = "Hi Alice,\nsee you.\n";
  d.message_id_domain = "mta.example.com";
  d.date = FromUnixMillis(1'795'881'299'123);
  return d;
}

void ExpectWellFormed(std::string_view msg) {
  size_t start = 0;
  int line = 0;
  while (start < msg.size()) {
    ++line;
    size_t nl = msg.find('\n', start);
    ASSERT_NE(nl, std::string_view::npos) << "message must end with CRLF";
    ASSERT_GT(nl, start) << "bare LF on line " << line;
    ASSERT_EQ(msg[nl - 1], '\r') << "bare LF on line " << line;
    ASSERT_LE(nl - 1 - start, 998u) << "line " << line << " too long";
    std::string_view text = msg.substr(start, nl - 1 - start);
    ASSERT_EQ(text.find('\r'), std::string_view::npos) << "bare CR on line " << line;
    start = nl + 1;
  }
  ASSERT_TRUE(ValidateHeaderBlock(msg));
  // Header lines are all ASCII (encoded-words for anything else).
  HeaderBounds b = FindHeaderEnd(msg);
  ASSERT_TRUE(IsAscii(msg.substr(0, b.header_end)));
}

struct Part {
  std::string content_type;
  std::string encoding;
  std::string decoded;
};

Part DecodePart(std::string_view entity) {
  Part p;
  HeaderBounds b = FindHeaderEnd(entity);
  auto ct = GetHeaderValues(entity, "Content-Type");
  auto cte = GetHeaderValues(entity, "Content-Transfer-Encoding");
  EXPECT_EQ(ct.size(), 1u);
  EXPECT_EQ(cte.size(), 1u);
  if (ct.size() != 1 || cte.size() != 1) return p;
  p.content_type = ct[0];
  p.encoding = cte[0];
  std::string_view body = entity.substr(b.body_start);
  if (p.encoding == "quoted-printable") {
    auto dec = QuotedPrintableDecode(body);
    EXPECT_TRUE(dec);
    p.decoded = dec.value_or("");
  } else {
    p.decoded = std::string(body);
  }
  return p;
}

// Splits a multipart body by its boundary (RFC 2046 5.1.1).
std::vector<std::string> SplitMultipart(std::string_view msg, const std::string& boundary) {
  std::vector<std::string> parts;
  std::string delim = "\r\n--" + boundary;
  HeaderBounds b = FindHeaderEnd(msg);
  std::string body = "\r\n" + std::string(msg.substr(b.body_start));
  size_t pos = body.find(delim);
  EXPECT_NE(pos, std::string::npos);
  while (pos != std::string::npos) {
    size_t after = pos + delim.size();
    if (body.compare(after, 2, "--") == 0) {
      EXPECT_EQ(body.substr(after + 2), "\r\n");
      return parts;
    }
    EXPECT_EQ(body.compare(after, 2, "\r\n"), 0);
    size_t next = body.find(delim, after);
    EXPECT_NE(next, std::string::npos) << "no closing delimiter";
    if (next == std::string::npos) break;
    parts.push_back(body.substr(after + 2, next - after - 2));
    pos = next;
  }
  ADD_FAILURE() << "no close delimiter";
  return parts;
}

std::string BoundaryOf(std::string_view content_type) {
  size_t p = content_type.find("boundary=\"");
  if (p == std::string_view::npos) return "";
  p += 10;
  return std::string(content_type.substr(p, content_type.find('"', p) - p));
}

std::string Crlf(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

TEST(MimeBuilderTest, TextOnlyAscii) {
  auto msg = BuildMessage(Draft());
  ASSERT_TRUE(msg) << msg.error().ToString();
  ExpectWellFormed(*msg);
  EXPECT_EQ(GetHeaderValues(*msg, "Date"), std::vector<std::string>{"Sat, 28 Nov 2026 15:54:59 +0000"});
  EXPECT_EQ(GetHeaderValues(*msg, "From"), std::vector<std::string>{"Shop <shop@example.com>"});
  EXPECT_EQ(GetHeaderValues(*msg, "To"), std::vector<std::string>{"alice@example.org"});
  EXPECT_EQ(GetHeaderValues(*msg, "Subject"), std::vector<std::string>{"Hello"});
  EXPECT_EQ(GetHeaderValues(*msg, "MIME-Version"), std::vector<std::string>{"1.0"});
  auto mid = GetHeaderValues(*msg, "Message-ID");
  ASSERT_EQ(mid.size(), 1u);
  EXPECT_TRUE(mid[0].starts_with("<") && mid[0].ends_with("@mta.example.com>")) << mid[0];
  EXPECT_FALSE(HasHeader(*msg, "Cc"));
  Part p = DecodePart(*msg);
  EXPECT_EQ(p.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(p.encoding, "7bit");
  EXPECT_EQ(p.decoded, "Hi Alice,\r\nsee you.\r\n");
}

TEST(MimeBuilderTest, MessageIdsDiffer) {
  auto a = BuildMessage(Draft());
  auto b = BuildMessage(Draft());
  ASSERT_TRUE(a && b);
  EXPECT_NE(GetHeaderValues(*a, "Message-ID"), GetHeaderValues(*b, "Message-ID"));
}

TEST(MimeBuilderTest, NonAsciiTextUsesQuotedPrintableAndRoundTrips) {
  MessageDraft d = Draft();
  std::string text = "こんにちは、山田様。\n= sign and trailing space \n" + std::string(150, 'x') + "\nend";
  d.text = text;
  auto msg = BuildMessage(d);
  ASSERT_TRUE(msg) << msg.error().ToString();
  ExpectWellFormed(*msg);
  Part p = DecodePart(*msg);
  EXPECT_EQ(p.encoding, "quoted-printable");
  // The builder adds the final line break of a single-part body.
  EXPECT_EQ(p.decoded, Crlf(text) + "\r\n");
  // Encoded lines respect RFC 2045's 76.
  std::string_view body = std::string_view(*msg).substr(FindHeaderEnd(*msg).body_start);
  for (size_t s = 0, e; s < body.size(); s = e + 2) {
    e = body.find("\r\n", s);
    ASSERT_LE(e - s, 76u);
  }
}

TEST(MimeBuilderTest, LongAsciiLineNeedsQuotedPrintable) {
  MessageDraft d = Draft();
  d.text = std::string(1500, 'a');
  auto msg = BuildMessage(d);
  ASSERT_TRUE(msg);
  ExpectWellFormed(*msg);
  Part p = DecodePart(*msg);
  EXPECT_EQ(p.encoding, "quoted-printable");
  EXPECT_EQ(p.decoded, std::string(1500, 'a') + "\r\n");
}

TEST(MimeBuilderTest, HtmlOnly) {
  MessageDraft d = Draft();
  d.text.reset();
  d.html = "<p>Hi</p>";
  auto msg = BuildMessage(d);
  ASSERT_TRUE(msg);
  ExpectWellFormed(*msg);
  Part p = DecodePart(*msg);
  EXPECT_EQ(p.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(p.decoded, "<p>Hi</p>\r\n");
}

TEST(MimeBuilderTest, MultipartAlternativeParsesBack) {
  MessageDraft d = Draft();
  d.text = "Plain ünïcödé text\nline 2";
  d.html = "<html><body><p>HTML</p></body></html>\n";
  auto msg = BuildMessage(d);
  ASSERT_TRUE(msg) << msg.error().ToString();
  ExpectWellFormed(*msg);
  auto ct = GetHeaderValues(*msg, "Content-Type");
  ASSERT_EQ(ct.size(), 1u);
  EXPECT_TRUE(ct[0].starts_with("multipart/alternative; boundary=\"")) << ct[0];
  std::string boundary = BoundaryOf(ct[0]);
  ASSERT_FALSE(boundary.empty());
  EXPECT_LE(boundary.size(), 70u);  // RFC 2046 5.1.1
  EXPECT_FALSE(HasHeader(*msg, "Content-Transfer-Encoding"));
  auto parts = SplitMultipart(*msg, boundary);
  ASSERT_EQ(parts.size(), 2u);
  Part text = DecodePart(parts[0]);
  Part html = DecodePart(parts[1]);
  EXPECT_EQ(text.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(text.encoding, "quoted-printable");
  EXPECT_EQ(text.decoded, Crlf(*d.text));
  EXPECT_EQ(html.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(html.encoding, "7bit");
  EXPECT_EQ(html.decoded, Crlf(*d.html));
}

TEST(MimeBuilderTest, BoundaryNeverOccursInParts) {
  // 7bit parts full of boundary-like text: the boundary must differ.
  MessageDraft d = Draft();
  d.text = "--=_hk_ and =_hk_ and --\n";
  d.html = "<p>--=_hk_</p>";
  for (int i = 0; i < 50; ++i) {
    auto msg = BuildMessage(d);
    ASSERT_TRUE(msg);
    std::string boundary = BoundaryOf(GetHeaderValues(*msg, "Content-Type")[0]);
    EXPECT_EQ(d.text->find(boundary), std::string::npos);
    EXPECT_EQ(SplitMultipart(*msg, boundary).size(), 2u);
  }
}

TEST(MimeBuilderTest, NonAsciiSubjectAndNamesAreEncodedWords) {
  MessageDraft d = Draft();
  d.from = "株式会社サンプル <info@example.co.jp>";
  d.to = {"山田 太郎 <taro@example.jp>", "\"Doe, John\" <john@example.com>", "Plain Name <p@example.com>"};
  d.cc = {"cc@example.com"};
  d.subject = "【重要】ご注文ありがとうございます。お届け予定日のお知らせ（長い件名のテスト）";
  auto msg = BuildMessage(d);
  ASSERT_TRUE(msg) << msg.error().ToString();
  ExpectWellFormed(*msg);
  auto subject = GetHeaderValues(*msg, "Subject");
  ASSERT_EQ(subject.size(), 1u);
  EXPECT_TRUE(subject[0].starts_with("=?UTF-8?B?")) << subject[0];
  // Header lines are folded at 78.
  std::string_view head = std::string_view(*msg).substr(0, FindHeaderEnd(*msg).header_end);
  for (size_t s = 0, e; s < head.size(); s = e + 2) {
    e = head.find("\r\n", s);
    EXPECT_LE(e - s, 78u) << head.substr(s, e - s);
  }
  // The address headers still parse back to the same addr-specs.
  auto to = ParseAddressList(GetHeaderValues(*msg, "To")[0]);
  ASSERT_TRUE(to) << to.error().ToString();
  ASSERT_EQ(to->size(), 3u);
  EXPECT_EQ((*to)[0].addr_spec, "taro@example.jp");
  EXPECT_TRUE((*to)[0].display_name.starts_with("=?UTF-8?B?"));
  EXPECT_EQ((*to)[1].display_name, "Doe, John");
  EXPECT_EQ((*to)[2].display_name, "Plain Name");
  auto from = ParseMailbox(GetHeaderValues(*msg, "From")[0]);
  ASSERT_TRUE(from);
  EXPECT_EQ(from->addr_spec, "info@example.co.jp");
  EXPECT_EQ(GetHeaderValues(*msg, "Cc"), std::vector<std::string>{"cc@example.com"});
}

TEST(MimeBuilderTest, ManyRecipientsFoldTheToField) {
  MessageDraft d = Draft();
  d.to.clear();
  for (int i = 0; i < 100; ++i) d.to.push_back("user" + std::to_string(i) + "@example.com");
  auto msg = BuildMessage(d);
  ASSERT_TRUE(msg);
  ExpectWellFormed(*msg);
  auto to = ParseAddressList(GetHeaderValues(*msg, "To")[0]);
  ASSERT_TRUE(to);
  EXPECT_EQ(to->size(), 100u);
}

TEST(MimeBuilderTest, ExtraHeaders) {
  MessageDraft d = Draft();
  d.headers = {{"X-Campaign", "spring-sale"},
               {"List-Unsubscribe", "<https://example.com/u/abc>, <mailto:u@example.com>"},
               {"X-Japanese", "日本語ヘッダ"},
               {"Reply-To", "サポート <support@example.com>"},
               {"Message-ID", "<given@example.com>"},
               {"Date", "Mon, 1 Jan 2024 00:00:00 +0900"}};
  auto msg = BuildMessage(d);
  ASSERT_TRUE(msg) << msg.error().ToString();
  ExpectWellFormed(*msg);
  EXPECT_EQ(GetHeaderValues(*msg, "X-Campaign"), std::vector<std::string>{"spring-sale"});
  EXPECT_EQ(GetHeaderValues(*msg, "List-Unsubscribe"),
            std::vector<std::string>{"<https://example.com/u/abc>, <mailto:u@example.com>"});
  EXPECT_TRUE(GetHeaderValues(*msg, "X-Japanese")[0].starts_with("=?UTF-8?B?"));
  auto reply = ParseMailbox(GetHeaderValues(*msg, "Reply-To")[0]);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->addr_spec, "support@example.com");
  EXPECT_EQ(GetHeaderValues(*msg, "Message-ID"), std::vector<std::string>{"<given@example.com>"});
  EXPECT_EQ(GetHeaderValues(*msg, "Date"), std::vector<std::string>{"Mon, 1 Jan 2024 00:00:00 +0900"});
}

TEST(MimeBuilderTest, HeaderInjectionIsRejectedNamingTheField) {
  struct Case {
    std::function<void(MessageDraft&)> mutate;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](MessageDraft& d) { d.subject = "Hi\r\nBcc: victim@example.com"; }, "/subject"},
      {[](MessageDraft& d) { d.subject = "Hi\nBcc: victim@example.com"; }, "/subject"},
      {[](MessageDraft& d) { d.from = "a@example.com\r\nBcc: v@example.com"; }, "/from"},
      {[](MessageDraft& d) { d.to.push_back("Name\r\n <b@example.com>"); }, "/to/1"},
      {[](MessageDraft& d) { d.cc = {"ok@example.com", "x@example.com\n"}; }, "/cc/1"},
      {[](MessageDraft& d) { d.headers = {{"X-Foo", "bar\r\nBcc: v@example.com"}}; }, "/headers/X-Foo"},
      {[](MessageDraft& d) { d.headers = {{"X-Foo\r\nBcc", "v@example.com"}}; }, "/headers/X-Foo\r\nBcc"},
      {[](MessageDraft& d) { d.headers = {{"X Foo", "bar"}}; }, "/headers/X Foo"},
      {[](MessageDraft& d) { d.headers = {{"X:Foo", "bar"}}; }, "/headers/X:Foo"},
      {[](MessageDraft& d) { d.headers = {{"", "bar"}}; }, "/headers/"},
      {[](MessageDraft& d) { d.headers = {{"a/b~c", "x\r"}}; }, "/headers/a~1b~0c"},
      {[](MessageDraft& d) { d.headers = {{"bcc", "v@example.com"}}; }, "/headers/bcc"},
      {[](MessageDraft& d) { d.headers = {{"Content-Type", "text/html"}}; }, "/headers/Content-Type"},
      {[](MessageDraft& d) { d.headers = {{"X-Long", std::string(1200, 'a')}}; }, "/headers/X-Long"},
      {[](MessageDraft& d) { d.to = {"not an address"}; }, "/to/0"},
      {[](MessageDraft& d) { d.to = {"a@b.example, c@d.example"}; }, "/to/0"},
      {[](MessageDraft& d) { d.from = "nobody"; }, "/from"},
      {[](MessageDraft& d) { d.subject = "\xff\xfe"; }, "/subject"},
      {[](MessageDraft& d) { d.text = "\xc3"; }, "/text"},
      {[](MessageDraft& d) { d.text.reset(); }, "/text"},
      {[](MessageDraft& d) { d.message_id_domain = ""; }, "/message_id_domain"},
  };
  for (Case& c : cases) {
    MessageDraft d = Draft();
    c.mutate(d);
    auto msg = BuildMessage(d);
    ASSERT_FALSE(msg) << "expected failure for " << c.field;
    EXPECT_EQ(msg.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(ErrorField(msg.error()), c.field) << msg.error().message();
  }
}

TEST(MimeBuilderTest, JsonPointerToken) {
  EXPECT_EQ(JsonPointerToken("a/b~c"), "a~1b~0c");
  EXPECT_EQ(JsonPointerToken("X-Foo"), "X-Foo");
}

}  // namespace
}  // namespace hikyaku::message
