// Cgroup drivers. v2 is tested against a temporary directory laid out like cgroupfs (this
// machine's v2 hierarchy has no controllers) and, for the controller-independent parts
// (cgroup.procs, cgroup.kill, rmdir), against the real empty v2 hierarchy. v1 is tested for real,
// including an actual OOM kill.
#include "sandbox/cgroup.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>

namespace stratus {
namespace {

namespace fs = std::filesystem;

std::string randomName(const std::string& prefix) {
  std::random_device rd;
  std::ostringstream o;
  o << prefix << std::hex << rd() << rd();
  return o.str();
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void put(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::trunc);
  out << s;
}

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "stratus-cg-XXXXXX").string();
    path_ = ::mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A child that waits for one byte on a pipe, then execs argv. Lets a test put it in a cgroup
// before it does anything.
struct GatedChild {
  pid_t pid = -1;
  int go = -1;
  void release() {
    (void)!::write(go, "g", 1);
    ::close(go);
    go = -1;
  }
  int wait() {
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return status;
  }
  ~GatedChild() {
    if (go >= 0) ::close(go);
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

void startGated(GatedChild& c, std::vector<std::string> argv) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    char b;
    if (::read(p[0], &b, 1) != 1) ::_exit(99);
    ::execv(args[0], args.data());
    ::_exit(98);
  }
  ::close(p[0]);
  c.pid = pid;
  c.go = p[1];
}

// ---- v2 against a fake cgroupfs.

class FakeV2 : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path();
    put(root_ / "cgroup.controllers", "cpuset cpu io memory pids\n");
    put(root_ / "cgroup.subtree_control", "");
    // The parent as the kernel would show it once created (the test pre-creates it so that it
    // carries the optional files a non-root v2 cgroup has on a recent kernel).
    fs::create_directory(root_ / "sbx");
    put(root_ / "sbx" / "cgroup.controllers", "cpu memory pids\n");
    put(root_ / "sbx" / "cgroup.subtree_control", "");
    put(root_ / "sbx" / "memory.swap.max", "max\n");
    put(root_ / "sbx" / "memory.peak", "0\n");
    put(root_ / "sbx" / "cgroup.kill", "");
  }
  TempDir tmp_;
  fs::path root_;
};

