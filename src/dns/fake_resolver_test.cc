#include "dns/fake_resolver.h"

#include <gtest/gtest.h>

namespace hikyaku::dns {
namespace {

TEST(FakeResolver, DeferredAnswersAtRunPendingTime) {
  FakeResolver fake;
  std::optional<Result<Destination>> out;
  fake.ResolveMx("Late.Test", [&](Result<Destination> r) { out = std::move(r); });
  EXPECT_FALSE(out.has_value());
  EXPECT_EQ(fake.pending(), 1u);
  fake.SetMxHosts("late.test",
                  {MxHost{"mx.late.test", 5, {boost::asio::ip::make_address("192.0.2.1")}, 25}});
  EXPECT_EQ(fake.RunPending(), 1u);
  ASSERT_TRUE(out.has_value());
  ASSERT_TRUE(*out);
  EXPECT_EQ((*out)->hosts[0].name, "mx.late.test");
  EXPECT_EQ(fake.mx_requests(), std::vector<std::string>{"late.test"});
}

TEST(FakeResolver, UnknownNamesAreNxdomain) {
  FakeResolver fake(FakeResolver::Mode::kImmediate);
  std::optional<Result<HostAddresses>> out;
  fake.ResolveHost("nowhere.test", [&](Result<HostAddresses> r) { out = std::move(r); });
  ASSERT_TRUE(out.has_value());
  ASSERT_FALSE(*out);
  EXPECT_EQ(out->error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(out->error().message(), "nowhere.test: NXDOMAIN");
}

TEST(FakeResolver, RunPendingAlsoAnswersRequestsMadeByCallbacks) {
  FakeResolver fake;
  fake.SetMx("a.test", Fail(ErrorCode::kTimeout, "a.test: DNS timeout"));
  int answers = 0;
  fake.ResolveMx("a.test", [&](Result<Destination> r) {
    ++answers;
    EXPECT_TRUE(r.error().transient());
    fake.ResolveMx("a.test", [&](Result<Destination>) { ++answers; });
  });
  EXPECT_EQ(fake.RunPending(), 2u);
  EXPECT_EQ(answers, 2);
}

}  // namespace
}  // namespace hikyaku::dns
