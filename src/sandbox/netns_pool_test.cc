// The backend's pool of network namespaces made ahead of time (ProcessSandboxOptions::netnsPool),
// for real, as root: each sandbox gets a namespace of its own (not the host's, not another
// sandbox's), owned by the host's user namespace like one made by clone, with its loopback up;
// the pool's fds never reach a sandbox; an empty pool falls back to CLONE_NEWNET; the refill
// thread dies with the backend.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/nsfs.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <latch>
#include <mutex>
#include <set>
#include <thread>

#include "sandbox/process_sandbox.h"
#include "sandbox/sandbox_test_util.h"

namespace stratus {
namespace {

using namespace sandbox_test;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

ino_t inodeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

std::string nsPath(pid_t pid, const char* ns) {
  return "/proc/" + std::to_string(pid) + "/ns/" + ns;
}

// The inode of the user namespace that owns the network namespace of `pid`.
ino_t netnsOwner(pid_t pid) {
  UniqueFd ns(::open(nsPath(pid, "net").c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(ns);
  UniqueFd owner(::ioctl(ns.get(), NS_GET_USERNS));
  EXPECT_TRUE(owner) << "NS_GET_USERNS: " << std::strerror(errno);
  struct stat st {};
  EXPECT_EQ(::fstat(owner.get(), &st), 0);
  return st.st_ino;
}

// Whether `lo` is up in the network namespace of `pid` (looked at from a throwaway thread).
bool loopbackUp(pid_t pid) {
  bool up = false;
  std::thread t([&] {
    UniqueFd ns(::open(nsPath(pid, "net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns || ::setns(ns.get(), CLONE_NEWNET) != 0) return;
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, "lo", 3);
    if (s && ::ioctl(s.get(), SIOCGIFFLAGS, &ifr) == 0) up = (ifr.ifr_flags & IFF_UP) != 0;
  });
  t.join();
  return up;
}

// Links of every fd of `pid` ("net:[4026...]", "/dev/null", ...).
std::vector<std::string> fdLinks(pid_t pid) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    out.push_back(fs::read_symlink(e.path(), ec).string());
  }
  EXPECT_FALSE(ec) << ec.message();
  return out;
}

int threadsNamed(const std::string& name) {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/task")) {
    std::string comm = slurp(e.path() / "comm");
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    if (comm == name) ++n;
  }
  return n;
}

// Polls (deadline-bounded) until the pool holds `want` namespaces.
bool waitReady(ProcessSandboxBackend& b, size_t want) {
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (b.netnsPoolStats().ready == want) return true;
    std::this_thread::yield();
  }
  return false;
}

class NetnsPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string t = (fs::temp_directory_path() / "stratus-netns-XXXXXX").string();
    ASSERT_NE(::mkdtemp(t.data()), nullptr);
    tmp_ = t;
    ::chmod(tmp_.c_str(), 0755);
    code_ = tmp_ / "code";
    fs::create_directory(code_);
    ::chmod(code_.c_str(), 0755);
    put(code_ / "server.py", kTokenServerPy, 0644);
  }
  void TearDown() override {
    if (!tmp_.empty()) fs::remove_all(tmp_);
  }

  std::unique_ptr<ProcessSandboxBackend> makeBackend(size_t pool) {
    ProcessSandboxOptions o;
    o.stateDir = tmp_ / ("state-" + randomHex());
    o.cgroupParent = "stratus-test-" + randomHex();
    o.netnsPool = pool;
    auto b = ProcessSandboxBackend::create(o);
    EXPECT_TRUE(b.isOk()) << b.status().toString();
    return b.isOk() ? std::move(b).value() : nullptr;
  }

  SandboxSpec sleeper(const std::string& id) {
    SandboxSpec s;
    s.id = id;
    s.argv = {"/usr/bin/sleep", "600"};
    return s;
  }

  // A sandbox serving TOKEN on 127.0.0.1:9000 inside; `out` receives its "ready" line.
  Result<std::unique_ptr<Sandbox>> server(ProcessSandboxBackend& b, const std::string& id,
                                          const std::string& token, UniqueFd& outR) {
    int p[2];
    EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
    outR.reset(p[0]);
    UniqueFd w(p[1]);
    SandboxSpec s;
    s.id = id;
    s.argv = {"/usr/bin/python3", "/code/server.py"};
    s.env = {"TOKEN=" + token};
    s.codeDir = code_;
    s.stdoutFd = w.get();
    s.stderrFd = 2;
    return b.create(s);
  }

