#include "events/event_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <vector>

namespace hikyaku::events {
namespace {

namespace fs = std::filesystem;

fs::path TempPath(const std::string& name) {
  fs::path dir = fs::path(testing::TempDir()) /
                 ("event_log_test_" + std::to_string(::getpid()) + "_" +
                  testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  return dir / name;
}

std::vector<std::string> ReadLines(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const TimePoint kTs = FromUnixMillis(1'795'881'299'123);  // 2026-11-28T15:54:59.123Z
const MessageId kId(0x018c2f9a3b40001aULL);

TEST(EventLogTest, Rfc3339Timestamps) {
  EXPECT_EQ(FormatRfc3339Millis(kTs), "2026-11-28T15:54:59.123Z");
  EXPECT_EQ(FormatRfc3339Millis(FromUnixMillis(0)), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339Millis(FromUnixMillis(951'868'799'007)), "2000-02-29T23:59:59.007Z");
}

TEST(EventLogTest, LineHasTheFieldsInOrder) {
  fs::path path = TempPath("sub/dir/events.jsonl");
  auto log = EventLog::Open(path);
  ASSERT_TRUE(log) << log.error().ToString();
  EventField extra[] = {{"size", uint64_t{1234}}, {"origin", "smtp"},   {"code", 250},
                        {"ratio", 0.5},           {"tls", true},         {"mx", nullptr},
                        {"neg", int64_t{-7}},     {"nan", std::nan("")}};
  (*log)->Write(Event{kTs, "received", kId, "a@example.com", "b@example.org", extra});
  ASSERT_TRUE((*log)->Flush());
  auto lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(lines[0].starts_with(
      R"({"ts":"2026-11-28T15:54:59.123Z","type":"received","id":"018c2f9a3b40001a",)"
      R"("sender":"a@example.com","recipient":"b@example.org","size":1234,"origin":"smtp")"))
      << lines[0];
  auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["code"], 250);
  EXPECT_EQ(j["ratio"], 0.5);
  EXPECT_EQ(j["tls"], true);
  EXPECT_TRUE(j["mx"].is_null());
  EXPECT_EQ(j["neg"], -7);
  EXPECT_TRUE(j["nan"].is_null());
}

TEST(EventLogTest, EscapesQuotesControlsAndKeepsUtf8) {
  fs::path path = TempPath("events.jsonl");
  auto log = EventLog::Open(path);
  ASSERT_TRUE(log);
  std::string nasty = std::string("q\"b\\n\nr\rt\tc\x01\x1f del\x7f 日本語 😀 ") + '\0' + "end";
  EventField extra[] = {{"detail", nasty}, {"key \"quoted\"", "v"}};
  (*log)->Write(Event{kTs, "bounced", kId, nasty, "bad\xff\xfe utf8", extra});
  ASSERT_TRUE((*log)->Flush());
  auto lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 1u) << "a raw newline escaped the string";
  auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["sender"], nasty);
  EXPECT_EQ(j["detail"], nasty);
  EXPECT_EQ(j["key \"quoted\""], "v");
  EXPECT_EQ(j["recipient"], "bad\xef\xbf\xbd\xef\xbf\xbd utf8");  // U+FFFD twice
}

TEST(EventLogTest, ConcurrentWritersProduceWholeLines) {
  fs::path path = TempPath("events.jsonl");
  EventLog::Options options;
  options.flush_bytes = 4096;  // many flushes while writers are busy
  options.flush_interval = std::chrono::milliseconds(1);
  auto log = EventLog::Open(path, options);
  ASSERT_TRUE(log);
  constexpr int kThreads = 4, kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string rcpt = "thread" + std::to_string(t) + "@example.com";
      for (int i = 0; i < kPerThread; ++i) {
        std::string pad(i % 300, 'x');
        EventField extra[] = {{"thread", t}, {"seq", i}, {"pad", pad}};
        (*log)->Write(Event{kTs, "delivered", MessageId(i), "s@example.com", rcpt, extra});
      }
    });
  }
  for (auto& th : threads) th.join();
  log->reset();  // destructor flushes
  auto lines = ReadLines(path);
  ASSERT_EQ(lines.size(), size_t{kThreads * kPerThread});
  std::vector<int> next(kThreads, 0);
  for (const std::string& line : lines) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    int t = j["thread"];
    ASSERT_EQ(j["seq"], next[t]) << "lines of one thread out of order";
    ++next[t];
  }
}

