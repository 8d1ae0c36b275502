#include "inject/sendmail_args.h"

#include <gtest/gtest.h>

namespace hikyaku::inject {
namespace {

SendmailArgs Parse(std::vector<std::string> args) {
  auto r = ParseSendmailArgs(args);
  EXPECT_TRUE(std::holds_alternative<SendmailArgs>(r)) << std::get<SendmailUsageError>(r).message;
  return std::get<SendmailArgs>(r);
}

TEST(SendmailArgsTest, PhpDefaultSendmailPath) {
  // php.ini: sendmail_path = "/usr/sbin/sendmail -t -i"
  auto a = Parse({"-t", "-i"});
  EXPECT_TRUE(a.extract_recipients);
  EXPECT_FALSE(a.dot_terminates);
  EXPECT_TRUE(a.recipients.empty());
}

TEST(SendmailArgsTest, SenderAttachedAndSeparate) {
  EXPECT_EQ(Parse({"-fbounce@example.com", "a@b.c"}).sender, "bounce@example.com");
  auto a = Parse({"-f", "bounce@example.com", "-oi", "a@b.c", "d@e.f"});
  EXPECT_EQ(a.sender, "bounce@example.com");
  EXPECT_FALSE(a.dot_terminates);
  EXPECT_EQ(a.recipients, (std::vector<std::string>{"a@b.c", "d@e.f"}));
  EXPECT_EQ(Parse({"-f", "<>", "x@y.z"}).sender, "");
  EXPECT_EQ(Parse({"-r", "<s@y.z>", "x@y.z"}).sender, "s@y.z");
}

TEST(SendmailArgsTest, IgnoresQueueTuningOptions) {
  auto a = Parse({"-odi", "-oem", "-N", "never", "-v", "-bm", "-F", "Web Shop", "x@y.z"});
  EXPECT_EQ(a.full_name, "Web Shop");
  EXPECT_EQ(a.recipients, std::vector<std::string>{"x@y.z"});
}

TEST(SendmailArgsTest, ConfigFileAndDoubleDash) {
  auto a = Parse({"-C", "/etc/hikyaku.toml", "--", "-odd@example.com"});
  EXPECT_EQ(a.config_path, "/etc/hikyaku.toml");
  EXPECT_EQ(a.recipients, std::vector<std::string>{"-odd@example.com"});
}

TEST(SendmailArgsTest, UnsupportedModesAreUsageErrors) {
  EXPECT_TRUE(std::holds_alternative<SendmailUsageError>(ParseSendmailArgs({"-bp"})));
  EXPECT_TRUE(std::holds_alternative<SendmailUsageError>(ParseSendmailArgs({"-f"})));
  EXPECT_TRUE(std::holds_alternative<SendmailUsageError>(ParseSendmailArgs({"-Z"})));
}

}  // namespace
}  // namespace hikyaku::inject