  // The sandbox's network namespace is its own: not the host's, not in `seen`; owned by the
  // host's user namespace (as with CLONE_NEWNET: root of the sandbox's user namespace has no
  // power over it); loopback up.
  void expectOwnNetns(Sandbox& s, std::set<ino_t>& seen) {
    ino_t net = inodeOf(nsPath(s.pid(), "net"));
    EXPECT_NE(net, inodeOf("/proc/self/ns/net"));
    EXPECT_TRUE(seen.insert(net).second) << "two sandboxes share network namespace " << net;
    EXPECT_EQ(netnsOwner(s.pid()), inodeOf("/proc/self/ns/user"));
    EXPECT_NE(inodeOf(nsPath(s.pid(), "user")), inodeOf("/proc/self/ns/user"));
    EXPECT_TRUE(loopbackUp(s.pid()));
  }

  fs::path tmp_, code_;
};

TEST_F(NetnsPoolTest, PooledSandboxesEachGetTheirOwnNamespace) {
  auto b = makeBackend(4);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(waitReady(*b, 4));
  std::set<ino_t> seen;
  std::vector<std::unique_ptr<Sandbox>> sandboxes;
  std::vector<std::string> tokens;
  for (int i = 0; i < 2; ++i) {
    tokens.push_back("tok-" + randomHex());
    UniqueFd out;
    auto sb = server(*b, "srv" + std::to_string(i), tokens.back(), out);
    ASSERT_TRUE(sb.isOk()) << sb.status().toString();
    ASSERT_EQ(readUntil(out.get(), "ready\n"), "ready\n");
    sandboxes.push_back(std::move(sb).value());
  }
  auto stats = b->netnsPoolStats();
  EXPECT_EQ(stats.taken, 2u);
  EXPECT_EQ(stats.fallbacks, 0u);
  for (size_t i = 0; i < sandboxes.size(); ++i) {
    expectOwnNetns(*sandboxes[i], seen);
    // connectTcp reaches this sandbox's own server on its loopback, and only it.
    auto fd = sandboxes[i]->connectTcp(9000);
    ASSERT_TRUE(fd.isOk()) << fd.status().toString();
    EXPECT_EQ(readUntilEof(fd->get(), std::chrono::seconds(10)), tokens[i]);
  }
  sandboxes.clear();
  // Used namespaces are never handed out again: the pool refills with new ones.
  ASSERT_TRUE(waitReady(*b, 4));
  auto sb = b->create(sleeper("again"));
  ASSERT_TRUE(sb.isOk()) << sb.status().toString();
  expectOwnNetns(**sb, seen);
  EXPECT_EQ(b->netnsPoolStats().taken, 3u);
}

TEST_F(NetnsPoolTest, WithoutPoolTheNamespaceIsTheSame) {
  auto b = makeBackend(0);
  ASSERT_NE(b, nullptr);
  std::set<ino_t> seen;
  UniqueFd out;
  auto sb = server(*b, "nopool", "tok-x", out);
  ASSERT_TRUE(sb.isOk()) << sb.status().toString();
  ASSERT_EQ(readUntil(out.get(), "ready\n"), "ready\n");
  expectOwnNetns(**sb, seen);
  auto fd = (*sb)->connectTcp(9000);
  ASSERT_TRUE(fd.isOk()) << fd.status().toString();
  EXPECT_EQ(readUntilEof(fd->get(), std::chrono::seconds(10)), "tok-x");
  auto stats = b->netnsPoolStats();
  EXPECT_EQ(stats.made + stats.taken + stats.fallbacks + stats.ready, 0u);
  EXPECT_EQ(threadsNamed("stratus-netns"), 0);
}