TEST_F(FakeV2, CreateEnablesControllersAndWritesLimits) {
  auto driver = makeCgroupV2Driver(root_);
  EXPECT_EQ(driver->version(), 2);
  CgroupLimits limits;
  limits.memoryBytes = 128LL << 20;
  limits.pidsMax = 64;
  limits.cpuShares = 1024;
  auto cg = driver->create("sbx", "a1", limits);
  ASSERT_TRUE(cg.isOk()) << cg.status().toString();
  fs::path dir = root_ / "sbx" / "a1";
  EXPECT_TRUE(fs::is_directory(dir));
  // Only controllers the root offers, and only those we use (not cpuset, not io).
  EXPECT_EQ(slurp(root_ / "cgroup.subtree_control"), "+cpu +memory +pids");
  EXPECT_EQ(slurp(root_ / "sbx" / "cgroup.subtree_control"), "+cpu +memory +pids");
  EXPECT_EQ(slurp(dir / "memory.max"), std::to_string(128LL << 20));
  EXPECT_EQ(slurp(dir / "memory.swap.max"), "0");
  EXPECT_EQ(slurp(dir / "pids.max"), "64");
  EXPECT_EQ(slurp(dir / "cpu.weight"), "39");  // 1 + (1024-2)*9999/262142

  ASSERT_TRUE((*cg)->addProcess(4242).isOk());
  EXPECT_EQ(slurp(dir / "cgroup.procs"), "4242");

  EXPECT_FALSE((*cg)->oomKilled());
  put(dir / "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n");
  EXPECT_FALSE((*cg)->oomKilled());
  put(dir / "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0\n");
  EXPECT_TRUE((*cg)->oomKilled());

  put(dir / "memory.peak", "7340032\n");
  put(dir / "memory.current", "1048576\n");
  put(dir / "cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
  EXPECT_EQ((*cg)->memoryPeakBytes(), 7340032);
  EXPECT_EQ((*cg)->memoryCurrentBytes(), 1048576);
  EXPECT_EQ((*cg)->cpuTimeNs(), 1500000);

  // The "kernel" emptied the cgroup: killAll writes cgroup.kill and returns.
  put(dir / "cgroup.procs", "");
  EXPECT_TRUE((*cg)->killAll().isOk());
  EXPECT_EQ(slurp(dir / "cgroup.kill"), "1");
}

TEST_F(FakeV2, CpuWeightEndsOfRange) {
  auto driver = makeCgroupV2Driver(root_);
  CgroupLimits lo, hi;
  lo.cpuShares = 2;
  hi.cpuShares = 1 << 20;  // clamped to 262144
  auto a = driver->create("sbx", "lo", lo);
  auto b = driver->create("sbx", "hi", hi);
  ASSERT_TRUE(a.isOk() && b.isOk());
  EXPECT_EQ(slurp(root_ / "sbx" / "lo" / "cpu.weight"), "1");
  EXPECT_EQ(slurp(root_ / "sbx" / "hi" / "cpu.weight"), "10000");
  // Unlimited memory and pids: no knob written.
  EXPECT_FALSE(fs::exists(root_ / "sbx" / "lo" / "memory.max"));
  EXPECT_FALSE(fs::exists(root_ / "sbx" / "lo" / "pids.max"));
}

TEST_F(FakeV2, SkipsControllersTheParentDoesNotOffer) {
  put(root_ / "sbx" / "cgroup.controllers", "pids\n");
  fs::remove(root_ / "sbx" / "memory.swap.max");
  auto driver = makeCgroupV2Driver(root_);
  CgroupLimits limits;
  limits.memoryBytes = 64LL << 20;
  limits.pidsMax = 10;
  auto cg = driver->create("sbx", "p1", limits);
  ASSERT_TRUE(cg.isOk()) << cg.status().toString();
  EXPECT_EQ(slurp(root_ / "sbx" / "cgroup.subtree_control"), "+pids");
  EXPECT_FALSE(fs::exists(root_ / "sbx" / "p1" / "memory.max"));
  EXPECT_FALSE(fs::exists(root_ / "sbx" / "p1" / "cpu.weight"));
  EXPECT_EQ(slurp(root_ / "sbx" / "p1" / "pids.max"), "10");
}

TEST_F(FakeV2, DuplicateIdIsAnError) {
  auto driver = makeCgroupV2Driver(root_);
  auto a = driver->create("sbx", "dup", {});
  ASSERT_TRUE(a.isOk());
  auto b = driver->create("sbx", "dup", {});
  ASSERT_FALSE(b.isOk());
  EXPECT_EQ(b.status().code(), Code::kAlreadyExists);
}

TEST(DetectCgroupDriver, PicksByLayout) {
  TempDir v2;
  put(v2.path() / "cgroup.controllers", "cpu memory pids\n");
  auto d2 = detectCgroupDriver(v2.path());
  ASSERT_TRUE(d2.isOk());
  EXPECT_EQ((*d2)->version(), 2);

  TempDir v1;
  put(v1.path() / "cgroup.controllers", "cpu pids\n");  // an empty-ish v2 mount: not usable
  fs::create_directory(v1.path() / "memory");
  auto d1 = detectCgroupDriver(v1.path());
  ASSERT_TRUE(d1.isOk());
  EXPECT_EQ((*d1)->version(), 1);

  TempDir none;
  auto d0 = detectCgroupDriver(none.path());
  EXPECT_FALSE(d0.isOk());
}

TEST(DetectCgroupDriver, ThisMachine) {
  auto d = detectCgroupDriver();
  ASSERT_TRUE(d.isOk()) << d.status().toString();
  bool v2 = slurp("/sys/fs/cgroup/cgroup.controllers").find("memory") != std::string::npos;
  EXPECT_EQ((*d)->version(), v2 ? 2 : 1);
}

// ---- v2 for real on the (controller-less) unified hierarchy: procs, kill, rmdir.

TEST(RealV2, KillAndRemoveOnUnifiedHierarchy) {
  fs::path root = "/sys/fs/cgroup/unified";
  struct statfs sfs;
  if (::statfs(root.c_str(), &sfs) != 0 || sfs.f_type != CGROUP2_SUPER_MAGIC) {
    GTEST_SKIP() << "no cgroup2 mount at " << root;
  }
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers")) root = "/sys/fs/cgroup";
  std::string parent = randomName("stratus-test-");
  auto driver = makeCgroupV2Driver(root);
  {
    auto cg = driver->create(parent, "k1", {});
    ASSERT_TRUE(cg.isOk()) << cg.status().toString();
    GatedChild c;
    startGated(c, {"/usr/bin/sleep", "1000"});
    ASSERT_TRUE((*cg)->addProcess(c.pid).isOk());
    std::string mine = slurp("/proc/" + std::to_string(c.pid) + "/cgroup");
    EXPECT_NE(mine.find("0::/" + parent + "/k1"), std::string::npos) << mine;
    c.release();
    ASSERT_TRUE((*cg)->killAll().isOk());
    int status = c.wait();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  EXPECT_FALSE(fs::exists(root / parent / "k1"));
  ASSERT_TRUE(driver->removeAll(parent).isOk());
  EXPECT_FALSE(fs::exists(root / parent));
}

// ---- v1 for real.

class RealV1 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::is_directory("/sys/fs/cgroup/memory") ||
        !fs::exists("/sys/fs/cgroup/memory/memory.limit_in_bytes")) {
      GTEST_SKIP() << "no cgroup v1 memory hierarchy";
    }
    parent_ = randomName("stratus-test-");
    driver_ = makeCgroupV1Driver("/sys/fs/cgroup");
  }
  void TearDown() override {
    if (driver_) {
      EXPECT_TRUE(driver_->removeAll(parent_).isOk());
      for (const char* c : {"memory", "pids", "cpu", "cpuacct"}) {
        EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup") / c / parent_)) << c;
      }
    }
  }
  std::string parent_;
  std::unique_ptr<CgroupDriver> driver_;
};

