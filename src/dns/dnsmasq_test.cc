// CaresResolver against a real DNS server: dnsmasq on 127.0.0.1 with a free
// port, serving a small zone from its command line. Skipped (with the reason)
// only when the dnsmasq binary is not installed (scripts/setup.sh --test).
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dns/cares_resolver.h"
#include "dns/scripted_dns_server.h"

extern char** environ;

namespace hikyaku::dns {
namespace {

namespace fs = std::filesystem;
using boost::asio::ip::make_address;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::optional<std::string> FindDnsmasq() {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"}) {
    fs::path p = fs::path(dir) / "dnsmasq";
    if (access(p.c_str(), X_OK) == 0) return p.string();
  }
  return std::nullopt;
}

// A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both). The
// window between closing these sockets and dnsmasq binding is tiny; a clash
// shows up as dnsmasq failing to start, reported with its own message.
uint16_t FreePort() {
  boost::asio::io_context io;
  for (int i = 0; i < 20; ++i) {
    boost::asio::ip::udp::socket udp(io,
                                     boost::asio::ip::udp::endpoint(make_address("127.0.0.1"), 0));
    uint16_t port = udp.local_endpoint().port();
    boost::system::error_code ec;
    boost::asio::ip::tcp::acceptor tcp(io);
    tcp.open(boost::asio::ip::tcp::v4(), ec);
    tcp.bind(boost::asio::ip::tcp::endpoint(make_address("127.0.0.1"), port), ec);
    if (!ec) return port;
  }
  return 0;
}

class DnsmasqTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto binary = FindDnsmasq();
    if (!binary) GTEST_SKIP() << "dnsmasq is not installed (scripts/setup.sh --test installs it)";
    dir_ = fs::temp_directory_path() /
           ("hikyaku-dnsmasq-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    port_ = FreePort();
    ASSERT_NE(port_, 0);
    // The upstream dnsmasq forwards broken.test to; it answers SERVFAIL while
    // the test runs io_ (inside Mx()).
    upstream_ = std::make_unique<ScriptedDnsServer>(io_);
    upstream_->SetRcode("broken.test", ScriptedDnsServer::kServFail);

    // Run as whoever runs the test: as root dnsmasq would otherwise switch to
    // its own user, as another user it cannot switch at all.
    std::string user = getpwuid(getuid()) ? getpwuid(getuid())->pw_name : "root";
    std::string group = getgrgid(getgid()) ? getgrgid(getgid())->gr_name : "root";
    std::vector<std::string> args = {
        *binary,
        "--keep-in-foreground",
        "--port=" + std::to_string(port_),
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--pid-file=" + (dir_ / "dnsmasq.pid").string(),
        "--user=" + user,
        "--group=" + group,
        "--log-facility=" + (dir_ / "dnsmasq.log").string(),
        "--log-queries",
        // Answer every *.test name locally (NXDOMAIN when unknown), never forward.
        "--local=/test/",
        "--local-ttl=300",
        // Two MX of different preference; mx1 with A and AAAA, mx2 with A.
        "--mx-host=two.test,mx1.two.test,10",
        "--mx-host=two.test,mx2.two.test,20",
        "--host-record=mx1.two.test,127.0.0.2,::2",
        "--host-record=mx2.two.test,127.0.0.3",
        // Only an address: implicit MX.
        "--host-record=implicit.test,127.0.0.4",
        // RFC 7505 null MX: preference 0, target the root.
        "--mx-host=nullmx.test,.,0",
        // A domain whose servers are "unknown": dnsmasq answers REFUSED.
        "--server=/refused.test/#",
        // Forwarded to an upstream that fails: dnsmasq relays its SERVFAIL.
        "--server=/broken.test/127.0.0.1#" + std::to_string(upstream_->port()),
    };
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ASSERT_EQ(posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ), 0);

