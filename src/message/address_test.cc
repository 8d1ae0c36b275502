#include "message/address.h"

#include <gtest/gtest.h>

#include <random>

#include "message/header.h"

namespace hikyaku::message {
namespace {

std::vector<std::string> Specs(std::string_view value) {
  auto list = ParseAddressList(value);
  EXPECT_TRUE(list) << value << ": " << list.error().ToString();
  std::vector<std::string> out;
  if (list)
    for (const auto& mb : *list) out.push_back(mb.addr_spec);
  return out;
}

using V = std::vector<std::string>;

TEST(AddressListTest, RealWorldShapes) {
  EXPECT_EQ(Specs("user@example.com"), V{"user@example.com"});
  EXPECT_EQ(Specs("  user@example.com  "), V{"user@example.com"});
  EXPECT_EQ(Specs("John Doe <john@example.com>"), V{"john@example.com"});
  EXPECT_EQ(Specs("\"Doe, John\" <john@example.com>, jane@example.org"),
            (V{"john@example.com", "jane@example.org"}));
  EXPECT_EQ(Specs("<bare@example.com>"), V{"bare@example.com"});
  EXPECT_EQ(Specs("john@example.com (John Doe)"), V{"john@example.com"});
  EXPECT_EQ(Specs("(comment (nested \\) paren)) a@b.example"), V{"a@b.example"});
  EXPECT_EQ(Specs("=?UTF-8?B?5bGx55Sw?= <yamada@example.jp>"), V{"yamada@example.jp"});
  EXPECT_EQ(Specs("山田 太郎 <taro@example.jp>"), V{"taro@example.jp"});
  EXPECT_EQ(Specs("\"john..doe\"@example.com"), V{"\"john..doe\"@example.com"});
  EXPECT_EQ(Specs("user@[192.0.2.1]"), V{"user@[192.0.2.1]"});
  // Outlook likes to repeat the address as the display name.
  EXPECT_EQ(Specs("user@example.com <user@example.com>"), V{"user@example.com"});
  // Obsolete syntax still met in the wild (RFC 5322 4.4).
  EXPECT_EQ(Specs("<@relay.example,@hop.example:user@example.com>"), V{"user@example.com"});
  EXPECT_EQ(Specs("a@x.example,,b@y.example,"), (V{"a@x.example", "b@y.example"}));
  EXPECT_EQ(Specs("john . doe @ example . com"), V{"john.doe@example.com"});
  // Folded across lines.
  EXPECT_EQ(Specs("a@x.example,\r\n\tB <b@y.example>"), (V{"a@x.example", "b@y.example"}));
}

TEST(AddressListTest, Groups) {
  EXPECT_EQ(Specs("undisclosed-recipients:;"), V{});
  EXPECT_EQ(Specs("undisclosed-recipients: ;"), V{});
  EXPECT_EQ(Specs("Friends: a@x.example, \"B\" <b@y.example>; c@z.example"),
            (V{"a@x.example", "b@y.example", "c@z.example"}));
  EXPECT_EQ(Specs("A Group:a@x.example;, Other: b@y.example;"), (V{"a@x.example", "b@y.example"}));
  // Missing ';' at the end is tolerated.
  EXPECT_EQ(Specs("undisclosed-recipients:"), V{});
}

TEST(AddressListTest, DisplayNames) {
  auto list = ParseAddressList("\"Doe, \\\"JD\\\" John\" <j@example.com>, Jane  Q.  Public <q@e.example>");
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].display_name, "Doe, \"JD\" John");
  EXPECT_EQ((*list)[1].display_name, "Jane Q. Public");
}

TEST(AddressListTest, Rejects) {
  const char* bad[] = {
      "John Smith",                 // no address
      "<user@example.com",          // unbalanced <
      "user@example.com>",          // unbalanced >
      "\"unterminated <a@b.example>",
      "(unterminated comment a@b.example",
      "a@b@c.example",
      "<>",
      "Name <a@b.example> trailing",
      "a@b.example; c@d.example",   // ';' outside group
      "john doe@example.com",       // two words without a dot
      "G1: G2: a@b.example;;",      // nested group
  };
  for (const char* v : bad) EXPECT_FALSE(ParseAddressList(v)) << v;
}

TEST(AddressListTest, EmptyIsEmpty) {
  EXPECT_EQ(Specs(""), V{});
  EXPECT_EQ(Specs("   "), V{});
}

TEST(MailboxTest, ExactlyOne) {
  auto mb = ParseMailbox("Sender Name <sender@example.com>");
  ASSERT_TRUE(mb);
  EXPECT_EQ(mb->display_name, "Sender Name");
  EXPECT_EQ(mb->addr_spec, "sender@example.com");
  EXPECT_FALSE(ParseMailbox("a@x.example, b@y.example"));
  EXPECT_FALSE(ParseMailbox(""));
  EXPECT_FALSE(ParseMailbox("group: a@x.example;"));
}

TEST(AddrSpecTest, Valid) {
  for (const char* a : {"a@b.example", "first.last+tag@sub.example.co.jp", "x@[192.0.2.1]",
                        "x@[IPv6:2001:db8::1]", "\"quoted\"@example.com", "user@xn--bcher-kva.example",
                        "ユーザー@例え.jp", "o'brien@example.ie", "a@localhost"})
    EXPECT_TRUE(IsValidAddrSpec(a)) << a;
}

TEST(AddrSpecTest, Invalid) {
  std::string long_local(65, 'a');
  std::string long_total = "a@" + std::string(250, 'b') + ".example";
  std::string long_label = "a@" + std::string(64, 'b') + ".example";
  for (std::string a : {std::string(""), std::string("plain"), std::string("@example.com"),
                        std::string("user@"), std::string("us er@example.com"),
                        std::string("user@exa mple.com"), std::string("user\r\n@example.com"),
                        std::string("user@example.com\n"), std::string(".user@example.com"),
                        std::string("user.@example.com"), std::string("us..er@example.com"),
                        std::string("user@-example.com"), std::string("user@example-.com"),
                        std::string("user@example..com"), std::string("user@.example.com"),
                        std::string("<user@example.com>"), std::string("a,b@example.com"),
                        std::string("\"a b\"@example.com"), std::string("user@exa_mple.com"),
                        std::string("user@example.com."), std::string("a\tb@example.com"),
                        long_local + "@example.com", long_total, long_label,
                        std::string("a@b@example.com")})
    EXPECT_FALSE(IsValidAddrSpec(a)) << a;
}

TEST(AddressListTest, RandomInputNeverCrashesAndYieldsAddresses) {
  // Inputs built from the characters the parser treats specially.
  static constexpr char kAlphabet[] = "ab.@<>,:;\"()[]\\ \t\r\n=?\xe3\x81";
  std::mt19937 rng(7);
  for (int round = 0; round < 20000; ++round) {
    std::string value;
    int len = rng() % 40;
    for (int i = 0; i < len; ++i) value += kAlphabet[rng() % (sizeof kAlphabet - 1)];
    auto list = ParseAddressList(value);
    if (list) {
      for (const Mailbox& mb : *list) {
        ASSERT_NE(mb.addr_spec.find('@'), std::string::npos) << value;
      }
    }
    auto rcpts = ExtractRecipientAddresses("To: " + value + "\r\n\r\n");
    (void)rcpts;
  }
}

}  // namespace
}  // namespace hikyaku::message
