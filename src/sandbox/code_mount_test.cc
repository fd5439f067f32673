// Delayed code mount (Sandbox::attachCode) on real process sandboxes: the code appears at /code of
// a running sandbox, read-only, and nothing is mounted on the host.
#include "sandbox/code_mount.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <sstream>

#include "sandbox/process_sandbox.h"
#include "sandbox/sandbox_test_util.h"

namespace stratus {
namespace {

using namespace sandbox_test;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

size_t countLines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

class CodeMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (namespaces, mounts)";
    base_ = fs::temp_directory_path() / ("stratus-codemount-" + randomHex());
    fs::create_directories(base_ / "code");
    fs::create_directories(base_ / "ctl");
    ::chmod((base_ / "ctl").c_str(), 0777);
    { std::ofstream(base_ / "code" / "hello.txt") << "hello from the code\n"; }
    ASSERT_EQ(::mkfifo((base_ / "ctl" / "go").c_str(), 0666), 0);
    ProcessSandboxOptions o;
    o.stateDir = base_ / "state";
    o.cgroupParent = "stratus-codemount-" + randomHex().substr(0, 8);
    auto b = ProcessSandboxBackend::create(o);
    ASSERT_TRUE(b.isOk()) << b.status().toString();
    backend_ = std::move(b).value();
  }
  void TearDown() override {
    backend_.reset();
    std::error_code ec;
    fs::remove_all(base_, ec);
  }

  fs::path base_;
  std::unique_ptr<ProcessSandboxBackend> backend_;
};

TEST_F(CodeMountTest, CodeAppearsReadOnlyInARunningSandboxAndNotOnTheHost) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  SandboxSpec spec;
  spec.id = "cm-" + randomHex().substr(0, 10);
  spec.cwd = "/";
  spec.mounts.push_back(BindMount{base_ / "ctl", "/run/ctl", false});
  spec.argv = {"/bin/sh", "-c",
               "ls -A /code | wc -l; echo up; read x < /run/ctl/go; cat /code/hello.txt; "
               "if (echo x > /code/new) 2>/dev/null; then echo writable; else echo readonly; fi; "
               "grep ' /code ' /proc/self/mountinfo | grep -c ' ro,'"};
  spec.stdoutFd = w.get();
  spec.stderrFd = w.get();
  auto sb = backend_->create(spec);
  ASSERT_TRUE(sb.isOk()) << sb.status().toString();
  w.reset();
  std::string out = readUntil(r.get(), "up\n");
  ASSERT_EQ(out, "0\nup\n") << "a blank sandbox starts with an empty /code";

  const std::string hostMountsBefore = slurp("/proc/self/mountinfo");
  const auto t0 = Clock::now();
  Status st = (*sb)->attachCode(base_ / "code");
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
  ASSERT_TRUE(st.isOk()) << st.toString();
  std::printf("attachCode took %lld us\n", static_cast<long long>(us));
  EXPECT_EQ(countLines(slurp("/proc/self/mountinfo")), countLines(hostMountsBefore))
      << "nothing may be mounted in the host's namespace";
  // Once per sandbox.
  EXPECT_EQ((*sb)->attachCode(base_ / "code").code(), Code::kFailedPrecondition);

  {
    std::ofstream go(base_ / "ctl" / "go");
    go << "go\n";
  }
  out = readUntil(r.get(), "");
  EXPECT_EQ(out, "hello from the code\nreadonly\n1\n");
  EXPECT_FALSE(fs::exists(base_ / "code" / "new"));
}

TEST_F(CodeMountTest, RefusesAMissingDirectoryAndAnExitedSandbox) {
  SandboxSpec spec;
  spec.id = "cm-" + randomHex().substr(0, 10);
  spec.cwd = "/";
  spec.argv = {"/bin/true"};
  auto sb = backend_->create(spec);
  ASSERT_TRUE(sb.isOk()) << sb.status().toString();
  EXPECT_EQ((*sb)->attachCode(base_ / "nope").code(), Code::kInvalidArgument);
  // Wait for exit through the pidfd, then attaching must fail cleanly.
  for (auto deadline = Clock::now() + std::chrono::seconds(20); Clock::now() < deadline;) {
    auto e = (*sb)->pollExit();
    ASSERT_TRUE(e.isOk());
    if (e->has_value()) break;
    pollfd pf{(*sb)->pidFd(), POLLIN, 0};
    ::poll(&pf, 1, 1000);
  }
  EXPECT_EQ((*sb)->attachCode(base_ / "code").code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace stratus