TEST_F(RealV1, WritesLimitsAndRemovesDirectories) {
  CgroupLimits limits;
  limits.memoryBytes = 64LL << 20;
  limits.pidsMax = 20;
  limits.cpuShares = 512;
  {
    auto cg = driver_->create(parent_, "lim", limits);
    ASSERT_TRUE(cg.isOk()) << cg.status().toString();
    fs::path mem = fs::path("/sys/fs/cgroup/memory") / parent_ / "lim";
    EXPECT_EQ(std::stoll(slurp(mem / "memory.limit_in_bytes")), 64LL << 20);
    if (fs::exists(mem / "memory.memsw.limit_in_bytes")) {
      EXPECT_EQ(std::stoll(slurp(mem / "memory.memsw.limit_in_bytes")), 64LL << 20);
    }
    EXPECT_EQ(slurp(fs::path("/sys/fs/cgroup/pids") / parent_ / "lim" / "pids.max"), "20\n");
    EXPECT_EQ(slurp(fs::path("/sys/fs/cgroup/cpu") / parent_ / "lim" / "cpu.shares"), "512\n");
    EXPECT_FALSE((*cg)->oomKilled());
  }
  for (const char* c : {"memory", "pids", "cpu", "cpuacct"}) {
    EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup") / c / parent_ / "lim")) << c;
  }
}

TEST_F(RealV1, MemoryBombIsOomKilled) {
  CgroupLimits limits;
  limits.memoryBytes = 48LL << 20;
  limits.pidsMax = 16;
  auto cg = driver_->create(parent_, "oom", limits);
  ASSERT_TRUE(cg.isOk()) << cg.status().toString();
  GatedChild c;
  startGated(c, {"/usr/bin/python3", "-c", "a = []\nwhile True: a.append(' ' * (1 << 20))\n"});
  ASSERT_TRUE((*cg)->addProcess(c.pid).isOk());
  c.release();
  int status = c.wait();
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  EXPECT_TRUE((*cg)->oomKilled());
  EXPECT_GE((*cg)->memoryPeakBytes(), 40LL << 20);
  EXPECT_LE((*cg)->memoryPeakBytes(), 48LL << 20);
  EXPECT_GT((*cg)->cpuTimeNs(), 0);
  EXPECT_TRUE((*cg)->killAll().isOk());
}