TEST(EventLogTest, BackgroundFlusherWritesWithoutFlush) {
  fs::path path = TempPath("events.jsonl");
  auto log = EventLog::Open(path);
  ASSERT_TRUE(log);
  (*log)->Write(Event{kTs, "received", kId, "a@example.com", "b@example.org", {}});
  // The flusher runs every ~100 ms; allow a generous deadline on a busy machine.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ReadAll(path).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(ReadLines(path).size(), 1u);
}

TEST(EventLogTest, AppendsAcrossOpensAndReceivedWritesOneLinePerRecipient) {
  fs::path path = TempPath("events.jsonl");
  {
    auto log = EventLog::Open(path);
    ASSERT_TRUE(log);
    std::vector<std::string> rcpts = {"x@a.example", "y@b.example", "z@c.example"};
    (*log)->Received(kTs, kId, "s@example.com", rcpts, {{"size", 512}, {"origin", "http"}});
  }
  {
    auto log = EventLog::Open(path);
    ASSERT_TRUE(log);
    std::vector<std::string> rcpts = {"w@d.example"};
    (*log)->Received(kTs, MessageId(2), "s@example.com", rcpts, size_t{77}, "ESMTP 192.0.2.1");
  }
  auto lines = ReadLines(path);
  ASSERT_EQ(lines.size(), 4u);
  auto j1 = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(j1["type"], "received");
  EXPECT_EQ(j1["recipient"], "y@b.example");
  EXPECT_EQ(j1["size"], 512);
  EXPECT_EQ(j1["origin"], "http");
  EXPECT_EQ(j1["id"], "018c2f9a3b40001a");
  auto j3 = nlohmann::json::parse(lines[3]);
  EXPECT_EQ(j3["recipient"], "w@d.example");
  EXPECT_EQ(j3["size"], 77);
  EXPECT_EQ(j3["origin"], "ESMTP 192.0.2.1");
}

TEST(EventLogTest, OpenFailureIsAnError) {
  fs::path file = TempPath("plain-file");
  fs::create_directories(file.parent_path());
  std::ofstream(file) << "x";
  auto log = EventLog::Open(file / "events.jsonl");
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code(), ErrorCode::kIo);
  EXPECT_NE(log.error().message().find("plain-file"), std::string::npos);
}

TEST(EventLogTest, DiskFullIsReportedAndCounted) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  auto log = EventLog::Open("/dev/full");
  ASSERT_TRUE(log);
  (*log)->Write(Event{kTs, "received", kId, "a@example.com", "b@example.org", {}});
  (*log)->Write(Event{kTs, "received", kId, "a@example.com", "c@example.org", {}});
  auto r = (*log)->Flush();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::kNoSpace);
  EXPECT_EQ((*log)->dropped_lines(), 2u);
  // The error is reported once; with nothing new to write, Flush succeeds.
  EXPECT_TRUE((*log)->Flush());
}

TEST(EventLogTest, ReopenFollowsRotation) {
  fs::path path = TempPath("events.jsonl");
  auto log = EventLog::Open(path);
  ASSERT_TRUE(log);
  (*log)->Write(Event{kTs, "received", kId, "a@example.com", "old@example.org", {}});
  ASSERT_TRUE((*log)->Flush());
  fs::rename(path, path.string() + ".1");
  ASSERT_TRUE((*log)->Reopen());
  (*log)->Write(Event{kTs, "received", kId, "a@example.com", "new@example.org", {}});
  ASSERT_TRUE((*log)->Flush());
  auto old_lines = ReadLines(path.string() + ".1");
  auto new_lines = ReadLines(path);
  ASSERT_EQ(old_lines.size(), 1u);
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(new_lines[0])["recipient"], "new@example.org");
}

}  // namespace
}  // namespace hikyaku::events