    // Ready when it answers; dnsmasq exits at once on a bad option or a busy port.
    auto deadline = std::chrono::steady_clock::now() + seconds(5);
    while (!Answers()) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "dnsmasq exited (status " << status << "): " << Log();
      }
      if (std::chrono::steady_clock::now() > deadline)
        FAIL() << "dnsmasq did not answer in 5 s: " << Log();
      std::this_thread::sleep_for(milliseconds(20));
    }

    config_.servers = {config::Endpoint{config::IpAddress::V4(127, 0, 0, 1), port_}};
    config_.timeout = milliseconds(500);
    config_.attempts = 2;
    resolver_ = std::make_unique<CaresResolver>(io_, config_, clock_);
    auto started = resolver_->Start();
    ASSERT_TRUE(started) << started.error().ToString();
  }

  void TearDown() override {
    resolver_.reset();
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  std::string Log() const {
    std::ifstream in(dir_ / "dnsmasq.log");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // One raw query for "probe.test" A; any reply means dnsmasq is serving.
  bool Answers() const {
    boost::asio::io_context io;
    boost::asio::ip::udp::socket socket(io, boost::asio::ip::udp::v4());
    const uint8_t query[] = {0xab, 0xcd, 0x01, 0x00, 0, 1,   0,   0,   0,   0, 0, 0, 5, 'p',
                             'r',  'o',  'b',  'e',  4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
    boost::system::error_code ec;
    socket.send_to(boost::asio::buffer(query), {make_address("127.0.0.1"), port_}, 0, ec);
    if (ec) return false;
    socket.non_blocking(true);
    uint8_t reply[512];
    for (int i = 0; i < 10; ++i) {
      socket.receive(boost::asio::buffer(reply), 0, ec);
      if (!ec) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  Result<Destination> Mx(const std::string& domain) {
    std::optional<Result<Destination>> out;
    resolver_->ResolveMx(domain, [&](Result<Destination> r) { out = std::move(r); });
    auto deadline = std::chrono::steady_clock::now() + seconds(5);
    while (!out && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_for(milliseconds(10));
    }
    if (!out) return Fail(ErrorCode::kInternal, "test: no callback in 5 s");
    return std::move(*out);
  }

  fs::path dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  boost::asio::io_context io_;
  std::unique_ptr<ScriptedDnsServer> upstream_;
  ManualClock clock_;
  config::DnsConfig config_;
  std::unique_ptr<CaresResolver> resolver_;
};

TEST_F(DnsmasqTest, TwoMxByPreference) {
  TimePoint now = clock_.Now();
  auto dest = Mx("two.test");
  ASSERT_TRUE(dest) << dest.error().ToString();
  EXPECT_FALSE(dest->implicit_mx);
  ASSERT_EQ(dest->hosts.size(), 2u);
  EXPECT_EQ(dest->hosts[0].name, "mx1.two.test");
  EXPECT_EQ(dest->hosts[0].preference, 10);
  EXPECT_EQ(dest->hosts[0].addresses,
            (std::vector{make_address("127.0.0.2"), make_address("::2")}));
  EXPECT_EQ(dest->hosts[1].name, "mx2.two.test");
  EXPECT_EQ(dest->hosts[1].preference, 20);
  EXPECT_EQ(dest->hosts[1].addresses, std::vector{make_address("127.0.0.3")});
  EXPECT_EQ(dest->expires, now + seconds(300));  // --local-ttl
}

TEST_F(DnsmasqTest, ImplicitMx) {
  auto dest = Mx("implicit.test");
  ASSERT_TRUE(dest) << dest.error().ToString();
  EXPECT_TRUE(dest->implicit_mx);
  ASSERT_EQ(dest->hosts.size(), 1u);
  EXPECT_EQ(dest->hosts[0].name, "implicit.test");
  EXPECT_EQ(dest->hosts[0].addresses, std::vector{make_address("127.0.0.4")});
}

TEST_F(DnsmasqTest, NullMx) {
  auto dest = Mx("nullmx.test");
  ASSERT_FALSE(dest);
  EXPECT_FALSE(dest.error().transient());
  EXPECT_EQ(dest.error().message(), "nullmx.test: null MX (RFC 7505): the domain accepts no mail");
}

TEST_F(DnsmasqTest, Nxdomain) {
  auto dest = Mx("nx.test");
  ASSERT_FALSE(dest);
  EXPECT_EQ(dest.error().code(), ErrorCode::kNotFound);
  EXPECT_FALSE(dest.error().transient());
  EXPECT_EQ(dest.error().message(), "nx.test: NXDOMAIN");
}

TEST_F(DnsmasqTest, RefusedIsTransient) {
  auto dest = Mx("refused.test");
  ASSERT_FALSE(dest);
  EXPECT_TRUE(dest.error().transient());
  EXPECT_EQ(dest.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(dest.error().message().find("REFUSED"), std::string::npos) << dest.error().message();
}

TEST_F(DnsmasqTest, ServfailIsTransient) {
  auto dest = Mx("broken.test");
  ASSERT_FALSE(dest);
  EXPECT_TRUE(dest.error().transient());
  EXPECT_EQ(dest.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(dest.error().message().find("broken.test: SERVFAIL"), std::string::npos)
      << dest.error().message();
  EXPECT_GE(upstream_->queries("broken.test", ScriptedDnsServer::kTypeMx), 1);
}

TEST_F(DnsmasqTest, ServerGoneIsTransient) {
  // Stop dnsmasq: queries now hit a closed port (ICMP unreachable) or time out.
  kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  auto start = std::chrono::steady_clock::now();
  auto dest = Mx("two.test");
  ASSERT_FALSE(dest);
  EXPECT_TRUE(dest.error().transient()) << dest.error().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
}

}  // namespace
}  // namespace hikyaku::dns