// Accounting keeps each stat file open and re-reads it (pread at 0): the values must be live,
// not the first read's. Every getter is read once before anything runs in the cgroup.
TEST_F(RealV1, AccountingRereadsLiveValues) {
  CgroupLimits limits;
  limits.memoryBytes = 48LL << 20;
  limits.pidsMax = 16;
  auto cg = driver_->create(parent_, "live", limits);
  ASSERT_TRUE(cg.isOk()) << cg.status().toString();
  EXPECT_FALSE((*cg)->oomKilled());
  const int64_t cpu0 = (*cg)->cpuTimeNs();
  const int64_t peak0 = (*cg)->memoryPeakBytes();
  EXPECT_LT(peak0, 8LL << 20);
  GatedChild c;
  startGated(c, {"/usr/bin/python3", "-c",
                 "x = sum(range(3000000))\na = []\nwhile True: a.append(' ' * (1 << 20))\n"});
  ASSERT_TRUE((*cg)->addProcess(c.pid).isOk());
  c.release();
  int status = c.wait();
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  EXPECT_TRUE((*cg)->oomKilled());
  EXPECT_GT((*cg)->cpuTimeNs(), cpu0 + 10'000'000) << "cpuacct.usage re-read stale";
  EXPECT_GE((*cg)->memoryPeakBytes(), 40LL << 20) << "max_usage_in_bytes re-read stale";
  EXPECT_TRUE((*cg)->killAll().isOk());
}

TEST_F(RealV1, KillAllKillsEveryProcess) {
  auto cg = driver_->create(parent_, "kill", {});
  ASSERT_TRUE(cg.isOk()) << cg.status().toString();
  GatedChild a, b;
  startGated(a, {"/usr/bin/sleep", "1000"});
  startGated(b, {"/usr/bin/sleep", "1000"});
  ASSERT_TRUE((*cg)->addProcess(a.pid).isOk());
  ASSERT_TRUE((*cg)->addProcess(b.pid).isOk());
  a.release();
  b.release();
  ASSERT_TRUE((*cg)->killAll().isOk());
  EXPECT_EQ(WTERMSIG(a.wait()), SIGKILL);
  EXPECT_EQ(WTERMSIG(b.wait()), SIGKILL);
}

// A single-threaded process joins by writing "0" to each tasks file (what a sandbox's init does
// to avoid the RCU-synchronised threadgroup lock of a cgroup.procs migration).
TEST_F(RealV1, SelfAttachFilesMoveTheWritingProcess) {
  auto cg = driver_->create(parent_, "self", {});
  ASSERT_TRUE(cg.isOk()) << cg.status().toString();
  std::vector<fs::path> files = (*cg)->selfAttachFiles();
  ASSERT_FALSE(files.empty());
  int ready[2];
  ASSERT_EQ(::pipe2(ready, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    for (const auto& f : files) {
      int fd = ::open(f.c_str(), O_WRONLY);
      if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(1);
      ::close(fd);
    }
    (void)!::write(ready[1], "r", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char b;
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  ::close(ready[0]);
  std::string mine = slurp("/proc/" + std::to_string(pid) + "/cgroup");
  for (const char* c : {"memory", "pids", "cpu", "cpuacct"}) {
    EXPECT_NE(mine.find(std::string(c) + ":/" + parent_ + "/self\n"), std::string::npos)
        << c << " in " << mine;
  }
  ASSERT_TRUE((*cg)->killAll().isOk());
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status));
}

TEST_F(RealV1, RemoveAllSweepsLeftovers) {
  // What a crashed worker leaves: cgroup directories with a live process in them.
  GatedChild c;
  startGated(c, {"/usr/bin/sleep", "1000"});
  for (const char* ctl : {"memory", "pids"}) {
    fs::path d = fs::path("/sys/fs/cgroup") / ctl / parent_ / "left";
    fs::create_directories(d);
    put(d / "cgroup.procs", std::to_string(c.pid));
  }
  c.release();
  ASSERT_TRUE(driver_->removeAll(parent_).isOk());
  EXPECT_EQ(WTERMSIG(c.wait()), SIGKILL);
  EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/memory") / parent_));
}

}  // namespace
}  // namespace stratus