TEST_F(NetnsPoolTest, NoNamespaceFdLeaksIntoTheSandbox) {
  auto b = makeBackend(2);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(waitReady(*b, 2));
  auto sb = b->create(sleeper("fds"));
  ASSERT_TRUE(sb.isOk()) << sb.status().toString();
  ASSERT_EQ(b->netnsPoolStats().taken, 1u);
  const pid_t init = (*sb)->pid();
  std::string children =
      slurp("/proc/" + std::to_string(init) + "/task/" + std::to_string(init) + "/children");
  ASSERT_FALSE(children.empty()) << "the command is not running";
  const pid_t command = std::stoi(children);
  for (pid_t pid : {init, command}) {
    for (const auto& l : fdLinks(pid)) {
      EXPECT_FALSE(l.starts_with("net:")) << "pid " << pid << " holds " << l;
      EXPECT_FALSE(l.starts_with("/proc/")) << "pid " << pid << " holds " << l;
    }
  }
  // The command's only fds are its stdio (all /dev/null here).
  for (const auto& l : fdLinks(command)) EXPECT_EQ(l, "/dev/null");
}

TEST_F(NetnsPoolTest, ExhaustedPoolFallsBackToCloneNewnet) {
  auto b = makeBackend(2);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(waitReady(*b, 2));
  b->setNetnsPoolRefill(false);
  std::set<ino_t> seen;
  std::vector<std::unique_ptr<Sandbox>> sandboxes;
  for (int i = 0; i < 3; ++i) {
    auto sb = b->create(sleeper("x" + std::to_string(i)));
    ASSERT_TRUE(sb.isOk()) << sb.status().toString();
    sandboxes.push_back(std::move(sb).value());
  }
  auto stats = b->netnsPoolStats();
  EXPECT_EQ(stats.taken, 2u);
  EXPECT_EQ(stats.fallbacks, 1u);
  EXPECT_EQ(stats.ready, 0u);
  EXPECT_EQ(stats.made, 2u);
  for (auto& s : sandboxes) expectOwnNetns(*s, seen);
  b->setNetnsPoolRefill(true);
  ASSERT_TRUE(waitReady(*b, 2));
  EXPECT_EQ(b->netnsPoolStats().made, 4u);
}

TEST_F(NetnsPoolTest, ConcurrentCreatesNeverShareANamespace) {
  auto b = makeBackend(3);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(waitReady(*b, 3));
  constexpr int kThreads = 2, kEach = 6;
  std::mutex mu;
  std::vector<ino_t> inodes;  // GUARDED_BY(mu)
  std::latch allMade(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Sandboxes die with their creating thread (PR_SET_PDEATHSIG): each thread keeps its own
      // alive until every thread has made all of its, so all 12 namespaces exist at once.
      std::vector<std::unique_ptr<Sandbox>> mine;
      for (int i = 0; i < kEach; ++i) {
        auto sb = b->create(sleeper("c" + std::to_string(t) + "-" + std::to_string(i)));
        EXPECT_TRUE(sb.isOk()) << sb.status().toString();
        if (!sb.isOk()) continue;
        ino_t net = inodeOf(nsPath((*sb)->pid(), "net"));
        EXPECT_TRUE(loopbackUp((*sb)->pid()));
        std::lock_guard<std::mutex> lock(mu);
        inodes.push_back(net);
        mine.push_back(std::move(sb).value());
      }
      allMade.arrive_and_wait();
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(inodes.size(), static_cast<size_t>(kThreads * kEach));
  std::set<ino_t> distinct(inodes.begin(), inodes.end());
  EXPECT_EQ(distinct.size(), inodes.size());
  EXPECT_EQ(distinct.count(inodeOf("/proc/self/ns/net")), 0u);
  auto stats = b->netnsPoolStats();
  EXPECT_EQ(stats.taken + stats.fallbacks, static_cast<uint64_t>(kThreads * kEach));
  EXPECT_GE(stats.taken, 3u);
}

TEST_F(NetnsPoolTest, DestructorStopsTheRefillThread) {
  const int before = threadsNamed("stratus-netns");
  auto b = makeBackend(3);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(waitReady(*b, 3));
  EXPECT_EQ(threadsNamed("stratus-netns"), before + 1);
  {
    auto sb = b->create(sleeper("used"));
    ASSERT_TRUE(sb.isOk()) << sb.status().toString();
  }
  b.reset();
  // pthread_join returns once the kernel cleared the thread's tid; its /proc entry goes a
  // moment later.
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (threadsNamed("stratus-netns") != before && Clock::now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(threadsNamed("stratus-netns"), before);
}

}  // namespace
}  // namespace stratus
